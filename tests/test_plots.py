"""Tests for dnas.plots: the four PNGs exist, decode, are deterministic; errors are clear."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib.image as mpimg
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
        make_plots(missing, search, train, tmp_path / "out")
    assert "dvc repro" in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("which", ["search", "train"])
def test_missing_dvclive_dir_is_user_error(darts_inputs, tmp_path: Path, which: str) -> None:
    genotype, search, train = darts_inputs
    dirs = {"search": search, "train": train}
    dirs[which] = tmp_path / "dvclive" / which
    with pytest.raises(UserError, match=f"dvclive/{which}"):
        make_plots(genotype, dirs["search"], dirs["train"], tmp_path / "out")


def test_corrupt_genotype_is_user_error(darts_inputs, tmp_path: Path) -> None:
    _, search, train = darts_inputs
    bad = tmp_path / "genotype.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="genotype.json"):
        make_plots(bad, search, train, tmp_path / "out")
    bad.write_text(json.dumps({"space": "darts"}))
    with pytest.raises(UserError, match="cells"):
        make_plots(bad, search, train, tmp_path / "out")
    geno = darts_genotype()
    geno["cells"]["normal"]["nodes"][0][0][1] = 7  # node 2 cannot take node 7 as input
    bad.write_text(json.dumps(geno))
    with pytest.raises(UserError, match="normal"):
        make_plots(bad, search, train, tmp_path / "out")


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
