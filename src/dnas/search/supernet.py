"""Supernets of the DARTS and NAS-Bench-201 spaces (`SUPERNETS`, one class per space).

Every edge holds all candidate ops. What a forward pass does with them depends on the algorithm
(`dnas.search.algorithm.Algorithm.draw`, given to the supernet when it is built, with the
Gumbel generator; nothing is set on a supernet after it is built):

- **gdas**: one hard Gumbel sample per forward pass (`sample_per` = "network": one for all cells
  of a type, AutoDL; "cell": a new one per cell, the CVPR code;
  docs/algorithms.md#gdas-implementations). Only the sampled op runs, scaled by its
  straight-through weight, so gradients reach every alpha through the softmax. The sampled
  indices of all edges reach the host in one `.tolist()`: one sync per forward pass, none per
  edge. With `unselected_grad`, the zero-valued weights of the other ops are added as scalars,
  so each of their alphas also gets the gradient sum(dL/d node): the AutoDL NAS-Bench-201
  behaviour (docs/algorithms.md#gdas-sampler). Each node computes this through
  `gdas.sampled_sum` (docs/speed.md): the value is the plain sum of the sampled outputs, the
  weights' gradients come from the node's gradient in backward, and a sampled 'none' is not
  run at all (its zeros add nothing), as in the discrete network.
- **darts**, **snas**, **drnas**: every op runs and the edge is the weighted sum (softmax; soft
  Gumbel sample; Dirichlet sample). One draw per forward pass, shared by all cells of a type
  (docs/algorithms.md#darts-first-and-second-order, #snas, #drnas). 'none' is skipped: it
  adds zeros, so its weight gets a zero gradient either way. Ops pruned by DrNAS's progressive
  schedule (weight exactly 0) are skipped too.

With `partial_channels` K > 1 (DrNAS, a PC-DARTS copy, docs/algorithms.md#drnas-progressive) an
edge's ops see only the first C/K channels; the rest bypass (max-pooled 2x2 on a reducing
edge), are concatenated after the ops' output and the channels are shuffled in K groups.
`fixed_reduction` (GDAS-FRC, docs/algorithms.md#gdas-frc-fixed-reduction-cell) replaces the
searched reduction cells with the fixed one, with affine BN as in the search-era code: only
normal cells have alphas then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from dnas.search.algorithm import Algorithm, Draw
from dnas.search.gdas import sampled_sum, zero_grad_to
from dnas.spaces import darts, nb201
from dnas.spaces.genotype import CellSpec, Genotype
from dnas.spaces.ops import (
    DARTS_OPS,
    NB201_OPS,
    FixedReductionCell,
    ResNetBasicBlock,
    cell_preprocess,
    darts_op,
    drop_path,
    nb201_op,
)

if TYPE_CHECKING:
    from dnas.config import Search

Arch = dict[str, list[int]]  # cell type -> op index per edge ('none' = the edge is off)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class MixedEdge(nn.Module):
    """All candidate ops of one edge."""

    def __init__(
        self, ops: list[nn.Module], op_names: tuple[str, ...], partial: int = 1, stride: int = 1
    ) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.op_names = op_names
        self.partial = partial
        self.bypass = nn.MaxPool2d(2, 2) if partial > 1 and stride == 2 else nn.Identity()
        self.drop_prob = 0.0

    def forward(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        index: int | None,
        unselected_grad: bool = False,
        active: list[int] | None = None,
    ) -> torch.Tensor:
        """GDAS with `index`: run that op only. Otherwise the sum of weight * op over `active`
        (default: every op but 'none')."""
        if self.partial > 1:
            split = x.shape[1] // self.partial
            x, rest = x[:, :split], x[:, split:]
        if index is not None:  # GDAS on this edge alone (the cells use `sampled_nodes`)
            out = sampled_sum(weights[None], [(0, index, self._run(index, x))], unselected_grad)
        else:
            if active is None:
                active = [k for k, name in enumerate(self.op_names) if name != "none"]
            if not active:  # only 'none' left
                active = [self.op_names.index("none")]
            out = sum(self._run(k, x) * weights[k] for k in active)
        if self.training and self.drop_prob > 0:
            # Search drop-path (SNAS, docs/protocols.md): the edge's whole output, every edge.
            out = drop_path(out, self.drop_prob)
        if self.partial > 1:
            out = channel_shuffle(torch.cat([out, self.bypass(rest)], dim=1), self.partial)
        return out

    def _run(self, k: int, x: torch.Tensor) -> torch.Tensor:
        return self.ops[k](x)


def sampled_nodes(
    edges: nn.ModuleList,
    states: list[torch.Tensor],
    node_inputs: list[list[int]],
    weights: torch.Tensor,
    indices: list[int],
    unselected_grad: bool,
    outputs: list[int],
) -> list[torch.Tensor]:
    """GDAS: append the cell's nodes to `states` and return them; node i sums the sampled ops
    of its edges (numbered node by node) from the states in `node_inputs[i]`. A sampled 'none'
    is not run unless a node has nothing else (then its zeros are the node). A state that only
    'none' ops read, and that is not among the cell's `outputs`, gets a zero gradient through
    the last state, as x * 0 gave it (`gdas.zero_grad_to`)."""
    read = set(outputs)
    e = 0
    for inputs in node_inputs:
        if edges[e].partial > 1:  # the weights scale the ops' channels only: per edge
            node = 0
            for j in inputs:
                node = node + edges[e](states[j], weights[e], indices[e], unselected_grad)
                e += 1
            read.update(inputs)
            states.append(node)
            continue
        terms = []
        for j in inputs:
            edge, k = edges[e], indices[e]
            h = None if edge.op_names[k] == "none" else edge._run(k, states[j])
            terms.append((e, k, h))
            e += 1
            if h is not None:
                read.add(j)
        if all(h is None for _, _, h in terms):
            first, k, _ = terms[0]
            terms[0] = (first, k, edges[first]._run(k, states[inputs[0]]))
            read.add(inputs[0])
        states.append(sampled_sum(weights, terms, unselected_grad))
    dead = [s for j, s in enumerate(states) if j not in read]
    if dead:
        states[-1] = zero_grad_to(states[-1], dead)
    return states


class DartsSearchCell(nn.Module):
    def __init__(
        self,
        c_pp: int,
        c_p: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
        steps: int,
        ops: tuple[str, ...],
        partial: int = 1,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = self.multiplier = steps
        self.pre0, self.pre1 = cell_preprocess(c_pp, c_p, c, reduction_prev, affine=False)
        self.edges = nn.ModuleList()
        for _, j in darts.edges(steps):
            stride = 2 if reduction and j < 2 else 1
            self.edges.append(
                MixedEdge(
                    [darts_op(op, c // partial, stride, False) for op in ops],
                    ops,
                    partial,
                    stride,
                )
            )

    def forward(self, s0, s1, weights, indices, unselected_grad, active=None):
        states = [self.pre0(s0), self.pre1(s1)]
        if indices is not None:  # GDAS
            inputs = [list(range(2 + i)) for i in range(self.steps)]
            outputs = list(range(2, 2 + self.steps))
            states = sampled_nodes(
                self.edges, states, inputs, weights, indices, unselected_grad, outputs
            )
            return torch.cat(states[2:], dim=1)
        e = 0
        for _ in range(self.steps):
            node = 0
            for h in states:
                node = node + self.edges[e](
                    h,
                    weights[e],
                    None if indices is None else indices[e],
                    unselected_grad,
                    None if active is None else active[e],
                )
                e += 1
            states.append(node)
        return torch.cat(states[2:], dim=1)


class Nb201SearchCell(nn.Module):
    def __init__(self, c: int, nodes: int = nb201.NODES, partial: int = 1) -> None:
        super().__init__()
        self.nodes = nodes
        self.edges = nn.ModuleList(
            MixedEdge(
                [nb201_op(op, c // partial, affine=False) for op in NB201_OPS], NB201_OPS, partial
            )
            for _ in nb201.edges(nodes)
        )

    def forward(self, x, weights, indices, unselected_grad, active=None):
        states = [x]
        if indices is not None:  # GDAS
            inputs = [list(range(i)) for i in range(1, self.nodes)]
            outputs = [self.nodes - 1]
            states = sampled_nodes(
                self.edges, states, inputs, weights, indices, unselected_grad, outputs
            )
            return states[-1]
        e = 0
        for i in range(1, self.nodes):
            node = 0
            for j in range(i):
                node = node + self.edges[e](
                    states[j],
                    weights[e],
                    None if indices is None else indices[e],
                    unselected_grad,
                    None if active is None else active[e],
                )
                e += 1
            states.append(node)
        return states[-1]


class Supernet(nn.Module):
    """Common part: alphas, mixing weights, genotype derivation. A space's supernet class also
    knows its space's uniform random architectures (random search) and says what GDAS's
    `unselected_grad: auto` means there (`unselected_grad_auto`)."""

    space: str
    cell_types: tuple[str, ...]
    ops: tuple[str, ...]
    unselected_grad_auto: bool = False

    def _configure(
        self,
        algorithm: Algorithm,
        generator: torch.Generator | None,
        alphas: nn.ParameterDict | None,
        n_edges: int,
    ) -> None:
        """Everything the forward pass reads besides the modules: the algorithm (an instance:
        `dnas.search.registry.make_algorithm` gives one by name), the Gumbel generator, the
        alphas (`alphas`: reuse these, as DrNAS's next stage does; new ones are drawn either
        way, so the random stream after construction does not depend on it) and the masks."""
        self.algorithm = algorithm
        self.generator = generator
        n_ops = len(self.ops)
        init = [algorithm.init_alphas(n_edges, n_ops) for _ in self.cell_types]
        if alphas is None:
            alphas = nn.ParameterDict({t: nn.Parameter(a) for t, a in zip(self.cell_types, init)})
        self.alphas = alphas
        # Ops still in the running per edge (DrNAS progressive pruning); saved in checkpoints.
        for t in self.cell_types:
            self.register_buffer(f"mask_{t}", torch.ones(n_edges, n_ops, dtype=torch.bool))
        self._active: dict[str, list[list[int]]] | None = None
        self._arch: dict[str, Draw] | None = None

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values())

    def arch_buffers(self) -> list[torch.Tensor]:
        """The architecture's buffers (the masks)."""
        return [self.mask(t) for t in self.cell_types]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def mask(self, t: str) -> torch.Tensor:
        return getattr(self, f"mask_{t}")

    def set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        for t, m in masks.items():
            self.mask(t).copy_(m)
        self._active = None

    def active(self) -> dict[str, list[list[int]]]:
        """Per cell type and edge, the op indices to run (not 'none', not pruned)."""
        if self._active is None:
            self._active = {
                t: [
                    [k for k, on in enumerate(row) if on and self.ops[k] != "none"]
                    for row in self.mask(t).tolist()
                ]
                for t in self.cell_types
            }
        return self._active

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._active = None  # masks may have changed

    def probs(self) -> dict[str, torch.Tensor]:
        """Op probabilities per edge: softmax of alpha over the ops still in the running
        (DrNAS derives from softmax(alpha) too: ELU+1 is monotone, docs/algorithms.md#drnas)."""
        out = {}
        for t, a in self.alphas.items():
            a = a.detach().masked_fill(~self.mask(t), float("-inf"))
            out[t] = torch.softmax(a, dim=-1).cpu()
        return out

    def set_arch(self, arch: Arch) -> None:
        """Random search: the architecture the next forward passes run, an op index per edge
        of each cell type (all cells of a type share it, as AutoDL's RANDOM-NAS network)."""
        device = self.alphas[self.cell_types[0]].device
        self._arch = {}
        for t, indices in arch.items():
            weights = torch.zeros(len(indices), len(self.ops), device=device)
            weights[torch.arange(len(indices)), torch.tensor(indices)] = 1.0
            self._arch[t] = (weights, list(indices), None)

    def fixed_draws(self) -> list[Draw]:
        """The draws of the architecture `set_arch` gave, in cell order."""
        if self._arch is None:
            raise ValueError("random search: set_arch before a forward pass")
        return [self._arch[t] for t in self.cell_sequence]

    def draws(self, tau: float | None, detach_alpha: bool = False) -> list[Draw]:
        """(weights, indices or None, active ops or None) per searched cell, in cell order:
        the algorithm's draw for one forward pass. `tau`: the Gumbel temperature, required by
        the algorithms that sample with it."""
        return self.algorithm.draw(self, tau, detach_alpha)

    def forward(
        self, x: torch.Tensor, tau: float | None = None, detach_alpha: bool = False
    ) -> torch.Tensor:
        """Logits of `x` under this pass's architecture draw; `tau` is the Gumbel temperature
        (GDAS, SNAS; unused by DARTS and DrNAS)."""
        return self.forward_drawn(x, tau, detach_alpha)[0]

    def forward_drawn(
        self, x: torch.Tensor, tau: float | None = None, detach_alpha: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(logits, the mixing weights of each cell type) of one forward pass: SNAS's resource
        penalty reads the weights its cells used."""
        raise NotImplementedError

    def set_drop_prob(self, p: float) -> None:
        for m in self.modules():
            if isinstance(m, MixedEdge):
                m.drop_prob = p

    def derive(self) -> Genotype:
        raise NotImplementedError

    # -- random search: the space's uniform random architectures ---------------------------------

    def random_arch(self, gen: torch.Generator) -> Arch:
        raise NotImplementedError

    def uniform_probs(self) -> dict:
        """Each op's probability per edge under `random_arch`, as genotype.json's `probs`."""
        raise NotImplementedError

    def arch_genotype(self, arch: Arch) -> Genotype:
        """The genotype of an architecture of `random_arch`, with the uniform probabilities."""
        raise NotImplementedError


def _weights_by_type(net: Supernet, draws: list[Draw]) -> dict[str, torch.Tensor]:
    """The first cell's weights of each type (the all-ops algorithms share one per type)."""
    out: dict[str, torch.Tensor] = {}
    for t, (w, _, _) in zip(net.cell_sequence, draws):
        out.setdefault(t, w)
    return out


class DartsSupernet(Supernet):
    """The DARTS-space search network (CVPR GDAS / DARTS layout): stem conv3x3 (3C) + BN,
    `layers` cells with reductions at layers//3 and 2*layers//3, global pool, linear."""

    space = "darts"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int,
        layers: int,
        steps: int = darts.STEPS,
        stem_multiplier: int = 3,
        *,
        algorithm: Algorithm,
        fixed_reduction: bool = False,
        partial: int = 1,
        generator: torch.Generator | None = None,
        alphas: nn.ParameterDict | None = None,
    ) -> None:
        super().__init__()
        self.steps = steps
        # DrNAS searches the DARTS space without 'none' (docs/algorithms.md#drnas).
        self.ops = DARTS_OPS if algorithm.searches_none else DARTS_OPS[1:]
        self.cell_types = ("normal",) if fixed_reduction else ("normal", "reduce")
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr)
        )
        c_pp, c_p, c = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        self.reductions = darts.reduction_layers(layers)
        self.cell_sequence = []
        for i in range(layers):
            reduction = i in self.reductions
            if reduction:
                c *= 2
            if reduction and fixed_reduction:
                # The search-era Transition hard-codes affine BN (its preprocessing too), unlike
                # the searched cells (docs/algorithms.md#gdas-frc-fixed-reduction-cell).
                cell = FixedReductionCell(
                    c_pp, c_p, c, reduction_prev, affine=True, version="search"
                )
            else:
                cell = DartsSearchCell(
                    c_pp, c_p, c, reduction, reduction_prev, steps, self.ops, partial
                )
                self.cell_sequence.append("reduce" if reduction else "normal")
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        self._configure(algorithm, generator, alphas, len(darts.edges(steps)))

    def forward_drawn(self, x, tau=None, detach_alpha=False):
        s0 = s1 = self.stem(x)
        draws = self.draws(tau, detach_alpha)
        unselected = self.algorithm.unselected_grad()
        it = iter(draws)
        for cell in self.cells:
            if isinstance(cell, FixedReductionCell):
                s0, s1 = s1, cell(s0, s1)
            else:
                w, idx, active = next(it)
                s0, s1 = s1, cell(s0, s1, w, idx, unselected, active)
        return self.classifier(self.pool(s1).flatten(1)), _weights_by_type(self, draws)

    def derive(self) -> Genotype:
        probs = self.probs()
        labels = darts.edge_labels(self.steps)
        every_edge = self.algorithm.derive_all_edges
        rule = darts.derive_cell_all_edges if every_edge else darts.derive_cell
        return Genotype(
            space="darts",
            cells={t: rule(probs[t].numpy(), self.ops, self.steps) for t in self.cell_types},
            probs=_probs_json(probs, labels, self.ops),
        )

    def random_arch(self, gen: torch.Generator) -> Arch:
        """Every node 2 distinct inputs, each pair equally likely, each an op uniform over the
        ops other than 'none'; the node's other edges are off (docs/algorithms.md#random-search)."""
        none = self.ops.index("none")
        real = [k for k, op in enumerate(self.ops) if op != "none"]
        arch = {}
        for t in self.cell_types:
            row = []
            for i in range(self.steps):
                n = darts.INPUTS + i
                picked = torch.randperm(n, generator=gen)[:2].tolist()
                ops = torch.randint(len(real), (2,), generator=gen).tolist()
                chosen = {j: real[k] for j, k in zip(picked, ops)}
                row.extend(chosen.get(j, none) for j in range(n))
            arch[t] = row
        return arch

    def uniform_probs(self) -> dict:
        real = [op for op in self.ops if op != "none"]
        probs = {}
        for t in self.cell_types:
            edges = {}
            for (i, _), label in zip(darts.edges(self.steps), darts.edge_labels(self.steps)):
                used = 2.0 / i  # node i has i inputs, 2 of them chosen
                edges[label] = {
                    op: 1.0 - used if op == "none" else used / len(real) for op in self.ops
                }
            probs[t] = edges
        return probs

    def arch_genotype(self, arch: Arch) -> Genotype:
        cells = {}
        for t, row in arch.items():
            nodes = [[] for _ in range(self.steps)]
            for (i, j), k in zip(darts.edges(self.steps), row):
                if self.ops[k] != "none":
                    nodes[i - darts.INPUTS].append((self.ops[k], j))
            concat = tuple(range(darts.INPUTS, darts.INPUTS + self.steps))
            cells[t] = CellSpec(inputs=darts.INPUTS, nodes=tuple(map(tuple, nodes)), concat=concat)
        return Genotype("darts", cells, probs=self.uniform_probs())


