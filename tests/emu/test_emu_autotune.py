"""The autotune setting (fastconv.backends.cuda.autotune) on the CPU execution layer: the candidates,
the pick and its use by later calls and launch plans, refusals, graph captures and arenas.

Which candidate is fastest on the CPU says nothing of a GPU, so most cases time by a stand-in
``kernel_ms`` that runs the trial call once and reports a made-up figure; one case runs the real
timer (CUDA graph replays between events, on the stand-in's host clock)."""

import numpy as np
import pytest

import fastconv
import fastconv.emu as emu
import oracle as ref
from checks import TF32_L2, randn
from fastconv import ops, settings
from fastconv.backends.cuda import config as cfg
from fastconv.emu.device import CUDADriverError
from fastconv.testing import F32_TOL, REDUCTION_TOL, assert_close
from graph_steps import lenet_graph_equals_eager

X, W, HYPER = (2, 8, 6, 6), (12, 8, 3, 3), (1, 1, 1, 1)   # 3x3, stride 1: GEMM tiles and Winograd
GEOM = (*X, 12, 3, 3, (1, 1), (1, 1), (1, 1), 1)           # autotune.geometry of its passes


@pytest.fixture
def autotune(cp, monkeypatch):
    """The module, its picks forgotten before and after, one call per timing."""
    from fastconv.backends.cuda import autotune
    monkeypatch.setattr(autotune, "CALLS", 1)
    monkeypatch.setattr(autotune, "REPS", 1)
    autotune.clear()
    yield autotune
    autotune.clear()


def fake_times(monkeypatch, autotune, times, refuse=(), oom=(), broken=()):
    """kernel_ms runs the call once and reports times[(conv_tile, conv_splits)] (default 1.0) ms, or
    raises the launchers' ValueError for a conv_tile in ``refuse``, their out-of-memory error for one
    in ``oom``, a driver's launch error for one in ``broken``."""
    from fastconv.backends.cuda.launch import GPUOutOfMemoryError

    def kernel_ms(fn, calls=1, reps=1):
        cur = settings.current()
        if cur.conv_tile in refuse:
            raise ValueError(f"conv_tile: got {cur.conv_tile!r}, refused by the test")
        if cur.conv_tile in oom:
            raise GPUOutOfMemoryError("trial: out of GPU memory asking for 1 bytes (the test's)")
        if cur.conv_tile in broken:
            raise CUDADriverError("CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (the test's)")
        fn()
        return times.get((cur.conv_tile, cur.conv_splits), 1.0)
    monkeypatch.setattr(autotune, "kernel_ms", kernel_ms)


def conv_pass(cp, what, rng):
    """(call, oracle result, tolerance) of one pass of the X, W conv."""
    x, w, dy = randn(rng, X, np.float32), randn(rng, W, np.float32), randn(rng, (2, 12, 6, 6), np.float32)
    xd, wd, dyd = cp.asarray(x), cp.asarray(w), cp.asarray(dy)
    if what == "forward":
        return lambda: ops.conv2d_forward(xd, wd, None, *HYPER), ref.conv2d_forward(x, w, None, *HYPER), F32_TOL
    if what == "backward_data":
        return (lambda: ops.conv2d_backward_data(dyd, wd, X, *HYPER), ref.conv2d_backward_data(dy, w, X, *HYPER),
                F32_TOL)
    return (lambda: ops.conv2d_backward_weight(dyd, xd, W, *HYPER), ref.conv2d_backward_weight(dy, x, W, *HYPER),
            REDUCTION_TOL)


@pytest.mark.parametrize("tf32", [False, True])
@pytest.mark.parametrize("what", ["forward", "backward_data", "backward_weight"])
def test_pick_runs_now_and_in_the_plan(cp, autotune, monkeypatch, what, tf32):
    """The fastest candidate (t64x64 split into as many slices as fill a wave) is picked, gives the
    oracle's result, and the plan built by the tuning call launches what a call forced to that
    candidate launches: no trial launch got into it."""
    split = [c for c in autotune.candidates(what, GEOM, tf32, 132) if c.get("conv_tile") == "t64x64"][-1]
    assert split["conv_splits"] > 1
    fake_times(monkeypatch, autotune, {("t64x64", split["conv_splits"]): 0.5})
    call, want, tol = conv_pass(cp, what, np.random.default_rng(1))
    with fastconv.using(tf32=tf32):
        with fastconv.using(**split), emu.trace() as forced:
            call()
        with fastconv.using(autotune=True):
            assert_close(call(), want, TF32_L2 if tf32 else tol, what)
            with emu.trace() as t:
                got = call()
    (key, found), = autotune.results().items()
    assert key[0] == what and found.pick == split
    assert found.trials[0][0] == {} and len(found.trials) > len(cfg.TF32_TILES if tf32 else cfg.CONV_TILES)
    assert all(ms is not None for _, ms, _ in found.trials), found.trials   # no candidate failed
    assert t.launch_names == forced.launch_names and not np.isnan(got.get()).any()


