"""Stage `plots`: PNGs of the cells, architecture-probability evolution and curves -> plots/."""

from pathlib import Path

from dnas.config import load_params
from dnas.errors import run_main
from dnas.plots import make_plots


def main() -> None:
    p = load_params()
    written = make_plots(
        Path("genotype.json"),
        Path("dvclive/search"),
        Path("dvclive/train"),
        Path("plots"),
        dpi=p.plots.dpi,
    )
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)
