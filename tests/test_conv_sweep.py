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

import fastconv  # noqa: E402
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
    monkeypatch.setattr(conv_sweep, "configs", lambda prec, dims=None, num_sms=132, winograd=False: [(None, None), ("t64x64", 2)])
    with emu.activate() as cp:
        fns = conv_sweep.calls(cp, (2, 3, 6, 6, 4, 3, 3, 1, 1), np.random.default_rng(0))
        state = {"n": 0}

        def flaky():  # right the first time (the heuristic's reference), then off by 1 %
            state["n"] += 1
            y = fns["forward"]()
            return y if state["n"] == 1 else y * 1.01
        res = conv_sweep.sweep_row(cp, timing.HostClock(), flaky, "fp32", ARGS)
    assert "ms" not in res[1] and res[1]["error"] > 1e-3, res


def test_rows_run_in_the_order_of_their_patterns():
    """--rows patterns pick rows by prefix or shell pattern, in the patterns' order, each row once."""
    got = conv_sweep.row_order(["lenet.conv2 backward_weight", "* tf32", "dcgan.d2 forward"], ["fp32", "tf32"])
    assert got[:2] == [("lenet.conv2", "backward_weight", "fp32"), ("lenet.conv2", "backward_weight", "tf32")]
    tf32 = got[2:-1]
    assert len(tf32) == 3 * len(conv_sweep.CONV_SHAPES) - 1 and all(p == "tf32" for _, _, p in tf32)
    assert got[-1] == ("dcgan.d2", "forward", "fp32")
    assert len(conv_sweep.row_order(None, ["fp32"])) == 3 * len(conv_sweep.CONV_SHAPES)


def test_picks_keep_only_clear_wins_over_the_heuristic():
    def row(name, prec, *cfgs):
        return {"row": name, "precision": prec, "configs": [c if isinstance(c, dict) else dict(zip(("tile", "splits", "ms"), c))
                                                          for c in cfgs]}
    rows = [row("a forward", "fp32", ("auto", "auto", 1.0), ("t64x64", 2, 0.9), ("t32x128", 1, 0.95)),
            row("a forward", "tf32", ("auto", "auto", 1.0), ("t64x64", 2, 0.99)),  # under MIN_GAIN
            row("b backward_weight", "fp32", ("auto", "auto", 1.0), ("t64x64", "auto", 0.5),
                {"tile": "t64x32", "splits": 4, "refused": "ValueError"}),
            row("c forward", "fp32", ("auto", "auto", None), ("t64x64", 1, 0.5))]  # no heuristic time
    rows[3]["configs"][0].pop("ms")
    rows.append(row("d forward", "fp32", ("auto", "auto", 1.0), ("winograd", "auto", 0.8),
                    {"tile": "winograd", "splits": 4, "products": "t64x32", "ms": 0.7}))
    assert conv_sweep.picks(rows) == {
        "a forward fp32": {"conv_tile": "t64x64", "conv_splits": 2},
        "b backward_weight fp32": {"conv_tile": "t64x64", "conv_splits": None},
        "d forward fp32": {"conv_tile": "winograd", "conv_splits": 4, "winograd_tile": "t64x32"}}


def test_winograd_configurations_follow_the_tiles():
    """A row the Winograd kernels serve times "winograd" at each WINOGRAD_SPLITS count after the
    tiles, then each products tile (winograd_tile) at each PRODUCT_SPLITS count; other rows do not."""
    plain = conv_sweep.configs("fp32", None)
    assert conv_sweep.configs("fp32", None, winograd=True) == plain + [
        (cfg.WINOGRAD, s) for s in conv_sweep.WINOGRAD_SPLITS] + [
        (cfg.WINOGRAD, s, t) for t in cfg.CONV_TILES for s in conv_sweep.PRODUCT_SPLITS]
    assert all(t != cfg.WINOGRAD for t, _ in plain)


