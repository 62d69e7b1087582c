"""Benchmark: does the default search settle on real data other than digits?
(docs/algorithms.md#the-architecture-step-size-arch_lr-auto)

MNIST 5k (500 real handwritten 28x28 digits per class; a CSV of 784 pixel columns, then the
label) is cut, stratified and seeded, into 300 training and 100 test images per class (3,000 /
1,000), written as the project's own-data .npz (docs/data.md#custom-datasets) and prepared at
16x16 (`prepare.custom.<name>.size`). The search is the default's (params.yaml) but for the
dataset, `search.epochs` (10: 47 iterations each, so 470 architecture steps), `common.seed` and
`search.arch_lr`. It runs in a temporary copy of the pipeline (src/, stages/, and params.yaml
with advanced.yaml's knobs merged in), the
stages as dvc.yaml calls them (`python -m stages.prepare`, `python -m stages.search`), one
thread. Prints one JSON object per run: the resolved arch_lr, the entropy after every epoch,
which cells changed after each epoch, how many final epochs left the genotype unchanged, and the
search's own `settled` report.

    python bench/mnist5k_search.py --arch-lr auto 0.03 --seeds 0 1 2
    python bench/mnist5k_search.py --epochs 30 --set arch_weight_decay=0   # other params
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from dnas.search.budget import node_changes

ROOT = Path(__file__).resolve().parents[1]
CSV = Path("/work/data/mnist_5k.csv.gz")


def convert(csv: Path, out: Path, train_per_class: int, test_per_class: int, seed: int = 0):
    """The CSV (784 pixel columns, then the label) as an .npz: x, y, x_test, y_test, classes."""
    with gzip.open(csv, "rt") if csv.suffix == ".gz" else open(csv) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    y = table[:, 784]
    rng = np.random.default_rng(seed)
    train, test = [], []
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k))
        train.append(idx[:train_per_class])
        test.append(idx[train_per_class : train_per_class + test_per_class])
    train, test = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    np.savez(out, x=x[train], y=y[train], x_test=x[test], y_test=y[test],
             classes=np.array([str(k) for k in range(10)]))  # fmt: skip
    return len(train), len(test)


def pipeline_copy(work: Path) -> None:
    for name in ("src", "stages"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "params.yaml", work / "params.yaml")


def edges_changed(before: dict, after: dict) -> int:
    """How many of the cells' edges (op and input, node by node) differ between two genotypes
    (Genotype.brief: nodes separated by ' | ', edges as op(input))."""
    count = 0
    for cell, line in after.items():
        for a, b in zip(before[cell].split(" | "), line.split(" | ")):
            count += len(set(a.split()) ^ set(b.split())) // 2
    return count


def late_changes(cells: list[dict], probs: list[dict], last: int) -> list[dict]:
    """The edges (op or input) that changed after each of the `last` epochs
    (dnas.search.budget.node_changes, whose phrases the search's own note prints), with the
    probability of `none` on that edge after the epoch and the edge's non-`none` ops' largest
    probabilities: whether the change is on an edge the search switched off (p(none) > 0.5) and
    how close the ops it chose between were."""
    out = []
    for epoch in range(len(cells) - last, len(cells)):
        rows = [r for r in probs if r["epoch"] == epoch]
        for cell, _, gone, came in node_changes(cells[epoch - 1], cells[epoch], rows):
            for side, edges in (("was", gone), ("now", came)):
                for op, j, _, name in edges:
                    p = {r["op"]: r["prob"] for r in rows
                         if (r["cell"], r["edge"]) == (cell, name)}  # fmt: skip
                    top = sorted((v for k, v in p.items() if k != "none"), reverse=True)[:2]
                    out.append({"after_epoch": epoch + 1, "cell": cell, "edge": name,
                                side: f"{op}({j})", "p_none": round(p.get("none", 0.0), 3),
                                "top_two_ops": [round(v, 3) for v in top]})  # fmt: skip
    return out


def run_one(
    work: Path, npz: Path, arch_lr, seed: int, epochs: int, size: int, extra: dict | None = None
) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, knobs in yaml.safe_load((ROOT / "advanced.yaml").read_text()).items():
        raw.setdefault(section, {}).update(knobs)  # one file: the copy has no advanced.yaml
    raw["common"].update(seed=seed, threads=1)
    raw["prepare"].update(datasets=["mnist5k"], custom={
        "mnist5k": {"path": str(npz), "format": "npz", "size": size, "flip": False}})  # fmt: skip
    raw["search"].update(dataset="mnist5k", epochs=epochs, arch_lr=arch_lr, **(extra or {}))
    raw["train"].update(dataset="mnist5k")
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": "src", "OMP_NUM_THREADS": "1"}
    for d in ("dvclive", "metrics", "checkpoints", "measurements", "genotype.json"):
        shutil.rmtree(work / d, ignore_errors=True)
        (work / d).unlink(missing_ok=True) if (work / d).is_file() else None
    if not (work / "data/prepared/mnist5k").exists():
        subprocess.run([sys.executable, "-m", "stages.prepare", "--dataset", "mnist5k"],
                       cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "stages.search"], cwd=work, env=env, check=True,
                         capture_output=True, text=True)  # fmt: skip
    metrics = json.loads((work / "metrics/search.json").read_text())
    log = json.loads((work / "dvclive/search/genotypes.json").read_text())
    tsv = work / "dvclive/search/plots/metrics/arch/entropy.tsv"
    entropy = [float(line.split("\t")[1]) for line in tsv.read_text().splitlines()[1:]]
    cells = [{k: v for k, v in row.items() if k != "epoch"} for row in log]
    changed = [sorted(c for c in cells[e] if cells[e][c] != cells[e - 1][c])
               for e in range(1, len(cells))]  # fmt: skip
    unchanged = 0  # final epochs after which the genotype was the same as before them
    for c in reversed(changed):
        if c:
            break
        unchanged += 1
    probs = json.loads((work / "dvclive/search/plots/custom/arch_probs.json").read_text())
    late = late_changes(cells, probs, last=2)
    notes = [line for line in out.stdout.splitlines() + out.stderr.splitlines()
             if "arch_lr" in line or "settled" in line]  # fmt: skip
    return {
        "seed": seed,
        "search": extra or {},
        "arch_lr_param": arch_lr,
        "arch_lr": metrics.get("arch_lr", arch_lr),
        "epochs": epochs,
        "entropy": [round(e, 4) for e in entropy],
        "final_entropy": metrics["arch_entropy"],
        "top_prob": metrics["arch_top_prob"],
        "changed_after_epoch": {e + 1: c for e, c in enumerate(changed)},
        "edges_changed": [edges_changed(a, b) for a, b in zip(cells, cells[1:])],
        "unchanged_epochs_bench": unchanged,
        "late_changes": late,
        "settled": metrics.get("settled"),
        "valid_acc": metrics["valid_acc"],
        "seconds_per_epoch": json.loads((work / "measurements/search.json").read_text())[
            "seconds_per_epoch"
        ],
        "log": notes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=CSV)
    ap.add_argument("--arch-lr", nargs="+", default=["auto"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--train-per-class", type=int, default=300)
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--cut-seed", type=int, default=0,
                    help="the seed of the train/test cut (another seed: other images)")  # fmt: skip
    ap.add_argument("--work", type=Path, default=None, help="keep the pipeline copy here")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="other search params, e.g. tau_max=1 (YAML values)")  # fmt: skip
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="mnist5k-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "src").exists():
        pipeline_copy(work)
    npz = work / f"mnist5k-cut{a.cut_seed}.npz" if a.cut_seed else work / "mnist5k.npz"
    if not npz.exists():
        convert(a.csv, npz, a.train_per_class, a.test_per_class, a.cut_seed)
    for lr in a.arch_lr:
        lr = lr if lr == "auto" else float(lr)
        for seed in a.seeds:
            extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)}
            print(json.dumps(run_one(work, npz, lr, seed, a.epochs, a.size, extra)), flush=True)
    if a.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
