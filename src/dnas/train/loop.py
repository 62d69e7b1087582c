"""Retraining loop (docs/algorithms.md#cnn-retraining): SGD with momentum and weight decay, a
per-epoch LR schedule (cosine, step or linear, with optional warm-up: dnas.train.schedule), gradient
norm clipping, an auxiliary loss weighted by `auxiliary_weight`, drop-path ramped linearly as
drop_path * epoch / epochs, cutout, and optional label smoothing (train loss only). The test set
is evaluated after every epoch for the curves. `test_acc` is the final model's (DARTS); with
`report: best` the metrics add the best test accuracy over the epochs and its epoch (the GDAS
code's `obtain_best`, docs/algorithms.md#reporting-final-or-best). The saved model is always the
final one.

The fast path (`common.compile`, `bf16`, `channels_last`, `cudnn_benchmark`: dnas.runtime.FastPath)
and data parallelism under torchrun (dnas.distributed) change how a step runs, not what it
computes; with every switch off and one process the loop runs as it always has.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dnas import distributed as dist
from dnas.checkpoint import (
    Checkpointer,
    capture,
    fingerprint,
    restore,
    stop_on_signals,
)
from dnas.config import Params
from dnas.data import Prepared
from dnas.data.loader import DeviceLoader, split_loader
from dnas.io import round_floats
from dnas.models import build_network
from dnas.runtime import EpochProgress, FastPath, FiniteLossGuard, seed_everything
from dnas.spaces.genotype import Genotype
from dnas.train.schedule import sgd_schedule
from dvclive import Live

# Train keys added after the first release: left out of the checkpoint fingerprint while they
# hold their defaults, so a default run resumes from (and writes) the same checkpoints as before.
_LATER_KEYS = ("genotype", "network", "schedule", "lr_gamma", "warmup_epochs", "report")


def _fingerprint_fields(t) -> dict:
    fields = t.model_dump()
    defaults = type(t)()
    for key in _LATER_KEYS:
        if fields[key] == getattr(defaults, key):
            del fields[key]
    return fields


def network_kind(p: Params) -> str:
    """The stem and head of the retrained network (train.network; auto = by dataset)."""
    if p.train.network != "auto":
        return p.train.network
    return "imagenet" if p.train.dataset == "imagenet" else "cifar"


def train_loader(p: Params, data: Prepared, device: torch.device) -> DeviceLoader:
    t = p.train
    return split_loader(
        data,
        "train",
        t.batch_size,
        device,
        augment=t.augment,
        cutout=t.cutout,
        shuffle=True,
        seed=p.common.seed,
    )


def eval_loader(data: Prepared, device: torch.device, batch_size: int) -> DeviceLoader:
    """The test set, less any half a search split took from it (test_half: the x-test half)."""
    return split_loader(data, "eval", batch_size, device)


@torch.no_grad()
def evaluate_loader(
    model: nn.Module, loader: DeviceLoader, fast: FastPath | None = None, forward=None
) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy (percent) over a loader. `forward` runs
    the model (its compiled form) if given; under torchrun each rank takes its shard."""
    fast = FastPath() if fast is None else fast
    forward = model if forward is None else forward
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=loader.device)
    for x, y in loader:
        part = dist.shard(x, y)
        x, y = part.x, part.y
        with fast.autocast(loader.device):
            logits = forward(fast.inputs(x))
            loss = F.cross_entropy(logits, y, reduction="sum")
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        hits = topk == y.unsqueeze(1)
        sums += part.tally(torch.stack([loss, hits[:, 0].sum(), hits.any(dim=1).sum()]).double())
    loss, top1, top5 = dist.all_reduce_sum(sums).tolist()
    n = loader.num_examples
    return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n}


