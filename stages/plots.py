"""Stage `plots`: PNGs of the cells, architecture-probability evolution, curves and (image
datasets) the test set's confusion matrix -> plots/.

`cells.png` draws the cells the `train` stage retrained: `train.genotype` is resolved as
stages/train.py resolves it (the searched genotype.json, a published name, an NB201 string or a
genotype file), and the figure's title says which."""

from pathlib import Path

from dnas.config import load_params
from dnas.errors import run_main
from dnas.plots import make_plots
from dnas.spaces.published import genotype_kind, genotype_source, resolve_genotype

PER_CLASS = Path("metrics/eval_per_class.json")  # written by the evaluate stage


def main() -> None:
    p = load_params()
    searched = Path("genotype.json")
    spec = p.train.genotype
    trained = None
    if genotype_kind(spec) != "searched":
        trained = resolve_genotype(spec, searched, space=p.search.space, seed=p.common.seed,
                                   fixed_reduction=p.search.fixed_reduction)  # fmt: skip
    written = make_plots(
        searched,
        Path("dvclive/search"),
        Path("dvclive/train"),
        Path("plots"),
        dpi=p.plots.dpi,
        trained=trained,
        trained_as=genotype_source(spec),
        # dvc repro runs evaluate first; run on its own before it, the stage skips the figure.
        evaluation=PER_CLASS if PER_CLASS.is_file() else None,
    )
    if not PER_CLASS.is_file():
        print(f"no {PER_CLASS} (run the evaluate stage): confusion.png not drawn")
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)
