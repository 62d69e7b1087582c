"""The recurrent search supernet and its architecture gradients
(docs/algorithms.md#rnn-search).

`RNNSearchCell` holds the weights of the DARTS recurrent search cell (W0, one W_i per node,
shared by the node's incoming edges) and alpha (36 edges x 5 ops). Every node sums its
incoming edges; search-time BatchNorm1d without affine parameters follows s0 and every node;
the cell output is the mean of the 8 nodes. The op weights of an edge are drawn once per
sequence (a BPTT segment) and shared by the batch and every time step:

- `darts`: softmax(alpha); every op of every edge runs (docs/algorithms.md#rnn-search).
- `gdas` + `gumbel: hard`: a hard Gumbel-softmax sample per edge (`dnas.search.gumbel`), value
  one-hot, straight-through gradient; **only the sampled op of each edge runs** (its output
  times the sampled weight, whose value is 1), the GDAS paper's point. Edges whose sample is
  'none' contribute nothing and are not computed.
- `gdas` + `gumbel: soft`: softmax((alpha + g) / tau), the soft Gumbel weights the GDAS RNN
  code used (`F.gumbel_softmax(..., hard=False)`, docs/algorithms.md#rnn-search), every op runs.

The second-order step (`unrolled_arch_grad`) is DARTS's RNN architect
(docs/algorithms.md#rnn-search): plain SGD unrolling w' = w - eta (clip(g) + wd w), where the weight
gradient is clipped to the search's grad_clip (0.25), and the finite-difference Hessian term scaled
by eta * clip_coef. Here clip_coef = min(1, clip / |g|), the factor actually applied to the
gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dnas.models.rnn_lm import RecurrentCell, RNNLanguageModel, lm_loss
from dnas.search.gumbel import hard_gumbel_softmax, soft_gumbel_softmax
from dnas.spaces import rnn
from dnas.spaces.genotype import Genotype
from dnas.spaces.rnn import INIT_RANGE, RNN_OPS, STEPS


class RNNSearchCell(RecurrentCell):
    def __init__(self, ninp: int, nhid: int, mode: str, steps: int = STEPS) -> None:
        super().__init__()
        if mode not in ("darts", "hard", "soft"):
            raise ValueError(f"unknown mixing mode {mode!r}")
        self.nhid, self.steps, self.mode = nhid, steps, mode
        self.ops = RNN_OPS
        self.w0 = nn.Parameter(torch.empty(ninp + nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE))
        self.ws = nn.ParameterList(
            nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE))
            for _ in range(steps)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(nhid, affine=False) for _ in range(steps + 1))
        n_edges = steps * (steps + 1) // 2
        self.alpha = nn.Parameter(1e-3 * torch.randn(n_edges, len(self.ops)))
        self.generator: torch.Generator | None = None
        self.detach_alpha = False
        # Looked up per call, so tests can count which ops run.
        self.activations = dict(rnn.ACTIVATIONS)
        self._weights: torch.Tensor | None = None
        self._plan: list | None = None

    def probs(self) -> torch.Tensor:
        return F.softmax(self.alpha.detach(), dim=-1)

    def begin(self, tau: float | None) -> None:
        """Draw this sequence's op weights at Gumbel temperature `tau` (and, for hard sampling,
        the plan of which op runs on which edge: one host sync for all edges)."""
        if tau is None and self.mode != "darts":
            raise ValueError(f"Gumbel mixing ({self.mode}) samples at a temperature: pass tau")
        alpha = self.alpha.detach() if self.detach_alpha else self.alpha
        self._plan = None
        if self.mode == "darts":
            self._weights = F.softmax(alpha, dim=-1)
        elif self.mode == "soft":
            self._weights = soft_gumbel_softmax(alpha, tau, self.generator)
        else:
            self._weights, index = hard_gumbel_softmax(alpha, tau, self.generator)
            self.set_plan(index.tolist())

    def set_plan(self, index: list[int]) -> None:
        """Per node: for each op other than 'none', the predecessors whose edge sampled it."""
        plan, start = [], 0
        device = self.alpha.device
        for i in range(1, self.steps + 1):
            groups: dict[int, list[int]] = {}
            for j in range(i):
                k = index[start + j]
                if self.ops[k] != "none":
                    groups.setdefault(k, []).append(j)
            plan.append(
                [
                    (k, js, torch.tensor([start + j for j in js], device=device))
                    for k, js in sorted(groups.items())
                ]
            )
            start += i
        self._plan = plan

    def step(self, x, h, x_mask, h_mask):
        s0 = self.bns[0](rnn.initial_state(x, h, self.w0, x_mask, h_mask))
        states = [s0]
        w = self._weights
        start = 0
        for i in range(1, self.steps + 1):
            if self._plan is not None:
                s = self._sampled_node(states, i, w, h_mask)
            else:
                s = self._mixed_node(states, i, w[start : start + i], h_mask)
            states.append(self.bns[i](s))
            start += i
        return torch.stack(states[1:]).mean(0)

    def _mixed_node(self, states, i, w, h_mask):
        """Every op on every edge into node i, weighted: sum_j sum_k w[j,k] * highway_k(s_j)."""
        prev = torch.stack(states)  # (i, B, nhid)
        inp = prev * h_mask if h_mask is not None else prev
        c, hh = (inp @ self.ws[i - 1]).chunk(2, dim=-1)
        gate = torch.sigmoid(c)
        s = torch.zeros_like(states[0])
        for k, op in enumerate(self.ops):
            if op == "none":
                continue
            out = prev + gate * (self.activations[op](hh) - prev)
            s = s + (w[:, k].view(-1, 1, 1) * out).sum(0)
        return s

    def _sampled_node(self, states, i, w, h_mask):
        """Only the sampled op of each edge into node i (the others are never computed)."""
        s = torch.zeros_like(states[0])
        for k, js, rows in self._plan[i - 1]:
            prev = torch.stack([states[j] for j in js])
            inp = prev * h_mask if h_mask is not None else prev
            c, hh = (inp @ self.ws[i - 1]).chunk(2, dim=-1)
            out = prev + torch.sigmoid(c) * (self.activations[self.ops[k]](hh) - prev)
            s = s + (w[rows, k].view(-1, 1, 1) * out).sum(0)
        return s


class RNNSupernet(RNNLanguageModel):
    """The search language model: `RNNLanguageModel` around an `RNNSearchCell`."""

    space = "rnn"

    def __init__(self, vocab_size: int, emsize: int, nhid: int, mode: str, **dropouts) -> None:
        super().__init__(RNNSearchCell(emsize, nhid, mode), vocab_size, emsize, nhid, **dropouts)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.cell.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p is not self.cell.alpha]

    def derive(self, keep_none: bool = False) -> Genotype:
        probs = self.cell.probs()
        cell = rnn.derive_cell(probs.cpu().numpy(), RNN_OPS, keep_none)
        labels = rnn.edge_labels(self.cell.steps)
        table = {label: dict(zip(RNN_OPS, row.tolist())) for label, row in zip(labels, probs)}
        return Genotype("rnn", {"rnn": cell}, probs={"rnn": table})


def first_order(model: RNNSupernet, x, y, hidden, tau: float | None):
    """grad_alpha of the validation cross-entropy at the current weights, sampling at Gumbel
    temperature `tau`; (grads, loss, hidden)."""
    _, loss, hidden = lm_loss(model, x, y, hidden, tau=tau)
    grads = torch.autograd.grad(loss, model.arch_parameters())
    return grads, loss.detach(), hidden


def _clip_(grads, max_norm: float) -> torch.Tensor:
    """Scale `grads` in place to total norm at most `max_norm`; return the factor (<= 1)."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)
    return coef


