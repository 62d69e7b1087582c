"""The architecture gradient of bilevel search: first order, or DARTS's unrolled second order.

First order: grad_alpha = d/dalpha L_val(w, alpha).

Second order (docs/algorithms.md#darts-first-and-second-order, DARTS
`Architect._backward_step_unrolled`):

1. a virtual weight step with the current learning rate xi, the SGD momentum buffer m (zero
   before the first step) and weight decay lambda:
   w' = w - xi * (mu * m + d/dw L_train(w, alpha) + lambda * w);
2. at w': g = d/dalpha L_val(w', alpha) and v = d/dw' L_val(w', alpha);
3. the Hessian-vector product by central finite differences with eps = 0.01 / ||v||:
   H v ~ [d/dalpha L_train(w + eps v, alpha) - d/dalpha L_train(w - eps v, alpha)] / (2 eps);
4. grad_alpha = g - xi * H v.

The weights are moved in place and put back bit for bit (DARTS builds a copy of the model
instead); batch-norm running statistics are restored too, so the arch step leaves the network
as it found it. `extra_loss(net)` adds architecture-only terms (DrNAS's KL regulariser) to the
validation loss.

The whole second-order gradient runs in float32 even inside a bfloat16 autocast (`common.bf16`):
the +-eps v perturbation is about a hundredth of bfloat16's resolution relative to the weights,
so in bfloat16 the finite difference is mostly rounding noise, and it dominates the alpha
gradient (docs/protocols.md). The weight steps around it may stay in bfloat16.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dnas.checkpoint import rng_state, set_rng_state
from dnas.search.supernet import Supernet

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def first_order(
    net: Supernet, xv: torch.Tensor, yv: torch.Tensor, tau: float | None, extra_loss=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backpropagate L_val into the alphas (and the weights, whose gradients the next weight
    step clears); `tau` is the Gumbel temperature of the forward pass. Returns (loss, logits)."""
    logits = net(xv, tau)
    loss = F.cross_entropy(logits, yv)
    total = loss + extra_loss(net) if extra_loss is not None else loss
    total.backward()
    return loss.detach(), logits.detach()


def unrolled_arch_grad(
    net: Supernet,
    w_opt: torch.optim.SGD,
    xt: torch.Tensor,
    yt: torch.Tensor,
    xv: torch.Tensor,
    yv: torch.Tensor,
    tau: float | None,
    r: float = 1e-2,
    extra_loss=None,
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The second-order architecture gradient, in float32 whatever autocast is active; every
    forward pass samples at the Gumbel temperature `tau`.
    Returns (grads per alpha, L_val(w'), logits)."""
    device_type = net.arch_parameters()[0].device.type
    with torch.autocast(device_type, enabled=False):
        return _unrolled(net, w_opt, xt, yt, xv, yv, tau, r, extra_loss)


def _unrolled(net, w_opt, xt, yt, xv, yv, tau, r, extra_loss):
    weights = net.weight_parameters()
    alphas = net.arch_parameters()
    group = w_opt.param_groups[0]
    xi, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
    buffers = [b.detach().clone() for b in net.buffers()]
    originals = [w.detach().clone() for w in weights]

    # 1. The virtual step w' (no graph kept: DARTS treats w' as data,
    # docs/algorithms.md#darts-first-and-second-order).
    g_train = _grads(F.cross_entropy(net(xt, tau), yt), weights)
    with torch.no_grad():
        for w, g in zip(weights, g_train):
            m = w_opt.state.get(w, {}).get("momentum_buffer")
            step = g + wd * w if m is None else mu * m + g + wd * w
            w.sub_(xi * step)

    # 2. Gradients of the validation loss at w'.
    logits = net(xv, tau)
    loss = F.cross_entropy(logits, yv)
    total = loss + extra_loss(net) if extra_loss is not None else loss
    grads = _grads(total, alphas + weights)
    g_alpha, v = grads[: len(alphas)], grads[len(alphas) :]

    # 3. Finite-difference Hessian-vector product around the original w.
    eps = r / torch.sqrt(sum((vi * vi).sum() for vi in v)).clamp_min(1e-12)
    hvp_terms = []
    # Both passes draw the same mixing weights (common random numbers) where the algorithm
    # samples them, so the difference measures the weights' effect, not the noise.
    rng = rng_state()
    gumbel = None if net.generator is None else net.generator.get_state()
    for sign in (1.0, -1.0):
        set_rng_state(rng)
        if gumbel is not None:
            net.generator.set_state(gumbel)
        with torch.no_grad():
            for w, w0, vi in zip(weights, originals, v):
                w.copy_(w0 + sign * eps * vi)
        hvp_terms.append(_grads(F.cross_entropy(net(xt, tau), yt), alphas))
    with torch.no_grad():
        for w, w0 in zip(weights, originals):
            w.copy_(w0)
        for b, b0 in zip(net.buffers(), buffers):
            b.copy_(b0)
    hvp = [(gp - gn) / (2 * eps) for gp, gn in zip(*hvp_terms)]

    # 4. Combine.
    return [g - xi * h for g, h in zip(g_alpha, hvp)], loss.detach(), logits.detach()
