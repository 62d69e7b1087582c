"""`dnas report` for language-model runs: their value is the test perplexity, lower is better.
The metrics files are those of a real tiny run (search, retraining and evaluation on a toy
corpus, written as the stages write them), with only the perplexities set per run."""

import copy
import json
import statistics

import pytest
import torch
import yaml
from scipy import stats
from test_report import PRESETS, _exp_show, _rev
from test_rnn import tiny_corpus, tiny_params

from dnas.cli import main as cli_main
from dnas.evaluate import evaluate_perplexity
from dnas.io import MEASURED, dumps_json
from dnas.report import (
    build_rows,
    compare_with_random,
    figure_label,
    group_runs,
    load_papers,
    load_presets,
    markdown,
    paper_row,
    parse_exp_show,
)
from dnas.search import rnn_loop
from dnas.train import lm as train_lm

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def lm_metrics(tmp_path_factory) -> dict:
    """metrics/search.json, train.json and eval.json of one real tiny language-model run, as
    stages/search.py, train.py and evaluate.py write them (the cost goes elsewhere; the train
    stage leaves out any test accuracy)."""
    root = tmp_path_factory.mktemp("lm")
    data = tiny_corpus(root)
    p = tiny_params(search__epochs=1, train__epochs=1)
    found = rnn_loop.run_rnn_search(p, data, CPU, root / "search")
    search = {k: v for k, v in found.metrics.items() if k != MEASURED}
    model, config, train = train_lm.run_lm_train(p, found.genotype, data, CPU, root / "train")
    train = {k: v for k, v in train.items() if k != "test_acc"}
    evaluated = evaluate_perplexity(model, data, config, CPU)
    files = {"metrics/search.json": search, "metrics/train.json": train,
             "metrics/eval.json": evaluated}  # fmt: skip
    return {path: json.loads(dumps_json(m)) for path, m in files.items()}


def _metrics(real: dict, test_ppl: float, search_ppl: float | None = None) -> dict:
    """The real run's metrics with its test perplexity (and search-valid perplexity) set; the
    keys must be the ones the stages wrote."""
    m = copy.deepcopy(real)
    assert isinstance(m["metrics/eval.json"]["test"]["ppl"], float)
    m["metrics/eval.json"]["test"]["ppl"] = test_ppl
    if search_ppl is not None:
        assert isinstance(m["metrics/search.json"]["valid_ppl"], float)
        m["metrics/search.json"]["valid_ppl"] = search_ppl
    return m


def _preset(name: str, seed: int, **changes) -> dict:
    params = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())
    params["common"]["seed"] = seed
    for key, value in changes.items():
        section, _, knob = key.partition("__")
        params[section][knob] = value
    return params


def _show(runs: list[tuple[dict, dict]]) -> list:
    """`dvc exp show --json` of experiments, each (params, metrics)."""
    exps = [_rev(f"{i:040d}", f"e{i}", params, m) for i, (params, m) in enumerate(runs)]
    return _exp_show(runs[0][0], exps)


def _rows(show: list, papers: dict | None = None) -> dict:
    presets = load_presets(PRESETS)
    groups = group_runs(parse_exp_show(show), presets)
    rows = build_rows(groups, load_papers(PRESETS) if papers is None else papers, presets)
    return {r["group"]: r for r in rows}


def test_a_real_lm_run_is_valued_by_its_test_perplexity(lm_metrics):
    """The unchanged metrics of the real run: one run, its value the evaluated test
    perplexity (not the retraining's validation perplexity in train.json)."""
    runs = parse_exp_show(_show([(_preset("rnn-pydoc", 0), lm_metrics)]))
    assert len(runs) == 1
    assert runs[0].value == lm_metrics["metrics/eval.json"]["test"]["ppl"]
    assert runs[0].value != lm_metrics["metrics/train.json"]["valid_ppl"]
    assert runs[0].measure == "perplexity"
    assert runs[0].search_score == -lm_metrics["metrics/search.json"]["valid_ppl"]


