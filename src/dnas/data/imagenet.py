"""ImageNet (ILSVRC2012) from a local folder tree, streamed: prepared as a manifest, not copied.

`prepare.paths.imagenet` (or `<raw_dir>/imagenet`) must hold `train/<wnid>/*.JPEG` and
`val/<wnid>/*.JPEG` (the validation images sorted into class folders, as most ImageNet
copies are). Copying 150 GB into the DVC cache would help no one, so `data/prepared/imagenet/`
holds only a manifest: `train.tsv` and `test.tsv` (relative path, size in bytes, label per
line), `classes.txt` (the sorted class folders; line i = label i) and `card.json` (root,
counts, per-class counts, split indices, SHA-256 of the manifest files). A changed folder tree
gives a changed manifest, so DVC reruns what depends on it.

`FolderLoader` streams batches from the folders with Pillow decoding in worker processes
and GDAS's ImageNet augmentation (docs/data.md#imagenet): RandomResizedCrop(224), horizontal
flip and ColorJitter(0.4, 0.4, 0.4, 0.2) for training; Resize(256) and CenterCrop(224) for
evaluation; ImageNet mean and std. Every random choice comes from a seed per image derived from
the loader's seeded generator, so batches are the same for a seed whatever the worker count.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dnas.config import Prepare
from dnas.data.batches import PassOrder, cutout
from dnas.data.images import IMAGE_SUFFIXES, decode
from dnas.data.prepared import atomic_dir, eval_indices, verified_file
from dnas.data.splits import make_splits
from dnas.errors import UserError
from dnas.io import dumps_json, sha256_file

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
CROP = 224  # training crop and evaluation centre crop
RESIZE = 256  # evaluation: shorter side resized to this before the centre crop
SCALE = (0.08, 1.0)  # RandomResizedCrop area fraction and aspect ratio range
RATIO = (3 / 4, 4 / 3)
JITTER = (0.4, 0.4, 0.4, 0.2)  # brightness, contrast, saturation, hue
AUGMENT = {
    "random_resized_crop": CROP,
    "flip": True,
    "color_jitter": list(JITTER),
    "eval_resize": RESIZE,
    "eval_crop": CROP,
}
MANIFESTS = ("train.tsv", "test.tsv", "classes.txt")


@dataclass
class FolderPrepared:
    """A prepared image-folder dataset: file lists, labels and the card."""

    name: str
    root: Path
    train_files: list[str]
    train_y: np.ndarray
    test_files: list[str]
    test_y: np.ndarray
    classes: list[str]
    card: dict

    @property
    def num_classes(self) -> int:
        return int(self.card["num_classes"])

    @property
    def channels(self) -> int:
        return 3

    def split(self, name: str) -> tuple[list[str], np.ndarray]:
        if name == "eval":  # the test examples no search split uses (dnas.data.prepared)
            idx = eval_indices(self.card, len(self.test_y))
            if idx is None:
                return self.test_files, self.test_y
            return [self.test_files[i] for i in idx], self.test_y[idx]
        if name in ("train", "test"):
            return getattr(self, f"{name}_files"), getattr(self, f"{name}_y")
        source = self.card.get("split_sources", {}).get(name, "train")
        idx = np.asarray(self.card["splits"][name], dtype=np.int64)
        files = getattr(self, f"{source}_files")
        return [files[i] for i in idx], getattr(self, f"{source}_y")[idx]


# --- prepare -----------------------------------------------------------------------------


def _fix(root: Path) -> str:
    return (
        f"ImageNet is read from a local copy: put train/<wnid>/*.JPEG and val/<wnid>/*.JPEG "
        f"under {root}, or set prepare.paths.imagenet to the directory that holds train/ and val/"
    )


def list_tree(part_dir: Path, classes: list[str] | None = None) -> tuple[list, list[str]]:
    """(relative path, size, class name) of every image under `part_dir/<class>/`, sorted."""
    entries, found = [], []
    with os.scandir(part_dir) as it:
        dirs = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    for cls in dirs:
        with os.scandir(part_dir / cls) as it:
            files = sorted(
                (e.name, e.stat().st_size)
                for e in it
                if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES
            )
        if files:
            found.append(cls)
        entries.extend((f"{part_dir.name}/{cls}/{name}", size, cls) for name, size in files)
    return entries, found


def prepare(name: str, p: Prepare, out: Path) -> None:
    path = p.paths.get("imagenet")
    root = Path(path).expanduser() if path else Path(p.raw_dir) / "imagenet"
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; {_fix(root)}")
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise UserError(f"{root} has no {part}/ folder; {_fix(root)}")
    train, classes = list_tree(root / "train")
    if not classes:
        raise UserError(f"{root / 'train'} has no class folders with images; {_fix(root)}")
    loose = [
        e.name for e in os.scandir(root / "val") if Path(e.name).suffix.lower() in IMAGE_SUFFIXES
    ]
    if loose:
        raise UserError(
            f"{root / 'val'} holds {len(loose)} images directly (e.g. {sorted(loose)[0]}); "
            "sort them into one folder per class (val/<wnid>/), as train/ is, with the labels "
            "of the ILSVRC2012 devkit"
        )
    val, val_classes = list_tree(root / "val")
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise UserError(f"{root / 'val'} has classes that train/ lacks: {unknown[:5]}")
    if not val:
        raise UserError(f"{root / 'val'} has no images in class folders; {_fix(root)}")
    label = {c: i for i, c in enumerate(classes)}
    train_y = np.array([label[c] for _, _, c in train], dtype=np.int64)
    test_y = np.array([label[c] for _, _, c in val], dtype=np.int64)
    protocol, split_file = p.split_for("imagenet")
    split = make_splits(train_y, test_y, protocol, p.seed, split_file)
    with atomic_dir(out) as tmp:
        for name, rows in (("train.tsv", train), ("test.tsv", val)):
            with open(tmp / name, "w", encoding="utf-8", newline="\n") as f:
                f.writelines(f"{rel}\t{size}\t{label[c]}\n" for rel, size, c in rows)
        (tmp / "classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
        card = {
            "name": "imagenet",
            "kind": "folder",
            "root": str(root.resolve()),
            "num_classes": len(classes),
            "shape": [CROP, CROP, 3],
            "mean": MEAN,
            "std": STD,
            "augment": AUGMENT,
            "source": {"origin": "ILSVRC2012 train/ and val/ class folders, local"},
            "counts": {
                "train": len(train),
                "test": len(val),
                **{k: len(v) for k, v in split["splits"].items()},
            },
            "class_counts": {
                "train": np.bincount(train_y, minlength=len(classes)).tolist(),
                "test": np.bincount(test_y, minlength=len(classes)).tolist(),
            },
            "bytes": {"train": sum(s for _, s, _ in train), "test": sum(s for _, s, _ in val)},
            "sha256": {name: sha256_file(tmp / name) for name in MANIFESTS},
            **split,
        }
        (tmp / "card.json").write_text(dumps_json(card))


def _read_tsv(file: Path) -> tuple[list[str], np.ndarray]:
    files, labels = [], []
    for line in file.read_text(encoding="utf-8").splitlines():
        rel, _, label = line.split("\t")
        files.append(rel)
        labels.append(int(label))
    return files, np.asarray(labels, dtype=np.int64)


def read_prepared(path: Path, card: dict, verify: bool = True) -> FolderPrepared:
    for name in MANIFESTS:
        verified_file(path / name, card, verify)
    root = Path(card["root"])
    if not root.is_dir():
        raise UserError(
            f"{path}: the images it lists are under {root}, which is gone; set "
            "prepare.paths.imagenet to their new place and rerun the prepare stage"
        )
    train_files, train_y = _read_tsv(path / "train.tsv")
    test_files, test_y = _read_tsv(path / "test.tsv")
    classes = (path / "classes.txt").read_text(encoding="utf-8").split("\n")[:-1]
    return FolderPrepared(
        card["name"], root, train_files, train_y, test_files, test_y, classes, card
    )


# --- streaming loader --------------------------------------------------------------------

_GOLDEN = 0x9E3779B97F4A7C15  # spreads per-image seeds apart


def image_seed(pass_seed: int, index: int) -> int:
    return (pass_seed + (index + 1) * _GOLDEN) % (1 << 63)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def crop_box(h: int, w: int, g: torch.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, height, width): 10 tries at a random area in SCALE
    and log-uniform aspect ratio in RATIO, then the centre crop clamped to RATIO."""
    area = h * w
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * _uniform(g, *SCALE)
        ratio = math.exp(_uniform(g, *log_ratio))
        cw = round(math.sqrt(target * ratio))
        ch = round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (), generator=g))
            left = int(torch.randint(0, w - cw + 1, (), generator=g))
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < RATIO[0]:
        cw, ch = w, round(w / RATIO[0])
    elif in_ratio > RATIO[1]:
        ch, cw = h, round(h * RATIO[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def transform(img: torch.Tensor, train: bool, seed: int) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, CROP, CROP) uint8, augmented from `seed` when `train`."""
    from torchvision.transforms.v2 import functional as TF

    if not train:
        img = TF.resize(img, [RESIZE], antialias=True)
        return TF.center_crop(img, [CROP, CROP])
    g = torch.Generator().manual_seed(seed)
    top, left, ch, cw = crop_box(img.shape[1], img.shape[2], g)
    img = TF.resized_crop(img, top, left, ch, cw, [CROP, CROP], antialias=True)
    if float(torch.rand((), generator=g)) < 0.5:
        img = TF.horizontal_flip(img)
    b, c, s, hue = JITTER
    img = TF.adjust_brightness(img, _uniform(g, 1 - b, 1 + b))
    img = TF.adjust_contrast(img, _uniform(g, 1 - c, 1 + c))
    img = TF.adjust_saturation(img, _uniform(g, 1 - s, 1 + s))
    return TF.adjust_hue(img, _uniform(g, -hue, hue))


class _Images(torch.utils.data.Dataset):
    """Items are (index, seed) pairs; returns the decoded, transformed image and its label."""

    def __init__(self, root: Path, files: list[str], labels: np.ndarray, train: bool):
        self.root, self.files, self.labels, self.train = root, files, labels, train

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        img = decode(self.root / self.files[index], rgb=True)
        return transform(img, self.train, seed), int(self.labels[index])


class FolderLoader(PassOrder):
    """Batches of normalised images streamed from an image folder, with the `DeviceLoader`
    interface: iteration, `next_batch()`, `state_dict()` / `load_state_dict()`, `len()`."""

    def __init__(
        self,
        data: FolderPrepared,
        split: str,
        batch_size: int,
        device: torch.device,
        augment: bool = False,
        cutout: int = 0,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        num_workers: int | None = None,
    ) -> None:
        files, labels = data.split(split)
        if not files:
            raise ValueError("empty dataset split")
        self.items = _Images(data.root, files, labels, train=augment)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.mean = torch.tensor(data.card["mean"], device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(data.card["std"], device=self.device).view(1, -1, 1, 1) * 255
        self.cutout = cutout
        self.shuffle, self.drop_last = shuffle, drop_last
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
        self.generator = torch.Generator().manual_seed(seed)
        self.order: torch.Tensor | None = None
        self.pass_seed = 0
        self.pos: int | None = None
        self._stream: Iterator | None = None

    @property
    def num_examples(self) -> int:
        return len(self.items)

    def _start_pass(self) -> None:
        super()._start_pass()
        self.pass_seed = int(torch.randint(0, 1 << 62, (), generator=self.generator))
        self._stream = None

    def _keys(self, b: int) -> list[tuple[int, int]]:
        start = b * self.batch_size
        stop = min(start + self.batch_size, len(self.items))
        idx = self.order[start:stop].tolist() if self.order is not None else range(start, stop)
        return [(i, image_seed(self.pass_seed, i)) for i in idx]

    def _batches(self, start: int) -> Iterator:
        batches = [self._keys(b) for b in range(start, len(self))]
        if self.num_workers == 0:
            return (torch.utils.data.default_collate([self.items[k] for k in ks]) for ks in batches)
        return iter(
            torch.utils.data.DataLoader(
                self.items,
                batch_sampler=batches,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
            )
        )

    def _finish(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        x = x.to(self.device, non_blocking=True).float()
        x = (x - self.mean) / self.std
        if self.cutout:
            x = cutout(x, self.cutout, self.generator)
        return x, y.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.pos is None:
            self._start_pass()
        for batch in self._batches(self.pos):
            self.pos += 1
            yield self._finish(batch)
        self.pos = None

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos is None or self.pos >= len(self):
            self._start_pass()
        if self._stream is None:
            self._stream = self._batches(self.pos)
        self.pos += 1
        return self._finish(next(self._stream))

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "order": self.order,
            "pos": self.pos,
            "pass_seed": self.pass_seed,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.pos, self.pass_seed = state["order"], state["pos"], state["pass_seed"]
        self._stream = None


def split_loader(data: FolderPrepared, split: str, batch_size: int, device, **kwargs):
    """A `FolderLoader` over a named split (the registry's loader interface)."""
    return FolderLoader(data, split, batch_size, device, **kwargs)
