"""Datasets: a registry of preparers, the prepared-data format and the device-side loader.

Each image preparer turns one source into train/test uint8 arrays; `prepare_dataset` adds the
split indices and the card and writes `data/prepared/<name>/`. ImageNet (a folder tree too big
to copy) gets a manifest instead, and text corpora token-id arrays and a vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnas.config import TEXT_DATASETS, Prepare
from dnas.data import digits
from dnas.data.prepared import Prepared, channel_stats, load_prepared, write_prepared
from dnas.data.splits import SEARCH_SPLIT_FIX, make_splits, stratified_split
from dnas.errors import UserError

__all__ = ["Prepared", "load_prepared", "prepare_dataset", "PREPARED_ROOT"]

PREPARED_ROOT = Path("data/prepared")


def _load_source(name: str, p: Prepare) -> tuple[dict, dict]:
    """Arrays and the dataset-specific card entries for `name`."""
    if name == "digits":
        arrays = digits.load(p.test_fraction, p.seed)
        mean, std = channel_stats(arrays["train_x"])
        meta = {
            "num_classes": digits.NUM_CLASSES,
            "augment": digits.AUGMENT,
            "source": digits.SOURCE,
            "test_split": {"protocol": "stratified", "fraction": p.test_fraction},
        }
        return arrays, {**meta, "mean": mean, "std": std}
    if name in ("cifar10", "cifar100"):
        from dnas.data import cifar

        sp = cifar.spec(name)
        arrays = cifar.load(p.paths.get(name), Path(p.raw_dir), name)
        if name == "cifar10":
            meta = {"source": cifar.SOURCE, "mean": cifar.MEAN, "std": cifar.STD}
        else:
            source = {**cifar.SOURCE, "origin": sp.url, "md5": sp.md5, "labels": "fine"}
            source["format"] = "CIFAR-100 binary version"
            meta = {"source": source, "mean": cifar.C100_MEAN, "std": cifar.C100_STD}
        return arrays, {**meta, "num_classes": sp.num_classes, "augment": cifar.AUGMENT}
    if name.startswith("imagenet16"):
        from dnas.data import imagenet16

        path = p.paths.get(name) or p.paths.get("imagenet16")
        arrays = imagenet16.load(path, name, Path(p.raw_dir))
        meta = {
            "num_classes": imagenet16.CLASSES[name],
            "augment": imagenet16.AUGMENT,
            "source": imagenet16.SOURCE,
            "mean": imagenet16.MEAN,
            "std": imagenet16.STD,
            "published_counts": dict(zip(("train", "test"), imagenet16.SIZES[name])),
        }
        return arrays, meta
    if name in p.custom:
        from dnas.data import custom

        return custom.load(name, p.custom[name], p.test_fraction, p.seed)
    raise ValueError(f"unknown dataset {name!r}")


def prepare_dataset(name: str, p: Prepare, root: str | Path = PREPARED_ROOT) -> Path:
    """Prepare dataset `name` into `root/name`; return that directory.

    A failure leaves an earlier `root/name` as it was.
    """
    out = Path(root) / name
    if name in TEXT_DATASETS:
        from dnas.data import text

        text.prepare(name, p, out)
        return out
    if name == "imagenet":
        from dnas.data import imagenet

        imagenet.prepare(p, out)
        return out
    arrays, meta = _load_source(name, p)
    protocol, split_file = p.split_for(name)
    fix = _search_split_fix(p, len(arrays["train_y"]) + len(arrays["test_y"]), "test_split" in meta)
    split = make_splits(arrays["train_y"], arrays["test_y"], protocol, p.seed, split_file, fix)
    card = {**meta, **split}
    write_prepared(out, name, arrays, card)
    return out


def _search_split_fix(p: Prepare, total: int, held_out: bool) -> str:
    """The advice when the search halves cannot be made: with a held-out test set, a large
    `test_fraction` may be what left the train set too small."""
    if not held_out:
        return SEARCH_SPLIT_FIX
    held = int(np.ceil(p.test_fraction * total))
    return (
        f"prepare.test_fraction = {p.test_fraction} holds out {held} of {total} examples; "
        "lower it, or use prepare.search_split: random"
    )


def check_prepare(p: Prepare) -> None:
    """Raise `UserError` if `prepare` asks for splits that cannot be made, without preparing:
    the held-out test set (`test_fraction`) and the search halves (`search_split`, a
    `split_file`) of digits and of the user's own datasets, from their labels alone. A user's
    dataset whose source is missing or unreadable is left to its prepare stage, which says
    so if it runs (it may be prepared already and need no rerun)."""
    for name in p.datasets:
        if name == "digits":
            from sklearn.datasets import load_digits

            labels, test = load_digits().target.astype(np.int64), None
            fix, what = digits.TEST_FRACTION_FIX, f"prepare.test_fraction = {p.test_fraction}"
        elif name in p.custom:
            from dnas.data import custom

            spec = p.custom[name]
            if not Path(spec.path).expanduser().exists():
                continue
            try:
                labels, test = custom.labels(spec)
            except UserError:
                continue
            fix, what = custom.HOLD_OUT_FIX, custom.hold_out_key(name, p.test_fraction)
        else:
            continue
        held_out = test is None
        if held_out:
            first, second = stratified_split(labels, p.test_fraction, p.seed, fix, what)
            labels, test = labels[first], labels[second]
        total = len(labels) + len(test)
        fix = _search_split_fix(p, total, held_out)
        protocol, split_file = p.split_for(name)
        make_splits(labels, test, protocol, p.seed, split_file, fix)