def test_an_lm_preset_sweep_shows_its_mean_test_perplexity_against_the_paper(
    lm_metrics, tmp_path, capsys
):
    ppl = {0: 60.1, 1: 58.4, 2: 61.0}
    runs = [(_preset("gdas-ptb", s), _metrics(lm_metrics, v, 70.0 + s)) for s, v in ppl.items()]
    # the published cell retrained over two seeds: a fixed cell, still a language model
    fixed = {0: 57.9, 1: 58.3}
    runs += [(_preset("gdas-ptb", s, train__genotype="GDAS_RNN"), _metrics(lm_metrics, v))
             for s, v in fixed.items()]  # fmt: skip
    (tmp_path / "show.json").write_text(json.dumps(_show(runs)))
    cli_main(["report", "--input", str(tmp_path / "show.json"), "--presets", str(PRESETS),
              "--out", str(tmp_path / "r.md"), "--png", str(tmp_path / "r.png")])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    paper = float(load_papers(PRESETS)["gdas-ptb"]["value"])
    mean, std = statistics.mean(ppl.values()), statistics.stdev(ppl.values())
    row = next(line for line in lines if line.startswith("| gdas-ptb |"))
    assert row.startswith(
        f"| gdas-ptb | test perplexity | 3 (0, 1, 2) | {mean:.2f} ± {std:.2f} | not stated |"
        f" {mean:.2f} ± {std:.2f} (mean over runs) | {paper:.2f} | {mean - paper:+.2f} |"
    )
    mean, std = statistics.mean(fixed.values()), statistics.stdev(fixed.values())
    row = next(line for line in lines if line.startswith("| gdas-ptb (train.genotype=GDAS_RNN)"))
    assert f"| test perplexity | 2 (0, 1) | {mean:.2f} ± {std:.2f} |" in row
    assert f"| {mean:.2f} ± {std:.2f} (2 retrainings of one cell) |" in row
    # the figure names the metric too
    rows = _rows(_show(runs))
    assert figure_label(rows["gdas-ptb"]).endswith("\n[test perplexity]")


def test_best_of_searches_takes_the_lowest_search_valid_perplexity(lm_metrics):
    """Seed 2's search has the lowest validation perplexity: its retraining is the value,
    though seed 1 has the lowest test perplexity and seed 1's search the highest valid one."""
    runs = [(_preset("gdas-ptb", s), _metrics(lm_metrics, test, valid))
            for s, test, valid in [(0, 60.1, 70.0), (1, 58.4, 75.0), (2, 61.0, 66.0)]]  # fmt: skip
    papers = load_papers(PRESETS)
    papers = {"gdas-ptb": {**papers["gdas-ptb"], "protocol": "best_of_searches"}}
    row = _rows(_show(runs), papers)["gdas-ptb"]
    assert row["protocol_value"] == 61.0 and row["protocol_note"] == "best search: e2"
    assert row["difference"] == pytest.approx(61.0 - float(papers["gdas-ptb"]["value"]))


def test_darts_short_retrainings_pick_the_lowest_validation_perplexity(lm_metrics):
    """DARTS PTB: the short (300-epoch) retraining with the lowest validation perplexity (its
    retraining's own, metrics/train.json `valid_ppl`, as DARTS's rnn/train.py keeps the best
    validation loss) selects the seed whose full-length run is the value; the test perplexity
    takes no part: seed 2 has the lowest test perplexity and is not picked."""
    assert isinstance(lm_metrics["metrics/train.json"]["valid_ppl"], float)
    short = {0: (80.0, 84.0), 1: (76.5, 79.0), 2: (75.0, 81.0)}  # seed: (test, valid)
    full = {0: 59.0, 1: 60.5, 2: 58.0}
    runs = []
    for s, (test, valid) in short.items():
        m = _metrics(lm_metrics, test)
        m["metrics/train.json"]["valid_ppl"] = valid
        runs.append((_preset("darts-v1-ptb", s, train__epochs=300), m))
    runs += [(_preset("darts-v1-ptb", s), _metrics(lm_metrics, v)) for s, v in full.items()]
    rows = _rows(_show(runs))
    row = rows["darts-v1-ptb"]
    assert row["metric"] == "test perplexity"
    assert row["protocol_value"] == full[1]
    assert row["protocol_note"].startswith("best short retraining by valid perplexity: e1 (seed 1)")
    selection = rows["darts-v1-ptb (train.epochs=300)"]
    assert selection["protocol_value"] == short[1][0]
    assert selection["protocol_note"] == "short retrainings: best e1 by valid perplexity"


