"""The weight optimiser shared by search and retraining: SGD with momentum and weight decay,
the learning rate annealed per epoch by a cosine from `lr` to `lr_min`
(docs/algorithms.md#gdas-schedules, docs/algorithms.md#cnn-retraining)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from dnas.config import Optim


def sgd_cosine(
    params: Iterable[torch.nn.Parameter], o: Optim
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
    opt = torch.optim.SGD(
        params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
    )
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=o.epochs, eta_min=o.lr_min)
