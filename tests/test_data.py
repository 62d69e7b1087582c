"""The embedded digits dataset, the prepared format and the device loader."""

import numpy as np
import pytest
import torch

from dnas.config import Prepare
from dnas.data import load_prepared, prepare_dataset
from dnas.data.loader import Augment, DeviceLoader, cutout, random_crop
from dnas.errors import UserError


def test_digits_counts_split_and_card(digits_prepared):
    d = digits_prepared
    card = d.card
    assert card["counts"]["train"] + card["counts"]["test"] == 1797  # sklearn's digits
    assert d.train_x.dtype == np.uint8 and d.train_x.shape[1:] == (8, 8, 1)
    assert d.train_x.max() == 255 and d.num_classes == 10
    # stratified: every class is within one example of its share in the test set
    share = np.bincount(np.concatenate([d.train_y, d.test_y])) * 0.2
    assert np.all(np.abs(np.bincount(d.test_y) - share) <= 1)
    a, b = (np.array(card["splits"][k]) for k in ("search_train", "search_valid"))
    assert len(np.intersect1d(a, b)) == 0
    assert sorted(np.concatenate([a, b]).tolist()) == list(range(len(d.train_y)))
    assert abs(len(a) - len(b)) <= 1
    xs, ys = d.split("search_valid")
    assert len(xs) == len(ys) == len(b)
    assert np.isclose(card["mean"][0], d.train_x.mean() / 255)


def test_prepare_is_reproducible_and_seeded(tmp_path):
    prepare_dataset("digits", Prepare(seed=0), tmp_path / "a")
    prepare_dataset("digits", Prepare(seed=0), tmp_path / "b")
    prepare_dataset("digits", Prepare(seed=1), tmp_path / "c")
    for name in ("card.json", "train_x.npy", "test_y.npy"):
        assert (tmp_path / "a/digits" / name).read_bytes() == (
            tmp_path / "b/digits" / name
        ).read_bytes()
    assert (tmp_path / "a/digits/test_y.npy").read_bytes() != (
        tmp_path / "c/digits/test_y.npy"
    ).read_bytes()


def test_halves_protocol_is_first_and_last_half(tmp_path):
    prepare_dataset("digits", Prepare(search_split="halves"), tmp_path)
    card = load_prepared(tmp_path / "digits").card
    n = card["counts"]["train"]
    assert card["splits"]["search_train"] == list(range(n // 2))
    assert card["splits"]["search_valid"] == list(range(n // 2, n))


def test_corrupt_or_missing_prepared_data_is_a_clear_error(tmp_path):
    out = prepare_dataset("digits", Prepare(), tmp_path)
    with open(out / "train_x.npy", "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    with pytest.raises(UserError, match="checksum differs"):
        load_prepared(out)
    with pytest.raises(UserError, match="no prepared dataset"):
        load_prepared(tmp_path / "nothing")


def test_a_failed_prepare_leaves_earlier_data_intact(tmp_path, monkeypatch):
    out = prepare_dataset("digits", Prepare(), tmp_path)
    before = (out / "card.json").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken)
    with pytest.raises(OSError):
        prepare_dataset("digits", Prepare(seed=3), tmp_path)
    assert (out / "card.json").read_bytes() == before
    assert load_prepared(out).card["search_split"]["seed"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]  # no temp dirs left


def _loader(d, seed, **kw):
    return DeviceLoader(
        d.train_x,
        d.train_y,
        32,
        d.card["mean"],
        d.card["std"],
        torch.device("cpu"),
        seed=seed,
        **kw,
    )


def test_loader_is_deterministic_for_a_seed(digits_prepared):
    aug = Augment(pad=1, flip=True, cutout=3)
    a = [x for x, _ in _loader(digits_prepared, 5, augment=aug, shuffle=True)]
    b = [x for x, _ in _loader(digits_prepared, 5, augment=aug, shuffle=True)]
    c = [x for x, _ in _loader(digits_prepared, 6, augment=aug, shuffle=True)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_loader_covers_the_data_once_per_epoch_and_normalises(digits_prepared):
    d = digits_prepared
    loader = _loader(d, 0, shuffle=True)
    ys = torch.cat([y for _, y in loader])
    assert sorted(ys.tolist()) == sorted(d.train_y.tolist())
    xs = torch.cat([x for x, _ in _loader(d, 0)])
    assert abs(xs.mean().item()) < 1e-4 and abs(xs.std().item() - 1) < 1e-3


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4) + 1
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, 1, g)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        windows = [padded[i, :, dy : dy + 4, dx : dx + 4] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert torch.equal(random_crop(x, 0, g), x)


def test_cutout_zeroes_one_square_per_image():
    x = torch.ones(64, 1, 16, 16)
    out = cutout(x, 4, torch.Generator().manual_seed(0))
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 16 and zeros.min() >= 4  # a clipped square at the border
    rows = (out[0, 0] == 0).any(1).nonzero().flatten()
    assert (rows.diff() == 1).all()  # contiguous


def test_epoch_progress_prints_one_line_per_epoch_off_a_terminal(capsys):
    from dnas.runtime import EpochProgress

    progress = EpochProgress(2, "search")
    for epoch in progress:
        progress.report(epoch, {"acc/valid": 12.345678, "tau": 0.1})
    assert capsys.readouterr().out.splitlines() == [
        "search epoch 1/2 acc/valid=12.35 tau=0.1",
        "search epoch 2/2 acc/valid=12.35 tau=0.1",
    ]
