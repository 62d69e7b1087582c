"""The search loop of every algorithm (docs/algorithms.md#gdas-schedules,
docs/algorithms.md#darts-first-and-second-order, docs/algorithms.md#snas, docs/algorithms.md#drnas).

The steps themselves are plain functions in `dnas.search.steps`; this module builds the
supernet, its loaders and optimisers, and runs the epochs (`dnas.runner.EpochRunner`).

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
from dnas.checkpoint import GeneratorState, fingerprint
from dnas.config import Params, Search
from dnas.data import Prepared
from dnas.data.loader import split_loader
from dnas.evaluate import genotype_params
from dnas.optim import arch_optimizer, sgd_cosine
from dnas.runner import EpochRunner
from dnas.runtime import FastPath, seed_everything
from dnas.search import budget, drnas
from dnas.search.gdas import tau_at
from dnas.search.record import (
    SearchResult,
    arch_values,
    final_metrics,
    record_epoch,
    replay_log,
)
from dnas.search.snas import op_costs
from dnas.search.snas import temperature as snas_temperature
from dnas.search.steps import SearchState, Steps, bilevel_iteration, joint_step, watch_test
from dnas.search.supernet import Supernet, build_supernet

# metrics/search.json's entries from the last epoch's values
METRICS = {"valid_acc": "acc/valid", "valid_loss": "loss/valid", "train_acc": "acc/train",
           "train_loss": "loss/train"}  # fmt: skip


def make_supernet(s: Search, data: Prepared, stage: int = 0) -> Supernet:
    net = build_supernet(
        s.space,
        data.channels,
        data.num_classes,
        s.channels,
        s.layers,
        algorithm=s.algorithm,
        fixed_reduction=s.fixed_reduction,
        partial=s.partial_channels[stage],
    )
    net.sample_per = s.sample_per
    net.unselected_grad = (s.space == "nb201") if s.unselected_grad == "auto" else s.unselected_grad
    return net


def snas_costs(s: Search, net: Supernet, data: Prepared, device) -> dict | None:
    """The ops' costs for SNAS's resource penalty (None without one), measured on one input."""
    if s.algorithm != "snas" or s.resource_lambda <= 0:
        return None
    with torch.random.fork_rng(devices=[]):
        example = torch.zeros(1, data.channels, *data.train_x.shape[1:3], device=device)
        return op_costs(net, example)


def search_loaders(s: Search, data: Prepared, device, seed: int):
    kw = {"augment": s.augment, "shuffle": True}
    if s.algorithm == "snas":  # single level: all training data; the test split is watched
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
    run: EpochRunner, st: SearchState, how: Steps, epoch: int, tau, arch_moves, seed, train, valid
):
    """The iterations of one search epoch (dnas.search.steps): the (loss * n, correct) sums of
    train and valid, summed over the ranks, and the two example counts."""
    single_level = how.s.algorithm == "snas"
    state = run.begin_epoch(lambda: {"sums": torch.zeros(4, dtype=torch.float64), "n": [0, 0]})
    sums = state["sums"].to(how.device)  # loss*n, correct (train, valid)
    n_train, n_valid = state["n"]
    for t in dist.shards(train):
        key = (seed, epoch, run.guard.step)
        n_train += t.n
        if single_level:
            lt, sums_t = joint_step(st, how, t, tau, key)
            run.guard.observe(lt)
        else:
            v = dist.shard(*valid.next_batch())
            n_valid += v.n
            (lt, sums_t), (lv, sums_v) = bilevel_iteration(st, how, t, v, tau, key, arch_moves)
            run.guard.observe(lt, lv)
            sums[2:] += sums_v
        sums[:2] += sums_t
        n = [n_train, n_valid]
        run.step_done(
            epoch, lambda sums=sums, n=n: {"sums": dist.all_reduce_sum(sums).cpu(), "n": n}
        )
    if single_level:
        sums[2:], n_valid = watch_test(st, how, valid, tau)
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
    """Search; with `checkpoint_dir`, checkpoint as `common.checkpoint_every` says and resume
    from a checkpoint of the same params and data (see dnas.checkpoint)."""
    p = budget.resolve(p, data)  # search.arch_lr: auto -> a number
    s = p.search
    if s.algorithm == "random":  # no architecture to learn: its own loop
        from dnas.search.random_search import run_random_search

        return run_random_search(p, data, device, live_dir, checkpoint_dir)
    bench = nb201_bench.Benchmark.open(s.benchmark) if s.benchmark else None  # fails early
    seed_everything(p.common.seed)
    fast = FastPath.resolve(p.common, device)
    fast.apply_backends(device)
    net = fast.model(make_supernet(s, data).to(device))
    costs = snas_costs(s, net, data, device)
    net.generator = torch.Generator(device=device).manual_seed(p.common.seed + 2)
    train_loader, valid_loader = search_loaders(s, data, device, p.common.seed)
    st = SearchState(net, *sgd_cosine(net.weight_parameters(), s), arch_optimizer(s, net))
    how = Steps.of(s, fast, device, costs)
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
        fingerprint(p.common.seed, s.model_dump(exclude={"benchmark"}), data.card["sha256"]),
        stateful,
        log=[[], []],  # the values logged per epoch, the op probabilities
        extra=lambda epoch: {"stage": schedule.stage_of(min(epoch, s.epochs - 1))},
        steps=len(train_loader),
    )  # fmt: skip

    def advance(stage: int) -> None:  # DrNAS's next stage, built in the same memory layout
        nonlocal st
        st = schedule.advance(st, stage, data, lambda *a: fast.model(make_supernet(*a)))
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
        st.net.set_drop_prob(s.drop_path)  # constant, as SNAS (docs/protocols.md)
        lr = st.w_opt.param_groups[0]["lr"]
        st.net.train()
        sums, n_train, n_valid = search_epoch(
            run, st, how, epoch, tau, schedule.arch_moves(epoch), p.common.seed,
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
    metrics = final_metrics(run, device, s.epochs, genotype_params(genotype, data), METRICS)
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
