"""Genotypes: the discrete architecture a search produces, and its JSON form.

A genotype names its space and holds that space's cells (`CellSpec`, dnas.spaces.cell: a cell
has `inputs` input nodes (0 .. inputs-1); `nodes[i]` is node `inputs + i` and lists its
incoming edges as (op, input node). The cell output concatenates (DARTS) or is (NB201) the
nodes in `concat`). What a well-formed genotype of a space is, the space says
(dnas.spaces.registry, dnas.spaces.space.Space). A DARTS genotype with only a "normal" cell
uses GDAS-FRC's fixed reduction cell (docs/algorithms.md#gdas-frc-fixed-reduction-cell;
`reduce=None` in the CVPR genotype file).
`genotype.json` holds the space, the op set, the cells, the final op probabilities per edge, and for
NAS-Bench-201 the standard architecture string. A recurrent genotype (space `rnn`,
docs/algorithms.md#darts-recurrent-space) has one cell "rnn" with one input node (s0), 8 nodes of
one (op, predecessor) each, and concat 1..8 (the cell output is their mean).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnas.errors import UserError, first_line
from dnas.io import write_json
from dnas.spaces.cell import CellSpec, Edge, short_repr
from dnas.spaces.nb201 import to_string as nb201_string
from dnas.spaces.registry import SPACES, find_space, get_space

# Per space, from the registry: the op set, the cells, and (input nodes, intermediate nodes) of
# a cell, for which the networks are built (tests/test_hostile_params.py checks the shapes
# against the modules).
SPACE_OPS = {name: s.ops for name, s in SPACES.items()}
SPACE_CELLS = {name: s.cells for name, s in SPACES.items()}
SPACE_SHAPE = {name: (s.inputs, s.nodes) for name, s in SPACES.items()}
MAX_INPUTS = max(i for i, _ in SPACE_SHAPE.values())
MAX_NODES = max(n for _, n in SPACE_SHAPE.values())
MAX_EDGES = 64  # probs: edges per cell (DARTS 14, NB201 6, recurrent 36)
MAX_OPS = 16  # probs: ops per edge (DARTS 8, NB201 5, recurrent 5)
# genotype.json is a few kilobytes; a file of megabytes is not one (and would be slow to read).
MAX_GENOTYPE_BYTES = 1024 * 1024

__all__ = ["CellSpec", "Edge", "Genotype", "load_genotype", "nb201_string", "save_genotype"]


@dataclass(frozen=True)
class Genotype:
    space: str
    cells: dict[str, CellSpec]
    probs: dict = field(default_factory=dict, compare=False)
    arch: str | None = None

    @property
    def ops(self) -> tuple[str, ...]:
        return get_space(self.space).ops

    def to_json(self) -> dict:
        return {
            "space": self.space,
            "ops": list(self.ops),
            "cells": {name: cell.to_json() for name, cell in self.cells.items()},
            "probs": self.probs,
            "arch": self.arch,
        }

    @classmethod
    def from_json(cls, d: Any) -> Genotype:
        """A genotype from its JSON form, validated (`validate`); ValueError naming what is
        wrong. An NB201 genotype's `arch` must be its cell's string (it is what the benchmark
        lookup reads); without one, it is written from the cell."""
        if not isinstance(d, dict):
            raise ValueError(f"expected an object with space and cells, got {type(d).__name__}")
        for key in ("space", "cells"):
            if key not in d:
                raise ValueError(f"no {key!r} entry")
        space, cells = d["space"], d["cells"]
        sp = find_space(space)
        if sp is None:
            raise ValueError(f"unknown space {_short(space)}; known: {', '.join(SPACES)}")
        if not isinstance(cells, dict) or not 1 <= len(cells) <= len(sp.cells):
            raise ValueError(f"cells: expected an object of the cells {list(sp.cells)}")
        probs = d.get("probs") or {}
        _check_probs(probs)
        arch = d.get("arch")
        if arch is not None and not isinstance(arch, str):
            raise ValueError(f"arch: expected a string or null, got {type(arch).__name__}")
        g = cls(
            space=space,
            cells={
                name: CellSpec.from_json(c, name, MAX_INPUTS, MAX_NODES)
                for name, c in cells.items()
            },
            probs=probs,
            arch=arch,
        )
        g.validate()
        written = sp.arch(g.cells)
        if written is not None:
            if arch is not None and arch.strip() != written:
                raise ValueError(f"arch {_short(arch)} is not the cell's string {written!r}")
            g = cls(space=space, cells=g.cells, probs=probs, arch=written)
        return g

    def prob_stats(self) -> dict[str, float]:
        """How far the search has moved from uniform, from `probs` (empty without them):
        `entropy`, the mean over edges of each edge's op entropy divided by log(#ops) (1 =
        uniform, 0 = one op certain); `top_prob`, the mean over edges of the largest op
        probability (1/#ops when uniform)."""
        rows = [list(ops.values()) for edges in self.probs.values() for ops in edges.values()]
        if not rows:
            return {}
        entropy = [-sum(p * math.log(p) for p in row if p > 0) / math.log(len(row)) for row in rows]
        return {
            "entropy": sum(entropy) / len(rows),
            "top_prob": sum(max(row) for row in rows) / len(rows),
        }

    def brief(self) -> dict[str, str]:
        """Each cell in one line: nodes separated by ' | ', edges as op(input)."""
        return {
            name: " | ".join(" ".join(f"{op}({j})" for op, j in node) for node in cell.nodes)
            for name, cell in self.cells.items()
        }

    def validate(self) -> None:
        """Raise ValueError if the genotype is not a well-formed architecture of its space
        (its cells, or without the fixed cell (DARTS: GDAS-FRC's fixed reduction cell), each
        as `Space.check_cell` reads it)."""
        space = get_space(self.space)
        space.check_cells(set(self.cells))
        for name, cell in self.cells.items():
            space.check_cell(name, cell)


_short = short_repr


def _check_probs(probs: Any) -> None:
    """`probs`: cell -> edge -> op -> probability (a number in [0, 1])."""
    if not isinstance(probs, dict):
        raise ValueError(f"probs: expected an object, got {type(probs).__name__}")
    for cell, edges in probs.items():
        if not isinstance(edges, dict) or len(edges) > MAX_EDGES:
            raise ValueError(f"probs.{cell}: expected an object of at most {MAX_EDGES} edges")
        for edge, row in edges.items():
            if not isinstance(row, dict) or len(row) > MAX_OPS:
                raise ValueError(f"probs.{cell}.{edge}: expected an object of op probabilities")
            for op, p in row.items():
                ok = isinstance(p, (int, float)) and not isinstance(p, bool)
                if not ok or not 0 <= p <= 1:
                    raise ValueError(f"probs.{cell}.{edge}.{op}: {_short(p)} is not a probability")


def save_genotype(path: str | Path, genotype: Genotype) -> None:
    write_json(path, genotype.to_json())


def load_genotype(path: str | Path, fix: str = "rerun the search stage") -> Genotype:
    """Read and validate a genotype file; a missing or malformed one is a `UserError` that
    ends with `fix` (for a file of the user's own: to correct it, not to search again)."""
    path = Path(path)
    try:
        found = path.is_file()
    except (OSError, ValueError):  # a name too long to look up
        found = False
    if not found:
        shown = str(path) if len(str(path)) <= 300 else str(path)[:297] + "..."
        raise UserError(f"{shown}: genotype file not found; run the search stage (`dvc repro`)")
    size = path.stat().st_size
    if size > MAX_GENOTYPE_BYTES:
        raise UserError(
            f"{path}: {size} bytes, far larger than a genotype file (at most "
            f"{MAX_GENOTYPE_BYTES}); {fix}"
        )
    try:
        return Genotype.from_json(json.loads(path.read_text(encoding="utf-8")))
    except RecursionError:
        raise UserError(f"{path}: not a valid genotype (nested too deeply); {fix}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # ValueError includes JSONDecodeError and UnicodeDecodeError
        reason = first_line(exc)
        raise UserError(f"{path}: not a valid genotype ({reason}); {fix}") from None
