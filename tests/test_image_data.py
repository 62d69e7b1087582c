"""CIFAR-100, ImageNet16 and the split protocols, on tiny fixtures in the real file formats."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from dnas.config import Prepare
from dnas.data import cifar, imagenet16, load_prepared, prepare_dataset
from dnas.data.download import md5_file
from dnas.errors import UserError
from tests.py2pickle import dumps_py2

# --- CIFAR-100 ---------------------------------------------------------------------------


def c100_batches(seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in (("train", 12), ("test", 5)):
        out[name] = (
            rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            rng.integers(0, 20, n),  # coarse
            rng.integers(0, 100, n),  # fine
        )
    return out


def write_c100_bin(root, batches):
    d = root / cifar.C100_BIN_DIR
    d.mkdir(parents=True)
    for name, (data, coarse, fine) in batches.items():
        rec = np.concatenate([coarse[:, None], fine[:, None], data], axis=1).astype(np.uint8)
        (d / f"{name}.bin").write_bytes(rec.tobytes())
    return d


def write_c100_py(root, batches):
    d = root / cifar.C100_PY_DIR
    d.mkdir(parents=True)
    for name, (data, coarse, fine) in batches.items():
        batch = {
            b"filenames": [b"x.png"] * len(data),
            b"batch_label": name.encode(),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": coarse.tolist(),
            b"data": data,
        }
        (d / name).write_bytes(dumps_py2(batch))  # as its authors wrote it: Python 2
    return d


@pytest.mark.parametrize("writer", [write_c100_bin, write_c100_py])
def test_cifar100_reads_fine_labels_in_either_format(tmp_path, writer):
    b = c100_batches()
    writer(tmp_path / "src", b)
    p = Prepare(
        datasets=["cifar100"], paths={"cifar100": str(tmp_path / "src")}, search_split="random"
    )
    d = load_prepared(prepare_dataset("cifar100", p, tmp_path / "prep"))
    assert d.num_classes == 100 and d.train_x.shape == (12, 32, 32, 3)
    np.testing.assert_array_equal(d.train_y, b["train"][2])  # fine, not coarse
    np.testing.assert_array_equal(d.test_y, b["test"][2])
    # pixel (row 3, col 7) of train image 4: R, G, B planes 1024 bytes apart
    data = b["train"][0]
    assert d.train_x[4, 3, 7].tolist() == [data[4, 3 * 32 + 7 + k * 1024] for k in range(3)]
    # the GDAS code's CIFAR-100 constants (docs/data.md#cifar)
    assert d.card["mean"] == pytest.approx([129.3 / 255, 124.1 / 255, 112.4 / 255], abs=1e-6)
    assert d.card["std"][0] == pytest.approx(68.2 / 255, abs=1e-6)
    assert d.card["counts"] == {"train": 12, "test": 5, "search_train": 6, "search_valid": 6}


def test_cifar100_truncated_binary_names_record_size(tmp_path):
    d = write_c100_bin(tmp_path, c100_batches())
    (d / "train.bin").write_bytes((d / "train.bin").read_bytes()[:-1])
    with pytest.raises(UserError, match=r"train.bin is corrupt or truncated.*multiple of 3074"):
        cifar.load(str(tmp_path), tmp_path / "raw", "cifar100")


def test_cifar100_canonical_archive_md5_and_missing_hint(tmp_path):
    bad = tmp_path / "cifar-100-python.tar.gz"
    bad.write_bytes(b"not the archive")
    with pytest.raises(UserError, match="expected eb9058c3a382ffc7106e4002c42a8d85"):
        cifar.load(str(bad), tmp_path / "raw", "cifar100")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no CIFAR-100 batches.*prepare.paths.cifar100"):
        cifar.load(str(tmp_path / "empty"), tmp_path / "raw", "cifar100")


# --- ImageNet16 --------------------------------------------------------------------------

PER_FILE = 6


def write_imagenet16(root, seed=0, protocol=3):
    """11 pickles as the release's script (PatrykChrabaszcz/Imagenet32_Scripts,
    image2numpy_imagenet_*.py) writes them: `pickle.dump` of a dict with str keys, 'data' a
    uint8 (N, 768) array of planar rows, 'labels' a list of 1-based ints (`.tolist()`), and in
    the train files 'mean', the float64 mean image of the training set. Protocol 3 is Python
    3's default when the release was made (2017)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = [*imagenet16.TRAIN_FILES, imagenet16.VAL_FILE]
    data = {name: rng.integers(0, 256, (PER_FILE, 768), dtype=np.uint8) for name in names}
    mean = np.mean(np.concatenate([data[n] for n in imagenet16.TRAIN_FILES]), axis=0)
    files = {}
    for name in names:
        # labels spread over 1..1000 so every variant keeps some and drops some
        labels = rng.choice([1, 2, 60, 120, 121, 150, 151, 200, 201, 1000], PER_FILE).tolist()
        entry = {"data": data[name], "labels": labels}
        if name != imagenet16.VAL_FILE:
            entry["mean"] = mean
        with open(root / name, "wb") as f:
            pickle.dump(entry, f, protocol=protocol)
        files[name] = (data[name], np.array(labels))
    return files


