"""`dnas report`: experiments of `dvc exp show --json` grouped by preset, mean ± std over seeds
(checked against statistics computed here), and the papers' numbers."""

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dnas.cli import main as cli_main
from dnas.report import load_papers, parse_exp_show

PRESETS = Path(__file__).resolve().parents[1] / "presets"


def _rev(rev, name, params, metrics, error=None):
    """One revision as `dvc exp show --json` (DVC 3.x) writes it."""
    return {
        "rev": rev,
        "name": name,
        "data": {
            "rev": rev,
            "timestamp": "2026-01-01T00:00:00",
            "params": {"params.yaml": {"data": params}},
            "metrics": {path: {"data": data} for path, data in metrics.items()},
            "deps": {},
            "outs": {},
            "meta": {},
        },
        "error": error,
        "experiments": None,
    }


def _exp_show(baseline, experiments):
    base = _rev("b" * 40, "main", baseline, {})
    base["data"]["metrics"] = {
        "metrics/train.json": {"error": {"type": "FileNotFoundError", "msg": "missing"}}
    }
    base["experiments"] = [{"revs": [e], "executor": None, "name": e["name"]} for e in experiments]
    workspace = _rev("workspace", None, baseline, {"metrics/train.json": {"test_acc": 1.0}})
    return [workspace, base]


def _params(seed, lr, report="final"):
    return {"common": {"seed": seed}, "train": {"lr": lr, "report": report}}


def test_two_experiments_two_seeds_each(tmp_path, capsys):
    accs = {(0, 0.1): 90.0, (1, 0.1): 92.5, (0, 0.2): 95.25, (1, 0.2): 94.0}
    exps = [
        _rev(f"{i:040d}", f"exp-{i}", _params(seed, lr), {"metrics/train.json": {"test_acc": a}})
        for i, ((seed, lr), a) in enumerate(accs.items())
    ]
    exps.append(_rev("f" * 40, "failed", _params(2, 0.1), {}, error={"msg": "boom"}))
    (tmp_path / "show.json").write_text(json.dumps(_exp_show(_params(0, 0.1), exps)))
    out_md, out_png = tmp_path / "r" / "report.md", tmp_path / "r" / "report.png"
    cli_main(
        ["report", "--input", str(tmp_path / "show.json"), "--presets", str(PRESETS),
         "--out", str(out_md), "--png", str(out_png)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert out_md.read_text() == printed
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line for line in printed.splitlines() if line.startswith("| train.lr")]
    assert len(rows) == 2  # the workspace, the baseline without metrics and the failure are out
    for lr, row in zip((0.1, 0.2), rows):
        errors = [100 - accs[(s, lr)] for s in (0, 1)]
        expected = f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f}"
        assert row.startswith(f"| train.lr={lr} | test error % | 2 (0, 1) | {expected} |")


def test_a_preset_sweep_is_named_and_compared_with_the_paper(tmp_path, capsys):
    preset = yaml.safe_load((PRESETS / "gdas-cifar10.yaml").read_text())
    papers = load_papers(PRESETS)
    exps = []
    searches = {0: 51.0, 1: 48.5, 2: 53.25}  # search-valid accuracy: seed 2's search is best
    for seed, best, final in [(0, 97.0, 96.5), (1, 97.2, 96.9), (2, 96.9, 96.0)]:
        params = {**preset, "common": {**preset["common"], "seed": seed}}
        metrics = {
            "metrics/train.json": {"test_acc": final, "best_test_acc": best},
            "metrics/search.json": {"valid_acc": searches[seed]},
        }
        exps.append(_rev(f"{seed:040d}", f"s{seed}", params, metrics))
    # One run with a changed recipe: still named after the preset, with the change shown.
    changed = {**preset, "train": {**preset["train"], "epochs": 100}}
    exps.append(_rev("9" * 40, "short", changed, {"metrics/train.json": {"test_acc": 95.0}}))
    (tmp_path / "show.json").write_text(json.dumps(_exp_show(preset, exps)))
    cli_main(["report", "--input", str(tmp_path / "show.json"), "--presets", str(PRESETS),
              "--out", str(tmp_path / "r.md"), "--png", str(tmp_path / "r.png")])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    full = next(line for line in lines if line.startswith("| gdas-cifar10 |"))
    errors = [100 - a for a in (97.0, 97.2, 96.9)]  # report: best in this preset
    mean = statistics.mean(errors)
    paper = papers["gdas-cifar10"]["value"]
    assert f"| 3 (0, 1, 2) | {mean:.2f} ± {statistics.stdev(errors):.2f} |" in full
    # GDAS's protocol: the best of the searches by search-valid accuracy, retrained once
    best = 100 - 96.9
    assert f"| best of the searches | {best:.2f} (best search: s2) | {paper:.2f} |" in full
    assert f"| {best - paper:+.2f} |" in full
    assert any(line.startswith("| gdas-cifar10 (train.epochs=100) |") for line in lines)


