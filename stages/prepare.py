"""Stage `prepare@<dataset>`: write data/prepared/<dataset>/ (arrays + card.json)."""

import argparse

from dnas.config import load_params
from dnas.data import PREPARED_ROOT, prepare_dataset
from dnas.errors import UserError, run_main
from dnas.io import check_writable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    args = parser.parse_args()
    p = load_params()
    if args.dataset not in p.prepare.datasets:
        raise UserError(f"--dataset {args.dataset!r} is not in prepare.datasets")
    check_writable(PREPARED_ROOT)  # a read-only data/ stops before any download or decoding
    out = prepare_dataset(args.dataset, p.prepare)
    print(f"prepared {args.dataset} -> {out}")


if __name__ == "__main__":
    run_main(main)