def test_a_group_without_a_paper_row_is_in_perplexity(lm_metrics):
    """rnn-pydoc has no paper row: its metric comes from its runs (perplexity, not 100 -
    perplexity), for a searched cell and for a fixed one alike."""
    ppl = {0: 412.0, 1: 398.5}
    runs = [(_preset("rnn-pydoc", s), _metrics(lm_metrics, v, 500.0)) for s, v in ppl.items()]
    runs += [(_preset("rnn-pydoc", s, train__genotype="DARTS_V2_RNN"), _metrics(lm_metrics, v))
             for s, v in ((0, 420.0), (1, 430.0))]  # fmt: skip
    rows = _rows(_show(runs))
    assert set(rows) == {"rnn-pydoc", "rnn-pydoc (train.genotype=DARTS_V2_RNN)"}
    row = rows["rnn-pydoc"]
    assert row["metric"] == "test perplexity" and row["paper"] is None
    assert row["mean"] == pytest.approx(statistics.mean(ppl.values()))
    assert row["std"] == pytest.approx(statistics.stdev(ppl.values()))
    assert rows["rnn-pydoc (train.genotype=DARTS_V2_RNN)"]["mean"] == pytest.approx(425.0)
    table = markdown(list(rows.values()))
    mean, std = statistics.mean(ppl.values()), statistics.stdev(ppl.values())
    assert f"| rnn-pydoc | test perplexity | 2 (0, 1) | {mean:.2f} ± {std:.2f} |" in table


def test_a_paper_row_of_another_kind_is_not_compared(lm_metrics):
    """A language-model group beside a paper's test error (or a CNN group beside a paper's
    perplexity) measures another thing: no paper number, the runs' own metric."""
    runs = [(_preset("rnn-pydoc", s), _metrics(lm_metrics, v)) for s, v in ((0, 50.0), (1, 52.0))]
    papers = load_papers(PRESETS)
    row = _rows(_show(runs), {"rnn-pydoc": papers["gdas-cifar10"]})["rnn-pydoc"]
    assert row["metric"] == "test perplexity" and row["paper"] is None and row["mean"] == 51.0
    groups = group_runs(parse_exp_show(_show(runs)), load_presets(PRESETS))
    assert paper_row(groups[0], {"rnn-pydoc": papers["gdas-ptb"]}) == papers["gdas-ptb"]


def _versus_random(lm_metrics, searched: dict, random: dict) -> dict:
    runs = [(_preset("rnn-pydoc", s), _metrics(lm_metrics, v)) for s, v in searched.items()]
    runs += [(_preset("rnn-pydoc", s, train__genotype="random"), _metrics(lm_metrics, v))
             for s, v in random.items()]  # fmt: skip
    groups = group_runs(parse_exp_show(_show(runs)), load_presets(PRESETS))
    (row,) = compare_with_random(groups, load_papers(PRESETS))
    assert row["kind"] == "random cell" and row["metric"] == "perplexity"
    return row


def test_searched_vs_random_counts_a_lower_perplexity_as_the_better_one(lm_metrics):
    searched = {0: 300.0, 1: 310.0, 2: 305.0, 3: 298.0}
    random = {0: 340.0, 1: 345.0, 2: 352.0, 3: 339.0}  # every seed worse than its search
    row = _versus_random(lm_metrics, searched, random)
    diffs = [searched[s] - random[s] for s in searched]
    assert row["test"] == "paired" and row["diff"] == pytest.approx(statistics.mean(diffs))
    lo, hi = stats.ttest_rel(list(searched.values()), list(random.values())).confidence_interval()
    assert row["ci"] == pytest.approx((lo, hi), abs=2e-2)  # df 3: the table's quantile
    assert hi < 0 and row["verdict"].startswith("the search beat random")
    # the other way round: a search whose cells are worse than random did not beat it
    row = _versus_random(lm_metrics, random, searched)
    assert row["diff"] > 0 and row["ci"][0] > 0
    assert "did NOT beat random (random was as good or better)" in row["verdict"]


def test_a_paper_metric_the_report_cannot_compare_is_one_clear_error(lm_metrics, tmp_path, capsys):
    papers = load_papers(PRESETS)
    (tmp_path / "papers.yaml").write_text(
        yaml.safe_dump({"gdas-ptb": {**papers["gdas-ptb"], "metric": "ppl"}})
    )
    (tmp_path / "show.json").write_text(json.dumps(_show([(_preset("gdas-ptb", 0), lm_metrics)])))
    with pytest.raises(SystemExit) as exc:
        cli_main(["report", "--input", str(tmp_path / "show.json"), "--presets", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "papers.yaml: gdas-ptb.metric is 'ppl'; use one of test_error" in err
