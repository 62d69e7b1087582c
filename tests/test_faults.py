"""Numerical faults: a NaN in the loss stops search and retraining with a message that names
the epoch and step, before any output is written."""

import pytest
import torch
import torch.nn.functional as F

from dnas.config import parse_params
from dnas.errors import UserError
from dnas.runtime import FiniteLossGuard
from dnas.search import loop as search_loop
from dnas.train import loop as train_loop

TINY = {
    "search": {"epochs": 2, "channels": 4, "layers": 3, "batch_size": 256},
    "train": {"epochs": 2, "channels": 4, "layers": 3, "batch_size": 256},
}


def _nan_at(call: int, monkeypatch):
    """Make the `call`-th training cross-entropy (counting from 1) return NaN."""
    real = F.cross_entropy
    count = {"n": 0}

    def patched(logits, target, *args, **kwargs):
        loss = real(logits, target, *args, **kwargs)
        if torch.is_grad_enabled():
            count["n"] += 1
            if count["n"] == call:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(F, "cross_entropy", patched)


def test_guard_reports_the_first_bad_step():
    guard = FiniteLossGuard(torch.device("cpu"), "train", "train.lr")
    for value in (1.0, 2.0, float("inf"), float("nan")):
        guard.observe(torch.tensor(value))
    with pytest.raises(UserError, match="epoch 4, step 3"):
        guard.check(3)
    ok = FiniteLossGuard(torch.device("cpu"), "train", "train.lr")
    ok.observe(torch.tensor(0.5))
    ok.check(0)


def test_nan_in_retraining_names_epoch_and_step(monkeypatch, digits_prepared, tmp_path):
    params = parse_params(TINY)
    genotype = search_loop.make_supernet(params.search, digits_prepared).derive()
    # 1437 train images in batches of 256: 6 steps per epoch; call 9 is epoch 2, step 3.
    _nan_at(9, monkeypatch)
    with pytest.raises(UserError, match=r"train: the loss became inf or NaN at epoch 2, step 3"):
        train_loop.run_train(params, genotype, digits_prepared, torch.device("cpu"), tmp_path)


def test_nan_in_search_names_epoch_and_step(monkeypatch, digits_prepared, tmp_path):
    params = parse_params(TINY)
    # two losses per step (weights, architecture): call 4 is the architecture loss of step 2
    _nan_at(4, monkeypatch)
    with pytest.raises(UserError, match=r"search: the loss became inf or NaN at epoch 1, step 2"):
        search_loop.run_search(params, digits_prepared, torch.device("cpu"), tmp_path)
