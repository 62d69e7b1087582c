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
from typing import Any

from dnas.errors import UserError, first_line
from dnas.io import write_json
from dnas.spaces.ops import DARTS_OPS, NB201_OPS, RNN_OPS

SPACE_OPS = {"darts": DARTS_OPS, "nb201": NB201_OPS, "rnn": RNN_OPS}
SPACE_CELLS = {"darts": ("normal", "reduce"), "nb201": ("cell",), "rnn": ("rnn",)}
# (input nodes, intermediate nodes) of a cell: DARTS 2 inputs and 4 nodes (darts.STEPS),
# NAS-Bench-201 1 input and 3 nodes (nb201.NODES - 1), the recurrent cell s0 and 8 nodes
# (rnn.STEPS); the networks are built for exactly these (tests/test_hostile_params.py checks
# them against the modules).
SPACE_SHAPE = {"darts": (2, 4), "nb201": (1, 3), "rnn": (1, 8)}
MAX_INPUTS = max(i for i, _ in SPACE_SHAPE.values())
MAX_NODES = max(n for _, n in SPACE_SHAPE.values())
MAX_EDGES = 64  # probs: edges per cell (DARTS 14, NB201 6, recurrent 36)
MAX_OPS = 16  # probs: ops per edge (DARTS 8, NB201 5, recurrent 5)
# genotype.json is a few kilobytes; a file of megabytes is not one (and would be slow to read).
MAX_GENOTYPE_BYTES = 1024 * 1024

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
    def from_json(cls, d: Any, name: str = "cell") -> CellSpec:
        """A cell from its JSON form. Strict: `inputs`, the input indices and `concat` must be
        JSON integers (not 1.7, true or "2"), each edge an [op, input] pair; a cell larger
        than any space's (MAX_NODES) is refused before it is read further."""
        where = f"cell {name!r}"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object with inputs, nodes, concat")
        missing = [k for k in ("inputs", "nodes", "concat") if k not in d]
        if missing:
            raise ValueError(f"{where}: no {', '.join(map(repr, missing))} entry")
        inputs = _strict_int(d["inputs"], f"{where} inputs")
        if not 1 <= inputs <= MAX_INPUTS:
            raise ValueError(f"{where} inputs: {inputs}; a cell has 1 or 2 input nodes")
        nodes_json, concat_json = d["nodes"], d["concat"]
        for key, value in (("nodes", nodes_json), ("concat", concat_json)):
            if not isinstance(value, list):
                raise ValueError(f"{where} {key}: expected a list, got {type(value).__name__}")
        if len(nodes_json) > MAX_NODES:
            raise ValueError(
                f"{where}: {len(nodes_json)} nodes; a cell of these spaces has at most {MAX_NODES}"
            )
        nodes = []
        for i, node in enumerate(nodes_json):
            node_id = inputs + i
            if not isinstance(node, list) or len(node) > MAX_NODES + MAX_INPUTS:
                raise ValueError(f"{where} node {node_id}: expected a short list of [op, input]")
            edges = []
            for edge in node:
                if not (isinstance(edge, list) and len(edge) == 2 and isinstance(edge[0], str)):
                    raise ValueError(
                        f"{where} node {node_id}: {_short(edge)} is not an [op, input] pair"
                    )
                edges.append((edge[0], _strict_int(edge[1], f"{where} node {node_id} input")))
            nodes.append(tuple(edges))
        if len(concat_json) > MAX_NODES + MAX_INPUTS:
            raise ValueError(f"{where} concat: {len(concat_json)} entries, more than the nodes")
        concat = tuple(_strict_int(c, f"{where} concat") for c in concat_json)
        return cls(inputs=inputs, nodes=tuple(nodes), concat=concat)


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
        if not isinstance(space, str) or space not in SPACE_OPS:
            raise ValueError(f"unknown space {_short(space)}; known: {', '.join(SPACE_OPS)}")
        if not isinstance(cells, dict) or not 1 <= len(cells) <= len(SPACE_CELLS[space]):
            raise ValueError(f"cells: expected an object of the cells {list(SPACE_CELLS[space])}")
        probs = d.get("probs") or {}
        _check_probs(probs)
        arch = d.get("arch")
        if arch is not None and not isinstance(arch, str):
            raise ValueError(f"arch: expected a string or null, got {type(arch).__name__}")
        g = cls(
            space=space,
            cells={name: CellSpec.from_json(c, name) for name, c in cells.items()},
            probs=probs,
            arch=arch,
        )
        g.validate()
        if space == "nb201":
            written = nb201_string(g.cells["cell"])
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
            _check_cell(self.space, self.ops, name, cell)


def _check_cell(space: str, ops: tuple[str, ...], name: str, cell: CellSpec) -> None:
    """A cell of `space` exactly as its network reads it (SPACE_SHAPE): the input nodes, the
    number of nodes, the edges of each node (distinct inputs, known ops, from earlier nodes)
    and the output nodes; a ValueError naming what differs."""
    inputs, n_nodes = SPACE_SHAPE[space]
    where = f"cell {name!r}"
    if cell.inputs != inputs:
        raise ValueError(f"{where} inputs: {cell.inputs}; a {space} cell has {inputs} input nodes")
    if len(cell.nodes) != n_nodes:
        raise ValueError(f"{where}: {len(cell.nodes)} nodes; a {space} cell has {n_nodes}")
    for i, node in enumerate(cell.nodes):
        node_id = inputs + i
        if not node:
            raise ValueError(f"{where} node {node_id} has no inputs")
        for op, j in node:
            if op not in ops:
                raise ValueError(f"{where} node {node_id}: unknown op {_short(op)}")
            if not 0 <= j < node_id:
                raise ValueError(f"{where} node {node_id}: bad input node {j}")
        sources = [j for _, j in node]
        if len(set(sources)) != len(sources):
            raise ValueError(f"{where} node {node_id}: an input node listed twice {sources}")
        if space == "rnn" and len(node) != 1:
            raise ValueError(
                f"{where}: a recurrent cell has 1 input node and exactly one "
                "(op, predecessor) per node"
            )
        if space == "nb201" and sorted(sources) != list(range(node_id)):
            raise ValueError(
                f"{where} node {node_id} must have exactly one edge from each of nodes "
                f"0..{node_id - 1}"
            )
    last = inputs + n_nodes
    concat = list(cell.concat)
    if not concat or any(not 0 <= c < last for c in concat) or len(set(concat)) != len(concat):
        raise ValueError(f"{where}: bad concat {concat}")
    if space == "nb201" and concat != [last - 1]:
        raise ValueError(f"{where}: bad concat {concat}; an NB201 cell outputs node {last - 1}")


def nb201_string(cell: CellSpec) -> str:
    """The NAS-Bench-201 architecture string of a cell (docs/algorithms.md#nas-bench-201-
    architecture-string): per node, `op~input` in input order, nodes joined by '+'."""
    return "+".join(
        "|" + "|".join(f"{op}~{j}" for op, j in sorted(node, key=lambda e: e[1])) + "|"
        for node in cell.nodes
    )


def _strict_int(value: Any, what: str) -> int:
    """A JSON integer: not a bool, a float (1.7, 1e9) or a string."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what}: {_short(value)} is not an integer")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
