"""Every preset is a complete params file that `dnas params check` accepts, and its retraining
recipe (and, where the algorithm exists, its search) runs one tiny step, so none can rot.

The tiny runs keep each preset's recipe (schedule, optimiser, auxiliary head, drop-path,
cutout, label smoothing, network) and shrink only the sizes: a few images of the dataset's
real shape, C=4, 3 cells (1 per stage for NB201), 2 epochs of 2 steps.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dnas.cli import main as cli_main
from dnas.config import TEXT_DATASETS, parse_params
from dnas.data import load_prepared
from dnas.data.prepared import write_prepared
from dnas.data.splits import search_split
from dnas.data.text import write_text_prepared
from dnas.evaluate import DATASET_SHAPES
from dnas.search.loop import run_search
from dnas.search.rnn_loop import run_rnn_search
from dnas.spaces.genotype import Genotype
from dnas.spaces.published import PUBLISHED, SEARCHED, resolve_genotype
from dnas.train.lm import run_lm_train
from dnas.train.loop import run_train

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.yaml") if p.name != "papers.yaml")
CPU = torch.device("cpu")


def _raw(name: str) -> dict:
    return yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())


def _tiny_data(root: Path, name: str):
    """A handful of random images of `name`'s real shape, in the prepared format (a few
    hundred random words for a text corpus)."""
    if name in TEXT_DATASETS:
        rng = np.random.default_rng(0)
        words = [f"w{i}" for i in range(20)]
        texts = {
            part: "".join(" ".join(rng.choice(words, 6)) + "\n" for _ in range(n))
            for part, n in (("train", 30), ("valid", 10), ("test", 10))
        }
        write_text_prepared(root / name, name, texts, {"origin": "test"})
        return load_prepared(root / name)
    shape = DATASET_SHAPES[name]
    rng = np.random.default_rng(0)
    n_train, n_test = 8, 4
    size = (shape.size, shape.size, shape.channels)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
        "train_y": np.arange(n_train) % shape.num_classes,
        "test_x": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
        "test_y": np.arange(n_test) % shape.num_classes,
    }
    card = {
        "num_classes": shape.num_classes,
        "augment": {"pad": 4 if shape.size >= 32 else 2, "flip": shape.channels == 3},
        "mean": [0.5] * shape.channels,
        "std": [0.25] * shape.channels,
        "splits": search_split(arrays["train_y"], "halves", 0),
    }
    write_prepared(root / name, name, arrays, card)
    return load_prepared(root / name)


def _tiny(raw: dict, stage: str) -> dict:
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    section = raw.setdefault(stage, {})
    if section.get("dataset") in TEXT_DATASETS:  # the language-model track: shrink the LM
        rnn = dict(section.get("rnn", {}))
        rnn.update(bptt=5, emsize=4, nhid=4)
        if stage == "train":
            rnn.update(eval_batch_size=2, test_batch_size=1)
        section.update(epochs=2, batch_size=4, rnn=rnn)
        raw["common"] = {**raw.get("common", {}), "device": "cpu", "checkpoint_every": 1}
        return raw
    nb201 = section.get("space") == "nb201" or (
        stage == "train" and raw["search"].get("space") == "nb201"
    )
    # DrNAS's partial channels need C to split evenly (and reducing edges even per part).
    channels = math.lcm(4, *section.get("partial_channels", [1]))
    section.update(epochs=2, batch_size=4, channels=channels, layers=1 if nb201 else 3)
    if "random_samples" in section:  # random search: a few draws, finalists among them
        section["random_samples"] = min(section["random_samples"], 20)
        section["random_finalists"] = min(section.get("random_finalists", 0), 3)
    if stage == "train":
        section["warmup_epochs"] = min(section.get("warmup_epochs", 0), 1)
    raw["common"] = {**raw.get("common", {}), "device": "cpu", "checkpoint_every": 1}
    return raw


def _stand_in(raw: dict) -> Genotype:
    """The genotype a tiny retraining uses when the preset retrains the searched cells."""
    spec = raw["train"].get("genotype", SEARCHED)
    if spec != SEARCHED:
        return resolve_genotype(spec)
    search = raw["search"]
    if search.get("space") == "rnn":
        return PUBLISHED["GDAS_RNN"].genotype
    if search.get("space") == "nb201":
        return resolve_genotype("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+"
                                "|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|")  # fmt: skip
    return PUBLISHED["GDAS_F1" if search.get("fixed_reduction") else "GDAS_V1"].genotype


def test_presets_exist_for_every_paper_row():
    assert len(PRESETS) >= 20 and {"gdas-cifar10", "gdas-frc-imagenet", "gdas-ptb"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_passes_params_check(name, capsys):
    cli_main(["params", "check", str(PRESET_DIR / f"{name}.yaml")])
    assert ": ok" in capsys.readouterr().out


@pytest.mark.parametrize("name", PRESETS)
def test_preset_retraining_runs_a_tiny_step(tmp_path, name):
    raw = _tiny(_raw(name), "train")
    dataset = raw["train"]["dataset"]
    # Only the train section matters here (the default search reads digits); the search is
    # tested on its own below.
    prepare = {"datasets": sorted({dataset, "digits"})}
    if dataset in TEXT_DATASETS and raw["train"].get("genotype", SEARCHED) == SEARCHED:
        raw["train"]["genotype"] = "GDAS_RNN"  # the stand-in below; the search is tested apart
    p = parse_params({"common": raw["common"], "prepare": prepare, "train": raw["train"]})
    data = _tiny_data(tmp_path, dataset)
    genotype = _stand_in(_raw(name))
    if genotype.space == "rnn":
        model, config, metrics = run_lm_train(p, genotype, data, CPU, tmp_path / "live")
        assert np.isfinite(metrics["valid_ppl"]) and config["test_batch_size"] == 1
        return
    model, config, metrics = run_train(p, genotype, data, CPU, tmp_path / "live")
    assert np.isfinite(metrics["train_loss"]) and metrics["epochs"] == 2
    if genotype.space == "darts":
        assert config["auxiliary"] == (p.train.auxiliary_weight > 0)
        assert config.get("network", "cifar") == ("imagenet" if dataset == "imagenet" else "cifar")
    if p.train.report == "best":
        assert 1 <= metrics["best_epoch"] <= 2


@pytest.mark.parametrize("name", PRESETS)
def test_preset_search_runs_a_tiny_step(tmp_path, name):
    raw = _raw(name)

    raw = _tiny(raw, "search")
    p = parse_params(raw)
    data = _tiny_data(tmp_path, p.search.dataset)
    run = run_rnn_search if p.search.space == "rnn" else run_search
    result = run(p, data, CPU, tmp_path / "live")
    result.genotype.validate()


@pytest.mark.parametrize("algorithm", ["gdas", "drnas"])
@pytest.mark.parametrize("target", ["cifar100", "imagenet16-120"])
def test_nb201_transfer_rows_search_on_cifar10_and_score_the_x_test_half(algorithm, target):
    """NAS-Bench-201's CIFAR-100 and ImageNet16-120 numbers are the CIFAR-10 search's cells,
    retrained on the target and scored on its x-test half: the preset searches exactly as the
    CIFAR-10 preset does and splits the target into x-valid / x-test (test_half)."""
    c10 = parse_params(_raw(f"{algorithm}-nb201-cifar10"))
    p = parse_params(_raw(f"{algorithm}-nb201-{target}"))
    assert p.search == c10.search and p.search.dataset == "cifar10"
    assert p.prepare.split_for("cifar10") == c10.prepare.split_for("cifar10")
    assert p.train.dataset == target and p.train == c10.train.model_copy(update={"dataset": target})
    protocol, split_file = p.prepare.split_for(target)
    assert protocol == "test_half" and split_file.endswith("-test-split.txt")


def test_gdas_cifar_presets_split_randomly_as_the_gdas_2019_code():
    for name in ("gdas-cifar10", "gdas-cifar100", "gdas-frc-cifar10", "gdas-frc-cifar100"):
        p = parse_params(_raw(name))
        assert p.search.dataset == "cifar10"
        assert p.prepare.split_for("cifar10") == ("random", None), name


def _params_files(root: Path) -> None:
    for name in ("params.yaml", "advanced.yaml"):
        (root / name).write_text((PRESET_DIR.parent / name).read_text())


@pytest.mark.parametrize("name", PRESETS)
def test_params_use_writes_each_preset_into_the_two_files(tmp_path, name):
    """`dnas params use NAME`: params.yaml keeps its keys (and its comments), advanced.yaml
    takes the rest, and the two together are the preset exactly (read back as PyYAML reads
    them: no value changed on the way, floats and lists included)."""
    from dnas.config import load_params
    from dnas.preset import use_preset
    from tests.test_config import _leaves

    _params_files(tmp_path)
    layout = set(_leaves(yaml.safe_load((tmp_path / "params.yaml").read_text())))
    use_preset(str(PRESET_DIR / f"{name}.yaml"), tmp_path)
    top = _leaves(yaml.safe_load((tmp_path / "params.yaml").read_text()))
    rest = _leaves(yaml.safe_load((tmp_path / "advanced.yaml").read_text()))
    assert set(top) == layout and not set(top) & set(rest)
    assert {**top, **rest} == _leaves(_raw(name))
    assert "dvc exp run -S search.tau_max=10" in (tmp_path / "params.yaml").read_text()
    p = load_params(tmp_path / "params.yaml", complete=True)
    assert p == parse_params(_raw(name), name)


def test_params_use_by_name_and_a_bad_preset_changes_nothing(tmp_path, monkeypatch, capsys):
    """By name from the project root; one `error:` line for an unknown name or a bad file,
    and neither params file changes."""
    _params_files(tmp_path)
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "gdas-cifar10.yaml").write_text(
        (PRESET_DIR / "gdas-cifar10.yaml").read_text()
    )
    monkeypatch.chdir(tmp_path)
    cli_main(["params", "use", "gdas-cifar10"])
    assert "wrote params.yaml and advanced.yaml" in capsys.readouterr().out
    written = {n: (tmp_path / n).read_bytes() for n in ("params.yaml", "advanced.yaml")}
    assert yaml.safe_load(written["advanced.yaml"])["train"]["cutout"] == 16
    bad = tmp_path / "bad.yaml"
    text = (PRESET_DIR / "gdas-cifar10.yaml").read_text()
    bad.write_text(text.replace("cutout: 16", "cutout: x"))
    for arg in ("no-such-preset", str(bad)):
        with pytest.raises(SystemExit) as exc:
            cli_main(["params", "use", arg])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert {n: (tmp_path / n).read_bytes() for n in written} == written
