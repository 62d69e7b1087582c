"""SNAS's resource penalty (reference §3).

Each candidate op of each edge has three costs, measured once on the supernet with one example
of the data's shape: its parameters (size), its multiply-adds (flops, convolutions and linear
layers as `dnas.evaluate` counts them) and its memory accesses (input + output elements +
parameters); 'none' costs nothing. Per edge the penalty is the cost of the sampled soft mixture,

    linear: R = sum_k w_k * (2 * size_k + flops_k / 4000 + mac_k / 100) * 0.43
    log:    R = sum_k w_k * mean(log size_k, log flops_k, log mac_k)  (values < 1 count as 1)

with the constants of the SNAS code. A cell type's penalty is the mean over its cells (SNAS
hard-codes normal/6 + reduce/2 for its 8-cell network: the same mean), summed over the edges;
the total adds the cell types. The search loss is CE + resource_lambda * penalty.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dnas.search.supernet import MixedEdge, Supernet
from dnas.spaces.ops import Zero


def _op_costs(op: nn.Module, x: torch.Tensor) -> tuple[float, float, float]:
    if isinstance(op, Zero):  # 'none' reads and computes nothing
        return 0.0, 0.0, 0.0
    macs = 0.0

    def hook(mod, inputs, output):
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            k = mod.weight[0].numel()  # (c_in / groups) * kh * kw
            macs += float(output.numel() * k)
        elif isinstance(mod, nn.Linear):
            macs += float(mod.in_features * mod.out_features * output.shape[0])

    handles = [m.register_forward_hook(hook) for m in op.modules()]
    try:
        with torch.no_grad():
            out = op(x)
    finally:
        for h in handles:
            h.remove()
    size = float(sum(p.numel() for p in op.parameters()))
    mac = float(x[0].numel() + out[0].numel()) + size
    return size, macs / x.shape[0], mac


def combine(size: float, flops: float, mac: float, log: bool) -> float:
    if log:
        return sum(math.log(max(v, 1.0)) for v in (size, flops, mac)) / 3.0
    return (2.0 * size + flops / 4000.0 + mac / 100.0) * 0.43


def op_costs(net: Supernet, example: torch.Tensor, log: bool) -> dict[str, torch.Tensor]:
    """Per cell type, the (edges, ops) cost table averaged over the cells of that type."""
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
            net(example[:1])
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    per_cell = []
    for edge in edges:
        x = inputs[edge]
        if edge.partial > 1:
            x = x[:, : x.shape[1] // edge.partial]
        per_cell.append([combine(*_op_costs(op, x), log) for op in edge.ops])
    n_edges = net.alphas[net.cell_types[0]].shape[0]
    tables = torch.tensor(per_cell, dtype=torch.float32).view(-1, n_edges, len(net.ops))
    out = {}
    for t in net.cell_types:
        rows = [i for i, name in enumerate(net.cell_sequence) if name == t]
        out[t] = tables[rows].mean(dim=0)
    return out


def resource_penalty(
    weights: dict[str, torch.Tensor], costs: dict[str, torch.Tensor]
) -> torch.Tensor:
    """sum over cell types and edges of sum_k w_k * cost_k."""
    return sum((w * costs[t].to(w.device)).sum() for t, w in weights.items())
