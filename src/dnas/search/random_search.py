"""Random search with weight sharing (`search.algorithm: random`; Li & Talwalkar, UAI 2019, as
AutoDL's RANDOM-NAS ran it for NAS-Bench-201's RSPS row; docs/algorithms.md#random-search).

The baseline a differentiable search has to beat at the same budget. It has two phases:

1. **Uniform single-path training.** Each weight step draws one architecture uniformly at
   random (`Supernet.random_arch`) and trains the shared weights of the supernet on it: SGD with the
   search's momentum, weight decay, cosine schedule and gradient clipping, one search-train
   batch per step (`dnas.search.steps.weight_step`). Only the drawn ops run. There are no
   architecture parameters to learn and no architecture step.
2. **Selection.** After the last epoch, `search.random_samples` architectures drawn the same
   way are scored with the shared weights (network in evaluation mode): the top-1 accuracy on
   the next `search.random_score_batches` batches of search-valid (0 = the whole split), each
   architecture on its own batches as the authors' loops take them. With
   `search.random_finalists` k > 0 the k best are scored again on the whole search-valid split
   (Li & Talwalkar's second round). The best score wins, the first drawn on a tie.

A drawn architecture is a uniformly random cell of the space, the same distribution as
`train.genotype: random` (`dnas.spaces.published.random_genotype`):

- nb201: each of the 6 edges one of the 5 ops, 'none' included (AutoDL's `random_genotype`);
- darts: every node 2 distinct inputs, each pair equally likely, each an op uniform over the 7
  ops other than 'none'; the node's other edges are off. Li & Talwalkar's sampler also draws
  'none' for a chosen input (docs/algorithms.md#random-search).

The draws come from a generator of their own (seeded from `common.seed`, saved in
checkpoints), so a run is the same for the same seed and resumes exactly. The op
probabilities recorded for the plots are the sampler's: each op's marginal probability per
edge under uniform sampling, the same every epoch (nb201: 1/5; darts: 1 - 2/n for 'none' on an
edge into a node with n inputs, (2/n)/7 for every other op).

Each epoch logs the train loss and accuracy of the drawn architectures and the valid loss and
accuracy of one pass over search-valid with a new draw per batch (AutoDL's `valid_func`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dnas import distributed as dist
from dnas.benchmarks import nb201 as nb201_bench
from dnas.checkpoint import GeneratorState, run_fingerprint
from dnas.config import Params, Search
from dnas.data import Prepared
from dnas.data.loader import split_loader
from dnas.evaluate import genotype_params
from dnas.io import round_floats
from dnas.optim import sgd_cosine
from dnas.runner import EpochRunner
from dnas.runtime import FastPath, seed_everything
from dnas.search.algorithm import Algorithm, Draw
from dnas.search.record import (
    SearchResult,
    arch_prob_rows,
    arch_values,
    log_epoch,
    replay_log,
    run_cost,
    write_genotype_log,
)
from dnas.search.steps import SearchState, StepContext, weight_step
from dnas.search.supernet import Arch, Supernet, supernet_for
from dnas.spaces.genotype import Genotype

ARCH_STREAM = 3  # the architectures' generator: common.seed + 3 (the Gumbel one is + 2)


class RandomSearch(Algorithm):
    name = "random"

    def draw(self, net, tau, detach_alpha) -> list[Draw]:
        return net.fixed_draws()  # the architecture `set_arch` gave

    @classmethod
    def run(cls, p, data, device, live_dir, checkpoint_dir=None):
        return run_random_search(p, data, device, live_dir, checkpoint_dir)


def best_index(scores: list[float]) -> int:
    """The best score's index, the first on a tie (as numpy's argmax, AutoDL's choice)."""
    return int(np.argmax(np.asarray(scores, dtype=np.float64)))


def score(net: Supernet, arch: Arch, batches, fast: FastPath, device) -> tuple[float, float, int]:
    """(summed cross-entropy, correct, examples) of `arch` with the shared weights over
    `batches` (whole batches: every rank scores the same ones)."""
    net.set_arch(arch)
    loss = correct = 0.0
    n = 0
    with torch.no_grad():
        for x, y in batches:
            with fast.autocast(device):
                logits = net(fast.inputs(x))
            loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += float((logits.argmax(1) == y).sum())
            n += len(y)
    return loss, correct, n


def select(net: Supernet, gen: torch.Generator, valid, whole, s: Search, fast, device) -> dict:
    """The selection phase (module doc): the winning architecture and the scores. `valid`
    streams search-valid batches (`next_batch`), `whole` is one pass over the split."""
    net.eval()
    archs, scores = [], []
    for _ in range(s.random_samples):
        arch = net.random_arch(gen)
        if s.random_score_batches:
            batches = [valid.next_batch() for _ in range(s.random_score_batches)]
        else:
            batches = whole
        _, correct, n = score(net, arch, batches, fast, device)
        archs.append(arch)
        scores.append(100.0 * correct / n)
    candidates = list(range(len(archs)))
    final = scores
    if s.random_finalists:
        # The best k by their first score (a stable sort: the first drawn on a tie).
        candidates = sorted(candidates, key=lambda i: -scores[i])[: s.random_finalists]
        final = []
        for i in candidates:
            _, correct, n = score(net, archs[i], whole, fast, device)
            final.append(100.0 * correct / n)
    win = candidates[best_index(final)]
    net.train()
    return {
        "arch": archs[win],
        "score": final[best_index(final)],
        "scores": scores,
        "mean_score": float(np.mean(scores)),
    }