class Nb201Supernet(Supernet):
    """The NAS-Bench-201 search network (docs/algorithms.md#nas-bench-201-space): stem, N cells,
    ResBlock, N cells, ResBlock, N cells, BN + ReLU, global pool, linear. One alpha shared by
    all cells."""

    space = "nb201"
    cell_types = ("cell",)
    ops = NB201_OPS
    # AutoDL's NAS-Bench-201 GDAS gives the unsampled ops' alphas a gradient
    # (docs/algorithms.md#gdas-sampler).
    unselected_grad_auto = True

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int,
        layers: int,
        algorithm: Algorithm,
        partial: int = 1,
        generator: torch.Generator | None = None,
        alphas: nn.ParameterDict | None = None,
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
                self.cells.append(Nb201SearchCell(c, partial=partial))
                self.is_cell.append(True)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        self.cell_sequence = ["cell"] * (3 * layers)
        self._configure(algorithm, generator, alphas, len(nb201.edges()))

    def forward_drawn(self, x, tau=None, detach_alpha=False):
        draws = self.draws(tau, detach_alpha)
        unselected = self.algorithm.unselected_grad()
        it = iter(draws)
        h = self.stem(x)
        for block, is_cell in zip(self.cells, self.is_cell):
            if is_cell:
                w, idx, active = next(it)
                h = block(h, w, idx, unselected, active)
            else:
                h = block(h)
        logits = self.classifier(self.pool(self.lastact(h)).flatten(1))
        return logits, _weights_by_type(self, draws)

    def derive(self) -> Genotype:
        probs = self.probs()
        cell = nb201.derive_cell(probs["cell"].numpy(), NB201_OPS)
        return Genotype(
            space="nb201",
            cells={"cell": cell},
            probs=_probs_json(probs, nb201.edge_labels(), NB201_OPS),
            arch=nb201.to_string(cell),
        )

    def random_arch(self, gen: torch.Generator) -> Arch:
        """Each of the 6 edges one of the 5 ops, 'none' included (AutoDL's `random_genotype`)."""
        n = len(nb201.edges())
        return {t: torch.randint(len(self.ops), (n,), generator=gen).tolist()
                for t in self.cell_types}  # fmt: skip

    def uniform_probs(self) -> dict:
        row = {op: 1.0 / len(self.ops) for op in self.ops}
        return {t: {label: dict(row) for label in nb201.edge_labels()} for t in self.cell_types}

    def arch_genotype(self, arch: Arch) -> Genotype:
        ops = [self.ops[k] for k in arch["cell"]]
        it = iter(zip(ops, (j for _, j in nb201.edges())))
        nodes = tuple(tuple(next(it) for _ in range(i)) for i in range(1, nb201.NODES))
        cell = CellSpec(inputs=1, nodes=nodes, concat=(nb201.NODES - 1,))
        return Genotype("nb201", {"cell": cell}, probs=self.uniform_probs(),
                        arch=nb201.to_string(cell))  # fmt: skip


