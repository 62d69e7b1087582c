"""What "the same results" means, on the same machine and on another one.

Same seed, same machine: byte-identical outputs (genotype.json, metrics, dvclive, dvc.lock).
Another CPU model computes floats with other SIMD kernels and summation orders, so a search
can end in other cells there; what must hold is agreement with the committed reference within
the tolerances below, which the embedded default meets across seeds (measured, docs/pipeline.md
"Same results"). `.ci/same_results.py` applies both checks; the tests check the checks.

The reference's own consistency is checked exactly: the committed genotype.json must give the
committed `genotype_params` (a parameter count: integer arithmetic, the same on every CPU), so
a hand-edited or stale genotype fails whatever the tolerances.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# (file, dotted key) -> (kind, tolerance): "abs" in the metric's unit, "rel" as a fraction.
# The default (digits, GDAS) over seeds 0-4 spans: search-valid 86.6-88.6 %, genotype_params
# 1.64-2.72M, entropy 0.22-0.32, top probability 0.81-0.90, test top-1 98.9-99.4 %, retrained
# parameters 121-179k (docs/pipeline.md "Same results"). Each bound covers that whole span from
# wherever in it the committed run lies.
TOLERANCES: dict[tuple[str, str], tuple[str, float]] = {
    ("metrics/search.json", "valid_acc"): ("abs", 15.0),
    ("metrics/search.json", "genotype_params"): ("rel", 0.3),
    ("metrics/search.json", "arch_entropy"): ("abs", 0.15),
    ("metrics/search.json", "arch_top_prob"): ("abs", 0.15),
    ("metrics/eval.json", "test.top1"): ("abs", 3.0),
    ("metrics/eval.json", "params"): ("rel", 0.45),
}

# What a rerun on the same machine must reproduce byte for byte.
RESULT_FILES = ("dvc.lock", "genotype.json", "metrics", "dvclive")


@dataclass(frozen=True)
class Finding:
    what: str
    committed: float | str
    measured: float | str
    allowed: str

    def __str__(self) -> str:
        return f"{self.what}: committed {self.committed}, measured {self.measured} ({self.allowed})"


def lookup(data: dict, dotted: str):
    for part in dotted.split("."):
        data = data[part]
    return data


def within_tolerance(committed: dict[str, dict], measured: dict[str, dict]) -> list[Finding]:
    """The metrics (file -> parsed JSON) of a fresh run that differ from the committed ones by
    more than TOLERANCES allow; missing values count as differences."""
    out = []
    for (path, key), (kind, tol) in TOLERANCES.items():
        what = f"{path}:{key}"
        try:
            old = float(lookup(committed[path], key))
        except (KeyError, TypeError):
            continue  # not in the reference (another space or track): nothing to compare
        try:
            new = float(lookup(measured[path], key))
        except (KeyError, TypeError):
            out.append(Finding(what, old, "missing", "must be present"))
            continue
        limit = tol if kind == "abs" else tol * abs(old)
        if abs(new - old) > limit:
            allowed = f"±{tol:g}" if kind == "abs" else f"±{tol:.0%}"
            out.append(Finding(what, old, new, allowed))
    return out


def genotype_consistent(genotype: dict, search_metrics: dict, data) -> list[Finding]:
    """The committed genotype.json must be the one the committed metrics describe: its network
    at the papers' size has exactly `genotype_params` parameters."""
    from dnas.evaluate import genotype_params
    from dnas.spaces.genotype import Genotype
    from dnas.spaces.registry import find_space

    space = find_space(genotype.get("space"))
    if space is None or space.text or "genotype_params" not in search_metrics:
        return []
    counted = genotype_params(Genotype.from_json(genotype), data)
    if counted != search_metrics["genotype_params"]:
        return [
            Finding(
                "genotype.json",
                search_metrics["genotype_params"],
                counted,
                "parameters of its network must equal metrics/search.json:genotype_params exactly",
            )
        ]
    return []


def result_bytes(root: Path) -> dict[str, bytes]:
    """Every result file under `root` (RESULT_FILES, directories walked), path -> bytes."""
    out = {}
    for name in RESULT_FILES:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                out[str(f.relative_to(root))] = f.read_bytes()
    return out


def load_metrics(read) -> dict[str, dict]:
    """The metrics files named in TOLERANCES, parsed; `read(path)` returns text or None."""
    out = {}
    for path in {p for p, _ in TOLERANCES}:
        text = read(path)
        if text is not None:
            out[path] = json.loads(text)
    return out
