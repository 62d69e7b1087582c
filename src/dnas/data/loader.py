"""A loader that keeps a small dataset on the device as uint8 and augments it there.

All randomness (the epoch permutation, crop offsets, flips, cutout centres) comes from one
seeded CPU `torch.Generator`, so the batches are identical on CPU and GPU for a seed; only the
pixel arithmetic runs on the device (docs/speed.md). Augmentation follows the papers'
recipe: zero-pad and random crop, horizontal flip, normalise, then cutout (docs/data.md#loaders).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from dnas.data.batches import PassOrder, cutout, random_crop
from dnas.data.prepared import Prepared, check_cutout_size
from dnas.data.registry import format_module

__all__ = ["Augment", "DeviceLoader", "PassOrder", "cutout", "random_crop", "split_loader"]


@dataclass(frozen=True)
class Augment:
    pad: int = 0
    flip: bool = False
    cutout: int = 0


class DeviceLoader(PassOrder):
    """Batches of normalised float images from uint8 (N, H, W, C) arrays held on `device`."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        mean: list[float],
        std: list[float],
        device: torch.device,
        augment: Augment | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        hold_on_device: bool | None = None,
    ) -> None:
        if len(x) == 0:
            raise ValueError("empty dataset split")
        device = torch.device(device)
        if hold_on_device is None:
            hold_on_device = fits_on_device(x.nbytes, device)
        # Images that do not fit stay in (pinned) host memory and go over batch by batch; the
        # batches are the same, as all randomness comes from the CPU generator.
        self.storage = device if hold_on_device else torch.device("cpu")
        self.x = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()
        if self.storage.type == "cpu" and device.type == "cuda":
            self.x = self.x.pin_memory()
        self.x = self.x.to(self.storage)
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)
        self.batch_size = min(batch_size, len(x)) if drop_last else batch_size
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255.0
        self.device = device
        self.augment = augment or Augment()
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.order: torch.Tensor | None = None
        self.pos: int | None = None  # next batch of the current pass; None between passes

    @property
    def num_examples(self) -> int:
        return len(self.y)

    def _next(self) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.pos * self.batch_size
        stop = min(start + self.batch_size, len(self.y))
        idx = self.order[start:stop] if self.order is not None else torch.arange(start, stop)
        self.pos += 1
        return self._batch(idx)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the data; continues a pass restored by `load_state_dict`."""
        if self.pos is None:
            self._start_pass()
        while self.pos < len(self):
            yield self._next()
        self.pos = None

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """An endless stream across passes (a new shuffle each pass)."""
        if self.pos is None or self.pos >= len(self):
            self._start_pass()
        return self._next()

    def state_dict(self) -> dict:
        """Generator, permutation and position: enough to continue exactly where it stopped."""
        return {"generator": self.generator.get_state(), "order": self.order, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"]
        self.pos = state["pos"]

    def _batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dev_idx = idx.to(self.device)
        x = self.x[idx.to(self.storage)].to(self.device, non_blocking=True)
        aug = self.augment
        if aug.pad:
            x = random_crop(x, aug.pad, self.generator)
        if aug.flip:
            flips = (torch.rand(len(idx), generator=self.generator) < 0.5).to(self.device)
            x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
        x = (x.float() - self.mean) / self.std
        if aug.cutout:
            x = cutout(x, aug.cutout, self.generator)
        return x, self.y[dev_idx]


def fits_on_device(nbytes: int, device: torch.device, share: float = 0.5) -> bool:
    """Whether `nbytes` of images take at most `share` of the device's free memory."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= share * free


def split_loader(
    data: Prepared,
    split: str,
    batch_size: int,
    device: torch.device,
    *,
    augment: bool = False,
    cutout: int = 0,
    shuffle: bool = False,
    seed: int = 0,
) -> DeviceLoader:
    """A loader over a named split of a prepared dataset, normalised with its card's constants
    and, with `augment`, augmented as its card says (pad-and-crop, flips) plus `cutout`."""
    kind = data.card.get("kind", "images")
    if kind != "images":  # streamed or not images at all: the family's own loader says
        return format_module(kind).split_loader(
            data, split, batch_size, device, augment=augment, cutout=cutout, shuffle=shuffle,
            seed=seed,
        )  # fmt: skip
    aug = data.card["augment"]
    if augment and cutout:
        h, w = data.train_x.shape[1:3]
        check_cutout_size(cutout, h, w, data.name)
    return DeviceLoader(
        *data.split(split),
        batch_size,
        data.card["mean"],
        data.card["std"],
        device,
        augment=Augment(pad=aug["pad"], flip=aug["flip"], cutout=cutout) if augment else None,
        shuffle=shuffle,
        seed=seed,
    )
