"""The search loop of every algorithm (docs/algorithms.md#gdas-schedules,
docs/algorithms.md#darts-first-and-second-order, docs/algorithms.md#snas, docs/algorithms.md#drnas).

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
import resource
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dnas import distributed as dist
from dnas.benchmarks import nb201 as nb201_bench
from dnas.checkpoint import GeneratorState, fingerprint
from dnas.config import Params, Search
from dnas.data import Prepared
from dnas.data.loader import split_loader
from dnas.evaluate import count_parameters
from dnas.io import round_floats, write_json
from dnas.models import build_network
from dnas.optim import sgd_cosine
from dnas.runner import EpochRunner
from dnas.runtime import FastPath, seed_everything
from dnas.search import drnas
from dnas.search.architect import first_order, unrolled_arch_grad
from dnas.search.gdas import tau_at
from dnas.search.mixing import dirichlet_kl_to_uniform
from dnas.search.snas import op_costs, resource_penalty
from dnas.search.snas import temperature as snas_temperature
from dnas.search.supernet import Supernet, build_supernet
from dnas.spaces.genotype import Genotype
from dvclive import Live


@dataclass
class SearchResult:
    genotype: Genotype
    metrics: dict


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


def search_loaders(s: Search, data: Prepared, device, seed: int):
    kw = {"augment": s.augment, "shuffle": True}
    if s.algorithm == "snas":  # single level: all training data; the test split is watched
        train = split_loader(data, "train", s.batch_size, device, seed=seed, **kw)
        valid = split_loader(data, "test", s.batch_size, device)
        return train, valid
    train = split_loader(data, "search_train", s.batch_size, device, seed=seed, **kw)
    valid = split_loader(data, "search_valid", s.batch_size, device, seed=seed + 1, **kw)
    return train, valid


def arch_optimizer(s: Search, params) -> torch.optim.Optimizer:
    """Adam (GDAS, DARTS, DrNAS) or plain SGD (SNAS on one GPU). DrNAS's default l2
    regulariser is Adam's weight decay = reg_scale, its kl one has none
    (docs/algorithms.md#drnas)."""
    wd = s.arch_weight_decay
    if s.algorithm == "drnas":
        wd = s.reg_scale if s.drnas_reg == "l2" else 0.0
    if s.arch_optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.arch_lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=s.arch_lr, betas=tuple(s.arch_betas), weight_decay=wd)


def genotype_params(genotype: Genotype, data: Prepared) -> int:
    """Parameters of the derived network at the papers' evaluation size (DARTS space: C=36,
    20 cells; NB201: C=16, 5 cells per stage), without the auxiliary head."""
    c, layers = (36, 20) if genotype.space == "darts" else (16, 5)
    net = build_network(genotype, data.channels, data.num_classes, c, layers)
    return count_parameters(net)


def kl_regulariser(reg_scale: float, model) -> torch.Tensor:
    """DrNAS's kl regulariser: the Dirichlet KL to the uniform prior, scaled."""
    return reg_scale * sum(dirichlet_kl_to_uniform(a) for a in model.arch_parameters())


