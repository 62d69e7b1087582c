"""The recurrent language model around a DARTS recurrent cell (docs/algorithms.md#rnn-retraining),
its dropouts and its loss (the model file: `dnas.models.save_model`; the token stream:
`dnas.data.text`).

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

import torch
import torch.nn.functional as F
from torch import nn

from dnas.spaces.genotype import Genotype
from dnas.spaces.registry import get_space
from dnas.spaces.rnn import ACTIVATIONS, INIT_RANGE, highway, initial_state

EMBED_INIT_RANGE = 0.1

# Keys of the model file's config that build the network.
BUILD_KEYS = ("vocab_size", "emsize", "nhid", "dropout", "dropouth", "dropoutx", "dropouti",
              "dropoute")  # fmt: skip
DROPOUT_KEYS = BUILD_KEYS[3:]


def dropout_mask(shape, p: float, like: torch.Tensor) -> torch.Tensor | None:
    """An inverted-dropout mask (0 or 1/(1-p)) of `shape`, or None when p is 0."""
    if p <= 0:
        return None
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1 - p) / (1 - p)


class RecurrentCell(nn.Module):
    """Runs a cell over a sequence; subclasses define `step` (one time step). (The search
    cell draws its sequence's architecture before the sequence: `dnas.search.rnn`.)"""

    nhid: int

    def step(self, x, h, x_mask, h_mask) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x, h, x_mask=None, h_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (T, B, ninp), h (B, nhid) -> outputs (T, B, nhid), last state (B, nhid)."""
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

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor):
        """tokens (T, B) -> (logits (T, B, V), last hidden (B, nhid), raw outputs, dropped
        outputs); the outputs feed the AR and TAR penalties."""
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
        raw, hidden = self.cell(emb, hidden, x_mask, h_mask)
        out = raw
        if drop and self.dropout > 0:
            out = raw * dropout_mask((1, batch, self.nhid), self.dropout, raw)
        logits = F.linear(out, self.encoder.weight, self.decoder_bias)
        return logits, hidden, raw, out


def build_lm(genotype: Genotype, config: dict) -> RNNLanguageModel:
    """The language model of a recurrent genotype; `config` holds BUILD_KEYS."""
    if not get_space(genotype.space).text:
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
    **search,
):
    """(loss with the activation penalties, the plain cross-entropy, next hidden); `search`
    goes to a search model's forward pass (`tau`, the Gumbel temperature, and `detach_alpha`,
    whether its weight step keeps gradients from alpha: dnas.search.rnn.RNNSupernet).

    AR = ar * mean(dropped_output^2); TAR = tar * mean((raw_t - raw_{t-1})^2) (`beta` in
    docs/algorithms.md#rnn-retraining), as the awd-lstm-lm family regularises."""
    logits, hidden, raw, dropped = model(tokens, hidden, **search)
    raw_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    loss = raw_loss
    if ar > 0:
        loss = loss + ar * dropped.pow(2).mean()
    if tar > 0 and raw.shape[0] > 1:
        loss = loss + tar * (raw[1:] - raw[:-1]).pow(2).mean()
    return loss, raw_loss, hidden


def lm_arch_loss(model: RNNLanguageModel, batch: tuple, tau: float | None):
    """The architecture step's loss of a batch (x, y, hidden): (cross-entropy, next hidden), the
    `loss_fn` of `dnas.search.architect.arch_gradient`."""
    x, y, hidden = batch
    _, loss, hidden = lm_loss(model, x, y, hidden, tau=tau)
    return loss, hidden


def count_lm_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def lm_parameters(genotype: Genotype, vocab_size: int, size: int) -> int:
    """Parameters of the language model of `genotype` at emsize = nhid = `size` (embedding and
    decoder tied, counted once), built on the meta device: nothing is allocated."""
    config = {"vocab_size": vocab_size, "emsize": size, "nhid": size}
    config.update(dict.fromkeys(DROPOUT_KEYS, 0.0))
    with torch.device("meta"):
        return count_lm_parameters(build_lm(genotype, config))


__all__ = ["ACTIVATIONS", "RNNLanguageModel", "DartsRNNCell", "build_lm", "lm_loss"]
