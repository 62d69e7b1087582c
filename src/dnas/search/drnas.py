"""DrNAS (Chen et al., ICLR 2021): the algorithm (`DrNAS`) and its progressive schedule
(docs/algorithms.md#drnas, #drnas-progressive, `DARTS-space/train_search.py`).

Each edge's weights are a Dirichlet sample w ~ Dir(ELU(alpha) + 1), drawn with `rsample` so the
gradient reaches alpha through the pathwise derivative; pruned ops get weight 0 and the rest are
renormalised (by the Dirichlet's subcomposition property, a sample over the kept ops alone). The
sampler draws from the global generator, so every rank must share it under torchrun
(`shared_noise`). The regulariser: `l2` (Adam's weight decay = reg_scale) or `kl` (the KL to
the uniform Dirichlet, scaled, added to the validation loss). DrNAS searches the DARTS space
without 'none'.

The epochs split evenly into `len(partial_channels)` stages (the last takes any remainder).
Stage k searches with partial-channel K = partial_channels[k]. Between stages:

1. **prune**: each edge keeps its `keep_ops[k]` best ops by alpha (among those still kept); the
   others are masked out (weight exactly 0, never run) and the kept ones renormalised;
2. **widen**: the supernet is rebuilt at the new K, so every op sees more channels. Old weights
   fill the first channels; each new channel copies a randomly chosen old one (Net2Net's wider
   operator), and a layer reading replicated channels divides their weights by the replication
   count. SGD momentum buffers are carried over the same way and the cosine schedule continues
   over all epochs; the alphas are the same tensors, so Adam's state carries on unchanged.

Within each stage the alphas stay still for the first `arch_warmup` epochs (DrNAS's
`if epoch >= 10` counts epochs within the stage).

With one stage (the default) nothing here changes the search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from dnas.optim import sgd_cosine
from dnas.search.algorithm import Algorithm
from dnas.search.steps import SearchState
from dnas.search.supernet import Supernet

if TYPE_CHECKING:
    from dnas.config import Search


class DrNAS(Algorithm):
    name = "drnas"
    searches_none = False
    shared_noise = True

    def mix(self, alpha, tau=None, mask=None, generator=None) -> torch.Tensor:
        # The Dirichlet sampler draws from the global generator (it takes none); the loop
        # seeds it and checkpoints save and restore it.
        w = torch.distributions.Dirichlet(dirichlet_concentration(alpha)).rsample()
        if mask is not None:
            w = w * mask
            w = w / w.sum(dim=-1, keepdim=True)
        return w

    def arch_weight_decay(self, s: Search) -> float:
        return s.reg_scale if s.drnas_reg == "l2" else 0.0

    def regulariser(self, s: Search):
        if s.drnas_reg != "kl":
            return None
        return lambda net: kl_regulariser(s.reg_scale, net)


def dirichlet_concentration(alpha: torch.Tensor) -> torch.Tensor:
    """DrNAS's concentration beta = ELU(alpha) + 1 > 0."""
    return F.elu(alpha) + 1.0


def dirichlet_kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """Sum over edges of KL(Dir(ELU(alpha)+1) || Dir(1)): DrNAS's `kl` regulariser, anchored
    at the uniform Dirichlet (docs/algorithms.md#drnas)."""
    beta = dirichlet_concentration(alpha)
    q = torch.distributions.Dirichlet(beta)
    p = torch.distributions.Dirichlet(torch.ones_like(beta))
    return torch.distributions.kl_divergence(q, p).sum()


def kl_regulariser(reg_scale: float, net: Supernet) -> torch.Tensor:
    """DrNAS's kl regulariser: the Dirichlet KL to the uniform prior, scaled."""
    return reg_scale * sum(dirichlet_kl_to_uniform(a) for a in net.arch_parameters())


