"""The user's own data (image folders, .npz) and dataset-name validation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dnas.config import Prepare, parse_params
from dnas.data import load_prepared, prepare_dataset
from dnas.data.loader import split_loader
from dnas.errors import UserError


def _encode(img: torch.Tensor, fmt: str) -> bytes:
    """A (C, H, W) uint8 tensor as PNG or JPEG bytes (torchvision 0.29 warns its codecs are
    deprecated)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import encode_jpeg, encode_png

        return (encode_png if fmt == "png" else encode_jpeg)(img).numpy().tobytes()


def _png(path, img: np.ndarray):
    """Write an (H, W, C) uint8 image as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_encode(torch.from_numpy(img).permute(2, 0, 1), "png"))


def make_folder(root, per_class=(4, 5, 3), side=12, channels=3, seed=0):
    """Class c's images have every pixel of channel 0 equal to 40 * c + i (i: image number)."""
    rng = np.random.default_rng(seed)
    written = {}
    for c, n in enumerate(per_class):
        for i in range(n):
            img = rng.integers(0, 256, (side, side, channels), dtype=np.uint8)
            img[..., 0] = 40 * c + i
            _png(root / f"class_{chr(97 + c)}" / f"img{i:02d}.png", img)
            written[(c, i)] = img
    return written


def _custom(path, fmt="folder", **kw):
    return Prepare(
        datasets=["digits", "mine"],
        custom={"mine": {"path": str(path), "format": fmt, **kw}},
        search_split="random",
    )


def test_folder_tree_prepares_with_labels_from_folder_names(tmp_path):
    written = make_folder(tmp_path / "src")
    d = load_prepared(prepare_dataset("mine", _custom(tmp_path / "src"), tmp_path / "prep"))
    assert d.card["classes"] == ["class_a", "class_b", "class_c"] and d.num_classes == 3
    assert d.card["counts"]["train"] + d.card["counts"]["test"] == 12
    x = np.concatenate([d.train_x, d.test_x])
    y = np.concatenate([d.train_y, d.test_y])
    assert x.shape == (12, 12, 12, 3)
    for img, label in zip(x, y, strict=True):
        c, i = divmod(int(img[0, 0, 0]), 40)
        assert label == c and np.array_equal(img, written[(c, i)])  # PNG is lossless
    assert d.card["augment"] == {"flip": True, "pad": 1}  # 12 // 8
    assert d.card["test_split"]["fraction"] == 0.2
    assert len(d.card["source"]["listing_sha256"]) == 64
    assert np.allclose(d.card["mean"][1], d.train_x[..., 1].mean() / 255)


def test_folder_with_train_and_test_and_resizing(tmp_path):
    make_folder(tmp_path / "src" / "train", per_class=(3, 3), side=10)
    make_folder(tmp_path / "src" / "test", per_class=(2, 1), side=20, seed=1)
    with pytest.raises(UserError, match=r"is 20x20 but .* is 10x10; set prepare.custom.mine.size"):
        prepare_dataset("mine", _custom(tmp_path / "src"), tmp_path / "prep")
    p = _custom(tmp_path / "src", size=8, flip=False, pad=2)
    d = load_prepared(prepare_dataset("mine", p, tmp_path / "prep"))
    assert d.card["counts"]["train"] == 6 and d.card["counts"]["test"] == 3
    assert d.train_x.shape[1:] == (8, 8, 3)
    assert d.test_y.tolist() == [0, 0, 1] and "test_split" not in d.card
    assert d.card["augment"] == {"flip": False, "pad": 2}


def test_grayscale_folder_stays_one_channel_and_jpeg_decodes(tmp_path):
    make_folder(tmp_path / "src", per_class=(3, 3), channels=1)
    img = torch.full((1, 12, 12), 77, dtype=torch.uint8)
    (tmp_path / "src" / "class_b" / "extra.jpg").write_bytes(_encode(img, "jpeg"))
    (tmp_path / "src" / "class_b" / "notes.txt").write_text("ignored")
    d = load_prepared(prepare_dataset("mine", _custom(tmp_path / "src"), tmp_path / "prep"))
    assert d.train_x.shape[-1] == 1 and d.card["counts"]["train"] + d.card["counts"]["test"] == 7


