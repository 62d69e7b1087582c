"""The reproduction report: experiments from `dvc exp show --json`, grouped by preset, against
the papers' numbers (presets/papers.yaml), each both as a mean ± std over runs and by the
paper's own protocol (docs/protocols.md).

An experiment's group is its params without `common` (seed, device, checkpointing), so the
runs of a seed sweep (`dvc exp run --queue -S 'common.seed=range(0,4)'`) form one group. A group
is named after the preset whose params it equals; one that differs from its nearest preset in
a few keys is named `preset (key=value, ...)`, and any other by the keys that set it apart
from the other groups. The value of a CNN run is its test accuracy: `best_test_acc` from
metrics/train.json when `train.report` is `best`, else `test_acc` there or metrics/eval.json
`test.top1` (an NB201 search with `search.benchmark`: the benchmark's row). The value of a
language-model run (a recurrent cell on a text corpus, whether searched or a fixed
`train.genotype`) is its test perplexity, metrics/eval.json `test.ppl`: the evaluate stage's
output says which kind a run is. A group's metric is its paper row's (`metric` in
papers.yaml: test_error is compared with 100 - accuracy, test_acc with the accuracy,
perplexity with the test perplexity); without one it is `test_error` for accuracies and
`perplexity` for language models (a paper row of the other kind is not compared). Lower is
better for error and perplexity, higher for accuracy, in every choice below. The std is the
sample standard deviation (n - 1); it needs two runs.

The paper's protocol (`protocol` in papers.yaml):
- best_of_searches: the value of the run whose search-validation accuracy (metrics/search.json
  `valid_acc`) is highest, or for language models whose search-validation perplexity
  (`valid_ppl`) is lowest, as GDAS picks its cell;
- retrain_seeds: mean ± std over retrainings of one cell (DARTS's ± 0.09): the group of the
  same preset whose `train.genotype` names that cell (e.g. the best run's genotype.json saved
  to a file); until there is one, the best search's own retraining;
- best_of_short_retrainings: DARTS's selection: several searches, each cell retrained from
  scratch for a short time (100 epochs on CIFAR-10, 300 on PTB), the best of those short
  retrainings retrained in full over seeds. The short retrainings are the group of the same
  preset that differs only in a smaller `train.epochs`; the value is the mean ± std of the
  group that retrains the selected cell (as retrain_seeds) if there is one, else the
  full-length run of the best short retraining's seed (docs/protocols.md); the best short
  retraining is picked as DARTS's code scores them: a language model's by its lowest validation
  perplexity (metrics/train.json `valid_ppl`), a CNN's by its test accuracy (DARTS's
  cnn/train.py scores on CIFAR-10's test set);
- mean_over_runs, published_cell, unstated: the mean ± std over the group's runs.
A group that retrains a fixed cell (`train.genotype` other than the preset's) is always
reported as retrainings of one cell.

`dnas report` reads the experiments of the current HEAD (`--all-commits`: of every commit).

Searched vs random (`compare_with_random`, docs/protocols.md#searched-vs-random): each group
that retrains its own search's cell is set beside its random groups, the groups whose params
differ from it only in `search.algorithm: random` (random search with weight sharing; its own
`search.random_*` knobs may differ too, as between a preset and its random-* preset) or
`train.genotype: random` (a random cell): the same data, search budget and retraining. The
difference searched - random in the group's metric (error, accuracy or perplexity) comes with
its uncertainty over seeds: paired by seed where at least two seeds ran in both (the mean of
the per-seed differences, its standard error and a 95% t-interval), else Welch's unpaired
interval (each group with two runs or more), else the difference alone. The searched side of
zero is the better one: below it for error and perplexity, above it for accuracy. The verdict
says plainly when the search did not beat random: unless the whole interval lies on the
searched side of zero, it did not.

A commit's own metrics count only when its dvc.lock agrees with its params and output files
(`lock_agrees`): a preset copied into params.yaml and committed without running still holds
the old params' metrics. Revisions with the same params and seed are one run.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dnas.algorithms import ALGORITHMS
from dnas.errors import UserError
from dnas.io import atomic_path
from dnas.io import md_cell as cell

PAPERS_FILE = "papers.yaml"
IGNORED_SECTIONS = ("common",)  # seed, device, checkpoint_every: not part of a result's identity
MAX_PRESET_DIFFS = 3


@dataclass
class Run:
    name: str
    rev: str
    params: dict[str, Any]  # flattened `section.key` -> value
    value: float  # test accuracy (%) or, for a language model, test perplexity (`measure`)
    search_score: float | None = None  # higher is better: search-valid accuracy, or -ppl
    measure: str = "accuracy"  # what `value` is: "accuracy" or "perplexity"
    retrain_valid_ppl: float | None = None  # a language model's retraining: its best valid ppl


@dataclass
class Group:
    key: tuple
    runs: list[Run] = field(default_factory=list)
    label: str = ""
    preset: str | None = None

    @property
    def seeds(self) -> list:
        return [r.params.get("common.seed") for r in self.runs]

    @property
    def measure(self) -> str:
        """What the runs' values are; runs of one group have the same params, so the same
        kind of model and the same measure."""
        return self.runs[0].measure


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
    return out


def _identity(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k.split(".", 1)[0] not in IGNORED_SECTIONS}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _diff(a: dict, b: dict) -> list[str]:
    """Keys of `a` whose value differs from (or is missing in) `b`, plus keys only in `b`."""
    keys = sorted(set(a) | set(b))
    return [k for k in keys if k not in a or k not in b or not _same(a[k], b[k])]


def benchmark_value(params: dict[str, Any], metrics: dict[str, dict]) -> float | None:
    """An NB201 search run with `search.benchmark`: the benchmark's recorded test accuracy
    (200 epochs) of the found cell on `train.dataset`, as the papers report it; else None."""
    from dnas.benchmarks import NB201_TEST_DATASET
    from dnas.spaces.registry import find_space

    dataset = NB201_TEST_DATASET.get(str(params.get("train.dataset")))
    space = find_space(params.get("search.space"))
    if space is None or not space.benchmark or dataset is None:
        return None
    if params.get("train.genotype", "searched") != "searched":
        return None  # the lookup is the searched cell's; this run retrains another one
    row = metrics.get("metrics/search.json", {}).get("benchmark") or {}
    value = (row.get(dataset) or {}).get("hp200", {}).get("test_acc")
    return None if value is None else float(value)


def run_result(params: dict[str, Any], metrics: dict[str, dict]) -> tuple[float, str] | None:
    """(value, measure) of one run: its reported test accuracy (%) and "accuracy", or for a
    language model its test perplexity (metrics/eval.json `test.ppl`) and "perplexity"; None
    if it has neither. The measure comes from what the evaluate stage wrote, which follows
    the retrained model (a recurrent cell on a text corpus), whatever `train.genotype` is."""
    looked_up = benchmark_value(params, metrics)
    if looked_up is not None:  # NB201: the benchmark's number, whether retrained or not
        return looked_up, "accuracy"
    train = metrics.get("metrics/train.json", {})
    if params.get("train.report") == "best" and "best_test_acc" in train:
        return float(train["best_test_acc"]), "accuracy"
    if "test_acc" in train:
        return float(train["test_acc"]), "accuracy"
    test = metrics.get("metrics/eval.json", {}).get("test", {})
    if not isinstance(test, dict):
        return None
    if test.get("top1") is not None:
        return float(test["top1"]), "accuracy"
    if test.get("ppl") is not None:
        return float(test["ppl"]), "perplexity"
    return None


def search_score(metrics: dict[str, dict]) -> float | None:
    """How good the run's search was on its validation data: search-valid accuracy (CNNs) or
    minus the validation perplexity (language models); None without metrics/search.json."""
    search = metrics.get("metrics/search.json", {})
    if "valid_acc" in search:
        return float(search["valid_acc"])
    if "valid_ppl" in search:
        return -float(search["valid_ppl"])
    return None


def _data(entry: dict, what: str) -> dict:
    """The merged `data` of every file under entry['data'][what] (files with errors skipped)."""
    files = (entry.get("data") or {}).get(what) or {}
    return {path: f.get("data") or {} for path, f in files.items() if "data" in f}


def _lookup(data: Any, key: str) -> tuple[bool, Any]:
    """(found, value) of a dotted `key` in a params file's data, as DVC addresses it."""
    if isinstance(data, dict) and key in data:
        return True, data[key]
    node = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return _same(a, b)