def test_every_preset_has_a_paper_number_with_a_source():
    """Every paper-row preset; the small ones named after an embedded dataset have none."""
    papers = load_papers(PRESETS)
    presets = {p.stem for p in PRESETS.glob("*.yaml") if p.name != "papers.yaml"}
    small = {name for name in presets if name.endswith(("-digits", "-pydoc"))}
    assert small == {"rnn-pydoc"}
    assert presets - small == set(papers)
    for name, entry in papers.items():
        assert entry["metric"] in ("test_error", "test_acc", "perplexity"), name
        assert float(entry["value"]) > 0 and entry["source"] and entry["gpu_time"], name


def test_bad_input_is_one_clear_message(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    for args, message in [
        (["--input", str(tmp_path / "missing.json")], "file not found"),
        (["--input", str(tmp_path / "bad.json")], "not JSON"),
    ]:
        with pytest.raises(SystemExit) as exc:
            cli_main(["report", *args])
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert parse_exp_show([]) == []


TOY_PARAMS = {"common": {"seed": 0}, "train": {"lr": 0.1}}


def _toy_dvc_repo(tmp_path, monkeypatch, body: str, metrics: list[str], params=TOY_PARAMS):
    """A git + DVC repository, `tmp_path/repo`, with one stage `t` (stage.py: load params.yaml
    as `p`, then `body`, which writes `metrics`; params.yaml holds `params`, and the stage
    reads each of its sections), committed. Returns the repository and `sh(*cmd)`, which runs
    a command there and returns its standard output."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "site"))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    repo = tmp_path / "repo"
    repo.mkdir()

    def sh(*cmd):
        return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout

    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / "stage.py").write_text(
        "import json, os, yaml\n"
        "p = yaml.safe_load(open('params.yaml'))\n"
        "os.makedirs('metrics', exist_ok=True)\n" + body
    )
    outs = "".join(f"      - {m}:\n          cache: false\n" for m in metrics)
    (repo / "dvc.yaml").write_text(
        "stages:\n  t:\n    cmd: python stage.py\n    deps: [stage.py]\n"
        f"    params: [{', '.join(params)}]\n    metrics:\n" + outs
    )
    sh("git", "init", "-q")
    sh("git", "config", "user.email", "t@example.com")
    sh("git", "config", "user.name", "t")
    sh("dvc", "init", "-q")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "one")
    return repo, sh


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_report_reads_real_dvc_experiments(tmp_path, monkeypatch):
    """Four real `dvc exp run`s of a one-line stage (two params sets x two seeds)."""
    repo, sh = _toy_dvc_repo(
        tmp_path, monkeypatch,
        "acc = 90 + 2 * p['common']['seed'] + 10 * p['train']['lr']\n"
        "json.dump({'test_acc': acc}, open('metrics/train.json', 'w'))\n",
        ["metrics/train.json"],
    )  # fmt: skip
    for lr in (0.1, 0.3):
        for seed in (0, 1):
            sh("dvc", "exp", "run", "-q", "-S", f"common.seed={seed}", "-S", f"train.lr={lr}")
    show = subprocess.run(
        ["dvc", "exp", "show", "--json"], cwd=repo, capture_output=True, text=True, check=True
    )
    runs = parse_exp_show(json.loads(show.stdout))
    assert sorted((r.params["train.lr"], r.params["common.seed"], r.value) for r in runs) == [
        (0.1, 0, 91.0), (0.1, 1, 93.0), (0.3, 0, 93.0), (0.3, 1, 95.0)
    ]  # fmt: skip


def test_readme_table_lists_every_preset_with_its_paper_number():
    readme = (PRESETS.parent / "README.md").read_text()
    for name, entry in load_papers(PRESETS).items():
        row = next(line for line in readme.splitlines() if f"`presets/{name}.yaml`" in line)
        assert f"| {float(entry['value']):.2f}" in row or f"| {entry['value']}" in row, name


def test_retrain_seeds_protocol_takes_the_retrainings_of_one_cell(tmp_path, capsys):
    """DARTS's 2.76 ± 0.09 is over retrainings of one cell: the sweep's row reports the group
    that retrains a saved genotype (train.genotype = a file), with its own mean ± std."""
    preset = yaml.safe_load((PRESETS / "darts-v2-cifar10.yaml").read_text())
    exps = []
    for seed, acc, valid in [(0, 97.1, 60.0), (1, 96.8, 62.0)]:
        params = {**preset, "common": {**preset["common"], "seed": seed}}
        metrics = {
            "metrics/train.json": {"test_acc": acc},
            "metrics/search.json": {"valid_acc": valid},
        }
        exps.append(_rev(f"{seed:040d}", f"s{seed}", params, metrics))
    retrained = [97.3, 97.0, 97.2]
    for seed, acc in enumerate(retrained):
        train = {**preset["train"], "genotype": "genotypes/darts-v2-s1.json"}
        params = {**preset, "common": {**preset["common"], "seed": seed}, "train": train}
        exps.append(
            _rev(f"{seed + 5:040d}", f"r{seed}", params, {"metrics/train.json": {"test_acc": acc}})
        )
    (tmp_path / "show.json").write_text(json.dumps(_exp_show(preset, exps)))
    cli_main(["report", "--input", str(tmp_path / "show.json"), "--presets", str(PRESETS),
              "--out", str(tmp_path / "r.md"), "--png", str(tmp_path / "r.png")])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    errors = [100 - a for a in retrained]
    expected = f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f}"
    sweep = next(line for line in lines if line.startswith("| darts-v2-cifar10 |"))
    assert f"| best of short retrainings | {expected} (3 retrainings: darts-v2-cifar10 (" in sweep
    retrain = next(line for line in lines if line.startswith("| darts-v2-cifar10 (train.genotype="))
    assert f"| {expected} (3 retrainings of one cell) |" in retrain


def test_figure_labels_are_short_and_inside_the_figure():
    from dnas.report import LABEL_LINES, LABEL_WIDTH, figure

    settings = ", ".join(f"search.knob_number_{i}={i * 0.001}" for i in range(50))
    rows = [
        {"group": settings, "metric": "test error %", "mean": 3.0, "std": 0.1,
         "protocol_value": 2.9, "paper": 2.93},
        {"group": "gdas-cifar10 (train.epochs=100, train.batch_size=64)", "metric": "test error %",
         "mean": 3.2, "std": None, "protocol_value": None, "paper": None},
    ]  # fmt: skip
    fig = figure(rows)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    labels = fig.axes[0].get_yticklabels()
    assert len(labels) == 2 and "+47 more" in labels[0].get_text()
    for label in labels:
        lines = label.get_text().splitlines()
        assert len(lines) <= LABEL_LINES + 1 and all(len(line) <= LABEL_WIDTH for line in lines)
        extent = label.get_window_extent(renderer)
        assert extent.x0 >= box.x0 and extent.x1 <= box.x1
        assert extent.y0 >= box.y0 and extent.y1 <= box.y1
    assert "gdas-cifar10 (train.epochs=100," in labels[1].get_text()


def test_figure_has_a_panel_per_metric():
    """Test error (a few %) and perplexity (tens) on one axis would flatten both: each metric
    has its own panel and x-axis, in the order the rows first name them, and the legend has
    every marker though only the second panel has a paper number."""
    from dnas.report import figure

    rows = [
        {"group": "gdas-cifar10", "metric": "test error %", "mean": 3.0, "std": 0.2,
         "protocol_value": 2.9, "paper": None},
        {"group": "darts-v1-ptb", "metric": "test perplexity", "mean": 58.0, "std": 1.5,
         "protocol_value": 57.5, "paper": 55.7},
        {"group": "snas-cifar10", "metric": "test error %", "mean": 2.9, "std": None,
         "protocol_value": None, "paper": None},
    ]  # fmt: skip
    fig = figure(rows)
    fig.canvas.draw()
    error, ppl = fig.axes
    assert error.get_xlabel() == "test error %" and ppl.get_xlabel() == "test perplexity"
    assert [t.get_text().splitlines()[0] for t in error.get_yticklabels()] == [
        "gdas-cifar10", "snas-cifar10"]  # fmt: skip
    assert error.get_xlim()[1] < 10 and ppl.get_xlim()[0] > 40  # each axis spans its own values
    assert ppl.get_xlim()[0] < 55.7 < ppl.get_xlim()[1]
    texts = {t.get_text() for t in error.get_legend().get_texts()}
    assert texts == {"by the paper's protocol", "mean ± std over runs", "paper"}
    assert ppl.get_legend() is None


def test_reports_directory_is_ignored_by_git():
    ignored = (PRESETS.parent / ".gitignore").read_text().splitlines()
    assert "/reports/" in ignored


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_report_of_real_experiments_head_only_and_best_of_searches(tmp_path, monkeypatch, capsys):
    """Real `dvc exp run`s on two commits: by default the report reads HEAD's experiments only
    (--all-commits: every commit's), and its paper-protocol value is the run whose search-valid
    accuracy is best."""
    repo, sh = _toy_dvc_repo(
        tmp_path, monkeypatch,
        # search-valid accuracy peaks at seed 1; test accuracy grows with the seed
        "s = p['common']['seed']\n"
        "json.dump({'valid_acc': [50, 70, 60, 40][s]}, open('metrics/search.json', 'w'))\n"
        "json.dump({'test_acc': 90 + s}, open('metrics/train.json', 'w'))\n",
        ["metrics/search.json", "metrics/train.json"],
    )  # fmt: skip
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "toy.yaml").write_text("common:\n  seed: 0\ntrain:\n  lr: 0.1\n")
    (presets / "papers.yaml").write_text(
        "toy:\n  paper: T\n  row: toy row\n  metric: test_acc\n  protocol: best_of_searches\n"
        "  value: 91.5\n  source: here\n  gpu_time: none\n"
    )
    sh("dvc", "exp", "run", "-q", "-S", "common.seed=3")  # an experiment of the first commit
    sh("git", "checkout", "-q", "--", ".")
    (repo / "notes.txt").write_text("second commit\n")
    sh("git", "add", "notes.txt")
    sh("git", "commit", "-qm", "two")
    for seed in (0, 1, 2):
        sh("dvc", "exp", "run", "-q", "-S", f"common.seed={seed}")
    monkeypatch.chdir(repo)
    args = ["report", "--presets", str(presets), "--out", "reports/r.md", "--png", "reports/r.png"]
    cli_main(args)
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| toy |"))
    mean, std = statistics.mean([90, 91, 92]), statistics.stdev([90, 91, 92])
    assert f"| 3 (0, 1, 2) | {mean:.2f} ± {std:.2f} | best of the searches | 91.00 (best" in row
    assert "| 91.50 | -0.50 | toy row |" in row
    assert (repo / "reports/r.png").read_bytes()[:4] == b"\x89PNG"
    cli_main([*args, "--all-commits"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| toy |"))
    assert "| 4 (0, 1, 2, 3) |" in row


def _git_json(repo, rev, path):
    done = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return json.loads(done.stdout)


def _exp_revs(repo):
    show = subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, capture_output=True,
                          text=True, check=True)  # fmt: skip
    rows = json.loads(show.stdout)
    return rows, [r["rev"] for row in rows for e in row.get("experiments") or [] for r in e["revs"]]


def _seeded_toy_repo(tmp_path, monkeypatch):
    """A _toy_dvc_repo whose stage writes test accuracy 90 + 2.5 * seed + 10 * lr, reproduced,
    its results committed."""
    repo, sh = _toy_dvc_repo(
        tmp_path, monkeypatch,
        "acc = 90 + 2.5 * p['common']['seed'] + 10 * p['train']['lr']\n"
        "json.dump({'test_acc': acc}, open('metrics/train.json', 'w'))\n",
        ["metrics/train.json"],
    )  # fmt: skip
    sh("dvc", "repro", "-q")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "the baseline's results")
    return repo, sh


def _assert_two_seeds_row(repo, monkeypatch, capsys, preset: dict, accs: list[float]) -> None:
    """`dnas report` in `repo` with one preset, toy.yaml (`preset`), has one row, and
    it counts two runs, seeds 0 and 1, with the mean ± std of the test errors of `accs`."""
    presets = repo.parent / "presets"
    presets.mkdir()
    (presets / "toy.yaml").write_text(yaml.safe_dump(preset))
    monkeypatch.chdir(repo)
    cli_main(["report", "--presets", str(presets), "--out", "", "--png", ""])
    lines = capsys.readouterr().out.splitlines()
    lines = [line for line in lines[2:] if line.startswith("| ")]  # below the header
    errors = [100 - a for a in accs]
    expected = f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f}"
    assert len(lines) == 1
    assert lines[0].startswith(f"| toy | test error % | 2 (0, 1) | {expected} |")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_committed_preset_that_never_ran_is_not_a_run(tmp_path, monkeypatch, capsys):
    """The README's recipe: the default ran and was committed, then a preset is copied into
    params.yaml and committed (its dvc.lock and metrics are still the default's), then two
    seeds run as experiments. The report counts the two experiments, not the baseline commit
    with the old params' metrics: 2 runs (0, 1), their own mean and std."""
    repo, sh = _seeded_toy_repo(tmp_path, monkeypatch)  # the default ran and was committed
    (repo / "params.yaml").write_text("common:\n  seed: 0\ntrain:\n  lr: 0.3\n")  # the "preset"
    sh("git", "commit", "-qam", "preset")
    for seed in (0, 1):
        sh("dvc", "exp", "run", "-q", "-S", f"common.seed={seed}")
    rows, revs = _exp_revs(repo)
    assert len(revs) == 2
    accs = [_git_json(repo, rev, "metrics/train.json")["test_acc"] for rev in revs]
    preset = {"common": {"seed": 0}, "train": {"lr": 0.3}}
    _assert_two_seeds_row(repo, monkeypatch, capsys, preset, accs)
    # The baseline's metrics (lr 0.1's) are in the exp show rows, and only the lock check
    # tells them apart: without it they would stand for the preset's seed 0.
    baseline = rows[1] if rows[0]["rev"] == "workspace" else rows[0]
    assert baseline["data"]["metrics"]["metrics/train.json"]["data"]["test_acc"] == 91.0
    assert 91.0 in [r.value for r in parse_exp_show(rows, own_results=lambda rev: True)]
    assert 91.0 not in accs


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_baseline_and_its_seed_0_experiment_are_one_run(tmp_path, monkeypatch, capsys):
    """A baseline whose results are its own counts, once: its `-S common.seed=0` experiment is
    the same run. Two experiments on a committed, reproduced baseline: seeds (0, 1), not
    (0, 0, 1)."""
    repo, sh = _seeded_toy_repo(tmp_path, monkeypatch)
    for seed in (0, 1):
        sh("dvc", "exp", "run", "-q", "-S", f"common.seed={seed}")
    _, revs = _exp_revs(repo)
    accs = sorted(_git_json(repo, rev, "metrics/train.json")["test_acc"] for rev in revs)
    preset = {"common": {"seed": 0}, "train": {"lr": 0.1}}
    _assert_two_seeds_row(repo, monkeypatch, capsys, preset, accs)


def test_lock_agrees_reads_params_and_output_hashes():
    """The check on its own: a param that differs from dvc.lock's, a missing params file, an
    output file whose MD5 differs, and a lock without stages all say False."""
    import hashlib

    from dnas.report import lock_agrees

    metrics = b'{"test_acc": 91.0}'
    lock = {"stages": {"t": {
        "params": {"params.yaml": {"common.seed": 0, "train": {"lr": 0.1}}},
        "outs": [{"path": "metrics/train.json", "md5": hashlib.md5(metrics).hexdigest()}],
    }}}  # fmt: skip
    files = {"params.yaml": b"common: {seed: 0}\ntrain: {lr: 0.1}\n", "metrics/train.json": metrics}
    assert lock_agrees(lock, files.get)
    for changed in (b"common: {seed: 0}\ntrain: {lr: 0.3}", b"common: {seed: 1}\ntrain: {lr: 0.1}"):
        assert not lock_agrees(lock, {**files, "params.yaml": changed}.get)
    assert not lock_agrees(lock, {"metrics/train.json": metrics}.get)
    assert not lock_agrees(lock, {**files, "metrics/train.json": b'{"test_acc": 50}'}.get)
    assert not lock_agrees({"stages": {}}, files.get) and not lock_agrees(None, files.get)


def test_a_run_split_over_params_and_advanced_yaml_is_named_after_its_preset():
    """A run whose params.yaml holds only the often changed knobs and whose advanced.yaml (read
    from git at its revision: `dvc exp show --json` does not carry it) holds the rest is the
    preset it equals, as a run with the whole preset in params.yaml is."""
    from dnas.report import group_runs, load_presets

    preset = yaml.safe_load((PRESETS / "gdas-cifar10.yaml").read_text())
    ours = yaml.safe_load((PRESETS.parent / "params.yaml").read_text())
    top = {s: {k: preset[s][k] for k in keys} for s, keys in ours.items()}
    rest = {s: {k: v for k, v in values.items() if k not in top.get(s, {})}
            for s, values in preset.items()}  # fmt: skip
    metrics = {"metrics/train.json": {"test_acc": 97.0}}
    split = _rev("1" * 40, "split", top, metrics)
    whole = _rev("2" * 40, "whole", {**preset, "common": {**preset["common"], "seed": 1}}, metrics)
    rows = _exp_show(preset, [split, whole])
    asked = []

    def advanced(rev):
        asked.append(rev)
        return rest if rev == "1" * 40 else None

    runs = parse_exp_show(rows, advanced=advanced)
    assert "1" * 40 in asked
    groups = group_runs(runs, load_presets(PRESETS))
    assert [(g.preset, g.label, len(g.runs)) for g in groups] == [
        ("gdas-cifar10", "gdas-cifar10", 2)
    ]
    # without advanced.yaml the split run is not the preset
    alone = group_runs(parse_exp_show(rows), load_presets(PRESETS))
    assert len(alone) == 2
