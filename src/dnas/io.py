"""Atomic, deterministic file output, and the restricted unpickler for outside files.

Every output is written to a temporary file beside its target and renamed over it, so a stage
that fails half way never leaves a half-written file. JSON is written with sorted keys and
floats rounded to a fixed number of significant digits, so a rerun with the same seed gives
byte-identical files and DVC can skip the stages downstream.

Pickled files from outside (CIFAR and ImageNet16 batches, the NATS-Bench files) are read only
through `restricted_load`, which builds the globals its caller lists and refuses any other
before it is called (docs/data.md#checksums-and-safe-reading).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dnas.errors import UserError, disk_errors

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


# --- restricted unpickling ---------------------------------------------------------------
#
# A pickle names the callables it needs as (module, name) globals and calls them while it is
# loaded; a hostile file names os.system or builtins.eval. `restricted_load` looks every global
# up in its caller's allow-list first and refuses the rest before anything is called, so each
# reader lists only what its format holds (dnas.data.cifar: numpy arrays; dnas.benchmarks.nb201:
# OrderedDict and numpy scalars). The numpy globals that take arbitrary arguments are replaced
# by guarded versions below, and numpy's module is found under either of its names: pickles
# written with numpy 1 say `numpy.core.multiarray`, with numpy 2 `numpy._core.multiarray`.

# numpy scalars: `scalar(dtype, raw bytes)`; their dtype: `dtype('f8', False, True)` + state.
NUMPY_SCALAR_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "dtype"),
    }
)
NUMERIC_KINDS = "biufc"  # bool, signed and unsigned integers, floats, complex


class RefusedGlobal(Exception):
    """A listed global called with arguments outside what the guard allows."""


def _numpy_module(module: str) -> object:
    """numpy's module `module`, under numpy 2's name (`numpy._core...`) where it exists and
    numpy 1's (`numpy.core...`) otherwise, whichever of the two the pickle used."""
    names = [module]
    for a, b in (("numpy.core", "numpy._core"), ("numpy._core", "numpy.core")):
        if module == a or module.startswith(a + "."):
            names = sorted([module, b + module[len(a) :]], key=lambda n: "_core" not in n)
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f"no module named {module!r}")


def _numpy_scalar(dtype: object, data: object = None, *rest: object) -> object:
    """`numpy.core.multiarray.scalar` for numbers only: a numeric dtype and its raw bytes (an
    object dtype would hand back whatever object came with it)."""
    import numpy as np

    if rest or not isinstance(dtype, np.dtype) or dtype.kind not in NUMERIC_KINDS:
        raise RefusedGlobal(f"a numpy scalar of dtype {dtype!r} (only numbers are read)")
    if isinstance(data, str):  # a Python 2 pickle's str, read as latin1
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise RefusedGlobal(f"a numpy {dtype} scalar whose data is not {dtype.itemsize} bytes")
    return _numpy_module("numpy._core.multiarray").scalar(dtype, data)


def _numpy_dtype(spec: object, *args: object) -> object:
    """`numpy.dtype` from a type string such as 'f8' or 'u1' (how numpy pickles a dtype)."""
    import numpy as np

    if not isinstance(spec, str) or not all(isinstance(a, (bool, int)) for a in args):
        raise RefusedGlobal(f"numpy.dtype({spec!r}, ...) (only a type string is read)")
    return np.dtype(spec, *args)


GUARDED = {
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only the globals in `allowed`, (module, name) pairs."""

    def __init__(self, file, allowed: set[tuple[str, str]], source: str, what: str):
        super().__init__(file, encoding="latin1")
        self.allowed, self.source, self.what = frozenset(allowed), source, what

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise UserError(
                f"refusing to unpickle {module}.{name} from {self.source}: not {self.what}"
            )
        if (module, name) in GUARDED:
            return GUARDED[(module, name)]
        if module == "numpy" or module.startswith("numpy."):
            return getattr(_numpy_module(module), name)
        return super().find_class(module, name)


def restricted_load(
    file: str | os.PathLike, allowed: set[tuple[str, str]], what: str, opener=open
) -> object:
    """Unpickle `file`, allowing only the globals in `allowed` as (module, name) pairs.

    Anything else (os.system, builtins.eval, ...) raises a UserError before it is called, and
    so does a guarded numpy global called with other arguments than numbers. Python 2 strings
    are decoded as latin1, which numpy needs for its array data. `opener` opens the file (e.g.
    `bz2.open` for a compressed pickle); its errors count as corruption.
    """
    file = Path(file)
    with opener(file, "rb") as f:
        try:
            return RestrictedUnpickler(f, allowed, str(file), what).load()
        except UserError:
            raise
        except RefusedGlobal as exc:
            raise UserError(f"refusing to unpickle {exc} from {file}: not {what}") from None
        except Exception as exc:  # a damaged pickle can fail in many ways
            raise UserError(
                f"{file} is not {what}: cannot unpickle it ({type(exc).__name__}: {exc}); "
                "it may be corrupt or truncated"
            ) from None


def md_cell(text: object) -> str:
    """`text` as one markdown table cell: a `|` (between a cell's nodes, in NB201 strings) is
    escaped so that it shows as `|` instead of starting another cell; no line breaks."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
