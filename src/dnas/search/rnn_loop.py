"""The recurrent-cell search loop (docs/algorithms.md#rnn-search): `search.space: rnn` on a text
corpus.

Each iteration draws a sequence length (variable BPTT, `dnas.models.rnn_lm.sequence_length`),
scales the weight LR by seq_len / bptt, and takes

1. an architecture step on the batch of the **valid** split at position i % (len - 1), of the
   fixed length `bptt` (not the sampled one), as DARTS and the GDAS RNN code do: the gradient of
   the validation cross-entropy w.r.t. alpha, first order or DARTS's unrolled second order
   (`dnas.search.rnn.unrolled_arch_grad`), then Adam. The alpha gradients are **zeroed before
   every architecture step** and the weight step does not reach alpha. (The GDAS RNN code calls
   `step()` where `zero_grad()` belongs, so its alpha gradients pile up over the whole search,
   training-loss gradients included, "Bug not copied" in docs/algorithms.md#rnn-search; that is not
   reproduced.)
2. a weight step on the training batch: cross-entropy + AR + TAR, plain SGD with weight decay,
   the gradient norm clipped to `grad_clip` (0.25 in the papers). No NT-ASGD during search.

Arch step first, then weights, as DARTS's RNN search (its CNN counterpart's `step_order` does
not apply). The hidden states of both streams are carried across batches (detached) and reset
every epoch. Each forward pass draws its own architecture sample. tau decays per epoch as in
the CNN search (`dnas.search.gdas.tau_at`, `search.tau_schedule`). The logged valid loss is
that of the architecture steps (sampled architectures, as the CNN search reports it).
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path

import torch

from dnas.checkpoint import Checkpointer, GeneratorState, capture, fingerprint, stop_on_signals
from dnas.config import Params
from dnas.data.text import TextPrepared
from dnas.io import round_floats
from dnas.models.rnn_lm import (
    batchify,
    build_lm,
    count_lm_parameters,
    get_batch,
    lm_loss,
    sequence_length,
)
from dnas.runtime import EpochProgress, FiniteLossGuard, seed_everything
from dnas.search.gdas import tau_at
from dnas.search.loop import (
    SearchResult,
    arch_prob_rows,
    arch_values,
    log_epoch,
    peak_memory_mb,
    write_genotype_log,
)
from dnas.search.rnn import RNNSupernet, first_order, unrolled_arch_grad
from dnas.spaces.genotype import Genotype
from dvclive import Live

# emsize = nhid of the PTB retraining (docs/algorithms.md#rnn-retraining): genotype_params
PAPER_SIZE = 850


def make_rnn_supernet(p: Params, vocab_size: int) -> RNNSupernet:
    s, r = p.search, p.search.rnn
    mode = "darts" if s.algorithm == "darts" else r.gumbel
    dropouts = {k: getattr(r, k) for k in ("dropout", "dropouth", "dropoutx", "dropouti")}
    return RNNSupernet(vocab_size, r.emsize, r.nhid, mode, dropoute=r.dropoute, **dropouts)


def genotype_params(genotype: Genotype, vocab_size: int) -> int:
    """Parameters of the derived language model at the papers' size (850, this vocabulary)."""
    config = dict.fromkeys(("dropout", "dropouth", "dropoutx", "dropouti", "dropoute"), 0.0)
    config.update(vocab_size=vocab_size, emsize=PAPER_SIZE, nhid=PAPER_SIZE)
    with torch.device("meta"):
        model = build_lm(genotype, config)
    return count_lm_parameters(model)


