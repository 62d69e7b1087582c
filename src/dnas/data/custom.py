"""The user's own image data, turned into the same prepared format as the built-in datasets.

Declared in params.yaml and then listed in `prepare.datasets` like any other dataset:

    prepare:
      datasets: [digits, mydata]
      custom:
        mydata: {path: /data/flowers, format: folder, size: 32}

- `folder`: one subfolder of images per class (`<path>/<class>/*.png`), or `<path>/train/` and
  `<path>/test/` each holding such subfolders. Classes are numbered in sorted folder-name
  order. PNG, JPEG, GIF and WebP are decoded with Pillow (16-bit scaled to 8); grayscale
  stays one channel unless the folder mixes it with colour, alpha is dropped. Images must share
  a size unless `size` resizes them all to size x size.
- `npz`: `x` uint8 (N, H, W) or (N, H, W, C) and `y` integer labels (N,), optionally `x_test`
  and `y_test`; read with `allow_pickle=False`, so an object array is refused. `size`
  resizes these images too.

Without a test set of its own, a stratified, seeded `prepare.test_fraction` is held out (as
for digits). Normalisation constants are the training set's own channel statistics.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from dnas.config import Custom
from dnas.data.images import IMAGE_SUFFIXES, decode
from dnas.data.prepared import channel_stats
from dnas.data.splits import stratified_split
from dnas.errors import UserError
from dnas.io import sha256_file

# The test set is held out class by class, so every class needs two examples; the search split
# (prepare.search_split) does not enter here, so advice about it would not help.
HOLD_OUT_FIX = (
    "give every class at least two images, or a test set of your own (train/ and test/ "
    "folders, or x_test and y_test in the .npz), or change prepare.test_fraction"
)


def hold_out_key(name: str, test_fraction: float) -> str:
    return f"prepare.custom.{name} with prepare.test_fraction = {test_fraction}"


def load(name: str, spec: Custom, test_fraction: float, seed: int) -> tuple[dict, dict]:
    """Arrays and card entries of the custom dataset `name`."""
    key = f"prepare.custom.{name}.path"
    path = Path(spec.path).expanduser()
    if not path.exists():
        raise UserError(f"{key} = {spec.path} does not exist")
    if spec.format == "folder":
        arrays, classes, listing = _load_folder(path, name, spec)
        source = {"format": "folder", "path": spec.path, "listing_sha256": listing}
    else:
        arrays, classes = _load_npz(path, key)
        if spec.size is not None:  # as the folder route: every image to size x size
            arrays = {
                k: _resize(v, spec.size) if k.endswith("_x") else v for k, v in arrays.items()
            }
        source = {"format": "npz", "path": spec.path, "sha256": sha256_file(path)}
    held_out = "test_x" not in arrays
    if held_out:
        x, y = arrays.pop("train_x"), arrays.pop("train_y")
        tr, te = stratified_split(
            y, test_fraction, seed, HOLD_OUT_FIX, hold_out_key(name, test_fraction)
        )
        arrays = {"train_x": x[tr], "train_y": y[tr], "test_x": x[te], "test_y": y[te]}
    mean, std = channel_stats(arrays["train_x"])
    side = arrays["train_x"].shape[1]
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


def labels(spec: Custom) -> tuple[np.ndarray, np.ndarray | None]:
    """The train labels and the test labels (None without a test set of its own), read
    without decoding an image: the class folders' file counts, or the .npz's label arrays.
    For checking the splits before preparing (`check_labels`)."""
    path = Path(spec.path).expanduser()
    if spec.format == "npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                y = np.asarray(z["y"]).astype(np.int64)
                test = np.asarray(z["y_test"]).astype(np.int64) if "y_test" in z.files else None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise UserError(f"{path} is not a readable .npz ({exc})") from None
        return y, test
    listed, classes = _list_folder(path)
    out = {
        part: np.array(
            [i for i, c in enumerate(classes) for _ in by_class.get(c, [])], dtype=np.int64
        )
        for part, by_class in listed.items()
    }
    return out["train"], out.get("test")


def source(name: str, p) -> tuple[dict, dict]:
    """The registry's array-family interface: `load` with the dataset's own entry."""
    return load(name, p.custom[name], p.test_fraction, p.seed)


def check_labels(name: str, p):
    """The labels the splits are made from, without preparing (train labels, test labels or
    None when the test set is held out of the train labels, the advice, the key to name); None
    when the source is missing or unreadable: its prepare stage says so if it runs (it may be
    prepared already and need no rerun)."""
    spec = p.custom[name]
    if not Path(spec.path).expanduser().exists():
        return None
    try:
        train, test = labels(spec)
    except UserError:
        return None
    return train, test, HOLD_OUT_FIX, hold_out_key(name, p.test_fraction)


# --- npz ---------------------------------------------------------------------------------


def _load_npz(path: Path, key: str) -> tuple[dict, list[str]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            content = {k: z[k] for k in z.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UserError(
                f"{path} holds object arrays, which are pickles and are refused; save plain "
                "numeric arrays x and y"
            ) from None
        raise UserError(f"{path} is not a readable .npz ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npz, corrupt or truncated ({exc})") from None
    for k in ("x", "y"):
        if k not in content:
            raise UserError(
                f"{path} has no array {k!r} (it has {', '.join(content) or 'none'}); "
                "expected x (N, H, W[, C]) uint8 and y (N,) labels"
            )
    arrays = {"train_x": _images(content["x"], path, "x"), "train_y": None}
    labels = {"train_y": content["y"]}
    if ("x_test" in content) != ("y_test" in content):
        raise UserError(f"{path}: x_test and y_test go together; it has only one of them")
    if "x_test" in content:
        arrays["test_x"] = _images(content["x_test"], path, "x_test")
        labels["test_y"] = content["y_test"]
    for k, y in labels.items():
        x = arrays[k.replace("_y", "_x")]
        arrays[k] = _labels(y, len(x), path, "y" if k == "train_y" else "y_test")
    if "test_x" in arrays and arrays["test_x"].shape[1:] != arrays["train_x"].shape[1:]:
        raise UserError(
            f"{path}: x_test images are {arrays['test_x'].shape[1:]}, x images "
            f"{arrays['train_x'].shape[1:]}; they must match"
        )
    n = int(max(arrays["train_y"].max(), arrays.get("test_y", arrays["train_y"]).max())) + 1
    return arrays, [str(i) for i in range(n)]


def _images(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise UserError(
            f"{path}: {key} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) with C 1 or "
            "3 (channels last; transpose a (N, C, H, W) array first)"
        )
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() > 255:
            raise UserError(
                f"{path}: {key} is {x.dtype}; expected uint8 pixels 0..255 (scale floats in "
                "[0, 1] by 255 and round)"
            )
        x = x.astype(np.uint8)
    if len(x) == 0:
        raise UserError(f"{path}: {key} holds no images")
    return np.ascontiguousarray(x)


def _labels(y: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise UserError(
            f"{path}: {key} must be {n} integer labels (one per image), got {y.dtype} {y.shape}"
        )
    if y.min() < 0:
        raise UserError(f"{path}: {key} has negative labels; use 0..K-1")
    return y.astype(np.int64)


# --- folder ------------------------------------------------------------------------------


def list_class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for the class subfolders of `root`."""
    classes = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            f
            for f in d.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise UserError(f"class folder {d} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        classes[d.name] = files
    if not classes:
        raise UserError(
            f"{root} has no class subfolders; expected {root}/<class>/<image> for every class "
            f"(or {root}/train/<class>/ and {root}/test/<class>/)"
        )
    return classes


def _decode(file: Path, size: int | None) -> np.ndarray:
    from torchvision.transforms.v2 import functional as TF

    img = decode(file)
    if size is not None and tuple(img.shape[1:]) != (size, size):
        img = TF.resize(img, [size, size], antialias=True)
    return img.permute(1, 2, 0).numpy()


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 images (N, H, W, C) resized to size x size, by the folder route's resize."""
    from torchvision.transforms.v2 import functional as TF

    if tuple(x.shape[1:3]) == (size, size):
        return x
    images = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    out = TF.resize(images, [size, size], antialias=True)
    return np.ascontiguousarray(out.permute(0, 2, 3, 1).numpy())


def _list_folder(path: Path) -> tuple[dict[str, dict], list[str]]:
    """The image files per class folder of each part ("train", and "test" when the folder has
    train/ and test/ subfolders, else the folder itself is the train part), and the classes:
    the train part's folder names, sorted (class i = the i-th)."""
    parts = {"train": path / "train", "test": path / "test"}
    if parts["train"].is_dir() and parts["test"].is_dir():
        listed = {k: list_class_folders(v) for k, v in parts.items()}
    else:
        listed = {"train": list_class_folders(path)}
    return listed, sorted(listed["train"])


def _load_folder(path: Path, name: str, spec: Custom) -> tuple[dict, list[str], str]:
    if not path.is_dir():
        raise UserError(f"prepare.custom.{name}.path = {spec.path} is not a directory")
    listed, classes = _list_folder(path)
    if "test" in listed:
        extra = sorted(set(listed["test"]) - set(classes))
        if extra:
            raise UserError(f"{path / 'test'} has classes not in {path / 'train'}: {extra[:5]}")
    listing = hashlib.sha256()
    arrays, first = {}, None
    for part, by_class in listed.items():
        images, labels = [], []
        for label, cls in enumerate(classes):
            for f in by_class.get(cls, []):
                img = _decode(f, spec.size)
                if first is None:
                    first = (f, img.shape)
                elif img.shape[:2] != first[1][:2]:
                    raise UserError(
                        f"{f} is {img.shape[1]}x{img.shape[0]} but {first[0]} is "
                        f"{first[1][1]}x{first[1][0]}; set prepare.custom.{name}.size to "
                        "resize them all"
                    )
                images.append(img)
                labels.append(label)
                rel = f.relative_to(path).as_posix()
                listing.update(f"{rel}\t{f.stat().st_size}\t{label}\n".encode())
        arrays[f"{part}_x"], arrays[f"{part}_y"] = images, np.array(labels, np.int64)
    # grayscale stays one channel unless the folder mixes it with colour
    channels = {img.shape[2] for part in listed for img in arrays[f"{part}_x"]}
    for part in listed:
        imgs = arrays[f"{part}_x"]
        if channels == {1, 3}:
            imgs = [np.repeat(i, 3, axis=2) if i.shape[2] == 1 else i for i in imgs]
        arrays[f"{part}_x"] = np.stack(imgs).astype(np.uint8)
    return arrays, classes, listing.hexdigest()
