"""Train the fixed classifier behind ``fastconv score`` and ship it inside the package.

    python scripts/train_scorer.py [--dataset fashion-mnist] [--epochs 8] [--seed 0]

The scorer is a narrow LeNet (conv 1->16 5x5, ReLU, maxpool; conv 16->32 5x5, ReLU, maxpool;
Linear 1568->64, ReLU; Linear 64->10: 114,314 parameters, 0.46 MB in float32) trained with the
plain ``fastconv train cnn`` recipe (SGD momentum 0.9, lr 0.05, batch 128) on the full training
split with a fixed seed. Its 64 penultimate-layer activations are the features of the Fréchet
distance (fastconv.score). Writes ``fastconv/data/scorer/<dataset>.safetensors`` and, beside it,
``<dataset>.json`` with the test accuracy, the recipe, the training time and the file's SHA-256.
The NumPy CPU path gives the same weights on a machine with the same BLAS; elsewhere the float32
reductions may round differently, so compare the recorded accuracy, not the hash.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastconv.score import SCORER_ARCH, save_scorer  # noqa: E402
from fastconv.train.cnn import CNNConfig, model_from_checkpoint, train_cnn  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("fashion-mnist", "mnist"), default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CNNConfig(dataset=args.dataset, data_dir=args.data_dir, seed=args.seed, epochs=args.epochs,
                        channels=list(SCORER_ARCH["channels"]), hidden=list(SCORER_ARCH["hidden"]),
                        device="cpu", out=tmp, progress=False)
        t0 = time.perf_counter()
        result = train_cnn(cfg)
        seconds = time.perf_counter() - t0
        if "mnist" not in result["dataset"] or "sample" in result["dataset"]:
            raise SystemExit(f"dataset: trained on {result['dataset']}; expected the full {args.dataset} "
                             "(the scorer must not come from the bundled sample)")
        model, _ = model_from_checkpoint(result["checkpoint"])
    record = {"dataset": args.dataset, "test_accuracy": result["test_accuracy"], "epochs": args.epochs,
              "seed": args.seed, "recipe": "fastconv train cnn --channels 16,32 --hidden 64 (SGD momentum 0.9, "
              "lr 0.05, batch 128), NumPy CPU path", "train_seconds": round(seconds, 1),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "data": result["dataset"],
              "per_epoch_test_accuracy": result["history"]["test_accuracy"]}
    path, sha = save_scorer(model, args.dataset, record)
    print(json.dumps(dict(record, file=os.path.relpath(path), sha256=sha), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
