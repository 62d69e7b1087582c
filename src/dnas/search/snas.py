"""SNAS (Xie et al., ICLR 2019): the algorithm (`SNAS`), its resource penalty and its
temperature (docs/protocols.md; the SNAS code, docs/algorithms.md#snas).

SNAS is single level: one backward pass of the training loss (plus the resource penalty)
updates weights and alphas together, and the test split is only watched. Its edges mix every op
with a soft Gumbel (concrete) sample w = softmax((alpha + g) / tau), no straight-through, drawn
in evaluation mode too; alpha is SNAS's log-alpha, initialised ~ N(1, 0.01). Its genotype keeps,
per node, the two strongest of all incoming edges' ops (`derive_all_edges`).

Every candidate op of every edge has three costs, counted with SNAS's own formulas from the
op's channels C_in, C_out, kernel k and output side y (y^2 = output pixels), measured once on
the supernet with one example of the data's shape:

| op | size (parameters) | flops | mac (memory accesses), stride 1 / 2 |
|---|---|---|---|
| none | 0 | 0 | 0 |
| skip (identity) | 0 | 0 | 2 C y^2 |
| max / avg pool 3x3 | 0 | 9 y^2 C | 2 y^2 C / 5 y^2 C |
| skip (FactorizedReduce) | C_in C_out | size y^2 | 2 y^2 (4 C_in + C_out / 2) + size |
| dil conv k | C_in k^2 + C_in C_out | size y^2 | y^2 (3 or 6 C_in + C_out) + size |
| sep conv k | 2 C_in k^2 + C_in (C_in + C_out) | size y^2 | y^2 (7 or 10 C_in + C_out) + size |
| ReLU-conv-BN k (NB201) | C_in C_out k^2 | size y^2 | y^2 (1 or 4 C_in + C_out) + size |

With the mixing weights w of an edge, the edge's cost is

    linear: sum_k w_k (2 size_k + flops_k / 4000 + mac_k / 100) * 0.43
    log:    mean over (size, flops, mac) of log(sum_k w_k cost_k)   (a sum below 1 counts as 1)

the log of the mixture's cost, not a mixture of logs. A cell's penalty sums its edges; a cell
type's is the mean over its cells (SNAS's normal/6 + reduce/2 for its 8 cells); the total adds
the cell types. The search loss is CE + resource_lambda * penalty.

Temperature (`tau_schedule: snas`): SNAS's scheduler steps once when it is made and again before
every epoch, so epoch e (from 0) runs at tau_max - (tau_max - tau_min) (e + 1) / epochs: one
step in at the first epoch, tau_min at the last.
"""

from __future__ import annotations

import torch
from torch import nn

from dnas.search.algorithm import Algorithm
from dnas.search.gumbel import soft_gumbel_softmax
from dnas.search.supernet import MixedEdge, Supernet
from dnas.spaces.ops import DilConv, FactorizedReduce, PoolBN, ReLUConvBN, SepConv, Zero

COSTS = ("size", "flops", "mac")


class SNAS(Algorithm):
    name = "snas"
    derive_all_edges = True

    def init_alphas(self, n_edges: int, n_ops: int) -> torch.Tensor:
        return 1.0 + 0.01 * torch.randn(n_edges, n_ops)

    def mix(self, alpha, tau=None, mask=None, generator=None) -> torch.Tensor:
        return soft_gumbel_softmax(alpha, tau, generator, mask)

    def penalty_costs(self, s, net, example) -> dict | None:
        """Measured with one forward pass that leaves every random stream where it was."""
        if s.resource_lambda <= 0:
            return None
        gumbel = None if net.generator is None else net.generator.get_state()
        with torch.random.fork_rng(devices=[]):
            costs = op_costs(net, example)
        if gumbel is not None:
            net.generator.set_state(gumbel)
        return costs

    def penalty(self, s, weights, costs) -> torch.Tensor:
        return s.resource_lambda * resource_penalty(weights, costs, s.resource_log)


def temperature(epoch: int, epochs: int, tau_max: float, tau_min: float) -> float:
    return tau_max - (tau_max - tau_min) * (epoch + 1) / epochs


