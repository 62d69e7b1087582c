"""Stage `validate`: check the whole params.yaml before any other stage runs.

DVC removes a stage's outputs just before it runs the stage, so a value that only the stage
itself would refuse costs the outputs of the last good run. Every other stage depends on this
one's output, which holds the same bytes whenever the check passes: a passing check never makes
anything downstream rerun, a failing one stops `dvc repro` before any output is touched."""

from dnas.config import load_params
from dnas.errors import run_main
from dnas.io import write_bytes

OK = b"params.yaml passed validation (stages/validate.py)\n"


def main() -> None:
    load_params()
    write_bytes("data/params.ok", OK)
    print("params.yaml: ok")


if __name__ == "__main__":
    run_main(main)
