"""Params validation: each bad value stops with one message that names the key."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dnas.config import MAX_THREADS, load_params, parse_params
from dnas.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_params_file_is_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.search.dataset in p.prepare.datasets


@pytest.mark.parametrize(
    "raw, key, hint",
    [
        ({"search": {"tau_max": "abc"}}, "search.tau_max", "valid number"),
        ({"train": {"epochs": -1}}, "train.epochs", "greater than or equal to 1"),
        ({"train": {"epochs": 2.5}}, "train.epochs", "integer"),
        ({"search": {"tau_mx": 3.0}}, "search.tau_mx", "did you mean 'search.tau_max'"),
        ({"serch": {}}, "serch", "did you mean 'search'"),
        ({"search": {"space": "resnet"}}, "search.space", "'darts', 'nb201' or 'rnn'"),
        ({"search": {"algorithm": "enas"}}, "search.algorithm", "'gdas'"),
        ({"search": {"tau_min": 20.0}}, "search", "tau_min (20.0) must be smaller than tau_max"),
        ({"search": {"lr": 0.01, "lr_min": 0.1}}, "search", "lr_min (0.1) must not exceed lr"),
        ({"search": {"dataset": "cifar10"}}, "search.dataset", "add it there"),
        ({"prepare": {"datasets": ["mnist"]}}, "prepare.datasets", "unknown dataset 'mnist'"),
        ({"prepare": {"datasets": []}}, "prepare.datasets", "at least 1"),
        ({"train": {"drop_path": 1.5}}, "train.drop_path", "less than 1"),
        ({"common": {"device": "tpu"}}, "common.device", "'auto', 'cpu' or 'cuda'"),
        ({"search": {"arch_betas": [0.5]}}, "search.arch_betas", "2 items"),
        ({"plots": {"dpi": 5}}, "plots.dpi", "greater than or equal to 30"),
        ({"search": {"epochs": "ten"}}, "search.epochs", "valid integer"),
        ({"search": {"tau_min": 0.0}}, "search.tau_min", "greater than 0"),
        ({"search": {"lr": -0.1}}, "search.lr", "greater than 0"),
        ({"search": {"momentum": 1.0}}, "search.momentum", "less than 1"),
        ({"search": {"sample_per": "batch"}}, "search.sample_per", "'network' or 'cell'"),
        ({"search": {"step_order": "random"}}, "search.step_order", "'weights_first'"),
        ({"search": {"unselected_grad": "maybe"}}, "search.unselected_grad", "'auto'"),
        ({"search": {"nesterov": "sometimes"}}, "search.nesterov", "valid boolean"),
        ({"train": {"cutout": -16}}, "train.cutout", "greater than or equal to 0"),
        ({"train": {"label_smoothing": 1.0}}, "train.label_smoothing", "less than 1"),
        ({"train": {"auxiliary_weight": -0.4}}, "train.auxiliary_weight", "greater than or"),
        ({"prepare": {"test_fraction": 1.0}}, "prepare.test_fraction", "less than 1"),
        ({"prepare": {"search_split": "darts"}}, "prepare.search_split", "'stratified'"),
        ({"prepare": {"paths": {"imagenett": "/x"}}}, "prepare.paths", "did you mean 'imagenet'"),
        ({"common": {"seed": -1}}, "common.seed", "greater than or equal to 0"),
        ({"evaluate": {"batch_size": 0}}, "evaluate.batch_size", "greater than or equal to 1"),
        ({"train": {"layer": 5}}, "train.layer", "did you mean 'train.layers'"),
        ({"search": {"order": 2}}, "search", "order 2 (the unrolled step) needs algorithm darts"),
        ({"search": {"order": 3}}, "search.order", "1 or 2"),
        ({"search": {"space": "nb201", "fixed_reduction": True}}, "search", "fixed_reduction"),
        ({"search": {"partial_channels": [4, 2], "keep_ops": [3]}}, "search", "set search.alg"),
        (
            {"search": {"algorithm": "drnas", "partial_channels": [4, 2]}},
            "search",
            "keep_ops needs one entry per stage but the last (1",
        ),
        ({"search": {"algorithm": "drnas", "partial_channels": [3]}}, "search", "channels (8)"),
        ({"search": {"arch_optimizer": "rmsprop"}}, "search.arch_optimizer", "'adam' or 'sgd'"),
        ({"search": {"drnas_reg": "l1"}}, "search.drnas_reg", "'l2' or 'kl'"),
        ({"search": {"tau_schedule": "cosine"}}, "search.tau_schedule", "'to_last_epoch'"),
    ],
)
def test_bad_params_name_the_key(raw, key, hint):
    with pytest.raises(UserError) as err:
        parse_params(raw)
    message = str(err.value)
    assert key in message and hint in message, message


def test_numbers_are_cast_whatever_yaml_made_of_them():
    p = parse_params({"search": {"tau_max": 10, "arch_lr": "3e-4"}})
    assert p.search.tau_max == 10.0 and isinstance(p.search.tau_max, float)
    assert p.search.arch_lr == 3e-4


def test_several_problems_are_listed_in_one_message():
    with pytest.raises(UserError) as err:
        parse_params({"search": {"tau_max": "x", "epochs": 0}})
    assert "2 problems" in str(err.value)


def test_a_stage_with_bad_params_prints_one_line_and_exits_2(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["search"]["tau_max"] = "abc"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(
        [sys.executable, "-m", "stages.search"],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: params.yaml: search.tau_max = 'abc': Input should be a valid number, "
        "unable to parse string as a number"
    ]
    assert not (tmp_path / "genotype.json").exists()


def test_cli_params_check(tmp_path, capsys):
    from dnas.cli import main

    main(["params", "check", str(ROOT / "params.yaml")])
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  epochs: zero\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["params", "check", str(bad)])
    assert exit_info.value.code == 2
    assert "search.epochs = 'zero'" in capsys.readouterr().err


def _missing_keys(model, raw: dict, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    missing = []
    for name, field in model.model_fields.items():
        if name not in raw:
            missing.append(prefix + name)
            continue
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and isinstance(raw[name], dict):
            missing += _missing_keys(ann, raw[name], f"{prefix}{name}.")
    return missing


PARAMS_FILES = ["params.yaml"] + sorted(
    f"presets/{p.name}" for p in (ROOT / "presets").glob("*.yaml") if p.name != "papers.yaml"
)


@pytest.mark.parametrize("name", PARAMS_FILES)
def test_params_files_list_every_key_so_exp_run_can_set_it(name):
    """`dvc exp run -S search.order=2` can only override keys that the params file has (a
    preset alone; the project's params.yaml with advanced.yaml beside it)."""
    from dnas.config import Params, with_advanced

    raw, _ = with_advanced(yaml.safe_load((ROOT / name).read_text()), ROOT / name)
    missing = _missing_keys(Params, raw)
    p = load_params(ROOT / name)
    from dnas.config import train_is_language_model

    if p.search.space != "rnn" and not train_is_language_model(p):
        # a CNN run: the language-model knobs stay out (dvc exp show lists what CNNs read)
        assert "rnn" not in raw["search"] and "rnn" not in raw["train"]
        missing = [k for k in missing if k not in ("search.rnn", "train.rnn")]
    assert missing == []


def _leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_config_defaults_are_params_yaml():
    """One source of defaults: every key of params.yaml equals the default of `Params()`, so a
    partial params file (or `parse_params({...})`) runs what `dvc repro` runs. The language-model
    sections (`search.rnn`, `train.rnn`) are not in params.yaml; their defaults are the PTB
    recipe."""
    written = _leaves(yaml.safe_load((ROOT / "params.yaml").read_text()))
    written.update(_leaves(yaml.safe_load((ROOT / "advanced.yaml").read_text())))
    defaults = _leaves(parse_params({}).model_dump())
    missing = object()
    differ = {
        k: (v, defaults.get(k, "<no default>"))
        for k, v in written.items()
        if defaults.get(k, missing) != v
    }
    assert differ == {}
    assert not any(k.startswith(("search.rnn.", "train.rnn.")) for k in written)


def test_each_knob_has_one_file_and_the_merge_is_by_key(tmp_path):
    """params.yaml and advanced.yaml share no key; they merge section by section; a key given
    in both is refused (else `dvc exp run -S` of one file could be silently overridden by the
    other), and a bad value in advanced.yaml is named with both files."""
    from dnas.config import with_advanced

    ours = _leaves(yaml.safe_load((ROOT / "params.yaml").read_text()))
    advanced = _leaves(yaml.safe_load((ROOT / "advanced.yaml").read_text()))
    assert ours and advanced and not set(ours) & set(advanced)
    (tmp_path / "advanced.yaml").write_text("search: {momentum: 0.5, lr_min: 0.002}\n")
    merged, source = with_advanced({"search": {"epochs": 3}}, tmp_path / "params.yaml")
    assert merged == {"search": {"epochs": 3, "momentum": 0.5, "lr_min": 0.002}}
    assert source == f"{tmp_path / 'params.yaml'} + {tmp_path / 'advanced.yaml'}"
    (tmp_path / "params.yaml").write_text("search: {epochs: 3}\n")
    assert load_params(tmp_path / "params.yaml").search.momentum == 0.5
    (tmp_path / "params.yaml").write_text("search: {epochs: 3, momentum: 0.7}\n")
    with pytest.raises(UserError, match=r"search\.momentum is also in .*advanced\.yaml"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("search: {epochs: 3}\n")
    (tmp_path / "advanced.yaml").write_text("search: {momentum: fast}\n")
    with pytest.raises(UserError, match=r"params\.yaml \+ .*advanced\.yaml: search\.momentum"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("threads", [0, -1, 100_000, 1.5, "many", True])
def test_common_threads_is_a_count_a_machine_can_start(threads):
    """common.threads: 1 .. MAX_THREADS or auto; a count of 100,000 would have torch start a
    hundred thousand threads in every stage, so it is one error line like 0."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["common"]["threads"] = threads
    with pytest.raises(UserError, match=r"common\.threads: .* is not a thread count"):
        parse_params(raw, "params.yaml")
    raw["common"]["threads"] = MAX_THREADS
    assert parse_params(raw, "params.yaml").common.threads == MAX_THREADS
