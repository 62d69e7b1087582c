"""The DARTS CNN cell space (docs/algorithms.md#darts-cnn-space) and its genotype rule
(docs/algorithms.md#genotype-derivation).

A cell has two inputs (c_{k-2}, c_{k-1}) and `steps` intermediate nodes; node i (numbered from
2) takes an edge from every earlier state, 14 edges for 4 nodes, in the DARTS offset order
(node 2: inputs 0, 1; node 3: inputs 0, 1, 2; ...). The output concatenates the intermediate
nodes. Reductions sit at cells `layers // 3` and `2 * layers // 3`.
"""

from __future__ import annotations

import numpy as np

from dnas.spaces.genotype import CellSpec
from dnas.spaces.ops import DARTS_OPS

STEPS = 4
INPUTS = 2


def edges(steps: int = STEPS) -> list[tuple[int, int]]:
    """(node, input) pairs in alpha-row order."""
    return [(INPUTS + i, j) for i in range(steps) for j in range(INPUTS + i)]


def edge_labels(steps: int = STEPS) -> list[str]:
    return [f"{i}<-{j}" for i, j in edges(steps)]


def reduction_layers(layers: int) -> tuple[int, ...]:
    return (layers // 3, 2 * layers // 3)


def derive_cell(
    probs: np.ndarray, ops: tuple[str, ...] = DARTS_OPS, steps: int = STEPS, keep: int = 2
) -> CellSpec:
    """The DARTS rule as the GDAS CVPR code applies it: per node, rank the incoming edges by
    their best non-'none' probability, keep the `keep` best distinct inputs, and take the
    argmax non-'none' op on each. Ties go to the lower input index, then the lower op index.
    """
    probs = np.asarray(probs, dtype=np.float64)
    candidates = [k for k, op in enumerate(ops) if op != "none"]
    nodes = []
    row = 0
    for i in range(steps):
        n_in = INPUTS + i
        block = probs[row : row + n_in][:, candidates]
        row += n_in
        best_op = block.argmax(axis=1)  # first maximum on ties
        score = block.max(axis=1)
        order = sorted(range(n_in), key=lambda j: (-score[j], j))[:keep]
        nodes.append(tuple((ops[candidates[best_op[j]]], j) for j in order))
    return CellSpec(inputs=INPUTS, nodes=tuple(nodes), concat=tuple(range(INPUTS, INPUTS + steps)))


def derive_cell_all_edges(
    probs: np.ndarray, ops: tuple[str, ...] = DARTS_OPS, steps: int = STEPS
) -> CellSpec:
    """SNAS's rule (`genotype_edge_all`, docs/algorithms.md#snas): keep all edges, each with its
    argmax op, 'none' included, so an edge whose argmax is 'none' contributes nothing (the published
    SNAS cells list all 14 edges this way). Ties go to the lower op index."""
    probs = np.asarray(probs, dtype=np.float64)
    best = probs.argmax(axis=1)
    nodes: list[list[tuple[str, int]]] = [[] for _ in range(steps)]
    for e, (i, j) in enumerate(edges(steps)):
        nodes[i - INPUTS].append((ops[best[e]], j))
    return CellSpec(
        inputs=INPUTS,
        nodes=tuple(tuple(n) for n in nodes),
        concat=tuple(range(INPUTS, INPUTS + steps)),
    )
