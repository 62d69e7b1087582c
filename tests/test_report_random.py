"""`dnas report`'s searched-vs-random section: each searched group beside its random groups
(`search.algorithm: random`, `train.genotype: random`), the difference over seeds paired where
the seeds pair and Welch's otherwise, checked against scipy's tests, and a plain verdict."""

import json
import shutil
import statistics
from pathlib import Path

import pytest
import yaml
from scipy import stats
from test_report import _exp_show, _rev, _toy_dvc_repo

from dnas.report import T975, compare_with_random, group_runs, parse_exp_show, report, t975

ROOT = Path(__file__).resolve().parents[1]


def test_the_t_table_is_students():
    for df in T975:
        assert abs(T975[df] - stats.t.ppf(0.975, df)) < 1e-3, df
    assert t975(2.7) == T975[2] and t975(35) == T975[30] and t975(500) == 1.96


def _sweep(base: dict, groups: dict) -> list:
    exps = []
    for (key, value), runs in groups.items():
        for seed, acc in runs:
            params = json.loads(json.dumps(base))
            params["common"]["seed"] = seed
            if key:
                section, name = key.split(".")
                params[section][name] = value
            rev = f"{len(exps):040d}"
            metrics = {"metrics/train.json": {"test_acc": acc}}
            exps.append(_rev(rev, f"e{len(exps)}", params, metrics))
    return _exp_show(base, exps)


def test_paired_and_welch_comparisons_match_scipy_and_say_when_search_lost():
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    searched = [(0, 80.0), (1, 81.0), (2, 79.5)]
    random_search = [(0, 80.5), (1, 80.0), (2, 80.2)]  # the same seeds: paired
    random_cell = [(7, 76.0), (8, 76.6)]  # other seeds: Welch
    show = _sweep(base, {(None, None): searched, ("search.algorithm", "random"): random_search,
                         ("train.genotype", "random"): random_cell})  # fmt: skip
    runs = parse_exp_show(show)
    rows = {r["kind"]: r for r in compare_with_random(group_runs(runs, {}), {})}
    assert set(rows) == {"random search", "random cell"}
    # no preset: the metric is test error, 100 - accuracy
    err = lambda runs: [100 - a for _, a in runs]  # noqa: E731
    paired = stats.ttest_rel(err(searched), err(random_search))
    r = rows["random search"]
    assert r["test"] == "paired" and r["seeds"] == [0, 1, 2]
    diffs = [a - b for a, b in zip(err(searched), err(random_search))]
    assert r["diff"] == pytest.approx(statistics.mean(diffs))
    assert r["se"] == pytest.approx(r["diff"] / paired.statistic)
    lo, hi = paired.confidence_interval(0.95)
    assert r["ci"] == pytest.approx((lo, hi), abs=2e-3)  # df 2: the table's quantile
    assert "did NOT beat random" in r["verdict"]  # 0.6 more error on average
    welch = stats.ttest_ind(err(searched), err(random_cell), equal_var=False)
    r = rows["random cell"]
    assert r["test"] == "welch" and r["seeds"] == []
    gap = statistics.mean(err(searched)) - statistics.mean(err(random_cell))
    assert r["diff"] == pytest.approx(gap)
    assert r["se"] == pytest.approx(r["diff"] / welch.statistic)
    assert r["df"] == pytest.approx(welch.df)
    lo, hi = welch.confidence_interval(0.95)  # the fractional df; ours rounds it down: wider
    assert r["ci"][0] <= lo and r["ci"][1] >= hi
    assert r["ci"][1] < 0 and r["verdict"].startswith("the search beat random")
    # the section in the report, one line per pair
    text = report(show, ROOT / "presets", None, None)
    assert "## Searched vs random at equal budget" in text
    line = next(x for x in text.splitlines() if "| random search |" in x)
    assert "paired over seeds 0, 1, 2" in line and "did NOT beat random" in line
    assert f"{statistics.mean(diffs):+.2f} ± {rows['random search']['se']:.2f}" in line


