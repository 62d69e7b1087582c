"""Loaders: the vectorised device loader against a per-image CPU reference, host-memory
fallback, device identity, and the streaming ImageNet folder loader."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dnas.config import Prepare
from dnas.data import imagenet, load_prepared, prepare_dataset
from dnas.data.loader import Augment, DeviceLoader, split_loader
from dnas.errors import UserError

# --- the device loader -------------------------------------------------------------------


def reference_batches(x, y, batch, mean, std, aug: Augment, seed: int, passes: int = 1):
    """Per-image numpy implementation of pad-crop, flip, normalise and cutout, drawing the
    same random numbers from the same generator in the same order as `DeviceLoader`."""
    g = torch.Generator().manual_seed(seed)
    n = len(x)
    mean = np.asarray(mean, np.float32) * 255
    std = np.asarray(std, np.float32) * 255
    out = []
    for _ in range(passes):
        order = torch.randperm(n, generator=g).numpy()
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            m = len(idx)
            imgs = [x[i].copy() for i in idx]  # (H, W, C)
            h, w = imgs[0].shape[:2]
            if aug.pad:
                dy = torch.randint(0, 2 * aug.pad + 1, (m,), generator=g).numpy()
                dx = torch.randint(0, 2 * aug.pad + 1, (m,), generator=g).numpy()
                p = aug.pad
                imgs = [
                    np.pad(im, ((p, p), (p, p), (0, 0)))[a : a + h, b : b + w]
                    for im, a, b in zip(imgs, dy, dx, strict=True)
                ]
            if aug.flip:
                flips = (torch.rand(m, generator=g) < 0.5).numpy()
                imgs = [im[:, ::-1] if f else im for im, f in zip(imgs, flips, strict=True)]
            imgs = [(im.astype(np.float32) - mean) / std for im in imgs]
            if aug.cutout:
                cy = torch.randint(0, h, (m,), generator=g).numpy()
                cx = torch.randint(0, w, (m,), generator=g).numpy()
                half = aug.cutout // 2
                for im, a, b in zip(imgs, cy, cx, strict=True):
                    y0, x0 = max(a - half, 0), max(b - half, 0)
                    im[y0 : max(a - half + aug.cutout, 0), x0 : max(b - half + aug.cutout, 0)] = 0
            out.append((np.stack(imgs).transpose(0, 3, 1, 2), y[idx]))
    return out


@pytest.mark.parametrize(
    "aug", [Augment(), Augment(pad=4, flip=True), Augment(pad=2, flip=True, cutout=5)]
)
def test_device_loader_matches_a_per_image_reference(aug):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (37, 10, 12, 3), dtype=np.uint8)
    y = rng.integers(0, 5, 37)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    loader = DeviceLoader(x, y, 8, mean, std, torch.device("cpu"), aug, shuffle=True, seed=3)
    got = [loader.next_batch() for _ in range(2 * len(loader))]  # two passes
    want = reference_batches(x, y, 8, mean, std, aug, seed=3, passes=2)
    assert len(got) == len(want) == 10
    for (gx, gy), (wx, wy) in zip(got, want, strict=True):
        np.testing.assert_allclose(gx.numpy(), wx, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(gy.numpy(), wy)


def _batches(d, device, hold=None, n=6):
    loader = DeviceLoader(
        d.train_x,
        d.train_y,
        32,
        d.card["mean"],
        d.card["std"],
        device,
        Augment(pad=1, flip=True, cutout=3),
        shuffle=True,
        seed=11,
        hold_on_device=hold,
    )
    return [tuple(t.cpu() for t in loader.next_batch()) for _ in range(n)]


def test_host_memory_fallback_gives_the_same_batches(digits_prepared):
    cpu = torch.device("cpu")
    a = _batches(digits_prepared, cpu, hold=True)
    b = _batches(digits_prepared, cpu, hold=False)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("hold", [True, False])
def test_cuda_and_cpu_loaders_give_identical_batches(digits_prepared, hold):
    a = _batches(digits_prepared, torch.device("cpu"))
    b = _batches(digits_prepared, torch.device("cuda"), hold=hold)
    for (x1, y1), (x2, y2) in zip(a, b, strict=True):
        assert torch.equal(y1, y2)
        torch.testing.assert_close(x1, x2, rtol=0, atol=1e-6)


def test_normalisation_constants_follow_the_reference(tmp_path):
    from dnas.data import cifar, imagenet16

    # docs/data.md#cifar: mean and std in 0..255 units
    assert [round(m * 255, 2) for m in cifar.MEAN] == [125.3, 123.0, 113.9]
    assert [round(s * 255, 2) for s in cifar.C100_STD] == [68.2, 65.4, 70.4]
    assert [round(m * 255, 2) for m in imagenet16.MEAN] == [122.68, 116.66, 104.01]
    assert imagenet.MEAN == [0.485, 0.456, 0.406] and imagenet.STD == [0.229, 0.224, 0.225]


# --- ImageNet folder ---------------------------------------------------------------------


def _jpeg(path, h, w, value):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import encode_jpeg

        img = torch.full((3, h, w), value, dtype=torch.uint8)
        img[0] = torch.arange(w, dtype=torch.uint8).expand(h, w)  # a gradient to crop into
        data = encode_jpeg(img).numpy().tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


WNIDS = ["n01440764", "n01443537", "n01484850"]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "ILSVRC2012"
    for c, wnid in enumerate(WNIDS):
        for i in range(4):
            _jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG", 30 + 3 * i, 40, 60 * c)
        for i in range(2):
            _jpeg(root / "val" / wnid / f"ILSVRC2012_val_{c}{i}.JPEG", 36, 28, 60 * c)
    (root / "train" / WNIDS[0] / "readme.txt").write_text("not an image")
    return root


def _prepare_tree(root, out, **kw):
    p = Prepare(datasets=["imagenet"], paths={"imagenet": str(root)}, search_split="random", **kw)
    return load_prepared(prepare_dataset("imagenet", p, out))


def test_imagenet_manifest_lists_files_sizes_and_labels(tree, tmp_path):
    d = _prepare_tree(tree, tmp_path / "prep")
    card = d.card
    assert card["kind"] == "folder" and card["num_classes"] == 3 and d.classes == WNIDS
    assert card["counts"]["train"] == 12 and card["counts"]["test"] == 6
    assert card["class_counts"] == {"train": [4, 4, 4], "test": [2, 2, 2]}
    assert d.train_files[5] == f"train/{WNIDS[1]}/{WNIDS[1]}_1.JPEG" and d.train_y[5] == 1
    assert card["bytes"]["train"] == sum(
        (tree / f).stat().st_size for f in d.train_files
    )  # sizes from the listing
    assert sorted(card["splits"]["search_train"] + card["splits"]["search_valid"]) == list(
        range(12)
    )
    assert not any((tmp_path / "prep" / "imagenet").glob("*.npy"))  # no copy of the images
    # a changed tree changes the manifest (and so its checksum in card.json)
    _jpeg(tree / "train" / WNIDS[2] / "extra.JPEG", 30, 30, 9)
    d2 = _prepare_tree(tree, tmp_path / "prep")
    assert d2.card["counts"]["train"] == 13
    assert d2.card["sha256"]["train.tsv"] != card["sha256"]["train.tsv"]


def test_flat_val_folder_and_missing_tree_are_clear_errors(tree, tmp_path):
    (tree / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"x")
    with pytest.raises(UserError, match="holds 1 images directly.*one folder per class"):
        _prepare_tree(tree, tmp_path / "prep")
    with pytest.raises(UserError, match=r"put train/<wnid>/\*.JPEG .*prepare.paths.imagenet"):
        _prepare_tree(tmp_path / "nowhere", tmp_path / "prep")


def test_folder_loader_is_deterministic_resumable_and_worker_independent(tree, tmp_path):
    d = _prepare_tree(tree, tmp_path / "prep")

    def loader(workers, seed=5):
        return imagenet.FolderLoader(
            d, "train", 5, torch.device("cpu"), augment=True, cutout=16, shuffle=True,
            seed=seed, num_workers=workers,
        )  # fmt: skip

    a = [b for b in loader(0)]
    b = [b for b in loader(2)]
    assert len(a) == 3 and a[0][0].shape == (5, 3, 224, 224) and a[-1][0].shape[0] == 2
    for (x1, y1), (x2, y2) in zip(a, b, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(d.train_y.tolist())
    c = next(iter(loader(0, seed=6)))
    assert not torch.equal(a[0][0], c[0])
    # resume: a checkpoint after one batch continues with the same next batches
    first = loader(0)
    first.next_batch()
    state = first.state_dict()
    expected = [first.next_batch() for _ in range(3)]  # crosses into the next pass
    second = loader(0, seed=99)
    second.load_state_dict(state)
    for (x1, y1), (x2, y2) in zip(expected, [second.next_batch() for _ in range(3)]):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_folder_loader_eval_transform_and_split_loader(tree, tmp_path):
    d = _prepare_tree(tree, tmp_path / "prep")
    test = split_loader(d, "test", 4, torch.device("cpu"))
    assert isinstance(test, imagenet.FolderLoader) and len(test) == 2
    x, y = next(iter(test))
    assert y.tolist() == [0, 0, 1, 1]
    # channel 1 of class 0 is a constant 0 (JPEG keeps a flat field within a step or two)
    expected = (0 - imagenet.MEAN[1] * 255) / (imagenet.STD[1] * 255)
    assert torch.allclose(x[0, 1], torch.full_like(x[0, 1], expected), atol=3 / 255 / 0.224)
    # the search splits work too, through the same interface as the device loader
    st = split_loader(d, "search_train", 3, torch.device("cpu"), augment=True, shuffle=True)
    assert st.num_examples == len(d.card["splits"]["search_train"])


def test_crop_box_follows_random_resized_crop_bounds():
    g = torch.Generator().manual_seed(0)
    for h, w in [(300, 400), (50, 500), (224, 224)]:
        for _ in range(50):
            top, left, ch, cw = imagenet.crop_box(h, w, g)
            assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w
            assert ch > 0 and cw > 0
    # an extreme aspect ratio never fits 10 tries at ratios <= 4/3: centre crop at 4/3
    top, left, ch, cw = imagenet.crop_box(10, 1000, torch.Generator().manual_seed(1))
    assert (ch, cw) == (10, 13) and left == (1000 - 13) // 2
