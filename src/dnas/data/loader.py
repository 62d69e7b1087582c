"""A loader that keeps a small dataset on the device as uint8 and augments it there.

All randomness (the epoch permutation, crop offsets, flips, cutout centres) comes from one
seeded CPU `torch.Generator`, so the batches are identical on CPU and GPU for a seed; only the
pixel arithmetic runs on the device (DESIGN.md, "Speed"). Augmentation follows the papers'
recipe: zero-pad and random crop, horizontal flip, normalise, then cutout (docs/data.md#loaders).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from dnas.data.prepared import Prepared
from dnas.errors import UserError


@dataclass(frozen=True)
class Augment:
    pad: int = 0
    flip: bool = False
    cutout: int = 0


class PassOrder:
    """Pass bookkeeping shared by the loaders: the length in batches, and for each pass over
    the data a permutation drawn from the loader's CPU generator and the position in it."""

    batch_size: int
    shuffle: bool
    drop_last: bool
    generator: torch.Generator
    order: torch.Tensor | None
    pos: int | None

    @property
    def num_examples(self) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        n = self.num_examples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _start_pass(self) -> None:
        n = self.num_examples
        self.order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        self.pos = 0


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
    if kind == "text":
        raise UserError(
            f"{data.name} is a text corpus (for the language-model track); the CNN search and "
            "training need an image dataset"
        )
    if kind == "folder":  # ImageNet: streamed from the image folders
        from dnas.data.imagenet import FolderLoader

        return FolderLoader(
            data, split, batch_size, device, augment=augment, cutout=cutout, shuffle=shuffle,
            seed=seed,
        )  # fmt: skip
    aug = data.card["augment"]
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


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad` and crop back to the original size at a random offset per image."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[batch, chan, rows, cols]


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a `size` x `size` square (clipped at the border) at a random centre per image."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=generator).to(x.device)
    cx = torch.randint(0, w, (n,), generator=generator).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    half = size // 2
    inside_y = (ys >= (cy - half).view(n, 1, 1)) & (ys < (cy - half + size).view(n, 1, 1))
    inside_x = (xs >= (cx - half).view(n, 1, 1)) & (xs < (cx - half + size).view(n, 1, 1))
    return x * (~(inside_y & inside_x)).unsqueeze(1).to(x.dtype)
