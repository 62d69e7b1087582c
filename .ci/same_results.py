"""The two promises about results (dnas.results, docs/pipeline.md "Same results"):

python .ci/same_results.py reference     fresh results vs the committed ones, within the
                                         stated tolerances; the committed genotype.json
                                         consistent with the committed metrics (exactly)
python .ci/same_results.py save DIR      keep the bytes of this run's results in DIR
python .ci/same_results.py same DIR      this run's results are byte-identical to DIR's
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dnas.data import PREPARED_ROOT, load_prepared
from dnas.results import genotype_consistent, load_metrics, result_bytes, within_tolerance


def committed(path: str) -> str | None:
    proc = subprocess.run(["git", "show", f"HEAD:{path}"], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def workspace(path: str) -> str | None:
    return Path(path).read_text() if Path(path).is_file() else None


def reference() -> int:
    import yaml

    findings = within_tolerance(load_metrics(committed), load_metrics(workspace))
    params = yaml.safe_load(committed("params.yaml"))
    data = load_prepared(PREPARED_ROOT / params["search"]["dataset"])
    findings += genotype_consistent(
        json.loads(committed("genotype.json")), json.loads(committed("metrics/search.json")), data
    )
    for f in findings:
        print(f"differs from the committed reference: {f}", file=sys.stderr)
    if findings:
        return 1
    print("results agree with the committed reference within the stated tolerances")
    return 0


def save(target: Path) -> int:
    for name, data in result_bytes(Path(".")).items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
    return 0


def same(kept: Path) -> int:
    old, new = result_bytes(kept), result_bytes(Path("."))
    changed = sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))
    if changed:
        print(f"a rerun with the same seed on this machine changed: {changed}", file=sys.stderr)
        return 1
    print(f"same seed, same machine: {len(new)} result files byte-identical")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["reference"]:
        return reference()
    if len(argv) == 2 and argv[0] in ("save", "same"):
        return (save if argv[0] == "save" else same)(Path(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
