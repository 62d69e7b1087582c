"""Evaluation: accuracy on the test set, parameter count and multiply-adds; a language model's
loss and perplexity.

Parameters exclude the auxiliary head (docs/algorithms.md#parameter-and-multiply-add-counts,
DARTS `count_parameters_in_MB`).
Multiply-adds count convolutions and linear layers only, for one image at the dataset's
resolution, as GDAS's counter does (docs/algorithms.md#parameter-and-multiply-add-counts); they are
measured with forward hooks in eval mode, so the auxiliary head and drop-path never run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dnas import distributed as dist
from dnas.data import Prepared
from dnas.data.loader import DeviceLoader, split_loader
from dnas.data.tokens import get_batch, token_stream
from dnas.models import build_model
from dnas.models.rnn_lm import count_lm_parameters, lm_parameters
from dnas.runtime import FastPath
from dnas.spaces.genotype import Genotype
from dnas.spaces.registry import get_space


@dataclass(frozen=True)
class DatasetShape:
    """What a network needs to know about a dataset: one image's shape and the class count."""

    channels: int
    size: int
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


# The resolution each dataset is trained at (docs/algorithms.md#parameter-and-multiply-add-counts);
# `dnas genotype info` counts multiply-adds for one image of this shape.
DATASET_SHAPES = {
    "digits": DatasetShape(1, 8, 10),
    "cifar10": DatasetShape(3, 32, 10),
    "cifar100": DatasetShape(3, 32, 100),
    "imagenet16-120": DatasetShape(3, 16, 120),
    "imagenet": DatasetShape(3, 224, 1000),
}


