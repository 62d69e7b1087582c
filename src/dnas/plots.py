"""Figures for the `plots` stage: the searched cells, the architecture weights, the curves.

`make_plots` reads what the other stages wrote (`genotype.json` and the dvclive directories of
the search and the retraining) and writes four PNGs:

* `cells.png` - every cell of the genotype drawn as a graph, edges labelled and coloured by op;
* `arch_probs.png` - how the op probabilities of every edge moved over the search epochs;
* `search_curves.png` - loss, accuracy, Gumbel temperature and learning rate of the search;
* `train_curves.png` - loss, accuracy and learning rate of the retraining.

Only matplotlib (Agg backend) is used. The figures are drawn under matplotlib's default style,
whatever the user's matplotlibrc says, and saved without the "Software" PNG chunk, so the same
inputs give byte-identical files and DVC can skip whatever depends on them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import RendererAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from dnas.errors import UserError  # noqa: E402
from dnas.io import atomic_path  # noqa: E402
from dnas.spaces.genotype import load_genotype  # noqa: E402

__all__ = ["make_plots", "op_family"]

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
SERIES_COLORS = {"train": "#1f77b4", "valid": "#ff7f0e", "test": "#d62728"}
PANEL_TITLES = {
    "loss": "Loss",
    "acc": "Accuracy (%)",
    "tau": "Gumbel-softmax temperature τ",
    "lr": "Learning rate",
}
Y_LABELS = {"loss": "loss", "acc": "accuracy (%)", "tau": "τ", "lr": "learning rate"}
PANEL_ORDER = ["loss", "acc", "tau", "lr"]
SERIES_ORDER = ["train", "valid", "test"]

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


def make_plots(
    genotype: Path, search_dir: Path, train_dir: Path, out_dir: Path, dpi: int = 120
) -> list[Path]:
    """Draw the four figures of the pipeline into `out_dir`; return the paths written.

    `genotype` is the `genotype.json` of the search stage, `search_dir` and `train_dir` the
    dvclive directories of the search and the retraining (`dvclive/search`, `dvclive/train`).
    A missing input file or directory raises `UserError`; a metric that was never logged (a
    TSV that is absent) is simply left out of its figure.
    """
    genotype, search_dir, train_dir, out_dir = map(Path, (genotype, search_dir, train_dir, out_dir))
    geno = _load_genotype(genotype)
    for d, stage in ((search_dir, "search"), (train_dir, "train")):
        if not d.is_dir():
            raise UserError(
                f"{d} not found: it is written by the `{stage}` stage; "
                f"run `dvc repro {stage}` (or `dvc repro`) first"
            )
    rows = _load_arch_probs(search_dir / "plots" / "custom" / "arch_probs.json", geno)

    out_dir = Path(out_dir)
    written: list[Path] = []
    with _style():
        figures = [
            ("cells.png", lambda: _cells_figure(geno)),
            ("arch_probs.png", lambda: _arch_probs_figure(rows, geno)),
            ("search_curves.png", lambda: _curves_figure(search_dir, "Architecture search")),
            ("train_curves.png", lambda: _curves_figure(train_dir, "Retraining")),
        ]
        for name, draw in figures:
            fig = draw()
            try:
                written.append(_save(fig, out_dir / name, dpi))
            finally:
                plt.close(fig)
    return written


# --------------------------------------------------------------------------------------------
# Input loading


def _load_genotype(path: Path) -> dict[str, Any]:
    """The genotype as JSON, validated by the library's loader (UserError if missing/bad)."""
    return load_genotype(path).to_json()


