"""DARTS (Liu et al., ICLR 2019): every op of every edge runs, weighted by softmax(alpha)
(docs/algorithms.md#darts-first-and-second-order).

The architecture step is first order or the unrolled second order (`search.order`;
`dnas.search.architect`, shared with DrNAS). Ops pruned by a mask get weight 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dnas.search.algorithm import Algorithm


class DARTS(Algorithm):
    name = "darts"

    def mix(self, alpha, tau=None, mask=None, generator=None) -> torch.Tensor:
        if mask is not None:
            alpha = alpha.masked_fill(~mask, float("-inf"))
        return F.softmax(alpha, dim=-1)

    @classmethod
    def rnn_mixing(cls, gumbel: str) -> str:
        return "softmax"
