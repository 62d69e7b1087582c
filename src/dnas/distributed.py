"""Data-parallel search and retraining under torchrun (README, "Many GPUs").

`torchrun --nproc_per_node N -m stages.train` (or `stages.search`) starts N processes. Each one

- holds the whole dataset and draws the same batches from the same seeded loader, then keeps
  its own contiguous slice of every batch (`shard`). The loaders' states, and so the
  checkpoints, are the same on every rank;
- draws the same architecture samples: the Gumbel generator (GDAS, SNAS) and the global
  generator (DrNAS's Dirichlet) are seeded alike and used alike on every rank. Per-example
  noise (drop-path) comes from a generator of its own per step and rank (`step_rng`), so the
  shards get independent masks and the shared streams stay in step whatever the shard sizes;
- averages the gradients after every backward pass, weighted by shard size
  (`average_gradients`): the result is the gradient of the mean loss over the whole batch, so
  every rank takes the same optimiser step and the weights and alphas stay equal.

Batch norm normalises each shard with its own statistics (as one GPU of the papers' multi-GPU
runs did); the running statistics are made rank 0's at the end of every epoch
(`broadcast_buffers`), before the evaluation and the checkpoint. Rank 0 alone writes dvclive
logs, checkpoints and outputs; it reads a checkpoint to resume from and sends it to the others
(`broadcast_object`), so no other rank touches files.

Over several machines (docs/distributed.md) each rank reads params.yaml, genotype.json and the
prepared data of its own machine. Before a run the ranks compare the run's fingerprint (those
three) and look for a checkpoint that only a machine other than rank 0's holds
(`check_same_run`): either would otherwise go unnoticed (ranks training different networks,
or a resumable run started again from scratch).

Without torchrun (`WORLD_SIZE` unset or 1) every function here returns at once and the loops
run exactly as in a single process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from dnas.errors import UserError

_control = None  # a gloo group for host-side agreement (stop requests, objects)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if world_size() > 1 else 0


def is_main() -> bool:
    return rank() == 0


@contextlib.contextmanager
def session(device: str) -> Iterator[None]:
    """Join the torchrun process group for the stage's duration (nothing without torchrun).
    NCCL carries CUDA tensors and gloo CPU ones; `device` is `common.device`."""
    global _control
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo")
    _control = dist.new_group(backend="gloo")
    try:
        yield
    finally:
        _control = None
        dist.destroy_process_group()


@dataclass(frozen=True)
class Shard:
    """This rank's slice of a batch of `n` examples. `weight` scales its gradients before they
    are summed over the ranks (its share of the batch); `count` scales its sums for the logs."""

    x: torch.Tensor
    y: torch.Tensor
    n: int
    weight: float = 1.0
    count: float = 1.0

    def tally(self, sums: torch.Tensor) -> torch.Tensor:
        return sums if self.count == 1.0 else sums * self.count

    def sums(self, loss: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        """(mean loss * examples, correct) of this shard in float64, scaled by `count`: summed
        over the ranks, the batch's."""
        return self.tally(torch.stack([loss * len(self.y), correct]).double())


def shard(x: torch.Tensor, y: torch.Tensor) -> Shard:
    """Rank r keeps examples [n*r/N, n*(r+1)/N) of the batch; shard sizes differ by at most
    one. A batch smaller than the number of ranks is run whole by every rank, each counting
    for 1/N of it (the same gradient, the same logged sums)."""
    world, n = world_size(), len(y)
    if world == 1:
        return Shard(x, y, n)
    if n < world:
        return Shard(x, y, n, 1.0 / world, 1.0 / world)
    r = rank()
    lo, hi = n * r // world, n * (r + 1) // world
    return Shard(x[lo:hi], y[lo:hi], n, (hi - lo) / n)


def shards(batches) -> Iterator[Shard]:
    """This rank's shard of each (x, y) batch of a loader: the loops see shards only."""
    for x, y in batches:
        yield shard(x, y)


