"""Discrete networks built from a genotype (CNNs and recurrent language models), and the one
file format they are saved in."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch
from torch import nn

from dnas.errors import UserError, unpickling_reason
from dnas.io import write_bytes
from dnas.models.cell_net import CellNetwork, ImageNetCellNetwork
from dnas.models.nb201_net import Nb201Network
from dnas.models.rnn_lm import build_lm
from dnas.spaces.genotype import Genotype

NETWORKS = ("cifar", "imagenet")


def build_network(
    genotype: Genotype,
    in_channels: int,
    num_classes: int,
    channels: int,
    layers: int,
    auxiliary: bool = False,
    network: str = "cifar",
) -> nn.Module:
    """The network a genotype describes, at width `channels` and depth `layers`.

    DARTS space: `layers` cells with two reductions (docs/algorithms.md#cnn-retraining), behind the
    CIFAR stem (`network="cifar"`) or the ImageNet mobile stem (`network="imagenet"`).
    NAS-Bench-201: `layers` cells per stage (N in docs/algorithms.md#nas-bench-201-space).
    """
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")
    if genotype.space == "darts":
        cls = ImageNetCellNetwork if network == "imagenet" else CellNetwork
        return cls(genotype, in_channels, num_classes, channels, layers, auxiliary)
    if genotype.space == "nb201":
        return Nb201Network(genotype.cells["cell"], in_channels, num_classes, channels, layers)
    raise ValueError(f"unknown space {genotype.space!r}")


def build_model(genotype: Genotype, config: dict) -> nn.Module:
    """The network a model file describes: a language model for a recurrent genotype (config:
    `rnn_lm.BUILD_KEYS`), else the CNN of `build_network` (config: in_channels, num_classes,
    channels, layers, and optionally auxiliary, network)."""
    if genotype.space == "rnn":
        return build_lm(genotype, config)
    return build_network(
        genotype,
        config["in_channels"],
        config["num_classes"],
        config["channels"],
        config["layers"],
        config.get("auxiliary", False),
        config.get("network", "cifar"),
    )


def save_model(path: str | Path, model: nn.Module, genotype: Genotype, config: dict) -> None:
    """Save weights with everything needed to rebuild the network (no pickled objects): the
    genotype, the config `build_model` reads (and what the evaluate stage needs besides), and
    the state dict. One format for CNNs and language models."""
    state = {
        "genotype": genotype.to_json(),
        "config": dict(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    # Serialise in memory: torch.save names the archive after the file, and the temporary
    # file's random name would make identical weights give different bytes.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a saved network, CNN or language model: (model, {"genotype": ..., **config}).
    `torch.load(weights_only=True)` never runs pickled code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found; run the train stage (`dvc repro`)")
    from dnas.errors import check_torch_floor

    check_torch_floor()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        genotype = Genotype.from_json(state["genotype"])
        config = state["config"]
        model = build_model(genotype, config)
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        raise UserError(
            f"{path}: not a valid dnas model ({unpickling_reason(exc)}); rerun the train stage"
        ) from None
    return model.to(device), {"genotype": genotype, **config}
