"""`dnas export`: the torch.export program, the TorchScript model and genotype.py, used where
this package is not installed; the Python API of docs/api.md, run as written; `dnas genotype
show` on the names `genotype info` accepts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dnas.cli import main
from dnas.config import Prepare, parse_params
from dnas.data import load_prepared, prepare_dataset
from dnas.evaluate import eval_loader, evaluate_loader
from dnas.models import build_model, load_model, save_model
from dnas.spaces.genotype import load_genotype, save_genotype
from dnas.spaces.published import resolve_genotype

ROOT = Path(__file__).resolve().parents[1]
# model.ts is TorchScript on purpose (docs/api.md): loading it here warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
NB201_ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
)
TINY = {"epochs": 1, "channels": 8, "layers": 3, "batch_size": 64, "auxiliary_weight": 0.4}


def _train(ws: Path, genotype_spec: str, layers: int) -> tuple[torch.nn.Module, dict]:
    """Retrain `genotype_spec` for one epoch with the project's own loop (digits, tiny)."""
    from dnas.train.loop import run_train

    p = parse_params({"train": {**TINY, "layers": layers, "genotype": genotype_spec}})
    data = load_prepared(ws / "data/prepared/digits")
    genotype = resolve_genotype(genotype_spec, ws / "genotype.json")
    live = ws / "live" / genotype.space
    model, config, _ = run_train(p, genotype, data, torch.device("cpu"), live)
    return model, config


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A project-like folder: prepared digits, a searched genotype.json (GDAS_V1's cells), the
    trained models/model.pt and metrics/eval.json from the evaluate stage's own code, and an
    NB201 model beside it."""
    ws = tmp_path_factory.mktemp("export-ws")
    prepare_dataset("digits", Prepare(), ws / "data/prepared")
    (ws / "params.yaml").write_text("train:\n  dataset: digits\n")
    save_genotype(ws / "genotype.json", resolve_genotype("GDAS_V1"))
    cwd = os.getcwd()
    os.chdir(ws)
    try:
        model, config = _train(ws, "searched", 3)
        save_model("models/model.pt", model, load_genotype("genotype.json"), config)
        from stages.evaluate import evaluate_cnn

        evaluate_cnn(parse_params({}), torch.device("cpu"))  # writes metrics/eval.json
        model, config = _train(ws, NB201_ARCH, 1)
        save_model("models/nb201.pt", model, resolve_genotype(NB201_ARCH), config)
        main(["export", "out"])  # the defaults: models/model.pt, params.yaml's dataset
        main(["export", "out201", "--model", "models/nb201.pt", "--data", "data/prepared/digits"])
    finally:
        os.chdir(cwd)
    return ws


def _site_without_dnas(tmp: Path) -> Path:
    """torch's site-packages folder; where dnas is installed there too, a copy of it made of
    links to everything but dnas."""
    site = Path(torch.__file__).resolve().parents[1]
    if not any(p.name.startswith(("dnas", "__editable__.dnas")) for p in site.iterdir()):
        return site
    shadow = tmp / "site"
    shadow.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith(("dnas", "__editable__.dnas")):
            (shadow / entry.name).symlink_to(entry)
    return shadow


FRESH = textwrap.dedent(
    """
    import json, sys
    site, data, *exports = sys.argv[1:]
    sys.path.append(site)  # torch and numpy; no .pth files are read (-S), no PYTHONPATH (-I)
    try:
        import dnas
    except ImportError as exc:
        refused = str(exc)
    else:
        sys.exit(f"dnas is importable here: {dnas.__file__}")
    import numpy as np
    import torch

    x = torch.from_numpy(np.load(f"{data}/test_x.npy")).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(np.load(f"{data}/test_y.npy"))
    out = {}
    for folder in exports:
        model = torch.jit.load(f"{folder}/model.ts")
        meta = {"dnas.json": ""}
        program = torch.export.load(f"{folder}/model.pt2", extra_files=meta).module()
        with torch.no_grad():
            logits = model(x)
            program_logits = torch.cat([program(x[:1]), program(x[1:])])  # batch 1, and the rest
        ns = {}
        exec(open(f"{folder}/genotype.py").read(), ns)
        cells = {k: ns[k] for k in ("arch", "genotype", "genotype_nodes") if k in ns}
        out[folder] = {
            "correct": int((logits.argmax(1) == y).sum()),
            "program_correct": int((program_logits.argmax(1) == y).sum()),
            "program_logits": program_logits.tolist(),
            "program_meta": json.loads(meta["dnas.json"]),
            "n": len(y),
            "logits": logits.tolist(),
            "has_Genotype": "Genotype" in ns,
            "fields": list(getattr(ns.get("Genotype"), "_fields", [])),
            "cells": json.loads(json.dumps(cells)),
        }
    print(json.dumps({"import_dnas": refused, "exports": out}))
    """
)


@pytest.fixture(scope="module")
def fresh(ws, tmp_path_factory):
    """What a Python without dnas gets from the two exports: run from an empty folder with
    `python -I -S` (no PYTHONPATH, no user site, no .pth files such as an editable install)."""
    tmp = tmp_path_factory.mktemp("fresh")
    env = {"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1"}
    args = [str(_site_without_dnas(tmp)), str(ws / "data/prepared/digits")]
    args += [str(ws / "out"), str(ws / "out201")]
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", FRESH, *args],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["import_dnas"] == "No module named 'dnas'"  # the interpreter has no dnas
    return {Path(k).name: v for k, v in result["exports"].items()}


def test_model_ts_reproduces_the_evaluate_stages_top1_without_dnas(ws, fresh):
    """The acceptance check: metrics/eval.json's top-1 (the evaluate stage's own code) equals
    the exported model's on the prepared test set, loaded by torch alone; so do the logits;
    and the torch.export program gives the same count and logits, at batch 1 and at 359."""
    eval_json = json.loads((ws / "metrics/eval.json").read_text())
    got = fresh["out"]
    assert got["n"] == eval_json["test_size"]
    # eval.json holds 6 significant digits: the count they stand for, exactly
    assert got["correct"] == round(eval_json["test"]["top1"] * got["n"] / 100)
    assert got["program_correct"] == got["correct"]
    torch.testing.assert_close(torch.tensor(got["program_logits"]), torch.tensor(got["logits"]))
    assert 100.0 * got["correct"] / got["n"] == pytest.approx(eval_json["test"]["top1"], rel=1e-5)
    # The same count exactly, and float-close logits, against the network in this process.
    model, _ = load_model(ws / "models/model.pt")
    model.eval()
    data = load_prepared(ws / "data/prepared/digits")
    result = evaluate_loader(model, eval_loader(data, torch.device("cpu"), 128))
    assert got["correct"] == round(result["top1"] * got["n"] / 100)
    with torch.no_grad():
        want = torch.cat([model(x) for x, _ in eval_loader(data, torch.device("cpu"), 128)])
    torch.testing.assert_close(torch.tensor(got["logits"]), want, rtol=1e-5, atol=1e-5)
    assert 10 < eval_json["test"]["top1"] < 100  # trained a little: not a constant guess


def test_nb201_model_ts_gives_the_networks_logits(ws, fresh):
    model, _ = load_model(ws / "models/nb201.pt")
    model.eval()
    data = load_prepared(ws / "data/prepared/digits")
    with torch.no_grad():
        want = torch.cat([model(x) for x, _ in eval_loader(data, torch.device("cpu"), 128)])
    torch.testing.assert_close(torch.tensor(fresh["out201"]["logits"]), want)
    torch.testing.assert_close(torch.tensor(fresh["out201"]["program_logits"]), want)
    result = evaluate_loader(model, eval_loader(data, torch.device("cpu"), 128))
    assert fresh["out201"]["correct"] == round(result["top1"] * fresh["out201"]["n"] / 100)


def test_genotype_py_holds_genotype_jsons_cells(ws, fresh):
    """genotype.py, run without dnas, defines DARTS's Genotype namedtuple and the cells of
    genotype.json: flat (op, input) lists and AutoDL's per-node tuples."""
    got = fresh["out"]
    assert got["has_Genotype"]
    assert got["fields"] == ["normal", "normal_concat", "reduce", "reduce_concat"]
    cells = json.loads((ws / "genotype.json").read_text())["cells"]
    normal, normal_concat, reduce, reduce_concat = got["cells"]["genotype"]
    nodes = got["cells"]["genotype_nodes"]
    for name, flat, concat, per_node in (
        ("normal", normal, normal_concat, nodes[0]),
        ("reduce", reduce, reduce_concat, nodes[2]),
    ):
        assert per_node == cells[name]["nodes"]
        assert flat == [edge for node in cells[name]["nodes"] for edge in node]
        assert concat == cells[name]["concat"] == [2, 3, 4, 5]
    # GDAS_V1's published normal cell (the NAS-Projects file's order within a node aside)
    assert sorted(map(tuple, normal)) == sorted(
        [("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 0), ("sep_conv_5x5", 2),
         ("sep_conv_3x3", 3), ("skip_connect", 0), ("sep_conv_5x5", 4), ("sep_conv_3x3", 3)]
    )  # fmt: skip


def test_nb201_genotype_py_holds_the_architecture_string(fresh):
    cells = fresh["out201"]["cells"]
    assert cells["arch"] == NB201_ARCH
    # AutoDL's per-node form, parsed back into the same string
    nodes = ["|" + "|".join(f"{op}~{j}" for op, j in node) + "|" for node in cells["genotype"]]
    assert "+".join(nodes) == NB201_ARCH
    assert not fresh["out201"]["has_Genotype"]


def test_the_auxiliary_head_is_not_exported(ws):
    """The network was trained with an auxiliary head; the export is the eval-mode network."""
    _, config = load_model(ws / "models/model.pt")
    assert config["auxiliary"]
    ts = torch.jit.load(ws / "out/model.ts")
    out = ts(torch.rand(3, 1, 8, 8))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 10)
    extra = {"dnas.json": ""}
    torch.jit.load(ws / "out/model.ts", _extra_files=extra)
    meta = json.loads(extra["dnas.json"])
    card = json.loads((ws / "data/prepared/digits/card.json").read_text())
    assert meta["input"]["mean"] == card["mean"] and meta["input"]["shape_chw"] == [1, 8, 8]
    program = torch.export.load(ws / "out/model.pt2").module()
    assert program(torch.rand(3, 1, 8, 8)).shape == (3, 10)


