"""`dnas export DIR`: a trained image classifier for use without this package (docs/api.md).

- `DIR/model.ts`: TorchScript. Input: float images (N, C, H, W) at the prepared dataset's size,
  pixels scaled to [0, 1]; the module normalises them with the dataset's mean and std (from its
  `card.json`, as the evaluate stage's loader does) and returns the logits (N, classes).
  `torch.jit.load` reads it with nothing but torch.
- `DIR/genotype.py`: the cells as plain Python. DARTS space: DARTS's `Genotype(normal=...,
  normal_concat=..., reduce=..., reduce_concat=...)` namedtuple (flat (op, input) lists) and the
  same cells in AutoDL's per-node form; NAS-Bench-201: the architecture string and AutoDL's
  per-node list.

The network is traced (`torch.jit.trace`) in eval mode, so drop-path and the auxiliary head,
which only act in training, are not part of it. The cells come from the model file itself (the
genotype it was built from), so they match the weights even when `train.genotype` named a
published genotype rather than the searched `genotype.json`. Language models are refused.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from dnas.errors import UserError
from dnas.io import write_bytes
from dnas.models import load_model
from dnas.spaces.genotype import Genotype
from dnas.spaces.registry import get_space

MODEL_FILE = "model.ts"
GENOTYPE_FILE = "genotype.py"
META_FILE = "dnas.json"  # stored inside model.ts (torch.jit.load's _extra_files)


class Normalised(nn.Module):
    """[0, 1] pixels -> the network's normalised input -> logits. The arithmetic is the
    evaluation loader's, (u - 255 mean) / (255 std) on 0..255 values, so an image given as
    u / 255 reaches the network with the same bits as in `dvc repro`'s evaluate stage."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x * 255.0 - self.mean) / self.std)


def _input_spec(card: dict, config: dict, card_path: Path) -> tuple[list[int], list, list]:
    """(C, H, W), mean and std from the card, checked against the model's channels and classes."""
    h, w, c = (int(v) for v in card["shape"])
    mean, std = list(card["mean"]), list(card["std"])
    if c != config["in_channels"] or len(mean) != c or len(std) != c:
        raise UserError(
            f"{card_path}: {c} channels ({len(mean)} means, {len(std)} stds), but the model "
            f"takes {config['in_channels']}; give the card of the dataset the model was "
            "trained on (--data DIR)"
        )
    if card["num_classes"] != config["num_classes"]:
        raise UserError(
            f"{card_path}: {card['num_classes']} classes, but the model has "
            f"{config['num_classes']}; give the card of the dataset the model was trained on "
            "(--data DIR)"
        )
    return [c, h, w], mean, std


def trace(model: nn.Module, mean: list, std: list, chw: list[int]) -> torch.jit.ScriptModule:
    """The traced, normalising module, checked against the eager one on another batch size."""
    module = Normalised(model.cpu().eval(), mean, std).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad(), warnings.catch_warnings():
        # torch marks TorchScript deprecated in favour of torch.export; the format still loads
        # with torch.jit.load, which is what this file is for (docs/api.md).
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        traced = torch.jit.trace(module, torch.rand(2, *chw, generator=generator))
        check = torch.rand(3, *chw, generator=generator)
        if not torch.allclose(traced(check), module(check), rtol=1e-4, atol=1e-5):
            raise RuntimeError("the traced network differs from the network; not exported")
    return traced


def genotype_source(genotype: Genotype, origin: str) -> str:
    """The text of genotype.py: runs with the standard library only. Its body is the space's
    (`Space.python_source`: DARTS's namedtuple, NB201's string and per-node list)."""
    head = f'"""The cells of the network in {MODEL_FILE}, written by `dnas export` from {origin}.\n'
    body = get_space(genotype.space).python_source(genotype.cells, genotype.arch)
    return f"{head}\n{body}"


def export(
    out_dir: str | Path, model_path: str | Path, data_dir: str | Path
) -> dict[str, Path]:
    """Write `out_dir/model.ts` and `out_dir/genotype.py` for the model at `model_path`,
    normalised with the card of the prepared dataset `data_dir`; return the two paths."""
    from dnas.data.prepared import read_card

    model, config = load_model(model_path, "cpu")
    genotype: Genotype = config["genotype"]
    if get_space(genotype.space).text:
        raise UserError(
            f"{model_path}: a language model (recurrent cell); dnas export writes image "
            "classifiers only (load a language model with dnas.models.load_model, docs/api.md)"
        )
    data_dir = Path(data_dir)
    card = read_card(data_dir)
    chw, mean, std = _input_spec(card, config, data_dir / "card.json")
    traced = trace(model, mean, std, chw)
    meta = {
        "input": {"shape_chw": chw, "range": [0.0, 1.0], "mean": mean, "std": std},
        "num_classes": config["num_classes"],
        "dataset": card.get("name"),
        "space": genotype.space,
        "genotype": genotype.to_json(),
    }
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        torch.jit.save(traced, buffer, _extra_files={META_FILE: json.dumps(meta, sort_keys=True)})
    out_dir = Path(out_dir)
    paths = {"model": out_dir / MODEL_FILE, "genotype": out_dir / GENOTYPE_FILE}
    write_bytes(paths["model"], buffer.getvalue())
    write_bytes(paths["genotype"], genotype_source(genotype, str(model_path)).encode())
    return paths
