"""torchrun over two machines (docs/distributed.md), simulated on this one: two torchrun
launchers, one process each, meet at a c10d rendezvous on 127.0.0.1 and talk over gloo. Each
"node" runs in a directory of its own with its own copy of params.yaml and the prepared data,
as separate machines would.

- The search stage's outputs on two nodes equal those of the single-node 2-process run, byte
  for byte; only the rank-0 node writes any (genotype.json, metrics, dvclive, checkpoints).
- tests/ddp_worker.py (the checks of test_ddp.py) on two nodes, here with the static
  rendezvous, whose --node-rank chooses rank 0's node: the ranks agree, the shard-averaged
  gradient is the whole batch's, and an interrupted run resumes to the same state from a
  checkpoint that only rank 0's node holds.
- `distributed.check_same_run` on two nodes: a rank with other params, data or genotype (a
  clone's old genotype.json on the other node, after a search), or a checkpoint that would
  resume the run on a node other than rank 0's, stops the run on every rank; the epoch runner
  of every loop checks before its first step.

Run as a script (under torchrun), this file is the worker of the last two checks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from tests.pipeline_copy import checkout_env
from tests.torchrun_launch import standalone

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds for one launch; a rendezvous that never completes fails the test
PARAMS = {
    "common": {"device": "cpu"},
    "search": {"space": "nb201", "epochs": 1, "channels": 4, "layers": 1, "batch_size": 256},
    "train": {"epochs": 1, "channels": 4, "layers": 1, "batch_size": 256},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nodes(*args, nodes: list[Path], node_ranks=None) -> list[subprocess.CompletedProcess]:
    """`torchrun --nnodes 2 --nproc-per-node 1 ... ARGS` in each node's directory at once, as
    the docs tell each machine to run it: the c10d rendezvous, or with `node_ranks` the static
    one with those --node-rank values. Returns each node's finished process."""
    port = _free_port()
    procs, logs = [], []
    for i, node in enumerate(nodes):
        if node_ranks is None:
            rdzv = ["--rdzv-backend", "c10d", "--rdzv-id", "multinode", "--local-addr", "127.0.0.1"]
        else:
            rdzv = ["--rdzv-backend", "static", "--node-rank", str(node_ranks[i])]
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
            "--nproc-per-node", "1", "--rdzv-endpoint", f"127.0.0.1:{port}", *rdzv, *args,
        ]  # fmt: skip
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        logs.append((out, err))
        procs.append(
            subprocess.Popen(
                cmd, cwd=node, env=checkout_env(), stdout=out, stderr=err, start_new_session=True
            )
        )
    done = []
    try:
        for p, (out, err) in zip(procs, logs):
            p.wait(timeout=TIMEOUT)
            out.seek(0)
            err.seek(0)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out.read(), err.read()))
    finally:
        for p, files in zip(procs, logs):
            if p.poll() is None:  # past the timeout: end the launcher and its workers
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            for f in files:
                f.close()
    return done


def _ok(runs) -> None:
    for r in runs:
        assert r.returncode == 0, r.stderr[-4000:]