def unrolled_arch_grad(
    model: RNNSupernet,
    train: tuple,
    valid: tuple,
    eta: float,
    weight_decay: float,
    clip: float,
    tau: float | None,
    r: float = 1e-2,
):
    """DARTS's second-order architecture gradient for the recurrent search
    (docs/algorithms.md#rnn-search).

    `train` and `valid` are (x, y, hidden). Returns (grads of alpha, validation loss, the
    validation hidden state after the batch). Every forward pass samples at Gumbel temperature
    `tau`. Weights are left as they were. Runs in float32
    whatever autocast is active (see dnas.search.architect)."""
    with torch.autocast(model.cell.alpha.device.type, enabled=False):
        return _unrolled(model, train, valid, eta, weight_decay, clip, tau, r)


def _unrolled(model, train, valid, eta, weight_decay, clip, tau, r):
    names = [n for n, p in model.named_parameters() if p is not model.cell.alpha]
    weights = model.weight_parameters()
    alphas = model.arch_parameters()
    xt, yt, ht = train
    xv, yv, hv = valid
    # 1. one (clipped) SGD step on the training batch: w' = w - eta (g + wd w)
    _, loss_t, _ = lm_loss(model, xt, yt, ht, tau=tau)
    g = [gi.detach() for gi in torch.autograd.grad(loss_t, weights)]
    clip_coef = _clip_(g, clip) if clip > 0 else torch.ones((), device=g[0].device)
    unrolled = {
        n: (w.detach() - eta * (gi + weight_decay * w.detach())).requires_grad_()
        for n, w, gi in zip(names, weights, g)
    }
    # 2. the validation loss at w': grad_alpha and v = grad_w' (clipped as well)
    _, loss_v, hv_next = lm_loss(_Functional(model, unrolled), xv, yv, hv, tau=tau)
    grads = torch.autograd.grad(loss_v, [*alphas, *unrolled.values()])
    d_alpha, v = list(grads[: len(alphas)]), [t.detach() for t in grads[len(alphas) :]]
    if clip > 0:
        _clip_(v, clip)
    # 3. finite differences: [grad_alpha L_train(w + e v) - grad_alpha L_train(w - e v)] / 2e
    eps = r / torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in v]))
    grads_pm = []
    for sign in (1.0, -2.0):
        with torch.no_grad():
            for w, t in zip(weights, v):
                w.add_(sign * eps * t)
        _, loss, _ = lm_loss(model, xt, yt, ht, tau=tau)
        grads_pm.append(torch.autograd.grad(loss, alphas))
    with torch.no_grad():
        for w, t in zip(weights, v):
            w.add_(eps * t)
    out = [
        da - eta * clip_coef * (gp - gm) / (2 * eps)
        for da, gp, gm in zip(d_alpha, grads_pm[0], grads_pm[1])
    ]
    return out, loss_v.detach(), hv_next.detach()


class _Functional(nn.Module):
    """The model called with substituted weights (torch.func.functional_call)."""

    def __init__(self, model: nn.Module, params: dict) -> None:
        super().__init__()
        self.model = model
        self.params = params

    def forward(self, *args):
        return functional_call(self.model, self.params, args, strict=False)
