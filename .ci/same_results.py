"""Compare the results a fresh `dvc repro` wrote with the committed ones, byte for byte,
except the run's own measurements: the "cost" entry of metrics JSON (seconds per epoch, peak
memory) and, in dvc.lock, the hash and size of the metrics files that hold one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml


def committed(path: str) -> str:
    return subprocess.run(
        ["git", "show", f"HEAD:{path}"], capture_output=True, text=True, check=True
    ).stdout


def without_cost(text: str) -> str:
    data = json.loads(text)
    if isinstance(data, dict):
        data.pop("cost", None)
    return json.dumps(data, sort_keys=True, indent=2)


def lock_without_cost_hashes(text: str, measured: set[str]) -> str:
    lock = yaml.safe_load(text)
    for stage in lock.get("stages", {}).values():
        for out in stage.get("outs", []):
            if out["path"] in measured:
                out.pop("md5", None)
                out.pop("size", None)
    return yaml.safe_dump(lock, sort_keys=True)


def main() -> int:
    changed = []
    measured = set()
    for path in sorted(Path("metrics").glob("*.json")) + [Path("genotype.json")]:
        new = path.read_text()
        old = committed(str(path))
        if path.suffix == ".json" and path.parent.name == "metrics":
            if "cost" in json.loads(old) or "cost" in json.loads(new):
                measured.add(str(path))
            new, old = without_cost(new), without_cost(old)
        if new != old:
            changed.append(str(path))
    lock_new = lock_without_cost_hashes(Path("dvc.lock").read_text(), measured)
    lock_old = lock_without_cost_hashes(committed("dvc.lock"), measured)
    if lock_new != lock_old:
        changed.append("dvc.lock")
    if changed:
        subprocess.run(["git", "diff", "--stat", *changed])
        print(f"dvc repro on a clean clone changed committed results: {changed}", file=sys.stderr)
        return 1
    print(f"same results as committed ({len(measured)} file(s) with run measurements)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
