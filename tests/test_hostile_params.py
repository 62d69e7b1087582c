"""Hostile params, genotypes, checkpoints and signals (issue 23, docs/failure-modes.md).

Each case asserts what the project promises for bad input: exactly one `error:` line naming
the key or file, a non-zero exit that is not a signal, no traceback, nothing produced earlier
changed, and an answer within seconds. Most cases call the entry points in-process
(`run_main` around the validate stage's function, the CLI's `main`); the ones that are about
time or about DVC run a real subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from dnas.errors import UserError, run_main
from tests.pipeline_copy import checkout_env, copy_pipeline, dvc_env, runner

ROOT = Path(__file__).resolve().parents[1]
VALID_NB201 = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
)


def _one_error_line(err: str, *names: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def _fails_cleanly(capsys, fn, *names: str) -> str:
    """`fn` under `run_main`: exit status 2 and one `error:` line naming `names`."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(fn)
    assert exit_info.value.code == 2
    return _one_error_line(capsys.readouterr().err, *names)


def _cli(capsys, *argv: str, names: tuple[str, ...] = ()) -> str:
    from dnas.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    return _one_error_line(capsys.readouterr().err, *names)


def _params(tmp_path: Path, **sections) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        raw[section].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _validate(path: Path):
    from stages.validate import validate_params

    return lambda: validate_params(path)


def _darts_json() -> dict:
    from dnas.spaces.published import PUBLISHED

    return PUBLISHED["GDAS_V1"].genotype.to_json()


# --- 1. a malformed train.genotype stops validate, before DVC deletes train's outputs --------

BAD_GENOTYPES = {
    "missing node": "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|",
    "input out of range": VALID_NB201.replace("avg_pool_3x3~1", "avg_pool_3x3~5"),
    "unknown op": VALID_NB201.replace("skip_connect~2", "conv_9x9~2"),
    "duplicate edge": VALID_NB201.replace("avg_pool_3x3~1", "avg_pool_3x3~0"),
    "negative input": VALID_NB201.replace("nor_conv_3x3~0|+|nor", "nor_conv_3x3~-1|+|nor", 1),
    "trailing plus": VALID_NB201 + "+",
    "unknown name": "GDAS_V9",
    "missing file": "mine.json",
    "malformed file": "bad.json",
}


