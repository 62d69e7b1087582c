"""The discrete DARTS-space networks retrained from a genotype (docs/algorithms.md#cnn-retraining).

`CellNetwork` (CIFAR): stem conv3x3 (3C) + BN, `layers` cells with reductions at
layers//3 and 2*layers//3 (channels double there), an optional auxiliary head after the second
reduction cell, global average pooling and a linear classifier. A genotype without a "reduce"
cell gets GDAS-FRC's fixed reduction cell at both reductions
(docs/algorithms.md#gdas-frc-fixed-reduction-cell). Drop-path zeroes
whole outputs of non-identity ops per example with probability `drop_prob`, which the training
loop ramps up over the epochs.

`ImageNetCellNetwork` (the mobile setting, docs/algorithms.md#cnn-retraining): the same cells behind
a stride-8 stem and a classifier after a 7x7 average pool.
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
    """The CIFAR auxiliary classifier (docs/algorithms.md#cnn-retraining): ReLU, AvgPool 5 stride 3,
    1x1 conv to 128, BN, ReLU, 2x2 conv to 768, BN, ReLU, linear. On feature maps smaller than 5x5
    (8x8 inputs such as digits) the pool becomes an adaptive pool to 2x2, the size the 8x8 CIFAR
    map gives, so the rest of the head is unchanged."""

    pool_stride = 3
    bn_after_768 = True

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AvgPool2d(5, stride=self.pool_stride, padding=0, count_include_pad=False)
        self.small_pool = nn.AdaptiveAvgPool2d(2)
        self.features = nn.Sequential(
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            *([nn.BatchNorm2d(768)] if self.bn_after_768 else []),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        x = self.pool(x) if min(x.shape[-2:]) >= 5 else self.small_pool(x)
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadImageNet(AuxiliaryHead):
    """The ImageNet auxiliary classifier (docs/algorithms.md#cnn-retraining): the same with AvgPool
    5 stride 2 and no BN after the 768 conv, as in the GDAS and DARTS code."""

    pool_stride = 2
    bn_after_768 = False


def _build_cells(
    genotype: Genotype, layers: int, c_pp: int, c_p: int, c: int, reduction_prev: bool
) -> tuple[nn.ModuleList, list[int]]:
    """The `layers` cells of a network whose stem leaves (c_pp, c_p) channels; reductions at
    layers//3 and 2*layers//3 double C. Returns the cells and each cell's output channels."""
    cells = nn.ModuleList()
    out_channels = []
    reductions = darts.reduction_layers(layers)
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            c *= 2
        # GDAS-FRC (docs/algorithms.md#gdas-frc-fixed-reduction-cell)
        if reduction and "reduce" not in genotype.cells:
            cell = FixedReductionCell(c_pp, c_p, c, reduction_prev)
        else:
            spec = genotype.cells["reduce" if reduction else "normal"]
            cell = Cell(spec, c_pp, c_p, c, reduction, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        c_pp, c_p = c_p, cell.multiplier * c
        out_channels.append(c_p)
    return cells, out_channels


class _CellStack(nn.Module):
    """Cells, the optional auxiliary head after the second reduction, pooling, classifier."""

    cells: nn.ModuleList
    auxiliary: nn.Module | None

    def set_drop_prob(self, p: float) -> None:
        for cell in self.cells:
            cell.drop_prob = p

    def _head(self, s0: torch.Tensor, s1: torch.Tensor):
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_position and self.auxiliary is not None and self.training:
                aux = self.auxiliary(s1)
        logits = self.classifier(self.pool(s1).flatten(1))
        return (logits, aux) if aux is not None else logits


class CellNetwork(_CellStack):
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
        self.cells, outs = _build_cells(genotype, layers, c_curr, c_curr, channels, False)
        self.aux_position = darts.reduction_layers(layers)[1]
        self.auxiliary = AuxiliaryHead(outs[self.aux_position], num_classes) if auxiliary else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(outs[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; in training mode with an auxiliary head, (logits, auxiliary logits)."""
        s = self.stem(x)
        return self._head(s, s)


class ImageNetCellNetwork(_CellStack):
    """The ImageNet mobile network (docs/algorithms.md#cnn-retraining): stem0 = conv3x3 s2 (C/2),
    BN, ReLU, conv3x3 s2 (C), BN; stem1 = ReLU, conv3x3 s2 (C), BN. Cell 0 sees stem0's output as
    c_{k-2} and stem1's as c_{k-1}, so it treats its first input as coming from a reduction
    (FactorizedReduce). The classifier follows a global average pool (AvgPool 7 at 224x224)."""

    def __init__(
        self,
        genotype: Genotype,
        in_channels: int,
        num_classes: int,
        channels: int,
        layers: int,
        auxiliary: bool = False,
    ) -> None:
        super().__init__()
        c = channels
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, c // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c // 2),
            nn.ReLU(inplace=False),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        self.cells, outs = _build_cells(genotype, layers, c, c, c, True)
        self.aux_position = darts.reduction_layers(layers)[1]
        self.auxiliary = (
            AuxiliaryHeadImageNet(outs[self.aux_position], num_classes) if auxiliary else None
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(outs[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; in training mode with an auxiliary head, (logits, auxiliary logits)."""
        s0 = self.stem0(x)
        return self._head(s0, self.stem1(s0))


def build(genotype: Genotype, config: dict) -> _CellStack:
    """The DARTS space's network (`spaces.darts.SPACE.network`): config in_channels,
    num_classes, channels, layers, and optionally auxiliary and network ("cifar", the default,
    or "imagenet": the ImageNet mobile stem)."""
    imagenet = config.get("network", "cifar") == "imagenet"
    cls = ImageNetCellNetwork if imagenet else CellNetwork
    return cls(
        genotype,
        config["in_channels"],
        config["num_classes"],
        config["channels"],
        config["layers"],
        config.get("auxiliary", False),
    )