def test_heuristic_kept_within_min_gain(cp, autotune, monkeypatch):
    fake_times(monkeypatch, autotune, {(None, None): 1.0, ("t32x128", None): 1.0 - autotune.MIN_GAIN / 2})
    call, _, _ = conv_pass(cp, "forward", np.random.default_rng(2))
    with fastconv.using(autotune=True):
        call()
    (found,) = autotune.results().values()
    assert found.pick == {}


def test_refused_candidates_are_listed_and_the_heuristics_error_raised(cp, autotune, monkeypatch):
    """A candidate the launchers refuse, or whose launch fails, is listed with why and skipped; the
    heuristic's own error (either kind) is the call's, and nothing is stored."""
    fake_times(monkeypatch, autotune, {("t64x32", None): 0.25}, refuse=("t128x128",), broken=("t64x64",))
    call, want, tol = conv_pass(cp, "backward_data", np.random.default_rng(3))
    with fastconv.using(autotune=True):
        assert_close(call(), want, tol, "backward_data")
    (found,) = autotune.results().values()
    why = {t[0]["conv_tile"]: t[2] for t in found.trials if t[1] is None}
    assert set(why) == {"t128x128", "t64x64"} and "refused by the test" in why["t128x128"]
    assert why["t64x64"].startswith("CUDADriverError: CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES")
    assert found.pick == {"conv_tile": "t64x32", "conv_splits": None}
    for kind, error in (("refuse", ValueError), ("broken", CUDADriverError)):
        autotune.clear()
        fake_times(monkeypatch, autotune, {}, **{kind: (None,)})
        with fastconv.using(autotune=True), pytest.raises(error, match="the test"):
            call()
        assert autotune.results() == {}


def test_out_of_memory_in_trials(cp, autotune, monkeypatch):
    """A candidate whose trial runs out of memory is listed and skipped; when the heuristic's does,
    tuning stops there and the call runs the heuristic's choice."""
    call, want, tol = conv_pass(cp, "backward_weight", np.random.default_rng(8))
    for oom, pick in ((("t64x64",), {"conv_tile": "t32x128", "conv_splits": None}), ((None,), {})):
        autotune.clear()
        fake_times(monkeypatch, autotune, {("t64x64", None): 0.25, ("t32x128", None): 0.5}, oom=oom)
        with fastconv.using(autotune=True):
            assert_close(call(), want, tol, "backward_weight")
        (found,) = autotune.results().values()
        failed = [t for t in found.trials if t[1] is None]
        assert failed and all(t[2].startswith("GPUOutOfMemoryError: trial: out of GPU memory") for t in failed)
        assert found.pick == pick and (len(found.trials) == 1) == (oom == (None,))


@pytest.mark.parametrize("forced", [{"conv_tile": "t64x64"}, {"conv_splits": 2}, {"winograd_tile": "t64x64"},
                                    {"conv_version": 1}, {"autotune": False}])
def test_no_tuning_when_forced_or_off(cp, autotune, monkeypatch, forced):
    fake_times(monkeypatch, autotune, {})
    call, _, _ = conv_pass(cp, "forward", np.random.default_rng(4))
    with fastconv.using(autotune=True), fastconv.using(**forced):
        call()
    assert autotune.results() == {}


def test_candidates(cp, autotune):
    """The heuristic first; every tile of the precision, each (tile, split count as the launcher
    rounds it) once; Winograd where it serves and the heuristic does not take it (fp32 3x3 with 72
    reduction elements: the heuristic's Winograd; TF32: a candidate)."""
    geom = GEOM
    for tf32, tiles in ((False, cfg.CONV_TILES), (True, cfg.TF32_TILES)):
        for what in autotune.PASSES:
            cands = autotune.candidates(what, geom, tf32, 132)
            assert cands[0] == {}
            assert ({"conv_tile": cfg.WINOGRAD} in cands) == tf32
            gemm = [c for c in cands[1:] if c["conv_tile"] != cfg.WINOGRAD]
            assert {c["conv_tile"] for c in gemm} == set(tiles)
            m, cols, red, z, elems = autotune.gemm_dims(what, *geom[:7], *geom[7:])
            effective = [(c["conv_tile"], cfg.conv_splits(m, cols, red, c["conv_tile"], z, 132, c["conv_splits"],
                                                          wgrad=what == "backward_weight", tf32=tf32,
                                                          out_elems=elems)[0]) for c in gemm]
            assert len(set(effective)) == len(effective), effective
    strided = autotune.candidates("backward_data", (2, 8, 6, 6, 12, 3, 3, (2, 2), (1, 1), (1, 1), 1), True, 132)
    assert {"conv_tile": cfg.WINOGRAD} not in strided       # Winograd serves stride 1 only
    assert autotune.wave_splits(128, 132) == [2, 3] and autotune.wave_splits(576, 264) == []
    assert autotune.gemm_dims("backward_data", 2, 8, 7, 6, 12, 3, 3, (2, 2), (1, 1), (1, 1), 1) == (
        8, 2 * 4 * 3, 12 * 2 * 2, 4, 2 * 8 * 7 * 6)


