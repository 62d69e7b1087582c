"""The architecture budget (dnas.search.budget, docs/algorithms.md#the-architecture-step-size-
arch_lr-auto): `search.arch_lr: auto`, the `settled` report, and the fixed axis of
arch_probs.png."""

import json
import math

import pytest

from dnas.config import parse_params
from dnas.errors import UserError
from dnas.search import budget
from dnas.search.budget import (
    ANCHOR_STEPS,
    MAX_AUTO_LR,
    arch_steps,
    auto_arch_lr,
    resolve,
    settled_report,
    unchanged_epochs,
)

# --- the rule ---------------------------------------------------------------------------------


def test_auto_is_the_papers_step_at_the_papers_number_of_steps():
    # GDAS: 240 epochs of ceil(25,000 / 64) architecture steps at Adam lr 3e-4
    assert ANCHOR_STEPS == 240 * math.ceil(25_000 / 64)
    assert auto_arch_lr(ANCHOR_STEPS) == 3.0e-4
    assert auto_arch_lr(2 * ANCHOR_STEPS) == 1.5e-4  # twice the steps, half the step


def test_auto_falls_with_the_number_of_steps_and_is_capped():
    steps = [1, 2, 10, 100, 281, 282, 300, 460, 470, 1000, 5200, 20_000, 93_840, 10**6, 10**8]
    values = [auto_arch_lr(n) for n in steps]
    assert all(a >= b for a, b in zip(values, values[1:])), values
    assert all(0 < v <= MAX_AUTO_LR for v in values)
    assert values[0] == MAX_AUTO_LR and values[-1] < 1e-6
    # lr x steps is held wherever the cap does not bite (to the 3 significant digits kept)
    for n in (470, 5200, 20_000, 10**6):
        assert auto_arch_lr(n) * n == pytest.approx(3.0e-4 * ANCHOR_STEPS, rel=5e-3)


def _card(train, search_train=None, test=100):
    search_train = train // 2 if search_train is None else search_train
    return {"counts": {"train": train, "search_train": search_train,
                       "search_valid": train - search_train, "test": test}}  # fmt: skip


