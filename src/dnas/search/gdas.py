"""GDAS's sampler: hard Gumbel-softmax with a straight-through gradient (reference §1.6).

For each edge with logits alpha (K ops) and temperature tau:

    y_soft = softmax((log_softmax(alpha) + g) / tau),  g_k = -log(E_k), E_k ~ Exp(1)
    index  = argmax(y_soft)                             (a Gumbel-max sample of softmax(alpha))
    hard   = one_hot(index) - y_soft.detach() + y_soft  (value one-hot, gradient of y_soft)

The reference code redraws the noise in a host-side loop while it contains inf or NaN. Here the
noise is finite by construction: E is drawn as -log(U) with U clamped to [tiny, 1 - eps], so g
lies in a bounded interval, y_soft is a softmax of finite numbers, and no host sync is needed.
One sample is shared by the whole minibatch, as in every official version (reference §1.0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gumbel_noise(shape: torch.Size, generator: torch.Generator | None, device) -> torch.Tensor:
    """Standard Gumbel noise, finite by construction."""
    tiny = torch.finfo(torch.float32).tiny
    u = torch.rand(shape, generator=generator, device=device)
    u = u.clamp(min=tiny, max=1.0 - torch.finfo(torch.float32).eps)
    exponential = -torch.log(u)  # E ~ Exp(1), in [~6e-8, ~87.3]
    return -torch.log(exponential)


def hard_gumbel_softmax(
    alpha: torch.Tensor, tau: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one op per row of `alpha` (..., K).

    Returns (weights, index): `weights` is exactly one-hot in value, with the gradient of the
    soft sample; `index` holds the chosen op per row.
    """
    logits = F.log_softmax(alpha, dim=-1)
    g = gumbel_noise(logits.shape, generator, logits.device)
    y_soft = F.softmax((logits + g) / tau, dim=-1)
    index = y_soft.argmax(dim=-1)
    one_hot = F.one_hot(index, alpha.shape[-1]).to(y_soft.dtype)
    return one_hot - y_soft.detach() + y_soft, index


def tau_at(
    epoch: int, epochs: int, tau_max: float, tau_min: float, schedule: str = "to_last_epoch"
) -> float:
    """Linear decay per epoch. "to_last_epoch" reaches tau_min at the last epoch (AutoDL,
    reference §1.0); "to_end" is tau_max - epoch/epochs * (tau_max - tau_min), which stops one
    step above tau_min (GDAS CVPR code §1.0; SNAS's temperature §3)."""
    if schedule == "to_end":
        return tau_max - (tau_max - tau_min) * epoch / epochs
    if epochs <= 1:
        return tau_max
    return tau_max - (tau_max - tau_min) * epoch / (epochs - 1)
