"""Tests for dnas.plots: the four PNGs exist, decode, are deterministic; errors are clear."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pytest

from dnas.errors import UserError
from dnas.plots import make_plots, op_family
from dnas.spaces import ops

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["cells.png", "arch_probs.png", "search_curves.png", "train_curves.png"]

DARTS_OPS = list(ops.DARTS_OPS)
NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
NB201_ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
)


def _edges(inputs: int, n_nodes: int) -> list[str]:
    return [f"{inputs + i}<-{j}" for i in range(n_nodes) for j in range(inputs + i)]


def _probs(edges: list[str], ops: list[str], epoch: int, salt: int) -> dict[str, dict]:
    out = {}
    for e, edge in enumerate(edges):
        w = [math.exp(0.15 * epoch * math.sin(1.3 * k + 0.7 * e + salt)) for k in range(len(ops))]
        z = sum(w)
        out[edge] = {op: wk / z for op, wk in zip(ops, w)}
    return out


def darts_genotype() -> dict:
    normal = {
        "inputs": 2,
        "nodes": [
            [["sep_conv_3x3", 0], ["skip_connect", 1]],
            [["sep_conv_3x3", 0], ["sep_conv_5x5", 2]],
            [["skip_connect", 0], ["dil_conv_3x3", 3]],
            [["sep_conv_3x3", 1], ["max_pool_3x3", 4]],
        ],
        "concat": [2, 3, 4, 5],
    }
    reduce = {
        "inputs": 2,
        "nodes": [
            [["max_pool_3x3", 0], ["max_pool_3x3", 1]],
            [["skip_connect", 2], ["max_pool_3x3", 1]],
            [["max_pool_3x3", 0], ["skip_connect", 2]],
            [["skip_connect", 2], ["avg_pool_3x3", 0]],
        ],
        "concat": [2, 3, 4, 5],
    }
    edges = _edges(2, 4)
    return {
        "space": "darts",
        "ops": DARTS_OPS,
        "cells": {"normal": normal, "reduce": reduce},
        "probs": {
            "normal": _probs(edges, DARTS_OPS, 3, 0),
            "reduce": _probs(edges, DARTS_OPS, 3, 1),
        },
        "arch": None,
    }


def nb201_genotype() -> dict:
    cell = {
        "inputs": 1,
        "nodes": [
            [["nor_conv_3x3", 0]],
            [["nor_conv_3x3", 0], ["avg_pool_3x3", 1]],
            [["skip_connect", 0], ["nor_conv_3x3", 1], ["none", 2]],
        ],
        "concat": [3],
    }
    return {
        "space": "nb201",
        "ops": NB201_OPS,
        "cells": {"cell": cell},
        "probs": {"cell": _probs(_edges(1, 3), NB201_OPS, 3, 2)},
        "arch": NB201_ARCH,
    }


@contextmanager
def isolated_dvclive(cwd: Path) -> Iterator[None]:
    """Keep dvclive away from the repository the tests run in.

    Inside a git repository without DVC, `dvclive.Live` runs `dvc init` there and stages the
    files it makes; the tests must never touch the project's checkout. So: no DVC repo at all,
    and the working directory is the temporary one.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr("dvclive.live.get_dvc_repo", lambda: None)
        yield


