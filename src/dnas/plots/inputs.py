"""Reading what the other stages wrote: the genotype, the op probabilities, dvclive TSVs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from dnas.errors import UserError
from dnas.spaces.genotype import load_genotype

PANEL_ORDER = ["loss", "ppl", "acc", "arch", "tau", "lr"]
SERIES_ORDER = ["train", "valid", "test"]


def load_genotype_json(path: Path) -> dict[str, Any]:
    """The genotype as JSON, validated by the library's loader (UserError if missing/bad)."""
    return load_genotype(path).to_json()


def load_arch_probs(path: Path, geno: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows {epoch, cell, edge, op, prob}; without a history, the final probs of the genotype."""
    if path.is_file():
        try:
            rows = json.loads(path.read_text())
            return [
                {
                    "epoch": int(r["epoch"]),
                    "cell": str(r["cell"]),
                    "edge": str(r["edge"]),
                    "op": str(r["op"]),
                    "prob": float(r["prob"]),
                }
                for r in rows
            ]
        except (
            OSError,
            UnicodeDecodeError,
            json.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
        ) as exc:
            raise UserError(
                f"{path} is not a list of {{epoch, cell, edge, op, prob}} rows ({exc}); "
                "rerun `dvc repro search`"
            ) from None
    rows = []
    for cell, edges in (geno.get("probs") or {}).items():
        for edge, ops in edges.items():
            for op, prob in ops.items():
                rows.append({"epoch": 0, "cell": cell, "edge": edge, "op": op, "prob": prob})
    return rows


def read_series(path: Path) -> pd.Series:
    """A dvclive metric TSV (`step` and a value column) as a Series indexed by step."""
    try:
        df = pd.read_csv(path, sep="\t")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{path} is not a dvclive metric TSV ({exc})") from None
    value_cols = [c for c in df.columns if c not in ("step", "timestamp")]
    if "step" not in df.columns or not value_cols:
        raise UserError(f"{path} is not a dvclive metric TSV (expected a `step` column)")
    col = path.stem if path.stem in value_cols else value_cols[-1]
    steps = pd.to_numeric(df["step"], errors="coerce")
    values = pd.to_numeric(df[col], errors="coerce")
    s = pd.Series(values.to_numpy(), index=steps.to_numpy(), name=col).dropna()
    s = s[~s.index.isna()]
    # A resumed run appends the steps it redoes: keep the last value logged for each step.
    s = s[~s.index.duplicated(keep="last")].sort_index()
    return s


def metric_panels(run_dir: Path) -> list[tuple[str, list[tuple[str, pd.Series]]]]:
    """Group the metric TSVs of a dvclive dir: one panel per folder (loss/, acc/) or file."""
    root = run_dir / "plots" / "metrics"
    groups: dict[str, list[tuple[str, pd.Series]]] = {}
    if root.is_dir():
        for path in sorted(root.rglob("*.tsv")):
            rel = path.relative_to(root).with_suffix("")
            panel = "/".join(rel.parts[:-1]) if len(rel.parts) > 1 else rel.parts[0]
            series = read_series(path)
            if len(series):
                groups.setdefault(panel, []).append((rel.parts[-1], series))

    def panel_key(name: str) -> tuple[int, str]:
        return (PANEL_ORDER.index(name) if name in PANEL_ORDER else len(PANEL_ORDER), name)

    def series_key(item: tuple[str, pd.Series]) -> tuple[int, str]:
        name = item[0]
        return (SERIES_ORDER.index(name) if name in SERIES_ORDER else len(SERIES_ORDER), name)

    return [(p, sorted(groups[p], key=series_key)) for p in sorted(groups, key=panel_key)]
