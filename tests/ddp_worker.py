"""One rank of the data-parallel checks in test_ddp.py, started by torchrun:

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py OUT DATA

Each rank writes OUT/rank<r>.pt with what the test compares: gradients of a shard-averaged step
and of the whole batch, the architecture samples it drew, and the final states of a search and
a retraining (each run once straight through and once interrupted and resumed). OUT/run-*/
live<r> and ckpt<r> are where rank r is told to write dvclive logs and checkpoints: only rank 0
may write them.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from dnas import distributed, runner
from dnas.checkpoint import Interrupted
from dnas.config import parse_params
from dnas.data import load_prepared
from dnas.models import build_network
from dnas.search import loop as search_loop
from dnas.search import random_search
from dnas.search.registry import make_algorithm
from dnas.search.supernet import Nb201Supernet
from dnas.spaces.published import resolve_genotype
from dnas.train import loop as train_loop
from tests.interrupt import StopAfter

CPU = torch.device("cpu")
NB201_ARCH = (
    "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
)
SEARCH = {"space": "nb201", "epochs": 2, "channels": 4, "layers": 1, "batch_size": 200}
TRAIN = {"epochs": 2, "channels": 4, "layers": 3, "batch_size": 300, "drop_path": 0.2}
TRAIN.update(auxiliary_weight=0.4, cutout=4)


@contextmanager
def stop_after(module, steps: int):
    """Stop `module`'s loop after `steps` steps: its stop requests come from dnas.runner."""
    assert module.EpochRunner is runner.EpochRunner
    original = runner.stop_on_signals

    @contextmanager
    def fake():
        yield StopAfter(steps)

    runner.stop_on_signals = fake
    try:
        yield
    finally:
        runner.stop_on_signals = original


def gradients(data) -> dict:
    """A real network (NB201 cell, eval-mode batch norm: per-example outputs) on a batch of 7
    (shards of 3 and 4): the shard-weighted average against this rank's whole-batch gradient."""
    torch.manual_seed(0)
    net = build_network(resolve_genotype(NB201_ARCH, "-"), data.channels, 10, 4, 1).eval()
    x = torch.from_numpy(data.train_x[:7]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(data.train_y[:7]).long()
    F.cross_entropy(net(x), y).backward()
    whole = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    part = distributed.shard(x, y)
    F.cross_entropy(net(part.x), part.y).backward()
    distributed.average_gradients(net.parameters(), part.weight)
    return {"whole": whole, "averaged": [p.grad.clone() for p in net.parameters()]}


def samples(data) -> list[list[int]]:
    gen = torch.Generator().manual_seed(5)
    net = Nb201Supernet(data.channels, 10, 4, 1, algorithm=make_algorithm("gdas"), generator=gen)
    return [[idx for _, idx, _ in net.draws(10.0)][0] for _ in range(20)]


def dirs(root: Path) -> tuple[Path, Path]:
    r = distributed.rank()
    return root / f"live{r}", root / f"ckpt{r}"


def search(params, data, root: Path, stop: int | None = None) -> dict:
    """A search as the stage runs it (`run_search`, by `search.algorithm`), straight through or
    interrupted after `stop` steps and resumed."""
    if stop is not None:
        with stop_after(search_loop, stop):
            try:
                search_loop.run_search(params, data, CPU, *dirs(root))
            except Interrupted:
                pass
    result = search_loop.run_search(params, data, CPU, *dirs(root))
    return {
        "genotype": result.genotype.to_json(),
        "metrics": {k: v for k, v in result.metrics.items() if k != "cost"},
    }


@contextmanager
def kept_supernet(module, name: str):
    """While in it, `module.name` (the function a search builds its supernet with) keeps what
    it built: `net`, the latest supernet, and `start`, the first one's state as built."""
    kept: dict = {}
    original = getattr(module, name)

    def keep(*args, **kwargs):
        kept["net"] = net = original(*args, **kwargs)
        kept.setdefault("start", {k: v.clone() for k, v in net.state_dict().items()})
        return net

    setattr(module, name, keep)
    try:
        yield kept
    finally:
        setattr(module, name, original)


def searches(data, out: Path, name: str, search_params: dict, builder) -> dict:
    """A search straight through and one stopped after 5 steps (4 steps an epoch: 718
    search-train examples, batch 200; so in epoch 2) and resumed, each with its supernet's
    final state, and the supernet's state as built, under `name`, `name`_net, `name`_start,
    `name`_resumed and `name`_resumed_net. `builder`: (module, function) that builds it."""
    p = parse_params({"search": search_params})
    with kept_supernet(*builder) as kept:
        result = {name: search(p, data, out / f"run-{name}")}
        result[f"{name}_net"] = kept["net"].state_dict()
        result[f"{name}_start"] = kept["start"]
        result[f"{name}_resumed"] = search(p, data, out / f"run-{name}-resumed", stop=5)
        result[f"{name}_resumed_net"] = kept["net"].state_dict()
    return result


def train(params, data, root: Path, stop: int | None = None) -> dict:
    genotype = resolve_genotype("GDAS_V1", "-")
    if stop is not None:
        with stop_after(train_loop, stop):
            try:
                train_loop.run_train(params, genotype, data, CPU, *dirs(root))
            except Interrupted:
                pass
    model, _, metrics = train_loop.run_train(params, genotype, data, CPU, *dirs(root))
    return {"state": model.state_dict(), "metrics": metrics}


def main() -> None:
    torch.set_num_threads(1)
    out, data_dir = Path(sys.argv[1]), Path(sys.argv[2])
    data = load_prepared(data_dir)
    with distributed.session("cpu"):
        assert distributed.world_size() == 2
        result = {"gradients": gradients(data), "samples": samples(data)}
        result.update(searches(data, out, "search", SEARCH, (search_loop, "make_supernet")))
        random = {**SEARCH, "algorithm": "random", "random_samples": 6}
        result.update(searches(data, out, "random", random, (random_search, "supernet_for")))
        p = parse_params({"train": TRAIN})
        result["train"] = train(p, data, out / "run-train")
        # 5 steps an epoch (1437 examples, batch 300): stop in epoch 2
        result["train_resumed"] = train(p, data, out / "run-train-resumed", stop=6)
        torch.save(result, out / f"rank{distributed.rank()}.pt")


if __name__ == "__main__":
    main()
