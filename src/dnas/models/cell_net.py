"""The discrete DARTS-space network retrained from a genotype (reference §1.8, §2.2).

Stem conv3x3 (3C) + BN, `layers` cells with reductions at layers//3 and 2*layers//3 (channels
double there), an optional auxiliary head after the second reduction cell, global average
pooling and a linear classifier. A genotype without a "reduce" cell gets GDAS-FRC's fixed
reduction cell at both reductions (reference §1.2). Drop-path zeroes whole outputs of non-
identity ops per example with probability `drop_prob`, which the training loop ramps up over
the epochs.
"""

from __future__ import annotations

import torch
from torch import nn

from dnas.spaces import darts
from dnas.spaces.genotype import CellSpec, Genotype
from dnas.spaces.ops import FixedReductionCell, cell_preprocess, darts_op, drop_path


class Cell(nn.Module):
    def __init__(
        self, spec: CellSpec, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.pre0, self.pre1 = cell_preprocess(c_pp, c_p, c, reduction_prev, affine=True)
        self.inputs = [[j for _, j in node] for node in spec.nodes]
        self.ops = nn.ModuleList(
            nn.ModuleList(
                darts_op(op, c, 2 if reduction and j < spec.inputs else 1, affine=True)
                for op, j in node
            )
            for node in spec.nodes
        )
        self.concat = list(spec.concat)
        self.multiplier = len(self.concat)
        self.drop_prob = 0.0

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for inputs, ops in zip(self.inputs, self.ops):
            node = 0
            for j, op in zip(inputs, ops):
                h = op(states[j])
                if self.training and self.drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, self.drop_prob)
                node = node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """The CIFAR auxiliary classifier (reference §1.8): ReLU, AvgPool 5 stride 3, 1x1 conv to
    128, BN, ReLU, 2x2 conv to 768, BN, ReLU, linear. On feature maps smaller than 5x5 (8x8
    inputs such as digits) the pool becomes an adaptive pool to 2x2, the size the 8x8 CIFAR
    map gives, so the rest of the head is unchanged."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.small_pool = nn.AdaptiveAvgPool2d(2)
        self.features = nn.Sequential(
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        x = self.pool(x) if min(x.shape[-2:]) >= 5 else self.small_pool(x)
        return self.classifier(self.features(x).flatten(1))


class CellNetwork(nn.Module):
    def __init__(
        self,
        genotype: Genotype,
        in_channels: int,
        num_classes: int,
        channels: int,
        layers: int,
        auxiliary: bool = False,
        stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr)
        )
        c_pp, c_p, c = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reductions = darts.reduction_layers(layers)
        self.aux_position = reductions[1]
        reduction_prev = False
        self.auxiliary = None
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c *= 2
            if reduction and "reduce" not in genotype.cells:  # GDAS-FRC (reference §1.2)
                cell = FixedReductionCell(c_pp, c_p, c, reduction_prev)
            else:
                spec = genotype.cells["reduce" if reduction else "normal"]
                cell = Cell(spec, c_pp, c_p, c, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c
            if auxiliary and i == self.aux_position:
                self.auxiliary = AuxiliaryHead(c_p, num_classes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def set_drop_prob(self, p: float) -> None:
        for cell in self.cells:
            cell.drop_prob = p

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; in training mode with an auxiliary head, (logits, auxiliary logits)."""
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_position and self.auxiliary is not None and self.training:
                aux = self.auxiliary(s1)
        logits = self.classifier(self.pool(s1).flatten(1))
        return (logits, aux) if aux is not None else logits