def _load_arch_probs(path: Path, geno: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows {epoch, cell, edge, op, prob}; without a history, the final probs of the genotype."""
    if path.is_file():
        try:
            rows = json.loads(path.read_text())
            return [
                {
                    "epoch": int(r["epoch"]),
                    "cell": str(r["cell"]),
                    "edge": str(r["edge"]),
                    "op": str(r["op"]),
                    "prob": float(r["prob"]),
                }
                for r in rows
            ]
        except (
            OSError,
            UnicodeDecodeError,
            json.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
        ) as exc:
            raise UserError(
                f"{path} is not a list of {{epoch, cell, edge, op, prob}} rows ({exc}); "
                "rerun `dvc repro search`"
            ) from None
    rows = []
    for cell, edges in (geno.get("probs") or {}).items():
        for edge, ops in edges.items():
            for op, prob in ops.items():
                rows.append({"epoch": 0, "cell": cell, "edge": edge, "op": op, "prob": prob})
    return rows


def _read_series(path: Path) -> pd.Series:
    """A dvclive metric TSV (`step` and a value column) as a Series indexed by step."""
    try:
        df = pd.read_csv(path, sep="\t")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{path} is not a dvclive metric TSV ({exc})") from None
    value_cols = [c for c in df.columns if c not in ("step", "timestamp")]
    if "step" not in df.columns or not value_cols:
        raise UserError(f"{path} is not a dvclive metric TSV (expected a `step` column)")
    col = path.stem if path.stem in value_cols else value_cols[-1]
    steps = pd.to_numeric(df["step"], errors="coerce")
    values = pd.to_numeric(df[col], errors="coerce")
    s = pd.Series(values.to_numpy(), index=steps.to_numpy(), name=col).dropna()
    s = s[~s.index.isna()]
    # A resumed run appends the steps it redoes: keep the last value logged for each step.
    s = s[~s.index.duplicated(keep="last")].sort_index()
    return s


def _metric_panels(run_dir: Path) -> list[tuple[str, list[tuple[str, pd.Series]]]]:
    """Group the metric TSVs of a dvclive dir: one panel per folder (loss/, acc/) or file."""
    root = run_dir / "plots" / "metrics"
    groups: dict[str, list[tuple[str, pd.Series]]] = {}
    if root.is_dir():
        for path in sorted(root.rglob("*.tsv")):
            rel = path.relative_to(root).with_suffix("")
            panel = "/".join(rel.parts[:-1]) if len(rel.parts) > 1 else rel.parts[0]
            series = _read_series(path)
            if len(series):
                groups.setdefault(panel, []).append((rel.parts[-1], series))

    def panel_key(name: str) -> tuple[int, str]:
        return (PANEL_ORDER.index(name) if name in PANEL_ORDER else len(PANEL_ORDER), name)

    def series_key(item: tuple[str, pd.Series]) -> tuple[int, str]:
        name = item[0]
        return (SERIES_ORDER.index(name) if name in SERIES_ORDER else len(SERIES_ORDER), name)

    return [(p, sorted(groups[p], key=series_key)) for p in sorted(groups, key=panel_key)]


# --------------------------------------------------------------------------------------------
# Saving


@contextmanager
def _style() -> Iterator[None]:
    with plt.style.context("default"), plt.rc_context(_STYLE):
        yield


def _save(fig: Figure, target: Path, dpi: int) -> Path:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None}, facecolor="white")
    return target


def _message_figure(title: str, message: str) -> Figure:
    fig = plt.figure(figsize=(6, 2.5))
    fig.suptitle(title, fontsize=13, fontweight="bold")
    fig.text(0.5, 0.45, message, ha="center", va="center", fontsize=11, color="#555555")
    return fig


# --------------------------------------------------------------------------------------------
# cells.png

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


def _cells_figure(geno: dict[str, Any]) -> Figure:
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

    heading = "Searched cells" + (f" ({space})" if space else "")
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


# --------------------------------------------------------------------------------------------
# arch_probs.png

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


def _arch_probs_figure(rows: list[dict[str, Any]], geno: dict[str, Any]) -> Figure:
    if not rows:
        return _message_figure("Architecture probabilities", "no arch_probs logged")
    df = pd.DataFrame(rows)
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

    nrows = max(shape[0] for *_, shape in blocks)
    width_ratios: list[float] = []
    col0 = []
    for k, (*_, shape) in enumerate(blocks):
        if k:
            width_ratios.append(0.25)
        col0.append(len(width_ratios))
        width_ratios.extend([1.0] * shape[1])
    # The legend goes into the empty top right corner of the last block where there is one,
    # else below the grid.
    last_cell, last_edges, last_slots, last_shape = blocks[-1]
    used_top = [c for (r, c) in last_slots.values() if r == 0]
    free_cols = last_shape[1] - 1 - max(used_top, default=-1)
    n_entries = len(ops) + 1
    legend_inside = nrows >= 2 and free_cols >= 1
    fig_w = max(1.75 * sum(width_ratios) + 0.8, 7.0)
    legend_ncol = min(n_entries, max(1, int((fig_w - 0.5) / 1.9)))
    bottom_in = 0.6 if legend_inside else 0.6 + 0.25 * math.ceil(n_entries / legend_ncol)
    title_in = 1.0 if len(blocks) > 1 or blocks[0][0] != "cell" else 0.7
    fig_h = 1.45 * nrows + title_in + bottom_in
    fig = plt.figure(figsize=(fig_w, fig_h))
    gs = fig.add_gridspec(
        nrows,
        len(width_ratios),
        width_ratios=width_ratios,
        left=0.55 / fig_w,
        right=1 - 0.15 / fig_w,
        top=1 - title_in / fig_h,
        bottom=bottom_in / fig_h,
        wspace=0.35,
        hspace=0.55,
    )
    groups = df.groupby(["cell", "edge", "op"], sort=False)
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
            lo, hi = ax.get_ylim()
            pad = max(0.03 * (hi - lo), 0.004)
            ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
            ax.tick_params(labelsize=7, length=2, pad=1.5)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
            label = edge.replace("<-", "←")
            op = chosen.get((cell, edge))
            if op is not None:
                ax.set_title(
                    f"{label}  ✓ {op}",
                    fontsize=8,
                    fontweight="bold",
                    pad=3,
                    color=colors.get(op, "black"),
                )
            else:
                ax.set_title(label, fontsize=8.5, pad=3)
            if c == 0:
                ax.set_ylabel("prob", fontsize=8, labelpad=1)
            if r == shape[0] - 1:
                ax.set_xlabel("epoch", fontsize=8, labelpad=1)
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
        fig.legend(
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


# --------------------------------------------------------------------------------------------
# search_curves.png / train_curves.png


def _curves_figure(run_dir: Path, title: str) -> Figure:
    panels = _metric_panels(run_dir)
    if not panels:
        return _message_figure(title, "no metrics logged")
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
                label=f"{label} (last {_fmt(s.iloc[-1])})"
                if len(series) > 1
                else f"last {_fmt(s.iloc[-1])}",
            )
        if name == "acc":
            for label, s in series:
                if label in ("valid", "test"):
                    i = s.idxmax()
                    at_end = len(s) > 1 and i == s.index[-1]
                    at_start = len(s) > 1 and i == s.index[0]
                    ax.annotate(
                        f"best {_fmt(s[i])} @ {int(i)}",
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


def _fmt(v: float) -> str:
    v = float(v)
    if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4):
        return f"{v:.2e}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