def lock_agrees(lock: Any, read: Callable[[str], bytes | None]) -> bool:
    """Whether a commit's results were produced by its own params: every param that dvc.lock
    records for a stage equals the commit's params file, and every output file that git holds
    (metrics, genotype.json, ...) has the MD5 that dvc.lock records. `read(path)` gives a file
    of the commit (None if the commit has no such file). A commit whose params were changed and
    committed without running the pipeline (`dnas params use X && git commit`)
    still holds the metrics of the old params: this says False for it."""
    stages = (lock or {}).get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict) or not stages:
        return False
    files: dict[str, Any] = {}
    for stage in stages.values():
        for path, recorded in ((stage or {}).get("params") or {}).items():
            if path not in files:
                text = read(path)
                try:
                    files[path] = None if text is None else yaml.safe_load(text)
                except yaml.YAMLError:
                    files[path] = None
            if files[path] is None:
                return False
            for key, value in (recorded or {}).items():
                found, actual = _lookup(files[path], key)
                if not found or not _equal(actual, value):
                    return False
        for out in (stage or {}).get("outs") or []:
            md5 = out.get("md5")
            if not md5 or md5.endswith(".dir"):
                continue
            content = read(out["path"])
            if content is not None and hashlib.md5(content).hexdigest() != md5:
                return False
    return True


