"""search_curves.png / train_curves.png: the dvclive metrics of a run, a panel per metric."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dnas.plots.inputs import metric_panels
from dnas.plots.style import SERIES_COLORS, fmt, message_figure, plt

PANEL_TITLES = {
    "loss": "Loss",
    "acc": "Accuracy (%)",
    "tau": "Gumbel-softmax temperature τ",
    "lr": "Learning rate",
}
Y_LABELS = {"loss": "loss", "acc": "accuracy (%)", "tau": "τ", "lr": "learning rate"}


def curves_figure(run_dir: Path, title: str) -> Figure:
    panels = metric_panels(run_dir)
    if not panels:
        return message_figure(title, "no metrics logged")
    n = len(panels)
    ncols = n if n <= 3 else math.ceil(n / 2)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows + 0.5), squeeze=False)
    for ax, (name, series) in zip(axes.flat, panels):
        for label, s in series:
            color = SERIES_COLORS.get(label) if len(series) > 1 else "#444444"
            few = len(s) <= 30
            ax.plot(
                s.index,
                s.to_numpy(),
                color=color,
                lw=1.6,
                marker="o" if few else None,
                ms=3,
                label=f"{label} (last {fmt(s.iloc[-1])})"
                if len(series) > 1
                else f"last {fmt(s.iloc[-1])}",
            )
        if name == "acc":
            for label, s in series:
                if label in ("valid", "test"):
                    i = s.idxmax()
                    at_end = len(s) > 1 and i == s.index[-1]
                    at_start = len(s) > 1 and i == s.index[0]
                    ax.annotate(
                        f"best {fmt(s[i])} @ {int(i)}",
                        (i, s[i]),
                        xytext=(0, 8),
                        textcoords="offset points",
                        fontsize=8,
                        ha="right" if at_end else "left" if at_start else "center",
                        color=SERIES_COLORS.get(label, "black"),
                    )
                    ax.plot(
                        [i], [s[i]], marker="*", ms=10, color=SERIES_COLORS.get(label), zorder=5
                    )
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi + 0.08 * (hi - lo))
        if name == "loss":  # a loss that falls by orders of magnitude reads better on a log axis
            values = np.concatenate([v.to_numpy() for _, v in series])
            if values.min() > 0 and values.max() / values.min() > 30:
                ax.set_yscale("log")
        if name == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.set_title(PANEL_TITLES.get(name, name))
        ax.set_xlabel("epoch")
        ax.set_ylabel(Y_LABELS.get(name, name.split("/")[-1]))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best")
    for ax in list(axes.flat)[n:]:
        ax.remove()
    fig.suptitle(title, fontsize=14, fontweight="bold")
    fig.tight_layout()
    return fig
