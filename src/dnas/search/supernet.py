"""Supernets of the DARTS and NAS-Bench-201 spaces, mixed the GDAS way.

Each edge holds every candidate op; a forward pass draws one architecture (`sample_per` =
"network": one sample for all cells of a type, AutoDL; "cell": a new sample per cell, the CVPR
code, reference §1.0) and runs **only the sampled op** on each edge, scaled by its straight-
through weight, so gradients reach every alpha through the softmax. The sampled indices of all
edges reach the host in one `.tolist()`: one sync per forward pass, none per edge.

With `unselected_grad`, the zero-valued weights of the other ops are added as scalars, so each
of their alphas also gets the gradient sum(dL/d node): the AutoDL NAS-Bench-201 behaviour
(reference §1.6).
"""

from __future__ import annotations

import torch
from torch import nn

from dnas.search.gdas import hard_gumbel_softmax
from dnas.spaces import darts, nb201
from dnas.spaces.genotype import Genotype
from dnas.spaces.ops import (
    DARTS_OPS,
    NB201_OPS,
    ResNetBasicBlock,
    cell_preprocess,
    darts_op,
    nb201_op,
)


class MixedEdge(nn.Module):
    """All candidate ops of one edge; runs the one that was sampled."""

    def __init__(self, ops: list[nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, index: int, unselected_grad: bool
    ) -> torch.Tensor:
        out = self.ops[index](x) * weights[index]
        if unselected_grad:
            others = torch.cat([weights[:index], weights[index + 1 :]])
            out = out + others.sum()
        return out


class DartsSearchCell(nn.Module):
    def __init__(
        self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool, steps: int
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.pre0, self.pre1 = cell_preprocess(c_pp, c_p, c, reduction_prev, affine=False)
        self.edges = nn.ModuleList(
            MixedEdge([darts_op(op, c, 2 if reduction and j < 2 else 1, False) for op in DARTS_OPS])
            for _, j in darts.edges(steps)
        )

    def forward(self, s0, s1, weights, indices, unselected_grad):
        states = [self.pre0(s0), self.pre1(s1)]
        e = 0
        for _ in range(self.steps):
            node = 0
            for h in states:
                node = node + self.edges[e](h, weights[e], indices[e], unselected_grad)
                e += 1
            states.append(node)
        return torch.cat(states[2:], dim=1)


class Nb201SearchCell(nn.Module):
    def __init__(self, c: int, nodes: int = nb201.NODES) -> None:
        super().__init__()
        self.nodes = nodes
        self.edges = nn.ModuleList(
            MixedEdge([nb201_op(op, c, affine=False) for op in NB201_OPS])
            for _ in nb201.edges(nodes)
        )

    def forward(self, x, weights, indices, unselected_grad):
        states = [x]
        e = 0
        for i in range(1, self.nodes):
            node = 0
            for j in range(i):
                node = node + self.edges[e](states[j], weights[e], indices[e], unselected_grad)
                e += 1
            states.append(node)
        return states[-1]


class Supernet(nn.Module):
    """Common part: alphas, sampling, genotype derivation."""

    space: str
    cell_types: tuple[str, ...]

    def _init_alphas(self, n_edges: int, n_ops: int) -> None:
        self.alphas = nn.ParameterDict(
            {t: nn.Parameter(1e-3 * torch.randn(n_edges, n_ops)) for t in self.cell_types}
        )
        self.tau = 10.0
        self.sample_per = "network"
        self.unselected_grad = False
        self.generator: torch.Generator | None = None
        self.cell_sequence: list[str]

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def probs(self) -> dict[str, torch.Tensor]:
        return {t: torch.softmax(a.detach(), dim=-1).cpu() for t, a in self.alphas.items()}

    def sample(self, detach_alpha: bool = False) -> list[tuple[torch.Tensor, list[int]]]:
        """Draw the architecture of one forward pass: (weights, op indices) per searched cell,
        in the order of `self.cell_sequence`."""
        draws = {}
        for t in self.cell_types:
            alpha = self.alphas[t].detach() if detach_alpha else self.alphas[t]
            n = self.cell_sequence.count(t) if self.sample_per == "cell" else 1
            draws[t] = hard_gumbel_softmax(alpha.expand(n, *alpha.shape), self.tau, self.generator)
        # One host sync for every edge of every cell.
        host = torch.cat([index.flatten() for _, index in draws.values()]).tolist()
        rows, start = {}, 0
        for t in self.cell_types:
            weights, index = draws[t]
            flat = host[start : start + index.numel()]
            start += index.numel()
            n_edges = index.shape[-1]
            rows[t] = [
                (weights[k], flat[k * n_edges : (k + 1) * n_edges]) for k in range(len(weights))
            ]
        seen = dict.fromkeys(self.cell_types, 0)
        per_cell = []
        for t in self.cell_sequence:
            per_cell.append(rows[t][seen[t] if self.sample_per == "cell" else 0])
            seen[t] += 1
        return per_cell

    def derive(self) -> Genotype:
        raise NotImplementedError


class DartsSupernet(Supernet):
    """The DARTS-space search network (CVPR GDAS / DARTS layout): stem conv3x3 (3C) + BN,
    `layers` cells with reductions at layers//3 and 2*layers//3, global pool, linear."""

    space = "darts"
    cell_types = ("normal", "reduce")

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 16,
        layers: int = 8,
        steps: int = darts.STEPS,
        stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        self.steps = steps
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr)
        )
        c_pp, c_p, c = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        self.reductions = darts.reduction_layers(layers)
        for i in range(layers):
            reduction = i in self.reductions
            if reduction:
                c *= 2
            self.cells.append(DartsSearchCell(c_pp, c_p, c, reduction, reduction_prev, steps))
            reduction_prev = reduction
            c_pp, c_p = c_p, steps * c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        self.cell_sequence = ["reduce" if c.reduction else "normal" for c in self.cells]
        self._init_alphas(len(darts.edges(steps)), len(DARTS_OPS))

    def forward(self, x: torch.Tensor, detach_alpha: bool = False) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell, (w, idx) in zip(self.cells, self.sample(detach_alpha)):
            s0, s1 = s1, cell(s0, s1, w, idx, self.unselected_grad)
        return self.classifier(self.pool(s1).flatten(1))

    def derive(self) -> Genotype:
        probs = self.probs()
        labels = darts.edge_labels(self.steps)
        return Genotype(
            space="darts",
            cells={
                t: darts.derive_cell(probs[t].numpy(), DARTS_OPS, self.steps)
                for t in self.cell_types
            },
            probs=_probs_json(probs, labels, DARTS_OPS),
        )


