#!/usr/bin/env bash
# fastconv main job: train the LeNet classifier, the DCGAN and the class-conditional DCGAN on
# Fashion-MNIST, score both GANs (Fréchet distance on the shipped scorer's features, beside
# real-vs-real and an untrained generator; label fidelity for the conditional one) and write the
# test accuracy, scores, checkpoints, sample grids and curves to runs/ (or $OUT).
#
#   bash scripts/main_job.sh            # sets up .venv, installs fastconv[train], gets the data, trains
#   OUT=/tmp/results bash scripts/main_job.sh
#   FASTCONV_NO_VENV=1 bash scripts/main_job.sh   # use the current Python environment as is
#   bash scripts/main_job.sh --data-only          # only the data step: prints the directory it chose
#
# Data: the full Fashion-MNIST (60,000 + 10,000 images) from $FASTCONV_DATA when set, else from
# $FASTCONV_APT_DATA_DIR (default /usr/share/datasets/fashion-mnist, where Debian's
# dataset-fashion-mnist package puts it). When it is not there and this is Debian/Ubuntu with apt-get,
# run as root or with passwordless sudo, the package is installed; otherwise the job says so in one
# line and trains on the 6,000-image sample bundled with the package. runs/summary.json says which.
# Device: the GPU when CuPy sees one (12 + 5 epochs); else the NumPy CPU path with settings sized to
# finish in about five minutes on 2 cores.
# Every later argument goes to both trainers (e.g. --overwrite to replace the outputs of an earlier job).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs}
PYTHON=${PYTHON:-python3}
APT_DATA_DIR=${FASTCONV_APT_DATA_DIR:-/usr/share/datasets/fashion-mnist}
PACKAGE=dataset-fashion-mnist

have_full_data() {  # the four IDX files (gzipped or raw) in directory $1
    local stem
    for stem in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        [ -f "$1/$stem.gz" ] || [ -f "$1/$stem" ] || return 1
    done
}

install_full_data() {  # apt-get install the package as root or with passwordless sudo; 1 when not possible
    command -v apt-get >/dev/null 2>&1 || return 1
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
        sudo=(sudo -n)
    fi
    echo "main job: installing $PACKAGE with apt-get (the full Fashion-MNIST, 30 MB)"
    "${sudo[@]}" apt-get install -y "$PACKAGE" || { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y "$PACKAGE"; }
}

# sets DATA_KIND (full|sample) and DATA_ARGS (the --data-dir to pass, if any)
choose_data() {
    DATA_ARGS=()
    if [ -n "${FASTCONV_DATA:-}" ]; then
        DATA_KIND=full
        echo "main job: data from FASTCONV_DATA=$FASTCONV_DATA"
    elif have_full_data "$APT_DATA_DIR"; then
        DATA_KIND=full
        DATA_ARGS=(--data-dir "$APT_DATA_DIR")
        echo "main job: data: the full Fashion-MNIST in $APT_DATA_DIR"
    elif install_full_data && have_full_data "$APT_DATA_DIR"; then
        DATA_KIND=full
        DATA_ARGS=(--data-dir "$APT_DATA_DIR")
        echo "main job: data: the full Fashion-MNIST, installed in $APT_DATA_DIR"
    else
        DATA_KIND=sample
        DATA_ARGS=(--data-dir "$("$PYTHON" -c 'from fastconv.data.datasets import SAMPLE_DIR; print(SAMPLE_DIR)')")
        echo "main job: data: the bundled 6,000-image sample (the full set is not installed and cannot be installed" \
             "here); for the full set run \`sudo apt-get install $PACKAGE\` on Debian/Ubuntu, or put its four IDX" \
             "files in a directory and set FASTCONV_DATA=DIR"
    fi
}

if [ "${1:-}" = "--data-only" ]; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the sample's path, without installing anything
    choose_data
    echo "$DATA_KIND ${DATA_ARGS[*]:1}"
    exit 0
fi

if [ -z "${FASTCONV_NO_VENV:-}" ]; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
    echo "main job: installing fastconv and its training extras into .venv (pip's own output follows)"
    python -m pip install -e '.[train]'
    PYTHON=python
fi
choose_data

