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

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dnas import distributed as dist
from dnas.checkpoint import run_fingerprint
from dnas.config import Params
from dnas.data import Prepared
from dnas.data.loader import DeviceLoader, split_loader
from dnas.evaluate import eval_loader, evaluate_loader
from dnas.io import round_floats
from dnas.models import build_model
from dnas.runner import EpochRunner, log_values
from dnas.runtime import FastPath, seed_everything
from dnas.spaces.genotype import Genotype
from dnas.spaces.registry import get_space
from dnas.train.schedule import sgd_schedule


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
    space = get_space(genotype.space)
    seed_everything(p.common.seed)
    fast = FastPath.resolve(p.common, device)
    fast.apply_backends(device)
    config = {
        "in_channels": data.channels,
        "num_classes": data.num_classes,
        "channels": t.channels,
        "layers": t.layers,
        "auxiliary": t.auxiliary_weight > 0 and space.auxiliary,
    }
    if space.imagenet and network_kind(p) == "imagenet":
        config["network"] = "imagenet"  # only when set, so CIFAR model files stay as they were
    model = fast.model(build_model(genotype, config).to(device))
    forward = fast.compiled(model)
    loader = train_loader(p, data, device)
    test = eval_loader(data, device, p.evaluate.batch_size)
    opt, scheduler = sgd_schedule(model.parameters(), t)
    cells = genotype.to_json()["cells"]
    run = EpochRunner(
        "train", t.epochs, device, "train.lr", live_dir, checkpoint_dir, p.common.checkpoint_every,
        run_fingerprint(p, "train", data.card["sha256"], p.evaluate.batch_size, cells),
        {"model": model, "opt": opt, "scheduler": scheduler, "loader": loader},
        log=[],  # the values logged per epoch
        steps=len(loader),
    )  # fmt: skip
    run.resume()

    def one_epoch(epoch: int) -> dict:
        if hasattr(model, "set_drop_prob"):
            model.set_drop_prob(t.drop_path * epoch / t.epochs)
        lr = opt.param_groups[0]["lr"]
        model.train()
        sums = train_epoch(run, p, model, forward, fast, opt, loader, epoch)
        scheduler.step()
        run.end_epoch(epoch)
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
        run.log.append(values)
        log_values(run.live, values)
        return values

    run.run(one_epoch, lambda live: [log_values(live, past) for past in run.log])
    history = run.log
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


def train_epoch(run: EpochRunner, p: Params, model, forward, fast, opt, loader, epoch: int):
    """The steps of one retraining epoch: (loss*n, correct) summed on this rank."""
    t, device = p.train, loader.device
    state = run.begin_epoch(lambda: {"sums": torch.zeros(2, dtype=torch.float64)})
    sums = state["sums"].to(device)
    for part in dist.shards(loader):
        x, y = part.x, part.y
        opt.zero_grad(set_to_none=True)
        with dist.step_rng(device, p.common.seed, epoch, run.guard.step), fast.autocast(device):
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
        run.guard.observe(loss)
        sums += part.sums(loss.detach(), (logits.argmax(1) == y).sum())
        run.step_done(epoch, lambda sums=sums: {"sums": dist.all_reduce_sum(sums).cpu()})
    return sums
