#!/usr/bin/env bash
# fastconv main job: train the LeNet classifier and the DCGAN on Fashion-MNIST and write the test
# accuracy, checkpoints, sample grids and curves to runs/ (or $OUT).
#
#   bash scripts/main_job.sh            # sets up .venv, installs fastconv[train], trains
#   OUT=/tmp/results bash scripts/main_job.sh
#   FASTCONV_NO_VENV=1 bash scripts/main_job.sh   # use the current Python environment as is
#
# Data: the full Fashion-MNIST when it is installed (`sudo apt-get install dataset-fashion-mnist`,
# or FASTCONV_DATA=DIR), else the 6,000-image sample bundled with the package.
# Device: the GPU when CuPy sees one (full data, 12 + 5 epochs, well under a minute on an H100);
# else the NumPy CPU path with settings sized to finish in about five minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs}
PYTHON=${PYTHON:-python3}

if [ -z "${FASTCONV_NO_VENV:-}" ]; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
    python -m pip install -q -e '.[train]'
    PYTHON=python
fi

if "$PYTHON" -c 'import sys, fastconv; sys.exit(0 if fastconv.gpu_available() else 1)'; then
    echo "main job: GPU found, full settings"
    CNN_ARGS=(--epochs 12)
    GAN_ARGS=(--epochs 5)
else
    echo "main job: no GPU, CPU settings (LeNet 3 epochs; DCGAN 400 iterations, whatever the data size)"
    CNN_ARGS=(--epochs 3)
    GAN_ARGS=(--iterations 400 --sample-every 100 --log-every 20)
fi

"$PYTHON" -m fastconv train cnn "${CNN_ARGS[@]}" --out "$OUT/cnn" "$@"
"$PYTHON" -m fastconv train gan --model dcgan "${GAN_ARGS[@]}" --out "$OUT/dcgan" "$@"

"$PYTHON" - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
cnn = json.load(open(os.path.join(out, "cnn", "results.json")))
gan = json.load(open(os.path.join(out, "dcgan", "results.json")))
summary = {"cnn_test_accuracy": cnn["test_accuracy"], "cnn_epochs": cnn["epochs"],
           "cnn_seconds_per_epoch": cnn["seconds_per_epoch"], "data": cnn["dataset"], "device": cnn["device"],
           "dcgan_iterations": gan["iter"], "dcgan_mean_D_x": gan.get("d_x"), "dcgan_mean_D_G_z": gan.get("d_g_z")}
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
print(json.dumps(summary, indent=1))
print(f"outputs: {out}/cnn (checkpoint, metrics.jsonl, loss.png, accuracy.png), "
      f"{out}/dcgan (samples.png, samples/, losses.png, d_outputs.png), {out}/summary.json")
EOF
