"""Stage `validate`: check the whole params.yaml before any other stage runs, so a bad value
stops the pipeline before DVC removes a single output (DVC deletes a stage's outputs before it
runs the stage). Exit status 2 and one `error: ...` line naming the key; otherwise one line."""

from dnas.config import validate_params
from dnas.errors import run_main


def main() -> None:
    p = validate_params("params.yaml")
    print(f"params.yaml: ok (datasets {', '.join(p.prepare.datasets)})")


if __name__ == "__main__":
    run_main(main)
