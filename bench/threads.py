"""Benchmark: torch's intra-op thread count for the default search and retraining steps
(docs/speed.md#threads).

Times the default search iteration and retraining step (params.yaml, 8x8 grey images like
digits, the committed genotype.json's cells for the retraining) with 1 thread and with 2 (or
`--threads ...`), in one process, interleaved: every round runs each thread count's steps back
to back in a rotated order, so a burst of load from other jobs on a shared machine falls on
all of them alike. Reports the mean and median wall time and the process's CPU time per step,
and each count's ratio to one thread (wall > 1: slower than one thread; CPU > 1: more CPU spent
per step).

    python bench/threads.py                      # 1 vs 2 threads, 8 rounds of 5 steps
    python bench/threads.py --threads 1 2 4 --rounds 4 --size 28
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cost_rule import CHANNELS, ROOT, Shape, genotypes, search_step, timed, train_step  # noqa: E402

from dnas.config import load_params  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5, help="steps per thread count per round")
    ap.add_argument("--size", type=int, default=8)
    args = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    device = torch.device("cpu")
    shape = Shape(args.size, CHANNELS.get(args.size, 3))
    cells = genotypes()
    genotype = cells.get("default_searched", cells["DARTS_V2"])
    work = {
        "search": search_step(p, shape, device),
        "train": train_step(p, shape, device, genotype)[0],
    }
    variants = [(stage, n) for stage in work for n in args.threads]
    for stage, n in variants:  # warm-up, each thread count once
        torch.set_num_threads(n)
        work[stage]()
    times = {v: [] for v in variants}
    began = time.perf_counter()
    for r in range(args.rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for stage, n in order:
            torch.set_num_threads(n)
            times[(stage, n)] += timed(work[stage], args.steps)
    out = {"bench": "threads", "image": f"{args.size}x{args.size}x{shape.channels}",
           "cpus": os.cpu_count(), "torch": torch.__version__,
           "steps_per_variant": args.rounds * args.steps, "stages": {}}  # fmt: skip
    for stage in work:
        rows = {}
        base = times[(stage, args.threads[0])]
        for n in args.threads:
            samples = times[(stage, n)]
            wall = [w for w, _ in samples]
            cpu = [c for _, c in samples]
            rows[str(n)] = {
                "wall_ms_mean": round(1000 * statistics.mean(wall), 1),
                "wall_ms_median": round(1000 * statistics.median(wall), 1),
                "cpu_ms_mean": round(1000 * statistics.mean(cpu), 1),
                "wall_ratio_to_first": round(
                    statistics.mean(wall) / statistics.mean(w for w, _ in base), 3
                ),
                "cpu_ratio_to_first": round(
                    statistics.mean(cpu) / statistics.mean(c for _, c in base), 3
                ),
            }
        out["stages"][stage] = rows
    out["wall_s"] = round(time.perf_counter() - began, 1)
    out["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
