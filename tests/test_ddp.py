"""Data parallelism under torchrun, on the CPU with gloo and 2 processes: the ranks draw the
same architectures and end with the same weights and alphas, a shard-averaged gradient is the
whole batch's, an interrupted run resumes to the same state, only rank 0 writes, and the stages
run under torchrun."""

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.torchrun_launch import standalone

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory, digits_prepared_dir):
    out = tmp_path_factory.mktemp("ddp")
    worker = ROOT / "tests" / "ddp_worker.py"
    done = standalone(str(worker), str(out), str(digits_prepared_dir), cwd=out, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    states = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return out, states


def _assert_equal(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_ranks_draw_the_same_architectures(ranks):
    _, (r0, r1) = ranks
    assert r0["samples"] == r1["samples"]
    assert len({tuple(s) for s in r0["samples"]}) > 1  # the draws do vary


def test_shard_averaged_gradient_is_the_whole_batch_gradient(ranks):
    _, states = ranks
    for state in states:
        g = state["gradients"]
        for whole, averaged in zip(g["whole"], g["averaged"]):
            torch.testing.assert_close(averaged, whole, rtol=1e-5, atol=1e-7)
    # ... and the same on both ranks, bit for bit (one all-reduce, the same sum everywhere)
    _assert_equal(states[0]["gradients"]["averaged"], states[1]["gradients"]["averaged"])


def test_ranks_end_with_the_same_weights_alphas_and_metrics(ranks):
    _, (r0, r1) = ranks
    for key in ("search", "search_net", "train"):
        _assert_equal(r0[key], r1[key], key)
    # the alphas moved: 8 Adam steps of lr 3e-4 move each by up to about 2.4e-3
    moved = (r0["search_net"]["alphas.cell"] - r0["search_start"]["alphas.cell"]).abs()
    assert moved.max() > 1e-3


def test_random_search_ranks_agree_and_resume(ranks):
    """Random search with weight sharing under torchrun: both ranks draw the same architectures
    and end with the same weights, selection and metrics; the shared weights did train; an
    interrupted run resumes to the same state."""
    _, (r0, r1) = ranks
    for key in ("random", "random_net", "random_resumed", "random_resumed_net"):
        _assert_equal(r0[key], r1[key], key)
    moved = [(r0["random_net"][k] - v).abs().max() for k, v in r0["random_start"].items()
             if v.is_floating_point() and "running" not in k]  # fmt: skip
    assert max(moved) > 1e-3
    _assert_equal(r0["random_resumed"], r0["random"], "random")
    _assert_equal(r0["random_resumed_net"], r0["random_net"], "random_net")
    assert r0["random"]["metrics"]["arch_samples"] == 6


def test_interrupted_runs_resume_to_the_same_state(ranks):
    _, (r0, r1) = ranks
    _assert_equal(r0["search_resumed"], r0["search"], "search")
    _assert_equal(r0["search_resumed_net"], r0["search_net"], "search_net")
    _assert_equal(r0["train_resumed"], r0["train"], "train")
    _assert_equal(r1["train_resumed"], r0["train"], "train rank 1")


def test_only_rank_0_writes(ranks):
    out, _ = ranks
    runs = ("run-search", "run-search-resumed", "run-random", "run-random-resumed")
    for run in (*runs, "run-train", "run-train-resumed"):
        assert (out / run / "live0" / "metrics.json").is_file()
        assert (out / run / "ckpt0" / "last.pt").is_file()
        assert not (out / run / "live1").exists()
        assert not (out / run / "ckpt1").exists()


def test_stages_run_under_torchrun(tmp_path, digits_prepared_dir):
    shutil.copytree(digits_prepared_dir, tmp_path / "data" / "prepared" / "digits")
    params = {
        "common": {"device": "cpu"},
        "search": {"space": "nb201", "epochs": 1, "channels": 4, "layers": 1, "batch_size": 256},
        "train": {"epochs": 1, "channels": 4, "layers": 1, "batch_size": 256},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("search", "train"):
        done = standalone("-m", f"stages.{stage}", cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr[-4000:]
        assert done.stdout.count(f"{stage} epoch 1/1") == 1  # rank 0 alone reports
    genotype = yaml.safe_load((tmp_path / "genotype.json").read_text())
    assert genotype["space"] == "nb201"
    assert (tmp_path / "models" / "model.pt").is_file()
    for name in ("search", "train"):
        assert (tmp_path / "metrics" / f"{name}.json").is_file()
        assert (tmp_path / "dvclive" / name / "metrics.json").is_file()
