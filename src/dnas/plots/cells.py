"""cells.png: every cell of a genotype drawn as a graph, edges labelled and coloured by op."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch

from dnas.plots.style import FAMILY_COLORS, FAMILY_LABELS, op_family, plt
from dnas.spaces.published import SEARCHED
from dnas.spaces.registry import find_space

INCH_PER_UNIT = 0.85  # scale of the cell drawings
NODE_R = 0.36  # node radius, data units
COL_DX = 2.3  # distance between the columns of nodes
ROW_DY = 1.35  # distance between the nodes of a column
EDGE_FONT = 7.5
NODE_FONT = 10
_RADS = (0.0, 0.22, -0.22, 0.4, -0.4, 0.6, -0.6, 0.8, -0.8)
_TS = (0.58, 0.5, 0.66, 0.42, 0.74, 0.34, 0.8, 0.27)  # label positions along an edge
_T_PREF = 0.58  # a little towards the target, where the edges into a node fan apart


@dataclass
class _Edge:
    src: int
    dst: int
    op: str | None  # None: an unlabelled edge into the cell output
    rad: float = 0.0
    t: float = 0.5
    box: tuple[float, float, float, float] | None = None  # label box x0, y0, x1, y1
    curve: np.ndarray | None = None  # sampled points of the drawn curve


def _text_size(text: str, size: float) -> tuple[float, float]:
    """Width and height of `text` in data units of the cell drawings."""
    renderer = _text_renderer()
    w, h, _ = renderer.get_text_width_height_descent(text, FontProperties(size=size), False)
    per_unit = 72 * INCH_PER_UNIT
    return w / per_unit, h / per_unit


_RENDERER: list[RendererAgg] = []


def _text_renderer() -> RendererAgg:
    if not _RENDERER:
        _RENDERER.append(RendererAgg(10, 10, 72))
    return _RENDERER[0]


def _bezier(a: np.ndarray, b: np.ndarray, rad: float, s: np.ndarray) -> np.ndarray:
    """Points of matplotlib's `arc3,rad=rad` connection from a to b at parameters s."""
    d = b - a
    c = (a + b) / 2 + rad * np.array([d[1], -d[0]])
    s = s[:, None]
    return (1 - s) ** 2 * a + 2 * (1 - s) * s * c + s**2 * b


def _node_label(node: int, n_in: int, out: int, extra: bool) -> str:
    """c_{k-2}, c_{k-1} -> c_{k} for two-input (DARTS) cells; in -> out otherwise."""
    if node == out:
        if extra:
            return r"$c_{k}$" if n_in == 2 else "out"
        return f"{node}\nout"
    if node < n_in:
        if n_in == 2:
            return (r"$c_{k-2}$", r"$c_{k-1}$")[node]
        return "in" if n_in == 1 else f"in{node}"
    return str(node)


def _layout_cell(cell: dict[str, Any]) -> tuple[dict[int, np.ndarray], list[_Edge], int, bool]:
    """Node positions, edges, the output node and whether it is an extra concat node."""
    n_in = int(cell["inputs"])
    nodes = cell["nodes"]
    edges: list[_Edge] = []
    depth: dict[int, int] = {i: 0 for i in range(n_in)}
    for k, node in enumerate(nodes):
        dst = n_in + k
        srcs = [int(src) for _, src in node]
        depth[dst] = 1 + max((depth.get(s, 0) for s in srcs), default=0)
        edges.extend(_Edge(int(src), dst, str(op)) for op, src in node)
    concat = [int(c) for c in cell.get("concat", [])] or [n_in + len(nodes) - 1]
    if len(concat) == 1 and concat[0] in depth:
        out, extra = concat[0], False
    else:
        out, extra = n_in + len(nodes), True
        depth[out] = 1 + max(depth.get(c, 0) for c in concat)
        edges.extend(_Edge(c, out, None) for c in concat)

    columns: dict[int, list[int]] = {}
    for node in sorted(depth):
        columns.setdefault(depth[node], []).append(node)
    # Columns with fewer nodes than the tallest spread over part of its height, so that the
    # edges fanning out of (or into) them stay apart.
    span = (max(len(m) for m in columns.values()) - 1) * ROW_DY
    pos: dict[int, np.ndarray] = {}
    for col, members in columns.items():
        m = len(members)
        dy = max(ROW_DY, 0.65 * span / (m - 1)) if m > 1 else ROW_DY
        for k, node in enumerate(members):
            pos[node] = np.array([col * COL_DX, ((m - 1) / 2 - k) * dy])
    # A chain of one-node columns would run every skipping edge through the nodes between:
    # stagger such nodes up and down a little.
    singles = [c for c in sorted(columns) if len(columns[c]) == 1 and 0 < c]
    if len(singles) >= 2:
        for k, col in enumerate(singles):
            node = columns[col][0]
            if node != out:
                pos[node] = pos[node] + np.array([0.0, 0.45 * ROW_DY * (1 if k % 2 else -1)])
    return pos, edges, out, extra


