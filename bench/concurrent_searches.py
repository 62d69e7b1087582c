"""Benchmark: several GDAS searches sharing one device (a seed sweep on one GPU).

An NB201 GDAS search at batch 64 leaves most of a large GPU idle, so several seeds can run at
once, as separate processes on the same `common.device` (what `dvc queue start -j N` does with
queued experiments). For each count in `--counts` the script starts that many processes, each
a search iteration loop as `bench/projection.py` times it (weight step + architecture step,
the fast path as `auto` sets it); after a warm-up they wait at a barrier and then all run
`--steps` iterations. Prints one JSON object per count: aggregate iterations/s, the speed-up
over one search, and each process's memory (CUDA allocator peak; on the CPU its peak RSS).

    python bench/concurrent_searches.py                       # NB201, the papers' size, 1 2 4 8
    python bench/concurrent_searches.py --tiny --counts 1,2   # seconds on a CPU: plumbing only
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from projection import gdas_iteration, sync  # noqa: E402

from dnas.runtime import FastPath  # noqa: E402


def search_worker(rank: int, cfg: dict, barrier, results) -> None:
    torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    cuda = device.type == "cuda"
    fast = FastPath(False, cuda, cuda, cuda)  # `auto` on this device (the supernet: no compile)
    fast.apply_backends(device)
    workload = {k: cfg[k] for k in ("space", "channels", "layers", "batch")}
    iteration = gdas_iteration(fast, device, workload, cfg["size"], seed=rank)
    for _ in range(cfg["warmup"]):
        iteration()
    sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    barrier.wait()
    began = time.perf_counter()
    for _ in range(cfg["steps"]):
        iteration()
    sync(device)
    seconds = time.perf_counter() - began
    if cuda:
        memory = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    results.put({"rank": rank, "seconds": seconds, "memory_mib": memory})


def run_count(n: int, cfg: dict) -> dict:
    ctx = mp.get_context("spawn")  # CUDA in children needs spawn
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=search_worker, args=(r, cfg, barrier, results)) for r in range(n)]
    for p in procs:
        p.start()
    rows = [results.get(timeout=cfg["timeout"]) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a search process failed with exit code {p.exitcode}")
    rates = [cfg["steps"] / r["seconds"] for r in rows]
    return {
        "searches": n,
        "iterations_per_s": round(sum(rates), 3),
        "per_search_iterations_per_s": round(sum(rates) / n, 3),
        "memory_mib_per_search": round(max(r["memory_mib"] for r in rows), 1),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--space", default="nb201", choices=["nb201", "darts"])
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--tiny", action="store_true", help="a tiny supernet: checks it runs")
    args = parser.parse_args(argv)
    nb201 = args.space == "nb201"
    cfg = {
        "device": args.device,
        "space": args.space,
        "channels": 16,
        "layers": 5 if nb201 else 8,
        "batch": 64,
        "size": 32,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "timeout": 3600,
    }
    if args.tiny:
        cfg.update(channels=4, layers=1, batch=8, size=8, steps=2, warmup=1, timeout=300)
    device = torch.device(args.device)
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "machine": platform.machine(),
        "tiny": args.tiny,
        **{k: cfg[k] for k in ("space", "channels", "layers", "batch", "size", "steps")},
    }
    rows, one = [], None
    for n in (int(c) for c in args.counts.split(",")):
        row = run_count(n, cfg)
        one = one or row["iterations_per_s"] / n
        row["speedup_over_one"] = round(row["iterations_per_s"] / one, 2)
        row = {**row, **env}
        print(json.dumps(row, sort_keys=True), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
