"""The `dnas` command.

dnas params check [FILE]     validate a params file (default: params.yaml)
dnas genotype show [FILE]    print a genotype's cells (default: genotype.json)
"""

from __future__ import annotations

import argparse

from dnas.errors import run_main


def _params_check(args: argparse.Namespace) -> None:
    from dnas.config import load_params

    p = load_params(args.file)
    print(f"{args.file}: ok (search {p.search.algorithm} on {p.search.space}/{p.search.dataset})")


def _genotype_show(args: argparse.Namespace) -> None:
    from dnas.spaces.genotype import load_genotype

    g = load_genotype(args.file)
    print(f"space: {g.space}")
    if g.arch:
        print(f"arch: {g.arch}")
    for name, cell in g.cells.items():
        print(f"{name}:")
        for i, node in enumerate(cell.nodes):
            edges = ", ".join(f"{op}({j})" for op, j in node)
            print(f"  node {cell.inputs + i} <- {edges}")
        print(f"  output = {'concat' if len(cell.concat) > 1 else 'node'} {list(cell.concat)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dnas", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    params = sub.add_parser("params", help="params files").add_subparsers(
        dest="action", required=True
    )
    check = params.add_parser("check", help="validate a params file")
    check.add_argument("file", nargs="?", default="params.yaml")
    check.set_defaults(func=_params_check)
    genotype = sub.add_parser("genotype", help="genotypes").add_subparsers(
        dest="action", required=True
    )
    show = genotype.add_parser("show", help="print a genotype's cells")
    show.add_argument("file", nargs="?", default="genotype.json")
    show.set_defaults(func=_genotype_show)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_main(lambda: args.func(args))


if __name__ == "__main__":
    main()
