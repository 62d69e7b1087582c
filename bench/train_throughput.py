"""Benchmark: retraining throughput (images/s) of the evaluation network, fp32 eager against
the fast path (channels-last, bf16 autocast, torch.compile, cuDNN autotuning).

The network is a published DARTS-space cell at the papers' evaluation size (C=36, 20 cells,
auxiliary head 0.4, drop-path 0.2, batch 96, 32x32 CIFAR inputs: docs/algorithms.md#cnn-retraining).
A training step is what `dnas.train.loop` runs: forward under the fast path's autocast,
cross-entropy plus the auxiliary loss, backward, gradient clipping at 5, SGD with momentum and
weight decay. Evaluation (no grad, eval mode) is timed too. Compilation happens in the warm-up steps
and is reported apart. Prints one JSON object per mode and one with the ratios.

    python bench/train_throughput.py                        # the papers' size, CUDA if present
    python bench/train_throughput.py --channels 8 --layers 5 --batch 16 --size 16 --steps 3 \
        --backend aot_eager                                 # CI-sized, on a CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dnas import runtime  # noqa: E402
from dnas.models import build_network  # noqa: E402
from dnas.runtime import FastPath  # noqa: E402
from dnas.spaces.published import resolve_genotype  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fast: FastPath,
    device: torch.device,
    *,
    genotype: str = "GDAS_V1",
    channels: int = 36,
    layers: int = 20,
    batch: int = 96,
    size: int = 32,
    classes: int = 10,
    steps: int = 20,
    warmup: int = 3,
    auxiliary_weight: float = 0.4,
    drop_path: float = 0.2,
) -> dict:
    """Train and eval throughput of one configuration; returns a dict of numbers."""
    torch.manual_seed(0)
    fast.apply_backends(device)
    model = build_network(
        resolve_genotype(genotype, "-"), 3, classes, channels, layers, auxiliary_weight > 0
    ).to(device)
    model = fast.model(model)
    forward = fast.compiled(model)
    model.set_drop_prob(drop_path)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)

    def train_step():
        opt.zero_grad(set_to_none=True)
        with fast.autocast(device):
            out = forward(fast.inputs(x))
            logits, aux = out if isinstance(out, tuple) else (out, None)
            loss = F.cross_entropy(logits, y)
            if aux is not None:
                loss = loss + auxiliary_weight * F.cross_entropy(aux, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    @torch.no_grad()
    def eval_step():
        with fast.autocast(device):
            forward(fast.inputs(x)).argmax(1)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = {}
    for name, step, mode in (("train", train_step, model.train), ("eval", eval_step, model.eval)):
        mode()
        began = time.perf_counter()
        for _ in range(warmup):
            step()
        _sync(device)
        result[f"{name}_warmup_s"] = round(time.perf_counter() - began, 2)
        began = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        seconds = (time.perf_counter() - began) / steps
        result[f"{name}_step_ms"] = round(1000 * seconds, 2)
        result[f"{name}_images_per_s"] = round(batch / seconds, 1)
    if device.type == "cuda":
        result["peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genotype", default="GDAS_V1")
    parser.add_argument("--channels", type=int, default=36)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing (compiles)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--no-compile", action="store_true", help="fast path without compile")
    parser.add_argument("--no-bf16", action="store_true", help="fast path without bf16")
    args = parser.parse_args()
    device = torch.device(args.device)
    runtime.COMPILE_BACKEND = args.backend
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    size = {
        k: getattr(args, k) for k in ("genotype", "channels", "layers", "batch", "size", "steps")
    }
    fast = FastPath(
        compile=not args.no_compile,
        bf16=not args.no_bf16,
        channels_last=True,
        cudnn_benchmark=True,
    )
    modes = {"fp32_eager": FastPath(), "fast": fast}
    results = {}
    for mode, path in modes.items():
        results[mode] = measure(path, device, warmup=args.warmup, **size)
        switches = {k: getattr(path, k) for k in ("compile", "bf16", "channels_last")}
        row = {"mode": mode, **switches, **size, **results[mode], **env}
        print(json.dumps(row, sort_keys=True))
    ratios = {
        f"{name}_speedup": round(
            results["fast"][f"{name}_images_per_s"] / results["fp32_eager"][f"{name}_images_per_s"],
            3,
        )
        for name in ("train", "eval")
    }
    print(json.dumps({"mode": "fast_over_fp32_eager", **ratios, **size, **env}, sort_keys=True))


if __name__ == "__main__":
    main()
