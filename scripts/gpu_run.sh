#!/usr/bin/env bash
# The GPU run: every GPU test and the benchmark tables (conv, bandwidth, training steps), on a machine with an NVIDIA
# GPU, CuPy and Python 3.10+, from a checkout of this repository:
#   OUT=/some/dir bash scripts/gpu_run.sh
# Whatever Python packages that machine lacks come from pip, as wheels downloaded beforehand into
# .whl/ at the top of the checkout (git ignores it), on a machine with network access, e.g. for a
# GPU machine with Python 3.12 that lacks NumPy 2.4.6 (name each missing dependency too):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl numpy==2.4.6
# The script installs every wheel in .whl/ into .whl/site (no network) and puts it first on
# PYTHONPATH; without .whl/ it uses the Python environment as it is.
# Steps (each under its own timeout, the whole run under 6 minutes; a failing step does not stop the
# next): every gpu-marked test -> $OUT/gpu_tests.log, the conv table against cuDNN -> $OUT/conv.log
# and conv_table.json, the bandwidth/numba table (per call and kernel-only) -> $OUT/bench.log and
# gpu_table.json, the training-step and epoch table against PyTorch -> $OUT/steps.log (the epoch
# rows need Fashion-MNIST: FASTCONV_DATA=DIR); card, driver and commit -> $OUT/device.txt. Ends with each step's
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
# every test marked gpu (the cupy/numba cases of tests/ops, tests/gpu, the CPU layer's GPU cross-check)
step gpu_tests 110 gpu_tests.log "$PY" -m pytest -m gpu tests -q -p no:cacheprovider -n 4 --maxfail 30 -rf
step conv 40 conv.log "$PY" benchmarks/conv_table.py --reps 10 --warmup 3 --json "$OUT/conv_table.json"
step bench 80 bench.log "$PY" benchmarks/gpu_table.py --reps 10 --warmup 3 --skip-tiles --skip-steps \
    --json "$OUT/gpu_table.json"
step steps 90 steps.log "$PY" benchmarks/bench_step.py --reps 5 --steps 10 --warmup 3 --epoch --out /tmp/fastconv_epoch_runs
echo
echo "================ summary ================"
echo "device: $(cat "$OUT/device.txt")"
for s in gpu_tests conv bench steps; do printf '%-10s exit %s\n' "$s" "${RC[$s]}"; done
echo "---- gpu_tests.log (tail) ----"; tail -n 12 "$OUT/gpu_tests.log"
echo "---- conv.log ----"; tail -n 22 "$OUT/conv.log"
echo "---- bench.log ----"; tail -n 40 "$OUT/bench.log"
echo "---- steps.log ----"; tail -n 30 "$OUT/steps.log"
fail=0
for s in gpu_tests conv bench steps; do [ "${RC[$s]}" = 0 ] || fail=1; done
exit $fail
