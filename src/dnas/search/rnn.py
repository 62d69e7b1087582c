"""The recurrent search supernet and its architecture gradients
(docs/algorithms.md#rnn-search).

`RNNSearchCell` holds the weights of the DARTS recurrent search cell (W0, one W_i per node,
shared by the node's incoming edges) and alpha (36 edges x 5 ops). Every node sums its
incoming edges; search-time BatchNorm1d without affine parameters follows s0 and every node;
the cell output is the mean of the 8 nodes. The op weights of an edge are drawn once per
sequence (a BPTT segment) and shared by the batch and every time step:

- `softmax` (DARTS): softmax(alpha); every op of every edge runs (docs/algorithms.md#rnn-search).
- `gdas` + `gumbel: hard`: a hard Gumbel-softmax sample per edge (`dnas.search.gumbel`), value
  one-hot, straight-through gradient; **only the sampled op of each edge runs** (its output
  times the sampled weight, whose value is 1), the GDAS paper's point. Edges whose sample is
  'none' contribute nothing and are not computed.
- `gdas` + `gumbel: soft`: softmax((alpha + g) / tau), the soft Gumbel weights the GDAS RNN
  code used (`F.gumbel_softmax(..., hard=False)`, docs/algorithms.md#rnn-search), every op runs.

The architecture gradient, first or second order, is the CNN search's
(`dnas.search.architect.arch_gradient`; its second order here is `ClippedUnroll`, DARTS's RNN
architect), with the loss `dnas.models.rnn_lm.lm_arch_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dnas.models.rnn_lm import RecurrentCell, RNNLanguageModel
from dnas.search.gumbel import hard_gumbel_softmax, soft_gumbel_softmax
from dnas.spaces import rnn
from dnas.spaces.genotype import Genotype
from dnas.spaces.rnn import INIT_RANGE, RNN_OPS, STEPS

# How the cell mixes an edge's ops: softmax(alpha), or a hard or soft Gumbel sample.
GUMBEL_MODES = ("hard", "soft")
MODES = ("softmax", *GUMBEL_MODES)


class RNNSearchCell(RecurrentCell):
    def __init__(
        self,
        ninp: int,
        nhid: int,
        mode: str,
        steps: int = STEPS,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
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
        self.generator = generator
        # Looked up per call, so tests can count which ops run.
        self.activations = dict(rnn.ACTIVATIONS)
        self._weights: torch.Tensor | None = None
        self._plan: list | None = None

    def probs(self) -> torch.Tensor:
        return F.softmax(self.alpha.detach(), dim=-1)

    def begin(self, tau: float | None, detach_alpha: bool = False) -> None:
        """Draw this sequence's op weights at Gumbel temperature `tau` (and, for hard sampling,
        the plan of which op runs on which edge: one host sync for all edges); with
        `detach_alpha` (the weight step) no gradient reaches alpha."""
        if tau is None and self.mode in GUMBEL_MODES:
            raise ValueError(f"Gumbel mixing ({self.mode}) samples at a temperature: pass tau")
        alpha = self.alpha.detach() if detach_alpha else self.alpha
        self._plan = None
        if self.mode == "softmax":
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

    def __init__(
        self,
        vocab_size: int,
        emsize: int,
        nhid: int,
        mode: str,
        generator: torch.Generator | None = None,
        **dropouts,
    ) -> None:
        cell = RNNSearchCell(emsize, nhid, mode, generator=generator)
        super().__init__(cell, vocab_size, emsize, nhid, **dropouts)

    def forward(
        self,
        tokens: torch.Tensor,
        hidden: torch.Tensor,
        tau: float | None = None,
        detach_alpha: bool = False,
    ):
        """The language model's forward pass under one architecture draw at Gumbel temperature
        `tau` (None for softmax mixing); `detach_alpha`: the weight step (no gradient reaches
        alpha)."""
        self.cell.begin(tau, detach_alpha)
        return super().forward(tokens, hidden)

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
