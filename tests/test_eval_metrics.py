"""Per-class and balanced accuracy, the confusion matrix and its figure, checked against
scikit-learn on a real model's predictions over an imbalanced dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, recall_score

from dnas.data import load_prepared, prepare_dataset
from dnas.data.loader import DeviceLoader
from dnas.errors import UserError
from dnas.evaluate import balanced_accuracy, class_names, evaluate_loader, per_class_accuracy
from dnas.models import build_model, save_model
from dnas.plots import make_plots
from dnas.plots.confusion import load_confusion
from dnas.spaces.published import resolve_genotype
from tests.test_custom_data import make_folder
from tests.test_plots import NAMES, check_png, darts_genotype, make_inputs

ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = (30, 9, 4, 17)  # images per class: imbalanced
NAMES_ABCD = ["class_a", "class_b", "class_c", "class_d"]


def _predictions(model: torch.nn.Module, x: np.ndarray, mean, std) -> np.ndarray:
    """The model's argmax over uint8 (N, H, W, C) images, normalised by hand (not through the
    loader the code under test uses)."""
    t = torch.from_numpy(x).permute(0, 3, 1, 2).double() / 255.0
    t = (t - torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)) / torch.tensor(
        std, dtype=torch.float64
    ).view(1, -1, 1, 1)
    model.eval()
    with torch.no_grad():
        return model(t.float()).argmax(1).numpy()


def _skewed_model(k: int, channels: int, seed: int = 0) -> torch.nn.Module:
    """A small random linear classifier whose bias favours two classes, so that its
    predictions are neither all right nor all one class."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(3), torch.nn.Flatten(),
                                torch.nn.Linear(9 * channels, k))  # fmt: skip
    with torch.no_grad():
        model[2].bias.copy_(torch.linspace(0.6, -0.6, k))
    return model


def test_per_class_and_balanced_accuracy_match_sklearn():
    rng = np.random.default_rng(3)
    k = 5
    y = np.repeat(np.arange(k), [40, 3, 12, 25, 7])  # imbalanced
    x = rng.integers(0, 256, (len(y), 6, 6, 2), dtype=np.uint8)
    x[..., 0] = np.clip(y[:, None, None] * 50 + rng.integers(-60, 60, (len(y), 6, 6)), 0, 255)
    mean, std = [0.5, 0.5], [0.25, 0.3]
    model = _skewed_model(k, 2)
    loader = DeviceLoader(x, y, 16, mean, std, torch.device("cpu"))
    result = evaluate_loader(model, loader, num_classes=k)
    pred = _predictions(model, x, mean, std)
    assert 0 < (pred == y).mean() < 1 and len(set(pred)) > 1  # a test that can fail

    conf = np.asarray(result["confusion"])
    np.testing.assert_array_equal(conf, confusion_matrix(y, pred, labels=range(k)))
    assert conf.sum() == len(y) and result["top1"] == pytest.approx(100 * (pred == y).mean())
    np.testing.assert_allclose(
        per_class_accuracy(conf), 100 * recall_score(y, pred, average=None, labels=range(k))
    )
    assert balanced_accuracy(conf) == pytest.approx(100 * balanced_accuracy_score(y, pred))
    # the balanced accuracy differs from top-1 on imbalanced data
    assert abs(balanced_accuracy(conf) - result["top1"]) > 1


def test_a_class_without_test_images_is_left_out_as_sklearn_does():
    y = np.array([0, 0, 0, 2, 2, 1])
    pred = np.array([0, 1, 0, 2, 0, 1])
    conf = confusion_matrix(y, pred, labels=range(4))  # class 3: neither true nor predicted
    accs = per_class_accuracy(conf)
    assert accs[3] is None and accs[:3] == pytest.approx([200 / 3, 100, 50])
    assert balanced_accuracy(conf) == pytest.approx(100 * balanced_accuracy_score(y, pred))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """The evaluate stage run on an imbalanced folder dataset with a saved CNN, in a temporary
    directory laid out as the pipeline's: (directory, model, prepared data)."""
    import os

    from dnas.config import Prepare
    from stages import evaluate as stage

    root = tmp_path_factory.mktemp("eval")
    make_folder(root / "src", per_class=PER_CLASS, side=8, channels=3)
    prepare = Prepare(datasets=["mine"], custom={"mine": {"path": str(root / "src"),
                      "format": "folder"}}, test_fraction=0.5)  # fmt: skip
    data = load_prepared(prepare_dataset("mine", prepare, root / "data" / "prepared"))
    genotype = resolve_genotype("GDAS_V1", root / "genotype.json")
    config = {"in_channels": 3, "num_classes": 4, "channels": 4, "layers": 2}
    torch.manual_seed(1)
    model = build_model(genotype, config)
    save_model(root / "models" / "model.pt", model, genotype, config)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"].update({"datasets": ["mine"], "test_fraction": 0.5,
                              "custom": {"mine": {"path": "src", "format": "folder"}}})  # fmt: skip
    params["search"]["dataset"] = params["train"]["dataset"] = "mine"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    before = Path.cwd()
    os.chdir(root)
    try:
        stage.main()
    finally:
        os.chdir(before)
    return root, model, data


