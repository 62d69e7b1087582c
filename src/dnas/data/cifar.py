"""CIFAR-10: 60,000 32x32 colour images in 10 classes (50,000 train, 10,000 test).

Read from the official binary archive (downloaded into `prepare.raw_dir` unless
`prepare.paths.cifar10` names a local copy), or from a local copy of the binary or the python
version, as a directory or as the `.tar.gz` archive. The python version's pickles are read
with `restricted_load`, which builds numpy arrays and nothing else. File formats:
reference/nas-reference.md §1.11.
"""

from __future__ import annotations

import pickle
import shutil
import urllib.parse
from pathlib import Path

import numpy as np

from dnas.data.download import download, md5_file, safe_extract_tar
from dnas.errors import UserError

NUM_CLASSES = 10
AUGMENT = {"flip": True, "pad": 4}
# Per-channel mean and std of the training set, in [0, 1] units (the GDAS code's constants).
MEAN = [x / 255 for x in (125.3, 123.0, 113.9)]
STD = [x / 255 for x in (63.0, 62.1, 66.7)]

# Read at call time, so tests can point them at a local fixture.
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
PYTHON_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
PYTHON_MD5 = "c58f30108f718f92721af3b95e74349a"

SOURCE = {
    "origin": URL,
    "md5": MD5,
    "format": "CIFAR-10 binary version",
    "homepage": "https://www.cs.toronto.edu/~kriz/cifar.html",
}

BIN_DIR = "cifar-10-batches-bin"
PY_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
SIDE = 32
IMAGE_BYTES = 3 * SIDE * SIDE  # 1024 R, then 1024 G, then 1024 B, each row-major 32x32
RECORD_BYTES = 1 + IMAGE_BYTES  # binary version: one label byte, then the image

# What a CIFAR batch pickle may construct: numpy arrays, their dtypes, and the bytes objects
# that protocol-2 pickles written by Python 3 encode through _codecs.encode.
NUMPY_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}

FIX = (
    f"set prepare.paths.cifar10 to a directory with {BIN_DIR}/ or {PY_DIR}/, or to the archive "
    "cifar-10-binary.tar.gz or cifar-10-python.tar.gz, or remove prepare.paths.cifar10 to "
    "download it"
)


def _archive_name(url: str) -> str:
    return Path(urllib.parse.urlparse(url).path).name


def _known_md5() -> dict[str, str]:
    return {_archive_name(URL): MD5, _archive_name(PYTHON_URL): PYTHON_MD5}


# --- restricted unpickling ---------------------------------------------------------------


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: set[tuple[str, str]], source: str, what: str):
        super().__init__(file, encoding="latin1")
        self.allowed, self.source, self.what = allowed, source, what

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise UserError(
                f"refusing to unpickle {module}.{name} from {self.source}: not {self.what}"
            )
        return super().find_class(module, name)


def restricted_load(
    file: str | Path, allowed: set[tuple[str, str]], what: str = "a CIFAR batch"
) -> object:
    """Unpickle `file`, allowing only the globals in `allowed` as (module, name) pairs.

    Anything else (os.system, builtins.eval, ...) raises a UserError before it is called.
    Python 2 strings are decoded as latin1, which numpy needs for its array data.
    """
    file = Path(file)
    with open(file, "rb") as f:
        try:
            return _RestrictedUnpickler(f, allowed, str(file), what).load()
        except UserError:
            raise
        except Exception as exc:  # a damaged pickle can fail in many ways
            raise UserError(
                f"{file} is not {what}: cannot unpickle it ({type(exc).__name__}: {exc}); "
                "it may be corrupt or truncated"
            ) from None


# --- batch readers -----------------------------------------------------------------------


def _check_labels(labels: np.ndarray, file: Path) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserError(
            f"{file} has labels outside 0..{NUM_CLASSES - 1} "
            f"(min {labels.min()}, max {labels.max()}); it is not a CIFAR-10 batch"
        )
    return labels.astype(np.int64)


