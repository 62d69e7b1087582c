"""Compare the results a fresh `dvc repro` wrote with the committed ones, byte for byte,
except the run's own measurements (see `dnas.io.without_measurements`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dnas.io import without_measurements


def committed(path: str) -> str:
    return subprocess.run(
        ["git", "show", f"HEAD:{path}"], capture_output=True, text=True, check=True
    ).stdout


def main() -> int:
    paths = ["dvc.lock", "genotype.json", *sorted(str(p) for p in Path("metrics").glob("*.json"))]
    new = without_measurements({p: Path(p).read_text() for p in paths})
    old = without_measurements({p: committed(p) for p in paths})
    changed = [p for p in paths if new[p] != old[p]]
    if changed:
        subprocess.run(["git", "diff", "--stat", *changed])
        print(f"dvc repro on a clean clone changed committed results: {changed}", file=sys.stderr)
        return 1
    print("same results as committed (apart from the runs' timings and memory)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