def average_gradients(params, weight: float = 1.0) -> None:
    """Replace each gradient by the sum over ranks of weight * gradient, in one collective.
    Parameters without a gradient (GDAS's unsampled ops) are left without one; the sample is
    the same on every rank, so every rank skips the same ones."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]).mul_(weight)
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view(g.shape))
        offset += g.numel()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over the ranks in place (returns it)."""
    if world_size() > 1:
        dist.all_reduce(t)
    return t


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics)."""
    if world_size() == 1:
        return
    for b in module.buffers():
        dist.broadcast(b, 0)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (a checkpoint state, say)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def _gather(obj: Any) -> list:
    everyone = [None] * world_size()
    dist.all_gather_object(everyone, obj, group=_control)
    return everyone


def _resumable(directory: Path, fingerprint: str) -> str | None:
    """The checkpoint file in `directory` that rank 0 would resume from, were it rank 0's
    (as `Checkpointer.load` chooses: a kept finished run, or an unfinished last.pt of this
    fingerprint); None if there is none. Reads, never moves, the files."""
    for name, complete in (("finished.pt", True), ("last.pt", False)):
        path = directory / name
        if not path.is_file():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # unreadable: rank 0 would set it aside, not resume it
            continue
        if (
            isinstance(state, dict)
            and state.get("fingerprint") == fingerprint
            and bool(state.get("complete")) == complete
        ):
            return str(path)
    return None


def check_same_run(fingerprint: str, checkpoint_dir: str | Path | None) -> None:
    """Under torchrun, before a run's first collective: raise the same `UserError` on every
    rank if a rank's fingerprint (its params, data and genotype) differs from rank 0's, or if
    a checkpoint that would resume the run lies on another rank's machine while rank 0, which
    alone reads checkpoints, has none. On one machine every rank sees the same files, so only
    runs over several machines can fail here."""
    if world_size() == 1:
        return
    where = f"{socket.gethostname()}:{os.getcwd()}"
    directory = None if checkpoint_dir is None else Path(checkpoint_dir)
    present = directory is not None and any(
        (directory / name).is_file() for name in ("finished.pt", "last.pt")
    )
    ranks = _gather((fingerprint, where, present))
    fp0, where0, present0 = ranks[0]
    for r, (fp, where_r, _) in enumerate(ranks):
        if fp != fp0:
            raise UserError(
                f"rank {r} ({where_r}) has other params, data or genotype than rank 0 "
                f"({where0}): every machine of a torchrun run needs the same params.yaml, "
                "genotype.json and data/prepared/ (docs/distributed.md)"
            )
    if present0 or not any(p for _, _, p in ranks):
        return  # rank 0 decides from its own files, as on one machine
    # Only machines other than rank 0's hold checkpoint files: do they hold this run?
    found = _gather(_resumable(directory, fingerprint) if present else None)
    for r, path in enumerate(found):
        if path is not None:
            raise UserError(
                f"{path} on rank {r}'s machine ({ranks[r][1]}) would resume this run, but "
                f"rank 0 ({where0}), which alone reads and writes checkpoints, has none: copy "
                f"{directory}/ to rank 0's machine, or delete it there to start again (with "
                "--rdzv-backend c10d, rank 0 is the machine whose address sorts first, not "
                "--node-rank 0; docs/distributed.md)"
            )


class AgreedStop:
    """A stop request that is true on every rank once it is true on any (torchrun sends
    SIGTERM to all ranks, but they may notice it at different steps)."""

    def __init__(self, request) -> None:
        self.request = request

    def __bool__(self) -> bool:
        flag = torch.tensor([1 if self.request else 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_control)
        return bool(flag.item())


def agreed_stop(request):
    return request if world_size() == 1 else AgreedStop(request)


def agree_on_guard(guard) -> None:
    """Make a `FiniteLossGuard`'s first bad step the earliest over the ranks, so all ranks
    stop together (or none does)."""
    if world_size() == 1:
        return
    never = torch.iinfo(torch.long).max
    first = torch.where(guard.first_bad < 0, never, guard.first_bad)
    dist.all_reduce(first, op=dist.ReduceOp.MIN)
    guard.first_bad = torch.where(first == never, -1, first)


@contextlib.contextmanager
def step_rng(device: torch.device, *key: int, per_rank: bool = True) -> Iterator[None]:
    """Under torchrun: run the block with the global generators seeded from `key` (and the
    rank, unless `per_rank` is False), then restore them. The global streams thus advance alike
    on every rank, whatever each rank drew. Without torchrun: nothing."""
    if world_size() == 1:
        yield
        return
    parts = (*key, rank()) if per_rank else key
    seed = int(hashlib.sha256(repr(parts).encode()).hexdigest()[:15], 16)
    devices = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class NullLive:
    """Stands in for dvclive's `Live` on the ranks that do not log."""

    def __enter__(self) -> NullLive:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def log_metric(self, *args, **kwargs) -> None:
        pass

    def log_plot(self, *args, **kwargs) -> None:
        pass

    def next_step(self) -> None:
        pass