def test_the_program_holds_the_same_metadata(ws, fresh):
    """model.pt2's dnas.json, read where dnas is not installed, is model.ts's."""
    for folder in ("out", "out201"):
        extra = {"dnas.json": ""}
        torch.jit.load(ws / folder / "model.ts", _extra_files=extra)
        assert fresh[folder]["program_meta"] == json.loads(extra["dnas.json"])
    assert fresh["out"]["program_meta"]["space"] == "darts"
    assert fresh["out201"]["program_meta"]["space"] == "nb201"


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    return err


def test_export_refuses_with_one_line(ws, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = str(ws / "data/prepared/digits")
    # A language model
    g = resolve_genotype("GDAS_RNN")
    config = {"vocab_size": 20, "emsize": 8, "nhid": 8, "dropout": 0.0, "dropouth": 0.0,
              "dropoutx": 0.0, "dropouti": 0.0, "dropoute": 0.0}  # fmt: skip
    save_model("lm.pt", build_model(g, config), g, config)
    err = _error(capsys, ["export", "out", "--model", "lm.pt", "--data", data])
    assert "lm.pt: a language model" in err and "image classifiers only" in err
    # No params.yaml and no --data
    err = _error(capsys, ["export", "out", "--model", str(ws / "models/model.pt")])
    assert "--data" in err
    # A card of another dataset (other classes)
    other = tmp_path / "other"
    other.mkdir()
    card = json.loads((ws / "data/prepared/digits/card.json").read_text())
    (other / "card.json").write_text(json.dumps({**card, "num_classes": 7}))
    err = _error(capsys, ["export", "out", "--model", str(ws / "models/model.pt"),
                          "--data", str(other)])  # fmt: skip
    assert "7 classes, but the model has 10" in err
    err = _error(capsys, ["export", "out", "--model", "missing.pt", "--data", data])
    assert "missing.pt: model file not found" in err
    assert not (tmp_path / "out").exists()  # nothing written by a refused export


# --- docs/api.md, run as written ---------------------------------------------------------


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_api_docs_code_runs_as_written(ws, monkeypatch, capsys):
    """Every python block of docs/api.md, in order in one namespace, in a project folder with
    a trained model, a prepared dataset and genotype.json."""
    blocks = _python_blocks(ROOT / "docs/api.md")
    assert len(blocks) >= 4
    monkeypatch.chdir(ws)
    ns: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), ns)
    # What the blocks computed, checked against the files they read.
    eval_json = json.loads((ws / "metrics/eval.json").read_text())
    assert ns["top1"] == pytest.approx(eval_json["test"]["top1"], rel=1e-5)
    assert ns["net"](torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    for name in ("model.pt2", "model.ts", "genotype.py"):
        assert (ws / "exported" / name).is_file()
    assert ns["program"](torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    assert json.loads(ns["meta"]["dnas.json"])["input"]["range"] == [0.0, 1.0]


# --- dnas genotype show -------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["GDAS_V1", "gdas_v1", NB201_ARCH, "DARTS_V2_RNN", "FILE", "DEFAULT"]
)
def test_genotype_show_takes_what_genotype_info_takes(ws, spec, capsys, monkeypatch):
    monkeypatch.chdir(ws)
    argv = ["genotype", "show"]
    if spec == "FILE":
        argv.append(str(ws / "genotype.json"))
    elif spec != "DEFAULT":
        argv.append(spec)
    main(argv)
    out = capsys.readouterr().out
    want = resolve_genotype("GDAS_V1" if spec in ("FILE", "DEFAULT") else spec, key="genotype")
    assert out.startswith(f"space: {want.space}\n")
    for name, cell in want.cells.items():
        assert f"{name}:\n" in out
        first = ", ".join(f"{op}({j})" for op, j in cell.nodes[0])
        assert f"  node {cell.inputs} <- {first}\n" in out
    if want.space == "nb201":
        assert f"arch: {NB201_ARCH}" in out


def test_genotype_show_refuses_an_unknown_name_with_the_choices(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _error(capsys, ["genotype", "show", "GDAS_V9"])
    assert "did you mean 'GDAS_V1'" in err and "run the search stage" not in err
    err = _error(capsys, ["genotype", "show"])  # no genotype.json here
    assert "genotype.json: genotype file not found" in err
