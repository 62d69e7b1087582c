"""Helpers for the own-data tests (test_hostile_data.py, test_fuzz_data.py): sources written
the way a user writes them (np.savez, Pillow), the params that name them, and a run of the
validate and prepare steps in-process that reports what a user would see."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
from pathlib import Path

import numpy as np

from dnas.config import Prepare
from dnas.errors import UserError


def png(path: Path, img: np.ndarray, mode: str | None = None, **save) -> Path:
    """Write `img` (H, W) or (H, W, C) uint8 with Pillow, as an image editor would."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img, mode=mode).save(path, **save) if mode else Image.fromarray(img).save(
        path, **save
    )
    return path


def prepare_params(path, fmt: str = "npz", **kw) -> Prepare:
    return Prepare(
        datasets=["digits", "mine"],
        custom={"mine": {"path": str(path), "format": fmt, **kw}},
        search_split="random",
    )


def tree_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root`, by relative path (names as bytes), but `logs/`
    (every stage run appends its output there by design: a log, not a product)."""
    out = {}
    for dirpath, dirs, files in os.walk(os.fsencode(root)):
        if dirpath == os.fsencode(root):
            dirs[:] = [d for d in dirs if d != b"logs"]
        for f in files:
            full = os.path.join(dirpath, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, os.fsencode(root))] = hashlib.sha256(
                    fh.read()
                ).hexdigest()
    return out


def attempt(fn) -> tuple[str, str, str]:
    """Run `fn` as a stage runs under `run_main`; returns ("ok" | "error", the stderr text,
    the stdout text). Any exception other than `UserError` propagates (a traceback)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            fn()
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return "error", err.getvalue(), out.getvalue()
    return "ok", err.getvalue(), out.getvalue()


def one_error_line(stderr: str) -> str:
    """The single `error:` line of a failure, checked to be one printable line."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    line = lines[0]
    line.encode("utf-8")  # printable on a UTF-8 terminal (no lone surrogates)
    return line
