"""Candidate operations of the DARTS CNN space and the NAS-Bench-201 space
(docs/algorithms.md#darts-cnn-space, docs/algorithms.md#nas-bench-201-space).

`affine` is False inside search supernets (BN without learned scale/shift) and True in the
retrained networks. Every pooling op of the DARTS space carries a BatchNorm2d(affine=False), in
search and in retraining, as the GDAS code does (docs/algorithms.md#darts-cnn-space); DARTS adds it
in search only. It has no parameters, so parameter counts are unaffected.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# The op names are the spaces' own (each space's module, without torch, so that the params
# check can ask the spaces without importing torch); the recurrent cell's activations and their
# functions live in spaces/rnn.py.
from dnas.spaces.darts import DARTS_OPS
from dnas.spaces.nb201 import NB201_OPS
from dnas.spaces.rnn import RNN_OPS

__all__ = ["DARTS_OPS", "NB201_OPS", "RNN_OPS"]  # and the op modules below


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero each example's tensor with probability `drop_prob`, rescale the rest."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class Zero(nn.Module):
    """The 'none' op: zeros, subsampled when the edge reduces."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        affine: bool,
        bias: bool = False,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=bias),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise k x k conv with dilation, 1x1 conv, BN."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two DilConv blocks with dilation 1; only the first one strides."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1x1 stride-2 convs, the second on a one-pixel shift.

    The input is zero-padded on the right and bottom before the shift, as in GDAS, so odd sizes
    work; for even sizes this equals the DARTS version (docs/algorithms.md#darts-cnn-space).
    """

    def __init__(self, c_in: int, c_out: int, affine: bool) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv1(x), self.conv2(shifted)], dim=1))


class PoolBN(nn.Sequential):
    def __init__(self, kind: str, c: int, stride: int) -> None:
        pool = (
            nn.MaxPool2d(3, stride=stride, padding=1)
            if kind == "max"
            else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        )
        super().__init__(pool, nn.BatchNorm2d(c, affine=False))


def cell_preprocess(
    c_pp: int, c_p: int, c: int, reduction_prev: bool, affine: bool
) -> tuple[nn.Module, nn.Module]:
    """The two input adapters of a DARTS cell: c_{k-2} is halved by FactorizedReduce when the
    previous cell reduced, else ReLU-1x1conv-BN; c_{k-1} always ReLU-1x1conv-BN
    (docs/algorithms.md#darts-cnn-space)."""
    pre0 = (
        FactorizedReduce(c_pp, c, affine)
        if reduction_prev
        else ReLUConvBN(c_pp, c, 1, 1, 0, affine)
    )
    return pre0, ReLUConvBN(c_p, c, 1, 1, 0, affine)


def darts_op(name: str, c: int, stride: int, affine: bool) -> nn.Module:
    """One op of the DARTS space with `c` channels in and out."""
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return PoolBN("max", c, stride)
    if name == "avg_pool_3x3":
        return PoolBN("avg", c, stride)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        k = int(name[-1])
        return SepConv(c, c, k, stride, k // 2, affine)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        k = int(name[-1])
        return DilConv(c, c, k, stride, 2 * (k // 2), 2, affine)
    raise ValueError(f"unknown DARTS op {name!r}; known: {', '.join(DARTS_OPS)}")


def nb201_op(name: str, c: int, affine: bool) -> nn.Module:
    """One op of the NAS-Bench-201 space (stride 1, `c` channels in and out).

    Convs carry a bias when BN is not affine, as AutoDL does
    (docs/algorithms.md#nas-bench-201-space).
    """
    if name == "none":
        return Zero(1)
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1, 0, affine, bias=not affine)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1, 1, affine, bias=not affine)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}; known: {', '.join(NB201_OPS)}")


class ResNetBasicBlock(nn.Module):
    """The NAS-Bench-201 reduction block between stages (docs/algorithms.md#nas-bench-201-space)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1, affine=True)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine=True)
        if stride == 2:
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
            )
        elif c_in != c_out:
            self.shortcut = ReLUConvBN(c_in, c_out, 1, 1, 0, affine=True)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class FixedReductionCell(nn.Module):
    """GDAS-FRC's hand-designed reduction cell, the GDAS code's `Transition` (docs/protocols.md).

    Both inputs are preprocessed as in a searched cell (C channels each). X0 and X1 are
    branches on s0 and s1: ReLU, grouped (1x3) conv striding the width, grouped (3x1) conv
    striding the height, BN, ReLU, 1x1 conv, BN. X3 = MaxPool3x3 (stride 2) of s1, then BN.
    X2 exists in two versions, chosen by `version`:

    - "release" (the default, used to retrain GDAS_F1, GDAS_GF and the FRC presets): X2 =
      MaxPool3x3 (stride 2) of s0, then BN, as in the CVPR release, its FRC training log and
      AutoDL;
    - "search" (the FRC search network): X2 = MaxPool3x3 (stride 1) of X0 + X1, then BN, as in
      the search-era code the FRC search ran with.

    The output concatenates X0..X3 (4C). Max pooling has no parameters, so both versions have
    the same size (GDAS_F1: 2.543M); only the structure tells them apart. The grouped convs use
    8 groups, or gcd(C, 8) when C is not a multiple of 8 (small test networks). Drop-path hits
    X0..X3 when `drop_prob` > 0 in training.
    """

    VERSIONS = ("release", "search")

    multiplier = 4
    reduction = True

    def __init__(
        self,
        c_pp: int,
        c_p: int,
        c: int,
        reduction_prev: bool,
        affine: bool = True,
        version: str = "release",
    ) -> None:
        super().__init__()
        if version not in self.VERSIONS:
            raise ValueError(f"unknown fixed reduction cell version {version!r}")
        self.version = version
        self.pre0, self.pre1 = cell_preprocess(c_pp, c_p, c, reduction_prev, affine)
        groups = math.gcd(c, 8)

        def branch() -> nn.Sequential:
            return nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(c, c, (1, 3), stride=(1, 2), padding=(0, 1), groups=groups, bias=False),
                nn.Conv2d(c, c, (3, 1), stride=(2, 1), padding=(1, 0), groups=groups, bias=False),
                nn.BatchNorm2d(c, affine=affine),
                nn.ReLU(inplace=False),
                nn.Conv2d(c, c, 1, bias=False),
                nn.BatchNorm2d(c, affine=affine),
            )

        self.branch0, self.branch1 = branch(), branch()
        stride2 = 2 if version == "release" else 1
        self.pool2 = nn.Sequential(
            nn.MaxPool2d(3, stride=stride2, padding=1), nn.BatchNorm2d(c, affine=affine)
        )
        self.pool3 = nn.Sequential(
            nn.MaxPool2d(3, stride=2, padding=1), nn.BatchNorm2d(c, affine=affine)
        )
        self.drop_prob = 0.0

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, *_unused) -> torch.Tensor:
        s0, s1 = self.pre0(s0), self.pre1(s1)
        x0, x1 = self.branch0(s0), self.branch1(s1)
        x2 = self.pool2(s0 if self.version == "release" else x0 + x1)
        x3 = self.pool3(s1)
        if self.training and self.drop_prob > 0:
            x0, x1, x2, x3 = (drop_path(x, self.drop_prob) for x in (x0, x1, x2, x3))
        return torch.cat([x0, x1, x2, x3], dim=1)