def test_evaluate_stage_writes_per_class_results(evaluated):
    root, model, data = evaluated
    metrics = json.loads((root / "metrics" / "eval.json").read_text())
    per_class = json.loads((root / "metrics" / "eval_per_class.json").read_text())
    y = data.test_y
    pred = _predictions(model, data.test_x, data.card["mean"], data.card["std"])
    assert len(set(pred)) > 1 or len(set(y)) > 1

    assert per_class["classes"] == NAMES_ABCD == class_names(data)
    conf = np.asarray(per_class["confusion"])
    assert conf.sum() == metrics["test_size"] == len(y)
    np.testing.assert_array_equal(conf, confusion_matrix(y, pred, labels=range(4)))
    support = dict(zip(NAMES_ABCD, np.bincount(y, minlength=4).tolist()))
    assert per_class["support"] == support
    recall = 100 * recall_score(y, pred, average=None, labels=range(4), zero_division=0)
    for i, name in enumerate(NAMES_ABCD):
        assert per_class["accuracy"][name] == pytest.approx(conf[i, i] / conf[i].sum() * 100)
        assert per_class["accuracy"][name] == pytest.approx(recall[i], rel=1e-5)
    sk = 100 * balanced_accuracy_score(y, pred)
    assert metrics["test"]["balanced_acc"] == pytest.approx(sk, rel=1e-5)
    assert per_class["balanced_acc"] == pytest.approx(sk, rel=1e-5)
    assert metrics["test"]["top1"] == pytest.approx(100 * (pred == y).mean(), rel=1e-5)
    # eval.json stays numbers only, one per fact: no per-class keys in it
    assert set(metrics["test"]) == {"top1", "top5", "loss", "balanced_acc"}


def test_class_names_fall_back_to_indices(evaluated):
    _, _, data = evaluated
    card = {k: v for k, v in data.card.items() if k != "classes"}
    unnamed = type(data)(data.name, data.train_x, data.train_y, data.test_x, data.test_y, card)
    assert class_names(unnamed) == ["0", "1", "2", "3"]


def test_confusion_png_is_drawn_from_the_evaluation(evaluated, tmp_path):
    from dnas.plots.confusion import confusion_figure
    from dnas.plots.style import plt, save, style

    root, _, _ = evaluated
    inputs = make_inputs(tmp_path / "in", darts_genotype())
    per_class = root / "metrics" / "eval_per_class.json"
    written = make_plots(*inputs, tmp_path / "out", dpi=60, evaluation=per_class)
    assert [p.name for p in written] == [*NAMES, "confusion.png"]
    check_png(written[-1], min_w=200, min_h=200)
    with style():  # the same inputs, the same bytes
        fig = confusion_figure(*load_confusion(per_class))
        try:
            again = save(fig, tmp_path / "again.png", 60)
        finally:
            plt.close(fig)
    assert again.read_bytes() == written[-1].read_bytes()
    # a language model's file holds no classes: no figure
    lm = tmp_path / "lm.json"
    lm.write_text(json.dumps({"classes": []}))
    assert load_confusion(lm) is None


def test_confusion_png_many_classes(tmp_path):
    rng = np.random.default_rng(0)
    k = 100
    conf = rng.integers(0, 3, (k, k)) + np.diag(rng.integers(5, 40, k))
    path = tmp_path / "pc.json"
    path.write_text(json.dumps({"classes": [f"c{i}" for i in range(k)],
                                "confusion": conf.tolist()}))  # fmt: skip
    names, matrix = load_confusion(path)
    assert len(names) == k and (matrix == conf).all()
    from dnas.plots.confusion import confusion_figure
    from dnas.plots.style import plt, save

    fig = confusion_figure(names, matrix)
    try:
        check_png(save(fig, tmp_path / "c.png", 50), min_w=300, min_h=300)
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    "content",
    ["{", json.dumps({"classes": ["a", "b"], "confusion": [[1, 2]]}),
     json.dumps({"classes": ["a"], "confusion": [[-1]]}), json.dumps([1])],
)  # fmt: skip
def test_bad_per_class_file_is_one_user_error(tmp_path, content):
    path = tmp_path / "eval_per_class.json"
    path.write_text(content)
    with pytest.raises(UserError, match="eval_per_class.json"):
        load_confusion(path)
    with pytest.raises(UserError, match="evaluate"):
        load_confusion(tmp_path / "missing.json")
