"""Benchmark: a GDAS search step against the sampled subnet alone, and against DARTS (all ops).

GDAS runs only the sampled op on each edge, so its weight step should cost what training the
sampled architecture as a plain network costs (the floor), and far less than DARTS, which runs
every op of every edge. The script builds one supernet, draws `--subnets` architectures and
builds each as a discrete network, then times, interleaved in one process on the same batch:

- `gdas`: the supernet's weight step (sample, forward, backward, SGD; alphas detached, as the
  search loop runs it). The sampler's generator is rewound before each step so that the step
  draws architecture i: each GDAS step is paired with the same architecture's subnet step;
- `subnet`: the discrete network of architecture i (BatchNorms affine, 'none' edges absent);
- `gdas_arch`: the architecture step (forward and backward with the alphas, Adam on them);
- `before` (unless `--no-before`): the weight step as the supernet computed it before
  `gdas.sampled_sum` (each edge op(x) * hard[k] plus the unselected weights, 'none' run as
  x * 0), patched in for the comparison; `before_arch` likewise for the architecture step;
- `darts` (unless `--darts-steps 0`): the same supernet mixed the DARTS way (softmax weights,
  every op), fewer steps since it is slow.

The variants of one round run in a rotating order, so load that comes and goes on a shared
machine falls on all of them; step times are medians. Memory: the bytes autograd saves for
backward in one step (each storage once; any device), and on CUDA the allocator's peak. Prints
one JSON object per space.

    python bench/search_step.py                      # CPU-sized defaults
    python bench/search_step.py --batch 64 --channels 16 --darts-layers 8 --nb201-layers 5 \
        --size 32 --rounds 4                         # the papers' supernets
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]  # dnas, and the formula in tests/

from dnas.models import build_network  # noqa: E402
from dnas.runtime import FastPath  # noqa: E402
from dnas.search.gdas import GDAS  # noqa: E402
from dnas.search.registry import make_algorithm  # noqa: E402
from dnas.search.supernet import DartsSupernet, Nb201Supernet  # noqa: E402
from dnas.spaces import darts, nb201  # noqa: E402
from dnas.spaces.genotype import CellSpec, Genotype  # noqa: E402
from tests.straight_through import straight_through  # noqa: E402


def genotype_of(net, space: str, indices: list[int]) -> Genotype:
    """The architecture of one draw (one sample for every cell), every edge kept with its op."""
    names = darts.DARTS_OPS if space == "darts" else nb201.NB201_OPS
    edges = darts.edges() if space == "darts" else nb201.edges()
    cells = {}
    for cell_type in net.cell_types:
        nodes: dict[int, list] = {}
        for (node, j), k in zip(edges, indices[cell_type]):
            nodes.setdefault(node, []).append((names[k], j))
        concat = tuple(sorted(nodes)) if space == "darts" else (max(nodes),)
        inputs = darts.INPUTS if space == "darts" else 1
        cells[cell_type] = CellSpec(
            inputs, tuple(tuple(n) for _, n in sorted(nodes.items())), concat
        )
    return Genotype(space, cells)


# --- timing -------------------------------------------------------------------------------


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Variant:
    """One kind of step: `run()` does a step; its times and memory are collected here."""

    def __init__(self, name, step, context=contextlib.nullcontext):
        self.name, self.step, self.context = name, step, context
        self.times: list[float] = []
        self.saved_mib: list[float] = []
        self.peak_mib: list[float] = []

    def run(self, i: int, device) -> float:
        with self.context():
            _sync(device)
            began = time.perf_counter()
            self.step(i)
            _sync(device)
        return time.perf_counter() - began


def saved_mib(run) -> float:
    """MiB of tensors autograd saves for backward during `run()` (each storage once)."""
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
        run()
    return total / 2**20


def measure(space: str, args, device, fast: FastPath) -> dict:
    torch.manual_seed(0)
    layers = args.darts_layers if space == "darts" else args.nb201_layers
    cls = DartsSupernet if space == "darts" else Nb201Supernet
    # One architecture per step (sample_per network), so that a subnet is that step; unselected
    # ops' gradients as AutoDL: on in NB201, off in the DARTS space.
    gdas = GDAS(sample_per="network", unselected_grad=cls.unselected_grad_auto)
    gumbel = torch.Generator(device=device).manual_seed(0)
    net = fast.model(cls(3, 10, args.channels, layers, algorithm=gdas, generator=gumbel))
    net = net.to(device)
    tau = 1.0  # the Gumbel temperature of every forward pass
    xt, xv = (
        fast.inputs(torch.randn(args.batch, 3, args.size, args.size, device=device)) for _ in "tv"
    )
    yt, yv = (torch.randint(0, 10, (args.batch,), device=device) for _ in "tv")

    # Architecture i: the generator state that draws it, and its discrete network.
    states, subnets, archs = [], [], []
    for _ in range(args.subnets):
        states.append(net.generator.get_state())
        indices = {t: idx for t, (_, idx, _) in zip(net.cell_sequence, net.draws(tau))}
        archs.append(indices)
        model = build_network(genotype_of(net, space, indices), 3, 10, args.channels, layers)
        subnets.append(fast.model(model.to(device)))

    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=3e-4, betas=(0.5, 0.999))
    s_opts = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in subnets]

    def loss_of(model, x, y, **kw):
        with fast.autocast(device):
            out = model(x, **kw)
            out = out[0] if isinstance(out, tuple) else out
            return F.cross_entropy(out, y)

    def gdas_step(i):
        net.generator.set_state(states[i])
        w_opt.zero_grad(set_to_none=True)
        loss_of(net, xt, yt, tau=tau, detach_alpha=True).backward()
        w_opt.step()

    def gdas_arch_step(i):
        net.generator.set_state(states[i])
        a_opt.zero_grad(set_to_none=True)
        net.zero_grad(set_to_none=True)
        loss_of(net, xv, yv, tau=tau).backward()
        a_opt.step()

    def subnet_step(i):
        s_opts[i].zero_grad(set_to_none=True)
        loss_of(subnets[i], xt, yt).backward()
        s_opts[i].step()

    # DARTS: the same supernet with every op mixed (its own weights; the step's cost is the same).
    darts_net = fast.model(
        cls(3, 10, args.channels, layers, algorithm=make_algorithm("darts")).to(device)
    )
    darts_opt = torch.optim.SGD(darts_net.weight_parameters(), lr=0.01, momentum=0.9)
    darts_net.train()

    def darts_step(i):
        darts_opt.zero_grad(set_to_none=True)
        loss_of(darts_net, xt, yt, tau=tau, detach_alpha=True).backward()
        darts_opt.step()

    variants = [Variant("gdas", gdas_step), Variant("subnet", subnet_step)]
    variants.append(Variant("gdas_arch", gdas_arch_step))
    if args.before:
        variants.append(Variant("before", gdas_step, straight_through))
        variants.append(Variant("before_arch", gdas_arch_step, straight_through))
    net.train()
    for m in subnets:
        m.train()
    # Warm-up: every variant on every architecture (cuDNN autotuning, allocator, caches).
    for _ in range(args.warmup):
        for v in variants:
            for i in range(args.subnets):
                v.run(i, device)
    for r in range(args.rounds):
        for i in range(args.subnets):
            shift = (r * args.subnets + i) % len(variants)
            for v in variants[shift:] + variants[:shift]:
                v.times.append(v.run(i, device))
    # Memory, once per architecture and variant.
    for v in variants:
        for i in range(args.subnets):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            with v.context():
                v.saved_mib.append(saved_mib(lambda i=i, v=v: v.step(i)))
            if device.type == "cuda":
                v.peak_mib.append(torch.cuda.max_memory_allocated(device) / 2**20)
    if args.darts_steps:
        darts_v = Variant("darts", darts_step)
        darts_v.run(0, device)  # warm-up
        darts_v.times = [darts_v.run(0, device) for _ in range(args.darts_steps)]
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        darts_v.saved_mib.append(saved_mib(lambda: darts_step(0)))
        if device.type == "cuda":
            darts_v.peak_mib.append(torch.cuda.max_memory_allocated(device) / 2**20)
        variants.append(darts_v)

    result = {
        "space": space,
        "batch": args.batch,
        "channels": args.channels,
        "layers": layers,
        "size": args.size,
        "subnets": args.subnets,
        "rounds": args.rounds,
        "unselected_grad": net.algorithm.unselected_grad(),
        "fast_path": {k: getattr(fast, k) for k in ("bf16", "channels_last")},
        "none_edges_per_cell": round(
            statistics.mean(sum(k == 0 for k in idx) for a in archs for idx in a.values()), 2
        ),
    }
    v = {x.name: x for x in variants}
    for x in variants:
        result[f"{x.name}_step_ms"] = round(1000 * statistics.median(x.times), 2)
        result[f"{x.name}_saved_mib"] = round(statistics.mean(x.saved_mib), 2)
        if x.peak_mib:
            result[f"{x.name}_peak_mib"] = round(statistics.mean(x.peak_mib), 1)

    def ratio(a, b, key="step_ms", digits=3):
        return round(result[f"{a}_{key}"] / result[f"{b}_{key}"], digits)

    # Paired: the same architecture, the same round, next to each other in time.
    paired = [g / s for g, s in zip(v["gdas"].times, v["subnet"].times)]
    result["gdas_over_subnet"] = ratio("gdas", "subnet")
    result["gdas_over_subnet_paired_median"] = round(statistics.median(paired), 3)
    result["gdas_over_subnet_saved"] = ratio("gdas", "subnet", "saved_mib")
    if "before" in v:
        result["before_over_subnet"] = ratio("before", "subnet")
        paired = [b / s for b, s in zip(v["before"].times, v["subnet"].times)]
        result["before_over_subnet_paired_median"] = round(statistics.median(paired), 3)
        result["before_over_subnet_saved"] = ratio("before", "subnet", "saved_mib")
        result["before_over_gdas_arch"] = ratio("before_arch", "gdas_arch")
    if "darts" in v:
        result["darts_over_gdas_time"] = ratio("darts", "gdas", digits=2)
        result["gdas_over_darts_saved"] = ratio("gdas", "darts", "saved_mib")
        if device.type == "cuda":
            result["gdas_over_darts_peak"] = ratio("gdas", "darts", "peak_mib")
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--darts-layers", type=int, default=5)
    parser.add_argument("--nb201-layers", type=int, default=2)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per architecture")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--subnets", type=int, default=3, help="sampled architectures")
    parser.add_argument("--darts-steps", type=int, default=2, help="0: no DARTS comparison")
    parser.add_argument("--no-before", dest="before", action="store_false")
    parser.add_argument("--spaces", default="darts,nb201")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--fast",
        choices=["auto", "on", "off"],
        default="auto",
        help="bf16 autocast and channels-last as the search runs them (auto: on with CUDA)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    on = args.fast == "on" or (args.fast == "auto" and device.type == "cuda")
    fast = FastPath(bf16=on, channels_last=on, cudnn_benchmark=on)
    fast.apply_backends(device)
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    rows = []
    for space in args.spaces.split(","):
        row = {**measure(space, args, device, fast), **env}
        print(json.dumps(row, sort_keys=True), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
