"""Datasets: a registry of preparers, the prepared-data format and the device-side loader.

Each image preparer turns one source into train/test uint8 arrays; `prepare_dataset` adds the
split indices and the card and writes `data/prepared/<name>/`. ImageNet (a folder tree too big
to copy) gets a manifest instead, and text corpora token-id arrays and a vocabulary.
"""

from __future__ import annotations

from pathlib import Path

from dnas.config import TEXT_DATASETS, Prepare
from dnas.data import digits
from dnas.data.prepared import Prepared, channel_stats, load_prepared, write_prepared
from dnas.data.splits import make_splits

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
    split = make_splits(arrays["train_y"], arrays["test_y"], protocol, p.seed, split_file)
    card = {**meta, **split}
    write_prepared(out, name, arrays, card)
    return out
