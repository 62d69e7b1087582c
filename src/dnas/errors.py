"""User-facing errors and the wrapper every stage and CLI command runs under.

A user who mistypes a param or points at a missing file should see one line that names what
to fix, never a traceback (docs/failure-modes.md). Code raises `UserError` for
those cases; `run_main` prints it and exits with status 2. Run as a stage (`python -m
stages.<name>`), `run_main` also copies what the stage prints to `logs/<name>.log`
(`stage_log`), each line with the time it was written.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import sys
import time
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


class _Tee:
    """A text stream that passes everything on to `stream` and appends each complete line to
    `log` after a UTC timestamp. A line a progress bar redraws (ending in a carriage return)
    is copied at most every `REDRAW_S` seconds, so a terminal's bar does not flood the log."""

    REDRAW_S = 20.0

    def __init__(self, stream, log) -> None:
        self.stream, self.log, self.pending, self.last_redraw = stream, log, "", 0.0

    def write(self, text: str) -> int:
        n = self.stream.write(text)
        self.pending += text
        while True:
            ends = [i for i in (self.pending.find("\n"), self.pending.find("\r")) if i >= 0]
            if not ends:
                break
            end = min(ends)
            line, sep, self.pending = self.pending[:end], self.pending[end], self.pending[end + 1 :]
            now = time.monotonic()
            if sep == "\r":
                if now - self.last_redraw < self.REDRAW_S:
                    continue
                self.last_redraw = now
            if line.strip():
                self.copy(line)
        return n

    def copy(self, line: str) -> None:
        """Append one line to the log; a log that cannot be written (a full disk) is dropped,
        never the stage."""
        if self.log is None:
            return
        try:
            self.log.write(f"{_utc()} {line.rstrip()}\n")
        except (OSError, ValueError):
            self.log = None

    def flush(self) -> None:
        self.stream.flush()
        if self.log is not None:
            try:
                self.log.flush()
            except (OSError, ValueError):
                self.log = None

    def __getattr__(self, name: str):  # isatty, fileno, encoding ...: the stream's
        return getattr(self.stream, name)


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _stage_name() -> str | None:
    """`search` for `python -m stages.search`, `prepare@digits` for `... --dataset digits`;
    None outside a stage, and on the other ranks of a torchrun run (rank 0 logs)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = getattr(spec, "name", None) or ""
    if not module.startswith("stages.") or os.environ.get("RANK", "0") != "0":
        return None
    name = module.split(".", 1)[1]
    if "--dataset" in sys.argv[:-1]:
        name += "@" + sys.argv[sys.argv.index("--dataset") + 1]
    return name


@contextmanager
def stage_log(name: str | None, directory: str = "logs") -> Iterator[None]:
    """Copy stdout and stderr to `<directory>/<name>.log` (appended, timestamped lines) while
    the block runs. A log is no output: it is git-ignored, DVC does not track it, and a
    directory that cannot be written just means no log."""
    if name is None:
        yield
        return
    try:
        os.makedirs(directory, exist_ok=True)
        log = open(os.path.join(directory, f"{name}.log"), "a", encoding="utf-8")  # noqa: SIM115
    except OSError:
        yield
        return
    saved = sys.stdout, sys.stderr
    out, err = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    sys.stdout, sys.stderr = out, err
    out.copy(f"--- {name} started: {' '.join(sys.argv)} (pid {os.getpid()})")
    status = "failed"
    try:
        yield
        status = "done"
    except SystemExit as exc:
        status = f"exit status {exc.code}"
        raise
    except BaseException:  # the traceback Python prints next goes to the log too
        import traceback

        for line in traceback.format_exc().splitlines():
            err.copy(line)
        raise
    finally:
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = saved
        err.copy(f"--- {name} {status}")
        try:
            log.close()
        except OSError:
            pass


def run_main(main: Callable[[], object]) -> None:
    """Run `main`; turn a `UserError` into one message on stderr and exit code 2. A stage's
    output is also appended to logs/<stage>.log (`stage_log`)."""
    with stage_log(_stage_name()):
        _run(main)


def _run(main: Callable[[], object]) -> None:
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
