"""Stage `validate`: check params.yaml (with advanced.yaml) before any other stage runs, so a
bad value stops the pipeline before DVC removes a single output (DVC deletes a stage's outputs
just before it runs that stage; docs/pipeline.md). Exit status 2 and one `error: ...` line
naming the key; otherwise one line.

`--out FILE` also writes FILE (always the same bytes), an output the other stages can list as
a dependency so that DVC runs this stage first without rerunning them when it passes.
`--sources DIR` writes DIR/<dataset>.json, each dataset's own prepare settings, the file
through which `prepare@<dataset>` tracks them (dnas.data.registry.source_settings).
`--stages DIR` writes DIR/<stage>.json, the knobs each stage reads and the hashes of the source
files it runs, the file through which that stage tracks them (dnas.stage_inputs)."""

import argparse
from pathlib import Path

from dnas.config import Params, check_track, load_params
from dnas.data import check_prepare
from dnas.data.registry import check_cutout, write_source_settings
from dnas.errors import run_main
from dnas.io import write_bytes
from dnas.spaces.published import genotype_kind, resolve_genotype
from dnas.stage_inputs import write_stage_inputs


def validate_params(path: str | Path = "params.yaml") -> Params:
    """Validate the whole params file, including what the stages would only find out later:
    every key and value (as `load_params`), and whether the data splits the params ask for
    can be made (`prepare.test_fraction` and `prepare.search_split` against the class counts
    of digits and of the user's own datasets whose source is at hand). Raises `UserError` with
    one message naming the key."""
    p = load_params(path, complete=True)
    check_prepare(p.prepare)
    check_cutout(p)  # train.cutout against the images' size, when it is known
    check_genotype(p)
    return p


def check_genotype(p: Params) -> None:
    """Resolve `train.genotype` as the train stage will (`resolve_genotype`): a published
    name, an NB201 string or a genotype file must be one, or DVC would delete train's outputs
    before train refuses it. `searched` names the genotype.json the search stage writes later,
    so it is not read here. A cell of the wrong kind for `train.dataset` (a recurrent cell on
    images, a CNN cell on text) is refused with the line train gives."""
    if genotype_kind(p.train.genotype) == "searched":
        return
    genotype = resolve_genotype(
        p.train.genotype, space=p.search.space, seed=p.common.seed,
        fixed_reduction=p.search.fixed_reduction,
    )  # fmt: skip
    check_track(genotype, p.train.genotype, p.train.dataset, p.prepare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", help="file to write when the params are valid")
    parser.add_argument("--sources", help="folder for each dataset's own prepare settings")
    parser.add_argument("--stages", help="folder for each stage's knobs and source hashes")
    args = parser.parse_args()
    p = validate_params("params.yaml")
    if args.sources:
        write_source_settings(p.prepare, args.sources)
    if args.stages:
        write_stage_inputs(p.model_dump(mode="json"), args.stages)
    if args.out:
        write_bytes(args.out, b"params.yaml: ok\n")
    print(f"params.yaml: ok (datasets {', '.join(p.prepare.datasets)})")


if __name__ == "__main__":
    run_main(main)
