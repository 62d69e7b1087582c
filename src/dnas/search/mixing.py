"""Mixing weights of the all-ops algorithms, one draw per edge per forward pass.

- darts: w = softmax(alpha) (docs/algorithms.md#darts-first-and-second-order).
- snas: a soft Gumbel (concrete) sample w = softmax((alpha + g) / tau), no straight-through,
  drawn in evaluation mode too (docs/algorithms.md#snas). alpha is SNAS's log-alpha.
- drnas: w ~ Dirichlet(ELU(alpha) + 1), drawn with `rsample` so the gradient reaches alpha
  through the pathwise (implicit reparameterisation) derivative (docs/algorithms.md#drnas). Ops
  pruned by the progressive schedule get weight 0 and the others are renormalised; by the
  Dirichlet's subcomposition property that is a sample of the Dirichlet over the kept ops alone.

The Gumbel samplers (GDAS's hard one, SNAS's soft one) live in `dnas.search.gumbel`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dnas.search.gumbel import soft_gumbel_softmax


def dirichlet_concentration(alpha: torch.Tensor) -> torch.Tensor:
    """DrNAS's concentration beta = ELU(alpha) + 1 > 0."""
    return F.elu(alpha) + 1.0


def edge_weights(
    algorithm: str,
    alpha: torch.Tensor,
    tau: float | None,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mixing weights (E, K) for the edges of one cell type; pruned ops (mask False) get 0.
    `tau` is SNAS's temperature (None for DARTS and DrNAS, which do not use one)."""
    if algorithm == "darts":
        if mask is not None:
            alpha = alpha.masked_fill(~mask, float("-inf"))
        return F.softmax(alpha, dim=-1)
    if algorithm == "snas":
        return soft_gumbel_softmax(alpha, tau, generator, mask)
    if algorithm == "drnas":
        # The Dirichlet sampler draws from the global generator (it takes none); the loop
        # seeds it and checkpoints save and restore it.
        w = torch.distributions.Dirichlet(dirichlet_concentration(alpha)).rsample()
        if mask is not None:
            w = w * mask
            w = w / w.sum(dim=-1, keepdim=True)
        return w
    raise ValueError(f"no all-ops mixing for algorithm {algorithm!r}")


def dirichlet_kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """Sum over edges of KL(Dir(ELU(alpha)+1) || Dir(1)): DrNAS's `kl` regulariser, anchored
    at the uniform Dirichlet (docs/algorithms.md#drnas)."""
    beta = dirichlet_concentration(alpha)
    q = torch.distributions.Dirichlet(beta)
    p = torch.distributions.Dirichlet(torch.ones_like(beta))
    return torch.distributions.kl_divergence(q, p).sum()
