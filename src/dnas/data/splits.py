"""Reproducible split protocols, written as index lists into the dataset's train (or test) set.

The search needs two disjoint sets: search-train for the weights and search-valid for the
architecture. The papers make them differently (docs/data.md#split-protocols):

- `stratified`: seeded, class-balanced halves of the train set (this project's default);
- `halves`: the first and the last half by index, unshuffled (DARTS);
- `random`: a seeded random permutation cut in half (GDAS 2019 code, `--train_portion 0.5`);
- `file`: the `train` / `valid` lists of a split file in the AutoDL format (`cifar-split.txt`,
  `ImageNet16-120-split.txt`, docs/data.md#split-files);
- `test_half`: the whole train set for the weights and half of the test set for the
  architecture (AutoDL on CIFAR-100 and ImageNet16-120): the `xvalid` list of a split file
  (`cifar100-test-split.txt`, `imagenet-16-120-test-split.txt`), else a seeded stratified half.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from dnas.errors import UserError
from dnas.io import sha256_file

SEARCH_SPLIT_FIX = "use prepare.search_split: random, or give every class at least two examples"


def path_kind(path: Path) -> str | None:
    """What is at `path` (following links): "a folder", "a file", "a character device" (e.g.
    /dev/null), ...; None when nothing is, for messages that say more than "does not exist"."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a link loop, a folder on the way that is not yours
        return f"unreadable ({exc.strerror})"
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISREG, "a file"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def stratified_split(
    labels: np.ndarray,
    fraction: float,
    seed: int,
    fix: str = SEARCH_SPLIT_FIX,
    what: str = "prepare.search_split = stratified",
    names: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, class-balanced split: sorted (first, second) indices, `fraction` in second.
    When the classes are too small to split, the error starts with `what` (the key that asked
    for the split), names the classes (by `names` when given) and ends with the advice `fix`."""
    idx = np.arange(len(labels))
    # counts of the labels present (np.unique, not bincount: no array as long as the largest
    # label, so a label near 1e9 costs nothing)
    values, counts = np.unique(labels, return_counts=True)
    rare = values[counts < 2]
    n_second = int(np.ceil(fraction * len(labels)))
    small = min(n_second, len(labels) - n_second)
    if rare.size or small < len(values):
        if rare.size:
            few = ", ".join(_class(names, int(v)) for v in rare[:5])
            more = f" and {rare.size - 5} more" if rare.size > 5 else ""
            one = rare.size == 1
            few = (
                f"{'class' if one else 'classes'} {few}{more} "
                f"{'has' if one else 'have'} a single example"
            )
        else:
            few = (
                f"a {fraction:g} cut of {len(labels)} examples leaves {small} on one side, "
                f"fewer than the {len(values)} classes"
            )
        raise UserError(f"{what}: cannot split class-balanced: {few}; {fix}")
    first, second = train_test_split(
        idx, test_size=fraction, stratify=labels, random_state=seed, shuffle=True
    )
    return np.sort(first), np.sort(second)


def _class(names: list[str] | None, label: int) -> str:
    """A class as a message names it: its name when the dataset has names, else its label."""
    if names is not None and 0 <= label < len(names):
        return repr(names[label])
    return str(label)


def halves_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """First half / last half by index, unshuffled: the DARTS protocol
    (docs/data.md#split-protocols)."""
    half = n // 2
    return np.arange(half), np.arange(half, n)


def random_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random permutation cut in half (GDAS 2019 code), each half sorted."""
    perm = np.random.default_rng(seed).permutation(n)
    half = n // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


def read_split_file(path: str | Path, keys: tuple[str, str], n: int) -> dict[str, np.ndarray]:
    """Two index lists from a split file in the AutoDL format, checked against a set of `n`.

    AutoDL writes each entry as `[type, values]` (e.g. `"train": ["int", ["0", "5", ...]]`,
    docs/data.md#split-files); a plain list of integers is accepted too. The lists must be
    non-empty, disjoint, free of duplicates and inside 0..n-1.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        kind = path_kind(path)
        what = "does not exist" if kind is None else f"is {kind}, not a JSON split file"
        raise UserError(f"prepare.split_file = {path} {what}")
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a JSON split file ({exc})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a JSON object with keys {keys[0]!r} and {keys[1]!r}")
    out = {}
    for key in keys:
        if key not in raw:
            have = ", ".join(map(repr, raw)) or "none"
            raise UserError(
                f"{path} has no {key!r} list (keys: {have}); with search_split "
                f"{'test_half' if key == 'xvalid' else 'file'} it needs {keys[0]!r} and {keys[1]!r}"
            )
        value = raw[key]
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
            kind, value = value
            if kind != "int":
                raise UserError(f"{path}: {key!r} is of type {kind!r}, expected 'int'")
        try:
            idx = np.array([int(v) for v in value], dtype=np.int64)
        except (TypeError, ValueError):
            raise UserError(f"{path}: {key!r} must be a list of integer indices") from None
        if idx.size == 0:
            raise UserError(f"{path}: {key!r} is empty")
        if idx.min() < 0 or idx.max() >= n:
            raise UserError(
                f"{path}: {key!r} has indices outside 0..{n - 1} (min {idx.min()}, "
                f"max {idx.max()}); is it the split file of another dataset?"
            )
        if len(np.unique(idx)) != len(idx):
            raise UserError(f"{path}: {key!r} lists some indices more than once")
        out[key] = idx
    common = np.intersect1d(out[keys[0]], out[keys[1]])
    if common.size:
        raise UserError(
            f"{path}: {keys[0]!r} and {keys[1]!r} share {common.size} indices (e.g. {common[0]})"
        )
    return out


def search_split(
    labels: np.ndarray,
    protocol: str,
    seed: int,
    fix: str = SEARCH_SPLIT_FIX,
    names: list[str] | None = None,
) -> dict[str, list[int]]:
    """Halve a train set into search-train (weights) and search-valid (architecture)."""
    if protocol == "stratified":
        a, b = stratified_split(labels, 0.5, seed, fix, names=names)
    elif protocol == "halves":
        a, b = halves_split(len(labels))
    elif protocol == "random":
        a, b = random_split(len(labels), seed)
    else:
        raise ValueError(f"unknown split protocol {protocol!r}")
    return {"search_train": a.tolist(), "search_valid": b.tolist()}


def make_splits(
    train_y: np.ndarray,
    test_y: np.ndarray,
    protocol: str,
    seed: int,
    split_file: str | None = None,
    fix: str = SEARCH_SPLIT_FIX,
    names: list[str] | None = None,
) -> dict:
    """The card entries of a split protocol: `splits`, `search_split` and, when a split
    indexes the test set, `split_sources` (split name -> "test"). `fix`: the advice when the
    stratified halves cannot be made; `names`: the class names its message uses."""
    meta: dict = {"protocol": protocol, "seed": seed}
    sources = {}
    if protocol in ("stratified", "halves", "random"):
        splits = search_split(train_y, protocol, seed, fix, names)
    elif protocol == "file":
        lists = read_split_file(split_file, ("train", "valid"), len(train_y))
        splits = {"search_train": lists["train"].tolist(), "search_valid": lists["valid"].tolist()}
    elif protocol == "test_half":
        if split_file:
            valid = read_split_file(split_file, ("xvalid", "xtest"), len(test_y))["xvalid"]
        else:
            _, valid = stratified_split(
                test_y,
                0.5,
                seed,
                what="prepare.search_split = test_half (half the test set)",
                names=names,
            )
        splits = {
            "search_train": list(range(len(train_y))),
            "search_valid": np.sort(valid).tolist(),
        }
        sources = {"search_valid": "test"}
    else:
        raise ValueError(f"unknown split protocol {protocol!r}")
    if split_file and protocol in ("file", "test_half"):
        meta["file"] = Path(split_file).name
        meta["file_sha256"] = sha256_file(Path(split_file).expanduser())
    out = {"splits": splits, "search_split": meta}
    if sources:
        out["split_sources"] = sources
    return out
