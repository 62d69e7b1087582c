"""The discrete NAS-Bench-201 network (docs/algorithms.md#nas-bench-201-space): stem conv3x3 + BN, N
cells, ResBlock(stride 2), N cells, ResBlock(stride 2), N cells, BN + ReLU, global pool, linear."""

from __future__ import annotations

import torch
from torch import nn

from dnas.spaces.genotype import CellSpec, Genotype
from dnas.spaces.ops import ResNetBasicBlock, nb201_op


class Nb201Cell(nn.Module):
    """Each node sums its incoming edges; 'none' edges contribute nothing and are not run."""

    def __init__(self, spec: CellSpec, c: int) -> None:
        super().__init__()
        self.inputs = [[j for op, j in node if op != "none"] for node in spec.nodes]
        self.ops = nn.ModuleList(
            nn.ModuleList(nb201_op(op, c, affine=True) for op, _ in node if op != "none")
            for node in spec.nodes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for inputs, ops in zip(self.inputs, self.ops):
            if not inputs:
                states.append(torch.zeros_like(x))
                continue
            node = 0
            for j, op in zip(inputs, ops):
                node = node + op(states[j])
            states.append(node)
        return states[-1]


class Nb201Network(nn.Module):
    def __init__(
        self,
        spec: CellSpec,
        in_channels: int,
        num_classes: int,
        channels: int = 16,
        layers: int = 5,
    ) -> None:
        super().__init__()
        c = channels
        blocks: list[nn.Module] = [
            nn.Conv2d(in_channels, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
        ]
        for stage in range(3):
            if stage:
                blocks.append(ResNetBasicBlock(c, 2 * c, 2))
                c *= 2
            blocks.extend(Nb201Cell(spec, c) for _ in range(layers))
        blocks += [nn.BatchNorm2d(c), nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def build(genotype: Genotype, config: dict) -> Nb201Network:
    """The NAS-Bench-201 space's network (`spaces.nb201.SPACE.network`): config in_channels,
    num_classes, channels, layers (cells per stage); no auxiliary head, one stem."""
    return Nb201Network(
        genotype.cells["cell"],
        config["in_channels"],
        config["num_classes"],
        config["channels"],
        config["layers"],
    )