if "$PYTHON" -c 'import sys, fastconv; sys.exit(0 if fastconv.gpu_available() else 1)'; then
    echo "main job: GPU found, full settings"
    CNN_ARGS=(--epochs 12)
    GAN_ARGS=(--epochs 5)
    CGAN_ARGS=(--epochs 5)
    SCORE_N=10000
else
    echo "main job: no GPU, CPU settings (LeNet 3 epochs; DCGAN and conditional DCGAN 400 and 300 iterations," \
         "whatever the data size; scores on 2,000 images)"
    CNN_ARGS=(--epochs 3)
    GAN_ARGS=(--iterations 400 --sample-every 100 --log-every 20)
    CGAN_ARGS=(--iterations 300 --sample-every 100 --log-every 20)
    SCORE_N=2000
fi

start=$(date +%s)
"$PYTHON" -m fastconv train cnn "${CNN_ARGS[@]}" "${DATA_ARGS[@]}" --out "$OUT/cnn" "$@"
"$PYTHON" -m fastconv train gan --model dcgan "${GAN_ARGS[@]}" "${DATA_ARGS[@]}" --out "$OUT/dcgan" "$@"
"$PYTHON" -m fastconv train gan --model cdcgan "${CGAN_ARGS[@]}" "${DATA_ARGS[@]}" --out "$OUT/cdcgan" "$@"
DRY_RUN=0
for arg in "$@"; do [ "$arg" = --dry-run ] && DRY_RUN=1; done
if [ "$DRY_RUN" = 0 ]; then  # a dry run trains on fake data, which has no scorer
    for model in dcgan cdcgan; do  # the sample has 1,000 test images: score on at most that many
        n=$([ "$DATA_KIND" = full ] && echo "$SCORE_N" || echo 1000)
        "$PYTHON" -m fastconv score --checkpoint "$OUT/$model/checkpoint.safetensors" --n "$n" "${DATA_ARGS[@]}" \
            --json "$OUT/$model/score.json"
    done
fi

"$PYTHON" - "$OUT" "$DATA_KIND" "$(( $(date +%s) - start ))" <<'EOF'
import json, os, sys
from fastconv.checkpoint import atomic_write
out, kind, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
cnn = json.load(open(os.path.join(out, "cnn", "results.json")))
gan = json.load(open(os.path.join(out, "dcgan", "results.json")))
cgan = json.load(open(os.path.join(out, "cdcgan", "results.json")))
scores = {m: json.load(open(os.path.join(out, m, "score.json"))) if os.path.exists(os.path.join(out, m, "score.json"))
          else {} for m in ("dcgan", "cdcgan")}  # none after a dry run
summary = {"data_kind": kind, "data": cnn["dataset"], "device": cnn["device"], "training_seconds": seconds,
           "cnn_test_accuracy": cnn["test_accuracy"], "cnn_epochs": cnn["epochs"],
           "cnn_seconds_per_epoch": cnn["seconds_per_epoch"], "dcgan_iterations": gan["iter"],
           "dcgan_means_over_last_iterations": gan.get("means_over_iterations"),
           "dcgan_mean_D_x": gan.get("d_x"), "dcgan_mean_D_G_z": gan.get("d_g_z"),
           "cdcgan_iterations": cgan["iter"], "cdcgan_grid": cgan["samples"],
           "score_images": scores["dcgan"].get("n"), "fd_real_vs_real": scores["dcgan"].get("real_vs_real"),
           "dcgan_fd": scores["dcgan"].get("fd"), "dcgan_fd_untrained": scores["dcgan"].get("untrained_fd"),
           "cdcgan_fd": scores["cdcgan"].get("fd"), "cdcgan_fd_untrained": scores["cdcgan"].get("untrained_fd"),
           "cdcgan_label_fidelity": scores["cdcgan"].get("label_fidelity")}
atomic_write(os.path.join(out, "summary.json"), (json.dumps(summary, indent=1) + "\n").encode())
print(json.dumps(summary, indent=1))
print(f"outputs: {out}/cnn (checkpoint, metrics.jsonl, loss.png, accuracy.png), "
      f"{out}/dcgan and {out}/cdcgan (samples.png: the cdcgan's has one row per class, samples/, losses.png, "
      f"d_outputs.png, score.json), {out}/summary.json")
EOF
