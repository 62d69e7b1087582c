"""The language-model track: the recurrent cell against hand computations, dropout masks,
NT-ASGD, derivation, GDAS's sampled-op-only forward, DARTS's unrolled step, the published
sizes, perplexity, validation, and resume (docs/algorithms.md#rnn-track)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dnas.checkpoint import Interrupted
from dnas.config import parse_params
from dnas.data import load_prepared
from dnas.data.text import write_text_prepared
from dnas.data.tokens import batchify, sequence_length
from dnas.errors import UserError
from dnas.evaluate import evaluate_perplexity
from dnas.io import dumps_json
from dnas.models.rnn_lm import (
    DartsRNNCell,
    RecurrentCell,
    RNNLanguageModel,
    build_lm,
    count_lm_parameters,
    lm_arch_loss,
)
from dnas.search import rnn_loop
from dnas.search.architect import ClippedUnroll, arch_gradient
from dnas.search.gumbel import gumbel_noise
from dnas.search.rnn import RNNSearchCell, RNNSupernet
from dnas.spaces.genotype import Genotype
from dnas.spaces.published import PUBLISHED, resolve_genotype
from dnas.spaces.rnn import RNN_OPS, derive_cell
from dnas.train import lm as train_lm
from dnas.train.lm import ParamAverage, nt_asgd_switch
from tests.interrupt import files, interrupt_at

CPU = torch.device("cpu")
NO_DROP = dict.fromkeys(("dropout", "dropouth", "dropoutx", "dropouti", "dropoute"), 0.0)
SLOTS = [("the", "a"), ("big", "small", "red"), ("cat", "dog"), ("sat", "ran"),
         ("on", "under"), ("the",), ("mat", "log")]  # fmt: skip


def tiny_corpus(root: Path) -> object:
    """Sentences of a toy grammar (one word per slot) in the prepared text format: 16 words,
    but most positions allow 1-3, so a model can do far better than uniform."""
    rng = np.random.default_rng(0)

    def lines(n):
        return "".join(" ".join(str(rng.choice(slot)) for slot in SLOTS) + "\n" for _ in range(n))

    texts = {"train": lines(120), "valid": lines(20), "test": lines(20)}
    write_text_prepared(root / "tiny", "pydoc", texts, {"origin": "test"})
    return load_prepared(root / "tiny")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("text")
    tiny_corpus(root)
    return root / "tiny"


@pytest.fixture(scope="module")
def corpus(corpus_dir):
    return load_prepared(corpus_dir)


def tiny_params(**over) -> object:
    rnn = {"bptt": 6, "emsize": 8, "nhid": 8, "dropout": 0.2, "dropouth": 0.1, "dropoutx": 0.2,
           "dropouti": 0.1, "dropoute": 0.1}  # fmt: skip
    raw = {
        "common": {"device": "cpu", "checkpoint_every": 1},
        "prepare": {"datasets": ["pydoc"]},
        "search": {"dataset": "pydoc", "space": "rnn", "epochs": 2, "batch_size": 8, "lr": 20.0,
                   "grad_clip": 0.25, "arch_lr": 3.0e-3, "tau_max": 10.0, "tau_min": 1.0,
                   "rnn": dict(rnn)},  # fmt: skip
        "train": {"dataset": "pydoc", "epochs": 2, "batch_size": 8, "lr": 20.0, "grad_clip": 0.25,
                  "rnn": {**rnn, "eval_batch_size": 4, "test_batch_size": 1, "nonmono": 1}},
    }  # fmt: skip
    for key, value in over.items():
        section, _, name = key.partition("__")
        raw[section][name] = value
    return parse_params(raw)


def _sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# --- the cell ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        # zero weights: c = h = 0, sigmoid(c) = 1/2; s0 = h_prev / 2 = 0.5; relu, tanh,
        # identity nodes halve their predecessor, a sigmoid node gives s_j / 2 + 1/4.
        # GDAS: s1 = s2 = .25, s3 = s4 = .125, s5 = .25, s6 = .125, s7 = .0625, s8 = .125
        ("GDAS_RNN", 1.3125 / 8),
        # DARTS_V2: s1 = .5 (sigmoid of s0), s2 = s3 = s4 = .25, s5 = .125, s6 = .0625 + .25,
        # s7 = .125, s8 = s5 / 2 = .0625
        ("DARTS_V2_RNN", (0.5 + 0.25 * 3 + 0.125 + 0.3125 + 0.125 + 0.0625) / 8),
    ],
)
def test_highway_update_with_zero_weights_matches_a_hand_computation(name, expected):
    cell = DartsRNNCell(PUBLISHED[name].genotype, 1, 1)
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
    out = cell.step(torch.tensor([[0.7]]), torch.tensor([[1.0]]), None, None)
    assert out.item() == pytest.approx(expected, abs=1e-7)


def test_highway_update_matches_a_scalar_recomputation():
    """Random weights, nhid = ninp = 1, recomputed with the math module per the formulas."""
    g = PUBLISHED["DARTS_V1_RNN"].genotype
    cell = DartsRNNCell(g, 1, 1)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in cell.parameters():
            p.uniform_(-2, 2)
    x, h, xm, hm = 0.8, -0.3, 2.0, 0.5  # masks scale x and every state before its W
    out = cell.step(
        torch.tensor([[x]]), torch.tensor([[h]]), torch.tensor([[xm]]), torch.tensor([[hm]])
    )
    w0 = cell.w0.detach().tolist()  # rows x, h; columns c, h
    c0 = x * xm * w0[0][0] + h * hm * w0[1][0]
    h0 = x * xm * w0[0][1] + h * hm * w0[1][1]
    states = [h + _sig(c0) * (math.tanh(h0) - h)]
    fns = {"tanh": math.tanh, "relu": lambda v: max(v, 0.0), "sigmoid": _sig, "identity": float}
    for (op, j), w in zip((n[0] for n in g.cells["rnn"].nodes), cell.ws):
        wc, wh = w.detach().flatten().tolist()
        s = states[j]
        c, hh = s * hm * wc, s * hm * wh
        states.append(s + _sig(c) * (fns[op](hh) - s))
    assert out.item() == pytest.approx(sum(states[1:]) / 8, rel=1e-5)


class _Spy(RecurrentCell):
    """Records the masks each time step sees; returns ones as outputs."""

    def __init__(self, nhid):
        super().__init__()
        self.nhid = nhid
        self.seen = []
        self.w = torch.nn.Parameter(torch.zeros(1))

    def step(self, x, h, x_mask, h_mask):
        self.seen.append((x.detach().clone(), x_mask, h_mask))
        return torch.ones_like(h) + 0 * self.w


def test_dropout_masks_are_shared_across_time_steps():
    torch.manual_seed(0)
    spy = _Spy(16)
    model = RNNLanguageModel(spy, 50, 16, 16, 0.5, 0.5, 0.5, 0.5, 0.0)
    with torch.no_grad():
        model.encoder.weight.fill_(1.0)  # every embedded token is ones: x shows the mask
    tokens = torch.randint(0, 50, (7, 4))
    _, _, raw, dropped = model(tokens, model.init_hidden(4))
    xs = torch.stack([x for x, _, _ in spy.seen])
    assert len(spy.seen) == 7
    assert (xs == xs[0]).all()  # locked input dropout: the same mask at every step
    assert set(xs.unique().tolist()) == {0.0, 2.0}  # inverted dropout, p = 0.5
    assert all(xm is spy.seen[0][1] and hm is spy.seen[0][2] for _, xm, hm in spy.seen)
    assert set(spy.seen[0][1].unique().tolist()) == {0.0, 2.0}
    assert (dropped == dropped[0]).all() and (dropped == 0).any()  # locked output dropout
    assert (raw == 1).all()
    spy.seen.clear()
    model.eval()
    _, _, _, dropped = model(tokens, model.init_hidden(4))
    assert all(xm is None and hm is None for _, xm, hm in spy.seen) and (dropped == 1).all()


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(1)
    spy = _Spy(8)
    model = RNNLanguageModel(spy, 20, 8, 8, dropoute=0.5)
    with torch.no_grad():
        model.encoder.weight.fill_(1.0)
    tokens = torch.arange(20).repeat(3, 1).t()[:, :3].contiguous()  # word w in every column
    model(tokens, model.init_hidden(3))
    xs = torch.stack([x for x, _, _ in spy.seen])  # (T, B, D)
    for t in range(xs.shape[0]):  # a word is dropped (all zeros) or kept (all 2) everywhere
        assert set(xs[t].unique().tolist()) <= {0.0, 2.0} and (xs[t] == xs[t, 0, 0]).all()


# --- NT-ASGD ----------------------------------------------------------------------------------


def _first_switch(losses, nonmono, rule):
    previous = []
    for k, loss in enumerate(losses):
        if nt_asgd_switch(previous, loss, nonmono, rule):
            return k
        previous.append(loss)
    return None


def test_nt_asgd_switches_exactly_when_the_rule_says():
    losses = [5.0, 4.0, 3.0, 3.5, 2.9, 2.8, 2.7, 2.75, 2.6, 3.2]
    # gdas: > min(all previous) once more than 5 evaluations passed: index 3 (3.5 > 3.0) has
    # only 3 before it; index 7 (2.75 > 2.7) has 7.
    assert _first_switch(losses, 5, "gdas") == 7
    # darts: > min(previous[:-5]); at 7 that is min(5, 4) = 4: no; at 9, min(5..2.9) = 2.9 < 3.2
    assert _first_switch(losses, 5, "darts") == 9
    assert _first_switch([3.0] * 6 + [3.0], 5, "gdas") is None  # equal is not worse
    assert _first_switch(losses[:7], 5, "gdas") is None


def test_parameter_average_is_the_mean_of_the_iterates():
    p = torch.nn.Parameter(torch.tensor([0.0]))
    avg = ParamAverage([p])
    avg.update()
    assert not avg.active and avg.ax == []
    avg.start()
    for v in (1.0, 2.0, 6.0):
        with torch.no_grad():
            p.fill_(v)
        avg.update()
    with avg.applied():
        assert p.item() == pytest.approx(3.0)
    assert p.item() == 6.0


def test_retraining_switches_to_asgd_at_the_scripted_epoch(monkeypatch, tmp_path, corpus):
    scripted = iter([5.0, 4.0, 4.5, 3.0, 2.0, 2.5])  # nonmono 1: 4.5 > 4 has 2 before: switch
    monkeypatch.setattr(train_lm, "evaluate_lm", lambda *a: next(scripted))
    p = tiny_params(train__epochs=6)
    _, _, metrics = train_lm.run_lm_train(
        p, PUBLISHED["GDAS_RNN"].genotype, corpus, CPU, tmp_path / "live"
    )
    assert metrics["asgd_epoch"] == 3 and metrics["best_epoch"] == 5
    assert metrics["valid_loss"] == 2.0
    asgd = (tmp_path / "live" / "plots" / "metrics" / "asgd.tsv").read_text().split()[3::2]
    assert asgd == ["0", "0", "1", "1", "1", "1"]


# --- search -----------------------------------------------------------------------------------


def test_derivation_keeps_one_predecessor_per_node():
    w = np.full((36, 5), 0.2)
    # node 1 <- 0 (row 0): sigmoid; node 2 (rows 1-2): 'none' largest on 2<-0, relu on 2<-1
    w[0, RNN_OPS.index("sigmoid")] = 0.5
    w[1, RNN_OPS.index("none")] = 0.9
    w[2, RNN_OPS.index("relu")] = 0.4
    w[35, RNN_OPS.index("tanh")] = 0.3  # node 8 <- 7
    cell = derive_cell(w)
    assert all(len(node) == 1 for node in cell.nodes) and cell.concat == tuple(range(1, 9))
    assert cell.nodes[0] == (("sigmoid", 0),)
    assert cell.nodes[1] == (("relu", 1),)  # 'none' excluded (DARTS)
    assert cell.nodes[7] == (("tanh", 7),)
    assert cell.nodes[2] == (("tanh", 0),)  # all tied at 0.2: the first predecessor and op
    assert derive_cell(w, keep_none=True).nodes[1] == (("none", 0),)  # GDAS RNN code
    Genotype("rnn", {"rnn": cell}).validate()


def test_rnn_genotype_must_have_one_predecessor_per_node():
    good = PUBLISHED["GDAS_RNN"].genotype.to_json()
    good["cells"]["rnn"]["nodes"][3] = [["relu", 0], ["tanh", 1]]
    with pytest.raises(ValueError, match="exactly one"):
        Genotype.from_json(good)


def test_gdas_hard_runs_only_the_sampled_op():
    torch.manual_seed(0)
    nhid = 6
    cell = RNNSearchCell(nhid, nhid, "hard")
    calls = dict.fromkeys(RNN_OPS[1:], 0)

    def counting(op, fn):
        def wrapped(h):
            calls[op] += h.shape[0] if h.dim() == 3 else 1  # edges computed
            return fn(h)

        return wrapped

    cell.activations = {op: counting(op, fn) for op, fn in cell.activations.items()}
    genotype = PUBLISHED["DARTS_V2_RNN"].genotype
    index, start = [], 0
    for i, ((op, j),) in enumerate(genotype.cells["rnn"].nodes, start=1):
        # the genotype's edge samples its op, every other edge into the node samples 'none'
        index += [RNN_OPS.index(op) if k == j else 0 for k in range(i)]
        start += i
    cell._weights = torch.nn.functional.one_hot(torch.tensor(index), 5).float()
    cell.set_plan(index)
    cell.eval()  # BN with its initial running stats: x / sqrt(1 + eps)
    discrete = DartsRNNCell(genotype, nhid, nhid)
    with torch.no_grad():
        discrete.w0.copy_(cell.w0)
        for a, b in zip(discrete.ws, cell.ws):
            a.copy_(b)
    x, h = torch.randn(3, nhid), torch.randn(3, nhid)
    out = cell.step(x, h, None, None)
    # one edge per node computed, each with its own op: sigmoid 2, relu 3, identity 1, tanh 2
    assert calls == {"tanh": 2, "relu": 3, "sigmoid": 2, "identity": 1}
    # and the result is the discrete cell's, up to the BatchNorm's eps (1e-5 per node)
    assert torch.allclose(out, discrete.step(x, h, None, None), rtol=1e-3, atol=1e-5)


def test_soft_and_darts_modes_run_every_op():
    cell = RNNSearchCell(4, 4, "soft")
    calls = dict.fromkeys(RNN_OPS[1:], 0)

    def counting(op, fn):
        def wrapped(h):
            calls[op] += 1
            return fn(h)

        return wrapped

    cell.activations = {op: counting(op, fn) for op, fn in cell.activations.items()}
    cell.begin(1.0)
    cell(torch.randn(2, 3, 4), torch.zeros(3, 4))
    assert calls == dict.fromkeys(RNN_OPS[1:], 8 * 2)  # every node, every step


def test_the_search_cell_samples_at_the_temperature_it_is_given():
    """tau is an argument of the cell's sampling, not a stored attribute: the soft weights are
    softmax((alpha + g) / tau) for the tau passed, and Gumbel mixing without tau is an error."""
    cell = RNNSearchCell(4, 4, "soft", generator=torch.Generator())
    assert not hasattr(cell, "tau")
    for tau in (0.5, 4.0):
        cell.generator.manual_seed(0)
        cell.begin(tau)
        g = gumbel_noise(cell.alpha.shape, torch.Generator().manual_seed(0), "cpu")
        expected = torch.softmax((cell.alpha + g) / tau, dim=-1)
        torch.testing.assert_close(cell._weights, expected)
    with pytest.raises(ValueError, match="pass tau"):
        cell.begin(None)


def test_unrolled_gradient_matches_exact_autograd():
    """With clipping off (clip_coef = 1) and no dropout, DARTS's finite-difference step equals
    the exact derivative of L_val(w - eta (grad L_train + wd w), alpha) w.r.t. alpha (with a
    small finite-difference radius; DARTS's r = 0.01 is an approximation of its own)."""
    torch.manual_seed(0)
    net = RNNSupernet(12, 5, 5, "softmax", **NO_DROP).double()
    with torch.no_grad():
        net.cell.alpha.normal_(0, 0.5)
    xt, yt = torch.randint(0, 12, (4, 3)), torch.randint(0, 12, (4, 3))
    xv, yv = torch.randint(0, 12, (4, 3)), torch.randint(0, 12, (4, 3))
    h = net.init_hidden(3)
    eta, wd = 0.3, 1e-3
    unroll = ClippedUnroll(eta, wd, clip=1e9, r=1e-5)
    grads, _, _ = arch_gradient(net, lm_arch_loss, (xt, yt, h), (xv, yv, h), None, unroll)

    names = [n for n, p in net.named_parameters() if p is not net.cell.alpha]
    weights = net.weight_parameters()

    def ce(model_out, y):
        return torch.nn.functional.cross_entropy(model_out[0].reshape(-1, 12), y.reshape(-1))

    loss_t = ce(net(xt, h), yt)
    g = torch.autograd.grad(loss_t, weights, create_graph=True)
    unrolled = {n: w - eta * (gi + wd * w) for n, w, gi in zip(names, weights, g)}
    out = torch.func.functional_call(net, unrolled, (xv, h), strict=False)
    exact = torch.autograd.grad(ce(out, yv), net.cell.alpha)[0]
    assert torch.allclose(grads[0], exact, rtol=1e-3, atol=1e-7)
    first = torch.autograd.grad(ce(net(xv, h), yv), net.cell.alpha)[0]
    assert not torch.allclose(first, exact, rtol=1e-3, atol=1e-7)  # the second-order term


def test_unrolled_gradient_is_float32_under_bf16_autocast():
    """The recurrent second-order gradient equals the float32 one inside a bfloat16 autocast."""
    torch.manual_seed(0)
    net = RNNSupernet(50, 32, 32, "softmax", **NO_DROP)
    xt, yt = torch.randint(0, 50, (12, 8)), torch.randint(0, 50, (12, 8))
    xv, yv = torch.randint(0, 50, (12, 8)), torch.randint(0, 50, (12, 8))
    h = net.init_hidden(8)

    def grads():
        unroll = ClippedUnroll(20.0, 5e-7, clip=0.25)
        return arch_gradient(net, lm_arch_loss, (xt, yt, h), (xv, yv, h), None, unroll).grads[0]

    fp32 = grads()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = grads()
    assert bf16.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(bf16.flatten(), fp32.flatten(), dim=0)
    assert cosine >= 0.99


# --- sizes, perplexity, params ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["DARTS_V1_RNN", "DARTS_V2_RNN", "GDAS_RNN"])
@pytest.mark.parametrize(
    "vocab, size, paper_m",
    # PTB / WT2 vocabularies; GDAS Tables 3-4 (docs/algorithms.md#paper-numbers)
    [(10_000, 850, 23), (33_278, 700, 33)],
)
def test_published_cells_match_the_papers_sizes(name, vocab, size, paper_m):
    config = {**NO_DROP, "vocab_size": vocab, "emsize": size, "nhid": size}
    with torch.device("meta"):
        model = build_lm(resolve_genotype(name), config)
    n = count_lm_parameters(model)
    # tied embedding + decoder bias + W0 + 8 node matrices
    assert n == vocab * size + vocab + 2 * size * 2 * size + 8 * size * 2 * size
    assert round(n / 1e6) == paper_m


def test_uniform_model_has_the_vocabulary_as_perplexity(corpus):
    config = {**NO_DROP, "vocab_size": corpus.vocab_size, "emsize": 4, "nhid": 4}
    model = build_lm(PUBLISHED["GDAS_RNN"].genotype, config)
    with torch.no_grad():
        model.encoder.weight.zero_()  # logits = decoder bias = 0: uniform predictions
    config.update(bptt=7, eval_batch_size=3, test_batch_size=1)
    m = evaluate_perplexity(model, corpus, config, CPU)
    assert m["valid"]["ppl"] == pytest.approx(corpus.vocab_size)
    assert m["test"]["ppl"] == pytest.approx(corpus.vocab_size)
    assert m["test_tokens"] == len(corpus.test) - 1  # batch 1: the whole stream
    assert m["valid_tokens"] == (len(corpus.valid) // 3 - 1) * 3


def test_sequence_lengths_follow_variable_bptt():
    g = torch.Generator().manual_seed(0)
    fixed = [sequence_length(g, 35, 0.0, 20) for _ in range(4000)]
    assert set(fixed) == {35, 17}  # GDAS search: 35, or 17 with probability 0.05
    assert 0.04 < fixed.count(17) / len(fixed) < 0.06
    noisy = np.array([sequence_length(g, 35, 5.0, 20) for _ in range(4000)])
    assert noisy.min() >= 5 and noisy.max() <= 55
    full = noisy[noisy > 25]
    assert abs(full.mean() - 34.5) < 0.5 and abs(full.std() - 5) < 0.5  # int() truncates


def test_batchify_keeps_columns_contiguous():
    data = batchify(np.arange(23), 4, CPU)
    assert data.shape == (5, 4) and data[:, 1].tolist() == [5, 6, 7, 8, 9]
    with pytest.raises(UserError, match="batch size"):
        batchify(np.arange(5), 4, CPU)


@pytest.mark.parametrize(
    "raw, hint",
    [
        ({"search": {"space": "rnn"}}, "search.dataset needs a text corpus"),
        (
            {"prepare": {"datasets": ["digits", "pydoc"]}, "search": {"dataset": "pydoc"}},
            "set search.space to darts or nb201",
        ),
        (
            {
                "prepare": {"datasets": ["pydoc"]},
                "search": {"dataset": "pydoc", "space": "rnn", "algorithm": "snas"},
            },
            "gdas or darts",
        ),
        ({"search": {"rnn": {"emsize": 300, "nhid": 200}}}, "must equal nhid"),
        ({"search": {"rnn": {"gumbl": "soft"}}}, "did you mean 'search.rnn.gumbel'"),
        ({"train": {"genotype": "GDAS_RNN"}}, "train.dataset needs a text corpus"),
        (
            {"prepare": {"datasets": ["digits", "pydoc"]}, "train": {"dataset": "pydoc"}},
            "retrain a recurrent cell",
        ),
    ],
)
def test_bad_combinations_give_one_clear_message(raw, hint):
    with pytest.raises(UserError, match=hint):
        parse_params(raw)


def test_language_model_params_are_accepted():
    p = tiny_params()
    assert p.search.space == "rnn" and p.train.rnn.test_batch_size == 1
    transfer = parse_params(
        {
            "prepare": {"datasets": ["digits", "wt2"]},
            "train": {"dataset": "wt2", "genotype": "GDAS_RNN", "rnn": {}},
        }
    )
    assert transfer.train.dataset == "wt2"


@pytest.mark.parametrize(
    ("raw", "missing"),
    [
        (
            {
                "prepare": {"datasets": ["pydoc"]},
                "search": {"dataset": "pydoc", "space": "rnn"},
                "train": {"dataset": "pydoc", "rnn": {}},
            },
            "search.rnn missing",
        ),  # fmt: skip
        (
            {
                "prepare": {"datasets": ["digits", "wt2"]},
                "train": {"dataset": "wt2", "genotype": "GDAS_RNN"},
            },
            "train.rnn missing",
        ),  # fmt: skip
    ],
)
def test_the_language_model_track_needs_its_knobs_in_the_params_file(raw, missing):
    """CNN params files leave the rnn knobs out (so `dvc exp show` lists only what the CNN
    stages read); a language-model run without them is told where to start from."""
    with pytest.raises(UserError, match=f"{missing}.*dnas params use rnn-pydoc"):
        parse_params(raw)


def test_rnn_keys_stay_out_of_the_cnn_fingerprint():
    p = parse_params({})
    assert "rnn" not in p.search.model_dump() and "rnn" not in p.train.model_dump()


# --- runs, resume, plots --------------------------------------------------------------------


def _search(p, data, root):
    result = rnn_loop.run_rnn_search(p, data, CPU, root / "live", root / "ckpt")
    metrics = {k: v for k, v in result.metrics.items() if k != "cost"}
    text = dumps_json(result.genotype.to_json()) + dumps_json(metrics)
    return text, files(root / "live"), files(root / "ckpt")


def test_architecture_batches_have_the_fixed_bptt_length(monkeypatch, tmp_path, corpus):
    """The training batches follow variable BPTT; the architecture (valid) batches have the
    fixed `bptt` length, as in the DARTS and GDAS RNN search code (cut only at the end)."""
    p = tiny_params(search__epochs=1)
    lengths = {"train": [], "valid": []}
    real = rnn_loop.get_batch
    n_valid = len(corpus.valid) // p.search.batch_size  # batchify's rows
    assert n_valid != len(corpus.train) // p.search.batch_size

    def spy(source, i, seq_len):
        x, y = real(source, i, seq_len)
        part = "valid" if source.shape[0] == n_valid else "train"
        lengths[part].append((seq_len, x.shape[0], source.shape[0] - 1 - i))
        return x, y

    monkeypatch.setattr(rnn_loop, "get_batch", spy)
    rnn_loop.run_rnn_search(p, corpus, CPU, tmp_path / "live")
    bptt = p.search.rnn.bptt
    assert len(lengths["train"]) == len(lengths["valid"]) > 3
    assert {asked for asked, _, _ in lengths["valid"]} == {bptt}
    assert all(got == min(bptt, room) for _, got, room in lengths["valid"])
    assert len({asked for asked, _, _ in lengths["train"]}) > 1  # variable BPTT


@pytest.mark.parametrize("algorithm, order", [("gdas", 1), ("darts", 2)])
def test_interrupted_rnn_search_resumes_to_the_same_bytes(
    monkeypatch, tmp_path, corpus, algorithm, order
):
    p = tiny_params(search__algorithm=algorithm, search__order=order)
    expected = _search(p, corpus, tmp_path / "a")
    interrupt_at(monkeypatch, rnn_loop, 5)  # mid-epoch 1
    with pytest.raises(Interrupted, match="checkpoint saved"):
        _search(p, corpus, tmp_path / "b")
    monkeypatch.undo()
    assert _search(p, corpus, tmp_path / "b") == expected


def _train(p, data, root):
    model, _, metrics = train_lm.run_lm_train(
        p, PUBLISHED["GDAS_RNN"].genotype, data, CPU, root / "live", root / "ckpt"
    )
    weights = b"".join(v.numpy().tobytes() for v in model.state_dict().values())
    return dumps_json(metrics), weights, files(root / "live"), files(root / "ckpt")


def test_interrupted_lm_retraining_resumes_to_the_same_bytes(monkeypatch, tmp_path, corpus):
    p = tiny_params(train__epochs=4)  # nonmono 1: ASGD starts during the run
    expected = _train(p, corpus, tmp_path / "a")
    assert 1 <= json.loads(expected[0])["asgd_epoch"] <= 3  # the interruption hits ASGD
    interrupt_at(monkeypatch, train_lm, 70)  # in epoch 4
    with pytest.raises(Interrupted):
        _train(p, corpus, tmp_path / "b")
    monkeypatch.undo()
    assert _train(p, corpus, tmp_path / "b") == expected


def test_the_stages_run_the_language_model_track(tmp_path, monkeypatch, corpus, corpus_dir):
    """search -> train -> evaluate -> plots through the stage modules, in a scratch project."""
    import yaml

    import stages.evaluate
    import stages.plots
    import stages.search
    import stages.train

    monkeypatch.chdir(tmp_path)
    prepared = Path("data/prepared/pydoc")
    prepared.parent.mkdir(parents=True)
    (tmp_path / prepared).symlink_to(corpus_dir)
    # 8 epochs at lr 10: test perplexity 1.83-1.91 over seeds 0-3 with one thread (4 epochs
    # at lr 5 ranged 2.9-12.2 with the seed and the CPU's float kernels)
    p = tiny_params(train__lr=10.0, train__epochs=8)
    train_rnn = {**p.train.rnn.model_dump(), **NO_DROP, "emsize": 16, "nhid": 16}
    raw = {
        "common": p.common.model_dump(),
        "prepare": {"datasets": ["pydoc"]},
        "search": {**p.search.model_dump(), "rnn": p.search.rnn.model_dump()},
        "train": {**p.train.model_dump(), "rnn": train_rnn},
    }
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    for stage in (stages.search, stages.train, stages.evaluate, stages.plots):
        stage.main()

    ev = json.loads(Path("metrics/eval.json").read_text())
    # The toy grammar's own perplexity is about 1.77 (2, 3, 2, 2, 2, 1, 2 and 1 choices at the
    # 8 positions of a sentence: exp of their mean log); the unigram model's is about 12 and
    # the uniform one's 16. Below 4 is a model that learned the grammar, with a 2x margin.
    assert ev["test"]["ppl"] < 4 and ev["params"] > 0
    assert ev["valid"]["ppl"] == pytest.approx(
        json.loads(Path("metrics/train.json").read_text())["valid_ppl"], rel=1e-4
    )
    assert json.loads(Path("genotype.json").read_text())["space"] == "rnn"
    assert {f.name for f in Path("plots").iterdir()} >= {"cells.png", "arch_probs.png"}


def test_the_recurrent_architecture_step_uses_the_searchs_alpha_optimiser_and_clip():
    """The RNN arch step takes the alphas' optimiser and `arch_grad_clip` from the params, as
    the CNN search: with plain SGD at lr 1, alpha moves by exactly the (clipped) gradient."""
    torch.manual_seed(0)
    batch = (torch.randint(0, 12, (4, 3)), torch.randint(0, 12, (4, 3)))

    def move(clip: float) -> float:
        p = tiny_params(search__arch_optimizer="sgd", search__arch_lr=1.0,
                        search__arch_weight_decay=0.0, search__arch_grad_clip=clip)  # fmt: skip
        torch.manual_seed(1)
        net = RNNSupernet(12, 5, 5, "softmax", **NO_DROP)
        a_opt = rnn_loop.arch_optimizer(p.search, net)
        assert isinstance(a_opt, torch.optim.SGD)
        before = net.cell.alpha.detach().clone()
        h = net.init_hidden(3)
        rnn_loop.rnn_arch_step(net, a_opt, p.search, (*batch, h), (*batch, h), 1.0, None)
        return (net.cell.alpha.detach() - before).norm().item()

    free = move(0.0)  # the gradient's norm
    assert free > 0
    # clip_grad_norm_ scales by clip / (norm + 1e-6): 0.2 % off at this tiny norm
    assert move(free / 4) == pytest.approx(free / 4, rel=5e-3)
    assert move(4 * free) == pytest.approx(free, rel=1e-6)  # a clip above the norm: no change