def git_lock_agrees(rev: str, cwd: str | Path | None = None) -> bool | None:
    """`lock_agrees` for a git revision of the repository at `cwd`; None when git does not
    know the revision (a saved `dvc exp show --json` from elsewhere)."""

    def read(path: str) -> bytes | None:
        done = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=cwd, capture_output=True, check=False
        )
        return done.stdout if done.returncode == 0 else None

    try:
        known = subprocess.run(
            ["git", "cat-file", "-e", f"{rev}^{{commit}}"], cwd=cwd, capture_output=True,
            check=False,
        ).returncode == 0  # fmt: skip
    except FileNotFoundError:
        return None
    if not known:
        return None
    lock = read("dvc.lock")
    try:
        return lock_agrees(yaml.safe_load(lock) if lock is not None else None, read)
    except yaml.YAMLError:
        return False


def git_advanced(rev: str, cwd: str | Path | None = None) -> dict | None:
    """advanced.yaml as committed at `rev` (the rarely changed knobs, which `dvc exp show
    --json` does not carry: it is a plain dependency, not a params file); None when git does not
    have it there."""
    try:
        done = subprocess.run(
            ["git", "show", f"{rev}:advanced.yaml"], cwd=cwd, capture_output=True, check=False
        )
    except FileNotFoundError:
        return None
    if done.returncode != 0:
        return None
    try:
        data = yaml.safe_load(done.stdout)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _lay_over(base: dict | None, top: dict) -> dict:
    """params.yaml's data `top` over advanced.yaml's `base`, section by section, as
    dnas.config.with_advanced reads them."""
    out = dict(base or {})
    for section, value in top.items():
        below = out.get(section)
        both = isinstance(below, dict) and isinstance(value, dict)
        out[section] = {**below, **value} if both else value
    return out


def parse_exp_show(
    rows: list,
    own_results: Callable[[str], bool | None] | None = None,
    advanced: Callable[[str], dict | None] | None = None,
) -> list[Run]:
    """Runs with a result from `dvc exp show --json`: baselines and their experiments, the
    workspace and failed experiments left out, each run once.

    `own_results(rev)` says whether a revision's metrics were produced by its own params
    (`git_lock_agrees`: True, False, or None when it cannot tell). A baseline commit counts
    only when it says True: a commit can hold params that were never run (a preset copied
    into params.yaml and committed, whose metrics are still the old params'). An experiment
    counts unless it says False (`dvc exp run` commits params, dvc.lock and results together).
    Without `own_results` no baseline counts. Two revisions with the same params and seed
    are one run (a baseline and its `-S common.seed=0` experiment): the first is kept.
    `advanced(rev)` gives the revision's advanced.yaml (`git_advanced`), under its params.yaml:
    a run's params are both files, as the stages read them."""
    if not isinstance(rows, list):
        raise UserError("dvc exp show --json: expected a list of revisions")
    runs: dict[tuple, Run] = {}
    seen: set[str] = set()

    def add(entry: dict, name: str | None, baseline: bool) -> None:
        rev = entry.get("rev")
        if rev in (None, "workspace") or entry.get("error") or rev in seen:
            return
        seen.add(rev)
        own = own_results(rev) if own_results is not None else None
        if own is False or (baseline and own is not True):
            return
        params_files = _data(entry, "params")
        below = params_files.get("advanced.yaml") or (advanced(rev) if advanced else None)
        params = flatten(_lay_over(below, params_files.get("params.yaml", {})))
        metrics = _data(entry, "metrics")
        result = run_result(params, metrics)
        if result is None:
            return
        ident = _identity(params)
        key = (
            json.dumps(sorted(ident.items()), sort_keys=True, default=str),
            json.dumps(params.get("common.seed"), default=str),
        )
        if key not in runs:
            label = name or entry.get("name") or rev[:7]
            valid_ppl = metrics.get("metrics/train.json", {}).get("valid_ppl")
            runs[key] = Run(label, rev, params, result[0], search_score(metrics), result[1],
                            None if valid_ppl is None else float(valid_ppl))  # fmt: skip

    for row in rows:
        add(row, row.get("name"), baseline=True)
        for exp in row.get("experiments") or []:
            for rev in exp.get("revs") or []:
                add(rev, exp.get("name") or rev.get("name"), baseline=False)
    return list(runs.values())