class SearchSteps:
    """The steps of one search iteration on the current supernet and its optimisers; a DrNAS
    stage change (`advance`) replaces all four.

    Under torchrun, per-example noise (drop-path) comes from a generator of its own per step
    and rank; DrNAS's Dirichlet sample comes from the global generator and must be the same
    on every rank, so its steps share theirs."""

    def __init__(self, s: Search, fast: FastPath, device, net, w_opt, scheduler, a_opt, costs):
        self.s, self.fast, self.device, self.costs = s, fast, device, costs
        self.net, self.w_opt, self.scheduler, self.a_opt = net, w_opt, scheduler, a_opt
        self.schedule = drnas.Schedule(s)
        self.extra_loss = None
        if s.algorithm == "drnas" and s.drnas_reg == "kl":
            self.extra_loss = functools.partial(kl_regulariser, s.reg_scale)
        self.per_rank = s.algorithm != "drnas"

    def stateful(self) -> dict:
        return {
            "model": self.net,
            "w_opt": self.w_opt,
            "scheduler": self.scheduler,
            "a_opt": self.a_opt,
        }

    def advance(self, stage: int, data: Prepared, stateful: dict) -> None:
        """DrNAS's next stage, built in the same memory layout; `stateful` follows."""

        def build(s, data, stage):
            return self.fast.model(make_supernet(s, data, stage))

        self.net, self.w_opt, self.scheduler, self.a_opt = self.schedule.advance(
            self.net, self.w_opt, self.scheduler, self.a_opt, stage, data, build
        )
        stateful.update(self.stateful())

    def noise(self, key, phase):
        return dist.step_rng(self.device, *key, phase, per_rank=self.per_rank)

    def clip_arch(self):
        if self.s.arch_grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.arch_parameters(), self.s.arch_grad_clip)

    def weight_step(self, x, y, weight, key, tau):
        s, net, fast = self.s, self.net, self.fast
        self.w_opt.zero_grad(set_to_none=True)
        with self.noise(key, 0), fast.autocast(self.device):
            logits = net(fast.inputs(x), tau, detach_alpha=True)
            loss = F.cross_entropy(logits, y)
        loss.backward()
        dist.average_gradients(net.weight_parameters(), weight)
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.weight_parameters(), s.grad_clip)
        self.w_opt.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def joint_step(self, x, y, weight, key, tau):  # SNAS: weights and alphas from one backward pass
        s, net, fast = self.s, self.net, self.fast
        self.w_opt.zero_grad(set_to_none=True)
        self.a_opt.zero_grad(set_to_none=True)
        with self.noise(key, 0), fast.autocast(self.device):
            logits = net(fast.inputs(x), tau)
            loss = F.cross_entropy(logits, y)
        total = loss
        if self.costs is not None:
            penalty = resource_penalty(net.last_weights, self.costs, s.resource_log)
            total = loss + s.resource_lambda * penalty
        total.backward()
        dist.average_gradients(net.parameters(), weight)
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.weight_parameters(), s.grad_clip)
        self.clip_arch()
        self.w_opt.step()
        self.a_opt.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def arch_step(self, xt, yt, xv, yv, epoch, weight, key, tau):
        s, net, fast, device = self.s, self.net, self.fast, self.device
        xt, xv = fast.inputs(xt), fast.inputs(xv)
        if not self.schedule.arch_moves(epoch):  # DrNAS warm-up: watch only
            with torch.no_grad(), self.noise(key, 1), fast.autocast(device):
                logits = net(xv, tau)
                loss = F.cross_entropy(logits, yv)
            return loss, (logits.argmax(1) == yv).sum()
        self.a_opt.zero_grad(set_to_none=True)
        with self.noise(key, 1), fast.autocast(device):  # backward passes in the forward dtypes
            if s.order == 2:
                grads, loss, logits = unrolled_arch_grad(
                    net, self.w_opt, xt, yt, xv, yv, tau, extra_loss=self.extra_loss
                )
                for a, g in zip(net.arch_parameters(), grads):
                    a.grad = g
            else:
                loss, logits = first_order(net, xv, yv, tau, self.extra_loss)
        dist.average_gradients(net.arch_parameters(), weight)
        self.clip_arch()
        self.a_opt.step()
        return loss, (logits.argmax(1) == yv).sum()

    def watch_test(self, loader, tau):  # SNAS: accuracy of sampled architectures on the test split
        net, fast = self.net, self.fast
        net.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        n = 0
        with torch.no_grad():
            for x, y in loader:
                n += len(y)
                part = dist.shard(x, y)
                x, y = part.x, part.y
                with fast.autocast(self.device):
                    logits = net(fast.inputs(x), tau)
                    loss = F.cross_entropy(logits, y)
                sums += part.tally(
                    torch.stack([loss * len(y), (logits.argmax(1) == y).sum()]).double()
                )
        net.train()
        return dist.all_reduce_sum(sums), n


