"""CIFAR-10 and CIFAR-100: 60,000 32x32 colour images in 10 or 100 classes (50,000 train,
10,000 test).

Read from the official binary archive (downloaded into `prepare.raw_dir` unless
`prepare.paths.cifar10` / `prepare.paths.cifar100` names a local copy), or from a local copy of
the binary or the python version, as a directory or as the `.tar.gz` archive. The python
version's pickles are read with `dnas.io.restricted_load`, allowing numpy arrays and nothing else.
CIFAR-100 is read with its 100 fine labels. File formats: docs/data.md#cifar.
"""

from __future__ import annotations

import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnas.data.download import download, md5_file, safe_extract_tar
from dnas.errors import UserError
from dnas.io import restricted_load

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

# CIFAR-100 (same page). Normalisation: the GDAS code's constants (docs/data.md#cifar).
C100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
C100_MD5 = "03b5dce01913d631647c71ecec9e9cb8"
C100_PYTHON_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
C100_PYTHON_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
C100_MEAN = [x / 255 for x in (129.3, 124.1, 112.4)]
C100_STD = [x / 255 for x in (68.2, 65.4, 70.4)]
C100_BIN_DIR = "cifar-100-binary"
C100_PY_DIR = "cifar-100-python"

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


@dataclass(frozen=True)
class Spec:
    """What differs between CIFAR-10 and CIFAR-100."""

    name: str  # the dataset name, also its prepare.paths key
    title: str
    num_classes: int
    url: str
    md5: str
    python_url: str
    python_md5: str
    bin_dir: str
    py_dir: str
    train_files: tuple[str, ...]
    test_file: str
    label_offset: int  # binary records: label bytes before the pixels; the last one is used
    label_key: str  # python batches: the dict key of the labels

    @property
    def fix(self) -> str:
        return (
            f"set prepare.paths.{self.name} to a directory with {self.bin_dir}/ or "
            f"{self.py_dir}/, or to the archive {_archive_name(self.url)} or "
            f"{_archive_name(self.python_url)}, or remove prepare.paths.{self.name} to "
            "download it"
        )


def spec(name: str = "cifar10") -> Spec:
    """The spec of `name`, read from the module constants at call time (tests patch them)."""
    if name == "cifar10":
        return Spec(
            "cifar10", "CIFAR-10", NUM_CLASSES, URL, MD5, PYTHON_URL, PYTHON_MD5, BIN_DIR,
            PY_DIR, tuple(TRAIN_BATCHES), TEST_BATCH, 1, "labels",
        )  # fmt: skip
    if name == "cifar100":
        return Spec(
            "cifar100", "CIFAR-100", 100, C100_URL, C100_MD5, C100_PYTHON_URL, C100_PYTHON_MD5,
            C100_BIN_DIR, C100_PY_DIR, ("train",), "test", 2, "fine_labels",
        )  # fmt: skip
    raise ValueError(f"not a CIFAR dataset: {name!r}")


def _archive_name(url: str) -> str:
    return Path(urllib.parse.urlparse(url).path).name


def _known_md5(sp: Spec) -> dict[str, str]:
    return {_archive_name(sp.url): sp.md5, _archive_name(sp.python_url): sp.python_md5}


# --- batch readers -----------------------------------------------------------------------


def _check_labels(labels: np.ndarray, file: Path, sp: Spec) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= sp.num_classes):
        raise UserError(
            f"{file} has labels outside 0..{sp.num_classes - 1} "
            f"(min {labels.min()}, max {labels.max()}); it is not a {sp.title} batch"
        )
    return labels.astype(np.int64)


