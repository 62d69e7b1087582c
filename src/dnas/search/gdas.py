"""GDAS (Dong & Yang, CVPR 2019): the algorithm (`GDAS`), how the supernet uses its hard
Gumbel-softmax sample, and its temperature schedule (docs/algorithms.md#gdas-sampler).

`GDAS.draw` takes one hard sample per cell type (`sample_per` "network", AutoDL) or per cell
("cell", the CVPR code) at temperature tau; only the sampled op of each edge runs, scaled by its
straight-through weight, so gradients reach every alpha through the softmax. With
`unselected_grad` the zero weights of the other ops get the node's gradient sum too (AutoDL's
NAS-Bench-201 code; `auto` = the space's own, `Supernet.unselected_grad_auto`).

The sampler itself (hard Gumbel-softmax with a straight-through gradient) is
`dnas.search.gumbel.hard_gumbel_softmax`, shared with SNAS and the recurrent search. One
sample is shared by the whole minibatch, as in every official version
(docs/algorithms.md#gdas-implementations).

`sampled_sum` is how a node of the supernet uses the sample (docs/speed.md): its value is the
plain sum of the sampled ops' outputs, since hard = one_hot in value, and its backward gives the
weights exactly the gradients of sum_e (hard_e[k_e] * h_e + unselected_e), computed from the
node's gradient alone instead of two extra passes over each edge's output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from dnas.search.algorithm import Algorithm, Draw
from dnas.search.gumbel import hard_gumbel_softmax

if TYPE_CHECKING:
    from dnas.config import Search


class GDAS(Algorithm):
    name = "gdas"

    def __init__(
        self,
        settings: Search | None = None,
        *,
        sample_per: str = "network",
        unselected_grad: bool = False,
    ) -> None:
        super().__init__(settings)
        self.sample_per = sample_per
        self._unselected_grad = unselected_grad

    @classmethod
    def configure(cls, settings: Search | None, space_unselected_grad: bool = False) -> GDAS:
        if settings is None:
            return cls()
        unselected = settings.unselected_grad
        if unselected == "auto":
            unselected = space_unselected_grad
        return cls(settings, sample_per=settings.sample_per, unselected_grad=unselected)

    def unselected_grad(self) -> bool:
        return self._unselected_grad

    def draw(self, net: Any, tau: float | None, detach_alpha: bool) -> list[Draw]:
        if tau is None:
            raise ValueError("gdas samples at a temperature: pass tau")
        return [(w, idx, None) for w, idx in self.sample(net, tau, detach_alpha)]

    def sample(
        self, net: Any, tau: float, detach_alpha: bool = False
    ) -> list[tuple[torch.Tensor, list[int]]]:
        """One forward pass's architecture at temperature `tau`: (weights, op indices) per
        searched cell, in the order of `net.cell_sequence`."""
        per_cell = self.sample_per == "cell"
        draws = {}
        for t in net.cell_types:
            alpha = net.alphas[t].detach() if detach_alpha else net.alphas[t]
            n = net.cell_sequence.count(t) if per_cell else 1
            draws[t] = hard_gumbel_softmax(alpha.expand(n, *alpha.shape), tau, net.generator)
        # One host sync for every edge of every cell.
        host = torch.cat([index.flatten() for _, index in draws.values()]).tolist()
        rows, start = {}, 0
        for t in net.cell_types:
            weights, index = draws[t]
            flat = host[start : start + index.numel()]
            start += index.numel()
            n_edges = index.shape[-1]
            rows[t] = [
                (weights[k], flat[k * n_edges : (k + 1) * n_edges]) for k in range(len(weights))
            ]
        seen = dict.fromkeys(net.cell_types, 0)
        out = []
        for t in net.cell_sequence:
            out.append(rows[t][seen[t] if per_cell else 0])
            seen[t] += 1
        return out

    @classmethod
    def rnn_mixing(cls, gumbel: str) -> str:
        return gumbel  # hard (the paper) or soft (the GDAS RNN code)


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<a, b> in one pass when both share a dense layout (contiguous or channels-last)."""
    if a.shape == b.shape and a.dtype == b.dtype:
        if a.is_contiguous() and b.is_contiguous():
            return torch.dot(a.view(-1), b.view(-1))
        if a.dim() == 4:
            cl = torch.channels_last
            if a.is_contiguous(memory_format=cl) and b.is_contiguous(memory_format=cl):
                return torch.dot(a.permute(0, 2, 3, 1).view(-1), b.permute(0, 2, 3, 1).view(-1))
    return (a * b).sum()


