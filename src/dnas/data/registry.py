"""The dataset registry: which family module prepares, reads and streams each dataset.

A *family* module knows one kind of source: `digits`, `cifar`, `imagenet16` and `custom` give
train/test image arrays; `text` writes token ids and a vocabulary (the built-in corpora and
the user's own `format: text`); `imagenet` writes a manifest
of an image-folder tree that is streamed from disk. This module is the only one in the data
layer that imports a family, and it does so lazily (most of them pull in torch), so the shared
modules below the families (`prepared`: the on-disk format; `splits`; `batches`; `images`;
`download`) never import one back (docs/architecture.md#layers).

What a family module provides:

- an array family: `source(name, p) -> (arrays, card entries)`; `prepare_dataset` adds the
  split indices and writes the arrays and the card (`prepared.write_prepared`);
- a family with its own format (card `kind` other than "images"): `prepare(name, p, out)`,
  `read_prepared(path, card, verify)` and `split_loader(data, split, batch_size, device, ...)`;
- optionally `check_labels(name, p)`: the labels the splits are made from, read without
  preparing, for `check_prepare` (train labels, test labels or None, the advice, the key to
  name, and optionally the class names the messages use);
- optionally `image_side(name, p)`: the side of the prepared images, known before preparing,
  for `check_cutout`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from dnas.config import Params, Prepare, is_text
from dnas.data.prepared import check_cutout_size, read_card, read_images, write_prepared
from dnas.data.splits import SEARCH_SPLIT_FIX, make_splits, stratified_split

PREPARED_ROOT = Path("data/prepared")

# A prepared dataset's card `kind` -> the family that reads and streams it; "images" (arrays,
# the default) is read by `prepared.read_images` and streamed by `loader.DeviceLoader`.
KINDS = {"text": "text", "folder": "imagenet"}


# Datasets known by name -> their family (after the text corpora, before ImageNet16's variants
# and the user's own datasets, as `family` checks).
NAMED = {"digits": "digits", "cifar10": "cifar", "cifar100": "cifar", "imagenet": "imagenet"}


def family(name: str, p: Prepare) -> str:
    """The family that prepares dataset `name` (the user's own text corpora: text)."""
    if is_text(name, p):
        return "text"
    if name in NAMED:
        return NAMED[name]
    if name.startswith("imagenet16"):
        return "imagenet16"
    if name in p.custom:
        return "custom"
    raise ValueError(f"unknown dataset {name!r}")


def module(key: str) -> ModuleType:
    """The family module `key`, imported on first use: the one place that imports them."""
    if key == "digits":
        from dnas.data import digits as mod
    elif key == "cifar":
        from dnas.data import cifar as mod
    elif key == "imagenet16":
        from dnas.data import imagenet16 as mod
    elif key == "custom":
        from dnas.data import custom as mod
    elif key == "text":
        from dnas.data import text as mod
    elif key == "imagenet":
        from dnas.data import imagenet as mod
    else:
        raise ValueError(f"unknown dataset family {key!r}")
    return mod


def format_module(kind: str) -> ModuleType:
    """The family module that reads and streams prepared data whose card says `kind`."""
    return module(KINDS[kind])


def prepare_dataset(name: str, p: Prepare, root: str | Path = PREPARED_ROOT) -> Path:
    """Prepare dataset `name` into `root/name`; return that directory.

    A failure leaves an earlier `root/name` as it was.
    """
    out = Path(root) / name
    mod = module(family(name, p))
    if hasattr(mod, "prepare"):  # a family that writes its own format
        mod.prepare(name, p, out)
        return out
    arrays, meta = mod.source(name, p)
    protocol, split_file = p.split_for(name)
    fix = _search_split_fix(p, len(arrays["train_y"]) + len(arrays["test_y"]), "test_split" in meta)
    names = meta.get("classes")
    split = make_splits(
        arrays["train_y"], arrays["test_y"], protocol, p.seed, split_file, fix, names
    )
    card = {**meta, **split}
    write_prepared(out, name, arrays, card)
    return out


SOURCES_ROOT = Path("data/sources")


def source_settings(name: str, p: Prepare) -> dict:
    """The settings of `prepare` that belong to dataset `name` alone: its source (the user's
    `prepare.custom.<name>`, with defaults filled in, or `prepare.paths.<name>`) and its split
    protocol and file. The `validate` stage writes them to `data/sources/<name>.json`, the
    dependency through which `prepare@<name>` tracks them: DVC cannot track a params key that
    only some datasets have (`prepare.custom.<name>`), and tracking the whole `prepare.custom`
    block would re-prepare every dataset when one is added (docs/pipeline.md)."""
    protocol, split_file = p.split_for(name)
    out = {"dataset": name, "search_split": protocol, "split_file": split_file}
    if name in p.custom:
        out["custom"] = p.custom[name].model_dump()
    else:
        out["path"] = p.paths.get(name)
    return out


def write_source_settings(p: Prepare, root: str | Path = SOURCES_ROOT) -> None:
    """`root/<name>.json` for every dataset in `prepare.datasets` (the same bytes for the same
    settings), and no file for a dataset no longer listed."""
    from dnas.io import write_json

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in p.datasets:
        write_json(root / f"{name}.json", source_settings(name, p))
    for stale in root.glob("*.json"):
        if stale.stem not in p.datasets:
            stale.unlink()


def load_prepared(path: str | Path, verify: bool = True):
    """Read a prepared dataset, checking that it exists and matches its card's checksums.

    Image arrays give a `Prepared`; an image-folder manifest (ImageNet) a `FolderPrepared`;
    a text corpus a `TextPrepared`.
    """
    path = Path(path)
    card = read_card(path)
    kind = card.get("kind", "images")
    if kind == "images":
        return read_images(path, card, verify)
    return format_module(kind).read_prepared(path, card, verify)


def _search_split_fix(p: Prepare, total: int, held_out: bool) -> str:
    """The advice when the search halves cannot be made: with a held-out test set, a large
    `test_fraction` may be what left the train set too small."""
    if not held_out:
        return f"add examples to it, or {SEARCH_SPLIT_FIX}"
    held = int(np.ceil(p.test_fraction * total))
    return (
        f"add examples to it (prepare.test_fraction = {p.test_fraction} holds out {held} of "
        f"{total} examples for the test set: lowering it helps too), or use "
        "prepare.search_split: random"
    )


def check_prepare(p: Prepare) -> None:
    """Raise `UserError` if `prepare` asks for splits that cannot be made, without preparing:
    the held-out test set (`test_fraction`) and the search halves (`search_split`, a
    `split_file`) of every dataset whose family can read its labels cheaply (digits, the
    user's own datasets), from the labels alone."""
    for name in p.datasets:
        try:
            mod = module(family(name, p))
        except ValueError:
            continue
        found = mod.check_labels(name, p) if hasattr(mod, "check_labels") else None
        if found is None:
            continue
        labels, test, fix, what, *rest = found
        names = rest[0] if rest else None
        held_out = test is None
        if held_out:
            first, second = stratified_split(labels, p.test_fraction, p.seed, fix, what, names)
            labels, test = labels[first], labels[second]
        total = len(labels) + len(test)
        fix = _search_split_fix(p, total, held_out)
        protocol, split_file = p.split_for(name)
        make_splits(labels, test, protocol, p.seed, split_file, fix, names)


# The side of the prepared images of the built-in image datasets (ImageNet: the crop trained on).
SIDES = {"digits": 8, "cifar10": 32, "cifar100": 32, "imagenet": 224}


def image_side(name: str, p: Prepare, root: str | Path = PREPARED_ROOT) -> int | None:
    """The side (the smaller of height and width) of dataset `name`'s prepared images, when it
    can be known before preparing: built in, from the source of a user's dataset, else from
    an earlier prepared card; None when it cannot."""
    if name in SIDES:
        return SIDES[name]
    if name.startswith("imagenet16"):
        return 16
    try:
        mod = module(family(name, p))
    except ValueError:
        return None
    side = mod.image_side(name, p) if hasattr(mod, "image_side") else None
    if side is None:
        try:
            shape = read_card(Path(root) / name).get("shape")
            side = int(min(shape[:2]))
        except Exception:  # noqa: BLE001 - no card, or not an image card: nothing to check
            return None
    return side


def check_cutout(p: Params, root: str | Path = PREPARED_ROOT) -> None:
    """Raise `UserError` if `train.cutout` is larger than the images of `train.dataset`
    (every image would be blanked, or nearly), when their size can be known before running."""
    if not p.train.cutout:
        return
    side = image_side(p.train.dataset, p.prepare, root)
    if side is not None:
        check_cutout_size(p.train.cutout, side, side, p.train.dataset)
