"""ImageNet16: the 16x16 downsampled ImageNet of Chrabaszcz et al. 2017, and its subsets.

`imagenet16-120` (NAS-Bench-201), `imagenet16-150` and `imagenet16-200` keep the images whose
1-based label is at most 120, 150 or 200 and shift the labels to 0..N-1; `imagenet16` keeps all
1,000 classes (docs/data.md#imagenet16). Published sizes, train / val: 151,700 / 6,000 (120),
190,272 / 7,500 (150), 254,775 / 10,000 (200), 1,281,167 / 50,000 (all).

The files have no stable public download (docs/data.md#imagenet16): put `train_data_batch_1`
.. `train_data_batch_10` and `val_data` (the `Imagenet16_train.zip` and `Imagenet16_val.zip`
of the downsampled-ImageNet release, unzipped) in a directory and name it in
`prepare.paths.<name>` or `prepare.paths.imagenet16` (shared by all four), or put them in
`<raw_dir>/imagenet16/`. Each file is checked against the MD5 that AutoDL publishes
(`xautodl/datasets/DownsampledImageNet.py`) and read with a restricted unpickler: a pickle
dict with `data`, uint8 (N, 3072) planar R, G, B rows of 16x16, and 1-based `labels`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnas.data.cifar import load_pickled_batch
from dnas.data.download import md5_file
from dnas.errors import UserError

SIDE = 16
IMAGE_BYTES = 3 * SIDE * SIDE
TRAIN_FILES = [f"train_data_batch_{i}" for i in range(1, 11)]
VAL_FILE = "val_data"
# Read at call time, so tests can point them at fixtures.
MD5 = {
    "train_data_batch_1": "27846dcaa50de8e21a7d1a35f30f0e91",
    "train_data_batch_2": "c7254a054e0e795c69120a5727050e3f",
    "train_data_batch_3": "4333d3df2e5ffb114b05d2ffc19b1e87",
    "train_data_batch_4": "1620cdf193304f4a92677b695d70d10f",
    "train_data_batch_5": "348b3c2fdbb3940c4e9e834affd3b18d",
    "train_data_batch_6": "6e765307c242a1b3d7d5ef9139b48945",
    "train_data_batch_7": "564926d8cbf8fc4818ba23d2faac7564",
    "train_data_batch_8": "f4755871f718ccb653440b9dd0ebac66",
    "train_data_batch_9": "bb6dd660c38c58552125b1a92f86b5d4",
    "train_data_batch_10": "8f03f34ac4b42271a294f91bf480f29b",
    "val_data": "3410e3017fdaefba8d5073aaa65e4bd6",
}
CLASSES = {"imagenet16": 1000, "imagenet16-120": 120, "imagenet16-150": 150, "imagenet16-200": 200}
# Published sizes (train, val) of each variant (docs/data.md#imagenet16).
SIZES = {
    "imagenet16": (1_281_167, 50_000),
    "imagenet16-120": (151_700, 6_000),
    "imagenet16-150": (190_272, 7_500),
    "imagenet16-200": (254_775, 10_000),
}
# The AutoDL constants (docs/data.md#imagenet16); train augmentation: flip + RandomCrop(16, pad 2).
MEAN = [x / 255 for x in (122.68, 116.66, 104.01)]
STD = [x / 255 for x in (63.22, 61.26, 65.09)]
AUGMENT = {"flip": True, "pad": 2}
SOURCE = {
    "origin": "downsampled ImageNet 16x16 (Chrabaszcz et al. 2017), local files",
    "md5": "AutoDL xautodl/datasets/DownsampledImageNet.py",
    "homepage": "https://patrykchrabaszcz.github.io/Imagenet32/",
}


def _fix(name: str, raw_dir: Path) -> str:
    return (
        f"ImageNet16 has no stable public download: put {', '.join(TRAIN_FILES[:1])} .. "
        f"{TRAIN_FILES[-1]} and {VAL_FILE} (Imagenet16_train.zip and Imagenet16_val.zip, "
        f"unzipped) in {raw_dir / 'imagenet16'}/ or set prepare.paths.{name} (or "
        "prepare.paths.imagenet16) to their directory"
    )


def find_dir(path: str | None, name: str, raw_dir: Path) -> Path:
    """The directory that holds the files: `path`, or one directory below it."""
    root = Path(path).expanduser() if path else Path(raw_dir) / "imagenet16"
    if not root.is_dir():
        what = f"prepare.paths = {path}" if path else f"{root}"
        raise UserError(f"{what} is not a directory; {_fix(name, Path(raw_dir))}")
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    for d in candidates:
        if (d / TRAIN_FILES[0]).is_file() or (d / VAL_FILE).is_file():
            return d
    raise UserError(f"no ImageNet16 files in {root}; {_fix(name, Path(raw_dir))}")


def read_file(file: Path, keep: int, name: str, raw_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images with 1-based label <= `keep`, as uint8 (n, 16, 16, 3), and labels shifted to 0.."""
    if not file.is_file():
        raise UserError(f"missing ImageNet16 file {file}; {_fix(name, raw_dir)}")
    expected = MD5[file.name]
    actual = md5_file(file)
    if actual != expected:
        raise UserError(
            f"{file} has MD5 {actual}, expected {expected} (AutoDL's published checksum): it is "
            "corrupt, truncated or not the original file; copy it again"
        )
    data, labels = load_pickled_batch(file, IMAGE_BYTES, "labels", "an ImageNet16 batch")
    if labels.size and (labels.min() < 1 or labels.max() > 1000):
        raise UserError(
            f"{file} has labels outside 1..1000 (min {labels.min()}, max {labels.max()}); "
            "it is not an ImageNet16 batch"
        )
    mask = labels <= keep
    x = data[mask].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), labels[mask] - 1


def load(path: str | None, name: str, raw_dir: Path) -> dict[str, np.ndarray]:
    """ImageNet16 variant `name` as uint8 (N, 16, 16, 3) images and 0-based int64 labels."""
    raw_dir = Path(raw_dir)
    keep = CLASSES[name]
    d = find_dir(path, name, raw_dir)
    missing = [f for f in [*TRAIN_FILES, VAL_FILE] if not (d / f).is_file()]
    if missing:
        raise UserError(f"{d} lacks {', '.join(missing)}; {_fix(name, raw_dir)}")
    train = [read_file(d / f, keep, name, raw_dir) for f in TRAIN_FILES]
    test_x, test_y = read_file(d / VAL_FILE, keep, name, raw_dir)
    return {
        "train_x": np.concatenate([x for x, _ in train]),
        "train_y": np.concatenate([y for _, y in train]),
        "test_x": test_x,
        "test_y": test_y,
    }


def source(name: str, p) -> tuple[dict, dict]:
    """The arrays and card entries of an ImageNet16 variant (the registry's array-family
    interface)."""
    path = p.paths.get(name) or p.paths.get("imagenet16")
    arrays = load(path, name, Path(p.raw_dir))
    meta = {
        "num_classes": CLASSES[name],
        "augment": AUGMENT,
        "source": SOURCE,
        "mean": MEAN,
        "std": STD,
        "published_counts": dict(zip(("train", "test"), SIZES[name])),
    }
    return arrays, meta
