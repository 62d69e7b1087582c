"""search_curves.png / train_curves.png: the dvclive metrics of a run, a panel per metric.

A panel per dvclive folder (`loss/`, `acc/`, `ppl/`, `arch/`) or top-level metric (`tau`, `lr`).
What would be a flat line says nothing a number does not: a metric constant over the run (a
fixed learning rate, the temperature of a search without Gumbel sampling) gets no panel and is
named in the subtitle instead. The language-model retraining's `asgd` flag is not a panel
either: the epoch where weight averaging began is a vertical line on the others. Perplexity
is exp(loss), so where `ppl/` is logged the loss panel is left out.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dnas.plots.inputs import metric_panels
from dnas.plots.style import SERIES_COLORS, fmt, message_figure, plt

PANEL_TITLES = {
    "loss": "Loss",
    "ppl": "Perplexity",
    "acc": "Accuracy (%)",
    "arch": "Op distributions (mean over edges)",
    "tau": "Gumbel-softmax temperature τ",
    "lr": "Learning rate",
}
Y_LABELS = {
    "loss": "loss",
    "ppl": "perplexity",
    "acc": "accuracy (%)",
    "arch": "",
    "tau": "τ",
    "lr": "learning rate",
}
# Short names of constant metrics in the subtitle; labels of the `arch/` series.
NOTE_NAMES = {"tau": "τ", "lr": "lr"}
SERIES_LABELS = {"entropy": "entropy / log K", "top_prob": "top-op probability"}
ASGD = "asgd"


def is_constant(s: pd.Series) -> bool:
    """At least two values, all equal (up to float rounding)."""
    values = s.to_numpy(dtype=float)
    return len(values) >= 2 and float(np.ptp(values)) <= 1e-9 * max(
        1.0, float(np.abs(values).max())
    )


def split_panels(
    panels: list[tuple[str, list[tuple[str, pd.Series]]]],
) -> tuple[list[tuple[str, list[tuple[str, pd.Series]]]], list[str], float | None]:
    """The panels to draw, the notes for the subtitle (constants, ASGD) and the epoch where
    weight averaging began (None: no `asgd` metric, or averaging never began)."""
    kept, constants, notes, asgd_from = [], [], [], None
    names = {name for name, _ in panels}
    for name, series in panels:
        if name == ASGD:
            flag = series[0][1]
            on = flag[flag > 0]
            if len(on):
                asgd_from = float(on.index[0])
                notes.append(f"weights averaged (ASGD) from epoch {int(asgd_from)}")
            else:
                notes.append("no weight averaging (ASGD)")
        elif name == "loss" and "ppl" in names:
            continue
        elif all(is_constant(s) for _, s in series):
            what = NOTE_NAMES.get(name, name)
            if len(series) == 1:
                constants.append(f"{what} = {fmt(series[0][1].iloc[0])}")
            else:
                each = ", ".join(f"{label} {fmt(s.iloc[0])}" for label, s in series)
                constants.append(f"{what} ({each})")
        else:
            kept.append((name, series))
    if constants:
        notes.insert(0, "constant over the run: " + ", ".join(constants))
    return kept, notes, asgd_from


def curves_figure(run_dir: Path, title: str, n_ops: int | None = None) -> Figure:
    """The metrics of the dvclive directory `run_dir`; `n_ops`, where known, draws the uniform
    1/K line in the `arch/` panel."""
    panels, notes, asgd_from = split_panels(metric_panels(run_dir))
    subtitle = "; ".join(notes)
    if not panels:
        return message_figure(title, subtitle or "no metrics logged")
    n = len(panels)
    ncols = n if n <= 3 else math.ceil(n / 2)
    nrows = math.ceil(n / ncols)
    fig_w = 4.6 * ncols
    # The subtitle wrapped to the figure's width (a 10 pt character is about 0.6 x 10 pt wide).
    lines = textwrap.wrap(subtitle, max(30, int(fig_w * 72 / 6.5))) if subtitle else []
    head = 0.55 + 0.2 * len(lines)  # inches above the panels for the title and the subtitle
    fig_h = 3.4 * nrows + 0.5 + (head - 0.4 if lines else 0.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(fig_w, fig_h), squeeze=False)
    for ax, (name, series) in zip(axes.flat, panels):
        for label, s in series:
            color = SERIES_COLORS.get(label) if len(series) > 1 else "#444444"
            few = len(s) <= 30
            shown = SERIES_LABELS.get(label, label) if name == "arch" else label
            ax.plot(
                s.index,
                s.to_numpy(),
                color=color,
                lw=1.6,
                marker="o" if few else None,
                ms=3,
                label=f"{shown} (last {fmt(s.iloc[-1])})"
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
        if name in ("loss", "ppl"):  # falling by orders of magnitude reads better on a log axis
            values = np.concatenate([v.to_numpy() for _, v in series])
            if values.min() > 0 and values.max() / values.min() > 30:
                ax.set_yscale("log")
        if name == "arch":
            values = np.concatenate([v.to_numpy() for _, v in series])
            if n_ops and n_ops > 1:
                ax.axhline(
                    1 / n_ops, color="black", ls=":", lw=1.0, label=f"uniform 1/K, K={n_ops}"
                )
            if values.min() >= -1e-6 and values.max() <= 1 + 1e-6:  # normalised: the whole range
                ax.set_ylim(-0.02, 1.08)
        if name == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if asgd_from is not None:
            ax.axvline(asgd_from, color="#555555", ls="--", lw=1.0, label="ASGD from here")
        ax.set_title(PANEL_TITLES.get(name, name))
        ax.set_xlabel("epoch")
        ax.set_ylabel(Y_LABELS.get(name, name.split("/")[-1]))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best")
    for ax in list(axes.flat)[n:]:
        ax.remove()
    if lines:
        fig.text(0.5, 1 - 0.1 / fig_h, title, ha="center", va="top", fontsize=14, fontweight="bold")
        fig.text(
            0.5,
            1 - 0.45 / fig_h,
            "\n".join(lines),
            ha="center",
            va="top",
            fontsize=10,
            color="#444444",
            linespacing=1.3,
        )
        fig.tight_layout(rect=(0, 0, 1, 1 - head / fig_h))
    else:
        fig.suptitle(title, fontsize=14, fontweight="bold")
        fig.tight_layout()
    return fig
