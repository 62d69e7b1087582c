"""Benchmark: the projected wall time of the papers' full searches and retraining, from step
rates measured here.

Workloads (docs/algorithms.md#gdas-schedules, docs/algorithms.md#cnn-retraining;
docs/algorithms.md#paper-numbers for the published costs):

- gdas-nb201: GDAS on NAS-Bench-201 CIFAR-10 (AutoDL): supernet C=16, N=5, batch 64,
  250 epochs of ceil(25000 / 64) = 391 iterations, each a weight step and an architecture step,
  unselected-op gradients on. Published: 28,926 s (about 8 h) on a 2019 GPU.
- gdas-darts: GDAS on the DARTS space, CIFAR-10 (presets/gdas-cifar10.yaml): supernet C=16,
  8 cells, batch 128, 240 epochs of ceil(25000 / 128) = 196 iterations, a sample per cell,
  architecture step first. Published: about 5 h on a V100 ("four GPU hours" for GDAS-FRC).
- retrain: the C=36, 20-cell network, batch 96, 600 epochs of ceil(50000 / 96) = 521 training
  steps plus an evaluation of the 10,000 test images per epoch. Published (DARTS): about 24 h.

A search iteration is timed as the search loop runs it (`dnas.search.loop`): sample,
forward, backward, clip and SGD for the weights; sample, forward, backward and Adam for the
alphas, under the fast path's bf16 and channels-last (the supernet is not compiled). Retraining
rates come from `bench/train_throughput.py`. Projections leave out data loading (on the device,
small) and per-epoch logging. Prints one JSON object per workload.

    python bench/projection.py                    # the papers' sizes, CUDA if present
    python bench/projection.py --ci               # tiny networks, few steps: checks it runs
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import measure as measure_training  # noqa: E402

from dnas import distributed as dist  # noqa: E402
from dnas import runtime  # noqa: E402
from dnas.config import parse_params  # noqa: E402
from dnas.optim import arch_optimizer, sgd_cosine  # noqa: E402
from dnas.runtime import FastPath  # noqa: E402
from dnas.search.loop import make_supernet  # noqa: E402
from dnas.search.steps import SearchState, StepContext, bilevel_iteration  # noqa: E402

SEARCHES = {
    "gdas-nb201": dict(
        space="nb201",
        channels=16,
        layers=5,
        batch=64,
        epochs=250,
        examples=25000,
        sample_per="network",
        unselected_grad=True,
        published_s=28926,
        target_s=20 * 60,
    ),
    "gdas-darts": dict(
        space="darts",
        channels=16,
        layers=8,
        batch=128,
        epochs=240,
        examples=25000,
        sample_per="cell",
        unselected_grad=False,
        published_s=5 * 3600,
        target_s=45 * 60,
    ),
}
RETRAIN = dict(
    channels=36,
    layers=20,
    batch=96,
    epochs=600,
    train_examples=50000,
    test_examples=10000,
    published_s=24 * 3600,
    target_s=3 * 3600,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Shape:
    """What the supernet builder reads of a dataset: CIFAR's 3 channels and 10 classes."""

    channels, num_classes = 3, 10


