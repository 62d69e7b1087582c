"""Genotypes: the discrete architecture a search produces, and its JSON form.

A cell has `inputs` input nodes (0 .. inputs-1); `nodes[i]` is node `inputs + i` and lists its
incoming edges as (op, input node). The cell output concatenates (DARTS) or is (NB201) the
nodes in `concat`. A DARTS genotype with only a "normal" cell uses GDAS-FRC's fixed reduction
cell (docs/algorithms.md#gdas-frc-fixed-reduction-cell; `reduce=None` in the CVPR genotype file).
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

from dnas.errors import UserError
from dnas.io import write_json
from dnas.spaces.ops import DARTS_OPS, NB201_OPS, RNN_OPS

SPACE_OPS = {"darts": DARTS_OPS, "nb201": NB201_OPS, "rnn": RNN_OPS}
SPACE_CELLS = {"darts": ("normal", "reduce"), "nb201": ("cell",), "rnn": ("rnn",)}

Edge = tuple[str, int]


@dataclass(frozen=True)
class CellSpec:
    """A cell. A node's incoming edges are summed, so their order carries no meaning: they are
    kept sorted by (input node, op), and two equal architectures are equal objects and write
    byte-equal JSON (so DVC does not retrain an architecture it has already trained)."""

    inputs: int
    nodes: tuple[tuple[Edge, ...], ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        canonical = tuple(tuple(sorted(node, key=lambda e: (e[1], e[0]))) for node in self.nodes)
        object.__setattr__(self, "nodes", canonical)

    def to_json(self) -> dict:
        return {
            "inputs": self.inputs,
            "nodes": [[[op, j] for op, j in node] for node in self.nodes],
            "concat": list(self.concat),
        }

    @classmethod
    def from_json(cls, d: dict) -> CellSpec:
        nodes = tuple(tuple((str(op), int(j)) for op, j in node) for node in d["nodes"])
        return cls(inputs=int(d["inputs"]), nodes=nodes, concat=tuple(int(c) for c in d["concat"]))


@dataclass(frozen=True)
class Genotype:
    space: str
    cells: dict[str, CellSpec]
    probs: dict = field(default_factory=dict, compare=False)
    arch: str | None = None

    @property
    def ops(self) -> tuple[str, ...]:
        return SPACE_OPS[self.space]

    def to_json(self) -> dict:
        return {
            "space": self.space,
            "ops": list(self.ops),
            "cells": {name: cell.to_json() for name, cell in self.cells.items()},
            "probs": self.probs,
            "arch": self.arch,
        }

    @classmethod
    def from_json(cls, d: dict) -> Genotype:
        g = cls(
            space=d["space"],
            cells={name: CellSpec.from_json(c) for name, c in d["cells"].items()},
            probs=d.get("probs") or {},
            arch=d.get("arch"),
        )
        g.validate()
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
        """Raise ValueError if the genotype is not a well-formed architecture of its space."""
        if self.space not in SPACE_OPS:
            raise ValueError(f"unknown space {self.space!r}; known: {', '.join(SPACE_OPS)}")
        allowed = [set(SPACE_CELLS[self.space])]
        if self.space == "darts":  # no "reduce": GDAS-FRC's fixed reduction cell
            allowed.append({"normal"})
        if set(self.cells) not in allowed:
            raise ValueError(
                f"a {self.space} genotype has cells {list(SPACE_CELLS[self.space])}"
                f"{' (or only normal, for a fixed reduction cell)' if len(allowed) > 1 else ''}"
                f", got {sorted(self.cells)}"
            )
        for name, cell in self.cells.items():
            if not cell.nodes:
                raise ValueError(f"cell {name!r} has no nodes")
            for i, node in enumerate(cell.nodes):
                node_id = cell.inputs + i
                if not node:
                    raise ValueError(f"cell {name!r} node {node_id} has no inputs")
                for op, j in node:
                    if op not in self.ops:
                        raise ValueError(f"cell {name!r} node {node_id}: unknown op {op!r}")
                    if not 0 <= j < node_id:
                        raise ValueError(f"cell {name!r} node {node_id}: bad input node {j}")
            if self.space == "rnn":
                if cell.inputs != 1 or any(len(node) != 1 for node in cell.nodes):
                    raise ValueError(
                        f"cell {name!r}: a recurrent cell has 1 input node and exactly one "
                        "(op, predecessor) per node"
                    )
            last = cell.inputs + len(cell.nodes)
            if not cell.concat or any(not 0 <= c < last for c in cell.concat):
                raise ValueError(f"cell {name!r}: bad concat {list(cell.concat)}")


def save_genotype(path: str | Path, genotype: Genotype) -> None:
    write_json(path, genotype.to_json())


def load_genotype(path: str | Path, fix: str = "rerun the search stage") -> Genotype:
    """Read and validate a genotype file; a missing or malformed one is a `UserError` that
    ends with `fix` (for a file of the user's own: to correct it, not to search again)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: genotype file not found; run the search stage (`dvc repro`)")
    try:
        return Genotype.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a valid genotype ({exc}); {fix}") from None