def test_wave_filling_split_counts_join_the_powers_of_two():
    """Besides SPLITS, a GEMM's configurations time the split counts that fill whole waves: resnet.c4's
    TF32 backward-weight on t128x128 (36 blocks unsplit, a wave of 132 SMs x 2 blocks) at 7, 14 and
    22 slices, where 16 leaves its third wave 18 % full."""
    from fastconv.backends.cuda.autotune import wave_splits   # the autotune setting's candidates too
    assert wave_splits(36, 264, conv_sweep.WAVE_SPLIT_WAVES) == [7, 14, 22]
    assert wave_splits(300, 264, conv_sweep.WAVE_SPLIT_WAVES) == [2]  # 600 blocks: within 3 waves
    assert wave_splits(800, 264, conv_sweep.WAVE_SPLIT_WAVES) == []  # 3 waves or more unsplit: nothing to fill
    dims = conv_sweep.gemm_dims(conv_sweep.CONV_SHAPES["resnet.c4"], "backward_weight")
    got = [s for t, s in conv_sweep.configs("tf32", dims) if t == "t128x128"]
    assert got == sorted(got) and {7, 14, 22, 16} <= set(got) and 1 in got
    assert 36 * max(got) <= 4 * 264  # still within 4 waves


def test_tiles_option_keeps_the_heuristic_and_the_named_tiles(monkeypatch):
    monkeypatch.setattr(conv_sweep, "SPLITS", (1,))
    args = SimpleNamespace(graph_calls=1, reps=1, warmup=0, tiles=["t64x64"])
    with emu.activate() as cp:
        fns = conv_sweep.calls(cp, (2, 3, 6, 6, 4, 3, 3, 1, 1), np.random.default_rng(0))
        res = conv_sweep.sweep_row(cp, timing.HostClock(), fns["forward"], "fp32", args, winograd=True)
    assert [(r["tile"], r["splits"]) for r in res] == [("auto", "auto"), ("t64x64", 1)]


def test_kernel_times_lists_each_launch_of_a_call():
    """benchmarks/kernel_times.py on the CPU layer: the Winograd forward's four launches by name, in
    order, each timed, then the whole call."""
    import kernel_times
    args = SimpleNamespace(graph_calls=1, reps=1, warmup=0)
    with emu.activate() as cp, fastconv.using(conv_tile=cfg.WINOGRAD):
        fns = conv_sweep.calls(cp, (2, 5, 6, 6, 4, 3, 3, 1, 1), np.random.default_rng(0))
        res = kernel_times.kernel_times(cp, timing.HostClock(), fns["forward"], args)
    names = [r[0] for r in res]
    assert names[:2] == ["conv2d_winograd_input_v3_r3", "conv2d_winograd_filter_v2_r3"]
    assert names[2].startswith("conv2d_forward_v3_t") and names[3:] == ["conv2d_winograd_output_v2_r3", "total"], res
    assert all(ms > 0 for *_, ms in res)
    # TF32 backward-weight (K = 4, C = 8): dy's and x's channels-last copies, the vec GEMM and dw's
    # transpose; with --gather4 the 4-byte GEMM alone
    copy = "nchw_to_nhwc_v1"
    for vec, want in ((True, [copy, copy, "conv2d_backward_weight_v3_tf32_vec_t", copy]),
                      (False, ["conv2d_backward_weight_v3_tf32_t"])):
        with emu.activate() as cp, fastconv.using(tf32=True, tf32_vector_gather=vec):
            fns = conv_sweep.calls(cp, (2, 8, 6, 6, 4, 3, 3, 1, 1), np.random.default_rng(0))
            names = [r[0] for r in kernel_times.kernel_times(cp, timing.HostClock(), fns["backward_weight"], args)]
        assert len(names) == len(want) + 1 and names[-1] == "total", names
        assert all(n.startswith(w) for n, w in zip(names, want)), names
