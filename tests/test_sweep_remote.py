"""A sweep spread over machines with DVC's own mechanism (docs/distributed.md): two worker
clones each run their share of the seeds and `dvc exp push` them to a shared Git remote (a bare
repository) and a shared DVC remote (a local directory); a collector clone runs
`dvc exp pull` and `dnas report`.

The project is a one-line stage (seconds per experiment, where the real pipeline takes
minutes): test_acc = 90 + 2 * seed + 10 * lr in metrics/train.json, and a DVC-cached output
models/model.txt that names the seed. Its baseline commit is the README's preset recipe: a
params change (lr 0.1 -> 0.3) committed over the metrics of the previous run, then seeds run as
experiments. One worker queues its experiment (`dvc exp run --queue`, then `--run-all`, the
foreground form of `dvc queue start`), the other runs `dvc exp run` directly.
"""

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.pipeline_copy import dvc_env

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]

STAGE = """\
import json, os, yaml
p = yaml.safe_load(open('params.yaml'))
os.makedirs('metrics', exist_ok=True)
os.makedirs('models', exist_ok=True)
acc = 90 + 2 * p['common']['seed'] + 10 * p['train']['lr']
json.dump({'test_acc': acc}, open('metrics/train.json', 'w'))
open('models/model.txt', 'w').write(f"seed {p['common']['seed']}\\n")
"""
DVC_YAML = """\
stages:
  t:
    cmd: python stage.py
    deps: [stage.py]
    params: [common, train]
    outs: [models]
    metrics:
      - metrics/train.json:
          cache: false
"""


class Machine:
    """A directory standing for one machine's checkout; `sh` runs a command there."""

    def __init__(self, path: Path, env: dict) -> None:
        self.path, self.env = path, env

    def sh(self, *cmd: str) -> str:
        done = subprocess.run(
            cmd, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=TIMEOUT
        )
        assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr[-3000:]}"
        return done.stdout

    def clone(self, origin: Path, name: str) -> "Machine":
        subprocess.run(
            ["git", "clone", "-q", str(origin), name],
            cwd=self.path.parent, env=self.env, check=True, timeout=TIMEOUT,
        )  # fmt: skip
        machine = Machine(self.path.parent / name, self.env)
        machine.sh("git", "config", "user.name", name)
        machine.sh("git", "config", "user.email", f"{name}@example.invalid")
        return machine


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """After the sweep: (the collector's checkout, its `dvc exp show --json`, the markdown of
    its `dnas report`)."""
    root = tmp_path_factory.mktemp("sweep")
    env = dvc_env(root / "home", PYTHONPATH=str(ROOT / "src"))
    origin, store = root / "origin.git", root / "dvc-store"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    store.mkdir()

    # The project: run once at lr 0.1, then commit lr 0.3 without running (a preset).
    (root / "project").mkdir()
    project = Machine(root / "project", env)
    project.sh("git", "init", "-q", "-b", "main")
    project.sh("git", "config", "user.name", "project")
    project.sh("git", "config", "user.email", "project@example.invalid")
    (project.path / "params.yaml").write_text("common:\n  seed: 0\ntrain:\n  lr: 0.1\n")
    (project.path / "stage.py").write_text(STAGE)
    (project.path / "dvc.yaml").write_text(DVC_YAML)
    project.sh("dvc", "init", "-q")
    project.sh("dvc", "remote", "add", "-d", "shared", str(store))
    project.sh("dvc", "repro", "-q")
    project.sh("git", "add", "-A")
    project.sh("git", "commit", "-qm", "first run")
    (project.path / "params.yaml").write_text("common:\n  seed: 0\ntrain:\n  lr: 0.3\n")
    project.sh("git", "commit", "-qam", "the preset: lr 0.3")
    project.sh("git", "remote", "add", "origin", str(origin))
    project.sh("git", "push", "-q", "origin", "main")
    project.sh("dvc", "push", "-q")

    # Two workers at once, each in its own clone: seed 0 queued, seed 1 run directly.
    workers = [project.clone(origin, f"worker{i}") for i in range(2)]

    def worker0():
        workers[0].sh("dvc", "exp", "run", "--queue", "-S", "common.seed=0")
        workers[0].sh("dvc", "exp", "run", "--run-all")
        workers[0].sh("dvc", "exp", "push", "origin")

    def worker1():
        workers[1].sh("dvc", "exp", "run", "-S", "common.seed=1")
        workers[1].sh("dvc", "exp", "push", "origin")

    failures = []

    def guarded(fn):
        try:
            fn()
        except BaseException as exc:  # noqa: B036 (reported below, in the test's thread)
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(fn,)) for fn in (worker0, worker1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures

    collector = project.clone(origin, "collector")
    collector.sh("dvc", "exp", "pull", "origin")
    out = collector.path / "reports" / "reproduction.md"
    collector.sh(
        sys.executable, "-m", "dnas.cli", "report", "--presets", str(ROOT / "presets"),
        "--out", str(out), "--png", "",
    )  # fmt: skip
    return collector, json.loads(collector.sh("dvc", "exp", "show", "--json")), out.read_text()


def _experiments(rows: list) -> list[dict]:
    """The experiments of `dvc exp show --json`: name, baseline, seed, lr, test_acc."""
    found = []
    for row in rows:
        for exp in row.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                found.append(
                    {
                        "name": exp["name"],
                        "baseline": row["rev"],
                        "seed": data["params"]["params.yaml"]["data"]["common"]["seed"],
                        "lr": data["params"]["params.yaml"]["data"]["train"]["lr"],
                        "acc": data["metrics"]["metrics/train.json"]["data"]["test_acc"],
                    }
                )
    return found


def test_collector_sees_every_workers_experiment(sweep):
    collector, rows, _ = sweep
    exps = _experiments(rows)
    head = collector.sh("git", "rev-parse", "HEAD").strip()
    assert sorted((e["seed"], e["lr"], e["acc"]) for e in exps) == [(0, 0.3, 93.0), (1, 0.3, 95.0)]
    assert {e["baseline"] for e in exps} == {head}


def test_pulled_experiment_brings_its_outputs_from_the_dvc_remote(sweep):
    collector, rows, _ = sweep
    queued = next(e for e in _experiments(rows) if e["seed"] == 0)  # worker 0's
    # `dvc exp apply` checks the cached output out of the collector's own cache, which only
    # `dvc exp pull` can have filled (from the shared DVC remote; the collector never ran it).
    collector.sh("dvc", "exp", "apply", queued["name"])
    assert (collector.path / "models" / "model.txt").read_text() == "seed 0\n"


def test_report_over_the_pulled_sweep_counts_each_experiment_once(sweep):
    _, _, text = sweep
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 2, text  # the header and one group
    cells = [c.strip() for c in rows[1].strip("|").split("|")]
    # test error of seeds 0 and 1: 7 and 5, mean 6, sample std sqrt(2)
    assert cells[2] == "2 (0, 1)", text
    assert cells[3] == "6.00 ± 1.41", text