def _probs_json(probs: dict[str, torch.Tensor], labels: list[str], ops) -> dict:
    return {
        t: {label: dict(zip(ops, row.tolist())) for label, row in zip(labels, p)}
        for t, p in probs.items()
    }


# The supernet of each searchable CNN space (the recurrent one: dnas.search.rnn).
SUPERNETS: dict[str, type[Supernet]] = {"darts": DartsSupernet, "nb201": Nb201Supernet}


def build_supernet(
    space: str,
    in_channels: int,
    num_classes: int,
    channels: int,
    layers: int,
    algorithm: Algorithm,
    fixed_reduction: bool = False,
    partial: int = 1,
    generator: torch.Generator | None = None,
    alphas: nn.ParameterDict | None = None,
) -> Supernet:
    """The search network of `space`, built with everything its forward pass reads."""
    if space not in SUPERNETS:
        raise ValueError(f"no supernet for space {space!r}; known: {', '.join(SUPERNETS)}")
    kw = {"algorithm": algorithm, "partial": partial, "generator": generator, "alphas": alphas}
    if fixed_reduction:
        kw["fixed_reduction"] = True  # DartsSupernet only: a TypeError elsewhere
    return SUPERNETS[space](in_channels, num_classes, channels, layers, **kw)


def supernet_for(
    s: Search,
    data,
    algorithm: type[Algorithm],
    stage: int = 0,
    *,
    generator: torch.Generator | None = None,
    alphas: nn.ParameterDict | None = None,
) -> Supernet:
    """The supernet of the search `s` on `data` (its channels and classes), at DrNAS stage
    `stage`'s partial channels, with `algorithm` configured from `s` (the loops take the class
    from `dnas.search.registry`)."""
    net_class = SUPERNETS[s.space]
    configured = algorithm.configure(s, net_class.unselected_grad_auto)
    return build_supernet(
        s.space, data.channels, data.num_classes, s.channels, s.layers, configured,
        s.fixed_reduction, s.partial_channels[stage], generator, alphas,
    )  # fmt: skip
