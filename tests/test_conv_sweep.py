"""benchmarks/conv_sweep.py's per-row sweep, run on the CPU layer (fastconv.emu) with a host clock:
every forced tile x split count is checked against the heuristic's output before it is timed, and a
configuration whose output is wrong is recorded with its error, not timed."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import conv_sweep  # noqa: E402
import timing  # noqa: E402
from backends import NO_GXX  # noqa: E402

import fastconv.emu as emu  # noqa: E402
from fastconv.backends.cuda import config as cfg  # noqa: E402

pytestmark = NO_GXX
ARGS = SimpleNamespace(graph_calls=1, reps=1, warmup=0)


def test_every_configuration_is_validated_then_timed(monkeypatch):
    monkeypatch.setattr(conv_sweep, "SPLITS", (1, 3))
    with emu.activate() as cp:
        fns = conv_sweep.calls(cp, (2, 3, 6, 6, 4, 3, 3, 1, 1), np.random.default_rng(0))
        res = conv_sweep.sweep_row(cp, timing.HostClock(), fns["backward_weight"], "fp32", ARGS)
    assert [(r["tile"], r["splits"]) for r in res] == [("auto", "auto")] + [
        (t, s) for t in cfg.CONV_TILES for s in (1, 3)]
    for r in res:
        assert r["error"] <= 1e-5 and r["ms"] > 0, r


def test_a_wrong_configuration_is_recorded_not_timed(monkeypatch):
    monkeypatch.setattr(conv_sweep, "SPLITS", (2,))
    monkeypatch.setattr(conv_sweep, "configs", lambda prec, dims=None, num_sms=132: [(None, None), ("t64x64", 2)])
    with emu.activate() as cp:
        fns = conv_sweep.calls(cp, (2, 3, 6, 6, 4, 3, 3, 1, 1), np.random.default_rng(0))
        state = {"n": 0}

        def flaky():  # right the first time (the heuristic's reference), then off by 1 %
            state["n"] += 1
            y = fns["forward"]()
            return y if state["n"] == 1 else y * 1.01
        res = conv_sweep.sweep_row(cp, timing.HostClock(), flaky, "fp32", ARGS)
    assert "ms" not in res[1] and res[1]["error"] > 1e-3, res
