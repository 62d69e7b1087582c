"""The steps of a CNN search iteration, as plain functions
(docs/algorithms.md#gdas-schedules, docs/algorithms.md#darts-first-and-second-order,
docs/algorithms.md#snas, docs/algorithms.md#drnas).

Bilevel (GDAS, DARTS, DrNAS), one iteration (`bilevel_iteration`):

    weight step:        w <- SGD(w, d/dw L_train(w, alpha_sample))          alpha held still
    architecture step:  alpha <- Adam(alpha, d/dalpha L_val(w, alpha))    first or second order

in `search.step_order`. Single level (SNAS, `joint_step`): one backward pass over a training
batch updates weights and alphas together, with the resource penalty.

Each step takes what it changes, a `SearchState` (the supernet and its optimisers; a DrNAS
stage change makes a new one), what stays fixed for the search, `StepContext` (the settings and the
fast path), and this rank's `Shard` of each batch: data parallelism lives in the loader
(`dnas.distributed.shards`) and in the one gradient average after each backward pass. Each
returns the loss and the (loss * examples, correct) sums of its batch for the logs.

The weight steps clear the weights' gradients as `search.zero_grad` says
(docs/algorithms.md#gradients-of-unused-weights): `zeros` gives every weight a zero gradient
before each backward pass, so SGD's weight decay and momentum move the weights that the step's
architecture did not use (GDAS's unsampled ops), as the authors' code did (PyTorch before 2.0
kept zero tensors in `zero_grad()`); `none` clears them to None, and SGD skips those weights.

Every forward pass draws its own architecture sample at Gumbel temperature `tau`. Under
torchrun, per-example noise (drop-path) comes from a generator of its own per step and rank
(`key`); DrNAS's Dirichlet sample comes from the global generator and must be the same on
every rank, so its steps share theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from dnas import distributed as dist
from dnas.config import Search
from dnas.runtime import FastPath
from dnas.search.algorithm import Algorithm
from dnas.search.architect import MomentumUnroll, arch_gradient
from dnas.search.supernet import Supernet


class SearchState(NamedTuple):
    """What the steps change: the supernet, its weights' SGD and cosine schedule, and the
    alphas' optimiser."""

    net: Supernet
    w_opt: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.LRScheduler
    a_opt: torch.optim.Optimizer

    def stateful(self) -> dict:
        """The parts a checkpoint holds."""
        return {"model": self.net, "w_opt": self.w_opt, "scheduler": self.scheduler,
                "a_opt": self.a_opt}  # fmt: skip


@dataclass(frozen=True)
class StepContext:
    """What stays fixed for a search's steps: its settings, the fast path and device, the
    algorithm, its resource penalty's cost tables (single level; None without a penalty) and
    its regulariser of the architecture step (None without one)."""

    s: Search
    fast: FastPath
    device: torch.device
    algorithm: Algorithm
    costs: dict | None = None
    extra_loss: Callable[[Supernet], torch.Tensor] | None = None

    @classmethod
    def of(cls, s: Search, fast: FastPath, device, algorithm: Algorithm, costs=None):
        return cls(s, fast, device, algorithm, costs, algorithm.regulariser(s))

    def noise(self, key: tuple, phase: int):
        """The per-step generator under torchrun (module doc); nothing in one process."""
        per_rank = not self.algorithm.shared_noise
        return dist.step_rng(self.device, *key, phase, per_rank=per_rank)


def cross_entropy_loss(net: Supernet, batch: tuple, tau: float | None):
    """(cross-entropy, logits) of a batch (x, y): the architecture gradient's `loss_fn`."""
    x, y = batch
    logits = net(x, tau)
    return F.cross_entropy(logits, y), logits


def clear_weight_grads(opt: torch.optim.Optimizer, mode: str) -> None:
    """Clear the gradients of `opt`'s parameters before a weight step's backward pass:
    `zeros` (every parameter holds a zero gradient, so the optimiser's weight decay and
    momentum apply to those the backward pass does not reach) or `none` (set to None; the
    optimiser skips them). `search.zero_grad`, module docstring."""
    if mode == "none":
        opt.zero_grad(set_to_none=True)
        return
    opt.zero_grad(set_to_none=False)  # zeros the gradients that exist, in place
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is None:  # never reached yet (or just restored from a checkpoint)
                p.grad = torch.zeros_like(p)


def _clip(params, max_norm: float) -> None:
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


