"""User-facing errors and the wrapper every stage and CLI command runs under.

A user who mistypes a param or points at a missing file should see one line that names what
to fix, never a traceback (DESIGN.md, "Errors and data safety"). Code raises `UserError` for
those cases; `run_main` prints it and exits with status 2.
"""

from __future__ import annotations

import errno
import pickle
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A problem the user can fix: bad params, a missing or corrupt file, no network."""


# Write failures the user fixes outside the project (docs/failure-modes.md): errno -> advice.
DISK_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space"),
    errno.EROFS: ("read-only file system", "make it writable"),
    errno.EACCES: ("permission denied", "make it writable"),
    errno.EPERM: ("operation not permitted", "make it writable"),
}


def disk_error(exc: OSError, path: object = None) -> UserError | None:
    """A one-line `UserError` for a full disk, a read-only directory or a missing permission
    while writing `path` (default: the file the error names); None for other errors."""
    if exc.errno not in DISK_ERRORS:
        return None
    what, fix = DISK_ERRORS[exc.errno]
    path = path if path is not None else (exc.filename or "an output")
    return UserError(
        f"{path}: cannot write ({what}); {fix}, then rerun `dvc repro` "
        "(the outputs of earlier runs are left as they were)"
    )


@contextmanager
def disk_errors(path: object) -> Iterator[None]:
    """Inside the block, a full disk, a read-only directory or a missing permission becomes the
    one-line `UserError` of `disk_error` naming `path`; other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        error = disk_error(exc, path)
        if error is None:
            raise
        raise error from None


# torch.load(weights_only=True) can be made to run code below torch 2.6 (CVE-2025-32434); every
# "never runs pickled code" promise rests on it, so files are not loaded on an older torch.
TORCH_FLOOR = (2, 6)


def check_torch_floor(version: str | None = None) -> None:
    """A one-line `UserError` if torch (or `version`) is older than TORCH_FLOOR, whose
    `torch.load(weights_only=True)` does not keep pickled code from running."""
    if version is None:
        import torch  # lazy: this module is imported by code that needs no torch

        version = torch.__version__
    found = tuple(int(x) for x in re.findall(r"\d+", str(version))[:2])
    if found < TORCH_FLOOR:
        floor = ".".join(map(str, TORCH_FLOOR))
        raise UserError(
            f"torch {version} is older than {floor}: its torch.load(weights_only=True) can run"
            f" code from a crafted file (CVE-2025-32434), so no checkpoint or model is loaded;"
            f" install torch>={floor}"
        )


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only (its type name if it has none)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def unpickling_reason(exc: BaseException) -> str:
    """The first line of a load error, without torch's advice to load with
    `weights_only=False` (which would run whatever code the file holds)."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text:
        return "it holds pickled objects other than tensors, refused: loading them could run code"
    return first_line(exc)


def run_main(main: Callable[[], object]) -> None:
    """Run `main`; turn a `UserError` into one message on stderr and exit code 2."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)  # see stages/__init__.py
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        error = disk_error(exc)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
