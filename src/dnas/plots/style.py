"""What the figures share: the colours, the matplotlib style, saving, small helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dnas.io import atomic_path  # noqa: E402

# Colours of the op families, used for the edges of `cells.png`.
FAMILY_COLORS = {
    "conv": "#1f77b4",
    "pool": "#2ca02c",
    "skip": "#ff7f0e",
    "none": "#9a9a9a",
    "other": "#9467bd",
}
FAMILY_LABELS = {
    "conv": "convolution",
    "pool": "pooling",
    "skip": "skip / identity",
    "none": "none (zero)",
    "other": "other",
}
# Colours of the series in the curve figures.
SERIES_COLORS = {
    "train": "#1f77b4",
    "valid": "#ff7f0e",
    "test": "#d62728",
    "entropy": "#9467bd",
    "top_prob": "#2ca02c",
}

_STYLE = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "svg.hashsalt": "dnas",
}


def op_family(op: str) -> str:
    """The family an op belongs to: "conv", "pool", "skip", "none" or "other"."""
    name = op.lower()
    if name in ("none", "zero", "zeroize", "zeros"):
        return "none"
    if "skip" in name or "identity" in name:
        return "skip"
    if "pool" in name:
        return "pool"
    if "conv" in name:
        return "conv"
    return "other"


@contextmanager
def style() -> Iterator[None]:
    with plt.style.context("default"), plt.rc_context(_STYLE):
        yield


def save(fig: Figure, target: Path, dpi: int) -> Path:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None}, facecolor="white")
    return target


def message_figure(title: str, message: str) -> Figure:
    fig = plt.figure(figsize=(6, 2.5))
    fig.suptitle(title, fontsize=13, fontweight="bold")
    fig.text(0.5, 0.45, message, ha="center", va="center", fontsize=11, color="#555555")
    return fig


def fmt(v: float) -> str:
    v = float(v)
    if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4):
        return f"{v:.2e}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