def test_the_number_of_steps_comes_from_the_split_sizes_and_the_algorithm():
    digits = _card(1437, 718)  # data/prepared/digits/card.json
    s = parse_params({}).search  # the default: gdas, 20 epochs, batch 32
    assert arch_steps(s, digits) == 20 * math.ceil(718 / 32) == 460
    snas = parse_params({"search": {"algorithm": "snas", "tau_schedule": "snas"}}).search
    assert arch_steps(snas, digits) == 20 * math.ceil(1437 / 32)  # single level: all of train
    # DrNAS: two stages of 10 epochs, the alphas still for the first 3 of each
    drnas = parse_params({"search": {"algorithm": "drnas", "partial_channels": [4, 2],
                                     "keep_ops": [4], "arch_warmup": 3}}).search  # fmt: skip
    assert arch_steps(drnas, digits) == (20 - 2 * 3) * 23
    # The recurrent search: bptt-long segments of each batch column of training tokens
    rnn = parse_params({"search": {"space": "rnn", "dataset": "pydoc", "batch_size": 64,
                                   "epochs": 2, "rnn": {"bptt": 35}},
                        "prepare": {"datasets": ["pydoc"]},
                        "train": {"dataset": "pydoc", "genotype": "DARTS_V2_RNN",
                                  "rnn": {}}}).search  # fmt: skip
    tokens = 59_000
    assert arch_steps(rnn, {"counts": {"train": tokens}}) == 2 * math.ceil(
        (tokens // 64 - 2) / 35
    )


class _Data:
    def __init__(self, card):
        self.card = card


def test_resolve_replaces_auto_by_its_number_and_says_so(capsys):
    p = parse_params({"search": {"arch_lr": "auto", "epochs": 10}})
    q = resolve(p, _Data(_Card := _card(3000, 1500)))
    assert q.search.arch_lr == auto_arch_lr(470) == 0.0599
    assert p.search.arch_lr == "auto"  # the caller's params are left alone
    assert q.search.model_dump(exclude={"arch_lr"}) == p.search.model_dump(exclude={"arch_lr"})
    out = capsys.readouterr().out
    assert "arch_lr auto = 0.0599" in out and "470 architecture steps" in out
    # a search this short hits the cap, and the line says so
    resolve(parse_params({"search": {"epochs": 1}}), _Data(_card(64, 32)))
    assert f"capped at {MAX_AUTO_LR:g}" in capsys.readouterr().out


@pytest.mark.parametrize("value", [0.03, 3.0e-4, "3e-4", 1])
def test_a_number_is_used_as_it_is(value, capsys):
    p = parse_params({"search": {"arch_lr": value}})
    assert resolve(p, _Data(_card(3000))) is p
    assert p.search.arch_lr == float(value) and isinstance(p.search.arch_lr, float)
    assert capsys.readouterr().out == ""


def test_random_search_has_no_alphas_to_step():
    p = parse_params({"search": {"algorithm": "random"}})
    assert resolve(p, _Data(_card(3000))) is p


# --- the params -------------------------------------------------------------------------------


def test_auto_is_the_default_and_accepted():
    assert parse_params({}).search.arch_lr == "auto"
    assert parse_params({"search": {"arch_lr": "auto"}}).search.arch_lr == "auto"


@pytest.mark.parametrize("value", ["fast", "Auto!", "", 0, -0.1, True, [0.1], None, "nan"])
def test_a_bad_arch_lr_is_one_line_naming_the_key(value):
    with pytest.raises(UserError) as err:
        parse_params({"search": {"arch_lr": value}})
    message = str(err.value)
    assert len(message.splitlines()) == 1, message
    assert "search.arch_lr" in message and "auto" in message, message


# --- settled ----------------------------------------------------------------------------------

A = {"normal": "sep_conv_3x3(0) skip_connect(1)", "reduce": "max_pool_3x3(0) max_pool_3x3(1)"}
B = {**A, "normal": "sep_conv_5x5(0) skip_connect(1)"}
C = {**A, "reduce": "avg_pool_3x3(0) max_pool_3x3(1)"}


@pytest.mark.parametrize(
    "history, unchanged",
    [
        ([A], 0),
        ([A, B], 0),
        ([A, A], 1),
        ([B, A, A], 1),
        ([B, A, A, A], 2),
        ([A, B, C, C, C, C], 3),
        ([A, A, A, B], 0),  # changed in the last epoch: not settled, however long before
        ([C, C, B, C, C, C], 2),  # back to an earlier genotype counts from the return
    ],
)
def test_unchanged_epochs_counts_the_final_epochs_without_a_change(history, unchanged):
    assert unchanged_epochs(history) == unchanged
    report = settled_report(history, len(history))
    assert report == {"settled": unchanged >= 2}


def test_a_node_whose_two_inputs_swap_rank_is_unchanged():
    """The DARTS rule lists a node's inputs by rank; two epochs whose only difference is which
    of the same two kept inputs ranks first derive the same cell (a node sums its inputs), and
    the settled check, on Genotype.brief, sees no change."""
    import numpy as np

    from dnas.spaces import darts
    from dnas.spaces.genotype import Genotype

    ops = darts.DARTS_OPS
    sep3, skip = ops.index("sep_conv_3x3"), ops.index("skip_connect")
    epochs = []
    for first, second in ((0.6, 0.4), (0.4, 0.6)):  # node 2's inputs 0 and 1 swap rank
        probs = np.full((len(darts.edges(darts.STEPS)), len(ops)), 0.01)
        probs[0, sep3], probs[1, skip] = first, second
        probs[2:, sep3] = 0.5  # every later edge: the same op and rank in both epochs
        cell = darts.derive_cell(probs, ops)
        epochs.append(Genotype("darts", {"normal": cell, "reduce": cell}).brief())
    assert epochs[0]["normal"].startswith("sep_conv_3x3(0) skip_connect(1) |"), epochs[0]
    assert epochs[0] == epochs[1]
    assert unchanged_epochs([epochs[0], epochs[1], epochs[1]]) == 2


def test_not_settled_prints_what_to_do(capsys):
    settled_report([A, B, A, B], 4)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "did not settle" in out and "epoch 4 of 4" in out
    assert "search.epochs" in out and "search.arch_weight_decay" in out
    assert "search.arch_lr_schedule: cosine" in out
    settled_report([B, A, A, A], 4)
    assert capsys.readouterr().out == ""


def test_a_search_reports_its_step_size_and_whether_it_settled(digits_prepared, tmp_path):
    """A short default search on digits: metrics carry the resolved arch_lr (a number) and the
    settled report computed from the genotypes it logged."""
    import torch

    from dnas.search.loop import run_search

    p = parse_params({"search": {"epochs": 3, "channels": 4, "layers": 1}})
    result = run_search(p, digits_prepared, torch.device("cpu"), tmp_path / "live")
    m = result.metrics
    steps = 3 * math.ceil(digits_prepared.card["counts"]["search_train"] / 32)
    assert m["arch_lr"] == auto_arch_lr(steps) and isinstance(m["arch_lr"], float)
    log = json.loads((tmp_path / "live/genotypes.json").read_text())
    cells = [{k: v for k, v in row.items() if k != "epoch"} for row in log]
    assert "unchanged_epochs" not in m  # in the note and the genotype log, not a column
    assert m["settled"] is (unchanged_epochs(cells) >= budget.SETTLE_EPOCHS)


# --- arch_probs.png ---------------------------------------------------------------------------


def test_arch_probs_axis_is_fixed_from_0_to_1_with_the_uniform_level_marked():
    """A flat search (every probability 0.19-0.21, as the language-model search of issue 22) is
    drawn on 0-1, not on an axis fitted to 0.19-0.21 that makes noise look like movement."""
    from dnas.plots.arch_probs import arch_probs_figure
    from dnas.plots.style import plt

    ops = ["none", "tanh", "relu", "sigmoid", "identity"]
    edges = ["1<-0", "2<-0", "2<-1"]
    rows = [
        {"epoch": e, "cell": "cell", "edge": edge, "op": op,
         "prob": 0.2 + 0.01 * math.sin(e + 3 * k + j)}  # fmt: skip
        for e in range(5)
        for j, edge in enumerate(edges)
        for k, op in enumerate(ops)
    ]
    geno = {"space": "rnn", "ops": ops,
            "cells": {"cell": {"inputs": 1, "nodes": [[["tanh", 0]], [["relu", 1]]]}}}  # fmt: skip
    fig = arch_probs_figure(rows, geno)
    try:
        assert len(fig.axes) == len(edges)
        for ax in fig.axes:
            assert ax.get_ylim() == (0.0, 1.0)
            levels = [
                line.get_ydata()[0]
                for line in ax.get_lines()
                if line.get_linestyle() == ":" and len(set(line.get_ydata())) == 1
            ]
            assert levels == [pytest.approx(1 / len(ops))]
    finally:
        plt.close(fig)


# --- the alphas' step schedule (search.arch_lr_schedule) -----------------------------------


def _search(**knobs):
    return parse_params({"search": {"arch_lr": 0.05, **knobs}}).search


@pytest.mark.parametrize("epochs", [1, 2, 3, 10, 20, 240])
def test_cosine_arch_step_starts_at_arch_lr_falls_and_averages_half(epochs):
    """The cosine's own facts: the first epoch steps at arch_lr, each later one less, never
    0 (no floor, but the last epoch starts before the cosine's end), and the mean step over the
    epochs is (1 + 1/epochs) / 2 of arch_lr (the sum of cos(pi k / n) over k < n is 1)."""
    from dnas.optim import arch_lr_at

    s = _search(epochs=epochs, arch_lr_schedule="cosine")
    steps = [arch_lr_at(s, e) for e in range(epochs)]
    assert steps[0] == pytest.approx(0.05)
    assert all(a > b > 0 for a, b in zip(steps, steps[1:])), steps
    assert sum(steps) / epochs == pytest.approx(0.05 * (1 + 1 / epochs) / 2)
    if epochs == 10:  # docs/algorithms.md: the last of 10 epochs steps at 2.4 % of arch_lr
        assert steps[-1] / 0.05 == pytest.approx(0.0245, abs=5e-4)
    constant = _search(epochs=epochs, arch_lr_schedule="constant")
    assert {arch_lr_at(constant, e) for e in range(epochs)} == {0.05}


def _spy_on_arch_steps(monkeypatch, module) -> list[float]:
    """Records the alphas' optimiser's step size at every step it takes in `module`'s loop."""
    seen: list[float] = []
    real = module.arch_optimizer

    def spying(*args, **kwargs):
        opt = real(*args, **kwargs)
        step = opt.step

        def recorded(*a, **kw):
            seen.append(opt.param_groups[0]["lr"])
            return step(*a, **kw)

        opt.step = recorded
        return opt

    monkeypatch.setattr(module, "arch_optimizer", spying)
    return seen


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_the_search_loop_steps_the_alphas_at_the_schedule(
    digits_prepared, tmp_path, monkeypatch, schedule
):
    """Every architecture step of epoch e is taken at the schedule's step for e; the first
    epoch of a cosine search is the constant search's, bit for bit (the op probabilities it
    logs), the later ones move less."""
    import torch

    from dnas.search import loop

    seen = _spy_on_arch_steps(monkeypatch, loop)
    knobs = {"epochs": 3, "channels": 4, "layers": 1, "arch_lr_schedule": schedule}
    loop.run_search(parse_params({"search": knobs}), digits_prepared, torch.device("cpu"),
                    tmp_path / schedule)  # fmt: skip
    per_epoch = len(seen) // 3
    assert len(seen) == 3 * per_epoch > 0
    factors = [1.0, 0.75, 0.25] if schedule == "cosine" else [1.0, 1.0, 1.0]
    for epoch, factor in enumerate(factors):
        got = seen[epoch * per_epoch : (epoch + 1) * per_epoch]
        assert got == pytest.approx([seen[0] * factor] * per_epoch), (epoch, got)


def _probs_by_epoch(live) -> dict[int, list]:
    rows = json.loads((live / "plots/custom/arch_probs.json").read_text())
    out: dict[int, list] = {}
    for r in rows:
        out.setdefault(r["epoch"], []).append((r["cell"], r["edge"], r["op"], r["prob"]))
    return out


def test_a_cosine_search_is_the_constant_one_in_its_first_epoch(digits_prepared, tmp_path):
    import torch

    from dnas.search.loop import run_search

    probs = {}
    for schedule in ("cosine", "constant"):
        knobs = {"epochs": 3, "channels": 4, "layers": 1, "arch_lr_schedule": schedule}
        run_search(parse_params({"search": knobs}), digits_prepared, torch.device("cpu"),
                   tmp_path / schedule)  # fmt: skip
        probs[schedule] = _probs_by_epoch(tmp_path / schedule)
    assert probs["cosine"][0] == probs["constant"][0]
    assert probs["cosine"][2] != probs["constant"][2]


def test_the_recurrent_search_steps_the_alphas_at_the_schedule(tmp_path, monkeypatch):
    import torch

    from dnas.search import rnn_loop
    from tests.test_rnn import tiny_corpus, tiny_params

    seen = _spy_on_arch_steps(monkeypatch, rnn_loop)
    p = tiny_params(search__epochs=3, search__arch_lr_schedule="cosine")
    rnn_loop.run_rnn_search(p, tiny_corpus(tmp_path), torch.device("cpu"), tmp_path / "live")
    assert seen and seen[0] == pytest.approx(3.0e-3)
    distinct = sorted({round(v / 3.0e-3, 9) for v in seen}, reverse=True)
    assert distinct == pytest.approx([1.0, 0.75, 0.25])  # one step size per epoch, falling


# --- what changed last (the note of an unsettled search) -------------------------------------


def _rows(epoch: int, cell: str, probs: dict[str, dict[str, float]]) -> list[dict]:
    """Op probability rows as record.arch_prob_rows writes them."""
    return [{"epoch": epoch, "cell": cell, "edge": edge, "op": op, "prob": value}
            for edge, ops in probs.items() for op, value in ops.items()]  # fmt: skip


def test_changed_edges_names_an_op_change_and_an_input_swap_with_their_probabilities():
    from dnas.search.budget import changed_edges

    before = {"normal": "max_pool_3x3(0) skip_connect(1) | sep_conv_3x3(0) max_pool_3x3(2)"}
    after = {"normal": "max_pool_3x3(0) dil_conv_3x3(1) | sep_conv_3x3(0) max_pool_3x3(1)"}
    rows = _rows(4, "normal", {
        "2<-0": {"none": 0.1, "max_pool_3x3": 0.8},
        "2<-1": {"none": 0.9, "skip_connect": 0.0221, "dil_conv_3x3": 0.0222},
        "3<-0": {"sep_conv_3x3": 0.7}, "3<-1": {"max_pool_3x3": 0.933},
        "3<-2": {"max_pool_3x3": 0.927},
    })  # fmt: skip
    assert changed_edges(before, after, rows) == [
        "normal 2<-1: skip_connect 0.0221 -> dil_conv_3x3 0.0222",
        "normal node 3: max_pool_3x3(2) 0.927 -> max_pool_3x3(1) 0.933",
    ]
    assert changed_edges(after, after, rows) == []
    # The recurrent cell's nodes start at 1 (one input): the first node is found from the rows.
    rnn = _rows(0, "cell", {"1<-0": {"tanh": 0.3, "relu": 0.31}, "2<-1": {"relu": 0.5}})
    assert changed_edges({"cell": "tanh(0) | relu(1)"}, {"cell": "relu(0) | relu(1)"}, rnn) == [
        "cell 1<-0: tanh 0.3 -> relu 0.31"
    ]


def test_the_note_of_an_unsettled_search_says_what_changed_last(capsys):
    first = {"normal": "max_pool_3x3(0) skip_connect(1)"}
    second = {"normal": "max_pool_3x3(0) dil_conv_3x3(1)"}
    rows = _rows(2, "normal", {"2<-1": {"skip_connect": 0.0221, "dil_conv_3x3": 0.0222}})
    assert settled_report([first, first, second], 3, rows) == {"settled": False}
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    assert "last changed in epoch 3 of 3 (normal 2<-1: skip_connect 0.0221 -> dil_conv_3x3" in out
