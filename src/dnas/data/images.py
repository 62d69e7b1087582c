"""Decoding image files to uint8 tensors, for image folders (the user's own data, ImageNet).

Pillow decodes PNG, JPEG, GIF and WebP. It checks what it reads and raises an error on a
damaged file, where torchvision's decoders crashed the whole process on a single flipped byte
inside a PNG's image data (docs/failure-modes.md); a file Pillow cannot read is one
`UserError` naming it. 16-bit images are scaled to 8 bits (v * 255 / 65535, rounded; Pillow
itself keeps the high byte of 16-bit colour PNGs), never cut to their low byte.

Transparency (RGBA, LA, a palette or a grey or colour image with a transparent colour) is
composited onto a background by `decode_image` (the user's own data: symbolic icons often keep
their shape only in the alpha channel, so dropping it leaves a uniform square); `decode` (used
for ImageNet, whose JPEGs have none) drops it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from dnas.errors import UserError, first_line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}
# Pillow modes of one-channel images with more than 8 bits per pixel (16-bit PNG greyscale).
_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


# Modes that carry an alpha channel; others may name one transparent colour (info "transparency").
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_GREY_MODES = ("L", "LA", "La", "1")


def shown(path: object) -> str:
    """A path (or a message that may hold one) as one printable line: bytes that are not
    UTF-8 (a file name from another system) as \\xNN, control characters (a newline in a
    name) escaped, so a message naming the file is still one line and never fails to print."""
    text = os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def decode(file: Path, rgb: bool = False) -> torch.Tensor:
    """A (C, H, W) uint8 tensor: C = 1 or 3 (alpha dropped), or always 3 with `rgb`."""
    return _decode(file, rgb, None)[0]


def decode_image(
    file: Path, background: tuple[int, int, int] = (255, 255, 255), rgb: bool = False
) -> tuple[torch.Tensor, bool]:
    """A (C, H, W) uint8 tensor (C = 1 or 3, or always 3 with `rgb`) with any transparency
    composited onto `background`, and whether the image had any (a pixel not fully opaque).
    A grey image stays grey on a grey background and becomes colour on a coloured one."""
    return _decode(file, rgb, background)


def _decode(file: Path, rgb: bool, background) -> tuple[torch.Tensor, bool]:
    from PIL import Image

    try:
        empty = os.stat(file).st_size == 0
    except OSError as exc:
        raise UserError(f"{shown(file)} cannot be read ({shown(first_line(exc))})") from None
    if empty:
        raise UserError(f"{shown(file)} is an empty file; replace or remove it")
    try:
        with Image.open(file) as im:
            im.load()
            if background is not None and _has_alpha(im):
                arr, alpha = _composite(im, background, rgb)
            else:
                arr, alpha = _pixels(im, rgb), False
    except UserError as exc:
        raise UserError(f"{shown(file)}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a hostile file may make any decoder error
        reason = first_line(exc)
        for name in (repr(str(file)), str(file)):  # the message may repeat the file's name
            reason = reason.replace(name, "").strip()
        reason = shown(reason)[:160]
        raise UserError(
            f"{shown(file)} is not a readable image, corrupt or truncated ({reason}); "
            "replace or remove it"
        ) from None
    tensor = torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1).copy()).permute(2, 0, 1)
    return tensor, alpha


def _has_alpha(im) -> bool:
    return im.mode in _ALPHA_MODES or (
        "transparency" in im.info and im.mode not in _WIDE_GREY and im.mode != "F"
    )


def _composite(im, background, rgb: bool) -> tuple[np.ndarray, bool]:
    """The image over `background`: uint8 (H, W) or (H, W, 3), and whether any pixel was not
    fully opaque."""
    rgba = np.asarray(im.convert("RGBA"))
    colour, alpha = rgba[..., :3], rgba[..., 3:]
    if im.mode in _GREY_MODES and not rgb and len(set(background)) == 1:
        colour = colour[..., :1]
    return composite(colour, alpha, background), bool((alpha < 255).any())


def composite(colour: np.ndarray, alpha: np.ndarray, background) -> np.ndarray:
    """uint8 colour (..., C) with uint8 alpha (..., 1) over `background` (r, g, b): each
    channel round((c * a + b * (255 - a)) / 255); C = 1 stays one channel on a grey background."""
    bg = np.asarray(background, dtype=np.uint32)[: colour.shape[-1]]
    if colour.shape[-1] == 1 and len(set(background)) > 1:
        colour, bg = np.repeat(colour, 3, axis=-1), np.asarray(background, dtype=np.uint32)
    a = alpha.astype(np.uint32)
    out = (colour.astype(np.uint32) * a + bg * (255 - a) + 127) // 255
    return out.astype(np.uint8)


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