def test_gemm_tf32_follows_the_taps(cp):
    from fastconv.backends.cuda.conv import gemm_tf32
    wide = cfg.GATHER_MASK_TAPS + 2
    with fastconv.using(tf32=True):
        assert gemm_tf32("forward", 3, 3) and gemm_tf32("backward_weight", wide, wide)
        assert not gemm_tf32("forward", wide, 1) and not gemm_tf32("backward_data", 1, wide)
    assert not gemm_tf32("backward_weight", 3, 3)


def test_capture_runs_the_heuristic_and_keeps_no_plan(cp, autotune, monkeypatch):
    """During a capture no trial can run: the call takes the heuristic's choice and leaves neither a
    pick nor a plan, so the next call outside a capture tunes and plans."""
    fake_times(monkeypatch, autotune, {("t32x128", None): 0.5})
    call, want, tol = conv_pass(cp, "forward", np.random.default_rng(5))
    plans = ops.conv2d_forward.plans
    plans.clear()
    stream = cp.cuda.Stream()
    with fastconv.using(autotune=True), stream:
        stream.begin_capture()
        try:
            y = call()
        finally:
            graph = stream.end_capture()
        assert autotune.results() == {} and len(plans) == 0
        graph.launch(stream)
        assert_close(y, want, tol, "captured forward")
        call()
    assert len(autotune.results()) == 1 and len(plans) == 1


def test_graph_step_tunes_outside_its_arena_and_equals_eager(cp, autotune, monkeypatch):
    """A LeNet step captured with autotune on, first tuned inside the graph's eager pass (its trial
    calls must not take arena buffers, or the capture pass would allocate fewer), then the eager
    step with the same picks: bit for bit the same over three steps (poison on: every buffer of the
    captured step is refilled with NaN at each replay before its kernel writes it)."""
    fake_times(monkeypatch, autotune, {("t32x128", None): 0.5, ("t64x64", None): 0.4})
    rng = np.random.default_rng(6)
    batches = [(cp.asarray(rng.standard_normal((8, 1, 28, 28)).astype(np.float32)),
                cp.asarray(rng.integers(0, 10, 8).astype(np.int32))) for _ in range(3)]

    def picked():
        picks = [t.pick for t in autotune.results().values()]
        assert len(picks) >= 4 and {"conv_tile": "t64x64", "conv_splits": None} in picks, picks
    with fastconv.using(autotune=True):
        lenet_graph_equals_eager(cp, batches, picked)


def test_real_timer_on_the_stand_in(cp, autotune):
    """kernel_ms itself: graph replays timed by events (here the CPU's run of the kernels); every
    candidate gets a positive figure and the result is right."""
    call, want, tol = conv_pass(cp, "backward_weight", np.random.default_rng(7))
    with fastconv.using(autotune=True):
        assert_close(call(), want, tol, "backward_weight")
    (found,) = autotune.results().values()
    assert all(ms is not None and ms > 0 for _, ms, _ in found.trials), found.trials
    assert found.pick in [c for c, _, _ in found.trials]


def test_accumulating_call_tunes_on_a_copy_of_out(cp, autotune, monkeypatch):
    """A backward-weight call that adds into out (accumulate=True): every trial adds into a copy, so
    the call adds once, on the pick (the fastest candidate, split), into out's prior values."""
    split = [c for c in autotune.candidates("backward_weight", GEOM, False, 132) if c.get("conv_tile") == "t64x64"][-1]
    fake_times(monkeypatch, autotune, {("t64x64", split["conv_splits"]): 0.5})
    rng = np.random.default_rng(5)
    x, dy, prior = randn(rng, X, np.float32), randn(rng, (2, 12, 6, 6), np.float32), randn(rng, W, np.float32)
    xd, dyd, out = cp.asarray(x), cp.asarray(dy), cp.asarray(prior)
    with fastconv.using(**split):
        alone = ops.conv2d_backward_weight(dyd, xd, W, *HYPER).get()
    with fastconv.using(autotune=True):
        got = ops.conv2d_backward_weight(dyd, xd, W, *HYPER, out=out, accumulate=True)
    (found,) = autotune.results().values()
    assert got is out and found.pick == split and len(found.trials) > 2
    np.testing.assert_array_equal(out.get(), prior + alone)
    assert_close(out, prior.astype(np.float64) + ref.conv2d_backward_weight(dy, x, W, *HYPER), REDUCTION_TOL)
