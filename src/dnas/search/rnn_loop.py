"""The recurrent-cell search loop (docs/algorithms.md#rnn-search): `search.space: rnn` on a text
corpus.

Each iteration draws a sequence length (variable BPTT, `dnas.data.tokens.sequence_length`),
scales the weight LR by seq_len / bptt, and takes

1. an architecture step on the batch of the **valid** split at position i % (len - 1), of the
   fixed length `bptt` (not the sampled one), as DARTS and the GDAS RNN code do: the gradient of
   the validation cross-entropy w.r.t. alpha, first order or DARTS's unrolled second order
   (`dnas.search.architect.arch_gradient` with `ClippedUnroll`, the CNN search's contract), its
   norm clipped to `arch_grad_clip` when that is set (0, off, in the papers), then the alphas'
   optimiser (`search.arch_optimizer`: Adam in the papers). The alpha gradients are **zeroed before
   every architecture step** and the weight step does not reach alpha. (The GDAS RNN code calls
   `step()` where `zero_grad()` belongs, so its alpha gradients pile up over the whole search,
   training-loss gradients included, "Bug not copied" in docs/algorithms.md#rnn-search; that is not
   reproduced.)
2. a weight step on the training batch: cross-entropy + AR + TAR, plain SGD with weight decay,
   the gradient norm clipped to `grad_clip` (0.25 in the papers). No NT-ASGD during search.
   The gradients are cleared as `search.zero_grad` says (`dnas.search.steps`): with hard
   sampling a node whose edges all drew 'none' leaves its W_i without a gradient.

Arch step first, then weights, as DARTS's RNN search (its CNN counterpart's `step_order` does
not apply). The hidden states of both streams are carried across batches (detached) and reset
every epoch. Each forward pass draws its own architecture sample. tau decays per epoch as in
the CNN search (`dnas.search.gdas.tau_at`, `search.tau_schedule`). The logged valid loss is
that of the architecture steps (sampled architectures, as the CNN search reports it).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch

from dnas.checkpoint import GeneratorState, run_fingerprint
from dnas.config import Params, Search
from dnas.data.text import TextPrepared
from dnas.data.tokens import get_batch, sequence_length, token_stream
from dnas.evaluate import genotype_params
from dnas.models.rnn_lm import DROPOUT_KEYS, lm_arch_loss, lm_loss
from dnas.optim import arch_optimizer, set_arch_lr, weight_sgd
from dnas.runner import EpochRunner, to_cpu
from dnas.runtime import seed_everything
from dnas.search import budget, record
from dnas.search.architect import ClippedUnroll, arch_gradient
from dnas.search.gdas import tau_at
from dnas.search.registry import get_algorithm
from dnas.search.rnn import RNNSupernet
from dnas.search.steps import clear_weight_grads

# metrics/search.json's entries from the last epoch's values
METRICS = {"valid_loss": "loss/valid", "valid_ppl": "ppl/valid", "train_loss": "loss/train",
           "train_ppl": "ppl/train"}  # fmt: skip


def make_rnn_supernet(
    p: Params, vocab_size: int, generator: torch.Generator | None = None
) -> RNNSupernet:
    s, r = p.search, p.search.rnn
    mode = get_algorithm(s.algorithm).rnn_mixing(r.gumbel)
    dropouts = {k: getattr(r, k) for k in DROPOUT_KEYS}
    return RNNSupernet(vocab_size, r.emsize, r.nhid, mode, generator, **dropouts)


def run_rnn_search(
    p: Params,
    data: TextPrepared,
    device: torch.device,
    live_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
) -> record.SearchResult:
    """Search a recurrent cell; checkpoints and resume as the CNN search (dnas.checkpoint)."""
    p = budget.resolve(p, data)  # search.arch_lr: auto -> a number
    s, r = p.search, p.search.rnn
    seed_everything(p.common.seed)
    gumbel = torch.Generator(device=device).manual_seed(p.common.seed + 2)
    net = make_rnn_supernet(p, data.vocab_size, gumbel).to(device)
    lengths = torch.Generator().manual_seed(p.common.seed + 1)
    train = token_stream(data, "train", s.batch_size, device)
    valid = token_stream(data, "valid", s.batch_size, device)
    w_opt = weight_sgd(net.weight_parameters(), s, momentum=False)  # awd-lstm-lm: plain SGD
    a_opt = arch_optimizer(s, net)
    stateful = {
        "model": net,
        "w_opt": w_opt,
        "a_opt": a_opt,
        "gumbel": GeneratorState(net.cell.generator),
        "lengths": GeneratorState(lengths),
    }
    run = EpochRunner(
        "search", s.epochs, device, "search.lr or search.arch_lr", live_dir, checkpoint_dir,
        p.common.checkpoint_every,
        run_fingerprint(p, "search", data.card["sha256"]),
        stateful,
        log=[[], []],  # the values logged per epoch, the op probabilities
        steps=math.ceil((train.shape[0] - 2) / r.bptt),  # about: sequence lengths vary
    )  # fmt: skip
    run.resume()

    def one_epoch(epoch: int) -> dict:
        tau = tau_at(epoch, s.epochs, s.tau_max, s.tau_min, s.tau_schedule)
        set_arch_lr(a_opt, s, epoch)  # search.arch_lr_schedule
        net.train()
        loss_t, loss_v = rnn_search_epoch(
            run, p, net, w_opt, a_opt, lengths, epoch, tau, train, valid
        )
        values = {
            "tau": tau,
            "lr": s.lr,
            "loss/train": loss_t,
            "ppl/train": math.exp(loss_t),
            "loss/valid": loss_v,
            "ppl/valid": math.exp(loss_v),
        }
        current = net.derive(r.keep_none)
        values.update(record.arch_values(current))
        return record.record_epoch(run, live_dir, epoch, values, current)

    run.run(one_epoch, functools.partial(record.replay_log, run, live_dir))
    genotype = net.derive(r.keep_none)
    size = genotype_params(genotype, data)
    uses_tau = get_algorithm(s.algorithm).uses_tau
    metrics = record.final_metrics(run, device, s.epochs, size, METRICS, uses_tau)
    metrics["arch_lr"] = s.arch_lr
    return record.SearchResult(genotype=genotype, metrics=metrics)


def rnn_arch_step(net, a_opt, s: Search, train: tuple, valid: tuple, eta: float, tau):
    """The alphas' optimiser (Adam) on the validation loss's gradient (dnas.search.architect,
    the CNN search's contract; second order: DARTS's RNN architect at this step's learning rate
    `eta`), clipped to `arch_grad_clip` if set. `train`, `valid`: (x, y, hidden). Returns the
    loss and the next validation hidden state."""
    a_opt.zero_grad(set_to_none=True)  # every step (the GDAS RNN code never did, see above)
    unroll = ClippedUnroll(eta, s.weight_decay, s.grad_clip) if s.order == 2 else None
    grads, loss, hidden = arch_gradient(net, lm_arch_loss, train, valid, tau, unroll)
    for a, g in zip(net.arch_parameters(), grads):
        a.grad = g
    if s.arch_grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(net.arch_parameters(), s.arch_grad_clip)
    a_opt.step()
    return loss, hidden


def rnn_weight_step(net, w_opt, s: Search, batch: tuple, tau):
    """SGD on the weights from cross-entropy + AR + TAR of a sampled cell; alpha held still.
    `batch`: (x, y, hidden). Returns the plain cross-entropy and the next hidden state."""
    x, y, hidden = batch
    clear_weight_grads(w_opt, s.zero_grad)  # zeros: a node's W that no edge used still decays
    r = s.rnn
    loss, raw_loss, hidden = lm_loss(net, x, y, hidden, r.alpha, r.beta, tau=tau, detach_alpha=True)
    loss.backward()
    if s.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(net.weight_parameters(), s.grad_clip)
    w_opt.step()
    return raw_loss.detach(), hidden.detach()


def rnn_search_epoch(
    run: EpochRunner, p: Params, net, w_opt, a_opt, lengths, epoch, tau, train, valid
):
    """The steps of one epoch (module docstring); the mean train and valid losses."""
    s, r = p.search, p.search.rnn

    def fresh():
        hidden = net.init_hidden(s.batch_size)
        return {"i": 0, "hidden": hidden, "hidden_valid": hidden.clone(),
                "sums": torch.zeros(2, dtype=torch.float64), "n": [0, 0]}  # fmt: skip

    state = run.begin_epoch(fresh)
    device = train.device
    i = state["i"]
    ht = state["hidden"].to(device)
    hv = state["hidden_valid"].to(device)
    sums = state["sums"].to(device)  # loss * tokens (train, valid)
    n_t, n_v = state["n"]
    while i < train.shape[0] - 2:
        seq_len = sequence_length(lengths, r.bptt, r.seq_std, r.max_seq_delta)
        eta = s.lr * seq_len / r.bptt
        w_opt.param_groups[0]["lr"] = eta
        xv, yv = get_batch(valid, i % (valid.shape[0] - 1), r.bptt)
        xt, yt = get_batch(train, i, seq_len)
        lv, hv = rnn_arch_step(net, a_opt, s, (xt, yt, ht), (xv, yv, hv), eta, tau)
        lt, ht = rnn_weight_step(net, w_opt, s, (xt, yt, ht), tau)
        run.guard.observe(lt, lv)
        sums += torch.stack([lt * yt.numel(), lv * yv.numel()]).double()
        n_t, n_v = n_t + yt.numel(), n_v + yv.numel()
        i += seq_len
        partial = {"i": i, "hidden": ht, "hidden_valid": hv, "sums": sums, "n": [n_t, n_v]}
        run.step_done(epoch, lambda partial=partial: to_cpu(partial))
    w_opt.param_groups[0]["lr"] = s.lr
    run.end_epoch(epoch)
    loss_t, loss_v = sums.tolist()
    return loss_t / n_t, loss_v / n_v
