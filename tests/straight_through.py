"""The supernet's GDAS nodes as they were before `gdas.sampled_sum`: every edge computes
op(x) * hard[k] (plus the sum of the unselected hard weights with `unselected_grad`) and every
node sums its edges from 0. The formula written out, as the oracle that today's node function
is checked against (tests/test_gdas.py, tests/test_cuda.py) and the `before` variant that
bench/search_step.py times against it."""

from __future__ import annotations

import contextlib

import torch

from dnas.search import supernet


def straight_through_edge(edge, x, weights, index, unselected_grad):
    if edge.partial > 1:
        split = x.shape[1] // edge.partial
        x, rest = x[:, :split], x[:, split:]
    out = edge._run(index, x) * weights[index]
    if unselected_grad:
        out = out + torch.cat([weights[:index], weights[index + 1 :]]).sum()
    if edge.partial > 1:
        out = supernet.channel_shuffle(torch.cat([out, edge.bypass(rest)], 1), edge.partial)
    return out


def straight_through_nodes(edges, states, node_inputs, weights, indices, unselected_grad, outputs):
    """`supernet.sampled_nodes`'s signature and result, by the straight-through formula."""
    e = 0
    for inputs in node_inputs:
        node = 0
        for j in inputs:
            x = states[j]
            node = node + straight_through_edge(
                edges[e], x, weights[e], indices[e], unselected_grad
            )
            e += 1
        states.append(node)
    return states


@contextlib.contextmanager
def straight_through():
    """Within it, every supernet computes its GDAS nodes by the formula above."""
    saved = supernet.sampled_nodes
    supernet.sampled_nodes = straight_through_nodes
    try:
        yield
    finally:
        supernet.sampled_nodes = saved