@pytest.fixture
def in16(tmp_path, monkeypatch):
    files = write_imagenet16(tmp_path / "in16")
    md5 = {name: md5_file(tmp_path / "in16" / name) for name in files}
    monkeypatch.setattr(imagenet16, "MD5", md5)
    return tmp_path / "in16", files


@pytest.mark.parametrize("name, keep", [("imagenet16-120", 120), ("imagenet16-200", 200)])
def test_imagenet16_filters_and_shifts_labels(tmp_path, in16, name, keep):
    src, files = in16
    p = Prepare(datasets=[name], paths={"imagenet16": str(src)})
    d = load_prepared(prepare_dataset(name, p, tmp_path / "prep"))
    train_data = np.concatenate([files[f][0] for f in imagenet16.TRAIN_FILES])
    train_labels = np.concatenate([files[f][1] for f in imagenet16.TRAIN_FILES])
    mask = train_labels <= keep
    np.testing.assert_array_equal(d.train_y, train_labels[mask] - 1)
    expected = train_data[mask].reshape(-1, 3, 16, 16).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(d.train_x, expected)
    val_labels = files["val_data"][1]
    np.testing.assert_array_equal(d.test_y, val_labels[val_labels <= keep] - 1)
    assert d.num_classes == keep and d.train_y.min() >= 0 and d.train_y.max() < keep
    assert d.card["augment"] == {"flip": True, "pad": 2}
    assert d.card["mean"][0] == pytest.approx(122.68 / 255)
    assert d.card["published_counts"]["train"] == imagenet16.SIZES[name][0]


def test_imagenet16_checksum_mismatch_keeps_earlier_data(tmp_path, in16):
    src, _ = in16
    p = Prepare(datasets=["imagenet16-120"], paths={"imagenet16-120": str(src)})
    out = prepare_dataset("imagenet16-120", p, tmp_path / "prep")
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    with open(src / "train_data_batch_7", "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xfe")
    with pytest.raises(UserError, match=r"train_data_batch_7 has MD5 \w+, expected"):
        prepare_dataset("imagenet16-120", p, tmp_path / "prep")
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert sorted(x.name for x in (tmp_path / "prep").iterdir()) == ["imagenet16-120"]