def _route_edges(pos: dict[int, np.ndarray], edges: list[_Edge]) -> None:
    """Pick for every edge a curvature and a label position that keep things apart (greedy)."""
    s = np.linspace(0.0, 1.0, 61)
    placed_boxes: list[tuple[float, float, float, float]] = []
    placed_curves: list[np.ndarray] = []
    centres = {n: p for n, p in pos.items()}

    def in_box(pts: np.ndarray, box: tuple[float, float, float, float]) -> bool:
        x0, y0, x1, y1 = box
        return bool(
            np.any((pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1))
        )

    def box_hits_node(box: tuple[float, float, float, float], c: np.ndarray) -> bool:
        x0, y0, x1, y1 = box
        nx, ny = min(max(c[0], x0), x1), min(max(c[1], y0), y1)
        return math.hypot(c[0] - nx, c[1] - ny) < NODE_R + 0.05

    def boxes_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    # Short, labelled edges first: they have the fewest good options.
    order = sorted(
        edges,
        key=lambda e: (e.op is None, float(np.linalg.norm(pos[e.dst] - pos[e.src])), e.dst, e.src),
    )
    for e in order:
        a, b = pos[e.src], pos[e.dst]
        if e.op is not None:
            tw, th = _text_size(e.op, EDGE_FONT)
            pad = 0.25 * EDGE_FONT / (72 * INCH_PER_UNIT)
            half = (tw / 2 + pad + 0.04, th / 2 + pad + 0.04)
        best: tuple[float, float, float, tuple | None, np.ndarray] | None = None
        for rad in _RADS:
            pts = _bezier(a, b, rad, s)
            far = (np.linalg.norm(pts - a, axis=1) > NODE_R) & (
                np.linalg.norm(pts - b, axis=1) > NODE_R
            )
            inner = pts[far]
            cost = 4.0 * abs(rad)
            for n, c in centres.items():
                if n in (e.src, e.dst):
                    continue
                if np.min(np.linalg.norm(inner - c, axis=1)) < NODE_R + 0.12:
                    cost += 100.0
            cost += sum(15.0 for box in placed_boxes if in_box(inner, box))
            for other in placed_curves:  # two curves on top of each other read as one
                dist = np.linalg.norm(inner[:, None, :] - other[None, :, :], axis=2)
                if np.mean(np.min(dist, axis=1) < 0.12) > 0.3:
                    cost += 30.0
            if e.op is None:
                candidates = [(cost, 0.5, None)]
            else:
                candidates = []
                for t in _TS:
                    p = _bezier(a, b, rad, np.array([t]))[0]
                    box = (p[0] - half[0], p[1] - half[1], p[0] + half[0], p[1] + half[1])
                    c2 = cost + 3.0 * abs(t - _T_PREF)
                    c2 += sum(60.0 for n, c in centres.items() if box_hits_node(box, c))
                    c2 += sum(60.0 for other in placed_boxes if boxes_overlap(box, other))
                    c2 += sum(15.0 for other in placed_curves if in_box(other, box))
                    candidates.append((c2, t, box))
            for c2, t, box in candidates:
                if best is None or c2 < best[0] - 1e-9:
                    best = (c2, rad, t, box, inner)
        assert best is not None
        _, e.rad, e.t, e.box, e.curve = best
        placed_curves.append(e.curve)
        if e.box is not None:
            placed_boxes.append(e.box)


def cells_heading(source: str, space: str, cells: Sequence[str]) -> str:
    """The figure's title: which cells these are (searched, or what was retrained instead)."""
    heading = "Searched cells" if source == SEARCHED else f"Trained cells: {source}"
    heading += f" ({space})" if space else ""
    kind = find_space(space)
    if kind is not None and kind.fixed_cells == tuple(cells):
        heading += ", fixed reduction cell"
    return heading


