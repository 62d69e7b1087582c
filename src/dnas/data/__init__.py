"""Datasets: a registry of preparers, the prepared-data format and the device-side loader.

Each preparer turns one source into train/test uint8 arrays; `prepare_dataset` adds the split
indices and the card and writes `data/prepared/<name>/`.
"""

from __future__ import annotations

from pathlib import Path

from dnas.config import Prepare
from dnas.data import digits
from dnas.data.prepared import Prepared, channel_stats, load_prepared, write_prepared
from dnas.data.splits import search_split

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
    if name == "cifar10":
        from dnas.data import cifar

        arrays = cifar.load(p.paths.get("cifar10"), Path(p.raw_dir))
        meta = {
            "num_classes": cifar.NUM_CLASSES,
            "augment": cifar.AUGMENT,
            "source": cifar.SOURCE,
            "mean": cifar.MEAN,
            "std": cifar.STD,
        }
        return arrays, meta
    raise ValueError(f"unknown dataset {name!r}")


def prepare_dataset(name: str, p: Prepare, root: str | Path = PREPARED_ROOT) -> Path:
    """Prepare dataset `name` into `root/name`; return that directory."""
    arrays, meta = _load_source(name, p)
    splits = search_split(arrays["train_y"], p.search_split, p.seed)
    card = {
        **meta,
        "splits": splits,
        "search_split": {"protocol": p.search_split, "seed": p.seed},
    }
    out = Path(root) / name
    write_prepared(out, name, arrays, card)
    return out
