"""Checkpoints: an interrupted search or retraining resumes to byte-identical results;
stale and corrupt checkpoints are set aside, never resumed from."""

import dataclasses
from pathlib import Path

import pytest
import torch

from dnas.checkpoint import Checkpointer, Interrupted
from dnas.config import parse_params
from dnas.io import MEASURED, dumps_json
from dnas.search import loop as search_loop
from dnas.train import loop as train_loop
from tests.interrupt import files, interrupt_at

TINY = {
    "search": {"epochs": 3, "channels": 4, "layers": 3, "batch_size": 128},
    "train": {"epochs": 3, "channels": 4, "layers": 3, "batch_size": 128},
    "common": {"checkpoint_every": 1},
}
CPU = torch.device("cpu")


def _search(params, data, root: Path):
    result = search_loop.run_search(params, data, CPU, root / "live", root / "ckpt")
    genotype = dumps_json(result.genotype.to_json())
    metrics = {k: v for k, v in result.metrics.items() if k != MEASURED}  # timings differ
    return genotype + dumps_json(metrics), files(root / "live"), files(root / "ckpt")


@pytest.mark.parametrize("stop_step", [7, 12])  # mid-epoch 2; the end of epoch 2 (6 steps each)
def test_interrupted_search_resumes_to_the_same_bytes(
    monkeypatch, tmp_path, digits_prepared, stop_step
):
    params = parse_params(TINY)
    expected = _search(params, digits_prepared, tmp_path / "a")
    interrupt_at(monkeypatch, search_loop, stop_step)
    with pytest.raises(Interrupted, match="checkpoint saved"):
        _search(params, digits_prepared, tmp_path / "b")
    monkeypatch.undo()
    assert _search(params, digits_prepared, tmp_path / "b") == expected


def test_progressive_drnas_resumes_in_its_second_stage(monkeypatch, tmp_path, digits_prepared):
    """The checkpoint of a later stage is restored into the pruned, widened network."""
    search = {**TINY["search"], "epochs": 4}
    search.update(algorithm="drnas", partial_channels=[2, 1], keep_ops=[3], arch_warmup=1)
    params = parse_params({**TINY, "search": search})
    card = digits_prepared.card
    splits = {k: v[:256] for k, v in card["splits"].items()}  # 2 steps per epoch
    data = dataclasses.replace(digits_prepared, card={**card, "splits": splits})
    expected = _search(params, data, tmp_path / "a")
    interrupt_at(monkeypatch, search_loop, 2 * 2 + 1)  # mid-epoch 3, in stage 2
    with pytest.raises(Interrupted, match="checkpoint saved"):
        _search(params, data, tmp_path / "b")
    monkeypatch.undo()
    assert _search(params, data, tmp_path / "b") == expected


def _train(params, genotype, data, root: Path):
    model, _, metrics = train_loop.run_train(
        params, genotype, data, CPU, root / "live", root / "ckpt"
    )
    weights = b"".join(v.numpy().tobytes() for v in model.state_dict().values())
    return dumps_json(metrics), weights, files(root / "live"), files(root / "ckpt")


def test_interrupted_retraining_resumes_to_the_same_bytes(monkeypatch, tmp_path, digits_prepared):
    params = parse_params({**TINY, "train": {**TINY["train"], "drop_path": 0.2}})
    genotype = search_loop.make_supernet(params.search, digits_prepared).derive()
    expected = _train(params, genotype, digits_prepared, tmp_path / "a")
    interrupt_at(monkeypatch, train_loop, 8)  # 12 steps per epoch: mid-epoch 1
    with pytest.raises(Interrupted):
        _train(params, genotype, digits_prepared, tmp_path / "b")
    monkeypatch.undo()
    assert _train(params, genotype, digits_prepared, tmp_path / "b") == expected


def test_stale_checkpoint_is_set_aside(tmp_path, capsys):
    ckpt = tmp_path / "search"
    Checkpointer(ckpt, "params-a", 1).save({"epoch": 1})
    assert Checkpointer(ckpt, "params-a", 1).load()["epoch"] == 1
    assert Checkpointer(ckpt, "params-b", 1).load() is None
    assert "belongs to other params or data" in capsys.readouterr().err
    assert (tmp_path / "set-aside" / "search.stale.paramsa.pt").is_file()  # its fingerprint
    assert list(ckpt.iterdir()) == []  # nothing left in the directory DVC tracks


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04truncated zip"])
def test_corrupt_checkpoint_is_set_aside(tmp_path, capsys, content):
    ckpt = tmp_path / "train"
    ckpt.mkdir()
    (ckpt / "last.pt").write_bytes(content)
    (ckpt / ".last.pt.abc123.tmp").write_bytes(b"half a write")  # cut short by SIGKILL
    assert Checkpointer(ckpt, "params-a", 1).load() is None
    assert "is unreadable" in capsys.readouterr().err
    assert (tmp_path / "set-aside" / "train.corrupt.pt").read_bytes() == content
    assert list(ckpt.iterdir()) == []


def test_finished_run_is_not_resumed(tmp_path):
    Checkpointer(tmp_path, "p", 1).save({"epoch": 3}, complete=True)
    assert Checkpointer(tmp_path, "p", 1).load() is None
    assert (tmp_path / "last.pt").is_file()  # kept: DVC declares it as a persistent output


def test_a_stale_search_checkpoint_starts_from_scratch(tmp_path, digits_prepared, capsys):
    params = parse_params(TINY)
    first = _search(params, digits_prepared, tmp_path / "a")
    other = parse_params({**TINY, "search": {**TINY["search"], "tau_max": 7.0}})
    _search(other, digits_prepared, tmp_path / "b")
    Checkpointer(tmp_path / "b" / "ckpt", "x", 1).save({"epoch": 1})  # someone else's
    assert _search(params, digits_prepared, tmp_path / "b") == first
    assert "belongs to other params or data" in capsys.readouterr().err


def test_a_signal_without_checkpointing_still_stops(monkeypatch, tmp_path, digits_prepared):
    interrupt_at(monkeypatch, search_loop, 2)
    with pytest.raises(Interrupted, match="not checkpointing"):
        search_loop.run_search(parse_params(TINY), digits_prepared, CPU, tmp_path / "live")
