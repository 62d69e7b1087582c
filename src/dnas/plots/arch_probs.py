"""arch_probs.png: how the op probabilities of every edge moved over the search epochs."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from dnas.plots.style import message_figure, op_family, plt

TICK_FONT = 8  # points: 12 px at the default 110 dpi
PANEL_W, PANEL_H = 1.75, 1.45  # inches per edge panel (with its spacing)
# The y-range of every panel, fixed: a range fitted to the data made a search that did not move
# (every probability 0.19-0.21) look like one that did; on 0-1 a flat search is flat lines on
# the dotted uniform level 1/K.
Y_RANGE = (0.0, 1.0)

_EDGE_RE = re.compile(r"^\s*(\d+)\s*<-\s*(\d+)\s*$")


def _edge_key(edge: str) -> tuple[int, int, str]:
    m = _EDGE_RE.match(edge)
    return (int(m.group(1)), int(m.group(2)), edge) if m else (1 << 30, 1 << 30, edge)


def _op_colors(ops: Sequence[str]) -> dict[str, Any]:
    """A colour per op; "none" is always grey, the others take the tab10 (tab20) colours."""
    real = [op for op in ops if op_family(op) != "none"]
    cmap = plt.get_cmap("tab10" if len(real) <= 9 else "tab20")
    palette = [cmap(i) for i in range(cmap.N) if i not in ((7,) if cmap.N == 10 else (14, 15))]
    colors = {op: palette[i % len(palette)] for i, op in enumerate(real)}
    colors.update({op: "#8c8c8c" for op in ops if op_family(op) == "none"})
    return colors


def arch_probs_figure(rows: list[dict[str, Any]], geno: dict[str, Any]) -> Figure:
    """A panel per edge (per cell, a row per target node and a column per source node), one
    line per op and a dotted line at the uniform level 1/K; all panels share the fixed y-range
    0-1 so that edges and runs compare at a glance. The legend
    sits in an empty corner of the grid where it fits there without covering a panel, else
    below the grid."""
    if not rows:
        return message_figure("Architecture probabilities", "no arch_probs logged")
    df = pd.DataFrame(rows)
    fig = _draw(df, geno, legend_inside=True)
    if fig is None:
        fig = _draw(df, geno, legend_inside=False)
    assert fig is not None
    return fig


def _draw(df: pd.DataFrame, geno: dict[str, Any], legend_inside: bool) -> Figure | None:
    """The figure; None where the legend was to go inside but would cover a panel there."""
    cell_order = [c for c in geno["cells"] if c in set(df["cell"])]
    cell_order += sorted(set(df["cell"]) - set(cell_order))
    known_ops = [str(o) for o in geno.get("ops") or []]
    ops = [o for o in known_ops if o in set(df["op"])]
    ops += sorted(set(df["op"]) - set(ops))
    colors = _op_colors(ops)
    chosen = {
        (name, f"{int(cell['inputs']) + k}<-{int(src)}"): str(op)
        for name, cell in geno["cells"].items()
        for k, node in enumerate(cell["nodes"])
        for op, src in node
    }
    epochs = sorted(set(df["epoch"]))
    single = len(epochs) == 1

    # One block of subplots per cell: a row per target node, a column per source node (the
    # lower triangle of the DAG); edges that are not "i<-j" go into a plain grid.
    blocks = []
    for cell in cell_order:
        edges = sorted(set(df.loc[df["cell"] == cell, "edge"]), key=_edge_key)
        if all(_EDGE_RE.match(e) for e in edges):
            targets = sorted({_edge_key(e)[0] for e in edges})
            sources = sorted({_edge_key(e)[1] for e in edges})
            slots = {
                e: (targets.index(_edge_key(e)[0]), sources.index(_edge_key(e)[1])) for e in edges
            }
            shape = (len(targets), len(sources))
        else:
            ncols = min(len(edges), 5)
            slots = {e: divmod(k, ncols) for k, e in enumerate(edges)}
            shape = (math.ceil(len(edges) / ncols), ncols)
        blocks.append((cell, edges, slots, shape))
    groups = df.groupby(["cell", "edge", "op"], sort=False)

    nrows = max(shape[0] for *_, shape in blocks)
    width_ratios: list[float] = []
    col0 = []
    for k, (*_, shape) in enumerate(blocks):
        if k:
            width_ratios.append(0.25)
        col0.append(len(width_ratios))
        width_ratios.extend([1.0] * shape[1])
    # The legend goes into the empty top right corner of the last block where there is one
    # (and it fits: checked after drawing), else below the grid.
    last_cell, last_edges, last_slots, last_shape = blocks[-1]
    used_top = [c for (r, c) in last_slots.values() if r == 0]
    free_cols = last_shape[1] - 1 - max(used_top, default=-1)
    n_entries = len(ops) + 1
    legend_inside = legend_inside and nrows >= 2 and free_cols >= 1
    fig_w = max(PANEL_W * sum(width_ratios) + 0.8, 7.0)
    legend_ncol = min(n_entries, max(1, int((fig_w - 0.5) / 1.9)))
    bottom_in = 0.6 if legend_inside else 0.6 + 0.25 * math.ceil(n_entries / legend_ncol)
    title_in = 1.0 if len(blocks) > 1 or blocks[0][0] != "cell" else 0.7
    fig_h = PANEL_H * nrows + title_in + bottom_in
    fig = plt.figure(figsize=(fig_w, fig_h))
    gs = fig.add_gridspec(
        nrows,
        len(width_ratios),
        width_ratios=width_ratios,
        left=0.6 / fig_w,
        right=1 - 0.15 / fig_w,
        top=1 - title_in / fig_h,
        bottom=bottom_in / fig_h,
        wspace=0.3,
        hspace=0.6,
    )
    for (cell, edges, slots, shape), c0 in zip(blocks, col0):
        first_ax = None
        for edge in edges:
            r, c = slots[edge]
            ax = fig.add_subplot(gs[r, c0 + c])
            first_ax = first_ax or ax
            edge_ops = [o for o in ops if (cell, edge, o) in groups.groups]
            for op in edge_ops:
                g = groups.get_group((cell, edge, op)).sort_values("epoch")
                g = g.drop_duplicates("epoch", keep="last")
                is_chosen = chosen.get((cell, edge)) == op
                ax.plot(
                    g["epoch"],
                    g["prob"],
                    color=colors[op],
                    lw=2.4 if is_chosen else 1.3,
                    ls="--" if op_family(op) == "none" else "-",
                    marker="o" if single or len(g) <= 12 else None,
                    ms=2.5,
                    zorder=3 if is_chosen else 2,
                )
            k = max(1, len(edge_ops))
            ax.axhline(1 / k, color="black", ls=":", lw=1.0, zorder=0)
            ax.set_ylim(*Y_RANGE)
            ax.tick_params(labelsize=TICK_FONT, length=2, pad=1.5)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
            ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
            if c > 0:  # the y-range is the figure's: its numbers once per row of a block
                ax.tick_params(labelleft=False)
            label = edge.replace("<-", "←")
            op = chosen.get((cell, edge))
            if op is not None:
                ax.set_title(
                    f"{label}  ✓ {op}",
                    fontsize=8.5,
                    fontweight="bold",
                    pad=3,
                    color=colors.get(op, "black"),
                )
            else:
                ax.set_title(label, fontsize=8.5, pad=3)
            if c == 0:
                ax.set_ylabel("prob", fontsize=8.5, labelpad=1)
            if r == shape[0] - 1 or (r + 1, c) not in slots.values():
                ax.set_xlabel("epoch", fontsize=8.5, labelpad=1)
        if first_ax is not None and (len(blocks) > 1 or cell != "cell"):
            bb = gs[0, c0 : c0 + shape[1]].get_position(fig)
            fig.text(
                (bb.x0 + bb.x1) / 2,
                bb.y1 + 0.42 / fig_h,
                f"{cell} cell",
                ha="center",
                va="bottom",
                fontsize=12,
                fontweight="bold",
            )
    fig.suptitle(
        "Architecture probabilities during the search",
        fontsize=14,
        fontweight="bold",
        y=1 - 0.08 / fig_h,
        va="top",
    )
    handles = [
        Line2D([], [], color=colors[o], lw=2, ls="--" if op_family(o) == "none" else "-")
        for o in ops
    ]
    handles.append(Line2D([], [], color="black", ls=":", lw=1))
    labels = [*ops, "uniform 1/K"]
    if legend_inside:
        c0 = col0[-1]
        bb = gs[0, c0 + last_shape[1] - free_cols : c0 + last_shape[1]].get_position(fig)
        legend = fig.legend(
            handles,
            labels,
            loc="upper right",
            bbox_to_anchor=(bb.x1, bb.y1),
            ncol=1 if n_entries <= 6 or free_cols < 2 else 2,
            fontsize=9,
            title="op (thick: chosen)",
            title_fontsize=9,
            frameon=False,
        )
        if covers_axes(fig, legend):
            plt.close(fig)
            return None
    else:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=legend_ncol,
            fontsize=9,
            bbox_to_anchor=(0.5, 0.1 / fig_h),
            title="op (thick: chosen)",
            title_fontsize=9,
            frameon=False,
        )
    return fig


def covers_axes(fig: Figure, artist: Any) -> bool:
    """Whether `artist` (a legend) overlaps any axes of `fig`, their titles and labels included."""
    renderer = fig.canvas.get_renderer()
    box = artist.get_window_extent(renderer)
    return any(box.overlaps(ax.get_tightbbox(renderer)) for ax in fig.axes)
