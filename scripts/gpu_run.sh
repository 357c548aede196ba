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
# Steps (each under its own timeout, the default run under 8 minutes; a failing step does not stop the
# next): every gpu-marked test -> $OUT/gpu_tests.log, the conv table against cuDNN (also with the
# autotune setting on) -> $OUT/conv.log and conv_table.json, the bandwidth/numba table (per call and kernel-only) -> $OUT/bench.log and
# gpu_table.json, the training-step and epoch table against PyTorch -> $OUT/steps.log (the epoch
# rows need Fashion-MNIST: FASTCONV_DATA=DIR); card, driver and commit -> $OUT/device.txt. Ends with each step's
# exit status and the tail of each log.
# STEPS="..." picks the steps (default: gpu_tests conv bench steps). More are off by default:
#   sweep   benchmarks/conv_sweep.py: every conv tile x split-K count timed -> $OUT/sweep.log, sweep.json
#   kernels benchmarks/kernel_times.py: each launch of the lenet.conv2 / resnet.c4 / dcgan.d3 rows timed
#           alone, with the heuristic's configuration, fp32 and TF32 (the default gathers, then
#           backward-weight with 4-byte gathers, --gather4) -> $OUT/kernels.log
#   ncu     Nsight Compute (when the machine has it) on every launch of the lenet.conv2 passes and the
#           resnet.c4 forward (Winograd: transforms and products' GEMMs) and the TF32 resnet.c4 forward
#           and dcgan.d3 backward-data GEMMs (bank conflicts included) -> $OUT/ncu.log
#   trees   benchmarks/tree_times.py time $TREES (default .trees/*: folders written beforehand by
#           `python benchmarks/tree_times.py export REV... --into .trees`, carried with the checkout):
#           the same conv calls in every tree, TREES_ARGS (e.g. "--tf32 --rows resnet.c4") -> $OUT/trees.log
#   gans    benchmarks/dcgan_torch.py on the GPU, fastconv beside PyTorch, 3 seeds, scored -> $OUT/gans.log
#   recipe  the classifier recipe on full Fashion-MNIST (fastconv train cnn, two widths) -> $OUT/recipe*.log
#   augment benchmarks/augment_table.py on the GPU (k = 10, 50, 100; 3 seeds) -> $OUT/augment.log, augment.png
# (gans, recipe and augment need FASTCONV_DATA; they time nothing, so they run side by side: augment beside
# gpu_tests, before the timed steps; gans and recipe after them). SWEEP_ARGS="--rows lenet.conv1" narrows
# the sweep (a later --budget-s in it wins; SWEEP_TIMEOUT, default 120 s, bounds the step). When the sweep
# runs, it runs before the conv table, and the table also times each row's fastest swept configuration
# (conv_table.py --picks). DEADLINE=SECONDS ends the whole script in time: each step's timeout is cut to
# what is left (a step with under 20 s left is skipped). GPU_TEST_WORKERS (default 4) sets pytest's -n.
# PACK=1 packs everything written into $OUT/gpu_run.tar.gz (one file to fetch), packed again after every
# step: a run stopped from outside still leaves the steps it finished.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fastconv_gpu_out}
mkdir -p "$OUT"
PACK_TO=""
if [ "${PACK:-0}" = 1 ]; then  # write into a staging folder, $OUT gets only the archive
    PACK_TO=$OUT; OUT=$(mktemp -d /tmp/fastconv_gpu_stage.XXXXXX)
