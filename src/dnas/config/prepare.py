"""The `prepare` section: which datasets, their sources, splits and the user's own data."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dnas.config.base import (
    DATASET_NAME_PATTERN,
    DATASETS,
    MAX_LIST,
    TEXT_DATASETS,
    DatasetName,
    Section,
    Seed,
)


class Custom(Section):
    """A user's own dataset, images or a text corpus (docs/data.md#custom-datasets)."""

    path: Annotated[str, Field(min_length=1)]
    # folder: one subfolder of images per class (or train/ and test/ holding such subfolders);
    # npz: arrays x (N, H, W[, C]) uint8 and y (N,) int, optionally x_test and y_test;
    # text: a corpus for the language-model track, a folder with train.txt, valid.txt and
    # test.txt, or one UTF-8 file cut into train, valid and test by `split`.
    format: Literal["folder", "npz", "text"]
    # Resize every image of a folder to size x size (needed when their sizes differ).
    size: Annotated[int, Field(ge=1, le=4096)] | None = None
    flip: bool = True  # horizontal flips are a valid augmentation for these images
    pad: Annotated[int, Field(ge=0)] | None = None  # pad-and-crop; default: side // 8
    # What transparent pixels (RGBA, LA, a palette's transparent colour) are composited onto:
    # white (icons are mostly dark shapes on a transparent ground), black, or [r, g, b].
    background: str | list[int] = "white"
    # format text, one file: the fractions of its lines (in order) for train, valid and test.
    split: list[float] | None = None

    @field_validator("split")
    @classmethod
    def _split(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) != 3 or any(f <= 0 for f in v) or abs(sum(v) - 1) > 1e-6:
            raise ValueError(
                f"{v}: expected three positive fractions of the lines, train, valid and test, "
                "adding up to 1, e.g. [0.8, 0.1, 0.1]"
            )
        return v

    @model_validator(mode="after")
    def _text_keys(self) -> Custom:
        # by value, not by the keys given, so that a dumped and re-read spec stays valid
        defaults = {"size": None, "flip": True, "pad": None, "background": "white"}
        image_keys = [k for k, v in defaults.items() if getattr(self, k) != v]
        if self.format == "text" and image_keys:
            raise ValueError(
                f"{', '.join(image_keys)}: for images; a format: text corpus takes path and, "
                "for one file, split"
            )
        if self.format != "text" and self.split is not None:
            raise ValueError(
                f"split: for a format: text corpus in one file; format: {self.format} holds "
                "out prepare.test_fraction instead"
            )
        return self

    @property
    def text_split(self) -> list[float]:
        """The line fractions of a one-file corpus (default 80/10/10, as the pydoc corpus)."""
        return self.split or [0.8, 0.1, 0.1]

    @field_validator("background", mode="before")
    @classmethod
    def _background(cls, v: Any) -> Any:
        if v in ("white", "black"):
            return v
        ok = isinstance(v, (list, tuple)) and len(v) == 3
        if ok and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in v):
            return list(v)
        raise ValueError(f"{v!r}: expected white, black or [r, g, b] with each 0..255")

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        named = {"white": (255, 255, 255), "black": (0, 0, 0)}
        bg = self.background
        return named[bg] if isinstance(bg, str) else tuple(bg)


SplitProtocol = Literal["stratified", "halves", "random", "file", "test_half"]


