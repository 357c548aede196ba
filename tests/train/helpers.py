"""What the trainer tests share: tiny runs on fake data, a subprocess environment, file readers."""

import json
import os
import time

from fastconv.checkpoint import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_CNN = ["--dataset", "fake", "--train-size", "96", "--batch-size", "32", "--channels", "4,8", "--hidden", "16",
            "--test-batch-size", "64"]
TINY_GAN = ["--dataset", "fake", "--train-size", "64", "--batch-size", "16", "--sample-every", "2", "--n-samples", "9"]


def env():
    """The environment of a `python -m fastconv` child: this checkout first, no FASTCONV_DATA."""
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.pop("FASTCONV_DATA", None)
    return e


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def same_checkpoints(a, b):
    """Assert two checkpoints hold bitwise-equal arrays, RNG state and epoch; returns a's metadata."""
    ta, ma = load_checkpoint(a)
    tb, mb = load_checkpoint(b)
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape, k
        assert ta[k].tobytes() == tb[k].tobytes(), f"{k} differs"
    assert ma["rng"] == mb["rng"] and ma["epoch"] == mb["epoch"]
    return ma


def wait_for_epoch(p, ckpt, epoch=2, timeout=90):
    """Returns once the training child ``p`` has checkpointed ``epoch`` epochs to ``ckpt``, has exited,
    or ``timeout`` seconds have passed (the caller checks which)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        if ckpt.exists() and load_checkpoint(ckpt)[1]["epoch"] >= epoch:
            return
        time.sleep(0.02)
