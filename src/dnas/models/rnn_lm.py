"""The recurrent language model around a DARTS recurrent cell (docs/algorithms.md#rnn-retraining),
its dropouts, the token-stream layout, and the model file.

Model: embedding (vocab x emsize) -> the cell over time -> linear decoder whose weight is the
embedding's (tied, so emsize = nhid) plus a bias. Dropouts, all inverted (scaled by 1/keep):

- `dropoute`: whole words: rows of the embedding matrix are zeroed for the whole batch;
- `dropouti`: the embedded inputs, one mask per sequence shared by every time step (locked);
- `dropoutx`, `dropouth`: the cell's x_mask and h_mask (variational), one per sequence;
- `dropout`: the cell outputs before the decoder, locked as `dropouti`.

All masks are drawn once per forward pass (a BPTT segment) and reused at every time step; in
eval mode there are none. The weights of the discrete cell are uniform in [-0.04, 0.04]
(docs/algorithms.md#rnn-retraining), the embedding uniform in [-0.1, 0.1] and the decoder bias zero
(the awd-lstm-lm / DARTS language model). Parameter count: vocab * emsize + vocab (bias) +
(emsize + nhid) * 2 nhid + 8 * nhid * 2 nhid; at the papers' sizes about 23M on PTB (10k words,
850) and 33M on WikiText-2 (33,278 words, 700).
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dnas.errors import UserError, unpickling_reason
from dnas.io import write_bytes
from dnas.spaces.genotype import Genotype
from dnas.spaces.rnn import ACTIVATIONS, INIT_RANGE, highway, initial_state

EMBED_INIT_RANGE = 0.1

# Keys of the model file's config that build the network.
BUILD_KEYS = ("vocab_size", "emsize", "nhid", "dropout", "dropouth", "dropoutx", "dropouti",
              "dropoute")  # fmt: skip


def dropout_mask(shape, p: float, like: torch.Tensor) -> torch.Tensor | None:
    """An inverted-dropout mask (0 or 1/(1-p)) of `shape`, or None when p is 0."""
    if p <= 0:
        return None
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1 - p) / (1 - p)


class RecurrentCell(nn.Module):
    """Runs a cell over a sequence; subclasses define `step` (one time step) and may prepare
    per-sequence state (the search cell's architecture sample) in `begin`."""

    nhid: int

    def begin(self, tau: float | None) -> None:
        """Called once per sequence before the first step; `tau` is the search cell's Gumbel
        temperature (None for a discrete cell)."""

    def step(self, x, h, x_mask, h_mask) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, x, h, x_mask=None, h_mask=None, tau: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (T, B, ninp), h (B, nhid) -> outputs (T, B, nhid), last state (B, nhid)."""
        self.begin(tau)
        outputs = []
        for t in range(x.shape[0]):
            h = self.step(x[t], h, x_mask, h_mask)
            outputs.append(h)
        return torch.stack(outputs), h


class DartsRNNCell(RecurrentCell):
    """The discrete cell of a genotype: one (op, predecessor) per node, output the mean of the
    nodes in `concat`. A node whose op is 'none' is zero."""

    def __init__(self, genotype: Genotype, ninp: int, nhid: int) -> None:
        super().__init__()
        cell = genotype.cells["rnn"]
        self.nhid = nhid
        self.edges = [node[0] for node in cell.nodes]  # (op, predecessor) per node
        self.concat = list(cell.concat)
        self.w0 = nn.Parameter(torch.empty(ninp + nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE))
        self.ws = nn.ParameterList(
            nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE))
            for _ in self.edges
        )

    def step(self, x, h, x_mask, h_mask):
        states = [initial_state(x, h, self.w0, x_mask, h_mask)]
        for (op, j), w in zip(self.edges, self.ws):
            s_prev = states[j]
            if op == "none":
                states.append(torch.zeros_like(s_prev))
                continue
            inp = s_prev * h_mask if h_mask is not None else s_prev
            c, hh = (inp @ w).chunk(2, dim=-1)
            states.append(highway(s_prev, c, hh, op))
        return torch.stack([states[k] for k in self.concat]).mean(0)


class RNNLanguageModel(nn.Module):
    """Embedding, a recurrent cell, a tied decoder, and the dropouts (see the module doc)."""

    def __init__(
        self,
        cell: RecurrentCell,
        vocab_size: int,
        emsize: int,
        nhid: int,
        dropout: float = 0.0,
        dropouth: float = 0.0,
        dropoutx: float = 0.0,
        dropouti: float = 0.0,
        dropoute: float = 0.0,
    ) -> None:
        super().__init__()
        if emsize != nhid:
            raise ValueError(f"tied weights need emsize == nhid, got {emsize} and {nhid}")
        self.encoder = nn.Embedding(vocab_size, emsize)
        nn.init.uniform_(self.encoder.weight, -EMBED_INIT_RANGE, EMBED_INIT_RANGE)
        self.cell = cell
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))
        self.nhid = nhid
        self.dropout, self.dropouth, self.dropoutx = dropout, dropouth, dropoutx
        self.dropouti, self.dropoute = dropouti, dropoute

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        return self.encoder.weight.new_zeros(batch_size, self.nhid)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor, tau: float | None = None):
        """tokens (T, B) -> (logits (T, B, V), last hidden (B, nhid), raw outputs, dropped
        outputs); the outputs feed the AR and TAR penalties. `tau`: the search cell's Gumbel
        temperature (None for a discrete cell and for DARTS mixing)."""
        weight = self.encoder.weight
        drop = self.training
        if drop and self.dropoute > 0:  # whole words, the same for the batch
            mask = dropout_mask((weight.shape[0], 1), self.dropoute, weight)
            weight = weight * mask
        emb = F.embedding(tokens, weight)
        batch = tokens.shape[1]
        if drop and self.dropouti > 0:
            emb = emb * dropout_mask((1, batch, emb.shape[-1]), self.dropouti, emb)
        x_mask = dropout_mask((batch, emb.shape[-1]), self.dropoutx, emb) if drop else None
        h_mask = dropout_mask((batch, self.nhid), self.dropouth, emb) if drop else None
        raw, hidden = self.cell(emb, hidden, x_mask, h_mask, tau)
        out = raw
        if drop and self.dropout > 0:
            out = raw * dropout_mask((1, batch, self.nhid), self.dropout, raw)
        logits = F.linear(out, self.encoder.weight, self.decoder_bias)
        return logits, hidden, raw, out


def build_lm(genotype: Genotype, config: dict) -> RNNLanguageModel:
    """The language model of a recurrent genotype; `config` holds BUILD_KEYS."""
    if genotype.space != "rnn":
        raise ValueError(f"a language model needs a recurrent (rnn) genotype, not {genotype.space}")
    cell = DartsRNNCell(genotype, config["emsize"], config["nhid"])
    return RNNLanguageModel(cell, **{k: config[k] for k in BUILD_KEYS})


def lm_loss(
    model: RNNLanguageModel,
    tokens: torch.Tensor,
    targets: torch.Tensor,
    hidden: torch.Tensor,
    ar: float = 0.0,
    tar: float = 0.0,
    tau: float | None = None,
):
    """(loss with the activation penalties, the plain cross-entropy, next hidden); `tau` goes
    to the model's forward pass (the search cell's Gumbel temperature).

    AR = ar * mean(dropped_output^2); TAR = tar * mean((raw_t - raw_{t-1})^2) (`beta` in
    docs/algorithms.md#rnn-retraining), as the awd-lstm-lm family regularises."""
    logits, hidden, raw, dropped = model(tokens, hidden, tau)
    raw_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    loss = raw_loss
    if ar > 0:
        loss = loss + ar * dropped.pow(2).mean()
    if tar > 0 and raw.shape[0] > 1:
        loss = loss + tar * (raw[1:] - raw[:-1]).pow(2).mean()
    return loss, raw_loss, hidden


# --- the token stream --------------------------------------------------------------------


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


@torch.no_grad()
def evaluate_lm(model: RNNLanguageModel, data: torch.Tensor, bptt: int) -> float:
    """Mean cross-entropy per token over a batchified stream, in segments of `bptt` with the
    hidden state carried across them (eval mode: no dropout)."""
    was_training = model.training
    model.eval()
    hidden = model.init_hidden(data.shape[1])
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    count = 0
    for i in range(0, data.shape[0] - 1, bptt):
        x, y = get_batch(data, i, bptt)
        logits, hidden, _, _ = model(x, hidden)
        total += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
        ).double()
        count += y.numel()
    model.train(was_training)
    return float(total) / count


# --- the model file ----------------------------------------------------------------------


def save_lm(path: str | Path, model: RNNLanguageModel, genotype: Genotype, config: dict) -> None:
    """The same format as `dnas.models.save_model`: genotype, config, state_dict."""
    state = {
        "genotype": genotype.to_json(),
        "config": dict(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def load_lm(path: str | Path, device="cpu") -> tuple[RNNLanguageModel, dict]:
    """Rebuild a saved language model (`torch.load(weights_only=True)`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found; run the train stage (`dvc repro`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        genotype = Genotype.from_json(state["genotype"])
        config = state["config"]
        model = build_lm(genotype, config)
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        msg = (
            f"{path}: not a valid language model ({unpickling_reason(exc)}); rerun the train stage"
        )
        raise UserError(msg) from None
    return model.to(device), {"genotype": genotype, **config}


def count_lm_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ACTIVATIONS", "RNNLanguageModel", "DartsRNNCell", "build_lm", "lm_loss"]
