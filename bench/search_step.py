"""Benchmark: a GDAS search step against DARTS (all ops) and the sampled subnet alone.

GDAS runs only the sampled op on each edge, so its weight step should cost little more than
training the sampled architecture as a plain network (the floor), and far less than DARTS, which
runs every op of every edge (the GDAS paper claims about |ops| = 8x less memory). This script
builds one supernet and times a weight step (forward, backward, SGD) of it mixed the GDAS way
and the DARTS way (the same instance, the same batch), and of the sampled architecture built as
a discrete network (the mean over several draws, since GDAS draws a new one every step), side by
side in one process. Memory: the bytes autograd keeps for the backward pass of one step
(activations, on any device), and on CUDA the allocator's peak. Prints one JSON object per space.

    python bench/search_step.py                      # CPU-sized defaults
    python bench/search_step.py --batch 64 --channels 16 --darts-layers 8 --nb201-layers 5 \
        --size 32 --steps 50 --device cuda           # the papers' supernets
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

from dnas.models import build_network  # noqa: E402
from dnas.search.supernet import DartsSupernet, Nb201Supernet  # noqa: E402
from dnas.spaces import darts, nb201  # noqa: E402
from dnas.spaces.genotype import CellSpec, Genotype  # noqa: E402


def sampled_genotype(net, space: str) -> Genotype:
    """The architecture of one draw, every edge kept with its sampled op."""
    net.sample_per = "network"
    draws = net.sample()
    cells = {}
    for cell_type, (_, indices) in zip(net.cell_sequence, draws):
        if cell_type in cells:
            continue
        ops = net.alphas[cell_type].shape[-1]
        names = darts.DARTS_OPS if space == "darts" else nb201.NB201_OPS
        assert len(names) == ops
        edges = darts.edges() if space == "darts" else nb201.edges()
        inputs = darts.INPUTS if space == "darts" else 1
        nodes: dict[int, list] = {}
        for (node, j), k in zip(edges, indices):
            nodes.setdefault(node, []).append((names[k], j))
        concat = tuple(sorted(nodes)) if space == "darts" else (max(nodes),)
        cells[cell_type] = CellSpec(
            inputs, tuple(tuple(n) for _, n in sorted(nodes.items())), concat
        )
    return Genotype(space, cells)


def time_steps(model, x, y, steps: int, warmup: int, device) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        F.cross_entropy(out, y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def activation_mib(model, x, y) -> float:
    """MiB of tensors autograd saves for the backward pass of one forward (each storage once)."""
    seen: set[int] = set()
    total = 0

    def pack(t):
        nonlocal total
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        loss = F.cross_entropy(out, y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return total / 2**20


class WeightStep(torch.nn.Module):
    """The supernet with its alphas frozen out of the step: only the weights train, as in a
    GDAS weight step (a new architecture is drawn every step)."""

    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x, detach_alpha=True)

    def parameters(self, recurse: bool = True):
        return iter(self.net.weight_parameters())


def _timed(model, x, y, args, device) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    out = {"ms": 1000 * time_steps(model, x, y, args.steps, args.warmup, device)}
    out["activation_mib"] = activation_mib(model, x, y)
    if device.type == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def measure(space: str, args, device) -> dict:
    """GDAS, DARTS and subnet weight steps of one space: times (ms) and memory (MiB)."""
    torch.manual_seed(0)
    layers = args.darts_layers if space == "darts" else args.nb201_layers
    cls = DartsSupernet if space == "darts" else Nb201Supernet
    net = cls(3, 10, args.channels, layers).to(device)
    net.generator = torch.Generator(device=device).manual_seed(0)
    net.tau = 1.0
    net.unselected_grad = space == "nb201"
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    result = {"space": space, "batch": args.batch, "channels": args.channels, "layers": layers}
    # GDAS draws a new architecture every step: compare with the mean over several draws.
    subnets = [
        build_network(sampled_genotype(net, space), 3, 10, args.channels, layers).to(device)
        for _ in range(args.subnets)
    ]
    runs = {}
    for algorithm in ("gdas", "darts"):  # the same supernet, mixed two ways
        net.algorithm = algorithm
        runs[algorithm] = _timed(WeightStep(net), x, y, args, device)
    subnet_runs = [_timed(m, x, y, args, device) for m in subnets]
    runs["subnet"] = {k: sum(r[k] for r in subnet_runs) / len(subnet_runs) for k in subnet_runs[0]}
    for name, run in runs.items():
        for key, value in run.items():
            result[f"{name}_{'step_ms' if key == 'ms' else key}"] = round(value, 2)
    result["subnets"] = len(subnets)
    result["gdas_over_subnet"] = round(runs["gdas"]["ms"] / runs["subnet"]["ms"], 3)
    result["darts_over_gdas_time"] = round(runs["darts"]["ms"] / runs["gdas"]["ms"], 2)
    result["darts_over_gdas_activation_memory"] = round(
        runs["darts"]["activation_mib"] / runs["gdas"]["activation_mib"], 2
    )
    if device.type == "cuda":
        result["darts_over_gdas_peak_memory"] = round(
            runs["darts"]["peak_mib"] / runs["gdas"]["peak_mib"], 2
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--darts-layers", type=int, default=5)
    parser.add_argument("--nb201-layers", type=int, default=2)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--subnets", type=int, default=5, help="sampled subnets to average")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    env = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    for space in ("darts", "nb201"):
        print(json.dumps({**measure(space, args, device), **env}, sort_keys=True))


if __name__ == "__main__":
    main()
