"""The prepared-data format every dataset is turned into, and its reader.

`data/prepared/<name>/` holds uint8 images (N, H, W, C) and int64 labels as `.npy` files
(never pickles) for the train and test sets, and `card.json` with the counts, per-class
counts, normalisation constants, augmentation defaults, split indices and SHA-256 checksums.
Search and training read only this format, so a new dataset needs only a preparer.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnas.errors import UserError, disk_errors
from dnas.io import dumps_json, sha256_file, umask

ARRAYS = ("train_x", "train_y", "test_x", "test_y")


@dataclass
class Prepared:
    """A prepared image dataset held in memory."""

    name: str
    train_x: np.ndarray  # uint8 (N, H, W, C)
    train_y: np.ndarray  # int64 (N,)
    test_x: np.ndarray
    test_y: np.ndarray
    card: dict

    @property
    def num_classes(self) -> int:
        return int(self.card["num_classes"])

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[-1])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of a named split: train, test, search_train, search_valid, or
        eval (the test examples no search split uses: all of test but under test_half)."""
        if name == "eval":
            idx = eval_indices(self.card, len(self.test_y))
            if idx is None:
                return self.test_x, self.test_y
            return self.test_x[idx], self.test_y[idx]
        if name in ("train", "test"):
            return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
        # test_half takes search-valid from the test set (docs/data.md#split-protocols); others
        # index train.
        source = self.card.get("split_sources", {}).get(name, "train")
        idx = np.asarray(self.card["splits"][name], dtype=np.int64)
        return getattr(self, f"{source}_x")[idx], getattr(self, f"{source}_y")[idx]


