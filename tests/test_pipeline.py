"""End to end: the DVC pipeline in a temporary git repository, on tiny params.

Runs what a user runs: `dvc repro` (all stages), a second `dvc repro` (nothing to do),
`dvc exp run -S ...` (search reruns), `dvc metrics diff`, `dvc exp show`, the NB201 space,
and a bad `-S` value. Also checks that identical seeds give byte-identical outputs.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dnas.io import MEASURED
from tests.pipeline_copy import commit_pipeline, copy_pipeline, dvc_env, runner

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "search": {"epochs": 2, "channels": 4, "layers": 3, "batch_size": 128},
    "train": {"epochs": 1, "channels": 4, "layers": 3, "batch_size": 128},
}

pytestmark = pytest.mark.e2e


def _tiny_params(base: dict) -> dict:
    params = json.loads(json.dumps(base))
    for section, values in TINY.items():
        params[section].update(values)
    return params


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipeline")
    home = tmp_path_factory.mktemp("home")
    copy_pipeline(path)
    params = _tiny_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run = runner(path, dvc_env(home))
    commit_pipeline(path, run)
    return path, run


def test_repro_runs_every_stage_then_nothing(repo):
    path, run = repo
    _, out = run("dvc", "repro")
    for stage in ("validate", "prepare@digits", "search", "train", "evaluate", "plots"):
        assert f"Running stage '{stage}'" in out
    genotype = json.loads((path / "genotype.json").read_text())
    assert genotype["space"] == "darts" and set(genotype["cells"]) == {"normal", "reduce"}
    metrics = json.loads((path / "metrics/eval.json").read_text())
    assert set(metrics) == {"test", "test_size", "params", "macs"}
    assert metrics["test_size"] == 360 and 0 <= metrics["test"]["top1"] <= 100
    per_class = json.loads((path / "metrics/eval_per_class.json").read_text())
    assert per_class["classes"] == [str(i) for i in range(10)]
    assert sum(map(sum, per_class["confusion"])) == 360
    assert metrics["test"]["balanced_acc"] == per_class["balanced_acc"]
    for png in ("cells", "arch_probs", "search_curves", "train_curves", "confusion"):
        assert (path / "plots" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _, out = run("dvc", "repro")
    assert "Running stage" not in out and "up to date" in out
    # the DVC view of a CNN run: no language-model knobs, no run timings, one test accuracy
    _, table = run("dvc", "exp", "show", "--md")
    header = table.splitlines()[0]
    assert "rnn" not in header and "cost" not in header and "seconds" not in header, header
    assert header.count("top1") == 1 and "test_acc" not in header, header
    # the DVC plots as a page that renders without a network: SVGs and data: URIs, no script
    run("dnas", "plots", "html", "--out", "offline")
    page = (path / "offline" / "index.html").read_text()
    for title in ("Search loss", "Search accuracy", "Architecture entropy", "Retraining loss"):
        assert title in page, title
    assert page.count("<svg") == 6 and page.count("data:image/png;base64,") == 5
    assert "<script" not in page and 'src="http' not in page and 'href="http' not in page
    shutil.rmtree(path / "offline")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "results")


def test_train_reruns_only_when_the_cells_change(repo):
    from dnas.stage_inputs import cells_id

    path, run = repo
    assert json.loads((path / "genotype.json").read_text())["cells_id"].startswith("darts-")
    genotype_file = path / "genotype.json"
    original = genotype_file.read_text()
    g = json.loads(original)
    edge = next(iter(g["probs"]["normal"]))
    g["probs"]["normal"][edge]["none"] = 0.5
    genotype_file.write_text(json.dumps(g))
    _, out = run("dvc", "repro", "--single-item", "train")
    assert "Running stage 'train'" not in out
    g["cells"]["normal"]["nodes"][0][0] = ["avg_pool_3x3", 0]
    genotype_file.write_text(json.dumps(g))
    # cells edited by hand, their cells_id left: DVC tracks cells_id, so it sees no change
    # for train, and train, run anyway, refuses cells that are not those of their cells_id
    _, out = run("dvc", "status", "train")
    assert "genotype.json" not in out, out
    before = (path / "models" / "model.pt").read_bytes()
    code, out = run("bash", "-c", "PYTHONPATH=src python -m stages.train", check=False)
    assert code == 2 and out.startswith("error: genotype.json: cells_id"), out
    assert len(out.splitlines()) == 1 and (path / "models" / "model.pt").read_bytes() == before
    g["cells_id"] = cells_id(g)  # as the search stage writes it
    genotype_file.write_text(json.dumps(g))
    _, out = run("dvc", "status", "train")
    assert "genotype.json" in out and "modified" in out
    genotype_file.write_text(original)
    _, out = run("dvc", "status")
    assert "up to date" in out


def test_experiment_reruns_search_and_shows_in_metrics(repo):
    path, run = repo
    before = json.loads((path / "genotype.json").read_text())["cells"]
    _, out = run("dvc", "exp", "run", "-S", "search.tau_max=7", "-n", "tau7")
    assert "Running stage 'search'" in out
    assert "Running stage 'prepare@digits'" not in out
    after = json.loads((path / "genotype.json").read_text())["cells"]
    assert ("Running stage 'train'" in out) == (after != before)
    _, diff = run("dvc", "metrics", "diff", "main", "tau7", "--all", "--json")
    search = json.loads(diff)["metrics/search.json"]
    assert (
        search["valid_acc"]["new"]
        == json.loads((path / "metrics/search.json").read_text())["valid_acc"]
    )
    _, show = run("dvc", "exp", "show", "--json")
    assert "tau7" in show
    # dnas genotype table: each experiment's genotype (read from its commit) beside its metrics
    _, table = run("dnas", "genotype", "table")
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    assert {"main", "tau7", "workspace"} <= set(lines), table
    from dnas.io import md_cell
    from dnas.spaces.genotype import Genotype

    brief = Genotype.from_json(json.loads((path / "genotype.json").read_text())).brief()
    # a cell's nodes are joined by ` | `, escaped in a markdown cell (tests/test_markdown.py)
    assert md_cell(brief["normal"]) in lines["tau7"] and md_cell(brief["reduce"]) in lines["tau7"]
    run("git", "checkout", "-q", ".")
    run("dvc", "checkout", "-q")


def test_an_advanced_knob_or_a_source_file_reruns_only_the_stages_that_read_it(repo):
    """A knob of advanced.yaml (not a column of `dvc exp show`) set as the README says reruns
    the stages that read it and no other (through data/stages/<stage>.json); so does a change
    to a source file (through the hashes in those files), the validate stage aside."""
    path, run = repo
    _, out = run("dvc", "exp", "run", "-S", "advanced.yaml:train.momentum=0.8", "-n", "mom")
    assert "Running stage 'train'" in out, out
    for stage in ("prepare@digits", "search"):
        assert f"Running stage '{stage}'" not in out, out
    assert yaml.safe_load((path / "advanced.yaml").read_text())["train"]["momentum"] == 0.8
    _, table = run("dvc", "exp", "show", "--md")
    assert "advanced.yaml" in table.splitlines()[0] and "momentum" not in table, table
    run("git", "checkout", "-q", ".")
    run("dvc", "checkout", "-q")
    plots_code = path / "src" / "dnas" / "plots" / "__init__.py"
    original = plots_code.read_bytes()
    try:
        plots_code.write_bytes(original + b"\n# a change to the plotting code\n")
        _, out = run("dvc", "repro")
        ran = set(re.findall(r"Running stage '([^']+)'", out))
        assert ran == {"validate", "plots"}, out
    finally:
        plots_code.write_bytes(original)
    run("dvc", "repro")
    _status_clean(run)


def test_nb201_space_runs_end_to_end(repo):
    path, run = repo
    run("dvc", "exp", "run", "-S", "search.space=nb201", "-n", "nb201")
    genotype = json.loads((path / "genotype.json").read_text())
    assert genotype["space"] == "nb201" and genotype["arch"].count("+") == 2
    assert json.loads((path / "metrics/eval.json").read_text())["params"] > 0
    run("git", "checkout", "-q", ".")
    run("dvc", "checkout", "-q")


def _produced(path: Path) -> dict[str, bytes]:
    """The bytes of what the pipeline produced (cached and git-tracked outputs)."""
    files = [*(path / "data" / "prepared").rglob("*"), path / "models" / "model.pt"]
    files += [path / "genotype.json", *(path / "metrics").glob("*.json")]
    return {str(f.relative_to(path)): f.read_bytes() for f in files if f.is_file()}


def _status_clean(run) -> None:
    _, out = run("dvc", "status")
    assert "up to date" in out, out
    _, out = run("dvc", "repro", "--dry")
    assert "Running stage" not in out, out


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        # not `abc`: a value as long as the old one (5.0) can leave params.yaml with the size,
        # inode and mtime second that git's index records after DVC's stash and restore, and
        # `git checkout -- .` then sees nothing to restore (a DVC/git race, seen here)
        ("search.tau_max=fast", "search.tau_max = 'fast'"),
        ("search.dataset=mnist", "search.dataset"),
        ("advanced.yaml:prepare.test_fraction=0.99", "prepare.test_fraction"),
    ],
)
def test_bad_value_stops_before_any_output_is_removed(repo, setting, message):
    """The validation stage runs first: DVC removes a stage's outputs only when it runs the
    stage, so a bad value costs nothing; the README's recovery recipe brings back a clean
    `dvc status`."""
    path, run = repo
    before = _produced(path)
    code, out = run("dvc", "exp", "run", "-S", setting, check=False)
    assert code != 0
    assert message in out and "Traceback" not in out and "Errno" not in out, out
    assert "Running stage 'prepare" not in out and "Running stage 'search'" not in out
    assert _produced(path) == before  # the prepared data, model and metrics are intact
    run("git", "checkout", "-q", "--", ".")  # the README's recovery recipe
    run("dvc", "repro")
    _status_clean(run)


def test_dvc_status_is_clean_after_each_documented_workflow(repo):
    """repro; exp run; `git checkout . && dvc checkout`: nothing looks stale, in particular
    not the checkpoints a finished search and retraining leave behind (they live outside the
    DVC outputs, guarded by their fingerprint)."""
    path, run = repo
    run("dvc", "repro")
    assert (path / "checkpoints" / "search" / "last.pt").is_file()
    _status_clean(run)
    run("dvc", "exp", "run", "-S", "search.tau_max=3", "-n", "tau3")
    _status_clean(run)
    run("git", "checkout", "-q", ".")
    run("dvc", "checkout", "-q")
    _status_clean(run)
    # corrupted outputs (the model, in git; the prepared data, DVC-cached) and the README's
    # recovery recipe, `git checkout -- . && dvc repro`
    (path / "models" / "model.pt").write_bytes(b"corrupt")
    shutil.rmtree(path / "data" / "prepared")
    run("git", "checkout", "-q", "--", ".")
    _, out = run("dvc", "repro")
    assert "Running stage 'search'" not in out and "Running stage 'train'" not in out, out
    _status_clean(run)


def test_a_permuted_but_equal_genotype_does_not_retrain(repo):
    """Genotypes are written in one canonical order: the same architecture with its edges in
    another order gives the same bytes, so DVC sees nothing to retrain."""
    from dnas.io import write_json
    from dnas.spaces.genotype import CellSpec, Genotype
    from dnas.stage_inputs import cells_id

    path, run = repo
    original = (path / "genotype.json").read_bytes()
    g = Genotype.from_json(json.loads(original))
    permuted = Genotype(
        g.space,
        {
            n: CellSpec(c.inputs, tuple(node[::-1] for node in c.nodes), c.concat)
            for n, c in g.cells.items()
        },  # fmt: skip
        probs=g.probs,
        arch=g.arch,
    )
    written = permuted.to_json()  # as the search stage writes it
    write_json(path / "genotype.json", {**written, "cells_id": cells_id(written)})
    assert (path / "genotype.json").read_bytes() == original
    _, out = run("dvc", "status", "train")
    assert "genotype.json" not in out, out


def test_a_second_clone_pulls_from_a_remote_instead_of_recomputing(repo, tmp_path):
    """README "Sharing results": push the cached outputs (the prepared data; the model is in
    git) to a remote; a fresh clone pulls them and has nothing to reproduce."""
    path, run = repo
    remote = tmp_path / "remote"
    run("dvc", "remote", "add", "-d", "-f", "store", str(remote))
    run("git", "add", ".dvc/config")
    run("git", "commit", "-qm", "a remote")
    run("dvc", "push")
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(path), str(clone))

    def in_clone(*cmd):
        proc = subprocess.run(cmd, cwd=clone, env=run.env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    in_clone("dvc", "pull")
    assert (clone / "models" / "model.pt").read_bytes() == (path / "models/model.pt").read_bytes()
    assert "up to date" in in_clone("dvc", "status")
    out = in_clone("dvc", "repro")
    assert "Running stage" not in out, out


def test_same_seed_same_bytes(tmp_path, digits_prepared):
    """Two searches and two retrainings with one seed write byte-identical files."""
    import torch

    from dnas.config import parse_params
    from dnas.io import dumps_json
    from dnas.search.loop import run_search
    from dnas.train.loop import run_train

    params = parse_params(_tiny_params(yaml.safe_load((ROOT / "params.yaml").read_text())))
    outputs = []
    for i in range(2):
        result = run_search(params, digits_prepared, torch.device("cpu"), tmp_path / f"s{i}")
        model, _, metrics = run_train(
            params, result.genotype, digits_prepared, torch.device("cpu"), tmp_path / f"t{i}"
        )
        weights = b"".join(v.numpy().tobytes() for v in model.state_dict().values())
        outputs.append(
            (
                dumps_json(result.genotype.to_json()),
                dumps_json({k: v for k, v in result.metrics.items() if k != MEASURED}),
                dumps_json(metrics),
                weights,
                (tmp_path / f"s{i}/metrics.json").read_bytes(),
            )
        )
    assert outputs[0] == outputs[1]


def _outputs(path: Path) -> dict[str, bytes]:
    files = [
        "dvc.lock",
        "genotype.json",
        *sorted(
            str(p.relative_to(path))
            for p in (*(path / "metrics").glob("*.json"), *(path / "dvclive").rglob("*.*"))
        ),
    ]
    return {f: (path / f).read_text() for f in files}


def _kill_when_checkpointed(path: Path, run_env_cmd, stage: str) -> None:
    """Start `dvc repro -f -s stage`, SIGKILL it (and its children) once it has written its
    first checkpoint, that is in the middle of the next epoch."""
    import signal
    import time

    shutil.rmtree(path / "checkpoints" / stage, ignore_errors=True)
    proc = run_env_cmd("dvc", "repro", "-f", "-s", stage)
    ckpt = path / "checkpoints" / stage / "last.pt"
    deadline = time.monotonic() + 300
    while not ckpt.exists():
        assert proc.poll() is None, f"{stage} ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_mid_epoch_then_repro_gives_the_same_bytes(repo):
    """Issue 8's acceptance: a run killed with SIGKILL mid-epoch and rerun with `dvc repro`
    ends with byte-identical outputs, dvc.lock included (so the weights too)."""
    path, run = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["search"].update(epochs=3, batch_size=32)
    params["train"].update(epochs=2, batch_size=32)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("dvc", "repro")
    expected = _outputs(path)

    def start(*cmd):
        env = dict(os.environ)
        env.update(run.env)
        return subprocess.Popen(
            cmd,
            cwd=path,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    for stage in ("search", "train"):
        _kill_when_checkpointed(path, start, stage)
        _, out = run("dvc", "repro")
        assert f"{stage}: resuming at epoch 2" in out, out
        assert _outputs(path) == expected

    # SIGTERM: the stage saves a mid-epoch checkpoint, says so, and exits with status 2.
    import signal
    import time

    shutil.rmtree(path / "checkpoints" / "search")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.search"],
        cwd=path,
        env={**run.env, "PYTHONPATH": "src"},
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (path / "checkpoints/search/last.pt").exists():
        assert proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)  # into the second epoch
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err
    assert "interrupted; checkpoint saved to checkpoints/search/last.pt" in err
    import torch

    state = torch.load(path / "checkpoints/search/last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["epoch_state"] is not None  # mid-epoch 2
    _, out = run("dvc", "repro")
    assert "search: resuming at epoch 2" in out
    assert _outputs(path) == expected
    run("git", "checkout", "-q", ".")