def _planar_to_hwc(data: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of R, G, B planes -> (N, 32, 32, 3)."""
    return np.ascontiguousarray(data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1))


def _require(file: Path) -> Path:
    if not file.is_file():
        raise UserError(f"missing CIFAR-10 file {file}; {FIX}")
    return file


def read_bin_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary-version batch: records of 1 label byte + 3072 planar pixel bytes."""
    raw = np.fromfile(_require(file), dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise UserError(
            f"{file} is corrupt or truncated: {raw.size} bytes is not a positive multiple of "
            f"{RECORD_BYTES} (one label byte + {IMAGE_BYTES} pixel bytes per image); "
            "delete it and extract or download it again"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    return _planar_to_hwc(records[:, 1:]), _check_labels(records[:, 0], file)


def read_py_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python-version batch: a pickled dict with `data` (N, 3072) uint8 and `labels`."""
    batch = restricted_load(_require(file), NUMPY_ARRAY_GLOBALS)
    if not isinstance(batch, dict):
        raise UserError(f"{file} is not a CIFAR batch: it holds a {type(batch).__name__}")
    # Python 2 pickles read with latin1 have str keys; ones written by Python 3, bytes keys.
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != IMAGE_BYTES
        or labels is None
        or len(labels) != len(data)
    ):
        raise UserError(
            f"{file} is not a CIFAR batch: expected 'data' as uint8 (N, {IMAGE_BYTES}) and "
            "N 'labels'"
        )
    return _planar_to_hwc(data), _check_labels(np.asarray(labels, dtype=np.int64), file)


def read_batches(batch_dir: Path, fmt: str) -> dict[str, np.ndarray]:
    """Train = data_batch_1..5 in order, test = test_batch, from a `bin` or `py` directory."""
    read, suffix = (read_bin_batch, ".bin") if fmt == "bin" else (read_py_batch, "")
    train = [read(batch_dir / f"{name}{suffix}") for name in TRAIN_BATCHES]
    test_x, test_y = read(batch_dir / f"{TEST_BATCH}{suffix}")
    return {
        "train_x": np.concatenate([x for x, _ in train]),
        "train_y": np.concatenate([y for _, y in train]),
        "test_x": test_x,
        "test_y": test_y,
    }


def find_batches(root: Path) -> tuple[Path, str]:
    """The batch directory under (or at) `root` and its format, preferring the binary one."""
    if root.name == BIN_DIR:
        return root, "bin"
    if root.name == PY_DIR:
        return root, "py"
    for sub, fmt in ((BIN_DIR, "bin"), (PY_DIR, "py")):
        if (root / sub).is_dir():
            return root / sub, fmt
    # A batch directory under another name.
    if (root / f"{TRAIN_BATCHES[0]}.bin").is_file():
        return root, "bin"
    if (root / TRAIN_BATCHES[0]).is_file():
        return root, "py"
    raise UserError(f"no CIFAR-10 batches in {root}: expected {BIN_DIR}/ or {PY_DIR}/; {FIX}")


# --- entry point -------------------------------------------------------------------------


def _extract(archive: Path, raw_dir: Path) -> dict[str, np.ndarray]:
    # Drop batches left by an earlier archive so we read only what this one contains.
    for sub in (BIN_DIR, PY_DIR):
        shutil.rmtree(raw_dir / sub, ignore_errors=True)
    safe_extract_tar(archive, raw_dir)
    return read_batches(*find_batches(raw_dir))


def load(path: str | None, raw_dir: Path) -> dict[str, np.ndarray]:
    """CIFAR-10 as uint8 (N, 32, 32, 3) images and int64 labels for train and test.

    `path` None downloads the binary archive into `raw_dir`; otherwise it is a directory or
    a `.tar.gz` archive of either version (`prepare.paths.cifar10`).
    """
    raw_dir = Path(raw_dir)
    if path is None:
        archive = download(
            URL,
            raw_dir / _archive_name(URL),
            MD5,
            desc="CIFAR-10",
            hint=f"download {URL} elsewhere and set prepare.paths.cifar10 to the local copy",
        )
        return _extract(archive, raw_dir)

    src = Path(path).expanduser()
    if src.is_dir():
        return read_batches(*find_batches(src))
    if not src.exists():
        raise UserError(f"prepare.paths.cifar10 = {path} does not exist; {FIX}")
    if not src.name.endswith((".tar.gz", ".tgz", ".tar")):
        raise UserError(
            f"prepare.paths.cifar10 = {path} is neither a directory nor a .tar.gz; {FIX}"
        )
    expected = _known_md5().get(src.name)
    if expected is not None:
        actual = md5_file(src)
        if actual != expected:
            raise UserError(
                f"{src} has MD5 {actual}, expected {expected}: it is corrupt or truncated; "
                "delete it and download it again, or remove prepare.paths.cifar10 to download it"
            )
    return _extract(src, raw_dir)