def load_presets(preset_dir: Path) -> dict[str, dict[str, Any]]:
    presets = {}
    for path in sorted(preset_dir.glob("*.yaml")):
        if path.name == PAPERS_FILE:
            continue
        raw = yaml.safe_load(path.read_text()) or {}
        presets[path.stem] = _identity(flatten(raw))
    return presets


def load_papers(preset_dir: Path) -> dict[str, dict]:
    path = preset_dir / PAPERS_FILE
    if not path.is_file():
        return {}
    try:
        papers = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    for name, entry in papers.items() if isinstance(papers, dict) else ():
        if not isinstance(entry, dict):
            raise UserError(f"{path}: {name} must be a mapping (paper, row, metric, value, ...)")
        metric = entry.get("metric", "test_error")
        if metric not in METRIC_MEASURES:
            raise UserError(
                f"{path}: {name}.metric is {metric!r}; use one of {', '.join(METRIC_MEASURES)}"
            )
    return papers


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) and not value.isprintable() else str(value)


def group_runs(runs: list[Run], presets: dict[str, dict[str, Any]]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for run in runs:
        ident = _identity(run.params)
        key = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in ident.items()))
        groups.setdefault(key, Group(key)).runs.append(run)
    ordered = list(groups.values())
    idents = [dict((k, json.loads(v)) for k, v in g.key) for g in ordered]
    for group, ident in zip(ordered, idents):
        best = min(
            ((name, _diff(ident, p)) for name, p in presets.items()),
            key=lambda item: len(item[1]),
            default=None,
        )
        if best is not None and len(best[1]) <= MAX_PRESET_DIFFS:
            group.preset = best[0]
            changes = ", ".join(f"{k}={_fmt(ident.get(k, '(unset)'))}" for k in best[1])
            group.label = best[0] + (f" ({changes})" if changes else "")
    # Groups that match no preset: named by the keys on which the groups differ.
    varying = sorted({k for a in idents for b in idents for k in _diff(a, b)})
    for group, ident in zip(ordered, idents):
        if not group.label:
            keys = [k for k in varying if k in ident]
            group.label = ", ".join(f"{k}={_fmt(ident[k])}" for k in keys) or "params.yaml"
    return sorted(ordered, key=lambda g: g.label)


