"""The architecture gradient of bilevel search, one contract for the CNN and the recurrent
track (docs/algorithms.md#darts-first-and-second-order, docs/algorithms.md#rnn-search).

    arch_gradient(net, loss_fn, train, valid, tau, unroll=None, extra_loss=None) -> ArchGrad

`loss_fn(net, batch, tau)` gives (loss, output) of a batch (the CNN: cross-entropy and logits
of (x, y); the language model: cross-entropy and the next hidden state of (x, y, hidden)),
every forward pass sampling at the Gumbel temperature `tau`. The result holds the gradient of
each architecture parameter (None where it took no part, as backward() would leave it), the
validation loss and the validation output, all detached; the caller puts the gradients in
`.grad` and steps its optimiser. `extra_loss(net)` adds architecture-only terms (DrNAS's KL
regulariser) to the validation loss.

First order (`unroll=None`): grad_alpha = d/dalpha L_val(w, alpha).

Second order: `unroll` is the virtual weight step, one of two published variants:

- `MomentumUnroll` (DARTS `Architect._backward_step_unrolled`, the CNN search):
  1. w' = w - xi * (mu * m + d/dw L_train(w, alpha) + lambda * w), with the weight optimiser's
     learning rate xi, momentum mu and buffer m (zero before the first step), weight decay lambda;
  2. at w': g = d/dalpha L_val(w', alpha) and v = d/dw' L_val(w', alpha);
  3. the Hessian-vector product by central finite differences with eps = 0.01 / ||v||:
     H v ~ [d/dalpha L_train(w + eps v, alpha) - d/dalpha L_train(w - eps v, alpha)] / (2 eps);
  4. grad_alpha = g - xi * H v.
  The weights are moved in place and put back bit for bit (DARTS builds a copy of the model
  instead); batch-norm running statistics are restored too, so the step leaves the network as
  it found it. Both finite-difference passes draw the same mixing weights (common random
  numbers).
- `ClippedUnroll` (DARTS's RNN architect, the recurrent search): plain SGD unrolling
  w' = w - eta (clip(g) + wd w), the weight gradient g clipped to the search's grad_clip (0.25);
  w' is substituted functionally (torch.func), v is clipped as well, and the finite-difference
  Hessian term is scaled by eta * clip_coef, with clip_coef = min(1, clip / |g|) the factor
  actually applied to the gradient. The +eps, -eps passes walk w + eps v, w - eps v, w.

The second order runs in float32 even inside a bfloat16 autocast (`common.bf16`): the +-eps v
perturbation is about a hundredth of bfloat16's resolution relative to the weights, so in
bfloat16 the finite difference is mostly rounding noise, and it dominates the alpha gradient
(docs/protocols.md). The weight steps around it may stay in bfloat16.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from dnas.checkpoint import rng_state, set_rng_state

LossFn = Callable[[nn.Module, tuple, "float | None"], tuple[torch.Tensor, torch.Tensor]]


class ArchGrad(NamedTuple):
    grads: list[torch.Tensor | None]  # d/d alpha, one per architecture parameter
    loss: torch.Tensor  # the validation loss (without extra_loss)
    out: torch.Tensor  # the validation forward pass's output: logits, or the next hidden state


def arch_gradient(
    net: nn.Module,
    loss_fn: LossFn,
    train: tuple,
    valid: tuple,
    tau: float | None,
    unroll: MomentumUnroll | ClippedUnroll | None = None,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
) -> ArchGrad:
    """First order without `unroll`, else the second order `unroll` describes (module doc)."""
    if unroll is None:
        loss, out = loss_fn(net, valid, tau)
        total = loss + extra_loss(net) if extra_loss is not None else loss
        grads = torch.autograd.grad(total, net.arch_parameters(), allow_unused=True)
        return ArchGrad(list(grads), loss.detach(), out.detach())
    with torch.autocast(net.arch_parameters()[0].device.type, enabled=False):
        return unroll.gradient(net, loss_fn, train, valid, tau, extra_loss)


def _grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _with_extra(loss, net, extra_loss):
    return loss + extra_loss(net) if extra_loss is not None else loss


def _norm(tensors) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


@dataclass(frozen=True)
class MomentumUnroll:
    """DARTS's CNN virtual step: the weight optimiser's own SGD step (module doc)."""

    w_opt: torch.optim.SGD
    r: float = 1e-2

    def gradient(self, net, loss_fn, train, valid, tau, extra_loss) -> ArchGrad:
        weights = net.weight_parameters()
        alphas = net.arch_parameters()
        group = self.w_opt.param_groups[0]
        xi, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        buffers = [b.detach().clone() for b in net.buffers()]
        originals = [w.detach().clone() for w in weights]

        # 1. The virtual step w' (no graph kept: DARTS treats w' as data).
        g_train = _grads(loss_fn(net, train, tau)[0], weights)
        with torch.no_grad():
            for w, g in zip(weights, g_train):
                m = self.w_opt.state.get(w, {}).get("momentum_buffer")
                step = g + wd * w if m is None else mu * m + g + wd * w
                w.sub_(xi * step)

        # 2. Gradients of the validation loss at w'.
        loss, logits = loss_fn(net, valid, tau)
        grads = _grads(_with_extra(loss, net, extra_loss), alphas + weights)
        g_alpha, v = grads[: len(alphas)], grads[len(alphas) :]

        # 3. Finite-difference Hessian-vector product around the original w, both passes with
        # the same mixing weights where the algorithm samples them, so the difference measures
        # the weights' effect, not the noise.
        eps = self.r / torch.sqrt(sum((vi * vi).sum() for vi in v)).clamp_min(1e-12)
        hvp_terms = []
        rng = rng_state()
        generator = getattr(net, "generator", None)
        gumbel = None if generator is None else generator.get_state()
        for sign in (1.0, -1.0):
            set_rng_state(rng)
            if gumbel is not None:
                generator.set_state(gumbel)
            with torch.no_grad():
                for w, w0, vi in zip(weights, originals, v):
                    w.copy_(w0 + sign * eps * vi)
            hvp_terms.append(_grads(loss_fn(net, train, tau)[0], alphas))
        with torch.no_grad():
            for w, w0 in zip(weights, originals):
                w.copy_(w0)
            for b, b0 in zip(net.buffers(), buffers):
                b.copy_(b0)
        hvp = [(gp - gn) / (2 * eps) for gp, gn in zip(*hvp_terms)]

        # 4. Combine.
        return ArchGrad([g - xi * h for g, h in zip(g_alpha, hvp)], loss.detach(), logits.detach())


@dataclass(frozen=True)
class ClippedUnroll:
    """DARTS's RNN virtual step: clipped plain SGD at this step's learning rate (module doc)."""

    lr: float
    weight_decay: float
    clip: float  # 0: no clipping
    r: float = 1e-2

    def gradient(self, net, loss_fn, train, valid, tau, extra_loss) -> ArchGrad:
        eta, wd, clip = self.lr, self.weight_decay, self.clip
        alphas = net.arch_parameters()
        arch_ids = {id(a) for a in alphas}
        named = [(n, p) for n, p in net.named_parameters() if id(p) not in arch_ids]
        weights = [p for _, p in named]
        # 1. one (clipped) SGD step on the training batch: w' = w - eta (g + wd w)
        g = [gi.detach() for gi in torch.autograd.grad(loss_fn(net, train, tau)[0], weights)]
        clip_coef = _clip_(g, clip) if clip > 0 else torch.ones((), device=g[0].device)
        unrolled = {
            n: (w.detach() - eta * (gi + wd * w.detach())).requires_grad_()
            for (n, w), gi in zip(named, g)
        }
        # 2. the validation loss at w': grad_alpha and v = grad_w' (clipped as well)
        loss, out = loss_fn(_Functional(net, unrolled), valid, tau)
        grads = torch.autograd.grad(
            _with_extra(loss, net, extra_loss), [*alphas, *unrolled.values()]
        )
        d_alpha, v = list(grads[: len(alphas)]), [t.detach() for t in grads[len(alphas) :]]
        if clip > 0:
            _clip_(v, clip)
        # 3. finite differences: [grad_alpha L_train(w + e v) - grad_alpha L_train(w - e v)] / 2e
        eps = self.r / _norm(v)
        grads_pm = []
        for sign in (1.0, -2.0):
            with torch.no_grad():
                for w, t in zip(weights, v):
                    w.add_(sign * eps * t)
            grads_pm.append(torch.autograd.grad(loss_fn(net, train, tau)[0], alphas))
        with torch.no_grad():
            for w, t in zip(weights, v):
                w.add_(eps * t)
        combined = [
            da - eta * clip_coef * (gp - gm) / (2 * eps)
            for da, gp, gm in zip(d_alpha, grads_pm[0], grads_pm[1])
        ]
        return ArchGrad(combined, loss.detach(), out.detach())


def _clip_(grads, max_norm: float) -> torch.Tensor:
    """Scale `grads` in place to total norm at most `max_norm`; return the factor (<= 1)."""
    coef = torch.clamp(max_norm / (_norm(grads) + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)
    return coef


class _Functional(nn.Module):
    """The model called with substituted weights (torch.func.functional_call)."""

    def __init__(self, model: nn.Module, params: dict) -> None:
        super().__init__()
        self.model = model
        self.params = params

    def forward(self, *args, **kwargs):
        return functional_call(self.model, self.params, args, kwargs, strict=False)
