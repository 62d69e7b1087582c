#!/usr/bin/env bash
# One command on a CUDA machine: the `cuda` tests, then the benchmarks at the papers' sizes with
# few steps, then one report (report.json + report.md) in OUTDIR with the projections against
# the targets. About 7 minutes on one GPU; every part has its own time limit, so a part that
# hangs costs its limit, not the run.
#
#   bench/gpu_check.sh OUTDIR             # on the GPU machine (bench/gpu_setup.sh first on a
#                                         # bare one: it installs the carried wheels)
#   bench/gpu_check.sh OUTDIR --dry-run   # any CPU machine, about a minute: the tests skip,
#                                         # the benchmarks run tiny; checks the plumbing
#
# Environment: PYTHON (default python3), GPU_CHECK_TEST_S, GPU_CHECK_BENCH_S (time limits).
set -uo pipefail

if [ $# -lt 1 ]; then
    echo "usage: bench/gpu_check.sh OUTDIR [--dry-run]" >&2
    exit 64
fi
out=$1
dry=0
[ "${2:-}" = "--dry-run" ] && dry=1
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root" || exit 1
py=${PYTHON:-python3}
export PYTHONPATH="$root/src:$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 DVC_NO_ANALYTICS=1
# A bare GPU machine lacks pydantic and dvclive: install the carried .whl/ (gpu_setup.sh).
. "$root/bench/gpu_setup.sh" install || exit 3
test_s=${GPU_CHECK_TEST_S:-210}
bench_s=${GPU_CHECK_BENCH_S:-100}
began=$(date +%s)

# Each part: its command, its log and exit status, under a time limit.
part() {  # name limit_s command...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local t0
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "$rc $(($(date +%s) - t0))" >"$out/$name.rc"
    tail -n 5 "$out/$name.log"
    echo "-- $name: exit $rc in $(($(date +%s) - t0)) s"
}

"$py" - >"$out/env.json" <<'EOF'
import json, platform, subprocess, torch
env = {"python": platform.python_version(), "torch": torch.__version__,
       "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
       "machine": platform.machine()}
if torch.cuda.is_available():
    env["gpu"] = torch.cuda.get_device_name(0)
    env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    try:
        env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
            "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
print(json.dumps(env))
EOF
cat "$out/env.json"
if [ $dry -eq 0 ] && ! grep -q '"cuda_available": true' "$out/env.json"; then
    echo "no CUDA device here: run with --dry-run on a CPU machine" >&2
    exit 2
fi

part cuda_tests "$test_s" "$py" -m pytest -m cuda -p no:xdist -p no:cacheprovider \
    -o addopts=-ra -q tests/test_cuda.py --junitxml "$out/cuda_tests.xml"

if [ $dry -eq 1 ]; then
    part search_step "$bench_s" "$py" bench/search_step.py --spaces nb201 --batch 4 \
        --channels 4 --nb201-layers 1 --size 8 --rounds 1 --subnets 1 --warmup 0 \
        --darts-steps 1 --no-before
    part projection "$bench_s" "$py" bench/projection.py --ci
    part concurrent "$bench_s" "$py" bench/concurrent_searches.py --tiny --counts 1,2
else
    part search_step "$bench_s" "$py" bench/search_step.py --batch 64 --channels 16 \
        --darts-layers 8 --nb201-layers 5 --size 32 --rounds 5 --subnets 3 --warmup 1 \
        --darts-steps 3
    part projection "$((bench_s + 50))" "$py" bench/projection.py --steps 10 --warmup 3
    part concurrent "$bench_s" "$py" bench/concurrent_searches.py --counts 1,2,4,8 \
        --steps 20 --warmup 5
fi

"$py" bench/gpu_report.py "$out" --seconds "$(($(date +%s) - began))" \
    $([ $dry -eq 1 ] && echo --dry-run)
rc=$?
echo "report: $out/report.md ($(($(date +%s) - began)) s in all)"
exit $rc
