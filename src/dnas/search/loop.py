"""The GDAS search loop: alternating weight and architecture steps (reference §1.4).

Weights: SGD with momentum, weight decay and cosine annealing per epoch, gradient norm
clipped (weights only, as the CVPR code), on search-train batches. Architecture: Adam
(lr 3e-4, betas (0.5, 0.999), weight decay 1e-3 by default) on search-valid batches. Each step
draws its own architecture sample. tau decays linearly from tau_max to tau_min, reaching it at
the last epoch. The reported search-valid accuracy is that of the sampled architectures on the
architecture-step batches, as AutoDL reports it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dnas.checkpoint import (
    Checkpointer,
    GeneratorState,
    capture,
    fingerprint,
    stop_on_signals,
)
from dnas.config import Params, Search
from dnas.data import Prepared
from dnas.data.loader import split_loader
from dnas.io import round_floats
from dnas.optim import sgd_cosine
from dnas.runtime import EpochProgress, FiniteLossGuard, seed_everything
from dnas.search.gdas import tau_at
from dnas.search.supernet import Supernet, build_supernet
from dnas.spaces.genotype import Genotype
from dvclive import Live


@dataclass
class SearchResult:
    genotype: Genotype
    metrics: dict


def make_supernet(s: Search, data: Prepared) -> Supernet:
    net = build_supernet(s.space, data.channels, data.num_classes, s.channels, s.layers)
    net.sample_per = s.sample_per
    net.unselected_grad = (s.space == "nb201") if s.unselected_grad == "auto" else s.unselected_grad
    return net


def search_loaders(s: Search, data: Prepared, device, seed: int):
    kw = {"augment": s.augment, "shuffle": True}
    train = split_loader(data, "search_train", s.batch_size, device, seed=seed, **kw)
    valid = split_loader(data, "search_valid", s.batch_size, device, seed=seed + 1, **kw)
    return train, valid


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
    seed_everything(p.common.seed)
    net = make_supernet(s, data).to(device)
    net.generator = torch.Generator(device=device).manual_seed(p.common.seed + 2)
    train_loader, valid_loader = search_loaders(s, data, device, p.common.seed)
    w_opt, scheduler = sgd_cosine(net.weight_parameters(), s)
    a_opt = torch.optim.Adam(
        net.arch_parameters(),
        lr=s.arch_lr,
        betas=tuple(s.arch_betas),
        weight_decay=s.arch_weight_decay,
    )
    weights = net.weight_parameters()

    def weight_step(x, y):
        w_opt.zero_grad(set_to_none=True)
        logits = net(x, detach_alpha=True)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(weights, s.grad_clip)
        w_opt.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def arch_step(x, y):
        a_opt.zero_grad(set_to_none=True)
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        a_opt.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    guard = FiniteLossGuard(device, "search", "search.lr or search.arch_lr")
    history: list[dict] = []  # the values logged per epoch
    prob_rows: list[dict] = []
    epoch_state = None  # sums of an interrupted epoch
    start = 0
    stateful = {
        "model": net,
        "w_opt": w_opt,
        "scheduler": scheduler,
        "a_opt": a_opt,
        "gumbel": GeneratorState(net.generator),
        "train_loader": train_loader,
        "valid_loader": valid_loader,
    }
    checkpointer = Checkpointer(
        checkpoint_dir,
        fingerprint(p.common.seed, s.model_dump(), data.card["sha256"]),
        p.common.checkpoint_every,
    )
    state = checkpointer.resume(stateful, "search")
    if state is not None:
        history, prob_rows = json.loads(state["log"])
        start, epoch_state = state["epoch"], state["epoch_state"]

    def snapshot(epoch: int, partial) -> dict:
        log = json.dumps([history, prob_rows])
        return {**capture(stateful), "log": log, "epoch": epoch, "epoch_state": partial}

    with (
        Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live,
        stop_on_signals() as stop,
    ):
        for past in history:  # replaying a resumed run's log gives the same files
            _log(live, past["values"], past["epoch"], prob_rows)
        progress = EpochProgress(s.epochs, "search", start=start)
        for epoch in progress:
            net.tau = tau_at(epoch, s.epochs, s.tau_max, s.tau_min)
            lr = w_opt.param_groups[0]["lr"]
            net.train()
            if epoch_state is None:
                epoch_state = {"sums": torch.zeros(4, dtype=torch.float64), "n": [0, 0]}
                guard.reset()
            else:
                guard.load_state_dict(epoch_state["guard"])
            sums = epoch_state["sums"].to(device)  # loss*n, correct (train, valid)
            n_train, n_valid = epoch_state["n"]
            for xt, yt in train_loader:
                xv, yv = valid_loader.next_batch()
                if s.step_order == "weights_first":
                    lt, ct = weight_step(xt, yt)
                    lv, cv = arch_step(xv, yv)
                else:
                    lv, cv = arch_step(xv, yv)
                    lt, ct = weight_step(xt, yt)
                guard.observe(lt, lv)
                sums += torch.stack([lt * len(yt), ct, lv * len(yv), cv]).double()
                n_train += len(yt)
                n_valid += len(yv)
                if stop:
                    partial = {
                        "sums": sums.cpu(),
                        "n": [n_train, n_valid],
                        "guard": guard.state_dict(),
                    }
                    raise checkpointer.interrupt(functools.partial(snapshot, epoch, partial))
            scheduler.step()
            guard.check(epoch)
            loss_t, correct_t, loss_v, correct_v = sums.tolist()
            values = {
                "tau": net.tau,
                "lr": lr,
                "loss/train": loss_t / n_train,
                "acc/train": 100.0 * correct_t / n_train,
                "loss/valid": loss_v / n_valid,
                "acc/valid": 100.0 * correct_v / n_valid,
            }
            values = round_floats(values)  # 6 significant digits, as in the JSON outputs
            prob_rows.extend(_prob_rows(epoch, net))
            history.append({"epoch": epoch, "values": values})
            _log(live, values, epoch, prob_rows)
            progress.report(epoch, values)
            epoch_state = None
            checkpointer.after_epoch(epoch, s.epochs, functools.partial(snapshot, epoch + 1, None))
    summary = history[-1]["values"]
    genotype = net.derive()
    metrics = {
        "valid_acc": summary["acc/valid"],
        "valid_loss": summary["loss/valid"],
        "train_acc": summary["acc/train"],
        "train_loss": summary["loss/train"],
        "final_tau": summary["tau"],
        "epochs": s.epochs,
    }
    return SearchResult(genotype=genotype, metrics=metrics)


def _log(live: Live, values: dict, epoch: int, prob_rows: list[dict]) -> None:
    for name, value in values.items():
        live.log_metric(name, value)
    rows = [r for r in prob_rows if r["epoch"] <= epoch]
    live.log_plot("arch_probs", rows, x="epoch", y="prob", template="linear")
    live.next_step()


def _prob_rows(epoch: int, net: Supernet) -> list[dict]:
    rows = []
    for cell, edges in net.derive().probs.items():
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