def _planar_to_hwc(data: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of R, G, B planes -> (N, 32, 32, 3)."""
    return np.ascontiguousarray(data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1))


def _require(file: Path, sp: Spec) -> Path:
    if not file.is_file():
        raise UserError(f"missing {sp.title} file {file}; {sp.fix}")
    return file


def read_bin_batch(file: Path, sp: Spec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One binary-version batch: records of label bytes + 3072 planar pixel bytes (CIFAR-10:
    one label byte; CIFAR-100: the coarse, then the fine label byte)."""
    sp = sp or spec()
    record = sp.label_offset + IMAGE_BYTES
    raw = np.fromfile(_require(file, sp), dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise UserError(
            f"{file} is corrupt or truncated: {raw.size} bytes is not a positive multiple of "
            f"{record} ({sp.label_offset} label byte(s) + {IMAGE_BYTES} pixel bytes per image);"
            " delete it and extract or download it again"
        )
    records = raw.reshape(-1, record)
    labels = records[:, sp.label_offset - 1]
    return _planar_to_hwc(records[:, sp.label_offset :]), _check_labels(labels, file, sp)


def load_pickled_batch(
    file: Path, image_bytes: int, label_key: str, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """`data` (N, image_bytes) uint8 and int64 labels from a pickled dict (the CIFAR python
    batches and the ImageNet16 files), unpickled without running code."""
    batch = restricted_load(file, NUMPY_ARRAY_GLOBALS, what)
    if not isinstance(batch, dict):
        raise UserError(f"{file} is not {what}: it holds a {type(batch).__name__}")
    # Python 2 pickles read with latin1 have str keys; ones written by Python 3, bytes keys.
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get(label_key)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != image_bytes
        or labels is None
        or len(labels) != len(data)
    ):
        raise UserError(
            f"{file} is not {what}: expected a dict with 'data' as uint8 (N, {image_bytes}) and "
            f"N {label_key!r}"
        )
    return data, np.asarray(labels, dtype=np.int64)


def read_py_batch(file: Path, sp: Spec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One python-version batch: a pickled dict with `data` (N, 3072) uint8 and the labels
    (`labels` in CIFAR-10, `fine_labels` in CIFAR-100)."""
    sp = sp or spec()
    data, labels = load_pickled_batch(
        _require(file, sp), IMAGE_BYTES, sp.label_key, f"a {sp.title} batch"
    )
    return _planar_to_hwc(data), _check_labels(labels, file, sp)


def read_batches(batch_dir: Path, fmt: str, sp: Spec | None = None) -> dict[str, np.ndarray]:
    """Train = the train batches in order, test = the test batch, from a `bin` or `py` dir."""
    sp = sp or spec()
    read, suffix = (read_bin_batch, ".bin") if fmt == "bin" else (read_py_batch, "")
    train = [read(batch_dir / f"{name}{suffix}", sp) for name in sp.train_files]
    test_x, test_y = read(batch_dir / f"{sp.test_file}{suffix}", sp)
    return {
        "train_x": np.concatenate([x for x, _ in train]),
        "train_y": np.concatenate([y for _, y in train]),
        "test_x": test_x,
        "test_y": test_y,
    }


def find_batches(root: Path, sp: Spec | None = None) -> tuple[Path, str]:
    """The batch directory under (or at) `root` and its format, preferring the binary one."""
    sp = sp or spec()
    if root.name == sp.bin_dir:
        return root, "bin"
    if root.name == sp.py_dir:
        return root, "py"
    for sub, fmt in ((sp.bin_dir, "bin"), (sp.py_dir, "py")):
        if (root / sub).is_dir():
            return root / sub, fmt
    # A batch directory under another name.
    if (root / f"{sp.train_files[0]}.bin").is_file():
        return root, "bin"
    if (root / sp.train_files[0]).is_file():
        return root, "py"
    raise UserError(
        f"no {sp.title} batches in {root}: expected {sp.bin_dir}/ or {sp.py_dir}/; {sp.fix}"
    )


# --- entry point -------------------------------------------------------------------------


def _extract(archive: Path, raw_dir: Path, sp: Spec) -> dict[str, np.ndarray]:
    # Drop batches left by an earlier archive so we read only what this one contains.
    for sub in (sp.bin_dir, sp.py_dir):
        shutil.rmtree(raw_dir / sub, ignore_errors=True)
    safe_extract_tar(archive, raw_dir)
    return read_batches(*find_batches(raw_dir, sp), sp)


def load(path: str | None, raw_dir: Path, name: str = "cifar10") -> dict[str, np.ndarray]:
    """CIFAR-10 (or CIFAR-100) as uint8 (N, 32, 32, 3) images and int64 labels for train and
    test.

    `path` None downloads the binary archive into `raw_dir`; otherwise it is a directory or
    a `.tar.gz` archive of either version (`prepare.paths.<name>`).
    """
    sp = spec(name)
    raw_dir = Path(raw_dir)
    if path is None:
        archive = download(
            sp.url,
            raw_dir / _archive_name(sp.url),
            sp.md5,
            desc=sp.title,
            hint=f"download {sp.url} elsewhere and set prepare.paths.{sp.name} to the local copy",
        )
        return _extract(archive, raw_dir, sp)

    key = f"prepare.paths.{sp.name}"
    src = Path(path).expanduser()
    if src.is_dir():
        return read_batches(*find_batches(src, sp), sp)
    if not src.exists():
        raise UserError(f"{key} = {path} does not exist; {sp.fix}")
    if not src.name.endswith((".tar.gz", ".tgz", ".tar")):
        raise UserError(f"{key} = {path} is neither a directory nor a .tar.gz; {sp.fix}")
    expected = _known_md5(sp).get(src.name)
    if expected is not None:
        actual = md5_file(src)
        if actual != expected:
            raise UserError(
                f"{src} has MD5 {actual}, expected {expected}: it is corrupt or truncated; "
                f"delete it and download it again, or remove {key} to download it"
            )
    return _extract(src, raw_dir, sp)


def source(name: str, p) -> tuple[dict, dict]:
    """The arrays and card entries of CIFAR-10 or CIFAR-100 (the registry's array-family
    interface)."""
    sp = spec(name)
    arrays = load(p.paths.get(name), Path(p.raw_dir), name)
    if name == "cifar10":
        meta = {"source": SOURCE, "mean": MEAN, "std": STD}
    else:
        origin = {**SOURCE, "origin": sp.url, "md5": sp.md5, "labels": "fine"}
        origin["format"] = "CIFAR-100 binary version"
        meta = {"source": origin, "mean": C100_MEAN, "std": C100_STD}
    return arrays, {**meta, "num_classes": sp.num_classes, "augment": AUGMENT}