def run_rnn_search(
    p: Params,
    data: TextPrepared,
    device: torch.device,
    live_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
) -> SearchResult:
    """Search a recurrent cell; checkpoints and resume as the CNN search (dnas.checkpoint)."""
    s, r = p.search, p.search.rnn
    seed_everything(p.common.seed)
    net = make_rnn_supernet(p, data.vocab_size).to(device)
    net.cell.generator = torch.Generator(device=device).manual_seed(p.common.seed + 2)
    lengths = torch.Generator().manual_seed(p.common.seed + 1)
    train = batchify(data.train, s.batch_size, device)
    valid = batchify(data.valid, s.batch_size, device)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=s.lr, weight_decay=s.weight_decay)
    a_opt = torch.optim.Adam(
        net.arch_parameters(),
        lr=s.arch_lr,
        betas=tuple(s.arch_betas),
        weight_decay=s.arch_weight_decay,
    )
    guard = FiniteLossGuard(device, "search", "search.lr or search.arch_lr")
    history: list[dict] = []
    prob_rows: list[dict] = []
    epoch_state = None
    start = 0
    stateful = {
        "model": net,
        "w_opt": w_opt,
        "a_opt": a_opt,
        "gumbel": GeneratorState(net.cell.generator),
        "lengths": GeneratorState(lengths),
    }
    checkpointer = Checkpointer(
        checkpoint_dir,
        fingerprint(p.common.seed, s.model_dump(), r.model_dump(), data.card["sha256"]),
        p.common.checkpoint_every,
    )
    state = checkpointer.resume(stateful, "search")
    if state is not None:
        history, prob_rows = json.loads(state["log"])
        start, epoch_state = state["epoch"], state["epoch_state"]

    def snapshot(epoch: int, partial) -> dict:
        log = json.dumps([history, prob_rows])
        return {**capture(stateful), "log": log, "epoch": epoch, "epoch_state": partial}

    def arch_step(xt, yt, ht, xv, yv, hv, eta):
        a_opt.zero_grad(set_to_none=True)  # every step (the GDAS RNN code never did, see above)
        net.cell.detach_alpha = False
        if s.order == 2:
            grads, loss, hv = unrolled_arch_grad(
                net, (xt, yt, ht), (xv, yv, hv), eta, s.weight_decay, s.grad_clip, tau
            )
        else:
            grads, loss, hv = first_order(net, xv, yv, hv, tau)
        for a, g in zip(net.arch_parameters(), grads):
            a.grad = g
        a_opt.step()
        return loss, hv.detach()

    def weight_step(xt, yt, ht):
        net.cell.detach_alpha = True
        w_opt.zero_grad(set_to_none=True)
        loss, raw_loss, ht = lm_loss(net, xt, yt, ht, r.alpha, r.beta, tau)
        loss.backward()
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.weight_parameters(), s.grad_clip)
        w_opt.step()
        return raw_loss.detach(), ht.detach()

    seconds: list[float] = []
    with (
        Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live,
        stop_on_signals() as stop,
    ):
        for past in history:
            log_epoch(live, past["values"], past["epoch"], prob_rows)
        write_genotype_log(live_dir, history)
        progress = EpochProgress(s.epochs, "search", start=start)
        for epoch in progress:
            began = time.perf_counter()
            tau = tau_at(epoch, s.epochs, s.tau_max, s.tau_min, s.tau_schedule)
            net.train()
            if epoch_state is None:
                hidden = net.init_hidden(s.batch_size)
                epoch_state = {
                    "i": 0,
                    "hidden": hidden,
                    "hidden_valid": hidden.clone(),
                    "sums": torch.zeros(2, dtype=torch.float64),
                    "n": [0, 0],
                }
                guard.reset()
            else:
                guard.load_state_dict(epoch_state["guard"])
            i = epoch_state["i"]
            ht = epoch_state["hidden"].to(device)
            hv = epoch_state["hidden_valid"].to(device)
            sums = epoch_state["sums"].to(device)  # loss * tokens (train, valid)
            n_t, n_v = epoch_state["n"]
            while i < train.shape[0] - 2:
                seq_len = sequence_length(lengths, r.bptt, r.seq_std, r.max_seq_delta)
                eta = s.lr * seq_len / r.bptt
                w_opt.param_groups[0]["lr"] = eta
                xv, yv = get_batch(valid, i % (valid.shape[0] - 1), r.bptt)
                xt, yt = get_batch(train, i, seq_len)
                lv, hv = arch_step(xt, yt, ht, xv, yv, hv, eta)
                lt, ht = weight_step(xt, yt, ht)
                guard.observe(lt, lv)
                sums += torch.stack([lt * yt.numel(), lv * yv.numel()]).double()
                n_t, n_v = n_t + yt.numel(), n_v + yv.numel()
                i += seq_len
                if stop:
                    partial = {
                        "i": i,
                        "hidden": ht.cpu(),
                        "hidden_valid": hv.cpu(),
                        "sums": sums.cpu(),
                        "n": [n_t, n_v],
                        "guard": guard.state_dict(),
                    }
                    raise checkpointer.interrupt(functools.partial(snapshot, epoch, partial))
            w_opt.param_groups[0]["lr"] = s.lr
            guard.check(epoch)
            loss_t, loss_v = sums.tolist()
            values = {
                "tau": tau,
                "lr": s.lr,
                "loss/train": loss_t / n_t,
                "ppl/train": math.exp(loss_t / n_t),
                "loss/valid": loss_v / n_v,
                "ppl/valid": math.exp(loss_v / n_v),
            }
            current = net.derive(r.keep_none)
            values.update(arch_values(current))
            values = round_floats(values)
            prob_rows.extend(arch_prob_rows(epoch, current))
            history.append({"epoch": epoch, "values": values, "genotype": current.brief()})
            log_epoch(live, values, epoch, prob_rows)
            write_genotype_log(live_dir, history)
            progress.report(epoch, values)
            epoch_state = None
            checkpointer.after_epoch(epoch, s.epochs, functools.partial(snapshot, epoch + 1, None))
            seconds.append(time.perf_counter() - began)
    summary = history[-1]["values"]
    genotype = net.derive(r.keep_none)
    metrics = {
        "valid_loss": summary["loss/valid"],
        "valid_ppl": summary["ppl/valid"],
        "train_loss": summary["loss/train"],
        "train_ppl": summary["ppl/train"],
        "final_tau": summary["tau"],
        "arch_entropy": summary["arch/entropy"],
        "arch_top_prob": summary["arch/top_prob"],
        "epochs": s.epochs,
        "genotype_params": genotype_params(genotype, data.vocab_size),
        "cost": {
            "seconds_per_epoch": round_floats(sum(seconds) / max(len(seconds), 1)),
            "peak_memory_mb": round_floats(peak_memory_mb(device)),
        },
    }
    return SearchResult(genotype=genotype, metrics=metrics)