class Prepare(Section):
    # Declared before `datasets`, whose validator needs it: name -> source of a user's dataset.
    custom: Annotated[dict[DatasetName, Custom], Field(max_length=MAX_LIST)] = {}
    datasets: Annotated[list[DatasetName], Field(min_length=1, max_length=MAX_LIST)] = ["digits"]
    seed: Seed = 0  # split seed, separate from common.seed
    raw_dir: str = "data/raw"
    # Local directory or archive to read a dataset from instead of downloading it.
    paths: Annotated[dict[DatasetName, str], Field(max_length=MAX_LIST)] = {}
    # Fraction of the examples held out as the test set, for datasets that ship without one.
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    # How search-train (weights) and search-valid (architecture) are made
    # (docs/data.md#split-protocols): stratified = seeded class-balanced halves of the train set;
    # halves = first / last half (DARTS); random = seeded random halves (GDAS 2019 code);
    # file = the `train` / `valid` indices of split_file (AutoDL format, e.g. cifar-split.txt);
    # test_half = the whole train set for weights and half the test set for the architecture
    # (AutoDL CIFAR-100 / ImageNet16-120: `xvalid` of split_file, else a seeded stratified half).
    # Either one protocol (and file) for every dataset, or a mapping dataset -> protocol (and
    # dataset -> file); a dataset the mapping leaves out is split `stratified`. NAS-Bench-201's
    # CIFAR-100 rows, e.g., search on cifar10 (file) and score cifar100 on its x-test half
    # (test_half), docs/protocols.md.
    search_split: (
        SplitProtocol | Annotated[dict[DatasetName, SplitProtocol], Field(max_length=MAX_LIST)]
    ) = "stratified"
    split_file: (
        str | None | Annotated[dict[DatasetName, str | None], Field(max_length=MAX_LIST)]
    ) = None

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, names: list[str], info: ValidationInfo) -> list[str]:
        custom = info.data.get("custom") or {}
        known = [*DATASETS, *custom]
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(
                    f"unknown dataset {name!r}; {hint}built in: {', '.join(DATASETS)}; "
                    "declare your own under prepare.custom"
                )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{', '.join(dupes)} listed more than once")
        return names

    @field_validator("custom")
    @classmethod
    def _custom_names(cls, custom: dict[str, Custom]) -> dict[str, Custom]:
        for name in custom:
            if not re.fullmatch(DATASET_NAME_PATTERN, name):
                raise ValueError(
                    f"{name!r}: a dataset name is lower-case letters, digits, '_', '.' and '-'"
                    ", starting with a letter or digit (it names data/prepared/<name>)"
                )
        clash = sorted(set(custom) & set(DATASETS))
        if clash:
            raise ValueError(f"{', '.join(clash)} is a built-in dataset; choose another name")
        return custom

    @field_validator("paths")
    @classmethod
    def _paths_builtin(cls, paths: dict[str, str]) -> dict[str, str]:
        for name in paths:
            if name not in DATASETS:
                close = difflib.get_close_matches(name, DATASETS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(
                    f"{name!r} is not a built-in dataset; {hint}a dataset of your own takes its "
                    "path from prepare.custom.<name>.path"
                )
        return paths

    @model_validator(mode="after")
    def _split_file_needed(self) -> Prepare:
        for key in ("search_split", "split_file"):
            value = getattr(self, key)
            if isinstance(value, dict):
                extra = sorted(set(value) - set(self.datasets))
                if extra:
                    raise ValueError(
                        f"{key} names {', '.join(extra)}, which prepare.datasets"
                        f" {self.datasets} does not list"
                    )
        for name in self.datasets:
            protocol, split_file = self.split_for(name)
            if protocol == "file" and not split_file:
                mapped = isinstance(self.search_split, dict)
                where = f"split_file.{name}" if mapped else "split_file"
                raise ValueError(
                    f"search_split 'file' needs prepare.{where} (AutoDL format: "
                    '{"train": ["int", [...]], "valid": ["int", [...]]})'
                )
        return self

    def split_for(self, name: str) -> tuple[str, str | None]:
        """The split protocol and split file of dataset `name`."""
        protocol = self.search_split
        if isinstance(protocol, dict):
            protocol = protocol.get(name, "stratified")
        split_file = self.split_file
        if isinstance(split_file, dict):
            split_file = split_file.get(name)
        return protocol, split_file


def is_text(name: str, prepare: Prepare) -> bool:
    """Whether dataset `name` is a text corpus (for the language-model track): a built-in one
    or the user's own `format: text`."""
    spec = prepare.custom.get(name)
    return name in TEXT_DATASETS or (spec is not None and spec.format == "text")


def text_datasets(prepare: Prepare) -> list[str]:
    """The text corpora: the built-in ones and the user's own."""
    return [*TEXT_DATASETS, *(n for n, c in prepare.custom.items() if c.format == "text")]
