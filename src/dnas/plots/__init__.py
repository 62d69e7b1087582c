"""Figures for the `plots` stage: the cells, the architecture weights, the curves, the
confusion matrix.

`make_plots` reads what the other stages wrote (`genotype.json`, the dvclive directories of
the search and the retraining, the evaluation's per-class results) and writes four or five
PNGs, one module per figure family:

* `cells.png` (`cells`) - every cell of the genotype drawn as a graph, edges labelled and
  coloured by op;
* `arch_probs.png` (`arch_probs`) - how the op probabilities of every edge moved over the
  search epochs;
* `search_curves.png` / `train_curves.png` (`curves`) - the dvclive metrics of the search and
  of the retraining;
* `confusion.png` (`confusion`) - the retrained network's confusion matrix on the test set,
  from `metrics/eval_per_class.json` (image datasets only; a language model has no classes).

`inputs` reads the files, `style` holds what the figures share. Only matplotlib (Agg backend)
is used. The figures are drawn under matplotlib's default style, whatever the user's
matplotlibrc says, and saved without the "Software" PNG chunk, so the same inputs give
byte-identical files and DVC can skip whatever depends on them.
"""

from __future__ import annotations

from pathlib import Path

from dnas.errors import UserError
from dnas.plots.arch_probs import arch_probs_figure
from dnas.plots.cells import cells_figure
from dnas.plots.confusion import confusion_figure, load_confusion
from dnas.plots.curves import curves_figure
from dnas.plots.inputs import load_arch_probs, load_genotype_json
from dnas.plots.style import op_family, plt, save, style
from dnas.spaces.genotype import Genotype
from dnas.spaces.published import SEARCHED

__all__ = ["make_plots", "op_family"]


def make_plots(
    genotype: Path,
    search_dir: Path,
    train_dir: Path,
    out_dir: Path,
    dpi: int,
    trained: Genotype | None = None,
    trained_as: str = SEARCHED,
    evaluation: Path | None = None,
) -> list[Path]:
    """Draw the figures of the pipeline into `out_dir`; return the paths written.

    `genotype` is the `genotype.json` of the search stage, `search_dir` and `train_dir` the
    dvclive directories of the search and the retraining (`dvclive/search`, `dvclive/train`).
    `trained` is the genotype the `train` stage retrained where it is not the searched one
    (`train.genotype` a published name, an NB201 string or a file): `cells.png` draws it, its
    title naming it by `trained_as` (`spaces.published.genotype_source`). `arch_probs.png` is
    the search's and marks the searched choices whatever was retrained. `evaluation` is the
    evaluate stage's `metrics/eval_per_class.json`: if it holds classes, `confusion.png` is
    drawn after the four others.
    A missing input file or directory raises `UserError`; a metric that was never logged (a
    TSV that is absent) is simply left out of its figure.
    """
    genotype, search_dir, train_dir, out_dir = map(Path, (genotype, search_dir, train_dir, out_dir))
    geno = load_genotype_json(genotype)
    for d, stage in ((search_dir, "search"), (train_dir, "train")):
        if not d.is_dir():
            raise UserError(
                f"{d} not found: it is written by the `{stage}` stage; "
                f"run `dvc repro {stage}` (or `dvc repro`) first"
            )
    rows = load_arch_probs(search_dir / "plots" / "custom" / "arch_probs.json", geno)
    drawn = geno if trained is None else trained.to_json()
    # K of the uniform 1/K line in the search's `arch/` panel: the ops of an edge's distribution.
    edge_probs = [ops for edges in (geno.get("probs") or {}).values() for ops in edges.values()]
    n_ops = len(edge_probs[0]) if edge_probs else None
    confusion = None if evaluation is None else load_confusion(Path(evaluation))

    written: list[Path] = []
    with style():
        figures = [
            ("cells.png", lambda: cells_figure(drawn, trained_as if trained else SEARCHED)),
            ("arch_probs.png", lambda: arch_probs_figure(rows, geno)),
            ("search_curves.png", lambda: curves_figure(search_dir, "Architecture search", n_ops)),
            ("train_curves.png", lambda: curves_figure(train_dir, "Retraining")),
        ]
        if confusion is not None:
            figures.append(("confusion.png", lambda: confusion_figure(*confusion)))
        for name, draw in figures:
            fig = draw()
            try:
                written.append(save(fig, out_dir / name, dpi))
            finally:
                plt.close(fig)
    return written