def gdas_iteration(
    fast: FastPath, device: torch.device, w: dict, size: int, seed: int = 0
) -> Callable[[], None]:
    """One bilevel GDAS iteration of the supernet that workload `w` describes, on fixed random
    batches: the library's own iteration (`dnas.search.steps.bilevel_iteration`, the one the
    search loop runs: the supernet built by `make_supernet` from `search` params, SGD with
    cosine schedule and clipping, Adam on the alphas, gradients cleared as `search.zero_grad`
    says). The step the GPU targets time. Also used by bench/concurrent_searches.py."""
    torch.manual_seed(seed)
    fast.apply_backends(device)
    search = {
        "space": w["space"], "algorithm": "gdas", "channels": w["channels"],
        "layers": w["layers"], "batch_size": w["batch"],
        "sample_per": w.get("sample_per", "network"),
        "unselected_grad": w.get("unselected_grad", "auto"), "arch_lr": 3e-4, "tau_max": 10.0,
        "lr": 0.025, "weight_decay": 5e-4, "grad_clip": 5.0, "arch_weight_decay": 1e-3,
        "arch_betas": [0.5, 0.999],
    }  # fmt: skip
    s = parse_params({"search": search}).search
    gumbel = torch.Generator(device=device).manual_seed(seed)
    net = fast.model(make_supernet(s, _Shape(), generator=gumbel).to(device))
    st = SearchState(net, *sgd_cosine(net.weight_parameters(), s), arch_optimizer(s, net))
    ctx = StepContext.of(s, fast, device, net.algorithm)
    tau = 5.0  # the Gumbel temperature of every forward pass
    batches = []
    for _ in "tv":
        x = torch.randn(w["batch"], 3, size, size, device=device)
        y = torch.randint(0, 10, (w["batch"],), device=device)
        batches.append(dist.Shard(x, y, w["batch"]))
    train, valid = batches

    def iteration():
        bilevel_iteration(st, ctx, train, valid, tau, (seed, 0, 0))

    net.train()
    return iteration


def search_iteration_ms(
    fast: FastPath, device: torch.device, w: dict, size: int, steps: int, warmup: int
) -> float:
    """Milliseconds of one bilevel GDAS iteration (weight step + architecture step)."""
    iteration = gdas_iteration(fast, device, w, size)
    for _ in range(warmup):
        iteration()
    sync(device)
    began = time.perf_counter()
    for _ in range(steps):
        iteration()
    sync(device)
    return 1000 * (time.perf_counter() - began) / steps


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--plain", action="store_true", help="fp32 eager (no fast path)")
    parser.add_argument(
        "--ci", action="store_true", help="tiny networks and inputs, 2 steps: checks that it runs"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    runtime.COMPILE_BACKEND = args.backend
    cuda = device.type == "cuda"
    fast = FastPath() if args.plain else FastPath(cuda, cuda, cuda, cuda)  # `auto`
    size, steps, warmup = (8, 2, 1) if args.ci else (32, args.steps, args.warmup)
    env = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "fast_path": {k: getattr(fast, k) for k in ("compile", "bf16", "channels_last")},
        "ci_sized": args.ci,
    }
    for name, w in SEARCHES.items():
        if args.ci:
            w = {**w, "channels": 4, "layers": 1 if w["space"] == "nb201" else 3, "batch": 8}
        ms = search_iteration_ms(fast, device, w, size, steps, warmup)
        iterations = math.ceil(w["examples"] / w["batch"])
        seconds = w["epochs"] * iterations * ms / 1000
        row = {
            "workload": name,
            "iteration_ms": round(ms, 2),
            "iterations_per_epoch": iterations,
            "epochs": w["epochs"],
            "projected_hours": _hours(seconds),
            "published_hours": _hours(w["published_s"]),
            "target_hours_h100": _hours(w["target_s"]),
            **{k: w[k] for k in ("space", "channels", "layers", "batch")},
            **env,
        }
        print(json.dumps(row, sort_keys=True))
    r = RETRAIN
    kw = dict(channels=r["channels"], layers=r["layers"], batch=r["batch"], size=size)
    if args.ci:
        kw.update(channels=8, layers=5, batch=8)
    rates = measure_training(fast, device, steps=steps, warmup=warmup, **kw)
    train_s = r["train_examples"] / rates["train_images_per_s"]
    eval_s = r["test_examples"] / rates["eval_images_per_s"]
    row = {
        "workload": "retrain",
        **rates,
        "epochs": r["epochs"],
        "epoch_s": round(train_s + eval_s, 2),
        "projected_hours": _hours(r["epochs"] * (train_s + eval_s)),
        "published_hours": _hours(r["published_s"]),
        "target_hours_h100": _hours(r["target_s"]),
        **kw,
        **env,
    }
    print(json.dumps(row, sort_keys=True))


if __name__ == "__main__":
    main()
