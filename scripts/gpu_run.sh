#!/usr/bin/env bash
# The GPU run: the GPU tests, `fastconv check` and the benchmark table, on a machine with an NVIDIA
# GPU, CuPy and Python 3.10+, from a checkout of this repository:
#   OUT=/some/dir bash scripts/gpu_run.sh
# Whatever Python packages that machine lacks come from pip, as wheels downloaded beforehand into
# .whl/ at the top of the checkout (git ignores it), on a machine with network access, e.g. for a
# GPU machine with Python 3.12 that lacks NumPy 2.4.6 (name each missing dependency too):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl numpy==2.4.6
# The script installs every wheel in .whl/ into .whl/site (no network) and puts it first on
# PYTHONPATH; without .whl/ it uses the Python environment as it is.
# Steps (each under its own timeout, the whole run under 3 minutes: 88 s on an H100; a failing step
# does not stop the next): GPU tests -> $OUT/gpu_tests.log, fastconv check -> $OUT/check.log, the
# ratio table -> $OUT/bench.log; card, driver and commit -> $OUT/device.txt. Ends with each step's
# exit status and the tail of each log.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fastconv_gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --upgrade --target .whl/site .whl/*.whl || exit 1
    export PYTHONPATH="$PWD/.whl/site:$PYTHONPATH"
fi
declare -A RC

step() {  # step NAME SECONDS LOG CMD...
    local name=$1 secs=$2 log=$3; shift 3
    echo "=== $name (timeout ${secs}s) ==="
    local t0=$SECONDS
    timeout --kill-after=10 "$secs" "$@" > "$OUT/$log" 2>&1
    RC[$name]=$?
    echo "    exit ${RC[$name]} after $((SECONDS - t0)) s -> $OUT/$log"
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"; } > "$OUT/device.txt" 2>&1
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
