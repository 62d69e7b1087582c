"""The DARTS CNN cell space (docs/algorithms.md#darts-cnn-space) and its genotype rule
(docs/algorithms.md#genotype-derivation).

A cell has two inputs (c_{k-2}, c_{k-1}) and `steps` intermediate nodes; node i (numbered from
2) takes an edge from every earlier state, 14 edges for 4 nodes, in the DARTS offset order
(node 2: inputs 0, 1; node 3: inputs 0, 1, 2; ...). The output concatenates the intermediate
nodes. Reductions sit at cells `layers // 3` and `2 * layers // 3`.

`SPACE` is the space for the rest of the code (dnas.spaces.space, dnas.spaces.registry).
"""

from __future__ import annotations

import numpy as np

from dnas.spaces.cell import CellSpec
from dnas.spaces.space import Space, py_literal

DARTS_OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)  # their modules: dnas.spaces.ops.darts_op
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


class DartsSpace(Space):
    def random_cells(self, rng: np.random.Generator, fixed: bool) -> dict[str, CellSpec]:
        """Every node takes 2 distinct inputs, each pair of earlier states equally likely, each
        edge an op uniform over the 7 ops other than 'none' (the DARTS rule's cells); a normal
        and a reduction cell, or only the normal one with `fixed`."""
        ops = [op for op in self.ops if op != "none"]
        cells = {}
        for name in self.fixed_cells if fixed else self.cells:
            nodes = []
            for i in range(INPUTS, INPUTS + STEPS):
                inputs = sorted(int(j) for j in rng.choice(i, size=2, replace=False))
                nodes.append(tuple((ops[rng.integers(len(ops))], j) for j in inputs))
            cells[name] = CellSpec(
                inputs=INPUTS, nodes=tuple(nodes), concat=tuple(range(INPUTS, INPUTS + STEPS))
            )
        return cells

    def python_source(self, cells: dict[str, CellSpec], arch: str | None) -> str:
        """DARTS's `Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)`
        namedtuple (flat (op, input) lists) and the same cells in AutoDL's per-node form;
        `reduce=None` for the fixed reduction cell, as GDAS's genotype file writes it."""
        normal, normal_nodes, normal_concat = _cell_lists(cells["normal"])
        if "reduce" in cells:
            reduce, reduce_nodes, reduce_concat = _cell_lists(cells["reduce"])
        else:
            reduce = reduce_nodes = reduce_concat = None
        sizes = [len(node) for node in cells["normal"].nodes]
        fixed = (
            "`reduce` is None: the network uses GDAS's fixed reduction cell, as GDAS's genotype"
            " file\nwrites it.\n"
            if reduce is None
            else ""
        )
        return (
            "`genotype` is in DARTS's form (its cnn/genotypes.py): `normal` and `reduce` list the\n"
            "(op, input node) pairs of the cell's nodes in order (here "
            f"{', '.join(map(str, sizes))} per node of the normal cell);\n"
            "nodes 0 and 1 are the outputs of the two previous cells, 2, 3, ... the cell's own\n"
            "nodes, and the cell outputs the concatenation of the nodes in `*_concat`.\n"
            "`genotype_nodes` holds the same cells in AutoDL's form: one tuple of (op, input"
            f' node)\npairs per node.\n{fixed}"""\n\n'
            "from collections import namedtuple\n\n"
            'Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")\n\n'
            f"genotype = {_genotype_call(normal, normal_concat, reduce, reduce_concat)}\n\n"
            "genotype_nodes = "
            f"{_genotype_call(normal_nodes, normal_concat, reduce_nodes, reduce_concat)}\n"
        )


def _cell_lists(cell: CellSpec) -> tuple[list, list, list[int]]:
    flat = [(op, j) for node in cell.nodes for op, j in node]
    nodes = [tuple(node) for node in cell.nodes]
    return flat, nodes, list(cell.concat)


def _genotype_call(normal, normal_concat, reduce, reduce_concat) -> str:
    fields = {"normal": normal, "normal_concat": normal_concat, "reduce": reduce,
              "reduce_concat": reduce_concat}  # fmt: skip
    lines = [f"    {k}={py_literal(v, 4 + len(k) + 1)}," for k, v in fields.items()]
    return "Genotype(\n" + "\n".join(lines) + "\n)"


# The DARTS CNN space: 8 ops, a normal and a reduction cell of 2 inputs and 4 nodes, the cell
# networks of dnas.models.cell_net (CIFAR and ImageNet stems, auxiliary head), counted at C=36
# with 20 cells (docs/algorithms.md#parameter-and-multiply-add-counts).
SPACE = DartsSpace(
    name="darts",
    ops=DARTS_OPS,
    cells=("normal", "reduce"),
    inputs=INPUTS,
    nodes=STEPS,
    network="dnas.models.cell_net:build",
    paper_size=(36, 20),
    fixed_cell="reduce",
    auxiliary=True,
    imagenet=True,
)