fi
pack() {  # the archive of everything written so far, replaced atomically (steps in the background pack too)
    [ -n "$PACK_TO" ] || return 0
    local tmp="$PACK_TO/.gpu_run.$BASHPID.tmp"
    tar -czf "$tmp" -C "$OUT" . 2>/dev/null && mv -f "$tmp" "$PACK_TO/gpu_run.tar.gz"
}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --upgrade --target .whl/site .whl/*.whl || exit 1
    export PYTHONPATH="$PWD/.whl/site:$PYTHONPATH"
fi
mkdir -p "$OUT/rc"; rm -f "$OUT"/rc/*
STEPS=${STEPS:-gpu_tests conv bench steps}
want() { [[ " $STEPS " == *" $1 "* ]]; }

step() {  # step NAME SECONDS LOG CMD...
    local name=$1 secs=$2 log=$3; shift 3
    if [ -n "${DEADLINE:-}" ]; then
        local left=$((DEADLINE - SECONDS - 5))
        [ "$left" -lt 20 ] && { echo "=== $name skipped: ${left} s left before DEADLINE ==="; return; }
        [ "$secs" -gt "$left" ] && secs=$left
    fi
    echo "=== $name (timeout ${secs}s) ==="
    local t0=$SECONDS
    timeout --kill-after=10 "$secs" "$@" > "$OUT/$log" 2>&1
    local rc=$?
    echo "$rc" > "$OUT/rc/$name"   # a file, so that steps run in the background report too
    echo "    $name: exit $rc after $((SECONDS - t0)) s -> $OUT/$log"
    pack
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"; } > "$OUT/device.txt" 2>&1
RUNS=/tmp/fastconv_long_runs; rm -rf "$RUNS"; mkdir -p "$RUNS"
want augment && { step augment 200 augment.log "$PY" benchmarks/augment_table.py --device cuda --k 10 50 100 \
    --seeds 0 1 2 --gan-iterations 1500 --cnn-steps 600 --gen-per-class 500 --out "$RUNS/augment";
    cp "$RUNS/augment/accuracy.png" "$OUT/augment.png" 2>/dev/null; cp "$RUNS/augment/results.json" "$OUT/augment.json" 2>/dev/null; } &
# every test marked gpu (the cupy/numba cases of tests/ops, tests/gpu, the CPU layer's GPU cross-check)
want gpu_tests && step gpu_tests 240 gpu_tests.log "$PY" -m pytest -m gpu tests -q -p no:cacheprovider \
    -n "${GPU_TEST_WORKERS:-4}" --maxfail 30 -rf
wait  # augment, before anything is timed
want sweep && step sweep "${SWEEP_TIMEOUT:-120}" sweep.log "$PY" benchmarks/conv_sweep.py --budget-s 90 --json "$OUT/sweep.json" ${SWEEP_ARGS:-}
PICKS=(); [ -s "$OUT/sweep.json" ] && PICKS=(--picks "$OUT/sweep.json")
want conv && step conv 180 conv.log "$PY" benchmarks/conv_table.py --reps 10 --warmup 3 --json "$OUT/conv_table.json" "${PICKS[@]}"
want bench && step bench 120 bench.log "$PY" benchmarks/gpu_table.py --reps 10 --warmup 3 --skip-tiles \
    --json "$OUT/gpu_table.json"
want kernels && step kernels 150 kernels.log bash -c "\"$PY\" benchmarks/kernel_times.py --rows lenet.conv2 resnet.c4 dcgan.d3 \
    && \"$PY\" benchmarks/kernel_times.py --tf32 --rows lenet.conv2 resnet.c4 dcgan.d3 \
    && \"$PY\" benchmarks/kernel_times.py --tf32 --gather4 --rows 'lenet.conv2 backward_weight' \
    'resnet.c4 backward_weight' 'dcgan.d3 backward_weight'"
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
want ncu && step ncu 120 ncu.log "${NCU:-ncu}" --clock-control none --target-processes all --launch-count 32 \
    -k regex:"conv2d_backward_weight_v3|tf32|conv2d_winograd|conv2d_forward_v3|conv2d_backward_data_v3" \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats --section LaunchStats \
    --section MemoryWorkloadAnalysis_Tables --section ComputeWorkloadAnalysis \
    bash -c "\"$PY\" benchmarks/kernel_times.py --once --rows 'lenet.conv2 backward_weight' 'lenet.conv2 backward_data' \
    && \"$PY\" benchmarks/kernel_times.py --once --tf32 --rows 'resnet.c4 forward' 'dcgan.d3 backward_data' \
    && \"$PY\" benchmarks/kernel_times.py --once --rows 'lenet.conv2 forward' 'resnet.c4 forward'"
want trees && step trees 240 trees.log "$PY" benchmarks/tree_times.py time ${TREES:-.trees/*} ${TREES_ARGS:-}
want steps && step steps 120 steps.log "$PY" benchmarks/bench_step.py --reps 5 --steps 10 --warmup 3 --epoch --out /tmp/fastconv_epoch_runs
# the untimed long runs, side by side
recipe() {  # recipe NAME EPOCHS [flags...]: one classifier run; its log and results.json land in $OUT
    local name=$1 epochs=$2; shift 2
    step "$name" 200 "$name.log" "$PY" -m fastconv train cnn --device cuda --batchnorm --dropout 0.3 --augment \
        --schedule cosine --epochs "$epochs" --seed 0 --no-progress --out "$RUNS/$name" "$@"
    cp "$RUNS/$name/results.json" "$OUT/$name.json" 2>/dev/null
}
want gans && { step gans 200 gans.log "$PY" benchmarks/dcgan_torch.py --device cuda --iterations 1000 \
    --seeds 0 1 2 --n 10000 --out "$RUNS/gans"; cp "$RUNS/gans/results.json" "$OUT/gans.json" 2>/dev/null; } &
want recipe && recipe recipe25 25 &
want recipe && recipe recipe20w 20 --channels 64,128 --hidden 512 &
wait
RAN=""
for s in augment gpu_tests conv sweep kernels ncu bench trees steps gans recipe25 recipe20w; do
    [ -f "$OUT/rc/$s" ] && RAN="$RAN $s"
done
echo
echo "================ summary ================"
echo "device: $(cat "$OUT/device.txt")"
for s in $RAN; do printf '%-10s exit %s\n' "$s" "$(cat "$OUT/rc/$s")"; done
tails() { [ -f "$OUT/$1" ] && { echo "---- $1 ----"; tail -n "$2" "$OUT/$1"; }; }
tails gpu_tests.log 12; tails sweep.log 40; tails conv.log 60; tails kernels.log 60; tails bench.log 40
tails trees.log 40
tails steps.log 30
tails gans.log 8; tails recipe25.log 4; tails recipe20w.log 4; tails augment.log 6
fail=0
for s in $RAN; do [ "$(cat "$OUT/rc/$s")" = 0 ] || fail=1; done
pack
exit $fail
