"""`dnas export DIR`: a trained image classifier for use without this package (docs/api.md).

- `DIR/model.pt2`: a `torch.export` program, any batch size. Input: float images (N, C, H, W)
  at the prepared dataset's size, pixels scaled to [0, 1]; the module normalises them with the
  dataset's mean and std (from its `card.json`, as the evaluate stage's loader does) and
  returns the logits (N, classes). `torch.export.load(...).module()` reads it with nothing but
  torch.
- `DIR/model.ts`: the same module as TorchScript (`torch.jit.load`), which torch now marks
  deprecated in favour of torch.export; kept for the runtimes that read only TorchScript.
- `DIR/genotype.py`: the cells as plain Python. DARTS space: DARTS's `Genotype(normal=...,
  normal_concat=..., reduce=..., reduce_concat=...)` namedtuple (flat (op, input) lists) and the
  same cells in AutoDL's per-node form; NAS-Bench-201: the architecture string and AutoDL's
  per-node list.

The network is captured (`torch.export.export`, `torch.jit.trace`) in eval mode, so drop-path
and the auxiliary head, which only act in training, are not part of it; each capture is
checked against the network on another batch size. Both files hold the same metadata
(`dnas.json`: input shape, range, mean and std, classes, dataset, genotype). The cells come
from the model file itself (the genotype it was built from), so they match the weights even
when `train.genotype` named a published genotype rather than the searched `genotype.json`.
Language models are refused.
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
PROGRAM_FILE = "model.pt2"
GENOTYPE_FILE = "genotype.py"
META_FILE = "dnas.json"  # stored inside both (torch.jit.load's _extra_files, torch.export's)


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


def _check(captured, module: nn.Module, x: torch.Tensor, what: str) -> None:
    if not torch.allclose(captured(x), module(x), rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"the {what} network differs from the network; not exported")


def trace(module: nn.Module, chw: list[int]) -> torch.jit.ScriptModule:
    """The traced module, checked against the eager one on another batch size."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad(), warnings.catch_warnings():
        # torch marks TorchScript deprecated in favour of torch.export; the format still loads
        # with torch.jit.load, which is what this file is for (docs/api.md).
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        traced = torch.jit.trace(module, torch.rand(2, *chw, generator=generator))
        _check(traced, module, torch.rand(3, *chw, generator=generator), "traced")
    return traced


def program(module: nn.Module, chw: list[int]) -> torch.export.ExportedProgram:
    """The exported program, its batch size free (1 and up), checked against the eager module
    on a batch of 1 and of 3."""
    generator = torch.Generator().manual_seed(0)
    batch = torch.export.Dim("batch", min=1)
    example = (torch.rand(2, *chw, generator=generator),)
    with torch.no_grad():
        exported = torch.export.export(module, example, dynamic_shapes={"x": {0: batch}})
        runnable = exported.module()
        for n in (1, 3):
            _check(runnable, module, torch.rand(n, *chw, generator=generator), "exported")
    return exported


def genotype_source(genotype: Genotype, origin: str) -> str:
    """The text of genotype.py: runs with the standard library only. Its body is the space's
    (`Space.python_source`: DARTS's namedtuple, NB201's string and per-node list)."""
    head = f'"""The cells of the network in {MODEL_FILE}, written by `dnas export` from {origin}.\n'
    body = get_space(genotype.space).python_source(genotype.cells, genotype.arch)
    return f"{head}\n{body}"


def export(
    out_dir: str | Path, model_path: str | Path, data_dir: str | Path
) -> dict[str, Path]:
    """Write `out_dir/model.pt2`, `out_dir/model.ts` and `out_dir/genotype.py` for the model at
    `model_path`, normalised with the card of the prepared dataset `data_dir`; return the
    paths ("program", "model", "genotype")."""
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
    module = Normalised(model.cpu().eval(), mean, std).eval()
    meta = {
        "input": {"shape_chw": chw, "range": [0.0, 1.0], "mean": mean, "std": std},
        "num_classes": config["num_classes"],
        "dataset": card.get("name"),
        "space": genotype.space,
        "genotype": genotype.to_json(),
    }
    extra = {META_FILE: json.dumps(meta, sort_keys=True)}
    exported = io.BytesIO()
    torch.export.save(program(module, chw), exported, extra_files=extra)
    scripted = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        torch.jit.save(trace(module, chw), scripted, _extra_files=extra)
    out_dir = Path(out_dir)
    paths = {"program": out_dir / PROGRAM_FILE, "model": out_dir / MODEL_FILE,
             "genotype": out_dir / GENOTYPE_FILE}  # fmt: skip
    write_bytes(paths["program"], exported.getvalue())
    write_bytes(paths["model"], scripted.getvalue())
    write_bytes(paths["genotype"], genotype_source(genotype, str(model_path)).encode())
    return paths