def count_parameters(model: nn.Module) -> int:
    return sum(
        p.numel() for name, p in model.named_parameters() if not name.startswith("auxiliary.")
    )


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-adds of conv and linear layers for one image of shape (C, H, W)."""
    total = 0

    def conv_hook(mod: nn.Conv2d, _inp, out):
        nonlocal total
        kh, kw = mod.kernel_size
        total += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * kh * kw

    def linear_hook(mod: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * mod.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total


def genotype_params(genotype: Genotype, data) -> int:
    """Parameters of a genotype's network at the papers' evaluation size (its space's
    `paper_size`, docs/algorithms.md#parameter-and-multiply-add-counts: the DARTS space at C=36
    with 20 cells, NB201 at C=16 with 5 cells per stage, the PTB language model at emsize = nhid
    = 850), on `data`'s inputs and classes (CNN, without the auxiliary head) or vocabulary
    (language model)."""
    space = get_space(genotype.space)
    if space.text:
        return lm_parameters(genotype, data.vocab_size, space.paper_size)
    c, layers = space.paper_size
    config = {"in_channels": data.channels, "num_classes": data.num_classes, "channels": c,
              "layers": layers}  # fmt: skip
    return count_parameters(build_model(genotype, config))


def perplexity(loss: float) -> float:
    """exp of the mean cross-entropy per token (natural log)."""
    return math.exp(loss)


def evaluate_perplexity(model: nn.Module, data, config: dict, device) -> dict:
    """Validation (batch `eval_batch_size`) and test (batch `test_batch_size`, 1 in the papers,
    docs/algorithms.md#rnn-retraining) loss and perplexity of a language model, over the whole split
    in segments of `bptt` with the hidden state carried; and its parameter count (embedding and
    decoder tied, counted once)."""
    out: dict = {"params": count_lm_parameters(model), "vocab_size": int(config["vocab_size"])}
    for split, key in (("valid", "eval_batch_size"), ("test", "test_batch_size")):
        stream = token_stream(data, split, int(config[key]), device)
        loss = evaluate_lm(model, stream, int(config["bptt"]))
        out[split] = {"loss": loss, "ppl": perplexity(loss)}
        out[f"{split}_tokens"] = int(stream.shape[0] - 1) * int(stream.shape[1])
    return out


@torch.no_grad()
def evaluate_lm(model: nn.Module, data: torch.Tensor, bptt: int) -> float:
    """Mean cross-entropy per token over a batchified stream, in segments of `bptt` with the
    hidden state carried across them (eval mode: no dropout)."""
    was_training = model.training
    model.eval()
    hidden = model.init_hidden(data.shape[1])
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    count = 0
    for i in range(0, data.shape[0] - 1, bptt):
        x, y = get_batch(data, i, bptt)
        logits, hidden, _, _ = model(x, hidden)
        total += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
        ).double()
        count += y.numel()
    model.train(was_training)
    return float(total) / count


def eval_loader(data: Prepared, device: torch.device, batch_size: int) -> DeviceLoader:
    """The test set, less any half a search split took from it (test_half: the x-test half)."""
    return split_loader(data, "eval", batch_size, device)


@torch.no_grad()
def evaluate_loader(
    model: nn.Module,
    loader: DeviceLoader,
    fast: FastPath | None = None,
    forward=None,
    num_classes: int | None = None,
) -> dict:
    """Mean cross-entropy, top-1 and top-5 accuracy (percent) over a loader. `forward` runs
    the model (its compiled form) if given; under torchrun each rank takes its shard. With
    `num_classes`, also the confusion matrix (`confusion`: a list of rows, row = true class,
    column = predicted class, counts of examples)."""
    fast = FastPath() if fast is None else fast
    forward = model if forward is None else forward
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=loader.device)
    k2 = 0 if num_classes is None else num_classes * num_classes
    pairs = torch.zeros(k2, dtype=torch.float64, device=loader.device)
    for part in dist.shards(loader):
        x, y = part.x, part.y
        with fast.autocast(loader.device):
            logits = forward(fast.inputs(x))
            loss = F.cross_entropy(logits, y, reduction="sum")
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        hits = topk == y.unsqueeze(1)
        sums += part.tally(torch.stack([loss, hits[:, 0].sum(), hits.any(dim=1).sum()]).double())
        if num_classes is not None:
            cells = y * num_classes + topk[:, 0]
            pairs += part.tally(torch.bincount(cells, minlength=k2).double())
    loss, top1, top5 = dist.all_reduce_sum(sums).tolist()
    n = loader.num_examples
    out: dict = {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n}
    if num_classes is not None:
        counts = dist.all_reduce_sum(pairs).round().long().reshape(num_classes, num_classes)
        out["confusion"] = counts.cpu().tolist()
    return out


def per_class_accuracy(confusion) -> list[float | None]:
    """Each class's accuracy (percent): the fraction of its test examples predicted as it, the
    diagonal over the row sums of a confusion matrix (row = true class); None for a class with
    no test examples."""
    c = np.asarray(confusion, dtype=np.int64)
    support = c.sum(axis=1)
    return [100.0 * c[i, i] / support[i] if support[i] else None for i in range(len(c))]


def balanced_accuracy(confusion) -> float:
    """The mean of the per-class accuracies (percent) over the classes the test set holds:
    what top-1 would be if every class had as many test examples (sklearn's
    balanced_accuracy_score x 100)."""
    accs = [a for a in per_class_accuracy(confusion) if a is not None]
    return sum(accs) / len(accs)


def class_names(data) -> list[str]:
    """The names of a prepared dataset's classes in label order: the card's `classes` (custom
    datasets: folder names, or an .npz's `classes`), a folder dataset's `classes`, else the
    label indices as strings."""
    k = data.num_classes
    names = data.card.get("classes") or getattr(data, "classes", None)
    if isinstance(names, list) and len(names) == k and len(set(map(str, names))) == k:
        return [str(n) for n in names]
    return [str(i) for i in range(k)]


def class_results(confusion, names: list[str]) -> dict:
    """What evaluate writes to metrics/eval_per_class.json: the class names in label order,
    per-class accuracy (percent, null for a class without test examples) and test examples
    keyed by name, balanced accuracy, and the confusion matrix (row = true, column =
    predicted, in label order)."""
    accs = per_class_accuracy(confusion)
    support = np.asarray(confusion, dtype=np.int64).sum(axis=1).tolist()
    return {
        "classes": list(names),
        "accuracy": dict(zip(names, accs)),
        "support": dict(zip(names, support)),
        "balanced_acc": balanced_accuracy(confusion),
        "confusion": [list(map(int, row)) for row in confusion],
    }
