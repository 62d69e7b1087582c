"""Benchmark: a rule of thumb for what the default search and retraining cost, in seconds per
epoch per 1,000 training images, at several image sizes (docs/speed.md#what-a-run-costs).

The default params (params.yaml) are used as they are: the search's supernet (`search.channels`,
`search.layers`, `search.batch_size`, GDAS, augmentation on) and the retrained network
(`train.channels`, `train.layers`, `train.batch_size`), on random images of each size with 10
classes (1 channel at 8 and 28 pixels, like digits and MNIST-style data; 3 at 16 and 32, like
icons and CIFAR). The retrained cells are the committed `genotype.json` of the default (if it
is there) and DARTS_V2, whose cells are mostly separable convolutions: the cost of a searched
network lies around these two. Each step is what the loops run (`dnas.search.steps`
`bilevel_iteration`: a weight step and an architecture step; a retraining step: forward,
backward, clip, SGD), timed a few times after one warm-up step, the sizes interleaved round by
round so a burst of load on a shared machine spreads over all of them.

An epoch of the search has ceil(search-train images / batch) iterations, search-train being
half of the training set (`search_split: stratified`): per 1,000 training images that is
500 / batch iterations. A retraining epoch has 1000 / batch steps per 1,000 training images,
plus the evaluation of the test set (`evaluate.batch_size` per forward pass), given per 1,000
test images.

    python bench/cost_rule.py                      # sizes 8 16 28 32, torch's thread count
    python bench/cost_rule.py --threads 1 --steps 3 --sizes 8 28
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dnas import distributed as dist  # noqa: E402
from dnas.config import Params, load_params  # noqa: E402
from dnas.data.loader import Augment, DeviceLoader  # noqa: E402
from dnas.models import build_model  # noqa: E402
from dnas.optim import arch_optimizer, sgd_cosine, weight_sgd  # noqa: E402
from dnas.runtime import FastPath  # noqa: E402
from dnas.search.loop import make_supernet  # noqa: E402
from dnas.search.steps import SearchState, StepContext, bilevel_iteration  # noqa: E402
from dnas.spaces.genotype import load_genotype  # noqa: E402
from dnas.spaces.published import resolve_genotype  # noqa: E402

CHANNELS = {8: 1, 16: 3, 28: 1, 32: 3}  # image channels per size (module docstring)
CLASSES = 10


class Shape:
    """What the network builders read of a dataset."""

    def __init__(self, size: int, channels: int, num_classes: int = CLASSES) -> None:
        self.size, self.channels, self.num_classes = size, channels, num_classes


def loader(shape: Shape, batch: int, device, seed: int = 0, augment: bool = True) -> DeviceLoader:
    """Random uint8 images, 4 batches' worth, augmented as a custom dataset is by default."""
    rng = np.random.default_rng(seed)
    n = 4 * batch
    x = rng.integers(0, 256, (n, shape.size, shape.size, shape.channels), dtype=np.uint8)
    y = np.arange(n) % shape.num_classes
    aug = Augment(pad=max(1, shape.size // 8), flip=True) if augment else None
    c = shape.channels
    return DeviceLoader(x, y, batch, [0.5] * c, [0.25] * c, device, augment=aug, shuffle=True,
                        seed=seed)  # fmt: skip


def search_step(p: Params, shape: Shape, device):
    """One default search iteration per call (new architecture draws each time)."""
    s = p.search
    if s.arch_lr == "auto":  # the step size does not change a step's time
        s = s.model_copy(update={"arch_lr": 3e-4})
    fast = FastPath.resolve(p.common, device)
    gumbel = torch.Generator(device=device).manual_seed(p.common.seed + 2)
    net = fast.model(make_supernet(s, shape, generator=gumbel).to(device))
    a_opt = arch_optimizer(s, net, net.algorithm.arch_weight_decay(s))
    st = SearchState(net, *sgd_cosine(net.weight_parameters(), s), a_opt)
    ctx = StepContext.of(s, fast, device, net.algorithm)
    train, valid = loader(shape, s.batch_size, device), loader(shape, s.batch_size, device, 1)
    count = [0]

    def step() -> None:
        count[0] += 1
        net.train()
        t, v = dist.shard(*train.next_batch()), dist.shard(*valid.next_batch())
        bilevel_iteration(st, ctx, t, v, s.tau_max, (p.common.seed, 0, count[0]), True)

    return step


def train_step(p: Params, shape: Shape, device, genotype):
    """One retraining step per call, and one evaluation forward pass per call."""
    t = p.train
    config = {"in_channels": shape.channels, "num_classes": shape.num_classes,
              "channels": t.channels, "layers": t.layers}  # fmt: skip
    torch.manual_seed(p.common.seed)
    model = build_model(genotype, config).to(device)
    opt = weight_sgd(model.parameters(), t)
    batches = loader(shape, t.batch_size, device)
    test = loader(shape, p.evaluate.batch_size, device, augment=False)

    def step() -> None:
        model.train()
        x, y = batches.next_batch()
        opt.zero_grad(set_to_none=True)
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out
        F.cross_entropy(logits, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()

    @torch.no_grad()
    def evaluate() -> None:
        model.eval()
        x, _ = test.next_batch()
        model(x)

    return step, evaluate


def timed(fn, n: int) -> list[tuple[float, float]]:
    """(wall seconds, CPU seconds of the process, all its threads) of each of `n` calls."""
    out = []
    for _ in range(n):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        out.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def mean_of(samples: list[tuple[float, float]], which: int) -> float:
    return statistics.mean(x[which] for x in samples)


def genotypes() -> dict:
    found = {}
    committed = ROOT / "genotype.json"
    if committed.is_file():
        found["default_searched"] = load_genotype(committed)
    found["DARTS_V2"] = resolve_genotype("DARTS_V2", committed)
    return found


def measure(p: Params, sizes: list[int], steps: int, rounds: int, device) -> dict:
    shapes = {size: Shape(size, CHANNELS.get(size, 3)) for size in sizes}
    cells = genotypes()
    work = {}
    for size, shape in shapes.items():
        work[(size, "search")] = search_step(p, shape, device)
        for name, genotype in cells.items():
            step, evaluate = train_step(p, shape, device, genotype)
            work[(size, f"train:{name}")] = step
            work[(size, f"eval:{name}")] = evaluate
    for fn in work.values():  # warm-up: allocations, first-call overheads
        fn()
    times: dict = {key: [] for key in work}
    for r in range(rounds):  # interleaved, each round in a rotated order
        keys = list(work)
        keys = keys[r % len(keys) :] + keys[: r % len(keys)]
        for key in keys:
            times[key] += timed(work[key], steps)
    s, t, e = p.search, p.train, p.evaluate
    per_1000 = {"search": 1000 / 2 / s.batch_size, "train": 1000 / t.batch_size,
                "eval": 1000 / e.batch_size}  # steps per 1,000 images  # fmt: skip
    result = {}
    for size in sizes:
        row: dict = {"image": f"{size}x{size}x{shapes[size].channels}"}
        for (sz, what), samples in times.items():
            if sz != size:
                continue
            kind, _, cells_name = what.partition(":")
            name = what.replace(":", "_")
            unit = "per_epoch_per_1000" if kind != "eval" else "per_1000_test"
            for which, clock in ((0, "wall"), (1, "cpu")):
                step = mean_of(samples, which)
                row[f"{name}_{clock}_s_{unit}"] = round(step * per_1000[kind], 2)
            row[f"{name}_wall_s_per_step"] = round(mean_of(samples, 0), 4)
        result[size] = row
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 28, 32])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per size per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    p = load_params(ROOT / "params.yaml")
    device = torch.device(args.device)
    began = time.perf_counter()
    rows = measure(p, args.sizes, args.steps, args.rounds, device)
    s, t = p.search, p.train
    out = {
        "bench": "cost_rule",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                  else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        "search": {"channels": s.channels, "layers": s.layers, "batch": s.batch_size,
                   "epoch_steps_per_1000_train_images": math.ceil(1000 / 2 / s.batch_size)},
        "train": {"channels": t.channels, "layers": t.layers, "batch": t.batch_size},
        "steps_timed_per_size": args.steps * args.rounds,
        "sizes": rows,
        "wall_s": round(time.perf_counter() - began, 1),
    }  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
