"""The user's own image data, turned into the same prepared format as the built-in datasets.

Declared in params.yaml and then listed in `prepare.datasets` like any other dataset:

    prepare:
      datasets: [digits, mydata]
      custom:
        mydata: {path: /data/flowers, format: folder, size: 32}

- `folder`: one subfolder of images per class (`<path>/<class>/*.png`), or `<path>/train/` and
  `<path>/test/` each holding such subfolders. Classes are numbered in sorted folder-name
  order. PNG, JPEG, GIF and WebP are decoded with Pillow (16-bit scaled to 8); grayscale
  stays one channel unless the folder mixes it with colour. Transparent pixels are composited
  onto `background` (default white), with one line saying how many images had any. Images must
  share a size unless `size` resizes them all to size x size. A broken link is skipped with a
  note naming it.
- `npz`: `x` uint8 (N, H, W) or (N, H, W, C) (C = 1 or 3; 2 or 4 with alpha, composited as
  above) and `y` integer labels (N,), optionally `x_test` and `y_test`, and `classes`: the
  class names (strings, one per class). Each member's header is read first and checked against
  the file's size and the machine's memory before anything is allocated; object arrays
  (pickles) are refused. `size` resizes these images too.

Labels are honest or refused: they must be 0..K-1 with every class in the training set (a
`classes` array fixes K; without one, K is the number of distinct labels). Labels {0, 999},
1-based labels (class 0 empty), a class only the test set has: each is refused with a message
that names the class and says how to renumber; nothing is remapped behind the user's back.

Without a test set of its own, a stratified, seeded `prepare.test_fraction` is held out (as
for digits). Normalisation constants are the training set's own channel statistics.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dnas.config import Custom
from dnas.data.images import IMAGE_SUFFIXES, composite, decode_image, shown
from dnas.data.prepared import channel_stats
from dnas.data.splits import path_kind, stratified_split
from dnas.errors import UserError, first_line
from dnas.io import sha256_file

# The test set is held out class by class, so every class needs two examples; the search split
# (prepare.search_split) does not enter here, so advice about it would not help.
HOLD_OUT_FIX = (
    "give every class at least two images, or a test set of your own (train/ and test/ "
    "folders, or x_test and y_test in the .npz), or change prepare.test_fraction"
)
NPZ_KEYS = ("x", "y", "x_test", "y_test", "classes")
RENUMBER = (
    "renumber them 0..K-1, e.g. `classes, y = np.unique(y, return_inverse=True)` (map y_test "
    "the same way) and save the names as a `classes` array"
)


def hold_out_key(name: str, test_fraction: float) -> str:
    return f"prepare.custom.{name} with prepare.test_fraction = {test_fraction}"


def memory_bound() -> int:
    """The most bytes one dataset's arrays may take: half the machine's memory (8 GiB where
    it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):
        return 8 << 30


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError


def _too_large(what: str, nbytes: int, fix: str) -> None:
    bound = memory_bound()
    if nbytes > bound:
        raise UserError(
            f"{what} would take {_size(nbytes)}, more than half this machine's memory "
            f"({_size(2 * bound)}); {fix}"
        )


def source_path(name: str, spec: Custom) -> Path:
    """The source of `name`, checked to be what its format reads (a folder, or a regular
    file for npz); each other case is one message saying what the path is instead."""
    key = f"prepare.custom.{name}.path = {shown(spec.path)}"
    path = Path(spec.path).expanduser()
    kind = path_kind(path)
    if kind is None:
        if path.is_symlink():
            raise UserError(f"{key} is a broken link (to {shown(os.readlink(path))})")
        raise UserError(f"{key} does not exist")
    if spec.format == "folder" and kind != "a folder":
        raise UserError(
            f"{key} is {kind}, not a folder; format: folder reads <path>/<class>/<image> "
            "(for an .npz file set format: npz)"
        )
    if spec.format == "npz" and kind != "a file":
        advice = " (for a folder of images set format: folder)" if kind == "a folder" else ""
        raise UserError(f"{key} is {kind}, not an .npz file{advice}")
    return path


