"""The reproduction report: experiments from `dvc exp show --json`, grouped by preset, as
mean ± std over seeds against the papers' numbers (presets/papers.yaml).

An experiment's group is its params without `common` (seed, device, checkpointing), so the
runs of a seed sweep (`dvc exp run --queue -S 'common.seed=range(0,4)'`) form one group. A group
is named after the preset whose params it equals; one that differs from its nearest preset in
a few keys is named `preset (key=value, ...)`, and any other by the keys that set it apart
from the other groups. The value of a run is `best_test_acc` from metrics/train.json when
`train.report` is `best`, else `test_acc`; a paper's number given as an error is compared with
100 - accuracy. The std is the sample standard deviation (n - 1); it needs two seeds.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dnas.errors import UserError
from dnas.io import atomic_path

PAPERS_FILE = "papers.yaml"
IGNORED_SECTIONS = ("common",)  # seed, device, checkpoint_every: not part of a result's identity
MAX_PRESET_DIFFS = 3


@dataclass
class Run:
    name: str
    rev: str
    params: dict[str, Any]  # flattened `section.key` -> value
    accuracy: float


@dataclass
class Group:
    key: tuple
    runs: list[Run] = field(default_factory=list)
    label: str = ""
    preset: str | None = None

    @property
    def seeds(self) -> list:
        return [r.params.get("common.seed") for r in self.runs]


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

    dataset = NB201_TEST_DATASET.get(str(params.get("train.dataset")))
    if params.get("search.space") != "nb201" or dataset is None:
        return None
    row = metrics.get("metrics/search.json", {}).get("benchmark") or {}
    value = (row.get(dataset) or {}).get("hp200", {}).get("test_acc")
    return None if value is None else float(value)


def run_value(params: dict[str, Any], metrics: dict[str, dict]) -> float | None:
    """The reported test accuracy (%) of one run, or None if it has none."""
    looked_up = benchmark_value(params, metrics)
    if looked_up is not None:  # NB201: the benchmark's number, whether retrained or not
        return looked_up
    train = metrics.get("metrics/train.json", {})
    if params.get("train.report") == "best" and "best_test_acc" in train:
        return float(train["best_test_acc"])
    if "test_acc" in train:
        return float(train["test_acc"])
    top1 = metrics.get("metrics/eval.json", {}).get("test", {}).get("top1")
    return None if top1 is None else float(top1)


def _data(entry: dict, what: str) -> dict:
    """The merged `data` of every file under entry['data'][what] (files with errors skipped)."""
    files = (entry.get("data") or {}).get(what) or {}
    return {path: f.get("data") or {} for path, f in files.items() if "data" in f}


def parse_exp_show(rows: list) -> list[Run]:
    """Runs with a result from `dvc exp show --json`: baselines and their experiments, the
    workspace and failed experiments left out, each revision once."""
    if not isinstance(rows, list):
        raise UserError("dvc exp show --json: expected a list of revisions")
    runs: dict[str, Run] = {}

    def add(entry: dict, name: str | None) -> None:
        rev = entry.get("rev")
        if rev in (None, "workspace") or entry.get("error") or rev in runs:
            return
        params_files = _data(entry, "params")
        params = flatten(params_files.get("params.yaml", {}))
        value = run_value(params, _data(entry, "metrics"))
        if value is not None:
            runs[rev] = Run(name or entry.get("name") or rev[:7], rev, params, value)

    for row in rows:
        add(row, row.get("name"))
        for exp in row.get("experiments") or []:
            for rev in exp.get("revs") or []:
                add(rev, exp.get("name") or rev.get("name"))
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
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None


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


def _as_metric(accuracy: float, metric: str) -> float:
    return 100.0 - accuracy if metric == "test_error" else accuracy


METRIC_NAMES = {"test_error": "test error %", "test_acc": "test acc. %"}


def build_rows(groups: list[Group], papers: dict[str, dict]) -> list[dict]:
    rows = []
    for g in groups:
        paper = papers.get(g.preset or "", {})
        metric = paper.get("metric", "test_error")
        mean, std = mean_std([_as_metric(r.accuracy, metric) for r in g.runs])
        paper_value = paper.get("value")
        rows.append(
            {
                "group": g.label,
                "metric": METRIC_NAMES.get(metric, metric),
                "n": len(g.runs),
                "seeds": sorted(s for s in g.seeds if s is not None),
                "mean": mean,
                "std": std,
                "paper": paper_value,
                "paper_std": paper.get("std"),
                "difference": None if paper_value is None else mean - float(paper_value),
                "source": paper.get("row", ""),
                "runs": [r.name for r in g.runs],
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| experiments | metric | seeds | measured (mean ± std) | paper | measured − paper"
        " | paper row |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        measured = (
            f"{r['mean']:.2f} ± {r['std']:.2f}" if r["std"] is not None else f"{r['mean']:.2f}"
        )
        paper = "" if r["paper"] is None else f"{float(r['paper']):.2f}"
        if paper and r["paper_std"] is not None:
            paper += f" ± {float(r['paper_std']):.2f}"
        diff = "" if r["difference"] is None else f"{r['difference']:+.2f}"
        seeds = f"{r['n']} ({', '.join(map(str, r['seeds']))})"
        lines.append(
            f"| {r['group']} | {r['metric']} | {seeds} | {measured} | {paper} | {diff} |"
            f" {r['source']} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, dpi: int = 110) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.5))
    ys = list(range(len(rows)))
    ax.errorbar(
        [r["mean"] for r in rows],
        ys,
        xerr=[r["std"] or 0.0 for r in rows],
        fmt="o",
        capsize=4,
        label="measured (mean ± std)",
    )
    paper = [(r["paper"], y) for r, y in zip(rows, ys) if r["paper"] is not None]
    if paper:
        ax.scatter([float(p) for p, _ in paper], [y for _, y in paper], marker="x", c="red",
                   label="paper", zorder=3)  # fmt: skip
    ax.set_yticks(ys, [f"{r['group']}\n[{r['metric']}]" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Reproduction: measured against the papers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": None})
    plt.close(fig)


def exp_show_json(all_commits: bool = True) -> list:
    cmd = ["dvc", "exp", "show", "--json"] + (["--all-commits"] if all_commits else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UserError("dvc not found: install the project (`pip install -e .`)") from None
    if done.returncode != 0:
        raise UserError(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return json.loads(done.stdout or "[]")


def report(rows_json: list, preset_dir: Path, out_md: Path | None, out_png: Path | None) -> str:
    """Build the report from `dvc exp show --json` output; write the files; return markdown."""
    runs = parse_exp_show(rows_json)
    if not runs:
        raise UserError(
            "no experiment with results: run some first (`dvc exp run`), see the README section"
            " 'Reproducing the papers'"
        )
    rows = build_rows(group_runs(runs, load_presets(preset_dir)), load_papers(preset_dir))
    text = markdown(rows)
    if out_md is not None:
        out_md.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_md) as tmp:
            Path(tmp).write_text(text)
    if out_png is not None:
        plot(rows, out_png)
    return text
