"""Run-time choices shared by the stages: seeding, the device, and epoch progress output."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator

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


class EpochProgress:
    """Epoch indices with a progress bar on a terminal (the last epoch's numbers beside it),
    and one plain line per epoch otherwise (CI, `dvc queue logs`)."""

    def __init__(self, total: int, desc: str, start: int = 0) -> None:
        self.total = total
        self.desc = desc
        self.start = start
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=desc, unit="epoch", dynamic_ncols=True)

    def __iter__(self) -> Iterator[int]:
        try:
            yield from range(self.start, self.total)
        finally:
            if self.bar is not None:
                self.bar.close()

    def report(self, epoch: int, values: dict[str, float]) -> None:
        text = {k: f"{v:.4g}" for k, v in values.items()}
        if self.bar is not None:
            self.bar.set_postfix(text, refresh=False)
            self.bar.update(1)
        else:
            parts = " ".join(f"{k}={v}" for k, v in text.items())
            print(f"{self.desc} epoch {epoch + 1}/{self.total} {parts}", flush=True)


class FiniteLossGuard:
    """Notices a non-finite loss without a host sync per step: the index of the first bad
    step is kept on the device and read once, when the epoch ends."""

    def __init__(self, device: torch.device, stage: str, hint: str) -> None:
        self.device = device
        self.stage = stage
        self.hint = hint
        self.reset()

    def reset(self) -> None:
        """Start a new epoch."""
        self.first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self.step = 0

    def state_dict(self) -> dict:
        return {"first_bad": int(self.first_bad), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.first_bad = torch.full((), state["first_bad"], dtype=torch.long, device=self.device)
        self.step = state["step"]

    def observe(self, *losses: torch.Tensor) -> None:
        bad = ~torch.isfinite(torch.stack([loss.detach().float() for loss in losses])).all()
        self.first_bad = torch.where((self.first_bad < 0) & bad, self.step, self.first_bad)
        self.step += 1

    def check(self, epoch: int) -> None:
        """Raise `UserError` naming the epoch and step if a loss was inf or NaN."""
        bad = int(self.first_bad)
        if bad >= 0:
            raise UserError(
                f"{self.stage}: the loss became inf or NaN at epoch {epoch + 1}, step {bad + 1}; "
                f"stopped without writing outputs. Lower {self.hint} or check the data"
            )