class _SampledSum(torch.autograd.Function):
    """Forward: the sum of the sampled ops' outputs. Backward: each output gets the node's
    gradient g unchanged (hard[k] is exactly 1); weights[e, k_e] gets <g, h_e> (0 for a skipped
    'none'), and with `unselected` every other weight of the edge's row gets sum(g)."""

    @staticmethod
    def forward(ctx, weights, slots, unselected, *hs):
        ctx.slots, ctx.unselected = slots, unselected
        ctx.w_shape, ctx.w_dtype = weights.shape, weights.dtype
        ctx.save_for_backward(*hs)
        out = hs[0]
        for h in hs[1:]:
            out = out + h
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        hs = ctx.saved_tensors
        grad_w = None
        if ctx.needs_input_grad[0]:
            grad_w = torch.zeros(ctx.w_shape, dtype=ctx.w_dtype, device=g.device)
            total = g.sum() if ctx.unselected else None
            it = iter(hs)
            for row, k, has_output in ctx.slots:
                if total is not None:
                    grad_w[row] = total
                grad_w[row, k] = _inner(g, next(it)) if has_output else 0.0
        grads_h = [g if need else None for need in ctx.needs_input_grad[3:]]
        return (grad_w, None, None, *grads_h)


def sampled_sum(
    weights: torch.Tensor,
    terms: list[tuple[int, int, torch.Tensor | None]],
    unselected_grad: bool = False,
) -> torch.Tensor:
    """A node of the GDAS supernet: sum over its edges of hard[e, k_e] * h_e, plus (with
    `unselected_grad`) the zero-valued weights hard[e, k] of the other ops, as AutoDL adds them.

    `weights` (E, K) are the hard samples of a cell, `terms` (e, k_e, h_e) the node's edges with
    their sampled op and its output, None for a 'none' op that was skipped (its output is zero;
    at least one term must hold a tensor). Values and gradients equal those of the formula, and
    only the weights' backward reads the outputs (kept for it only when it is needed).
    """
    hs = [h for _, _, h in terms if h is not None]
    if not (weights.requires_grad and torch.is_grad_enabled()):
        out = hs[0]  # the weight step: alphas detached, the value is all that matters
        for h in hs[1:]:
            out = out + h
        return out
    slots = tuple((row, k, h is not None) for row, k, h in terms)
    return _SampledSum.apply(weights, slots, unselected_grad, *hs)


class _ZeroGradTo(torch.autograd.Function):
    """Forward: `out`. Backward: `out`'s gradient, and a zero gradient for each of `dead`."""

    @staticmethod
    def forward(ctx, out, *dead):
        ctx.shapes = [(d.shape, d.dtype, d.device) for d in dead]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        zeros = [torch.zeros((), dtype=t, device=d).expand(s) for s, t, d in ctx.shapes]
        return (g, *zeros)


def zero_grad_to(out: torch.Tensor, dead: list[torch.Tensor]) -> torch.Tensor:
    """`out`, through which the tensors in `dead` get a zero gradient: what a skipped 'none'
    op (x * 0) would have given a state that feeds nothing else, so that the parameters
    behind it get zeros (momentum and weight decay still step them), not None."""
    dead = [d for d in dead if d.requires_grad]
    if not dead or not torch.is_grad_enabled():
        return out
    return _ZeroGradTo.apply(out, *dead)


def tau_at(epoch: int, epochs: int, tau_max: float, tau_min: float, schedule: str) -> float:
    """Linear decay per epoch (docs/algorithms.md#gdas-schedules). "to_last_epoch" reaches
    tau_min at the last epoch (AutoDL); "to_end" is tau_max - epoch/epochs * (tau_max -
    tau_min), which stops one step above tau_min (the GDAS CVPR code,
    docs/algorithms.md#gdas-implementations; SNAS's temperature, docs/algorithms.md#snas)."""
    if schedule == "to_end":
        return tau_max - (tau_max - tau_min) * epoch / epochs
    if epochs <= 1:
        return tau_max
    return tau_max - (tau_max - tau_min) * epoch / (epochs - 1)
