"""Decoding image files to uint8 tensors, for image folders (the user's own data, ImageNet).

torchvision decodes PNG, JPEG, GIF and WebP; torchvision 0.29 marks its decoders deprecated in
favour of TorchCodec (not a dependency of this project), so the warning is silenced here and,
once they are gone, Pillow (which torchvision installs) takes over.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from dnas.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


def decode(file: Path, rgb: bool = False) -> torch.Tensor:
    """A (C, H, W) uint8 tensor: C = 1 or 3 (alpha dropped), or always 3 with `rgb`."""
    data = Path(file).read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_image
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        mode = ImageReadMode.RGB if rgb else ImageReadMode.UNCHANGED
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            img = decode_image(buf, mode=mode)
    except ImportError:  # pragma: no cover - a torchvision without image decoders
        img = _decode_pil(file, rgb)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"{file} is not a readable image, corrupt or truncated ({exc})") from None
    if img.shape[0] in (2, 4):  # drop alpha
        img = img[:-1]
    return img


def _decode_pil(file: Path, rgb: bool) -> torch.Tensor:  # pragma: no cover
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as im:
            im = im.convert("RGB" if rgb or im.mode not in ("L", "LA") else "L")
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"{file} is not a readable image, corrupt or truncated ({exc})") from None
    return torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1).copy()).permute(2, 0, 1)