class Nb201Supernet(Supernet):
    """The NAS-Bench-201 search network (reference §1.3): stem, N cells, ResBlock, N cells,
    ResBlock, N cells, BN + ReLU, global pool, linear. One alpha shared by all cells."""

    space = "nb201"
    cell_types = ("cell",)

    def __init__(
        self, in_channels: int, num_classes: int, channels: int = 16, layers: int = 5
    ) -> None:
        super().__init__()
        c = channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        )
        self.cells = nn.ModuleList()
        self.is_cell: list[bool] = []
        for stage in range(3):
            if stage:
                self.cells.append(ResNetBasicBlock(c, 2 * c, 2))
                self.is_cell.append(False)
                c *= 2
            for _ in range(layers):
                self.cells.append(Nb201SearchCell(c))
                self.is_cell.append(True)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        self.cell_sequence = ["cell"] * (3 * layers)
        self._init_alphas(len(nb201.edges()), len(NB201_OPS))

    def forward(self, x: torch.Tensor, detach_alpha: bool = False) -> torch.Tensor:
        draws = iter(self.sample(detach_alpha))
        h = self.stem(x)
        for block, is_cell in zip(self.cells, self.is_cell):
            if is_cell:
                w, idx = next(draws)
                h = block(h, w, idx, self.unselected_grad)
            else:
                h = block(h)
        return self.classifier(self.pool(self.lastact(h)).flatten(1))

    def derive(self) -> Genotype:
        probs = self.probs()
        cell = nb201.derive_cell(probs["cell"].numpy(), NB201_OPS)
        return Genotype(
            space="nb201",
            cells={"cell": cell},
            probs=_probs_json(probs, nb201.edge_labels(), NB201_OPS),
            arch=nb201.to_string(cell),
        )


def _probs_json(probs: dict[str, torch.Tensor], labels: list[str], ops) -> dict:
    return {
        t: {label: dict(zip(ops, row.tolist())) for label, row in zip(labels, p)}
        for t, p in probs.items()
    }


def build_supernet(
    space: str, in_channels: int, num_classes: int, channels: int, layers: int
) -> Supernet:
    if space == "darts":
        return DartsSupernet(in_channels, num_classes, channels, layers)
    if space == "nb201":
        return Nb201Supernet(in_channels, num_classes, channels, layers)
    raise ValueError(f"unknown space {space!r}")