def test_one_run_each_has_no_uncertainty_and_no_claim():
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    show = _sweep(base, {(None, None): [(0, 90.0)], ("train.genotype", "random"): [(3, 85.0)]})
    rows = compare_with_random(group_runs(parse_exp_show(show), {}), {})
    (r,) = rows
    assert r["test"] == "none" and r["ci"] is None and r["diff"] == pytest.approx(-5.0)
    assert "did NOT beat random beyond doubt" in r["verdict"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_report_compares_a_real_dvc_sweep_with_its_random_cells(tmp_path, monkeypatch):
    """Four real `dvc exp run`s of a one-line stage: 2 seeds searched, 2 seeds with
    train.genotype=random; the report pairs them by seed."""
    params = {"common": {"seed": 0}, "search": {"algorithm": "gdas"},
              "train": {"genotype": "searched"}}  # fmt: skip
    repo, sh = _toy_dvc_repo(
        tmp_path, monkeypatch,
        "s, g = p['common']['seed'], p['train']['genotype']\n"
        "acc = {('searched', 0): 91.0, ('searched', 1): 92.5, ('random', 0): 91.5,"
        " ('random', 1): 92.25}[(g, s)]\n"
        "json.dump({'test_acc': acc}, open('metrics/train.json', 'w'))\n",
        ["metrics/train.json"], params,
    )  # fmt: skip
    for genotype in ("searched", "random"):
        for seed in (0, 1):
            sh("dvc", "exp", "run", "-q", "-S", f"common.seed={seed}",
               "-S", f"train.genotype={genotype}")  # fmt: skip
    show = json.loads(sh("dvc", "exp", "show", "--json"))
    text = report(show, ROOT / "presets", tmp_path / "r.md", None)
    line = next(x for x in text.splitlines() if "| random cell |" in x)
    # computed here: errors searched 9.0, 7.5; random 8.5, 7.75 -> differences +0.5, -0.25
    diffs = [9.0 - 8.5, 7.5 - 7.75]
    mean, se = statistics.mean(diffs), statistics.stdev(diffs) / 2**0.5
    half = stats.t.ppf(0.975, 1) * se
    assert "paired over seeds 0, 1" in line
    assert f"| {mean:+.2f} ± {se:.2f} | [{mean - half:+.2f}, {mean + half:+.2f}] |" in line
    assert "did NOT beat random" in line
    assert line in (tmp_path / "r.md").read_text()


def test_a_preset_and_its_random_search_preset_pair_up():
    """gdas-nb201-cifar10 and random-nb201-cifar10 differ in the algorithm and in random
    search's own knobs only, so they pair; gdas-nb201-cifar100 (another dataset) does not."""
    presets = ROOT / "presets"
    exps = []
    for name, accs in [("gdas-nb201-cifar10", [93.0, 93.4]), ("random-nb201-cifar10", [88.0, 87.0]),
                       ("random-nb201-cifar100", [60.0, 59.0])]:  # fmt: skip
        preset = yaml.safe_load((presets / f"{name}.yaml").read_text())
        for seed, acc in enumerate(accs):
            params = {**preset, "common": {**preset["common"], "seed": seed}}
            metrics = {"metrics/train.json": {"test_acc": acc}}
            exps.append(_rev(f"{len(exps):040d}", f"{name}-{seed}", params, metrics))
    text = report(_exp_show(preset, exps), presets, None, None)
    (line,) = [x for x in text.splitlines() if "| random search |" in x]
    assert line.startswith("| gdas-nb201-cifar10 | random-nb201-cifar10 | random search | test acc")
    diffs = [93.0 - 88.0, 93.4 - 87.0]
    assert f"| {statistics.mean(diffs):+.2f} ± {statistics.stdev(diffs) / 2**0.5:.2f} |" in line
    # two seeds: t(1) = 12.7, so +5.7 ± 0.7 is not yet beyond doubt
    assert "did NOT beat random beyond the uncertainty" in line


def test_a_random_cell_run_is_not_scored_by_the_searched_cells_benchmark_row():
    """With search.benchmark, metrics/search.json holds the searched cell's NB201 row; a run
    that retrains a random cell (train.genotype: random) is scored by its own retraining."""
    from dnas.report import run_result

    metrics = {
        "metrics/search.json": {"benchmark": {"cifar10": {"hp200": {"test_acc": 93.5}}}},
        "metrics/train.json": {"test_acc": 88.25},
    }
    params = {"search.space": "nb201", "train.dataset": "cifar10", "train.genotype": "searched"}
    assert run_result(params, metrics) == (93.5, "accuracy")
    assert run_result({**params, "train.genotype": "random"}, metrics) == (88.25, "accuracy")