def weight_step(st: SearchState, ctx: StepContext, b: dist.Shard, tau: float | None, key: tuple):
    """SGD on the weights from L_train of a sampled architecture; alpha gets no gradient."""
    net, fast = st.net, ctx.fast
    clear_weight_grads(st.w_opt, ctx.s.zero_grad)
    with ctx.noise(key, 0), fast.autocast(ctx.device):
        logits = net(fast.inputs(b.x), tau, detach_alpha=True)
        loss = F.cross_entropy(logits, b.y)
    loss.backward()
    dist.average_gradients(net.weight_parameters(), b.weight)
    _clip(net.weight_parameters(), ctx.s.grad_clip)
    st.w_opt.step()
    loss = loss.detach()
    return loss, b.sums(loss, (logits.argmax(1) == b.y).sum())


def arch_step(
    st: SearchState,
    ctx: StepContext,
    train: dist.Shard,
    valid: dist.Shard,
    tau: float | None,
    key: tuple,
    moves: bool = True,
):
    """The optimiser's step on the alphas from the gradient of L_val, first order or DARTS's
    unrolled second order (which also reads the training batch); `moves=False` (DrNAS's
    warm-up) only watches L_val."""
    net, fast = st.net, ctx.fast
    xt, xv = fast.inputs(train.x), fast.inputs(valid.x)
    if not moves:
        with torch.no_grad(), ctx.noise(key, 1), fast.autocast(ctx.device):
            logits = net(xv, tau)
            loss = F.cross_entropy(logits, valid.y)
        return loss, valid.sums(loss, (logits.argmax(1) == valid.y).sum())
    st.a_opt.zero_grad(set_to_none=True)
    unroll = MomentumUnroll(st.w_opt) if ctx.s.order == 2 else None
    with ctx.noise(key, 1), fast.autocast(ctx.device):  # backward passes in the forward dtypes
        grads, loss, logits = arch_gradient(
            net, cross_entropy_loss, (xt, train.y), (xv, valid.y), tau, unroll, ctx.extra_loss
        )
    for a, g in zip(net.arch_parameters(), grads):
        a.grad = g
    dist.average_gradients(net.arch_parameters(), valid.weight)
    _clip(net.arch_parameters(), ctx.s.arch_grad_clip)
    st.a_opt.step()
    return loss, valid.sums(loss, (logits.argmax(1) == valid.y).sum())


def bilevel_iteration(
    st: SearchState,
    ctx: StepContext,
    train: dist.Shard,
    valid: dist.Shard,
    tau: float | None,
    key: tuple,
    arch_moves: bool = True,
):
    """One GDAS / DARTS / DrNAS iteration: a weight step on a search-train batch and an
    architecture step on a search-valid batch, in `step_order`; ((loss, sums) of the weight
    step, (loss, sums) of the architecture step)."""
    if ctx.s.step_order == "weights_first":
        w = weight_step(st, ctx, train, tau, key)
        a = arch_step(st, ctx, train, valid, tau, key, arch_moves)
    else:
        a = arch_step(st, ctx, train, valid, tau, key, arch_moves)
        w = weight_step(st, ctx, train, tau, key)
    return w, a


def joint_step(st: SearchState, ctx: StepContext, b: dist.Shard, tau: float | None, key: tuple):
    """SNAS: weights and alphas from one backward pass of L_train (+ the resource penalty)."""
    s, net, fast = ctx.s, st.net, ctx.fast
    clear_weight_grads(st.w_opt, s.zero_grad)
    st.a_opt.zero_grad(set_to_none=True)
    with ctx.noise(key, 0), fast.autocast(ctx.device):
        logits, weights = net.forward_drawn(fast.inputs(b.x), tau)
        loss = F.cross_entropy(logits, b.y)
    total = loss
    if ctx.costs is not None:
        total = loss + ctx.algorithm.penalty(s, weights, ctx.costs)
    total.backward()
    dist.average_gradients(net.parameters(), b.weight)
    _clip(net.weight_parameters(), s.grad_clip)
    _clip(net.arch_parameters(), s.arch_grad_clip)
    st.w_opt.step()
    st.a_opt.step()
    loss = loss.detach()
    return loss, b.sums(loss, (logits.argmax(1) == b.y).sum())


def watch_test(st: SearchState, ctx: StepContext, loader, tau: float | None):
    """SNAS: the (loss * examples, correct) sums of sampled architectures over the test split,
    summed over the ranks, and its example count."""
    net, fast = st.net, ctx.fast
    net.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=ctx.device)
    n = 0
    with torch.no_grad():
        for b in dist.shards(loader):
            n += b.n
            with fast.autocast(ctx.device):
                logits = net(fast.inputs(b.x), tau)
                loss = F.cross_entropy(logits, b.y)
            sums += b.sums(loss, (logits.argmax(1) == b.y).sum())
    net.train()
    return dist.all_reduce_sum(sums), n