@pytest.mark.parametrize("case", sorted(BAD_GENOTYPES))
def test_validate_resolves_train_genotype(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    bad = _darts_json()
    bad["cells"]["normal"]["inputs"] = 3
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    path = _params(tmp_path, train={"genotype": BAD_GENOTYPES[case]})
    line = _fails_cleanly(capsys, _validate(path))
    assert "train.genotype" in line or BAD_GENOTYPES[case] in line, line


@pytest.mark.parametrize("spec", ["searched", "GDAS_V1", "good.json"])
def test_validate_accepts_good_genotypes(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.json").write_text(json.dumps(_darts_json()))
    _validate(_params(tmp_path, train={"genotype": spec}))()  # no genotype.json is needed


def test_validate_accepts_an_nb201_string_and_refuses_a_cell_of_the_wrong_track(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    _validate(_params(tmp_path, train={"genotype": VALID_NB201}))()
    path = _params(tmp_path, train={"genotype": "rnn.json"})
    from dnas.spaces.published import PUBLISHED

    (tmp_path / "rnn.json").write_text(json.dumps(PUBLISHED["GDAS_RNN"].genotype.to_json()))
    _fails_cleanly(capsys, _validate(path), "train.genotype", "a recurrent cell", "text corpus")


@pytest.mark.e2e
def test_dvc_keeps_train_outputs_when_the_genotype_is_malformed(tmp_path):
    """A real `dvc repro`: the project's validate stage, and a stand-in for train with the real
    train stage's params, its dependency on validate's output and its outputs (only its
    command is a cheap one). With a malformed NB201 string, validate stops the run, and DVC
    never deletes train's outputs."""
    repo = tmp_path / "repo"
    copy_pipeline(repo, ("src", "stages"))
    real = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "data/stages/train.json" in real["train"]["deps"]  # train runs after validate
    write = (
        'python -c "import pathlib; [pathlib.Path(p).parent.mkdir(parents=True, exist_ok=True)'
        " or pathlib.Path(p).write_text('trained ' + p) for p in"
        " ('models/model.pt', 'metrics/train.json', 'dvclive/train/metrics.json')]\""
    )
    stand_in = {
        "cmd": write,
        "deps": ["data/stages/train.json"],
        "params": [p for p in real["train"]["params"] if isinstance(p, str)],
        "outs": real["train"]["outs"],
        "metrics": real["train"]["metrics"],
    }
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"validate": real["validate"], "train": stand_in}})
    )
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    shutil.copy(ROOT / "advanced.yaml", repo / "advanced.yaml")
    run = runner(repo, dvc_env(tmp_path / "home", OMP_NUM_THREADS="1"), timeout=300)
    for cmd in (("git", "init", "-q", "-b", "main"), ("dvc", "init", "-q"), ("dvc", "repro")):
        run(*cmd)
    outputs = ("models/model.pt", "metrics/train.json", "dvclive/train/metrics.json")
    before = {p: (repo / p).read_bytes() for p in outputs}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["genotype"] = BAD_GENOTYPES["trailing plus"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    code, out = run("dvc", "repro", check=False)
    assert code != 0
    assert "train.genotype" in out
    assert "Running stage 'train'" not in out
    assert {p: (repo / p).read_bytes() for p in outputs} == before


# --- 2. set-aside checkpoints never overwrite one another -----------------------------------


def test_set_aside_checkpoints_are_all_kept(tmp_path, capsys):
    from dnas.checkpoint import Checkpointer

    ckpt = tmp_path / "search"
    kept = []
    for n, fingerprint in enumerate(["params-a", "params-b", "params-a", "params-c"]):
        Checkpointer(ckpt, fingerprint, 1).save({"epoch": n})
        assert Checkpointer(ckpt, "params-now", 1).load() is None
        err = capsys.readouterr().err
        target = re.search(r"moved to (\S+)", err).group(1)
        assert "starting from scratch" in err
        kept.append(Path(target))
    for path, fingerprint in zip(kept, ["paramsa", "paramsb", "paramsa"]):
        assert fingerprint in path.name
    assert len(set(kept)) == 4  # four names, none reused
    epochs = [torch.load(p, weights_only=True)["epoch"] for p in kept]
    assert epochs == [0, 1, 2, 3]  # each still holds its own run
    for n in range(3):  # and corrupt ones too
        ckpt.mkdir(exist_ok=True)
        (ckpt / "last.pt").write_bytes(b"garbage %d" % n)
        assert Checkpointer(ckpt, "params-now", 1).load() is None
    corrupt = sorted((tmp_path / "set-aside").glob("search.corrupt*.pt"))
    assert sorted(p.read_bytes() for p in corrupt) == [b"garbage 0", b"garbage 1", b"garbage 2"]


def test_resuming_after_a_set_aside_does_not_say_starting_from_scratch(tmp_path, capsys):
    """A stale finished.pt is set aside, then last.pt resumes: the lines say so, in order."""
    from dnas.checkpoint import FINISHED, Checkpointer

    ckpt = tmp_path / "train"
    Checkpointer(ckpt, "other", 1).save({"epoch": 1})
    (ckpt / "last.pt").replace(ckpt / FINISHED)
    now = Checkpointer(ckpt, "this", 1)
    now.save({"epoch": 2, "log": "[]", "epoch_state": None, "rng": None})
    state = now.load()
    assert state is not None and state["epoch"] == 2
    err = capsys.readouterr().err
    assert "moved to" in err and "starting from scratch" not in err


# --- 3. absurd floats: one line from validate, and the guard's line from a step ------------


@pytest.mark.parametrize(
    "key, value",
    [
        ("lr", 1e300),
        ("arch_lr", 1e300),
        ("weight_decay", 1e300),
        ("arch_weight_decay", 1e300),
        ("tau_max", 1e300),
        ("lr", float("inf")),
        ("momentum", float("nan")),
        ("lr", "1e300"),
    ],
)
def test_absurd_floats_are_one_line(tmp_path, capsys, key, value):
    path = _params(tmp_path, search={key: value})
    _fails_cleanly(capsys, _validate(path), f"search.{key}")


def test_a_float32_overflow_in_a_step_is_the_guards_line(tmp_path):
    """torch's `value cannot be converted to type float without overflow`, raised by a real
    Adam step whose step size leaves float32 (what `search.arch_lr: 3e38` did)."""
    from dnas.runner import EpochRunner

    param = torch.nn.Parameter(torch.ones(3))
    adam = torch.optim.Adam([param], lr=3e38, betas=(0.5, 0.999))

    def epoch(_):
        param.grad = torch.ones(3)
        adam.step()
        return {}

    runner = EpochRunner(
        "search", 1, torch.device("cpu"), "search.lr or search.arch_lr", tmp_path / "live",
        None, 1, "fp", {}, [],
    )  # fmt: skip
    with pytest.raises(UserError) as err:
        runner.run(epoch, lambda live: None)
    assert "overflowed float32 at epoch 1" in str(err.value)
    assert "search.arch_lr" in str(err.value)


# --- 4. nesting thousands deep ---------------------------------------------------------------


def test_params_nested_thousands_deep(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text("search:\n  lr: " + "[" * 5000 + "]" * 5000 + "\n")
    _cli(capsys, "params", "check", str(path), names=(str(path), "nested"))
    _fails_cleanly(capsys, _validate(path), "nested")
    path.write_text("search:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(3000)))
    _cli(capsys, "params", "check", str(path), names=(str(path),))


def test_a_genotype_nested_thousands_deep(tmp_path, capsys, monkeypatch):
    path = tmp_path / "deep.json"
    path.write_text('{"space": "darts", "cells": ' + "[" * 100000 + "]" * 100000 + "}")
    _cli(capsys, "genotype", "info", str(path), names=(str(path), "nested"))
    _cli(capsys, "genotype", "show", str(path), names=(str(path),))
    monkeypatch.chdir(tmp_path)
    _fails_cleanly(capsys, _validate(_params(tmp_path, train={"genotype": "deep.json"})))


# --- 5. sizes that would hang ----------------------------------------------------------------


def _timed(cmd: list[str], cwd: Path, limit: float = 30.0) -> subprocess.CompletedProcess:
    began = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=cwd, env=checkout_env(), capture_output=True, text=True, timeout=limit * 4
    )
    assert time.monotonic() - began < limit, f"took {time.monotonic() - began:.0f} s"
    return proc


def test_a_genotype_of_8000_nodes_is_refused_at_once(tmp_path):
    g = _darts_json()
    g["cells"]["normal"]["nodes"] = [[["skip_connect", i], ["skip_connect", i + 1]]
                                     for i in range(8000)]  # fmt: skip
    g["cells"]["normal"]["concat"] = list(range(2, 8002))
    (tmp_path / "big.json").write_text(json.dumps(g))
    proc = _timed([sys.executable, "-m", "dnas.cli", "genotype", "info", "big.json"], tmp_path)
    assert proc.returncode == 2
    _one_error_line(proc.stderr, "big.json", "8000 nodes")


def test_keep_ops_of_a_million_and_a_half_items(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["search"]["keep_ops"] = []  # an advanced.yaml knob, set in params.yaml
    text = yaml.safe_dump(raw, sort_keys=False)
    text = text.replace("keep_ops: []", "keep_ops: [" + ", ".join(["1"] * 1_500_000) + "]")
    assert text.count(", 1") > 1_000_000
    (tmp_path / "params.yaml").write_text(text)
    proc = _timed([sys.executable, "-m", "stages.validate"], tmp_path)
    assert proc.returncode == 2
    _one_error_line(proc.stderr, "params.yaml")


def test_long_lists_are_refused_by_their_length(tmp_path, capsys):
    path = _params(tmp_path, search={"keep_ops": [1] * 5000})
    line = _fails_cleanly(capsys, _validate(path), "search.keep_ops")
    assert len(line) < 400  # the value is not printed whole


def test_genotype_info_bounds_channels_and_layers(capsys):
    _cli(capsys, "genotype", "info", "GDAS_V1", "--layers", "100000", names=("--layers",))
    _cli(capsys, "genotype", "info", "GDAS_V1", "--channels", "10000000", names=("--channels",))


# --- 6. no silent coercion in a genotype file ------------------------------------------------


def _cell_edit(cell: dict, case: str) -> str:
    """Edit a DARTS cell's JSON as `case` says; return the field the error must name."""
    if case.startswith("inputs="):
        cell["inputs"] = json.loads(case.partition("=")[2])
        return "inputs"
    if case.startswith("index="):
        cell["nodes"][1][0][1] = json.loads(case.partition("=")[2])
        return "node 3"
    if case == "concat=1.0":
        cell["concat"][0] = 2.0
        return "concat"
    if case == "five nodes":
        cell["nodes"].append([["skip_connect", 0], ["skip_connect", 1]])
        return "5 nodes"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["inputs=3", "inputs=1", "inputs=1e9", "inputs=true", "inputs=\"2\"", "index=1.7",
     "index=true", "index=1e9", "concat=1.0", "five nodes"],
)  # fmt: skip
def test_genotype_fields_are_strict(tmp_path, capsys, case):
    g = _darts_json()
    field = _cell_edit(g["cells"]["normal"], case)
    (tmp_path / "g.json").write_text(json.dumps(g))
    _cli(capsys, "genotype", "show", str(tmp_path / "g.json"), names=("'normal'", field))


@pytest.mark.parametrize(
    "space, cell, field",
    [
        ("nb201", {"inputs": 1, "nodes": [[["none", 0]]], "concat": [1]}, "nodes"),
        ("nb201", None, "arch"),
        ("rnn", {"inputs": 1, "nodes": [[["relu", 0]]] * 9, "concat": [1]}, "9 nodes"),
    ],
)
def test_other_spaces_have_their_exact_shape(tmp_path, capsys, space, cell, field):
    from dnas.spaces.published import PUBLISHED, resolve_genotype

    if space == "nb201":
        g = resolve_genotype(VALID_NB201).to_json()
        if cell is None:
            g["arch"] = VALID_NB201.replace("skip_connect~2", "none~2")  # not the cell's
    else:
        g = PUBLISHED["GDAS_RNN"].genotype.to_json()
    if cell is not None:
        g["cells"][space if space == "rnn" else "cell"] = cell
    (tmp_path / "g.json").write_text(json.dumps(g))
    _cli(capsys, "genotype", "show", str(tmp_path / "g.json"), names=(field,))


def test_the_cell_shapes_are_those_of_the_spaces():
    from dnas.spaces import darts, nb201, rnn
    from dnas.spaces.genotype import SPACE_SHAPE

    assert SPACE_SHAPE == {
        "darts": (darts.INPUTS, darts.STEPS),
        "nb201": (1, nb201.NODES - 1),
        "rnn": (1, rnn.STEPS),
    }


# --- 7. a dataset name ending in a newline ----------------------------------------------------


@pytest.mark.parametrize("name", ["mine\n", "mine\r", "Mine", "mine data", "-mine"])
def test_a_custom_dataset_name_is_matched_whole(name):
    from dnas.config import parse_params

    with pytest.raises(UserError, match="a dataset name is lower-case"):
        parse_params({"prepare": {"custom": {name: {"path": "x.npz", "format": "npz"}}}})


# --- 8. what DVC refuses, validate refuses --------------------------------------------------


def test_duplicate_keys_are_refused_with_key_and_line(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text()
    path.write_text(text.replace("  lr: 0.025\n", "  lr: 0.025\n  lr: 0.5\n", 1))
    line_no = path.read_text().splitlines().index("  lr: 0.5") + 1
    _cli(capsys, "params", "check", str(path), names=("'lr'", f"line {line_no}", "twice"))
    _fails_cleanly(capsys, _validate(path), "'lr'", f"line {line_no}")
    path.write_text(text.replace("search:\n", "search:\n  space: nb201\n", 1))
    _fails_cleanly(capsys, _validate(path), "'space'")


@pytest.mark.parametrize("drop", ["all", "train", "common.seed", "search.dataset"])
def test_a_file_dvc_yaml_cannot_resolve_is_refused(tmp_path, capsys, drop):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    if drop == "all":
        raw = None
    elif "." in drop:
        section, key = drop.split(".")
        del raw[section][key]
    else:
        del raw[drop]
    path = tmp_path / "params.yaml"
    path.write_text("" if raw is None else yaml.safe_dump(raw))
    name = "'common'" if raw is None else f"'{drop}'"
    _fails_cleanly(capsys, _validate(path), name, "missing")
    _cli(capsys, "params", "check", str(path), names=(name,))


def test_required_keys_are_what_dvc_yaml_reads():
    """REQUIRED_KEYS is every params entry and `${...}` interpolation of dvc.yaml, and the
    sections they sit in."""
    from dnas.config import REQUIRED_KEYS

    text = (ROOT / "dvc.yaml").read_text()
    read = set(re.findall(r"\$\{([a-z_.]+)\}", text)) - {"item"}
    for stage in yaml.safe_load(text)["stages"].values():
        read |= {p for p in stage.get("do", stage).get("params", []) if isinstance(p, str)}
    read |= {k.split(".")[0] for k in read}
    assert set(REQUIRED_KEYS) == read


# --- 9. the stop is acknowledged when the signal arrives -------------------------------------


def test_sigterm_is_acknowledged_by_the_handler(capfd):
    from dnas.checkpoint import stop_on_signals

    with stop_on_signals() as request:
        request.announce = "search"
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between two bytecodes of this thread
            if request:
                break
        err = capfd.readouterr().err
    assert request.signal == signal.SIGTERM
    assert "search: stop requested (SIGTERM)" in err


@pytest.mark.e2e
def test_sigterm_mid_search_says_so_then_stops_cleanly(tmp_path):
    """A real search stage: the acknowledgement comes first, then the interrupted line."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["search"].update(epochs=50, channels=4, layers=3, batch_size=256)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    prep = subprocess.run(
        [sys.executable, "-m", "stages.prepare", "--dataset", "digits"],
        cwd=tmp_path, env=checkout_env(), capture_output=True, timeout=300,
    )  # fmt: skip
    assert prep.returncode == 0, prep.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.search"],
        cwd=tmp_path, env=checkout_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:  # the loop (and its handler) runs once an epoch is reported
            if "search epoch" in line or "epoch 1" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    lines = err.splitlines()
    ack = next(i for i, x in enumerate(lines) if "search: stop requested (SIGTERM)" in x)
    error = _one_error_line(err, "interrupted; checkpoint saved")
    assert ack < lines.index(error)


# --- 10. the torch floor ----------------------------------------------------------------------


def test_torch_floor_is_2_6():
    """torch.load(weights_only=True) below 2.6 can run code (CVE-2025-32434)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for dep in meta["dependencies"]:
        m = re.fullmatch(r"(torch|torchvision)>=(\d+)\.(\d+)", dep.split(";")[0].strip())
        if m:
            floors[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    assert floors["torch"] >= (2, 6) and floors["torchvision"] >= (0, 21)
    assert any(d.startswith("hypothesis") for d in meta["optional-dependencies"]["dev"])


def test_checkpoints_and_models_are_not_loaded_below_the_floor(tmp_path, monkeypatch):
    from dnas.checkpoint import Checkpointer
    from dnas.errors import check_torch_floor
    from dnas.models import load_model

    check_torch_floor("2.6.0")
    check_torch_floor("2.14.1+cpu")
    Checkpointer(tmp_path / "search", "fp", 1).save({"epoch": 1})
    (tmp_path / "model.pt").write_bytes(b"anything")
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu121")
    with pytest.raises(UserError, match="CVE-2025-32434"):
        Checkpointer(tmp_path / "search", "fp", 1).load()
    with pytest.raises(UserError, match="torch>=2.6"):
        load_model(tmp_path / "model.pt")
    assert (tmp_path / "search" / "last.pt").is_file()  # not set aside as corrupt
