"""The optimisers, built here for every loop. The weights': SGD with weight decay, with momentum
(and optionally Nesterov) for the CNNs, plain for the language models (awd-lstm-lm); for the
CNNs the learning rate is annealed per epoch by a cosine from `lr` to `lr_min`
(docs/algorithms.md#gdas-schedules, docs/algorithms.md#cnn-retraining,
docs/algorithms.md#rnn-retraining). The alphas': Adam, or SGD (`arch_optimizer`), at a constant
step or one that falls by a cosine over the epochs (`search.arch_lr_schedule`, `set_arch_lr`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from dnas.config import Optim, Search


def weight_sgd(
    params: Iterable[torch.nn.Parameter], o: Optim, momentum: bool = True
) -> torch.optim.SGD:
    """SGD at `o.lr` with `o.weight_decay`; with `momentum`, also `o.momentum` and `o.nesterov`."""
    if not momentum:
        return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(
        params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
    )


def sgd_cosine(
    params: Iterable[torch.nn.Parameter], o: Optim
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
    opt = weight_sgd(params, o)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=o.epochs, eta_min=o.lr_min)


def arch_optimizer(s: Search, net, weight_decay: float | None = None) -> torch.optim.Optimizer:
    """Adam (GDAS, DARTS, DrNAS) or plain SGD (SNAS on one GPU) on `net`'s alphas, with
    `weight_decay` (None: search.arch_weight_decay; the algorithm may set its own, as DrNAS's
    l2 regulariser, docs/algorithms.md#drnas)."""
    if not isinstance(s.arch_lr, float):  # `auto`: the search resolves it first
        raise ValueError(
            f"search.arch_lr {s.arch_lr!r} is not a number: resolve it with"
            " dnas.search.budget.resolve (run_search does) before building the optimiser"
        )
    wd = s.arch_weight_decay if weight_decay is None else weight_decay
    params = net.arch_parameters()
    if s.arch_optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.arch_lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=s.arch_lr, betas=tuple(s.arch_betas), weight_decay=wd)


def arch_lr_at(s: Search, epoch: int) -> float:
    """The alphas' step in `epoch` (0-based): `arch_lr` throughout (`arch_lr_schedule:
    constant`, the papers'), or `arch_lr` x (1 + cos(pi x epoch / epochs)) / 2 (`cosine`: from
    `arch_lr` in the first epoch towards 0, without a floor; the last of 10 epochs steps at
    2.4 % of `arch_lr`; docs/algorithms.md#what-keeps-the-cells-from-settling)."""
    if s.arch_lr_schedule == "constant":
        return s.arch_lr
    return s.arch_lr * (1.0 + math.cos(math.pi * epoch / s.epochs)) / 2.0


def set_arch_lr(a_opt: torch.optim.Optimizer, s: Search, epoch: int) -> None:
    """Sets the alphas' step of `epoch` on `a_opt` (before the epoch's first step; a function of
    the epoch alone, so a resumed run steps as an uninterrupted one)."""
    lr = arch_lr_at(s, epoch)
    for group in a_opt.param_groups:
        group["lr"] = lr
