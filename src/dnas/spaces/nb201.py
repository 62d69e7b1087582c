"""The NAS-Bench-201 cell space (docs/algorithms.md#nas-bench-201-space) and its architecture
string (docs/algorithms.md#nas-bench-201-architecture-string).

Node 0 is the cell input; node i (1..3) sums an edge from every earlier node (6 edges); the cell
output is node 3. The string lists, per node, `op~input` entries in input order:
`|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`.
"""

from __future__ import annotations

import numpy as np

from dnas.spaces.genotype import CellSpec, nb201_string
from dnas.spaces.ops import NB201_OPS

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
    """The NAS-Bench-201 architecture string of a cell."""
    return nb201_string(cell)


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