def search_epoch(
    run: EpochRunner, steps: SearchSteps, epoch: int, tau: float, seed: int, train, valid
):
    """The steps of one search epoch: (loss*n, correct) of train and valid, summed over the
    ranks, and the two example counts."""
    s = steps.s
    single_level = s.algorithm == "snas"
    state = run.begin_epoch(lambda: {"sums": torch.zeros(4, dtype=torch.float64), "n": [0, 0]})
    sums = state["sums"].to(steps.device)  # loss*n, correct (train, valid)
    n_train, n_valid = state["n"]
    for xt, yt in train:
        n_train += len(yt)
        t_part = dist.shard(xt, yt)
        xt, yt = t_part.x, t_part.y
        key = (seed, epoch, run.guard.step)
        if single_level:
            lt, ct = steps.joint_step(xt, yt, t_part.weight, key, tau)
            run.guard.observe(lt)
            sums[:2] += t_part.tally(torch.stack([lt * len(yt), ct]).double())
        else:
            xv, yv = valid.next_batch()
            n_valid += len(yv)
            v_part = dist.shard(xv, yv)
            xv, yv = v_part.x, v_part.y
            if s.step_order == "weights_first":
                lt, ct = steps.weight_step(xt, yt, t_part.weight, key, tau)
                lv, cv = steps.arch_step(xt, yt, xv, yv, epoch, v_part.weight, key, tau)
            else:
                lv, cv = steps.arch_step(xt, yt, xv, yv, epoch, v_part.weight, key, tau)
                lt, ct = steps.weight_step(xt, yt, t_part.weight, key, tau)
            run.guard.observe(lt, lv)
            sums[:2] += t_part.tally(torch.stack([lt * len(yt), ct]).double())
            sums[2:] += v_part.tally(torch.stack([lv * len(yv), cv]).double())
        n = [n_train, n_valid]
        run.step_done(
            epoch, lambda sums=sums, n=n: {"sums": dist.all_reduce_sum(sums).cpu(), "n": n}
        )
    if single_level:
        test_sums, n_valid = steps.watch_test(valid, tau)
        sums[2:] = test_sums
    steps.scheduler.step()
    run.end_epoch(epoch)
    dist.all_reduce_sum(sums[:2] if single_level else sums)  # SNAS's test: done
    dist.broadcast_buffers(steps.net)
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
    s = p.search
    bench = nb201_bench.Benchmark.open(s.benchmark) if s.benchmark else None  # fails early
    seed_everything(p.common.seed)
    fast = FastPath.resolve(p.common, device)
    fast.apply_backends(device)
    net = fast.model(make_supernet(s, data).to(device))
    costs = None
    if s.algorithm == "snas" and s.resource_lambda > 0:
        with torch.random.fork_rng(devices=[]):
            example = torch.zeros(1, data.channels, *data.train_x.shape[1:3], device=device)
            costs = op_costs(net, example)
    net.generator = torch.Generator(device=device).manual_seed(p.common.seed + 2)
    train_loader, valid_loader = search_loaders(s, data, device, p.common.seed)
    w_opt, scheduler = sgd_cosine(net.weight_parameters(), s)
    a_opt = arch_optimizer(s, net.arch_parameters())
    steps = SearchSteps(s, fast, device, net, w_opt, scheduler, a_opt, costs)
    schedule = steps.schedule
    stateful = {
        **steps.stateful(),
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
    )  # fmt: skip
    state = run.load()
    # A progressive DrNAS run resumed in a later stage: rebuild that stage's network first.
    for stage in range(1, (state or {}).get("stage", 0) + 1):
        steps.advance(stage, data, stateful)
    run.restore(state)

    def one_epoch(epoch: int) -> dict:
        if schedule.starts_stage(epoch) and not run.mid_epoch:
            steps.advance(schedule.stage_of(epoch), data, stateful)
        net = steps.net
        if s.tau_schedule == "snas":
            tau = snas_temperature(epoch, s.epochs, s.tau_max, s.tau_min)
        else:
            tau = tau_at(epoch, s.epochs, s.tau_max, s.tau_min, s.tau_schedule)
        net.set_drop_prob(s.drop_path)  # constant, as SNAS (docs/protocols.md)
        lr = steps.w_opt.param_groups[0]["lr"]
        net.train()
        sums, n_train, n_valid = search_epoch(
            run, steps, epoch, tau, p.common.seed, train_loader, valid_loader
        )
        current = net.derive()
        values = {"tau": tau, "lr": lr, **mean_values(sums, n_train, n_valid)}
        values.update(arch_values(current))
        if bench is not None:  # the current cell's recorded accuracies (AutoDL's curves)
            values.update(nb201_bench.curve_values(bench.lookup(current.arch)))
        return record_epoch(run, live_dir, epoch, values, current)

    run.run(one_epoch, functools.partial(replay_log, run, live_dir))
    summary = run.log[0][-1]["values"]
    genotype = steps.net.derive()
    metrics = {
        "valid_acc": summary["acc/valid"],
        "valid_loss": summary["loss/valid"],
        "train_acc": summary["acc/train"],
        "train_loss": summary["loss/train"],
        **arch_summary(summary, s.epochs),
        "genotype_params": genotype_params(genotype, data),
        **({"benchmark": nb201_bench.metrics_row(bench.lookup(genotype.arch))} if bench else {}),
        "cost": run_cost(run, device),
    }
    return SearchResult(genotype=genotype, metrics=metrics)