class Schedule:
    def __init__(self, s: Search) -> None:
        self.s = s
        self.stages = len(s.partial_channels)
        per = s.epochs // self.stages
        self.starts = [k * per for k in range(self.stages)]

    def stage_of(self, epoch: int) -> int:
        return max(k for k, start in enumerate(self.starts) if start <= epoch)

    def starts_stage(self, epoch: int) -> bool:
        return epoch > 0 and epoch in self.starts

    def arch_moves(self, epoch: int) -> bool:
        return epoch - self.starts[self.stage_of(epoch)] >= self.s.arch_warmup

    def advance(self, st: SearchState, stage: int, data, make_supernet) -> SearchState:
        """Prune and widen into `stage`: the new network, its SGD (momentum carried over) and
        schedule (where it was); the alphas and their optimiser stay."""
        net, w_opt = st.net, st.w_opt
        masks = prune_masks(net, self.s.keep_ops[stage - 1])
        device = next(net.parameters()).device
        # The same alpha Parameters (Adam's state stays valid) and Gumbel generator.
        new = make_supernet(self.s, data, stage, alphas=net.alphas, generator=net.generator)
        new = new.to(device)
        new.set_masks(masks)
        generator = torch.Generator().manual_seed(1000 + stage)
        momentum = widen_into(net, new, w_opt, generator)
        new_opt, new_sched = sgd_cosine(new.weight_parameters(), self.s)
        for p, buf in zip(new.weight_parameters(), momentum):
            if buf is not None:
                new_opt.state[p]["momentum_buffer"] = buf
        new_sched.load_state_dict(st.scheduler.state_dict())
        new_opt.param_groups[0]["lr"] = w_opt.param_groups[0]["lr"]
        return SearchState(new, new_opt, new_sched, st.a_opt)


def prune_masks(net: Supernet, keep: int) -> dict[str, torch.Tensor]:
    """Per cell type, a mask keeping each edge's `keep` best ops by alpha among the kept ones
    ('none' never counts: DrNAS's DARTS space has none, and in NB201 it is an op like any)."""
    masks = {}
    for t, alpha in net.alphas.items():
        scores = alpha.detach().masked_fill(~net.mask(t), float("-inf"))
        top = scores.topk(min(keep, scores.shape[1]), dim=1).indices
        mask = torch.zeros_like(net.mask(t))
        mask.scatter_(1, top, True)
        masks[t] = mask
    return masks


def _widen(old: torch.Tensor, shape: torch.Size, mapping, scale_dim: int | None) -> torch.Tensor:
    """`old` grown to `shape`: along each grown dimension, index by `mapping(old, new)`; along
    `scale_dim` (a conv's input channels) divide by how often each old channel was copied."""
    out = old
    for d, size in enumerate(shape):
        if out.shape[d] == size:
            continue
        idx = mapping(out.shape[d], size).to(old.device)
        if d == scale_dim:
            counts = torch.bincount(idx, minlength=out.shape[d]).to(out.dtype)
            view = [1] * out.ndim
            view[d] = -1
            out = out.index_select(d, idx) / counts[idx].view(view)
        else:
            out = out.index_select(d, idx)
    return out


def widen_into(
    old: Supernet, new: Supernet, w_opt: torch.optim.SGD, generator: torch.Generator
) -> list[torch.Tensor | None]:
    """Copy `old`'s weights and buffers into the wider `new`; return the widened momentum
    buffers of `new.weight_parameters()` (None where there was none)."""
    old_tensors = {**dict(old.named_parameters()), **dict(old.named_buffers())}
    new_params = dict(new.named_parameters())
    new_tensors = {**new_params, **dict(new.named_buffers())}
    momentum: dict[str, torch.Tensor | None] = {}
    op_mappings: dict[str, dict] = {}  # one channel mapping per op: its layers stay aligned

    def mapping_for(op_name: str):
        maps = op_mappings.setdefault(op_name, {})

        def mapping(n_old: int, n_new: int) -> torch.Tensor:
            if (n_old, n_new) not in maps:
                extra = torch.randint(n_old, (n_new - n_old,), generator=generator)
                maps[(n_old, n_new)] = torch.cat([torch.arange(n_old), extra])
            return maps[(n_old, n_new)]

        return mapping

    modules = dict(new.named_modules())
    # The architecture's own tensors (alphas, masks) are carried over as they are, not widened.
    skip = {id(t) for t in (*new.arch_parameters(), *new.arch_buffers())}
    with torch.no_grad():
        for full, new_t in new_tensors.items():
            if id(new_t) in skip or full not in old_tensors:
                continue
            old_t = old_tensors[full]
            owner_name, _, _ = full.rpartition(".")
            owner = modules[owner_name]
            scale = 1 if isinstance(owner, nn.Conv2d) and owner.groups == 1 else None
            parts = full.split(".")
            op_name = ".".join(parts[: parts.index("ops") + 2]) if "ops" in parts else full
            mapping = mapping_for(op_name)
            new_t.copy_(_widen(old_t, new_t.shape, mapping, scale))
            if full in new_params:
                buf = w_opt.state.get(old_t, {}).get("momentum_buffer")
                momentum[full] = None if buf is None else _widen(buf, new_t.shape, mapping, scale)
    names = {id(p): n for n, p in new.named_parameters()}
    return [momentum.get(names[id(p)]) for p in new.weight_parameters()]
