"""The token stream of the language-model loops (docs/data.md#text-corpora): a prepared
corpus's split cut into columns (`batchify`, `token_stream`), the segments read down them
(`get_batch`), and variable BPTT's segment lengths (`sequence_length`).

Apart from `dnas.data.text` (the corpora and their format), so that preparing a corpus does not
import torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dnas.errors import UserError


def batchify(ids: np.ndarray, batch_size: int, device) -> torch.Tensor:
    """Cut a token stream into `batch_size` contiguous columns: (T, batch_size), the tail
    that does not fill a row dropped (docs/data.md#text-corpora)."""
    n = len(ids) // batch_size
    if n < 2:
        raise UserError(
            f"{len(ids)} tokens cannot make {batch_size} columns of at least 2 tokens; "
            "lower the batch size"
        )
    data = torch.from_numpy(np.asarray(ids[: n * batch_size], dtype=np.int64))
    return data.view(batch_size, n).t().contiguous().to(device)


def get_batch(source: torch.Tensor, i: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs source[i : i+L] and targets source[i+1 : i+1+L], L cut at the end of the data."""
    seq_len = min(seq_len, source.shape[0] - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len]


def sequence_length(generator: torch.Generator, bptt: int, std: float, max_delta: int) -> int:
    """Variable BPTT (docs/algorithms.md#rnn-retraining): bptt, halved with probability 0.05, plus
    N(0, std) noise when std > 0; at least 5 and at most bptt + max_delta. Drawn on the CPU from
    `generator`, so the lengths do not depend on the device."""
    u, z = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    base = bptt if u < 0.95 else bptt / 2
    if std > 0:
        # Box-Muller from a second uniform pair keeps the draw count fixed per call.
        v = torch.rand(1, generator=generator, dtype=torch.float64).item()
        base = base + std * math.sqrt(-2.0 * math.log(max(z, 1e-300))) * math.cos(2 * math.pi * v)
    return max(5, min(int(base), bptt + max_delta))


def token_stream(data, split: str, batch_size: int, device) -> torch.Tensor:
    """A split of a prepared text corpus (`dnas.data.text.TextPrepared`) as a token stream in
    `batch_size` columns on `device` (`batchify`)."""
    return batchify(getattr(data, split), batch_size, device)
