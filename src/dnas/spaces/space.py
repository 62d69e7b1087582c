"""`Space`: what the rest of the code asks of a search space, in one object per space.

Each space's module (`dnas.spaces.darts`, `nb201`, `rnn`) defines its `SPACE`, and
`dnas.spaces.registry` maps the names to them. Code outside the registry asks the object
(`get_space(genotype.space).text`) instead of comparing the space's name, so a new space is a
new module and a line in the registry (docs/architecture.md#layers).

The object is data and small pure functions: no torch, no `Genotype` (which sits above it and
asks it to check cells), no network. The retraining network is named by `network`, a
"module:function" path inside `dnas.models` that `dnas.models.build_model` imports: the
networks import the spaces' cell graphs (`spaces.darts.reduction_layers`, `spaces.rnn.highway`),
so a space that imported its network, even inside a function, would close an import cycle.
"""

from __future__ import annotations

import pprint
from dataclasses import dataclass

import numpy as np

from dnas.spaces.cell import CellSpec, short_repr


@dataclass(frozen=True)
class Space:
    name: str
    # The candidate ops, in alpha-column order (genotype.json's "ops").
    ops: tuple[str, ...]
    # The cells of a genotype of this space, by name, in order.
    cells: tuple[str, ...]
    # Input nodes and intermediate nodes of every cell (its network is built for exactly these).
    inputs: int
    nodes: int
    # "module:function" of the retraining network's builder (genotype, config) -> nn.Module,
    # inside dnas.models; dnas.models.build_model imports it.
    network: str
    # The papers' evaluation size for parameter counts (docs/algorithms.md#parameter-and-multiply-
    # add-counts): (C, cells) of a CNN, emsize = nhid of a language model.
    paper_size: tuple[int, int] | int
    # A recurrent cell: the language-model track, searched and retrained on text corpora.
    text: bool = False
    # The cell a hand-designed one may replace (DARTS: "reduce", GDAS-FRC's fixed reduction
    # cell, search.fixed_reduction); a genotype may then leave it out. None: no such cell.
    fixed_cell: str | None = None
    # The NAS-Bench-201 (NATS-Bench topology) lookup holds this space's cells (search.benchmark).
    benchmark: bool = False
    # Its network has an auxiliary head (train.auxiliary_weight) and the ImageNet mobile stem
    # (train.network: imagenet, the papers' ImageNet width and 14 cells).
    auxiliary: bool = False
    imagenet: bool = False

    @property
    def fixed_cells(self) -> tuple[str, ...] | None:
        """The cells of a genotype that uses the fixed cell (DARTS: ("normal",)), or None."""
        if self.fixed_cell is None:
            return None
        return tuple(c for c in self.cells if c != self.fixed_cell)

    def check_cells(self, names: set[str]) -> None:
        """ValueError unless `names` are this space's cells (or those without the fixed cell)."""
        allowed = [set(self.cells)]
        if self.fixed_cells is not None:
            allowed.append(set(self.fixed_cells))
        if names not in allowed:
            only = ""
            if self.fixed_cells is not None:
                only = f" (or only {', '.join(self.fixed_cells)}, for a fixed reduction cell)"
            raise ValueError(
                f"a {self.name} genotype has cells {list(self.cells)}{only}, got {sorted(names)}"
            )

    def check_cell(self, name: str, cell: CellSpec) -> None:
        """A cell of this space exactly as its network reads it: the input nodes, the number of
        nodes, the edges of each node (distinct inputs, known ops, from earlier nodes) and the
        output nodes; a ValueError naming what differs."""
        inputs, n_nodes = self.inputs, self.nodes
        where = f"cell {name!r}"
        if cell.inputs != inputs:
            raise ValueError(
                f"{where} inputs: {cell.inputs}; a {self.name} cell has {inputs} input nodes"
            )
        if len(cell.nodes) != n_nodes:
            raise ValueError(f"{where}: {len(cell.nodes)} nodes; a {self.name} cell has {n_nodes}")
        for i, node in enumerate(cell.nodes):
            node_id = inputs + i
            if not node:
                raise ValueError(f"{where} node {node_id} has no inputs")
            for op, j in node:
                if op not in self.ops:
                    raise ValueError(f"{where} node {node_id}: unknown op {short_repr(op)}")
                if not 0 <= j < node_id:
                    raise ValueError(f"{where} node {node_id}: bad input node {j}")
            sources = [j for _, j in node]
            if len(set(sources)) != len(sources):
                raise ValueError(f"{where} node {node_id}: an input node listed twice {sources}")
            self.check_node(where, node_id, sources)
        last = inputs + n_nodes
        concat = list(cell.concat)
        if not concat or any(not 0 <= c < last for c in concat) or len(set(concat)) != len(concat):
            raise ValueError(f"{where}: bad concat {concat}")
        self.check_concat(where, concat, last)

    def check_node(self, where: str, node_id: int, sources: list[int]) -> None:
        """The space's own rule on a node's input nodes (distinct and earlier already checked)."""

    def check_concat(self, where: str, concat: list[int], last: int) -> None:
        """The space's own rule on a cell's output nodes (in range and distinct already checked)."""

    def arch(self, cells: dict[str, CellSpec]) -> str | None:
        """The architecture string of these cells (genotype.json's "arch"; NAS-Bench-201's), or
        None for a space without one."""
        return None

    def random_cells(self, rng: np.random.Generator, fixed: bool) -> dict[str, CellSpec]:
        """A uniformly random genotype's cells (docs/algorithms.md#random-cells), drawn from
        `rng`; with `fixed`, without the fixed cell."""
        raise NotImplementedError(f"space {self.name}: no random cells")

    def size_text(self, layers: int, network: str) -> str:
        """How `dnas genotype info` names the size of a network of `layers`."""
        return f"{layers} cells, {network} network"

    def python_source(self, cells: dict[str, CellSpec], arch: str | None) -> str:
        """The body of `dnas export`'s genotype.py (after its first line): the cells as plain
        Python in the forms of the space's reference code."""
        raise ValueError(f"a {self.name} genotype has no Python form for dnas export")


def py_literal(value: object, indent: int) -> str:
    """`value` as Python source, wrapped to fit 100 columns at `indent`."""
    text = pprint.pformat(value, width=100 - indent, compact=True)
    return text.replace("\n", "\n" + " " * indent)
