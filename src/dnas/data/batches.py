"""What every image loader shares: the pass order over the examples and the batch-level
augmentations (random crop, cutout), all drawn from the loader's seeded CPU generator
(docs/data.md#loaders). Below both loaders (`loader.DeviceLoader`, `imagenet.FolderLoader`), so
neither imports the other.
"""

from __future__ import annotations

import torch


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