def _conv_dims(conv: nn.Conv2d) -> tuple[int, int]:
    return conv.kernel_size[0], conv.stride[0]


def op_cost(op: nn.Module, x: torch.Tensor, out: torch.Tensor) -> tuple[float, float, float]:
    """(size, flops, mac) of `op` on input `x` giving `out`, by SNAS's formulas."""
    c_in = x.shape[1]
    y2 = out.shape[-2] * out.shape[-1]
    strided = out.shape[-1] < x.shape[-1]
    if isinstance(op, Zero):
        return 0.0, 0.0, 0.0
    if isinstance(op, nn.Identity):
        return 0.0, 0.0, 2.0 * c_in * y2
    if isinstance(op, (PoolBN, nn.AvgPool2d, nn.MaxPool2d)):
        return 0.0, 9.0 * y2 * c_in, (5.0 if strided else 2.0) * y2 * c_in
    if isinstance(op, FactorizedReduce):
        c_out = out.shape[1]
        size = 2.0 * c_in * (c_out // 2)
        return size, size * y2, 2.0 * y2 * (4 * c_in + c_out // 2) + size
    if isinstance(op, SepConv):
        k, _ = _conv_dims(op[0][1])
        c_out = out.shape[1]
        size = 2.0 * c_in * k * k + (c_in + c_out) * c_in
        return size, size * y2, y2 * ((10 if strided else 7) * c_in + c_out) + size
    if isinstance(op, DilConv):
        k, _ = _conv_dims(op[1])
        c_out = out.shape[1]
        size = float(c_in * k * k + c_out * c_in)
        return size, size * y2, y2 * ((6 if strided else 3) * c_in + c_out) + size
    if isinstance(op, ReLUConvBN):
        k, _ = _conv_dims(op[1])
        c_out = out.shape[1]
        size = float(c_in * c_out * k * k)
        return size, size * y2, y2 * ((4 if strided else 1) * c_in + c_out) + size
    raise TypeError(f"SNAS's cost tables have no entry for {type(op).__name__}")


def op_costs(net: Supernet, example: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per cell type, the (cells of that type, edges, ops, 3) table of (size, flops, mac)."""
    inputs: dict[MixedEdge, torch.Tensor] = {}

    def grab(mod, args):
        if mod not in inputs:
            inputs[mod] = args[0].detach()

    edges = [m for m in net.modules() if isinstance(m, MixedEdge)]
    handles = [e.register_forward_pre_hook(grab) for e in edges]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(example[:1], 1.0)  # any temperature: only the edges' inputs are read
            per_cell = []
            for edge in edges:
                x = inputs[edge]
                if edge.partial > 1:
                    x = x[:, : x.shape[1] // edge.partial]
                per_cell.append([op_cost(op, x, op(x)) for op in edge.ops])
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    n_edges = net.alphas[net.cell_types[0]].shape[0]
    tables = torch.tensor(per_cell, dtype=torch.float64).view(-1, n_edges, len(net.ops), 3)
    out = {}
    for t in net.cell_types:
        rows = [i for i, name in enumerate(net.cell_sequence) if name == t]
        out[t] = tables[rows].float()
    return out


def edge_cost(weights: torch.Tensor, table: torch.Tensor, log: bool) -> torch.Tensor:
    """(..., edges) costs of mixtures `weights` (edges, ops) with `table` (..., edges, ops, 3)."""
    if not log:
        size, flops, mac = table.unbind(-1)
        per_op = (2.0 * size + flops / 4000.0 + mac / 100.0) * 0.43
        return (weights * per_op).sum(-1)
    mixed = (weights.unsqueeze(-1) * table).sum(-2)  # (..., edges, 3)
    mixed = torch.where(mixed.abs() < 1, torch.ones_like(mixed), mixed)
    return torch.log(mixed.abs()).mean(-1)


def resource_penalty(
    weights: dict[str, torch.Tensor], costs: dict[str, torch.Tensor], log: bool = True
) -> torch.Tensor:
    """Sum over cell types of the mean over their cells of the summed edge costs."""
    total = 0
    for t, w in weights.items():
        table = costs[t].to(device=w.device, dtype=w.dtype)
        total = total + edge_cost(w, table, log).sum(-1).mean()
    return total