def load(name: str, spec: Custom, test_fraction: float, seed: int) -> tuple[dict, dict]:
    """Arrays and card entries of the custom dataset `name`."""
    path = source_path(name, spec)
    if spec.format == "folder":
        arrays, classes, listing, notes = _load_folder(path, name, spec)
        source = {"format": "folder", "path": spec.path, "listing_sha256": listing}
    else:
        arrays, classes, notes = _load_npz(path, name, spec)
        source = {"format": "npz", "path": spec.path, "sha256": sha256_file(path)}
    source["background"] = spec.background
    for note in notes:
        print(note)
    held_out = "test_x" not in arrays
    if held_out:
        x, y = arrays.pop("train_x"), arrays.pop("train_y")
        tr, te = stratified_split(
            y, test_fraction, seed, HOLD_OUT_FIX, hold_out_key(name, test_fraction), classes
        )
        arrays = {"train_x": x[tr], "train_y": y[tr], "test_x": x[te], "test_y": y[te]}
    mean, std = channel_stats(arrays["train_x"])
    side = min(arrays["train_x"].shape[1:3])
    check_pad(name, spec, side)
    meta = {
        "num_classes": len(classes),
        "classes": classes,
        "augment": {"flip": spec.flip, "pad": side // 8 if spec.pad is None else spec.pad},
        "source": source,
        "mean": mean,
        "std": std,
    }
    if held_out:
        meta["test_split"] = {"protocol": "stratified", "fraction": test_fraction}
    return arrays, meta


def check_pad(name: str, spec: Custom, side: int | None) -> None:
    """Refuse a `pad` larger than the images (it would pad-and-crop mostly zeros, and a huge
    one would allocate without bound)."""
    if spec.pad is not None and side is not None and spec.pad > side:
        raise UserError(
            f"prepare.custom.{name}.pad = {spec.pad} is larger than the {side}-pixel images; "
            f"use at most {side} (the default is side // 8 = {side // 8})"
        )


def labels(name: str, spec: Custom) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The train labels, the test labels (None without a test set of its own) and the class
    names, read without decoding an image (the class folders' file counts, or the .npz's
    headers and label arrays) and checked as `prepare` checks them: for `check_labels`."""
    path = source_path(name, spec)
    if spec.format == "npz":
        with _Npz(path) as z:
            train, test, classes = _npz_labels(z, name, spec)
        return train, test, classes
    listed, classes, _ = _list_folder(path)
    out = {
        part: np.array(
            [i for i, c in enumerate(classes) for _ in by_class.get(c, [])], dtype=np.int64
        )
        for part, by_class in listed.items()
    }
    return out["train"], out.get("test"), [shown(c) for c in classes]


def source(name: str, p) -> tuple[dict, dict]:
    """The registry's array-family interface: `load` with the dataset's own entry."""
    return load(name, p.custom[name], p.test_fraction, p.seed)


def check_labels(name: str, p):
    """The labels the splits are made from, without preparing (train labels, test labels or
    None when the test set is held out of the train labels, the advice, the key to name, the
    class names); None when the source is missing: its prepare stage says so if it runs (it
    may be prepared already and need no rerun). A source that is there but would be refused
    by prepare is refused here, before DVC deletes the prepared data to rerun it."""
    spec = p.custom[name]
    if not Path(spec.path).expanduser().exists():  # a broken link too (a drive not mounted)
        return None
    train, test, classes = labels(name, spec)
    if spec.pad is not None:
        check_pad(name, spec, image_side(name, p))
    return train, test, HOLD_OUT_FIX, hold_out_key(name, p.test_fraction), classes


def image_side(name: str, p) -> int | None:
    """The side of the prepared images (the smaller of height and width) when it can be
    known without decoding: `size`, the .npz header of `x`, or the first image's header;
    None when the source is missing or unreadable (prepare says why)."""
    spec = p.custom[name]
    if spec.size is not None:
        return spec.size
    try:
        path = source_path(name, spec)
        if spec.format == "npz":
            with _Npz(path) as z:
                m = z.members.get("x")
                return min(m.shape[1:3]) if m is not None and len(m.shape) >= 3 else None
        listed, classes, _ = _list_folder(path)
        from PIL import Image

        with Image.open(listed["train"][classes[0]][0]) as im:
            return min(im.size)
    except Exception:  # noqa: BLE001 - prepare reports what is wrong with the source
        return None


# --- npz ---------------------------------------------------------------------------------


@dataclass
class _Member:
    """An .npy member of an .npz: its zip entry and what its header declares."""

    name: str
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    nbytes: int


class _Npz:
    """An .npz read without trusting it: the headers of the members `NPZ_KEYS` names are read
    (and checked against the file's size and the memory bound) when it opens, an array only
    on `read`."""

    def __init__(self, path: Path):
        self.path = path
        self.where = shown(path)
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise UserError(
                f"{self.where} is not a readable .npz (a zip of .npy arrays, as np.savez "
                f"writes): {shown(first_line(exc))[:160]}"
            ) from None
        try:
            self.members = self._headers()
        except BaseException:
            self.zip.close()
            raise

    def __enter__(self) -> _Npz:
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()

    def _headers(self) -> dict[str, _Member]:
        file_size = self.path.stat().st_size
        entries = {}
        for info in self.zip.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if key in NPZ_KEYS and (key not in entries or info.filename.endswith(".npy")):
                entries[key] = info
        members = {}
        for key, info in entries.items():
            members[key] = self._header(key, info, file_size)
        return members

    def _header(self, key: str, info: zipfile.ZipInfo, file_size: int) -> _Member:
        where = f"{self.where}: member {shown(info.filename)}"
        fmt = np.lib.format
        try:
            with self.zip.open(info) as f:
                try:
                    version = fmt.read_magic(f)
                except ValueError:
                    raise UserError(
                        f"{where} is not a .npy array; save the arrays with np.savez"
                    ) from None
                if version == (1, 0):
                    shape, fortran, dtype = fmt.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = fmt.read_array_header_2_0(f)
                else:
                    raise UserError(f"{where}: .npy format version {version} is not read here")
                header = f.tell()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a forged header may fail anywhere
            reason = shown(first_line(exc))[:160]
            raise UserError(f"{where} is not a readable .npy array ({reason})") from None
        if dtype.hasobject:
            raise UserError(
                f"{self.where} holds object arrays ({key}), which are pickles and are refused; "
                "save plain numeric arrays x and y (and strings for classes)"
            )
        if dtype.fields is not None or dtype.subdtype is not None:
            raise UserError(f"{where} is a structured array; save plain arrays")
        if any(d < 0 for d in shape):
            raise UserError(f"{where}: its header declares a negative shape {shape}")
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        declared = f"declares {key} of shape {shape} {dtype} ({_size(nbytes)})"
        # The zip entry's size must hold the declared array, a deflated entry (np.savez_compressed)
        # cannot expand beyond deflate's ratio (about 1032 to 1), and no entry is larger on disk
        # than the file. (Other methods are bounded by the memory check below.)
        packed = info.compress_size if info.compress_type != zipfile.ZIP_STORED else info.file_size
        deflated = info.compress_type == zipfile.ZIP_DEFLATED
        if (
            info.file_size < header + nbytes
            or packed > file_size
            or (deflated and info.file_size > 1100 * packed + 4096)
        ):
            raise UserError(
                f"{where} {declared} but the file holds {_size(file_size)}: it is truncated or "
                "not what it claims; save it again with np.savez"
            )
        _too_large(f"{where}: {key} of shape {shape}", nbytes, "use a smaller dataset or size")
        return _Member(key, info, tuple(shape), dtype, fortran, nbytes)

    def read(self, key: str) -> np.ndarray:
        m = self.members[key]
        try:
            with self.zip.open(m.info) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except MemoryError:
            raise UserError(
                f"{self.where}: {key} ({_size(m.nbytes)}) does not fit in memory"
            ) from None
        except Exception as exc:  # noqa: BLE001 - corrupt compressed data fails anywhere
            raise UserError(
                f"{self.where}: {key} cannot be read, corrupt or truncated "
                f"({shown(first_line(exc))[:160]})"
            ) from None


def _images_header(m: _Member, where: str) -> None:
    """Refuse an image member by its header: shape, channels, type, zero sizes."""
    shape, key = m.shape, m.name
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] not in (1, 2, 3, 4)):
        raise UserError(
            f"{where}: {key} has shape {shape}; expected (N, H, W) or (N, H, W, C) with C 1 or "
            "3 (2 or 4 with alpha; channels last: transpose a (N, C, H, W) array first)"
        )
    if m.dtype.kind not in "ui":
        raise UserError(
            f"{where}: {key} is {m.dtype}; expected uint8 pixels 0..255 (scale floats in "
            "[0, 1] by 255 and round)"
        )
    if shape[0] == 0:
        raise UserError(f"{where}: {key} holds no images")
    if 0 in shape[1:3]:
        raise UserError(
            f"{where}: {key} images are {shape[2]}x{shape[1]} pixels; expected at least 1x1"
        )


def _label_header(m: _Member, n: int, where: str) -> None:
    if len(m.shape) != 1 or m.shape[0] != n or m.dtype.kind not in "ui":
        raise UserError(
            f"{where}: {m.name} must be {n} integer labels (one per image), got {m.dtype} {m.shape}"
        )


def _npz_labels(z: _Npz, name: str, spec: Custom) -> tuple[np.ndarray, np.ndarray | None, list]:
    """Check the headers of every member, then read and check the labels and class names;
    returns (train labels, test labels or None, class names)."""
    where, have = z.where, z.members
    for k in ("x", "y"):
        if k not in have:
            raise UserError(
                f"{where} has no array {k!r} (it has {', '.join(have) or 'none of x, y'}); "
                "expected x (N, H, W[, C]) uint8 and y (N,) labels"
            )
    if ("x_test" in have) != ("y_test" in have):
        raise UserError(f"{where}: x_test and y_test go together; it has only one of them")
    parts = [("x", "y")] + ([("x_test", "y_test")] if "x_test" in have else [])
    for xk, yk in parts:
        _images_header(have[xk], where)
        _label_header(have[yk], have[xk].shape[0], where)
    if "x_test" in have:
        a, b = _image_shape(have["x"].shape), _image_shape(have["x_test"].shape)
        if a != b:
            raise UserError(f"{where}: x_test images are {b}, x images {a}; they must match")
    n = sum(have[xk].shape[0] for xk, _ in parts)
    h, w = have["x"].shape[1:3]
    c = _image_shape(have["x"].shape)[2]
    if spec.size is not None:
        _too_large(
            f"prepare.custom.{name}.size = {spec.size}: {n} images of {spec.size}x{spec.size}",
            n * spec.size * spec.size * c * 2,
            "lower size",
        )
    _too_large(f"{where}: {n} images of {w}x{h}", n * h * w * c * 2, "use a smaller dataset")
    names = _class_names(z) if "classes" in have else None
    train = z.read("y")
    test = z.read("y_test") if "y_test" in have else None
    classes = check_classes(train, test, names, where)
    return train.astype(np.int64), None if test is None else test.astype(np.int64), classes


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (shape[1], shape[2], shape[3] if len(shape) == 4 else 1)


def _class_names(z: _Npz) -> list[str]:
    m = z.members["classes"]
    if m.dtype.kind not in "US" or len(m.shape) != 1:
        raise UserError(
            f"{z.where}: classes must be a 1-D array of names (strings), got {m.dtype} "
            f"{m.shape}; e.g. np.array(['cat', 'dog'])"
        )
    raw = z.read("classes")
    names = [
        v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)
        for v in raw.tolist()
    ]
    for i, n in enumerate(names):
        if not n.strip():
            raise UserError(f"{z.where}: classes[{i}] is empty; give every class a name")
    seen = set()
    for n in names:
        if n in seen:
            raise UserError(f"{z.where}: classes names {n!r} twice; class names must differ")
        seen.add(n)
    return names


def class_name(names: list[str] | None, label: int) -> str:
    """How a message names class `label`: by name when there are names."""
    if names is None:
        return f"label {label}"
    return f"class {shown(names[label])!r} (label {label})"


def _listed(values: np.ndarray, names: list[str] | None = None, most: int = 5) -> str:
    """Up to `most` labels (by name when there are names), and how many more."""
    out = ", ".join(class_name(names, int(v)) if names else str(int(v)) for v in values[:most])
    return out + (f" and {len(values) - most} more" if len(values) > most else "")


def check_classes(
    train: np.ndarray, test: np.ndarray | None, names: list[str] | None, where: str
) -> list[str]:
    """The class names of labels that are honest: 0..K-1 with every class in the training
    set, K = len(names) or, without names, the number of distinct labels. Anything else is
    one `UserError` naming the classes and the fix. Fast for any values (no per-class
    allocation: labels near 1e9 are refused at once)."""
    sets = [("y", train)] + ([("y_test", test)] if test is not None else [])
    for key, y in sets:
        if y.size and y.min() < 0:
            raise UserError(f"{where}: {key} has negative labels (min {y.min()}); use 0..K-1")
    limit = len(names) if names is not None else len(train)
    for key, y in sets:
        if y.size and y.max() >= limit:
            if names is not None:
                raise UserError(
                    f"{where}: {key} has label {y.max()} but classes names {limit} classes "
                    f"(labels 0..{limit - 1}); fix the labels or the classes array"
                )
            raise UserError(
                f"{where}: {key} has label {y.max()} but y holds only {len(train)} examples, "
                f"so most of the classes 0..{y.max()} would have none: labels must be 0..K-1 "
                f"with every class in the training set; {RENUMBER}"
            )
    seen = np.unique(train.astype(np.int64))
    if test is not None:
        extra = np.setdiff1d(np.unique(test.astype(np.int64)), seen)
        if extra.size:
            which = _listed(extra, names) if names else "labels " + _listed(extra)
            raise UserError(
                f"{where}: y_test has {which}, which y "
                "lacks: every class needs training examples; move some of them into x and y, "
                "or drop them from x_test and y_test"
            )
    k = len(names) if names is not None else len(seen)
    if k < 2:
        which = f"class {shown(names[0])!r}" if names is not None else f"label {seen[0]}"
        raise UserError(f"{where}: y holds only {which}; a classifier needs at least two classes")
    missing = np.setdiff1d(np.arange(k), seen)
    if names is not None:
        if missing.size:
            raise UserError(
                f"{where}: {_listed(missing, names)} has no training "
                "examples in y; give it examples, or drop it from classes and renumber y"
            )
        return names
    if seen.size and not missing.size:
        return [str(i) for i in range(k)]
    if seen.size and seen[0] == 1 and seen[-1] == k:
        raise UserError(
            f"{where}: labels are 1..{k}, so class 0 would have no examples: labels must be "
            "0..K-1; subtract 1 from y (and y_test)"
        )
    given = int(seen[-1]) + 1
    raise UserError(
        f"{where}: y has {k} distinct labels ({_listed(seen)}), not 0..{k - 1}: taken as "
        f"given they would make {given} classes, {given - k} of them empty; {RENUMBER}"
    )


def _load_npz(path: Path, name: str, spec: Custom) -> tuple[dict, list[str], list[str]]:
    with _Npz(path) as z:
        train_y, test_y, classes = _npz_labels(z, name, spec)
        arrays = {"train_x": _images(z.read("x"), z.where, "x"), "train_y": train_y}
        if test_y is not None:
            arrays["test_x"] = _images(z.read("x_test"), z.where, "x_test")
            arrays["test_y"] = test_y
    notes = []
    alpha = [k for k in ("train_x", "test_x") if k in arrays and arrays[k].shape[-1] in (2, 4)]
    if alpha:
        bg = spec.background_rgb
        see = 0
        for k in alpha:
            x = arrays[k]
            see += int((x[..., -1:] < 255).reshape(len(x), -1).any(1).sum())
            arrays[k] = np.ascontiguousarray(composite(x[..., :-1], x[..., -1:], bg))
        n = sum(len(arrays[k]) for k in alpha)
        notes.append(_alpha_note(name, see, n, spec))
    if spec.size is not None:  # as the folder route: every image to size x size
        arrays = {k: _resize(v, spec.size) if k.endswith("_x") else v for k, v in arrays.items()}
    return arrays, classes, notes


def _alpha_note(name: str, count: int, total: int, spec: Custom) -> str:
    bg = spec.background
    bg = bg if isinstance(bg, str) else f"[{', '.join(map(str, bg))}]"
    return (
        f"prepare.custom.{name}: {count} of {total} images had transparency, composited onto "
        f"{bg} (prepare.custom.{name}.background)"
    )


def _images(x: np.ndarray, where: str, key: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.dtype != np.uint8:
        if x.min() < 0 or x.max() > 255:
            raise UserError(
                f"{where}: {key} is {x.dtype} with values {x.min()}..{x.max()}; expected uint8 "
                "pixels 0..255"
            )
        x = x.astype(np.uint8)
    return np.ascontiguousarray(x)


# --- folder ------------------------------------------------------------------------------


def _entries(d: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(d) as it:
            return sorted(it, key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        reason = shown(first_line(exc))
        raise UserError(f"{shown(d)}: cannot read the folder ({reason})") from None


def _is_dir(e: os.DirEntry) -> bool:
    try:
        return e.is_dir()
    except OSError:
        return False


def list_class_folders(root: Path, broken: list[Path]) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for the class subfolders of `root`; links that point
    nowhere are added to `broken` (skipped with a note)."""
    classes = {}
    for d in _entries(root):
        if d.name.startswith(".") or not _is_dir(d):
            continue
        files, dead = [], []
        for f in _entries(Path(d.path)):
            if f.name.startswith(".") or Path(f.name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                regular = f.is_file()
            except OSError:
                regular = False
            if regular:
                files.append(Path(f.path))
            elif f.is_symlink() and not os.path.exists(f.path):
                dead.append(Path(f.path))
        broken.extend(dead)
        if not files:
            links = f" ({len(dead)} broken links)" if dead else ""
            split = (
                f"; a {d.name}/ folder is read as the {d.name} part only with a "
                f"{'test' if d.name == 'train' else 'train'}/ folder beside it, each holding "
                "one subfolder per class, else it is a class"
                if d.name in ("train", "test")
                else "; add some or remove the folder"
            )
            raise UserError(
                f"class folder {shown(d.path)} has no images{links} "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}){split}"
            )
        classes[d.name] = files
    if not classes:
        where = shown(root)
        raise UserError(
            f"{where} has no class subfolders; expected {where}/<class>/<image> for every class "
            f"(or {where}/train/<class>/ and {where}/test/<class>/)"
        )
    return classes


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 images (N, H, W, C) resized to size x size, by the folder route's resize."""
    from torchvision.transforms.v2 import functional as TF

    if tuple(x.shape[1:3]) == (size, size):
        return x
    images = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    out = TF.resize(images, [size, size], antialias=True)
    return np.ascontiguousarray(out.permute(0, 2, 3, 1).numpy())


def _list_folder(path: Path) -> tuple[dict[str, dict], list[str], list[Path]]:
    """The image files per class folder of each part ("train", and "test" when the folder has
    train/ and test/ subfolders, else the folder itself is the train part), the classes (the
    train part's folder names, sorted: class i = the i-th) and the broken links skipped.
    A class of the test part that the train part lacks is refused."""
    parts = {"train": path / "train", "test": path / "test"}
    broken: list[Path] = []
    if parts["train"].is_dir() and parts["test"].is_dir():
        listed = {k: list_class_folders(v, broken) for k, v in parts.items()}
    else:
        listed = {"train": list_class_folders(path, broken)}
    classes = sorted(listed["train"], key=os.fsencode)
    if len(classes) < 2:
        where = shown(parts["train"] if "test" in listed else path)
        raise UserError(
            f"{where} has a single class folder, {shown(classes[0])!r}; a classifier needs at "
            f"least two: {where}/<class>/<image>, one subfolder per class"
        )
    if "test" in listed:
        extra = sorted(set(listed["test"]) - set(classes), key=os.fsencode)
        if extra:
            names = ", ".join(repr(shown(c)) for c in extra[:5])
            raise UserError(
                f"{shown(path / 'test')} has classes that {shown(path / 'train')} lacks: "
                f"{names}; every class needs training images: add a train/ folder for each, "
                "or remove them from test/"
            )
    return listed, classes, broken


def _load_folder(path: Path, name: str, spec: Custom) -> tuple[dict, list[str], str, list[str]]:
    from torchvision.transforms.v2 import functional as TF

    listed, classes, broken = _list_folder(path)
    notes = []
    if broken:
        more = f" and {len(broken) - 3} more" if len(broken) > 3 else ""
        notes.append(
            f"note: prepare.custom.{name}: skipped {len(broken)} broken link"
            f"{'s' if len(broken) > 1 else ''}: {', '.join(shown(b) for b in broken[:3])}{more}"
        )
    total = sum(len(v) for by_class in listed.values() for v in by_class.values())
    if spec.size is not None:
        _too_large(
            f"prepare.custom.{name}.size = {spec.size}: {total} images of {spec.size}x{spec.size}",
            total * spec.size * spec.size * 3 * 2,
            "lower size",
        )
    listing = hashlib.sha256()
    bg = spec.background_rgb
    arrays, first, transparent = {}, None, 0
    for part, by_class in listed.items():
        images, labels = [], []
        for label, cls in enumerate(classes):
            for f in by_class.get(cls, []):
                tensor, alpha = decode_image(f, bg)
                transparent += alpha
                if min(tensor.shape[1:]) == 0:
                    h, w = tensor.shape[1:]
                    raise UserError(f"{shown(f)} is an empty image ({w}x{h}); remove it")
                if spec.size is not None and tuple(tensor.shape[1:]) != (spec.size, spec.size):
                    tensor = TF.resize(tensor, [spec.size, spec.size], antialias=True)
                img = tensor.permute(1, 2, 0).numpy()
                if first is None:
                    first = (f, img.shape)
                    _too_large(
                        f"{total} images of {img.shape[1]}x{img.shape[0]} in {shown(path)}",
                        total * img.shape[0] * img.shape[1] * 3 * 2,
                        f"set prepare.custom.{name}.size to shrink them",
                    )
                elif img.shape[:2] != first[1][:2]:
                    raise UserError(
                        f"{shown(f)} is {img.shape[1]}x{img.shape[0]} but {shown(first[0])} is "
                        f"{first[1][1]}x{first[1][0]}; set prepare.custom.{name}.size to "
                        "resize them all"
                    )
                images.append(img)
                labels.append(label)
                rel = os.fsencode(f.relative_to(path))
                listing.update(rel + f"\t{f.stat().st_size}\t{label}\n".encode())
        arrays[f"{part}_x"], arrays[f"{part}_y"] = images, np.array(labels, np.int64)
    if transparent:
        notes.append(_alpha_note(name, transparent, total, spec))
    # grayscale stays one channel unless the folder mixes it with colour
    channels = {img.shape[2] for part in listed for img in arrays[f"{part}_x"]}
    for part in listed:
        imgs = arrays[f"{part}_x"]
        if channels == {1, 3}:
            imgs = [np.repeat(i, 3, axis=2) if i.shape[2] == 1 else i for i in imgs]
        arrays[f"{part}_x"] = np.stack(imgs).astype(np.uint8)
    return arrays, [shown(c) for c in classes], listing.hexdigest(), notes
