"""Retraining a recurrent cell as a language model (docs/algorithms.md#rnn-retraining): the
awd-lstm-lm recipe the GDAS and DARTS papers use.

- Model: `dnas.models.rnn_lm` (tied embedding and decoder, embedding / input / hidden / output
  dropouts with masks shared across time steps).
- Every step: a sequence length from variable BPTT (bptt, halved with probability 0.05,
  normal noise of `seq_std`, at least 5, at most bptt + `max_seq_delta`), the LR scaled by
  seq_len / bptt for that step, loss = cross-entropy + AR + TAR, gradient norm clipped to
  `grad_clip`, SGD with weight decay. The hidden state is carried (detached) across the
  segments of an epoch and reset at its start.
- After every epoch the validation loss (batch `eval_batch_size`) decides three things: the
  best weights so far (the saved model, as the papers keep the best validation checkpoint);
  and, while still on SGD, the NT-ASGD switch (`nt_asgd_switch`). After the switch the
  weights are updated as before (ASGD with t0 = 0 and lambd = 0 is SGD) and their running
  average since the switch is what is evaluated and saved. Unlike torch.optim.ASGD, whose
  step size lags the per-step LR by one step, the average here uses each step's own LR.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from dnas.checkpoint import GeneratorState, run_fingerprint
from dnas.config import Params
from dnas.data.text import TextPrepared
from dnas.data.tokens import get_batch, sequence_length, token_stream
from dnas.evaluate import evaluate_lm
from dnas.io import round_floats
from dnas.models import build_model
from dnas.models.rnn_lm import BUILD_KEYS, RNNLanguageModel, lm_loss
from dnas.optim import weight_sgd
from dnas.runner import EpochRunner, log_values, to_cpu
from dnas.runtime import seed_everything
from dnas.spaces.genotype import Genotype


def nt_asgd_switch(
    previous: list[float], val_loss: float, nonmono: int, rule: str = "gdas"
) -> bool:
    """Whether to switch from SGD to averaged SGD after an evaluation with `val_loss`, given
    the validation losses of the earlier SGD evaluations (`previous`, oldest first).

    Both rules (docs/algorithms.md#nt-asgd) wait for more than `nonmono` earlier evaluations.
    gdas: switch when val_loss > min(previous). darts (awd-lstm-lm):
    val_loss > min(previous[:-nonmono]), i.e. no better than the best of the evaluations before
    the last `nonmono`."""
    if len(previous) <= nonmono:
        return False
    reference = previous if rule == "gdas" else previous[:-nonmono]
    return val_loss > min(reference)


class ParamAverage:
    """The running mean of parameters since `start()` (ASGD's average, t0 = 0)."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.active = False
        self.n = 0
        self.ax: list[torch.Tensor] = []

    def start(self) -> None:
        self.active, self.n = True, 0
        self.ax = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        if not self.active:
            return
        self.n += 1
        for a, p in zip(self.ax, self.params):
            a.add_(p - a, alpha=1.0 / self.n)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the parameters for the block (a no-op before the switch)."""
        if not self.active:
            yield
            return
        saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, a in zip(self.params, self.ax):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)

    def state_dict(self) -> dict:
        return {"active": self.active, "n": self.n, "ax": [a.cpu() for a in self.ax]}

    def load_state_dict(self, state: dict) -> None:
        self.active, self.n = bool(state["active"]), int(state["n"])
        device = self.params[0].device
        self.ax = [a.to(device) for a in state["ax"]]


def lm_config(p: Params, vocab_size: int) -> dict:
    """What the model file holds besides the weights: the build keys and the evaluation
    settings the evaluate stage uses."""
    r = p.train.rnn
    config = {k: getattr(r, k) for k in BUILD_KEYS if k != "vocab_size"}
    config.update(
        vocab_size=vocab_size,
        bptt=r.bptt,
        eval_batch_size=r.eval_batch_size,
        test_batch_size=r.test_batch_size,
    )
    return config


def run_lm_train(
    p: Params,
    genotype: Genotype,
    data: TextPrepared,
    device: torch.device,
    live_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
) -> tuple[RNNLanguageModel, dict, dict]:
    """Train the language model of a recurrent genotype; return (model with the best
    validation weights, its config, metrics). Checkpoints and resume as the CNN retraining."""
    t, r = p.train, p.train.rnn
    seed_everything(p.common.seed)
    config = lm_config(p, data.vocab_size)
    model = build_model(genotype, config).to(device)
    params = list(model.parameters())
    lengths = torch.Generator().manual_seed(p.common.seed + 1)
    train = token_stream(data, "train", t.batch_size, device)
    valid = token_stream(data, "valid", r.eval_batch_size, device)
    opt = weight_sgd(params, t, momentum=False)  # awd-lstm-lm: plain SGD, then NT-ASGD
    average = ParamAverage(params)
    best = {"state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    run = EpochRunner(
        "train", t.epochs, device, "train.lr", live_dir, checkpoint_dir, p.common.checkpoint_every,
        run_fingerprint(p, "train", data.card["sha256"], genotype.to_json()["cells"]),
        {"model": model, "opt": opt, "average": average, "lengths": GeneratorState(lengths)},
        log={"history": [], "sgd_losses": [], "best_loss": math.inf, "best_epoch": 0, "asgd": 0},
        extra=lambda epoch: {"best_state": {k: v.cpu() for k, v in best["state"].items()}},
        steps=math.ceil((train.shape[0] - 2) / r.bptt),  # about: sequence lengths vary
    )  # fmt: skip
    state = run.resume()
    if state is not None:
        best["state"] = {k: v.to(device) for k, v in state["best_state"].items()}

    def one_epoch(epoch: int) -> dict:
        log = run.log
        model.train()
        train_loss = lm_epoch(run, p, model, opt, average, lengths, epoch, train)
        with average.applied():
            val_loss = evaluate_lm(model, valid, r.bptt)
            if val_loss < log["best_loss"]:
                log["best_loss"], log["best_epoch"] = val_loss, epoch + 1
                best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if r.asgd and not average.active:
            if nt_asgd_switch(log["sgd_losses"], val_loss, r.nonmono, r.switch_rule):
                average.start()
                log["asgd"] = epoch + 1  # averaging from the next epoch on
            log["sgd_losses"].append(val_loss)
        values = round_floats(
            {
                "lr": t.lr,
                "loss/train": train_loss,
                "ppl/train": math.exp(train_loss),
                "loss/valid": val_loss,
                "ppl/valid": math.exp(val_loss),
                "asgd": int(average.active),
            }
        )
        log["history"].append(values)
        log_values(run.live, values)
        return values

    run.run(one_epoch, lambda live: [log_values(live, past) for past in run.log["history"]])
    model.load_state_dict(best["state"])
    log = run.log
    final = log["history"][-1]
    metrics = {
        "train_loss": final["loss/train"],
        "train_ppl": final["ppl/train"],
        "valid_loss": round_floats(log["best_loss"]),
        "valid_ppl": round_floats(math.exp(log["best_loss"])),
        "best_epoch": log["best_epoch"],
        "asgd_epoch": log["asgd"],  # the epoch after which averaging began; 0 = never
        "epochs": t.epochs,
    }
    return model, config, metrics


def lm_epoch(run: EpochRunner, p: Params, model, opt, average, lengths, epoch: int, train) -> float:
    """The steps of one epoch (module docstring); the mean training loss."""
    t, r = p.train, p.train.rnn

    def fresh():
        hidden = model.init_hidden(t.batch_size).cpu()
        return {"i": 0, "hidden": hidden, "sums": torch.zeros(1, dtype=torch.float64), "n": 0}

    state = run.begin_epoch(fresh)
    i, n = state["i"], state["n"]
    hidden = state["hidden"].to(train.device)
    sums = state["sums"].to(train.device)
    while i < train.shape[0] - 2:
        seq_len = sequence_length(lengths, r.bptt, r.seq_std, r.max_seq_delta)
        opt.param_groups[0]["lr"] = t.lr * seq_len / r.bptt
        x, y = get_batch(train, i, seq_len)
        opt.zero_grad(set_to_none=True)
        loss, raw_loss, hidden = lm_loss(model, x, y, hidden, r.alpha, r.beta)
        loss.backward()
        if t.grad_clip > 0:
            nn.utils.clip_grad_norm_(average.params, t.grad_clip)
        opt.step()
        average.update()
        hidden = hidden.detach()
        run.guard.observe(raw_loss)
        sums += raw_loss.detach().double() * y.numel()
        n += y.numel()
        i += seq_len
        partial = {"i": i, "n": n, "hidden": hidden, "sums": sums}
        run.step_done(epoch, lambda partial=partial: to_cpu(partial))
    opt.param_groups[0]["lr"] = t.lr
    run.end_epoch(epoch)
    return sums.item() / n
