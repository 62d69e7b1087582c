"""Run-time choices shared by the stages: seeding, the device, and epoch progress output."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from dnas.errors import UserError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """`auto` takes CUDA when there is a GPU, else the CPU; `cuda` without one is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("common.device = 'cuda' but no CUDA GPU is visible; use auto or cpu")
    device = torch.device(name)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def epochs(n: int, desc: str) -> Iterator[int]:
    """Epoch indices with a progress bar on a terminal, nothing extra otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(range(n), desc=desc, unit="epoch", dynamic_ncols=True)
    else:
        yield from range(n)


def log_epoch(desc: str, epoch: int, total: int, values: dict[str, float]) -> None:
    """One line per epoch when not on a terminal (CI, `dvc exp run --queue` logs)."""
    if sys.stderr.isatty():
        return
    parts = " ".join(f"{k}={v:.4g}" for k, v in values.items())
    print(f"{desc} epoch {epoch + 1}/{total} {parts}", flush=True)


def cycle(iterable: Iterable) -> Iterator:
    """Iterate forever, re-entering `iterable` (a new shuffle each pass)."""
    while True:
        yield from iterable
