"""Decoding image files to uint8 tensors, for image folders (the user's own data, ImageNet).

Pillow decodes PNG, JPEG, GIF and WebP. It checks what it reads and raises an error on a
damaged file, where torchvision's decoders crashed the whole process on a single flipped byte
inside a PNG's image data (docs/failure-modes.md); a file Pillow cannot read is one
`UserError` naming it. 16-bit images are scaled to 8 bits (v * 255 / 65535, rounded; Pillow
itself keeps the high byte of 16-bit colour PNGs), never cut to their low byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dnas.errors import UserError, first_line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}
# Pillow modes of one-channel images with more than 8 bits per pixel (16-bit PNG greyscale).
_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def decode(file: Path, rgb: bool = False) -> torch.Tensor:
    """A (C, H, W) uint8 tensor: C = 1 or 3 (alpha dropped), or always 3 with `rgb`."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            im.load()
            arr = _pixels(im, rgb)
    except UserError as exc:
        raise UserError(f"{file}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a hostile file may make any decoder error
        reason = first_line(exc)
        raise UserError(
            f"{file} is not a readable image, corrupt or truncated ({reason}); replace or remove it"
        ) from None
    return torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1).copy()).permute(2, 0, 1)


def _pixels(im, rgb: bool) -> np.ndarray:
    """The image as uint8 (H, W) or (H, W, 3)."""
    if im.mode in _WIDE_GREY:
        wide = np.asarray(im).astype(np.float64)
        if im.mode == "I" and (wide.min() < 0 or wide.max() > 65535):
            raise UserError(f"32-bit pixel values ({wide.min():g}..{wide.max():g}) are refused")
        grey = np.rint(wide * (255.0 / 65535.0)).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2) if rgb else grey
    if im.mode == "F":
        raise UserError("floating-point pixels are refused; save 8- or 16-bit images")
    grey = im.mode in ("L", "LA", "1") and not rgb
    return np.asarray(im.convert("L" if grey else "RGB"))