def test_imagenet16_truncated_pickle_is_a_clear_error(tmp_path, in16, monkeypatch):
    src, _ = in16
    f = src / "val_data"
    f.write_bytes(f.read_bytes()[:500])
    monkeypatch.setitem(imagenet16.MD5, "val_data", md5_file(f))  # as if the MD5 matched
    with pytest.raises(UserError, match="val_data is not an ImageNet16 batch.*truncated"):
        imagenet16.load(str(src), "imagenet16-120", tmp_path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_imagenet16_pickle_that_runs_code_is_refused(tmp_path, in16, monkeypatch):
    src, _ = in16
    marker = tmp_path / "pwned"
    f = src / "train_data_batch_3"
    f.write_bytes(pickle.dumps({"data": _Evil(marker), "labels": [1]}, protocol=2))
    monkeypatch.setitem(imagenet16.MD5, "train_data_batch_3", md5_file(f))
    with pytest.raises(UserError, match=r"refusing to unpickle \S*system .*train_data_batch_3"):
        imagenet16.load(str(src), "imagenet16-120", tmp_path)
    assert not marker.exists()


def test_imagenet16_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(UserError, match=r"no stable public download.*prepare.paths.imagenet16"):
        imagenet16.load(None, "imagenet16-120", tmp_path / "raw")
    d = tmp_path / "partial"
    d.mkdir()
    (d / "val_data").write_bytes(b"")
    with pytest.raises(UserError, match="lacks train_data_batch_1, .*train_data_batch_10"):
        imagenet16.load(str(d), "imagenet16-120", tmp_path / "raw")


def test_the_published_md5_table_is_complete():
    assert sorted(imagenet16.MD5) == sorted([*imagenet16.TRAIN_FILES, "val_data"])
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in imagenet16.MD5.values())


# --- split protocols ---------------------------------------------------------------------


def _prep(tmp_path, **kw):
    p = Prepare(**kw)
    return load_prepared(prepare_dataset("digits", p, tmp_path)).card, p


