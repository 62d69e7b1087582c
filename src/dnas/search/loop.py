"""The CNN search loop the algorithms share (docs/algorithms.md#gdas-schedules,
docs/algorithms.md#darts-first-and-second-order, docs/algorithms.md#snas, docs/algorithms.md#drnas).

`run_search` hands the search to its algorithm (`dnas.search.registry`): every algorithm but
random search runs `run_search_loop` here. The steps themselves are plain functions in
`dnas.search.steps`; this module builds the supernet, its loaders and optimisers, and runs the
epochs (`dnas.runner.EpochRunner`). What differs per algorithm comes from its `Algorithm`
object (`dnas.search.algorithm`): how edges mix, single or bilevel, the regulariser.

Bilevel (gdas, darts, drnas): each iteration takes a search-train batch for a weight step and
a search-valid batch for an architecture step, in `step_order`. Weights: SGD with momentum,
weight decay and cosine annealing per epoch, gradient norm clipped (weights only, as the CVPR
code). Architecture: Adam (or SGD) on the alphas, first order or DARTS's unrolled second order
(`dnas.search.architect`). Each step draws its own architecture sample. The reported
search-valid accuracy is that of the sampled architectures on the architecture-step batches,
as AutoDL reports it.

Single level (snas): one backward pass over a batch of the whole training split updates
weights and alphas together, with the resource penalty; the test split is only watched (its
accuracy, with sampled architectures, is the reported "valid" one), as SNAS does.

DrNAS's progressive schedule (`partial_channels` with several stages, `dnas.search.drnas`)
splits the epochs evenly into stages; between stages it prunes each edge to its best
`keep_ops` ops and widens the partial channels. The alphas stay still for the first
`arch_warmup` epochs of each stage.

tau (GDAS, SNAS) decays linearly per epoch from tau_max towards tau_min (`tau_schedule`).

The fast path (`common.bf16`, `channels_last`, `cudnn_benchmark`; no compile: the supernet's
graph changes with every sample) and torchrun data parallelism (dnas.distributed: each rank a
shard of every batch, the same samples, gradients of weights and alphas averaged) leave a
single-process run with the switches off exactly as it was. Under torchrun the second-order
step's virtual weight step uses each rank's own shard (the alpha gradients are averaged).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from dnas import distributed as dist
from dnas.benchmarks import nb201 as nb201_bench
from dnas.checkpoint import GeneratorState, run_fingerprint
from dnas.config import Params, Search
from dnas.data import Prepared
from dnas.data.loader import split_loader
from dnas.evaluate import genotype_params
from dnas.optim import arch_optimizer, set_arch_lr, sgd_cosine
from dnas.runner import EpochRunner
from dnas.runtime import FastPath, seed_everything
from dnas.search import budget, drnas
from dnas.search.algorithm import Algorithm
from dnas.search.gdas import tau_at
from dnas.search.record import (
    SearchResult,
    arch_values,
    final_metrics,
    record_epoch,
    replay_log,
)
from dnas.search.registry import get_algorithm
from dnas.search.snas import temperature as snas_temperature
from dnas.search.steps import SearchState, StepContext, bilevel_iteration, joint_step, watch_test
from dnas.search.supernet import Supernet, supernet_for

# metrics/search.json's entries from the last epoch's values
METRICS = {"valid_acc": "acc/valid", "valid_loss": "loss/valid", "train_acc": "acc/train",
           "train_loss": "loss/train"}  # fmt: skip


def make_supernet(s: Search, data, stage: int = 0, **kw) -> Supernet:
    """The supernet of the search `s` (`supernet_for` with the registry's algorithm)."""
    return supernet_for(s, data, get_algorithm(s.algorithm), stage, **kw)


def search_loaders(s: Search, algorithm: Algorithm, data: Prepared, device, seed: int):
    kw = {"augment": s.augment, "shuffle": True}
    if algorithm.single_level:  # all training data; the test split is watched
        train = split_loader(data, "train", s.batch_size, device, seed=seed, **kw)
        valid = split_loader(data, "test", s.batch_size, device)
        return train, valid
    train = split_loader(data, "search_train", s.batch_size, device, seed=seed, **kw)
    valid = split_loader(data, "search_valid", s.batch_size, device, seed=seed + 1, **kw)
    return train, valid


def temperature(s: Search, epoch: int) -> float:
    """The Gumbel temperature of `epoch`: SNAS's schedule or GDAS's (`search.tau_schedule`)."""
    if s.tau_schedule == "snas":
        return snas_temperature(epoch, s.epochs, s.tau_max, s.tau_min)
    return tau_at(epoch, s.epochs, s.tau_max, s.tau_min, s.tau_schedule)


def search_epoch(
    run: EpochRunner,
    st: SearchState,
    ctx: StepContext,
    epoch: int,
    tau,
    arch_moves,
    seed,
    train,
    valid,
):
    """The iterations of one search epoch (dnas.search.steps): the (loss * n, correct) sums of
    train and valid, summed over the ranks, and the two example counts."""
    single_level = ctx.algorithm.single_level
    state = run.begin_epoch(lambda: {"sums": torch.zeros(4, dtype=torch.float64), "n": [0, 0]})
    sums = state["sums"].to(ctx.device)  # loss*n, correct (train, valid)
    n_train, n_valid = state["n"]
    for train_batch in dist.shards(train):
        key = (seed, epoch, run.guard.step)
        n_train += train_batch.n
        if single_level:
            train_loss, train_sums = joint_step(st, ctx, train_batch, tau, key)
            run.guard.observe(train_loss)
        else:
            valid_batch = dist.shard(*valid.next_batch())
            n_valid += valid_batch.n
            (train_loss, train_sums), (valid_loss, valid_sums) = bilevel_iteration(
                st, ctx, train_batch, valid_batch, tau, key, arch_moves
            )
            run.guard.observe(train_loss, valid_loss)
            sums[2:] += valid_sums
        sums[:2] += train_sums
        n = [n_train, n_valid]
        run.step_done(
            epoch, lambda sums=sums, n=n: {"sums": dist.all_reduce_sum(sums).cpu(), "n": n}
        )
    if single_level:
        sums[2:], n_valid = watch_test(st, ctx, valid, tau)
    st.scheduler.step()
    run.end_epoch(epoch)
    dist.all_reduce_sum(sums[:2] if single_level else sums)  # SNAS's test: done
    dist.broadcast_buffers(st.net)
    return sums.tolist(), n_train, n_valid


def run_search(
    p: Params,
    data: Prepared,
    device: torch.device,
    live_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
) -> SearchResult:
    """Search with the algorithm `search.algorithm` names; with `checkpoint_dir`, checkpoint
    as `common.checkpoint_every` says and resume from a checkpoint of the same params and data
    (see dnas.checkpoint)."""
    p = budget.resolve(p, data)  # search.arch_lr: auto -> a number
    algorithm = get_algorithm(p.search.algorithm)
    loop = algorithm.run or run_search_loop  # its own loop, or the shared one
    return loop(p, data, device, live_dir, checkpoint_dir)


def run_search_loop(
    p: Params,
    data: Prepared,
    device: torch.device,
    live_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
) -> SearchResult:
    """The shared loop (module doc) of the algorithms with an architecture step."""
    s = p.search
    bench = nb201_bench.Benchmark.open(s.benchmark) if s.benchmark else None  # fails early
    seed_everything(p.common.seed)
    fast = FastPath.resolve(p.common, device)
    fast.apply_backends(device)
    gumbel = torch.Generator(device=device).manual_seed(p.common.seed + 2)
    net = fast.model(make_supernet(s, data, generator=gumbel).to(device))
    algorithm = net.algorithm
    example = torch.zeros(1, data.channels, *data.train_x.shape[1:3], device=device)
    costs = algorithm.penalty_costs(s, net, example)
    train_loader, valid_loader = search_loaders(s, algorithm, data, device, p.common.seed)
    a_opt = arch_optimizer(s, net, algorithm.arch_weight_decay(s))
    st = SearchState(net, *sgd_cosine(net.weight_parameters(), s), a_opt)
    ctx = StepContext.of(s, fast, device, algorithm, costs)
    schedule = drnas.Schedule(s)
    stateful = {
        **st.stateful(),
        "gumbel": GeneratorState(net.generator),
        "train_loader": train_loader,
        "valid_loader": valid_loader,
    }
    run = EpochRunner(
        "search", s.epochs, device, "search.lr or search.arch_lr", live_dir, checkpoint_dir,
        p.common.checkpoint_every,
        # The benchmark path only adds lookups: a checkpoint resumes with or without it.
        run_fingerprint(p, "search", data.card["sha256"], leave_out={"benchmark"}),
        stateful,
        log=[[], []],  # the values logged per epoch, the op probabilities
        extra=lambda epoch: {"stage": schedule.stage_of(min(epoch, s.epochs - 1))},
        steps=len(train_loader),
    )  # fmt: skip

    def advance(stage: int) -> None:  # DrNAS's next stage, built in the same memory layout
        nonlocal st
        st = schedule.advance(st, stage, data, lambda *a, **kw: fast.model(make_supernet(*a, **kw)))
        stateful.update(st.stateful())

    state = run.load()
    # A progressive DrNAS run resumed in a later stage: rebuild that stage's network first.
    for stage in range(1, (state or {}).get("stage", 0) + 1):
        advance(stage)
    run.restore(state)

    def one_epoch(epoch: int) -> dict:
        if schedule.starts_stage(epoch) and not run.mid_epoch:
            advance(schedule.stage_of(epoch))
        tau = temperature(s, epoch)
        set_arch_lr(st.a_opt, s, epoch)  # search.arch_lr_schedule
        st.net.set_drop_prob(s.drop_path)  # constant, as SNAS (docs/protocols.md)
        lr = st.w_opt.param_groups[0]["lr"]
        st.net.train()
        sums, n_train, n_valid = search_epoch(
            run, st, ctx, epoch, tau, schedule.arch_moves(epoch), p.common.seed,
            train_loader, valid_loader,
        )  # fmt: skip
        current = st.net.derive()
        values = {"tau": tau, "lr": lr, **mean_values(sums, n_train, n_valid)}
        values.update(arch_values(current))
        if bench is not None:  # the current cell's recorded accuracies (AutoDL's curves)
            values.update(nb201_bench.curve_values(bench.lookup(current.arch)))
        return record_epoch(run, live_dir, epoch, values, current)

    run.run(one_epoch, functools.partial(replay_log, run, live_dir))
    genotype = st.net.derive()
    size = genotype_params(genotype, data)
    metrics = final_metrics(run, device, s.epochs, size, METRICS, algorithm.uses_tau)
    metrics["arch_lr"] = s.arch_lr
    if bench is not None:
        metrics["benchmark"] = nb201_bench.metrics_row(bench.lookup(genotype.arch))
    return SearchResult(genotype=genotype, metrics=metrics)


def mean_values(sums: list[float], n_train: int, n_valid: int) -> dict[str, float]:
    """An epoch's mean losses and accuracies (percent) from its sums."""
    loss_t, correct_t, loss_v, correct_v = sums
    return {
        "loss/train": loss_t / n_train,
        "acc/train": 100.0 * correct_t / n_train,
        "loss/valid": loss_v / n_valid,
        "acc/valid": 100.0 * correct_v / n_valid,
    }
