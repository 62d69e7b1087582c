"""The report of `bench/gpu_check.sh`: reads what its parts left in OUTDIR (env.json, the
`cuda` tests' JUnit XML, the benchmarks' JSON lines in *.log, each part's *.rc) and writes
report.json and report.md there: the tests' outcome, the measured numbers and each target
with its projection and whether it is met. Exits 1 when a part failed or a test failed."""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# Targets (issue 7 and 17): hours on one GPU, ratios on any device.
TARGETS = [
    ("NB201 GDAS search, 250 epochs", "projection", "gdas-nb201", "projected_hours", 20 / 60),
    ("DARTS-space GDAS search, 240 epochs", "projection", "gdas-darts", "projected_hours", 0.75),
    ("retraining C=36/20 cells, 600 epochs", "projection", "retrain", "projected_hours", 3.0),
]


def json_lines(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("{") and line.endswith("}"):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows


def tests_summary(xml: Path) -> dict:
    if not xml.exists():
        return {"ran": False}
    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    cases = []
    for case in suite.iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
        cases.append({"name": case.get("name"), "outcome": outcome, "s": case.get("time")})
    counts = {
        o: sum(c["outcome"] == o for c in cases) for o in ("passed", "failed", "error", "skipped")
    }
    return {"ran": True, **counts, "cases": cases}


def check(name, value, target, op="<=") -> dict:
    met = None if value is None else (value <= target if op == "<=" else value >= target)
    return {"target": name, "value": value, "limit": f"{op} {target:g}", "met": met}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    out = args.outdir
    env = json.loads((out / "env.json").read_text()) if (out / "env.json").exists() else {}
    parts = {}
    for rc in sorted(out.glob("*.rc")):
        code, seconds = rc.read_text().split()
        parts[rc.stem] = {"exit": int(code), "seconds": int(seconds)}
    steps = {r["space"]: r for r in json_lines(out / "search_step.log")}
    projection = {r["workload"]: r for r in json_lines(out / "projection.log")}
    concurrent = {r["searches"]: r for r in json_lines(out / "concurrent.log")}

    targets = []
    for name, _, workload, key, limit in TARGETS:
        targets.append(check(name + " (h)", projection.get(workload, {}).get(key), limit))
    for space, row in steps.items():
        targets.append(check(f"GDAS / subnet step time, {space}", row.get("gdas_over_subnet"), 1.1))
        targets.append(
            check(f"GDAS / subnet saved memory, {space}", row.get("gdas_over_subnet_saved"), 1.2)
        )
        memory = row.get("gdas_over_darts_peak", row.get("gdas_over_darts_saved"))
        targets.append(check(f"GDAS / DARTS search memory, {space}", memory, 0.3))
    if 4 in concurrent:
        targets.append(
            check("4 searches / 1 search throughput", concurrent[4]["speedup_over_one"], 3.0, ">=")
        )

    report = {
        "dry_run": args.dry_run,
        "env": env,
        "seconds": args.seconds,
        "parts": parts,
        "cuda_tests": tests_summary(out / "cuda_tests.xml"),
        "targets": targets,
        "search_step": list(steps.values()),
        "projection": list(projection.values()),
        "concurrent": list(concurrent.values()),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")

    t = report["cuda_tests"]
    dry = " (dry run: CPU, tiny sizes; the numbers mean nothing)" if args.dry_run else ""
    lines = [
        f"# GPU check{dry}",
        "",
        f"device: {env.get('gpu', 'cpu')}, torch {env.get('torch')}, CUDA {env.get('cuda')}, "
        f"driver {env.get('driver', '-')}; {args.seconds} s in all",
        "",
        "| part | exit | seconds |",
        "|---|---|---|",
        *(f"| {k} | {v['exit']} | {v['seconds']} |" for k, v in parts.items()),
        "",
        f"`pytest -m cuda`: {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, "
        f"{t.get('error', 0)} errors, {t.get('skipped', 0)} skipped"
        if t.get("ran")
        else "`pytest -m cuda`: no result",
        "",
        "| target | measured / projected | limit | met |",
        "|---|---|---|---|",
        *(
            f"| {r['target']} | {r['value']} | {r['limit']} | "
            f"{'-' if r['met'] is None else ('yes' if r['met'] else 'NO')} |"
            for r in targets
        ),
        "",
    ]
    for space, row in steps.items():
        lines.append(
            f"search_step {space}: GDAS {row.get('gdas_step_ms')} ms, subnet "
            f"{row.get('subnet_step_ms')} ms, arch step {row.get('gdas_arch_step_ms')} ms, "
            f"DARTS {row.get('darts_step_ms')} ms; peak MiB GDAS {row.get('gdas_peak_mib')}, "
            f"DARTS {row.get('darts_peak_mib')}"
        )
    for n, row in concurrent.items():
        lines.append(
            f"{n} concurrent searches: {row['iterations_per_s']} it/s in all "
            f"({row['speedup_over_one']}x one), {row['memory_mib_per_search']} MiB each"
        )
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    failed = any(p["exit"] != 0 for p in parts.values())
    failed |= bool(t.get("failed") or t.get("error")) or not t.get("ran")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
