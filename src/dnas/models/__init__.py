"""Discrete networks built from a genotype (CNNs and recurrent language models), and the one
file format they are saved in."""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from dnas.errors import UserError, unpickling_reason
from dnas.io import write_bytes
from dnas.models import cell_net, nb201_net, rnn_lm  # noqa: F401  (the builders spaces name)
from dnas.spaces.genotype import Genotype
from dnas.spaces.registry import get_space
from dnas.spaces.space import Space

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
    A recurrent cell is a language model: `build_model`.
    """
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")
    if get_space(genotype.space).text:
        raise ValueError(
            f"a {genotype.space} genotype is a language model's cell; build it with build_model"
        )
    config = {"in_channels": in_channels, "num_classes": num_classes, "channels": channels,
              "layers": layers, "auxiliary": auxiliary, "network": network}  # fmt: skip
    return build_model(genotype, config)


def network_builder(space: Space) -> Callable[[Genotype, dict], nn.Module]:
    """The builder `space.network` names ("module:function" inside dnas.models), imported here:
    the spaces sit below the networks, which import them (dnas.spaces.space)."""
    module, _, name = space.network.partition(":")
    if not module.startswith(f"{__name__}."):
        raise ValueError(f"space {space.name}: network {space.network!r} is not in {__name__}")
    return getattr(importlib.import_module(module), name)


def build_model(genotype: Genotype, config: dict) -> nn.Module:
    """The network a model file describes, built by its space's builder (`Space.network`): a
    language model for a recurrent genotype (config: `rnn_lm.BUILD_KEYS`), else a CNN (config:
    in_channels, num_classes, channels, layers, and optionally auxiliary, network)."""
    return network_builder(get_space(genotype.space))(genotype, config)


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
    The model is in eval mode, ready to predict (batch-norm's saved running statistics, no
    dropout, drop-path or auxiliary head); call `model.train()` to train it further.
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
    return model.to(device).eval(), {"genotype": genotype, **config}