def test_corrupt_image_fails_and_keeps_earlier_data(tmp_path):
    make_folder(tmp_path / "src")
    out = prepare_dataset("mine", _custom(tmp_path / "src"), tmp_path / "prep")
    before = (out / "card.json").read_bytes()
    bad = tmp_path / "src" / "class_b" / "img01.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(UserError, match=r"class_b/img01.png is not a readable image"):
        prepare_dataset("mine", _custom(tmp_path / "src"), tmp_path / "prep")
    assert (out / "card.json").read_bytes() == before


def test_npz_with_and_without_a_test_set(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 9, 9), dtype=np.uint8)
    y = np.arange(40) % 4
    np.savez(tmp_path / "a.npz", x=x, y=y)
    d = load_prepared(prepare_dataset("mine", _custom(tmp_path / "a.npz", "npz"), tmp_path / "p"))
    assert d.train_x.shape[1:] == (9, 9, 1) and d.num_classes == 4
    assert d.card["counts"]["test"] == 8  # 20% of 40, stratified: 2 per class
    assert np.bincount(d.test_y).tolist() == [2, 2, 2, 2]
    # every prepared image is one of the originals with its own label
    lookup = {x[i].tobytes(): y[i] for i in range(40)}
    assert all(lookup[img[..., 0].tobytes()] == lab for img, lab in zip(d.train_x, d.train_y))
    xt = rng.integers(0, 256, (5, 9, 9, 3), dtype=np.uint8)
    np.savez(tmp_path / "b.npz", x=np.stack([x] * 3, -1), y=y, x_test=xt, y_test=np.arange(5) % 4)
    d = load_prepared(prepare_dataset("mine", _custom(tmp_path / "b.npz", "npz"), tmp_path / "p"))
    assert d.card["counts"]["train"] == 40 and np.array_equal(d.test_x, xt)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((4, 3, 8, 8), np.uint8), "y": np.zeros(4, int)}, "channels last"),
        ({"x": np.zeros((4, 8, 8), np.float32), "y": np.zeros(4, int)}, "expected uint8"),
        ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.zeros(3, int)}, "4 integer labels"),
        ({"x": np.zeros((4, 8, 8), np.uint8)}, "has no array 'y'"),
        ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.array([0, 1, None, 1])}, "object arrays"),
    ],
)
def test_bad_npz_is_refused(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message):
        prepare_dataset("mine", _custom(tmp_path / "bad.npz", "npz"), tmp_path / "p")


def test_custom_dataset_runs_through_the_loader_and_params(tmp_path):
    make_folder(tmp_path / "src", per_class=(6, 6))
    p = _custom(tmp_path / "src")
    d = load_prepared(prepare_dataset("mine", p, tmp_path / "prep"))
    loader = split_loader(d, "search_train", 4, torch.device("cpu"), augment=True, seed=1)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 12, 12) and x.dtype == torch.float32
    raw = {
        "prepare": p.model_dump(),
        "search": {"dataset": "mine"},
        "train": {"dataset": "mine"},
    }
    assert parse_params(raw).search.dataset == "mine"
    raw["train"]["dataset"] = "mien"
    with pytest.raises(UserError, match="train.dataset: unknown dataset 'mien'; did you mean"):
        parse_params(raw)


@pytest.mark.parametrize(
    "prepare, key, hint",
    [
        ({"datasets": ["cifar100", "imagenet16-12"]}, "prepare.datasets", "'imagenet16-120'"),
        ({"custom": {"cifar10": {"path": "x", "format": "npz"}}}, "prepare.custom", "built-in"),
        ({"custom": {"My Data": {"path": "x", "format": "npz"}}}, "prepare.custom", "lower-case"),
        ({"custom": {"m": {"path": "x", "format": "csv"}}}, "prepare.custom.m.format", "'folder'"),
        ({"paths": {"mine": "/x"}}, "prepare.paths", "prepare.custom.<name>.path"),
        ({"search_split": "file"}, "prepare", "needs prepare.split_file"),
        ({"datasets": ["digits", "digits"]}, "prepare.datasets", "more than once"),
    ],
)
def test_dataset_params_name_the_key(prepare, key, hint):
    with pytest.raises(UserError) as err:
        parse_params({"prepare": prepare})
    assert key in str(err.value) and hint in str(err.value), str(err.value)
