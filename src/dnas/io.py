"""Atomic, deterministic file output.

Every output is written to a temporary file beside its target and renamed over it, so a stage
that fails half way never leaves a half-written file. JSON is written with sorted keys and
floats rounded to a fixed number of significant digits, so a rerun with the same seed gives
byte-identical files and DVC can skip the stages downstream.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dnas.errors import disk_errors

SIGNIFICANT_DIGITS = 6


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it over `target` if the block succeeds.

    A full disk or a read-only directory becomes one `UserError` naming `target`; the
    temporary file is removed and an earlier `target` stays as it was."""
    target = Path(target)
    tmp_path = None
    try:
        with disk_errors(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            tmp_path = Path(tmp)
            tmp_path.chmod(0o666 & ~umask())  # mkstemp makes 0600; outputs get the usual mode
            yield tmp_path
            os.replace(tmp_path, target)
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def check_writable(*directories: str | os.PathLike) -> None:
    """Create each directory and write a byte to a temporary file in it, so a read-only or
    full output directory stops a stage before its first epoch, not after it (UserError)."""
    for directory in directories:
        directory = Path(directory)
        with disk_errors(directory):
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=directory) as f:
                f.write(b"\0")
                f.flush()
                os.fsync(f.fileno())


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def round_floats(obj: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """Round every float in a nested structure to `digits` significant digits."""
    if isinstance(obj, float):
        if not math.isfinite(obj) or obj == 0.0:
            return obj
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, digits) for v in obj]
    return obj


def dumps_json(obj: Any) -> str:
    return json.dumps(round_floats(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as JSON: sorted keys, rounded floats, atomic rename."""
    write_bytes(target, dumps_json(obj).encode())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# The key of the metrics a search returns that holds the run's timings and memory: the search
# stage writes it to measurements/ (not a DVC output), apart from the results.
MEASURED = "cost"


def md_cell(text: object) -> str:
    """`text` as one markdown table cell: a `|` (between a cell's nodes, in NB201 strings) is
    escaped so that it shows as `|` instead of starting another cell; no line breaks."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