def test_random_split_is_seeded_disjoint_and_differs_from_stratified(tmp_path):
    a, _ = _prep(tmp_path / "a", search_split="random", seed=4)
    b, _ = _prep(tmp_path / "b", search_split="random", seed=4)
    c, _ = _prep(tmp_path / "c", search_split="random", seed=5)
    s, _ = _prep(tmp_path / "s", search_split="stratified", seed=4)
    n = a["counts"]["train"]
    tr, va = a["splits"]["search_train"], a["splits"]["search_valid"]
    assert sorted(tr + va) == list(range(n)) and len(tr) == n // 2
    assert a["splits"] == b["splits"] and a["splits"] != c["splits"]
    assert a["splits"] != s["splits"]
    # the first half of a seeded permutation (GDAS 2019 code)
    perm = np.random.default_rng(4).permutation(n)
    assert tr == sorted(perm[: n // 2].tolist())
    assert a["search_split"] == {"protocol": "random", "seed": 4}


def test_autodl_split_file_is_used_verbatim(tmp_path):
    n = load_prepared(prepare_dataset("digits", Prepare(), tmp_path / "d")).card["counts"]["train"]
    train, valid = list(range(0, n, 3)), list(range(1, n, 3))
    f = tmp_path / "digits-split.txt"
    # AutoDL's config format: every value is [type, list of strings]
    f.write_text(json.dumps({"train": ["int", [str(i) for i in train]], "valid": ["int", valid]}))
    card, _ = _prep(tmp_path / "f", search_split="file", split_file=str(f))
    assert card["splits"] == {"search_train": train, "search_valid": valid}
    assert card["search_split"]["file"] == "digits-split.txt"
    assert len(card["search_split"]["file_sha256"]) == 64
    assert card["counts"]["search_train"] == len(train)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"train": ["int", [0, 1]], "valid": ["int", [1, 2]]}, "share 1 indices"),
        ({"train": [0, 1], "valid": [2, 99999]}, r"outside 0\.\.\d+"),
        ({"train": [0, 1]}, "has no 'valid' list"),
        ({"train": [0, 0], "valid": [1]}, "more than once"),
        ({"train": ["float", [0.5]], "valid": [1]}, "expected 'int'"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_split_files_are_refused(tmp_path, content, message):
    f = tmp_path / "split.txt"
    f.write_text(json.dumps(content))
    with pytest.raises(UserError, match=message):
        _prep(tmp_path / "p", search_split="file", split_file=str(f))
    assert not (tmp_path / "p" / "digits").exists()


def test_test_half_validates_on_half_the_test_set(tmp_path):
    card, p = _prep(tmp_path / "a", search_split="test_half", seed=2)
    d = load_prepared(tmp_path / "a" / "digits")
    n_train, n_test = card["counts"]["train"], card["counts"]["test"]
    assert card["splits"]["search_train"] == list(range(n_train))
    valid = card["splits"]["search_valid"]
    assert len(valid) == n_test // 2 and card["split_sources"] == {"search_valid": "test"}
    xs, ys = d.split("search_valid")
    np.testing.assert_array_equal(xs, d.test_x[valid])
    np.testing.assert_array_equal(ys, d.test_y[valid])
    # class-balanced: each class within one image of half its test count
    assert np.all(np.abs(np.bincount(ys, minlength=10) - np.bincount(d.test_y) / 2) <= 1)
    # with an AutoDL test-split file (cifar100-test-split.txt format) its xvalid is used
    f = tmp_path / "test-split.txt"
    xvalid = list(range(0, n_test, 2))
    xtest = list(range(1, n_test, 2))
    f.write_text(json.dumps({"xvalid": ["int", xvalid], "xtest": ["int", xtest]}))
    card, _ = _prep(tmp_path / "b", search_split="test_half", split_file=str(f))
    assert card["splits"]["search_valid"] == xvalid


def test_under_test_half_the_model_is_scored_on_the_x_test_half_only(tmp_path, monkeypatch):
    """Per-dataset protocols (search on one dataset, score another on its x-test half, as the
    NAS-Bench-201 CIFAR-100 / ImageNet16-120 rows do): the evaluation loader and the evaluate
    stage see exactly the test examples the x-valid half leaves, and eval.json says so."""
    import torch
    import yaml

    import stages.evaluate
    from dnas.config import parse_params
    from dnas.evaluate import eval_loader
    from dnas.models import build_network, save_model
    from dnas.spaces.published import resolve_genotype

    n_test = 360  # digits' test set
    xvalid, xtest = list(range(1, n_test, 2)), list(range(0, n_test, 2))
    f = tmp_path / "test-split.txt"
    f.write_text(json.dumps({"xvalid": ["int", xvalid], "xtest": ["int", xtest]}))
    raw = {
        "prepare": {"datasets": ["digits"], "search_split": {"digits": "test_half"},
                    "split_file": {"digits": str(f)}},
        "evaluate": {"batch_size": 1000},
    }  # fmt: skip
    p = parse_params(raw)
    assert p.prepare.split_for("digits") == ("test_half", str(f))
    monkeypatch.chdir(tmp_path)
    prepare_dataset("digits", p.prepare)
    d = load_prepared(tmp_path / "data/prepared/digits")
    assert d.card["splits"]["search_valid"] == xvalid
    x, y = next(iter(eval_loader(d, torch.device("cpu"), 1000)))
    assert len(y) == len(xtest)
    np.testing.assert_array_equal(y.numpy(), d.test_y[xtest])

    genotype = resolve_genotype("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|")
    config = {"in_channels": 1, "num_classes": 10, "channels": 4, "layers": 1}
    torch.manual_seed(0)
    net = build_network(genotype, 1, 10, 4, 1)
    net.eval()
    save_model("models/model.pt", net, genotype, config)
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    stages.evaluate.main()
    ev = json.loads(Path("metrics/eval.json").read_text())
    assert ev["test_size"] == len(xtest)
    assert ev["test_split"] == {"x_test_only": 1, "test_set_size": n_test}
    # the score is that of the x-test images alone, computed here
    from dnas.data.loader import split_loader

    full = next(iter(split_loader(d, "test", 1000, torch.device("cpu"))))[0]
    with torch.no_grad():
        hits = net(full[xtest]).argmax(1).numpy() == d.test_y[xtest]
    assert ev["test"]["top1"] == pytest.approx(100 * hits.mean(), abs=1e-3)


@pytest.mark.parametrize(
    "prepare, message",
    [
        ({"search_split": {"cifar10": "file"}}, "search_split names cifar10"),
        ({"search_split": {"digits": "file"}}, "needs prepare.split_file.digits"),
        ({"search_split": {"digits": "thirds"}}, "prepare.search_split"),
    ],
)
def test_per_dataset_split_mistakes_are_one_message(prepare, message):
    from dnas.config import parse_params

    with pytest.raises(UserError, match=message):
        parse_params({"prepare": {"datasets": ["digits"], **prepare}})