def random_valid_pass(net: Supernet, gen: torch.Generator, valid, fast, device) -> dict:
    """One pass over search-valid, a new architecture per batch (evaluation mode)."""
    net.eval()
    loss = correct = 0.0
    n = 0
    for x, y in valid:
        dl, dc, dn = score(net, net.random_arch(gen), [(x, y)], fast, device)
        loss, correct, n = loss + dl, correct + dc, n + dn
    net.train()
    return {"loss/valid": loss / max(n, 1), "acc/valid": 100.0 * correct / max(n, 1)}


def run_random_search(
    p: Params,
    data: Prepared,
    device: torch.device,
    live_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
) -> SearchResult:
    """Random search with weight sharing; checkpoints and resumes as the other searches."""
    s = p.search
    bench = nb201_bench.Benchmark.open(s.benchmark) if s.benchmark else None  # fails early
    seed = p.common.seed
    seed_everything(seed)
    fast = FastPath.resolve(p.common, device)
    fast.apply_backends(device)
    net = fast.model(supernet_for(s, data, RandomSearch).to(device))
    gen = torch.Generator().manual_seed(seed + ARCH_STREAM)
    kw = {"augment": s.augment, "shuffle": True}
    train = split_loader(data, "search_train", s.batch_size, device, seed=seed, **kw)
    # Scoring reads search-valid without augmentation, shuffled (AutoDL's valid loader).
    valid = split_loader(data, "search_valid", s.batch_size, device, seed=seed + 1, shuffle=True)
    whole = split_loader(data, "search_valid", s.batch_size, device)  # whole passes, in order
    w_opt, scheduler = sgd_cosine(net.weight_parameters(), s)
    st = SearchState(net, w_opt, scheduler, None)
    ctx = StepContext.of(s, fast, device, net.algorithm)
    stateful = {
        "model": net,
        "w_opt": w_opt,
        "scheduler": scheduler,
        "architectures": GeneratorState(gen),
        "train_loader": train,
        "valid_loader": valid,
    }
    run = EpochRunner(
        "search", s.epochs, device, "search.lr", live_dir, checkpoint_dir,
        p.common.checkpoint_every,
        run_fingerprint(p, "search", data.card["sha256"], leave_out={"benchmark"}),
        stateful,
        log=[[], []],  # the values logged per epoch (the selection with the last), the op probs
    )  # fmt: skip
    run.resume()
    uniform = Genotype(net.space, {}, probs=net.uniform_probs())

    def one_epoch(epoch: int) -> dict:
        lr = w_opt.param_groups[0]["lr"]
        net.train()
        state = run.begin_epoch(lambda: {"sums": torch.zeros(2, dtype=torch.float64), "n": 0})
        sums, n_train = state["sums"].to(device), state["n"]
        for batch in dist.shards(train):
            net.set_arch(net.random_arch(gen))
            loss, batch_sums = weight_step(st, ctx, batch, None, (seed, epoch, run.guard.step))
            run.guard.observe(loss)
            sums += batch_sums
            n_train += batch.n
            run.step_done(
                epoch,
                lambda sums=sums, n=n_train: {"sums": dist.all_reduce_sum(sums).cpu(), "n": n},
            )
        scheduler.step()
        run.end_epoch(epoch)
        loss_t, correct_t = dist.all_reduce_sum(sums).tolist()
        dist.broadcast_buffers(net)
        values = {
            "lr": lr,
            "loss/train": loss_t / n_train,
            "acc/train": 100.0 * correct_t / n_train,
            **random_valid_pass(net, gen, whole, fast, device),
            **arch_values(uniform),
        }
        chosen = None
        if epoch == s.epochs - 1:
            chosen = select(net, gen, valid, whole, s, fast, device)
            values["select/best_acc"] = chosen["score"]
            values["select/mean_acc"] = chosen["mean_score"]
            if bench is not None:
                found = net.arch_genotype(chosen["arch"]).arch
                values.update(nb201_bench.curve_values(bench.lookup(found)))
        return record(run, live_dir, epoch, values, uniform, chosen and chosen["arch"])

    run.run(one_epoch, lambda live: replay_log(run, live_dir, live))
    genotype = net.arch_genotype(run.log[0][-1]["arch"])
    summary = run.log[0][-1]["values"]
    metrics = {
        "valid_acc": summary["acc/valid"],
        "valid_loss": summary["loss/valid"],
        "train_acc": summary["acc/train"],
        "train_loss": summary["loss/train"],
        "select_best_acc": summary["select/best_acc"],
        "select_mean_acc": summary["select/mean_acc"],
        "arch_samples": s.random_samples,
        "arch_entropy": summary["arch/entropy"],
        "arch_top_prob": summary["arch/top_prob"],
        "epochs": s.epochs,
        "genotype_params": genotype_params(genotype, data),
        "cost": run_cost(run, device),
    }
    if bench is not None:
        metrics["benchmark"] = nb201_bench.metrics_row(bench.lookup(genotype.arch))
    return SearchResult(genotype=genotype, metrics=metrics)


def record(run: EpochRunner, live_dir, epoch: int, values: dict, uniform, arch) -> dict:
    """Log an epoch as `dnas.search.record.record_epoch` does; the last epoch's entry also
    holds the selected architecture (`arch`), which the genotype log shows (no other epoch
    selects one). The entries are saved in checkpoints, so a resumed run finds it."""
    history, prob_rows = run.log
    values = round_floats(values)
    prob_rows.extend(arch_prob_rows(epoch, uniform))
    entry = {"epoch": epoch, "values": values}
    if arch is not None:
        entry["arch"] = arch
        entry["genotype"] = run.stateful["model"].arch_genotype(arch).brief()
    history.append(entry)
    log_epoch(run.live, values, epoch, prob_rows)
    write_genotype_log(live_dir, history)
    return values
