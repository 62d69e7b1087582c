"""`dnas genotype table`: the genotypes that the experiments of the current commit found,
side by side, with the numbers that tell them apart (README "Experiments").

Experiments come from `dvc exp show --json` (HEAD and its experiments, the workspace too);
each one's genotype.json is read from its git commit, so nothing is checked out."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from dnas.errors import UserError
from dnas.io import md_cell as cell
from dnas.spaces.genotype import Genotype


@dataclass
class Row:
    name: str
    rev: str
    genotype: Genotype | None
    metrics: dict[str, float]


def _metric(data: dict, path: str, key: str) -> float | None:
    node = data.get(path, {})
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, (int, float)) else None


def _files(entry: dict, what: str) -> dict:
    files = (entry.get("data") or {}).get(what) or {}
    return {path: f.get("data") or {} for path, f in files.items() if "data" in f}


def _genotype_at(rev: str) -> Genotype | None:
    """genotype.json as committed at `rev` (the workspace's file for 'workspace')."""
    if rev == "workspace":
        try:
            text = open("genotype.json").read()
        except OSError:
            return None
    else:
        done = subprocess.run(
            ["git", "show", f"{rev}:genotype.json"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            return None
        text = done.stdout
    try:
        return Genotype.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None


def rows_from_exp_show(rows: list) -> list[Row]:
    """One row per revision of `dvc exp show --json` (failed experiments left out)."""
    if not isinstance(rows, list):
        raise UserError("dvc exp show --json: expected a list of revisions")
    out: list[Row] = []
    seen: set[str] = set()

    def add(entry: dict, name: str | None) -> None:
        rev = entry.get("rev")
        if rev is None or entry.get("error") or rev in seen:
            return
        seen.add(rev)
        metrics = _files(entry, "metrics")
        values = {
            "search valid %": _metric(metrics, "metrics/search.json", "valid_acc"),
            "entropy": _metric(metrics, "metrics/search.json", "arch_entropy"),
            "params (C=36, 20 cells)": _metric(metrics, "metrics/search.json", "genotype_params"),
            "test top-1 %": _metric(metrics, "metrics/eval.json", "test.top1"),
        }
        label = name or entry.get("name") or rev[:7]
        out.append(Row(label, rev, _genotype_at(rev), values))

    for row in rows:
        add(row, "workspace" if row.get("rev") == "workspace" else row.get("name"))
        for exp in row.get("experiments") or []:
            for rev in exp.get("revs") or []:
                add(rev, exp.get("name") or rev.get("name"))
    return out


def markdown(rows: list[Row]) -> str:
    columns = [c for c in (rows[0].metrics if rows else {}) if any(r.metrics[c] for r in rows)]
    cells = sorted({c for r in rows if r.genotype for c in r.genotype.cells})
    head = ["experiment", *cells, *columns]
    lines = ["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head)]
    for r in rows:
        brief = r.genotype.brief() if r.genotype else {}
        values = [_fmt(r.metrics[c]) for c in columns]
        row = [r.name, *(brief.get(c, "") for c in cells), *values]
        lines.append("| " + " | ".join(map(cell, row)) + " |")
    return "\n".join(lines) + "\n"



def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.4g}" if isinstance(value, float) else f"{value:,}"
