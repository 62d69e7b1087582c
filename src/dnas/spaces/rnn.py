"""The DARTS recurrent search space (docs/algorithms.md#darts-recurrent-space): ops, the cell's
highway update and the one-predecessor derivation.

One time step of the cell, for input x_t (ninp) and previous state h_{t-1} (nhid):

    c0, h0 = split([x_t * x_mask, h_{t-1} * h_mask] @ W0)          W0: (ninp + nhid, 2 nhid)
    s0     = h_{t-1} + sigmoid(c0) * (tanh(h0) - h_{t-1})
    node i = 1..8, predecessor j < i, op f:
    c, h   = split((s_j * h_mask) @ W_i)                            W_i: (nhid, 2 nhid)
    s_i    = s_j + sigmoid(c) * (f(h) - s_j)                        (the highway update)
    h_t    = mean(s_1, ..., s_8)

f is one of none (the edge contributes nothing), tanh, relu, sigmoid, identity. The masks are
variational dropout masks, drawn once per sequence and shared by every time step; they are
off in evaluation. A genotype lists (op, predecessor) per node and concatenates 1..8
(averaged here); the search supernet lives in `dnas.search.rnn`, the language model around the
cell in `dnas.models.rnn_lm`. `SPACE` is the space for the rest of the code
(dnas.spaces.space, dnas.spaces.registry).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dnas.spaces.cell import CellSpec
from dnas.spaces.space import Space

if TYPE_CHECKING:
    import torch

# The recurrent cell's activations; their functions below (ACTIVATIONS). Torch is imported only
# where a tensor is made: the params check asks this module's SPACE without torch.
RNN_OPS = ("none", "tanh", "relu", "sigmoid", "identity")
STEPS = 8  # intermediate nodes; node 0 is s0
# The cell's weights are uniform in [-0.04, 0.04] (docs/algorithms.md#darts-recurrent-space).
INIT_RANGE = 0.04

# The tensor methods run the same kernels as torch.tanh, F.relu and torch.sigmoid.
ACTIVATIONS = {
    "tanh": lambda h: h.tanh(),
    "relu": lambda h: h.relu(),
    "sigmoid": lambda h: h.sigmoid(),
    "identity": lambda h: h,
}


def edges(steps: int = STEPS) -> list[tuple[int, int]]:
    """(node, predecessor) of every edge, in the order of the alpha rows: node 1 <- 0, node 2
    <- 0, 1, ..., node 8 <- 0..7 (36 edges for 8 steps)."""
    return [(i, j) for i in range(1, steps + 1) for j in range(i)]


def edge_labels(steps: int = STEPS) -> list[str]:
    return [f"{i}<-{j}" for i, j in edges(steps)]


def highway(s_prev: torch.Tensor, c: torch.Tensor, h: torch.Tensor, op: str) -> torch.Tensor:
    """s = s_prev + sigmoid(c) * (f(h) - s_prev): the gated update of one edge."""
    return s_prev + c.sigmoid() * (ACTIVATIONS[op](h) - s_prev)


def initial_state(
    x: torch.Tensor,
    h_prev: torch.Tensor,
    w0: torch.Tensor,
    x_mask: torch.Tensor | None,
    h_mask: torch.Tensor | None,
) -> torch.Tensor:
    """s0 = h_prev + sigmoid(c0) * (tanh(h0) - h_prev), with c0, h0 from [x, h_prev] @ W0."""
    import torch

    xm = x * x_mask if x_mask is not None else x
    hm = h_prev * h_mask if h_mask is not None else h_prev
    xh = torch.cat([xm, hm], dim=-1)
    c0, h0 = (xh @ w0).chunk(2, dim=-1)
    return highway(h_prev, c0, h0, "tanh")


def derive_cell(weights: np.ndarray, ops: tuple[str, ...] = RNN_OPS, keep_none: bool = False):
    """The genotype of a recurrent cell from per-edge op weights (36, K): for every node the
    single (predecessor, op) with the highest weight (docs/algorithms.md#genotype-derivation: T=1
    for an RNN). 'none' is excluded as DARTS does, or allowed with `keep_none` as the GDAS RNN code
    (docs/algorithms.md#darts-recurrent-space).
    Ties go to the lower predecessor, then the earlier op."""
    steps = int(round((np.sqrt(8 * len(weights) + 1) - 1) / 2))
    w = np.asarray(weights, dtype=np.float64).copy()
    if not keep_none and "none" in ops:
        w[:, ops.index("none")] = -np.inf
    nodes, start = [], 0
    for i in range(1, steps + 1):
        block = w[start : start + i]
        j, k = np.unravel_index(int(np.argmax(block)), block.shape)
        nodes.append(((ops[int(k)], int(j)),))
        start += i
    return CellSpec(inputs=1, nodes=tuple(nodes), concat=tuple(range(1, steps + 1)))


class RnnSpace(Space):
    def check_node(self, where: str, node_id: int, sources: list[int]) -> None:
        if len(sources) != 1:
            raise ValueError(
                f"{where}: a recurrent cell has 1 input node and exactly one "
                "(op, predecessor) per node"
            )

    def random_cells(self, rng: np.random.Generator, fixed: bool) -> dict[str, CellSpec]:
        """Every node one predecessor uniform over the earlier nodes and an op uniform over the
        4 ops other than 'none' (the DARTS recurrent rule)."""
        ops = [op for op in self.ops if op != "none"]
        steps = range(1, STEPS + 1)
        nodes = tuple(((ops[rng.integers(len(ops))], int(rng.integers(i))),) for i in steps)
        return {"rnn": CellSpec(inputs=1, nodes=nodes, concat=tuple(steps))}


# The DARTS recurrent space: 5 activations, one cell "rnn" of s0 and 8 nodes, the language
# model of dnas.models.rnn_lm on the text track, counted at emsize = nhid = 850 (the PTB model,
# docs/algorithms.md#rnn-retraining).
SPACE = RnnSpace(
    name="rnn",
    ops=RNN_OPS,
    cells=("rnn",),
    inputs=1,
    nodes=STEPS,
    network="dnas.models.rnn_lm:build_lm",
    paper_size=850,
    text=True,
)
