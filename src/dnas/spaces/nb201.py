"""The NAS-Bench-201 cell space (docs/algorithms.md#nas-bench-201-space) and its architecture
string (docs/algorithms.md#nas-bench-201-architecture-string).

Node 0 is the cell input; node i (1..3) sums an edge from every earlier node (6 edges); the cell
output is node 3. The string lists, per node, `op~input` entries in input order:
`|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`.

`SPACE` is the space for the rest of the code (dnas.spaces.space, dnas.spaces.registry).
"""

from __future__ import annotations

import numpy as np

from dnas.spaces.cell import CellSpec
from dnas.spaces.space import Space, py_literal

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# their modules: dnas.spaces.ops.nb201_op
NODES = 4


def edges(nodes: int = NODES) -> list[tuple[int, int]]:
    """(node, input) pairs in alpha-row order: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2."""
    return [(i, j) for i in range(1, nodes) for j in range(i)]


def edge_labels(nodes: int = NODES) -> list[str]:
    return [f"{i}<-{j}" for i, j in edges(nodes)]


def derive_cell(probs: np.ndarray, ops: tuple[str, ...] = NB201_OPS) -> CellSpec:
    """Per-edge argmax, 'none' included (docs/algorithms.md#genotype-derivation)."""
    probs = np.asarray(probs)
    best = probs.argmax(axis=1)
    nodes = []
    for e, (_, j) in enumerate(edges()):
        if j == 0:
            nodes.append([])
        nodes[-1].append((ops[best[e]], j))
    return CellSpec(inputs=1, nodes=tuple(tuple(n) for n in nodes), concat=(NODES - 1,))


def to_string(cell: CellSpec) -> str:
    """The NAS-Bench-201 architecture string of a cell (docs/algorithms.md#nas-bench-201-
    architecture-string): per node, `op~input` in input order, nodes joined by '+'."""
    return "+".join(
        "|" + "|".join(f"{op}~{j}" for op, j in sorted(node, key=lambda e: e[1])) + "|"
        for node in cell.nodes
    )


def from_string(arch: str) -> CellSpec:
    """Parse an architecture string; raise ValueError naming what is wrong."""
    nodes = []
    for i, part in enumerate(arch.strip().split("+"), start=1):
        if not (part.startswith("|") and part.endswith("|")) or len(part) < 3:
            raise ValueError(f"node {i}: {part!r} is not of the form |op~j|op~j|")
        entries = []
        for item in part[1:-1].split("|"):
            op, sep, j = item.partition("~")
            if not sep or not j.isdigit():
                raise ValueError(f"node {i}: {item!r} is not of the form op~input")
            if op not in NB201_OPS:
                raise ValueError(f"node {i}: unknown op {op!r}; known: {', '.join(NB201_OPS)}")
            entries.append((op, int(j)))
        if sorted(j for _, j in entries) != list(range(i)):
            raise ValueError(f"node {i} must have exactly one edge from each of nodes 0..{i - 1}")
        nodes.append(tuple(entries))
    if len(nodes) != NODES - 1:
        raise ValueError(f"expected {NODES - 1} nodes separated by '+', got {len(nodes)}")
    return CellSpec(inputs=1, nodes=tuple(nodes), concat=(NODES - 1,))


class Nb201Space(Space):
    def check_node(self, where: str, node_id: int, sources: list[int]) -> None:
        if sorted(sources) != list(range(node_id)):
            raise ValueError(
                f"{where} node {node_id} must have exactly one edge from each of nodes "
                f"0..{node_id - 1}"
            )

    def check_concat(self, where: str, concat: list[int], last: int) -> None:
        if concat != [last - 1]:
            raise ValueError(f"{where}: bad concat {concat}; an NB201 cell outputs node {last - 1}")

    def arch(self, cells: dict[str, CellSpec]) -> str:
        return to_string(cells["cell"])

    def random_cells(self, rng: np.random.Generator, fixed: bool) -> dict[str, CellSpec]:
        """Each of the 6 edges an op uniform over all 5, 'none' included, so that each of the
        benchmark's 15,625 cells is equally likely, as AutoDL's random sampling draws them."""
        ops = self.ops
        nodes = [tuple((ops[rng.integers(len(ops))], j) for j in range(i))
                 for i in range(1, NODES)]  # fmt: skip
        return {"cell": CellSpec(inputs=1, nodes=tuple(nodes), concat=(NODES - 1,))}

    def size_text(self, layers: int, network: str) -> str:
        return f"{layers} cells per stage"

    def python_source(self, cells: dict[str, CellSpec], arch: str | None) -> str:
        """The architecture string and AutoDL's per-node list (what its `Structure` takes)."""
        nodes = [tuple(node) for node in cells["cell"].nodes]
        return (
            "`arch` is the NAS-Bench-201 architecture string (`|op~input|+|...|`, one `+` per\n"
            "node); `genotype` the same cell in AutoDL's per-node form (the list its `Structure`\n"
            "takes): for nodes 1, 2, 3, a tuple of (op, input node) pairs; node 0 is the cell's\n"
            'input and the cell outputs node 3.\n"""\n\n'
            f"arch = {arch!r}\n\n"
            f"genotype = {py_literal(nodes, 11)}\n"
        )


# The NAS-Bench-201 space: 5 ops, one cell of 1 input and 3 nodes, the architecture string,
# in the benchmark; dnas.models.nb201_net, counted at C=16 with 5 cells per stage
# (docs/algorithms.md#parameter-and-multiply-add-counts).
SPACE = Nb201Space(
    name="nb201",
    ops=NB201_OPS,
    cells=("cell",),
    inputs=1,
    nodes=NODES - 1,
    network="dnas.models.nb201_net:build",
    paper_size=(16, 5),
    benchmark=True,
)