def run_train(
    p: Params,
    genotype: Genotype,
    data: Prepared,
    device: torch.device,
    live_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
) -> tuple[nn.Module, dict, dict]:
    """Train the network of `genotype`; return (model, its build config, final metrics).

    With `checkpoint_dir`, checkpoint as `common.checkpoint_every` says and resume from a
    checkpoint of the same params, genotype and data (see dnas.checkpoint)."""
    t = p.train
    seed_everything(p.common.seed)
    fast = FastPath.resolve(p.common, device)
    fast.apply_backends(device)
    config = {
        "in_channels": data.channels,
        "num_classes": data.num_classes,
        "channels": t.channels,
        "layers": t.layers,
        "auxiliary": t.auxiliary_weight > 0 and genotype.space == "darts",
    }
    if genotype.space == "darts" and network_kind(p) == "imagenet":
        config["network"] = "imagenet"  # only when set, so CIFAR model files stay as they were
    model = fast.model(build_network(genotype, **config).to(device))
    forward = fast.compiled(model)
    loader = train_loader(p, data, device)
    test = eval_loader(data, device, p.evaluate.batch_size)
    opt, scheduler = sgd_schedule(model.parameters(), t)
    guard = FiniteLossGuard(device, "train", "train.lr")
    history: list[dict] = []
    epoch_state = None
    start = 0
    stateful = {"model": model, "opt": opt, "scheduler": scheduler, "loader": loader}
    checkpointer = Checkpointer(
        checkpoint_dir if dist.is_main() else None,  # rank 0 alone reads and writes files
        fingerprint(
            p.common.seed,
            _fingerprint_fields(t),
            p.evaluate.batch_size,
            genotype.to_json()["cells"],
            data.card["sha256"],
        ),
        p.common.checkpoint_every,
    )
    state = dist.broadcast_object(checkpointer.load())
    if state is not None:
        if dist.is_main():
            checkpointer.restore(stateful, state, "train")
        else:
            restore(stateful, state)
            if state["epoch_state"] is not None:  # rank 0 holds the interrupted epoch's sums
                state["epoch_state"]["sums"].zero_()
        history = json.loads(state["log"])
        start, epoch_state = state["epoch"], state["epoch_state"]

    def snapshot(epoch: int, partial) -> dict:
        log = json.dumps(history)
        return {**capture(stateful), "log": log, "epoch": epoch, "epoch_state": partial}

    live = (
        Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
        if dist.is_main()
        else dist.NullLive()
    )
    with live, stop_on_signals() as request:
        stop = dist.agreed_stop(request)
        for past in history:  # replaying a resumed run's log gives the same files
            _log(live, past)
        progress = EpochProgress(t.epochs, "train", start=start, quiet=not dist.is_main())
        for epoch in progress:
            if hasattr(model, "set_drop_prob"):
                model.set_drop_prob(t.drop_path * epoch / t.epochs)
            lr = opt.param_groups[0]["lr"]
            model.train()
            if epoch_state is None:
                epoch_state = {"sums": torch.zeros(2, dtype=torch.float64)}
                guard.reset()
            else:
                guard.load_state_dict(epoch_state["guard"])
            sums = epoch_state["sums"].to(device)
            for x, y in loader:
                part = dist.shard(x, y)
                x, y = part.x, part.y
                opt.zero_grad(set_to_none=True)
                with dist.step_rng(device, p.common.seed, epoch, guard.step), fast.autocast(device):
                    out = forward(fast.inputs(x))
                    logits, aux = out if isinstance(out, tuple) else (out, None)
                    loss = F.cross_entropy(logits, y, label_smoothing=t.label_smoothing)
                    if aux is not None:
                        loss = loss + t.auxiliary_weight * F.cross_entropy(
                            aux, y, label_smoothing=t.label_smoothing
                        )
                loss.backward()
                dist.average_gradients(model.parameters(), part.weight)
                if t.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                opt.step()
                guard.observe(loss)
                sums += part.tally(
                    torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum()]).double()
                )
                if stop:
                    dist.agree_on_guard(guard)
                    partial = {"sums": dist.all_reduce_sum(sums).cpu(), "guard": guard.state_dict()}
                    raise checkpointer.interrupt(functools.partial(snapshot, epoch, partial))
            scheduler.step()
            dist.agree_on_guard(guard)
            guard.check(epoch)
            loss_sum, correct = dist.all_reduce_sum(sums).tolist()
            n = loader.num_examples
            dist.broadcast_buffers(model)
            result = evaluate_loader(model, test, fast, forward)
            values = {
                "lr": lr,
                "loss/train": loss_sum / n,
                "acc/train": 100.0 * correct / n,
                "loss/test": result["loss"],
                "acc/test": result["top1"],
            }
            values = round_floats(values)  # 6 significant digits, as in the JSON outputs
            history.append(values)
            _log(live, values)
            progress.report(epoch, values)
            epoch_state = None
            checkpointer.after_epoch(epoch, t.epochs, functools.partial(snapshot, epoch + 1, None))
    final = history[-1]
    metrics = {
        "train_loss": final["loss/train"],
        "train_acc": final["acc/train"],
        "test_acc": final["acc/test"],
        "epochs": t.epochs,
    }
    if t.report == "best":
        best = max(range(len(history)), key=lambda i: (history[i]["acc/test"], -i))
        metrics["best_test_acc"] = history[best]["acc/test"]
        metrics["best_epoch"] = best + 1  # 1-based, as the logs count epochs
    return model, config, metrics


def _log(live: Live, values: dict) -> None:
    for name, value in values.items():
        live.log_metric(name, value)
    live.next_step()