def mean_std(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _as_metric(value: float, metric: str) -> float:
    """A run's value (test accuracy, or a language model's test perplexity) in `metric`."""
    return 100.0 - value if metric == "test_error" else value


METRIC_NAMES = {"test_error": "test error %", "test_acc": "test acc. %",
                "perplexity": "test perplexity"}  # fmt: skip
# The measure a paper's metric is computed from (Run.measure), and each measure's default.
METRIC_MEASURES = {"test_error": "accuracy", "test_acc": "accuracy", "perplexity": "perplexity"}
DEFAULT_METRIC = {"accuracy": "test_error", "perplexity": "perplexity"}
LOWER_IS_BETTER = {"test_error", "perplexity"}


def paper_row(group: Group, papers: dict[str, dict]) -> dict:
    """The papers.yaml entry of the group's preset, or {} when it has none or when its number
    measures something else than the group's runs (a paper's perplexity beside runs of a CNN:
    the group was renamed after the nearest preset, but is another task)."""
    paper = papers.get(group.preset or "") or {}
    if METRIC_MEASURES.get(paper.get("metric", "test_error")) != group.measure:
        return {}
    return paper


def group_metric(group: Group, paper: dict) -> str:
    """The metric of a group's row: its paper's (`paper_row`), else by what its runs measure:
    test error for accuracies, test perplexity for language models."""
    return paper.get("metric") or DEFAULT_METRIC[group.measure]


def _best(runs: list[Run], metric: str) -> Run:
    """The run with the best value in `metric`: the highest accuracy, the lowest error or
    perplexity."""
    if metric in LOWER_IS_BETTER:
        return min(runs, key=lambda r: _as_metric(r.value, metric))
    return max(runs, key=lambda r: _as_metric(r.value, metric))


PROTOCOLS = {
    "best_of_searches": "best of the searches",
    "retrain_seeds": "retrainings of one cell",
    "best_of_short_retrainings": "best of short retrainings",
    "mean_over_runs": "mean over runs",
    "published_cell": "the published cell",
    "unstated": "not stated",
}


def _retrains_a_fixed_cell(group: Group, presets: dict[str, dict[str, Any]]) -> bool:
    genotype = group.runs[0].params.get("train.genotype", "searched")
    preset = presets.get(group.preset or "", {})
    return genotype != preset.get("train.genotype", "searched")


def _best_short(runs: list[Run], metric: str) -> tuple[Run, str]:
    """DARTS's pick among short retrainings, as its code scores them, and how it was picked:
    a language model's lowest validation perplexity (rnn/train.py keeps the best validation
    loss; metrics/train.json `valid_ppl`), else the best test value (cnn/train.py scores its
    retrainings on CIFAR-10's test set, which it calls valid)."""
    if runs[0].measure == "perplexity" and all(r.retrain_valid_ppl is not None for r in runs):
        return min(runs, key=lambda r: r.retrain_valid_ppl), "by valid perplexity"
    return _best(runs, metric), "by test value"


def _best_search(group: Group) -> Run | None:
    scored = [r for r in group.runs if r.search_score is not None]
    return max(scored, key=lambda r: r.search_score) if scored else None


def by_protocol(
    group: Group, groups: list[Group], protocol: str, metric: str, presets: dict
) -> tuple[float | None, float | None, str]:
    """(value, std or None, what it is) of `group` by the paper's protocol."""
    values = [_as_metric(r.value, metric) for r in group.runs]
    if _retrains_a_fixed_cell(group, presets):
        mean, std = mean_std(values)
        return mean, std, f"{len(values)} retrainings of one cell"
    if protocol == "best_of_short_retrainings":
        return _by_short_retrainings(group, groups, metric)
    if protocol in ("best_of_searches", "retrain_seeds"):
        if protocol == "retrain_seeds":
            other = _sibling(group, groups, "train.genotype")
            if other is not None:
                mean, std = mean_std([_as_metric(r.value, metric) for r in other.runs])
                return mean, std, f"{len(other.runs)} retrainings: {other.label}"
        best = _best_search(group)
        if best is None:
            what = "perplexity" if group.measure == "perplexity" else "accuracy"
            return None, None, f"no search-valid {what} (metrics/search.json)"
        note = f"best search: {best.name}"
        if protocol == "retrain_seeds":
            note += "; retrain its cell over seeds with -S train.genotype=FILE"
        return _as_metric(best.value, metric), None, note
    mean, std = mean_std(values)
    return mean, std, "mean over runs"


def _sibling(group: Group, groups: list[Group], key: str, shorter: bool | None = None):
    """The group of the same preset whose params differ from `group`'s only in `key`; with
    `shorter`, only one whose `key` (train.epochs) is smaller (True) or larger (False)."""
    a = _identity(group.runs[0].params)
    for other in groups:
        if other is group or other.preset != group.preset:
            continue
        b = _identity(other.runs[0].params)
        if _diff(a, b) != [key]:
            continue
        if shorter is None or (b[key] < a[key]) == shorter:
            return other
    return None


def _by_short_retrainings(group: Group, groups: list[Group], metric: str):
    """DARTS's protocol (module docstring): (value, std, note) of a full-length sweep, of its
    short retrainings' group, or a note of what is missing."""
    cell = _sibling(group, groups, "train.genotype")
    if cell is not None:  # the selected cell's full retrainings over seeds
        mean, std = mean_std([_as_metric(r.value, metric) for r in cell.runs])
        return mean, std, f"{len(cell.runs)} retrainings: {cell.label}"
    if _sibling(group, groups, "train.epochs", shorter=False) is not None:
        best, how = _best_short(group.runs, metric)  # this group holds the selection runs
        return _as_metric(best.value, metric), None, f"short retrainings: best {best.name} {how}"
    short = _sibling(group, groups, "train.epochs", shorter=True)
    if short is None:
        epochs = 300 if group.measure == "perplexity" else 100  # DARTS: PTB 300, CIFAR-10 100
        return None, None, f"no short retrainings: sweep the seeds with -S train.epochs={epochs}"
    best, how = _best_short(short.runs, metric)
    seed = best.params.get("common.seed")
    full = [r for r in group.runs if r.params.get("common.seed") == seed]
    note = f"best short retraining {how}: {best.name} (seed {seed})"
    if not full:
        return None, None, f"{note}; retrain its cell in full over seeds"
    return _as_metric(full[0].value, metric), None, f"{note}, its full run {full[0].name}"


def build_rows(
    groups: list[Group], papers: dict[str, dict], presets: dict[str, dict[str, Any]] | None = None
) -> list[dict]:
    presets = presets or {}
    rows = []
    for g in groups:
        paper = paper_row(g, papers)
        metric = group_metric(g, paper)
        protocol = paper.get("protocol", "unstated")
        mean, std = mean_std([_as_metric(r.value, metric) for r in g.runs])
        value, value_std, note = by_protocol(g, groups, protocol, metric, presets)
        paper_value = paper.get("value")
        diff = None
        if paper_value is not None and value is not None:
            diff = value - float(paper_value)
        rows.append(
            {
                "group": g.label,
                "metric": METRIC_NAMES.get(metric, metric),
                "n": len(g.runs),
                "seeds": sorted(s for s in g.seeds if s is not None),
                "mean": mean,
                "std": std,
                "protocol": PROTOCOLS.get(protocol, protocol) if paper else "",
                "protocol_value": value,
                "protocol_std": value_std,
                "protocol_note": note,
                "paper": paper_value,
                "paper_std": paper.get("std"),
                "difference": diff,
                "source": paper.get("row", ""),
                "runs": [r.name for r in g.runs],
            }
        )
    return rows


def _pm(value: float | None, std: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f} ± {std:.2f}" if std is not None else f"{value:.2f}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| experiments | metric | runs (seeds) | mean ± std over runs | paper's protocol"
        " | by the paper's protocol | paper | protocol − paper | paper row |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper_std = None if r["paper_std"] is None else float(r["paper_std"])
        paper = _pm(None if r["paper"] is None else float(r["paper"]), paper_std)
        diff = "" if r["difference"] is None else f"{r['difference']:+.2f}"
        seeds = f"{r['n']} ({', '.join(map(str, r['seeds']))})"
        by_paper = _pm(r["protocol_value"], r["protocol_std"])
        if r["protocol_note"]:
            by_paper = f"{by_paper} ({r['protocol_note']})".strip()
        cells = [r["group"], r["metric"], seeds, _pm(r["mean"], r["std"]), r["protocol"],
                 by_paper, paper, diff, r["source"]]  # fmt: skip
        lines.append("| " + " | ".join(map(cell, cells)) + " |")
    return "\n".join(lines) + "\n"


LABEL_WIDTH = 38  # characters per line of a label in the figure
LABEL_LINES = 3
LABEL_SETTINGS = 3  # key=value settings shown before "+N more"


def figure_label(row: dict) -> str:
    """A group's label for the figure: at most LABEL_SETTINGS of its settings, wrapped to
    LABEL_WIDTH characters on at most LABEL_LINES lines, then the metric."""
    label = row["group"]
    head, sep, rest = label.partition(" (")
    settings = (rest[:-1] if sep and rest.endswith(")") else "").split(", ") if sep else []
    if not sep and "=" in label:  # a group named by its settings alone
        head, settings = "", label.split(", ")
    if len(settings) > LABEL_SETTINGS:
        settings = [*settings[:LABEL_SETTINGS], f"+{len(settings) - LABEL_SETTINGS} more"]
    text = f"{head} ({', '.join(settings)})" if head and settings else head or ", ".join(settings)
    lines = textwrap.wrap(text, LABEL_WIDTH, break_on_hyphens=False) or [text]
    if len(lines) > LABEL_LINES:
        lines = [*lines[: LABEL_LINES - 1], lines[LABEL_LINES - 1][: LABEL_WIDTH - 1] + "…"]
    return "\n".join([*lines, f"[{row['metric']}]"])


def figure(rows: list[dict]):
    """The report's figure: per group the mean ± std over runs, the value by the paper's
    protocol and the paper's number; one panel per metric (test error beside perplexity on
    one axis would flatten both), in the order the rows first name them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[dict]] = {}
    for r in rows:
        panels.setdefault(r["metric"], []).append(r)
    labels = {m: [figure_label(r) for r in group] for m, group in panels.items()}
    heights = [sum(0.22 * (t.count("\n") + 1) + 0.25 for t in ts) + 0.6 for ts in labels.values()]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(9, sum(heights) + 0.8), squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    for ax, (metric, group) in zip(axes[:, 0], panels.items()):
        _panel(ax, group, labels[metric], metric)
    legend: dict[str, Any] = {}  # every marker once, whichever panel has it
    for ax in axes[:, 0]:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(text, handle)
    axes[0, 0].legend(list(legend.values()), list(legend), fontsize=8, loc="best")
    axes[0, 0].set_title("Reproduction: measured against the papers")
    fig.tight_layout()
    return fig


def _panel(ax, rows: list[dict], labels: list[str], metric: str) -> None:
    """One metric's rows on `ax` (see `figure`)."""
    ys = list(range(len(rows)))
    ax.errorbar([r["mean"] for r in rows], ys, xerr=[r["std"] or 0.0 for r in rows], fmt="o",
                capsize=4, label="mean ± std over runs")  # fmt: skip
    by_paper = [(r["protocol_value"], y) for r, y in zip(rows, ys)]
    by_paper = [(v, y) for v, y in by_paper if v is not None]
    if by_paper:
        ax.scatter([v for v, _ in by_paper], [y + 0.15 for _, y in by_paper], marker="s",
                   c="green", label="by the paper's protocol", zorder=3)  # fmt: skip
    paper = [(r["paper"], y) for r, y in zip(rows, ys) if r["paper"] is not None]
    if paper:
        ax.scatter([float(p) for p, _ in paper], [y for _, y in paper], marker="x", c="red",
                   label="paper", zorder=3)  # fmt: skip
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(metric, fontsize=8)


def plot(rows: list[dict], path: Path, dpi: int = 110) -> None:
    import matplotlib.pyplot as plt

    fig = figure(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def dvc_json(cmd: list[str], empty: str = "[]"):
    """Run a `dvc ... --json` command; its parsed output, or a `UserError` saying what failed."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UserError("dvc not found: install the project (`pip install -e .`)") from None
    if done.returncode != 0:
        raise UserError(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return json.loads(done.stdout or empty)


def exp_show_json(all_commits: bool = False) -> list:
    """`dvc exp show --json`: the experiments of HEAD, or with `all_commits` of every commit."""
    return dvc_json(["dvc", "exp", "show", "--json"] + (["--all-commits"] if all_commits else []))


def report(rows_json: list, preset_dir: Path, out_md: Path | None, out_png: Path | None) -> str:
    """Build the report from `dvc exp show --json` output; write the files; return markdown."""
    runs = parse_exp_show(rows_json, own_results=git_lock_agrees, advanced=git_advanced)
    if not runs:
        raise UserError(
            "no experiment with results: run some first (`dvc exp run`), see the README section"
            " 'Reproducing the papers'"
        )
    presets = load_presets(preset_dir)
    groups = group_runs(runs, presets)
    papers = load_papers(preset_dir)
    rows = build_rows(groups, papers, presets)
    text = markdown(rows) + baseline_markdown(compare_with_random(groups, papers))
    if out_md is not None:
        out_md.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_md) as tmp:
            Path(tmp).write_text(text)
    if out_png is not None:
        plot(rows, out_png)
    return text


# Student's t 0.975 quantiles by degrees of freedom (a two-sided 95% interval); a fractional
# Welch df is rounded down (a wider interval), and df above 30 uses the next tabulated one below.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
        17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
        25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000,
        120: 1.980}  # fmt: skip

RANDOM_KINDS = {"search.algorithm": "random search", "train.genotype": "random cell"}


def t975(df: float) -> float:
    """Student's t 0.975 quantile for `df` degrees of freedom (rounded down; >= 1)."""
    whole = max(1, math.floor(df + 1e-9))
    if whole > 120:
        return 1.960
    return T975[max(k for k in T975 if k <= whole)]


def _baseline_search(name: Any) -> bool:
    """Whether `search.algorithm` names a baseline (random search), by dnas.algorithms."""
    spec = ALGORITHMS.get(name) if isinstance(name, str) else None
    return spec is not None and spec.baseline


def _baseline_knobs() -> set[str]:
    """The baselines' own knobs: they do nothing in a searched group."""
    return {f"search.{k}" for spec in ALGORITHMS.values() if spec.baseline for k in spec.knobs}


def _is_random(key: str, value: Any) -> bool:
    """Whether `key: value` makes a group a random baseline (RANDOM_KINDS)."""
    if key == "search.algorithm":
        return _baseline_search(value)
    return value == "random"  # train.genotype: a random cell of the space


def _searches_its_own_cell(ident: dict[str, Any]) -> bool:
    """Whether a group retrains the cell its own (not random) search found."""
    searched = ident.get("train.genotype", "searched") == "searched"
    return searched and not _baseline_search(ident.get("search.algorithm", "gdas"))


def difference_stats(searched: list[Run], random: list[Run], metric: str) -> dict:
    """searched - random in `metric` with its uncertainty (module doc): paired over the seeds
    both ran when there are two or more, else Welch's unpaired, else the difference alone."""
    value = lambda r: _as_metric(r.value, metric)  # noqa: E731
    by_seed_s = {r.params.get("common.seed"): r for r in searched}
    by_seed_r = {r.params.get("common.seed"): r for r in random}
    common = sorted(k for k in by_seed_s if k in by_seed_r and k is not None)
    mean_s, std_s = mean_std([value(r) for r in searched])
    mean_r, std_r = mean_std([value(r) for r in random])
    out = {"searched": mean_s, "random": mean_r, "n_searched": len(searched),
           "n_random": len(random), "seeds": common}  # fmt: skip
    if len(common) >= 2:
        diffs = [value(by_seed_s[k]) - value(by_seed_r[k]) for k in common]
        mean, sd = mean_std(diffs)
        se = sd / math.sqrt(len(diffs))
        df = len(diffs) - 1
        out.update(test="paired", diff=mean, se=se, df=df)
        # the means over the paired seeds, so that searched - random is their difference
        out["searched"] = mean_std([value(by_seed_s[k]) for k in common])[0]
        out["random"] = mean_std([value(by_seed_r[k]) for k in common])[0]
    elif std_s is not None and std_r is not None:
        vs, vr = std_s**2 / len(searched), std_r**2 / len(random)
        se = math.sqrt(vs + vr)
        if se > 0:
            df = (vs + vr) ** 2 / (vs**2 / (len(searched) - 1) + vr**2 / (len(random) - 1))
        else:
            df = len(searched) + len(random) - 2
        out.update(test="welch", diff=mean_s - mean_r, se=se, df=df)
    else:
        out.update(test="none", diff=mean_s - mean_r, se=None, df=None)
    if out["se"] is not None:
        half = t975(out["df"]) * out["se"]
        out["ci"] = (out["diff"] - half, out["diff"] + half)
    else:
        out["ci"] = None
    # The searched side: higher accuracy, lower error or perplexity.
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    gain = sign * out["diff"]
    if out["ci"] is not None and min(sign * out["ci"][0], sign * out["ci"][1]) > 0:
        out["verdict"] = "the search beat random (the 95% interval excludes 0)"
    elif gain <= 0:
        out["verdict"] = "the search did NOT beat random (random was as good or better)"
    elif out["ci"] is None:
        out["verdict"] = (
            "the search did NOT beat random beyond doubt (one run each: no uncertainty;"
            " sweep the seeds)"
        )
    else:
        out["verdict"] = (
            "the search did NOT beat random beyond the uncertainty (the interval holds 0)"
        )
    return out


def compare_with_random(groups: list[Group], papers: dict[str, dict]) -> list[dict]:
    """Each searched group beside each of its random groups (module doc), one row per pair."""
    rows = []
    idents = [_identity(g.runs[0].params) for g in groups]
    baseline_knobs = _baseline_knobs()
    for g, a in zip(groups, idents):
        if not _searches_its_own_cell(a):
            continue
        metric = group_metric(g, paper_row(g, papers))
        for other, b in zip(groups, idents):
            # random search's own knobs (search.random_*) do nothing in the searched group
            keys = [k for k in _diff(a, b) if k not in baseline_knobs]
            if keys == ["train.genotype"] and len(keys) != len(_diff(a, b)):
                continue  # a random cell retrains the same search: all else must be equal
            if other is g or len(keys) != 1 or keys[0] not in RANDOM_KINDS:
                continue
            if not _is_random(keys[0], b.get(keys[0])):
                continue
            stats = difference_stats(g.runs, other.runs, metric)
            rows.append({"searched_group": g.label, "random_group": other.label,
                         "kind": RANDOM_KINDS[keys[0]], "metric": metric, **stats})  # fmt: skip
    return rows


def baseline_markdown(rows: list[dict]) -> str:
    """The searched-vs-random section of the report ("" without a pair)."""
    if not rows:
        return ""
    lines = [
        "",
        "## Searched vs random at equal budget",
        "",
        "| searched | random | baseline | metric | comparison | searched | random"
        " | searched − random ± s.e. | 95% interval | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["test"] == "paired":
            how = f"paired over seeds {', '.join(map(str, r['seeds']))}"
        elif r["test"] == "welch":
            how = f"unpaired (Welch), {r['n_searched']} vs {r['n_random']} runs"
        else:
            how = f"{r['n_searched']} vs {r['n_random']} runs, no uncertainty"
        diff = f"{r['diff']:+.2f}" + (f" ± {r['se']:.2f}" if r["se"] is not None else "")
        ci = "" if r["ci"] is None else f"[{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]"
        lines.append(
            f"| {r['searched_group']} | {r['random_group']} | {r['kind']} |"
            f" {METRIC_NAMES.get(r['metric'], r['metric'])} | {how} | {r['searched']:.2f} |"
            f" {r['random']:.2f} | {diff} | {ci} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"