def write_search_dir(path: Path, geno: dict, epochs: int = 3, with_lr: bool = True) -> None:
    from dvclive import Live

    cells = {name: _edges(c["inputs"], len(c["nodes"])) for name, c in geno["cells"].items()}
    rows = []
    with Live(str(path), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for epoch in range(epochs):
            live.log_metric("loss/train", 2.0 / (epoch + 1))
            live.log_metric("loss/valid", 2.2 / (epoch + 1) + 0.1)
            live.log_metric("acc/train", 30.0 + 15 * epoch)
            live.log_metric("acc/valid", 28.0 + 12 * epoch)
            live.log_metric("tau", 10.0 - 4.5 * epoch)
            if with_lr:
                live.log_metric("lr", 0.025 * (1 + math.cos(math.pi * epoch / epochs)) / 2)
            for s, (cell, edges) in enumerate(cells.items()):
                for edge, ops in _probs(edges, geno["ops"], epoch, s).items():
                    rows.extend(
                        {"epoch": epoch, "cell": cell, "edge": edge, "op": op, "prob": p}
                        for op, p in ops.items()
                    )
            live.log_plot("arch_probs", rows, x="epoch", y="prob", template="linear")
            live.next_step()


def write_train_dir(path: Path, epochs: int = 3, with_lr: bool = False) -> None:
    from dvclive import Live

    with Live(str(path), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for epoch in range(epochs):
            live.log_metric("loss/train", 1.5 / (epoch + 1))
            live.log_metric("loss/test", 1.6 / (epoch + 1))
            live.log_metric("acc/train", 50.0 + 10 * epoch)
            live.log_metric("acc/test", 48.0 + 9 * epoch)
            if with_lr:
                live.log_metric("lr", 0.1 / (epoch + 1))
            live.next_step()


def make_inputs(root: Path, geno: dict, *, with_lr: bool = True) -> tuple[Path, Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    genotype = root / "genotype.json"
    genotype.write_text(json.dumps(geno, indent=2))
    with isolated_dvclive(root):
        write_search_dir(root / "dvclive" / "search", geno, with_lr=with_lr)
        write_train_dir(root / "dvclive" / "train", with_lr=with_lr)
    return genotype, root / "dvclive" / "search", root / "dvclive" / "train"


def check_png(path: Path, min_w: int = 300, min_h: int = 150) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    img = mpimg.imread(path, format="png")
    assert img.ndim == 3 and img.shape[2] in (3, 4), img.shape
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h, (path, img.shape)


@pytest.fixture(scope="module")
def darts_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_inputs(tmp_path_factory.mktemp("darts"), darts_genotype())


@pytest.fixture(scope="module")
def darts_plots(darts_inputs, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The four PNGs of the DARTS inputs at dpi 80."""
    return make_plots(*darts_inputs, tmp_path_factory.mktemp("plots") / "out", dpi=80)


def test_darts_writes_four_valid_pngs(darts_plots: list[Path]) -> None:
    out = darts_plots[0].parent
    assert darts_plots == [out / n for n in NAMES]
    for p in darts_plots:
        check_png(p)
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES), "stray files left behind"
    # Two cells side by side: wider than tall.
    h, w = mpimg.imread(out / "cells.png").shape[:2]
    assert w > h
    # 2 cells x 14 edges in a grid: a sizeable figure.
    h, w = mpimg.imread(out / "arch_probs.png").shape[:2]
    assert w > 800 and h > 300


def test_same_inputs_give_identical_bytes(darts_inputs, darts_plots, tmp_path: Path) -> None:
    again = make_plots(*darts_inputs, tmp_path / "again", dpi=80)
    for pa, pb in zip(darts_plots, again):
        assert pa.name == pb.name
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_dpi_scales_images(darts_inputs, darts_plots, tmp_path: Path) -> None:
    half = make_plots(*darts_inputs, tmp_path / "half", dpi=40)
    for full, small in zip(darts_plots, half):
        w_full = mpimg.imread(full).shape[1]
        w_small = mpimg.imread(small).shape[1]
        assert abs(w_full - 2 * w_small) <= 2, (full.name, w_full, w_small)


def test_nb201_genotype(tmp_path: Path) -> None:
    genotype, search, train = make_inputs(tmp_path / "in", nb201_genotype(), with_lr=False)
    out = tmp_path / "plots"
    written = make_plots(genotype, search, train, out, dpi=80)
    assert [p.name for p in written] == NAMES
    for p in written:
        check_png(p, min_w=250)
    again = make_plots(genotype, search, train, tmp_path / "again", dpi=80)
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in again]


def test_missing_genotype_is_user_error(darts_inputs, tmp_path: Path) -> None:
    _, search, train = darts_inputs
    missing = tmp_path / "nowhere" / "genotype.json"
    with pytest.raises(UserError, match="genotype.json") as info:
        make_plots(missing, search, train, tmp_path / "out", dpi=80)
    assert "dvc repro" in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("which", ["search", "train"])
def test_missing_dvclive_dir_is_user_error(darts_inputs, tmp_path: Path, which: str) -> None:
    genotype, search, train = darts_inputs
    dirs = {"search": search, "train": train}
    dirs[which] = tmp_path / "dvclive" / which
    with pytest.raises(UserError, match=f"dvclive/{which}"):
        make_plots(genotype, dirs["search"], dirs["train"], tmp_path / "out", dpi=80)


def test_corrupt_genotype_is_user_error(darts_inputs, tmp_path: Path) -> None:
    _, search, train = darts_inputs
    bad = tmp_path / "genotype.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="genotype.json"):
        make_plots(bad, search, train, tmp_path / "out", dpi=80)
    bad.write_text(json.dumps({"space": "darts"}))
    with pytest.raises(UserError, match="cells"):
        make_plots(bad, search, train, tmp_path / "out", dpi=80)
    geno = darts_genotype()
    geno["cells"]["normal"]["nodes"][0][0][1] = 7  # node 2 cannot take node 7 as input
    bad.write_text(json.dumps(geno))
    with pytest.raises(UserError, match="normal"):
        make_plots(bad, search, train, tmp_path / "out", dpi=80)


def test_missing_tsvs_and_arch_probs(darts_inputs, tmp_path: Path) -> None:
    """Absent metrics are left out; without arch_probs.json the genotype's probs are used."""
    genotype, search, train = darts_inputs
    search2 = tmp_path / "search"
    shutil.copytree(search, search2)
    (search2 / "plots" / "metrics" / "lr.tsv").unlink()
    shutil.rmtree(search2 / "plots" / "metrics" / "acc")
    (search2 / "plots" / "custom" / "arch_probs.json").unlink()
    train2 = tmp_path / "train"
    train2.mkdir()  # a run that logged nothing yet
    written = make_plots(genotype, search2, train2, tmp_path / "out", dpi=60)
    for p in written:
        check_png(p, min_w=250, min_h=100)


def test_op_family() -> None:
    assert op_family("sep_conv_3x3") == "conv"
    assert op_family("nor_conv_1x1") == "conv"
    assert op_family("dil_conv_5x5") == "conv"
    assert op_family("max_pool_3x3") == "pool"
    assert op_family("avg_pool_3x3") == "pool"
    assert op_family("skip_connect") == "skip"
    assert op_family("none") == "none"
    assert op_family("something_else") == "other"


# --------------------------------------------------------------------------------------------
# arch_probs.png: one y-range, legible ticks, a legend that covers no panel


def far_rows(geno: dict, epochs: int = 6) -> list[dict]:
    """Op probabilities that leave uniform far behind (top ops near 0.9 by the last epoch)."""
    rows = []
    for s, (cell, c) in enumerate(geno["cells"].items()):
        edges = _edges(c["inputs"], len(c["nodes"]))
        for epoch in range(epochs):
            for e, edge in enumerate(edges):
                w = [
                    math.exp(epoch * (2.0 if k == (e + s) % len(geno["ops"]) else 0.1 * k))
                    for k in range(len(geno["ops"]))
                ]
                z = sum(w)
                rows.extend(
                    {"epoch": epoch, "cell": cell, "edge": edge, "op": op, "prob": wk / z}
                    for op, wk in zip(geno["ops"], w)
                )
    return rows


def many_ops_genotype() -> dict:
    """An NB201-shaped cell with twelve ops: a legend too tall for the grid's empty corner."""
    geno = nb201_genotype()
    geno["ops"] = NB201_OPS + [f"op_{k}" for k in range(7)]
    geno["probs"] = {}
    return geno


def _shown(ax, label, axis: str) -> bool:
    """Whether a tick label is drawn: visible, not empty, its tick inside the view."""
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    at = label.get_position()[0 if axis == "x" else 1]
    eps = 1e-9 * max(1.0, abs(hi - lo))
    return label.get_visible() and bool(label.get_text()) and lo - eps <= at <= hi + eps


def _visible_text_boxes(fig) -> list:
    """(text, window box) of every tick label, title and axis label drawn in the figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticklabels() if _shown(ax, t, "x")]
        ticks += [t for t in ax.get_yticklabels() if _shown(ax, t, "y")]
        for t in [*ticks, ax.title, ax.xaxis.label, ax.yaxis.label]:
            if t.get_visible() and t.get_text():
                boxes.append((t.get_text(), t.get_window_extent(renderer)))
    return boxes


def near_rows(geno: dict, epochs: int = 4) -> list[dict]:
    """Op probabilities a little off uniform, differently on every edge (as early searches)."""
    rows = []
    for s, (cell, c) in enumerate(geno["cells"].items()):
        edges = _edges(c["inputs"], len(c["nodes"]))
        for epoch in range(epochs):
            for edge, dist in _probs(edges, geno["ops"], epoch, s).items():
                rows.extend(
                    {"epoch": epoch, "cell": cell, "edge": edge, "op": op, "prob": p}
                    for op, p in dist.items()
                )
    return rows


@pytest.mark.parametrize("far", [True, False], ids=["far", "near"])
@pytest.mark.parametrize("make_geno", [darts_genotype, nb201_genotype, many_ops_genotype])
def test_arch_probs_share_one_legible_y_range(make_geno, far: bool) -> None:
    from dnas.plots.arch_probs import arch_probs_figure

    geno = make_geno()
    rows = far_rows(geno) if far else near_rows(geno)
    probs = [r["prob"] for r in rows]
    if far:
        assert max(probs) > 0.85 and min(probs) < 0.01
    else:
        assert 0.5 / len(geno["ops"]) < min(probs) and max(probs) < 2.0 / len(geno["ops"])
    fig = arch_probs_figure(rows, geno)
    try:
        n_edges = sum(len(_edges(c["inputs"], len(c["nodes"]))) for c in geno["cells"].values())
        assert len(fig.axes) == n_edges
        # One y-range for the whole figure, and it holds every probability.
        ylims = {ax.get_ylim() for ax in fig.axes}
        assert len(ylims) == 1, ylims
        lo, hi = ylims.pop()
        assert lo <= min(probs) and hi >= max(probs) and 0 <= lo and hi <= 1
        # Ticks of at least 8 pt; the y numbers once per row (on the panels of the first column).
        fig.canvas.draw()
        for ax in fig.axes:
            labels = [t for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
            assert labels and all(t.get_fontsize() >= 8 for t in labels)
        rows_with_numbers = [
            ax for ax in fig.axes if any(t.get_text() for t in ax.get_yticklabels())
        ]
        assert len(rows_with_numbers) == sum(len(c["nodes"]) for c in geno["cells"].values())
        # No text on top of another, no legend on top of a panel.
        boxes = _visible_text_boxes(fig)
        for i, (ta, a) in enumerate(boxes):
            for tb, b in boxes[i + 1 :]:
                assert not a.overlaps(b), (ta, tb)
        assert len(fig.legends) == 1
        renderer = fig.canvas.get_renderer()
        legend = fig.legends[0].get_window_extent(renderer)
        for ax in fig.axes:  # the panel, its ticks, labels and title
            assert not legend.overlaps(ax.get_tightbbox(renderer)), ax.get_title()
    finally:
        plt.close(fig)


def test_arch_probs_legend_leaves_the_corner_when_it_does_not_fit() -> None:
    """Twelve ops do not fit into the one-panel corner of an NB201 grid: the legend goes below
    all panels; five do, and it stays in the corner, right of the top row."""
    from dnas.plots.arch_probs import arch_probs_figure

    for geno, inside in ((many_ops_genotype(), False), (nb201_genotype(), True)):
        fig = arch_probs_figure(far_rows(geno), geno)
        try:
            renderer = fig.canvas.get_renderer()
            legend = fig.legends[0].get_window_extent(renderer)
            lowest = min(ax.get_tightbbox(renderer).y0 for ax in fig.axes)
            below = bool(legend.y1 < lowest)
            assert below == (not inside), (len(geno["ops"]), legend, lowest)
        finally:
            plt.close(fig)


# --------------------------------------------------------------------------------------------
# search_curves.png / train_curves.png: arch/ metrics, constants, the language-model track


def write_metrics(path: Path, metrics: dict[str, list[float]]) -> None:
    from dvclive import Live

    n = len(next(iter(metrics.values())))
    with Live(str(path), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for step in range(n):
            for name, values in metrics.items():
                live.log_metric(name, values[step])
            live.next_step()


def _figure_texts(fig) -> list[str]:
    """The figure-level texts (titles, subtitles), each on one line (wrapping undone)."""
    texts = [*fig.texts, *([fig._suptitle] if fig._suptitle else [])]
    return [" ".join(t.get_text().split()) for t in texts]


def _figure_text(fig) -> str:
    return "\n".join(_figure_texts(fig))


def test_curves_arch_panel_and_constants(tmp_path: Path) -> None:
    from dnas.plots.curves import curves_figure

    n = 8
    entropy = [1.0 - 0.09 * k for k in range(n)]
    top = [0.125 + 0.08 * k for k in range(n)]
    with isolated_dvclive(tmp_path):
        write_metrics(
            tmp_path / "search",
            {
                "loss/train": [2.0 - 0.1 * k for k in range(n)],
                "loss/valid": [2.1 - 0.1 * k for k in range(n)],
                "tau": [10 - k for k in range(n)],
                "lr": [0.025] * n,  # constant: no panel
                "arch/entropy": entropy,
                "arch/top_prob": top,
            },
        )
    fig = curves_figure(tmp_path / "search", "Architecture search", n_ops=8)
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == [
            "Loss",
            "Op distributions (mean over edges)",
            "Gumbel-softmax temperature τ",
        ]
        arch = fig.axes[1]
        lo, hi = arch.get_ylim()
        assert lo <= 0 and 1 <= hi < 1.2  # normalised: the whole [0, 1]
        ys = {line.get_label().split(" (")[0]: list(line.get_ydata()) for line in arch.lines}
        assert ys["entropy / log K"] == pytest.approx(entropy)
        assert ys["top-op probability"] == pytest.approx(top)
        assert ys["uniform 1/K, K=8"] == pytest.approx([1 / 8, 1 / 8])
        assert "constant over the run: lr = 0.025" in _figure_text(fig)
    finally:
        plt.close(fig)


def test_language_model_curves_drop_constant_panels(tmp_path: Path) -> None:
    """The recurrent search logs tau and lr every epoch; where they never change they are a
    number in the subtitle, not a flat panel. The LM retraining's ASGD flag is a line."""
    from dnas.plots.curves import curves_figure

    n = 10
    loss = [6.5 - 0.2 * k for k in range(n)]
    with isolated_dvclive(tmp_path):
        write_metrics(
            tmp_path / "search",
            {
                "tau": [10.0] * n,
                "lr": [20.0] * n,
                "loss/train": loss,
                "ppl/train": [math.exp(v) for v in loss],
                "loss/valid": [v + 0.2 for v in loss],
                "ppl/valid": [math.exp(v + 0.2) for v in loss],
                "arch/entropy": [1 - 0.05 * k for k in range(n)],
                "arch/top_prob": [0.2 + 0.05 * k for k in range(n)],
            },
        )
        write_metrics(
            tmp_path / "train",
            {
                "lr": [20.0] * n,
                "loss/train": loss,
                "ppl/train": [math.exp(v) for v in loss],
                "loss/valid": loss,
                "ppl/valid": [math.exp(v) for v in loss],
                "asgd": [int(k >= 6) for k in range(n)],
            },
        )
    fig = curves_figure(tmp_path / "search", "Architecture search", n_ops=5)
    try:
        assert [ax.get_title() for ax in fig.axes] == [
            "Perplexity",
            "Op distributions (mean over edges)",
        ]
        assert "constant over the run: τ = 10.0, lr = 20.0" in _figure_text(fig)
    finally:
        plt.close(fig)
    fig = curves_figure(tmp_path / "train", "Retraining")
    try:
        assert [ax.get_title() for ax in fig.axes] == ["Perplexity"]
        ppl = fig.axes[0]
        assert any(
            list(line.get_xdata()) == [6, 6] and line.get_label() == "ASGD from here"
            for line in ppl.lines
        )
        assert "weights averaged (ASGD) from epoch 6" in _figure_text(fig)
        assert "lr = 20.0" in _figure_text(fig)
    finally:
        plt.close(fig)


def test_one_epoch_is_not_constant(tmp_path: Path) -> None:
    """A single value says nothing about change: it keeps its panel."""
    from dnas.plots.curves import curves_figure

    with isolated_dvclive(tmp_path):
        write_metrics(tmp_path / "run", {"lr": [0.1], "tau": [5.0]})
    fig = curves_figure(tmp_path / "run", "Run")
    try:
        assert [ax.get_title() for ax in fig.axes] == [
            "Gumbel-softmax temperature τ",
            "Learning rate",
        ]
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------------------------
# cells.png after a run that retrained a published genotype


def _edge_labels(fig) -> list[str]:
    return sorted(t.get_text() for ax in fig.axes for t in ax.texts if t.get_bbox_patch())


@pytest.mark.parametrize(
    ("spec", "heading", "ops"),
    [
        ("searched", "Searched cells (darts)", None),
        ("GDAS_V1", "Trained cells: published GDAS_V1 (darts)", "GDAS_V1"),
        ("gdas_f1", "Trained cells: published GDAS_F1 (darts), fixed reduction cell", "GDAS_F1"),
        (
            NB201_ARCH.replace("avg_pool_3x3~1", "skip_connect~1"),
            "Trained cells: NB201 string (nb201)",
            "nb201",
        ),
    ],
)
def test_plots_stage_draws_the_trained_cells(
    darts_inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, heading: str, ops
) -> None:
    """The `plots` stage resolves `train.genotype` as the `train` stage does: cells.png draws
    what was retrained and its title says which."""
    import yaml

    import dnas.plots
    from dnas.spaces.published import resolve_genotype
    from stages import plots as stage

    genotype, search, train = darts_inputs
    for src in (genotype, search, train):
        dst = tmp_path / src.relative_to(genotype.parent)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    params["train"]["genotype"] = spec
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    drawn = []
    real = dnas.plots.cells_figure

    def spy(geno, source="searched"):
        fig = real(geno, source)
        drawn.append((geno, _figure_texts(fig), _edge_labels(fig)))
        return fig

    monkeypatch.setattr(dnas.plots, "cells_figure", spy)
    monkeypatch.chdir(tmp_path)
    stage.main()
    assert (tmp_path / "plots" / "cells.png").is_file()
    [(geno, texts, labels)] = drawn
    assert heading in texts
    expected = resolve_genotype(spec, tmp_path / "genotype.json").to_json()
    assert geno["cells"] == expected["cells"]
    want = sorted(
        op for cell in expected["cells"].values() for node in cell["nodes"] for op, _ in node
    )
    assert labels == want
    if ops is not None:  # not the searched cells
        searched = json.loads((tmp_path / "genotype.json").read_text())
        assert geno["cells"] != searched["cells"]


def test_plots_stage_bad_train_genotype_is_user_error(
    darts_inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `train.genotype` that names nothing: one message naming the key, no figure touched."""
    import yaml

    from stages import plots as stage

    genotype, search, train = darts_inputs
    shutil.copy(genotype, tmp_path / "genotype.json")
    shutil.copytree(search, tmp_path / "dvclive" / "search")
    shutil.copytree(train, tmp_path / "dvclive" / "train")
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    params["train"]["genotype"] = "GDAS_V9"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "cells.png").write_bytes(b"earlier")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="train.genotype"):
        stage.main()
    assert (tmp_path / "plots" / "cells.png").read_bytes() == b"earlier"