def eval_indices(card: dict, n_test: int) -> np.ndarray | None:
    """The test indices a model is scored on: None (all of the test set), or, when a search
    split takes examples from the test set (test_half: `xvalid`), the other ones (`xtest`),
    as NAS-Bench-201 reports CIFAR-100 and ImageNet16-120 (docs/protocols.md)."""
    used = [
        np.asarray(card["splits"][name], dtype=np.int64)
        for name, source in card.get("split_sources", {}).items()
        if source == "test"
    ]
    if not used:
        return None
    return np.setdiff1d(np.arange(n_test), np.concatenate(used))


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units."""
    xf = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
    return xf.mean(0).tolist(), xf.std(0).tolist()


def check_cutout_size(size: int, h: int, w: int, dataset: str) -> None:
    """Refuse a cutout square larger than the images: centred anywhere, it would blank all or
    nearly all of every image (a square of the image's side blanks a quarter to all of it)."""
    if size > min(h, w):
        raise UserError(
            f"train.cutout = {size} is larger than the {w}x{h} images of {dataset}, so it would "
            f"blank (nearly) every whole image; use at most {min(h, w)} (the papers use 16 on "
            "32x32, half the side) or 0 for none"
        )


@contextmanager
def atomic_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `out_dir`; swap it in for `out_dir` if the block succeeds.

    If anything fails, an earlier `out_dir` is left as it was and the temporary one removed; a
    full disk or a read-only directory is one `UserError` naming `out_dir`.
    """
    out_dir = Path(out_dir)
    with disk_errors(out_dir):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o777 & ~umask())  # mkdtemp makes 0700
    try:
        with disk_errors(out_dir):
            yield tmp
        backup = None
        if out_dir.exists():
            backup = out_dir.with_name(f".{out_dir.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            out_dir.rename(backup)
        tmp.rename(out_dir)
        if backup is not None:
            shutil.rmtree(backup)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def save_array(directory: Path, name: str, arr: np.ndarray) -> str:
    """Save `arr` as `directory/name` (.npy, no pickles); return its SHA-256."""
    np.save(directory / name, np.ascontiguousarray(arr), allow_pickle=False)
    return sha256_file(directory / name)


def write_prepared(
    out_dir: str | Path,
    name: str,
    arrays: dict[str, np.ndarray],
    card: dict,
) -> None:
    """Write arrays and card to `out_dir` atomically: built in a sibling temp dir, then swapped in.

    If anything fails, an earlier `out_dir` is left as it was.
    """
    for key in ARRAYS:
        if key not in arrays:
            raise ValueError(f"missing array {key}")
    for part in ("train", "test"):
        x, y = arrays[f"{part}_x"], arrays[f"{part}_y"]
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"{part}_x must be uint8 (N, H, W, C), got {x.dtype} {x.shape}")
        if len(x) != len(y):
            raise ValueError(f"{part}: {len(x)} images but {len(y)} labels")
    with atomic_dir(out_dir) as tmp:
        checksums = {}
        for key in ARRAYS:
            arr = arrays[key].astype(np.uint8 if key.endswith("_x") else np.int64)
            checksums[f"{key}.npy"] = save_array(tmp, f"{key}.npy", arr)
        num_classes = int(card["num_classes"])
        full = {
            **card,
            "name": name,
            "shape": list(arrays["train_x"].shape[1:]),
            "counts": {
                "train": len(arrays["train_y"]),
                "test": len(arrays["test_y"]),
                **{k: len(v) for k, v in card["splits"].items()},
            },
            "class_counts": {
                part: np.bincount(arrays[f"{part}_y"], minlength=num_classes).tolist()
                for part in ("train", "test")
            },
            "sha256": checksums,
        }
        (tmp / "card.json").write_text(dumps_json(full))


def refresh_hint(path: Path) -> str:
    """How to rebuild the prepared dataset in `path` (data/prepared/<name>)."""
    return f"run `dvc repro -f -s prepare@{Path(path).name}` to prepare it again"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number_list(v, n: int | None = None) -> bool:
    ok = isinstance(v, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
    )
    return ok and (n is None or len(v) == n)


# The entries the stages read from a card, by kind, with a check of each one's JSON type.
_CARD_ENTRIES = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "sha256": (
        lambda v: isinstance(v, dict) and all(isinstance(h, str) for h in v.values()),
        "an object of file name -> checksum",
    ),
}
_IMAGE_ENTRIES = {
    "num_classes": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "splits": (
        lambda v: (
            isinstance(v, dict)
            and all(isinstance(i, list) and all(_is_int(x) for x in i) for i in v.values())
        ),
        "an object of split name -> index list",
    ),
    "mean": (_is_number_list, "a list of numbers"),
    "std": (_is_number_list, "a list of numbers"),
}
_KIND_ENTRIES = {
    "images": {
        **_IMAGE_ENTRIES,
        "shape": (lambda v: _is_number_list(v, 3), "[height, width, channels]"),
        "augment": (lambda v: isinstance(v, dict), "an object"),
    },
    "folder": {**_IMAGE_ENTRIES, "root": (lambda v: isinstance(v, str), "a string")},
    "text": {"vocab_size": (lambda v: _is_int(v) and v >= 1, "a positive integer")},
}


def read_card(path: Path) -> dict:
    """`path/card.json`, checked to be an object with the entries the stages read (a missing
    entry or one of the wrong JSON type is a `UserError` naming the file and the fix)."""
    card_path = path / "card.json"
    if not card_path.is_file():
        raise UserError(
            f"{path}: no prepared dataset here (card.json missing); run `dvc repro` to prepare it"
        )
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{card_path}: unreadable ({exc}); {refresh_hint(path)}") from None
    if not isinstance(card, dict):
        raise UserError(
            f"{card_path}: a JSON {type(card).__name__}, not an object; {refresh_hint(path)}"
        )
    kind = card.get("kind", "images")
    entries = {**_CARD_ENTRIES, **_KIND_ENTRIES.get(kind, {})}
    if kind not in _KIND_ENTRIES:
        raise UserError(f"{card_path}: unknown kind {kind!r}; {refresh_hint(path)}")
    for key, (ok, what) in entries.items():
        if key not in card:
            raise UserError(f"{card_path}: no {key!r} entry; {refresh_hint(path)}")
        if not ok(card[key]):
            raise UserError(f"{card_path}: {key!r} is not {what}; {refresh_hint(path)}")
    return card


def verified_file(path: Path, card: dict, verify: bool = True) -> Path:
    """`path`, after checking that it exists and has the SHA-256 its card records."""
    if not path.is_file():
        raise UserError(f"{path}: missing; {refresh_hint(path.parent)}")
    expected = card["sha256"].get(path.name)
    if verify and expected is None:
        raise UserError(
            f"{path.parent / 'card.json'}: no checksum for {path.name}; {refresh_hint(path.parent)}"
        )
    if verify and sha256_file(path) != expected:
        raise UserError(
            f"{path}: checksum differs from card.json; the file is corrupt, "
            f"{refresh_hint(path.parent)}"
        )
    return path


def load_array(path: Path, card: dict, verify: bool = True) -> np.ndarray:
    try:
        return np.load(verified_file(path, card, verify), allow_pickle=False)
    except ValueError as exc:
        raise UserError(f"{path}: unreadable ({exc}); {refresh_hint(path.parent)}") from None


def read_images(path: Path, card: dict, verify: bool = True) -> Prepared:
    """The image arrays of a prepared dataset whose card `card` was read from `path`, checked
    against its checksums (`registry.load_prepared` reads every kind)."""
    arrays = {key: load_array(path / f"{key}.npy", card, verify) for key in ARRAYS}
    return Prepared(name=card["name"], card=card, **arrays)
