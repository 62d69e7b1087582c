"""The Gumbel samplers shared by GDAS, SNAS and the recurrent search
(docs/algorithms.md#gdas-sampler, #snas, #rnn-search).

The temperature tau is an argument of every sampler: the search loops compute it per epoch
(`dnas.search.gdas.tau_at`, `dnas.search.snas.temperature`) and pass it into the supernet's
forward pass, which hands it on to these functions. Nothing stores it.

- `gumbel_noise`: standard Gumbel noise g = -log(E), E = -log(U) ~ Exp(1), with U clamped to
  [tiny, 1 - eps] so that g is finite by construction (the GDAS code redraws the noise in a
  host-side loop while it holds inf or NaN; here no redraw and no host sync are needed).
- `hard_gumbel_softmax` (GDAS): y_soft = softmax((log_softmax(alpha) + g) / tau),
  index = argmax(y_soft) (a Gumbel-max sample of softmax(alpha)),
  hard = one_hot(index) - y_soft.detach() + y_soft (value one-hot, gradient of y_soft).
- `soft_gumbel_softmax` (SNAS, the GDAS RNN code's `gumbel: soft`): the concrete sample
  softmax((alpha + g) / tau), no straight-through; ops masked out get weight 0.
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


def soft_gumbel_softmax(
    alpha: torch.Tensor,
    tau: float,
    generator: torch.Generator | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The concrete sample softmax((alpha + g) / tau) per row of `alpha` (..., K); where
    `mask` is False the weight is 0 (the noise is drawn for every op all the same)."""
    g = gumbel_noise(alpha.shape, generator, alpha.device)
    if mask is not None:
        alpha = alpha.masked_fill(~mask, float("-inf"))
    return F.softmax((alpha + g) / tau, dim=-1)
