"""The retraining optimiser: SGD with momentum and weight decay and a per-epoch LR schedule
(docs/algorithms.md#cnn-retraining).

- cosine (CIFAR recipes): lr -> lr_min over the epochs. Without warm-up
  it is exactly `dnas.optim.sgd_cosine`, torch's CosineAnnealingLR, as before.
- step (ImageNet mobile recipes of GDAS, DARTS and SNAS): lr * lr_gamma^epoch,
  torch's StepLR(1, gamma).
- linear (DrNAS ImageNet, `DARTS-space/train_imagenet.py::adjust_lr`): linear decay
  lr * (E - 5 - e) / (E - 5) while more than 5 epochs remain, then the smaller slope
  lr * (E - e) / (5 (E - 5)) for the last 5. With 5 epochs or fewer it is lr * (E - e) / E.
- warm-up (DrNAS ImageNet at batch > 256): for the first `warmup_epochs` epochs the LR is
  lr * (e + 1) / warmup_epochs instead of the schedule's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from dnas.config import Train
from dnas.optim import sgd_cosine, weight_sgd

TAIL = 5  # epochs of the smaller slope at the end of the linear schedule


def lr_factor(t: Train, epoch: int) -> float:
    """The multiple of `t.lr` used in `epoch` (0-based)."""
    if epoch < t.warmup_epochs:
        return (epoch + 1) / t.warmup_epochs
    e, n = epoch, t.epochs
    if t.schedule == "step":
        return t.lr_gamma**e
    if t.schedule == "linear":
        if n <= TAIL:
            return (n - e) / n
        if n - e > TAIL:
            return (n - TAIL - e) / (n - TAIL)
        return (n - e) / ((n - TAIL) * TAIL)
    ratio = t.lr_min / t.lr
    return ratio + (1 - ratio) * (1 + math.cos(math.pi * e / n)) / 2


def sgd_schedule(
    params: Iterable[torch.nn.Parameter], t: Train
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LRScheduler]:
    if t.schedule == "cosine" and t.warmup_epochs == 0:
        return sgd_cosine(params, t)
    opt = weight_sgd(params, t)

    def factor(epoch: int) -> float:  # a plain function: LambdaLR keeps no state for it
        return lr_factor(t, epoch)

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
