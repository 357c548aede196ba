#!/usr/bin/env bash
# The one script to run on the GPU machine (see ../shared/gpu/README.md). Before it:
#   export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1     # numpy 2.4.6 wheel installed in /tmp/site
#   $OUT set to a folder whose files come back
# Steps (each under its own timeout, the whole run under 3 minutes: 88 s on an H100 on 2026-11-26; a failing step does not stop
# the next): GPU tests -> $OUT/gpu_tests.log, fastconv check -> $OUT/check.log, the ratio
# table -> $OUT/bench.log. Ends with each step's exit status and the tail of each log.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fastconv_gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
declare -A RC

step() {  # step NAME SECONDS LOG CMD...
    local name=$1 secs=$2 log=$3; shift 3
    echo "=== $name (timeout ${secs}s) ==="
    local t0=$SECONDS
    timeout --kill-after=10 "$secs" "$@" > "$OUT/$log" 2>&1
    RC[$name]=$?
    echo "    exit ${RC[$name]} after $((SECONDS - t0)) s -> $OUT/$log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/device.txt" 2>&1
step gpu_tests 75 gpu_tests.log "$PY" -m pytest tests/gpu -x -q -p no:cacheprovider
step check 30 check.log "$PY" -m fastconv.check --shapes 3 --bench-shapes
step bench 60 bench.log "$PY" benchmarks/gpu_table.py --reps 15 --warmup 3

echo
echo "================ summary ================"
echo "device: $(cat "$OUT/device.txt")"
for s in gpu_tests check bench; do printf '%-10s exit %s\n' "$s" "${RC[$s]}"; done
echo "---- gpu_tests.log (tail) ----"; tail -n 12 "$OUT/gpu_tests.log"
echo "---- check.log (failures and summary) ----"
grep -E "FAIL|failure|rows," "$OUT/check.log" | tail -n 12
echo "---- bench.log ----"; tail -n 45 "$OUT/bench.log"
fail=0
for s in gpu_tests check bench; do [ "${RC[$s]}" = 0 ] || fail=1; done
exit $fail