def _node(path: Path, prepared: Path) -> Path:
    """A machine's working directory: params, its own copy of the prepared data and the
    genotype.json a clone of the repository holds (a DARTS cell, not this search's)."""
    shutil.copytree(prepared, path / "data" / "prepared" / "digits")
    (path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    shutil.copy(ROOT / "genotype.json", path / "genotype.json")
    return path


def _writer(nodes: list[Path], path: str) -> tuple[Path, Path]:
    """(the node that wrote `path`, the other one): exactly one of them did."""
    wrote = [n for n in nodes if (n / path).exists()]
    assert len(wrote) == 1, wrote
    return wrote[0], next(n for n in nodes if n != wrote[0])


@pytest.fixture(scope="module")
def searched(tmp_path_factory, digits_prepared_dir):
    """The search stage under the single-node 2-process torchrun, and on two nodes:
    (the single node's directory, the two nodes' directories)."""
    single = _node(tmp_path_factory.mktemp("single-node"), digits_prepared_dir)
    _ok([standalone("-m", "stages.search", cwd=single, timeout=TIMEOUT)])
    root = tmp_path_factory.mktemp("two-nodes")
    nodes = [_node(root / f"node{i}", digits_prepared_dir) for i in range(2)]
    _ok(_two_nodes("-m", "stages.search", nodes=nodes))
    return single, nodes


def test_search_on_two_nodes_matches_one_node(searched):
    single, nodes = searched
    writer, other = _writer(nodes, "metrics/search.json")
    for path in ("genotype.json", "metrics/search.json", "dvclive/search/metrics.json"):
        assert (writer / path).read_bytes() == (single / path).read_bytes(), path
    assert (writer / "checkpoints/search/last.pt").is_file()
    # the other node wrote nothing: its genotype.json is still the clone's
    clone_genotype = (ROOT / "genotype.json").read_bytes()
    assert (other / "genotype.json").read_bytes() == clone_genotype
    assert clone_genotype != (writer / "genotype.json").read_bytes()
    for path in ("metrics", "dvclive", "checkpoints", "measurements"):
        assert not (other / path).exists(), path


# ---- the worker: tests/ddp_worker.py and check_same_run, on two nodes --------------------


@pytest.fixture(scope="module")
def worker_runs(tmp_path_factory, digits_prepared_dir):
    nodes = []
    for i in range(2):
        node = tmp_path_factory.mktemp(f"worker-node{i}")
        shutil.copytree(digits_prepared_dir, node / "digits")
        (node / "out").mkdir()
        nodes.append(node)
    # the static rendezvous: node1 is rank 0 because its --node-rank says so
    _ok(_two_nodes(str(Path(__file__).resolve()), nodes=nodes, node_ranks=[1, 0]))
    return nodes


def test_ddp_worker_on_two_nodes(worker_runs):
    from tests.test_ddp import _assert_equal

    writer, other = _writer(worker_runs, "out/rank0.pt")
    assert [writer, other] == worker_runs[::-1]  # the node given --node-rank 0 is rank 0
    r0 = torch.load(writer / "out/rank0.pt", weights_only=True)
    r1 = torch.load(other / "out/rank1.pt", weights_only=True)
    for key in ("samples", "search", "search_net", "train"):
        _assert_equal(r0[key], r1[key], key)
    for whole, averaged in zip(r0["gradients"]["whole"], r0["gradients"]["averaged"]):
        torch.testing.assert_close(averaged, whole, rtol=1e-5, atol=1e-7)
    # The interrupted runs resumed, on both ranks, from checkpoints only rank 0's node holds.
    for key in ("search", "train"):
        _assert_equal(r0[f"{key}_resumed"], r0[key], key)
        _assert_equal(r1[f"{key}_resumed"], r0[key], key)
        assert (writer / f"out/run-{key}-resumed/ckpt0/last.pt").is_file()
    assert (writer / "out/run-search/live0/metrics.json").is_file()
    assert sorted(p.name for p in (other / "out").iterdir()) == ["check.json", "rank1.pt"]


def test_check_same_run_on_two_nodes(worker_runs):
    verdicts = [json.loads((n / "out/check.json").read_text()) for n in worker_runs]
    assert verdicts[0] == verdicts[1]  # every rank stops, or none does
    v = verdicts[0]
    assert v["same"] is None
    assert v["runner"].startswith("rank 1 (") and "genotype.json" in v["runner"]
    assert v["other params"].startswith("rank 1 (") and "other params" in v["other params"]
    # a checkpoint of this run on rank 1's node only: stop and say where it is
    for case, name in (("unfinished on rank 1", "last.pt"), ("finished on rank 1", "finished.pt")):
        assert f"checkpoints/{case}/{name} on rank 1's machine" in v[case], v[case]
        assert "copy checkpoints/" in v[case]
    # nothing rank 0 would resume from: no false alarm
    for case in ("done on rank 1", "stale on rank 1", "on rank 0", "on both"):
        assert v[case] is None, case


def _check_cases() -> dict:
    """check_same_run in the cases of test_check_same_run_on_two_nodes, run on every rank in
    the node's own directory: {case: the error message, or None}."""
    from dnas import distributed
    from dnas.checkpoint import Checkpointer
    from dnas.errors import UserError

    rank = distributed.rank()
    # case: (fingerprint of this rank, {rank: (fingerprint, complete) of its checkpoint})
    cases = {
        "same": ("a", {}),
        "other params": ("a" if rank == 0 else "b", {}),
        "unfinished on rank 1": ("a", {1: ("a", False)}),
        "finished on rank 1": ("a", {1: ("a", True)}),
        "done on rank 1": ("a", {1: ("a", True)}),
        "stale on rank 1": ("a", {1: ("b", False)}),
        "on rank 0": ("a", {0: ("a", False)}),
        "on both": ("a", {0: ("a", False), 1: ("a", False)}),
    }
    verdicts = {"runner": _runner_case()}
    for case, (fp, checkpoints) in cases.items():
        directory = Path("checkpoints") / case
        if rank in checkpoints:
            saved, complete = checkpoints[rank]
            Checkpointer(directory, saved, 1).save({"epoch": 1}, complete=complete)
            if case == "finished on rank 1":  # kept by keep_finished_run: resumable
                (directory / "last.pt").replace(directory / "finished.pt")
        try:
            distributed.check_same_run(fp, directory)
            verdicts[case] = None
        except UserError as exc:
            verdicts[case] = str(exc)
    return verdicts


def _runner_case() -> str | None:
    """The retraining's epoch runner where rank 1 read another genotype.json than rank 0:
    the fingerprint of the train loop covers the cells (as in dnas.train.loop)."""
    from dnas import distributed
    from dnas.checkpoint import fingerprint
    from dnas.errors import UserError
    from dnas.runner import EpochRunner
    from dnas.spaces.published import resolve_genotype

    name = "GDAS_V1" if distributed.rank() == 0 else "DARTS_V2"
    cells = resolve_genotype(name, "-").to_json()["cells"]
    try:
        EpochRunner(
            "train", 1, torch.device("cpu"), "train.lr", "dvclive/runner", "checkpoints/runner",
            1, fingerprint(0, cells), {}, log=[],
        )  # fmt: skip
    except UserError as exc:
        return str(exc)
    return None


def _worker() -> None:
    """Under torchrun, in a node's directory: tests/ddp_worker.py's run into out/, then the
    check_same_run cases into out/check.json."""
    sys.path.insert(0, str(ROOT))
    from dnas import distributed
    from tests import ddp_worker

    sys.argv = [sys.argv[0], "out", "digits"]
    with distributed.session("cpu"):  # one process group for both (ddp_worker joins it)
        ddp_worker.main()
        Path("out/check.json").write_text(json.dumps(_check_cases(), sort_keys=True))


if __name__ == "__main__":
    _worker()