def record_epoch(run: EpochRunner, live_dir, epoch: int, values: dict, current: Genotype) -> dict:
    """Log a search epoch (both search loops): its values to 6 significant digits, as in the
    JSON outputs, the op probabilities and the genotype derived after it."""
    history, prob_rows = run.log
    values = round_floats(values)
    prob_rows.extend(arch_prob_rows(epoch, current))
    history.append({"epoch": epoch, "values": values, "genotype": current.brief()})
    log_epoch(run.live, values, epoch, prob_rows)
    write_genotype_log(live_dir, history)
    return values


def replay_log(run: EpochRunner, live_dir, live: Live) -> None:
    """A resumed search's log, logged again: the same files as an uninterrupted run."""
    history, prob_rows = run.log
    for past in history:
        log_epoch(live, past["values"], past["epoch"], prob_rows)
    write_genotype_log(live_dir, history)


def arch_summary(summary: dict, epochs: int) -> dict:
    """The metrics both searches take from their last epoch's architecture values."""
    return {
        "final_tau": summary["tau"],
        "arch_entropy": summary["arch/entropy"],
        "arch_top_prob": summary["arch/top_prob"],
        "epochs": epochs,
    }


def mean_values(sums: list[float], n_train: int, n_valid: int) -> dict[str, float]:
    """An epoch's mean losses and accuracies (percent) from its sums."""
    loss_t, correct_t, loss_v, correct_v = sums
    return {
        "loss/train": loss_t / n_train,
        "acc/train": 100.0 * correct_t / n_train,
        "loss/valid": loss_v / n_valid,
        "acc/valid": 100.0 * correct_v / n_valid,
    }


def run_cost(run: EpochRunner, device: torch.device) -> dict:
    """Measurements of a run, not results: they differ between runs and machines."""
    seconds = run.seconds
    return {
        "seconds_per_epoch": round_floats(sum(seconds) / max(len(seconds), 1)),
        "peak_memory_mb": round_floats(peak_memory_mb(device)),
    }


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the peak of memory allocated by tensors; CPU: the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def log_epoch(live: Live, values: dict, epoch: int, prob_rows: list[dict]) -> None:
    """One epoch's values and the op probabilities so far, to dvclive (search loops)."""
    for name, value in values.items():
        live.log_metric(name, value)
    rows = [r for r in prob_rows if r["epoch"] <= epoch]
    live.log_plot("arch_probs", rows, x="epoch", y="prob", template="linear")
    live.next_step()


def arch_values(genotype: Genotype) -> dict[str, float]:
    """The per-epoch summary of the op distributions (Genotype.prob_stats), as dvclive
    metrics `arch/entropy` and `arch/top_prob`."""
    return {f"arch/{k}": v for k, v in genotype.prob_stats().items()}


def write_genotype_log(live_dir: str | Path, history: list[dict]) -> None:
    """`genotypes.json` in the dvclive directory: the genotype derived after every epoch, one
    line per cell (as AutoDL and NASLib log it), to see when the architecture settles."""
    if dist.is_main():
        rows = [{"epoch": h["epoch"], **h["genotype"]} for h in history if "genotype" in h]
        write_json(Path(live_dir) / "genotypes.json", rows)


def arch_prob_rows(epoch: int, genotype: Genotype) -> list[dict]:
    """One row per cell type, edge and op: the op's probability after `epoch`."""
    rows = []
    for cell, edges in genotype.probs.items():
        for edge, ops in edges.items():
            for op, prob in ops.items():
                rows.append(
                    {
                        "epoch": epoch,
                        "cell": cell,
                        "edge": edge,
                        "op": op,
                        "prob": round_floats(prob),
                    }
                )
    return rows