def cells_figure(geno: dict[str, Any], source: str = SEARCHED) -> Figure:
    """The cells of `geno` (a genotype as JSON); `source` (`spaces.published.genotype_source`)
    says in the title where they come from."""
    space = str(geno.get("space") or "")
    cells = geno["cells"]
    panels = []
    for name, cell in cells.items():
        pos, edges, out, extra = _layout_cell(cell)
        _route_edges(pos, edges)
        xs = [p[0] for p in pos.values()]
        ys = [p[1] for p in pos.values()]
        for e in edges:
            xs.extend(e.curve[:, 0])
            ys.extend(e.curve[:, 1])
            if e.box is not None:
                xs.extend((e.box[0], e.box[2]))
                ys.extend((e.box[1], e.box[3]))
        m = NODE_R + 0.15
        lim = (min(xs) - m, max(xs) + m, min(ys) - m, max(ys) + m)
        panels.append((name, cell, pos, edges, out, extra, lim))

    widths = [(lim[1] - lim[0]) * INCH_PER_UNIT for *_, lim in panels]
    height = max((lim[3] - lim[2]) for *_, lim in panels) * INCH_PER_UNIT
    gap, side, top, bottom = 0.5, 0.25, 1.0 if geno.get("arch") else 0.75, 0.55
    fig_w = sum(widths) + gap * (len(panels) - 1) + 2 * side
    fig_h = height + top + bottom
    fig = plt.figure(figsize=(fig_w, fig_h))

    families: set[str] = set()
    x = side
    for (name, cell, pos, edges, out, extra, lim), w in zip(panels, widths):
        h = (lim[3] - lim[2]) * INCH_PER_UNIT
        y = bottom + (height - h) / 2
        ax = fig.add_axes((x / fig_w, y / fig_h, w / fig_w, h / fig_h))
        x += w + gap
        ax.set_xlim(lim[0], lim[1])
        ax.set_ylim(lim[2], lim[3])
        ax.set_aspect("equal")
        ax.axis("off")
        if len(cells) > 1 or name != "cell":
            fig.text(
                (x - gap - w / 2) / fig_w,
                (bottom + height + 0.12) / fig_h,
                f"{name} cell",
                ha="center",
                va="bottom",
                fontsize=12,
                fontweight="bold",
            )
        families.update(_draw_cell(ax, int(cell["inputs"]), pos, edges, out, extra))

    heading = cells_heading(source, space, list(cells))
    fig.text(0.5, 1 - 0.12 / fig_h, heading, ha="center", va="top", fontsize=14, fontweight="bold")
    if geno.get("arch"):
        fig.text(
            0.5,
            1 - 0.45 / fig_h,
            str(geno["arch"]),
            ha="center",
            va="top",
            fontsize=9,
            family="monospace",
            color="#333333",
        )
    order = [f for f in FAMILY_COLORS if f in families]
    handles = [
        Line2D([], [], color=FAMILY_COLORS[f], lw=2, ls="--" if f == "none" else "-") for f in order
    ]
    fig.legend(
        handles,
        [FAMILY_LABELS[f] for f in order],
        loc="lower center",
        ncol=max(1, len(order)),
        bbox_to_anchor=(0.5, 0.08 / fig_h),
        fontsize=9,
        frameon=False,
    )
    return fig


def _draw_cell(
    ax: Any, n_in: int, pos: dict[int, np.ndarray], edges: list[_Edge], out: int, extra: bool
) -> set[str]:
    """Draw one cell into `ax`; return the op families it uses."""
    shrink = NODE_R * INCH_PER_UNIT * 72 + 1.5
    families = set()
    for e in edges:
        fam = op_family(e.op) if e.op is not None else None
        if fam is not None:
            families.add(fam)
        color = FAMILY_COLORS[fam] if fam else "#777777"
        arrow = FancyArrowPatch(
            tuple(pos[e.src]),
            tuple(pos[e.dst]),
            connectionstyle=f"arc3,rad={e.rad}",
            arrowstyle="-|>",
            mutation_scale=11,
            shrinkA=shrink,
            shrinkB=shrink,
            color=color,
            lw=1.0 if fam in (None, "none") else 1.6,
            linestyle="--" if fam == "none" else "-",
            zorder=2,
        )
        ax.add_patch(arrow)
        if e.op is not None:
            p = _bezier(pos[e.src], pos[e.dst], e.rad, np.array([e.t]))[0]
            ax.text(
                p[0],
                p[1],
                e.op,
                ha="center",
                va="center",
                fontsize=EDGE_FONT,
                parse_math=False,
                color="#555555" if fam == "none" else "black",
                zorder=4,
                bbox=dict(
                    boxstyle="round,pad=0.25",
                    fc="white",
                    ec=color,
                    lw=0.8,
                    ls="--" if fam == "none" else "-",
                ),
            )
    for node, p in pos.items():
        is_out = node == out
        if is_out:
            fc, ec = "#fdd9a8", "#c46a00"
        elif node < n_in:
            fc, ec = "#d4edc9", "#3a7d2c"
        else:
            fc, ec = "#d6e6f5", "#2f6ea3"
        ax.add_patch(Circle(tuple(p), NODE_R, fc=fc, ec=ec, lw=1.5, zorder=5))
        label = _node_label(node, n_in, out, extra)
        ax.text(
            p[0],
            p[1],
            label,
            ha="center",
            va="center",
            zorder=6,
            fontsize=NODE_FONT if "\n" not in label else NODE_FONT - 2,
        )
    return families
