"""The CUDA C conv kernels (kernels/conv.cu) run on the CPU execution layer (fastconv.emu) through
their real launchers, against the float64 loop oracles of tests/oracle.py, outputs NaN-poisoned:
every pass x every v3 tile, the small-channel kernels, the phase-decomposed backward-data (also as
ConvTranspose2d forward), split-K, groups, dilation, padding, stride, the fused activations and the
direct v1 reference (the TF32 kernels: test_conv_tf32.py). Each case also checks which kernels ran,
so a path cannot silently change.

fp32 is judged at relative L2 error <= F32_TOL (1e-5): every output is a single fp32 FMA chain of
at most a few hundred terms. Shapes are tiny (the CPU layer runs each GPU thread as a fiber)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import fastconv
import oracle as ref
from fastconv import emu, ops
from fastconv.backends.cuda import config as cfg
from fastconv.backends.cuda import smallc_config as scfg
from fastconv.settings import CONV_PASSES
from fastconv.testing import F32_TOL, assert_close

pytestmark = pytest.mark.skipif(__import__("shutil").which("g++") is None,
                                reason="fastconv.emu compiles the CUDA C kernels with g++")
TILES = list(cfg.CONV_TILES)
ACTS = {"relu": lambda v: np.maximum(v, 0), "leaky_relu": lambda v: np.where(v > 0, v, 0.2 * v), "tanh": np.tanh}


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in:
        yield stand_in


def _run(cp, what, case, *, tile=None, version=3, activation=None, seed=0, tf32=False, absolute=False, splits=None):
    """Run one pass of case (N, C, H, W, K, R, S, stride, padding, dilation, groups) on the CPU
    layer with poisoned outputs (``splits``: the conv_splits setting); returns (result, oracle,
    names of the kernels launched), and with absolute=True also the oracle of the same pass on
    |operands| (no bias)."""
    n, c, h, w, k, r, s, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c // groups, r, s)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    hyper = (stride, padding, dilation, groups)
    y_ref = ref.conv2d_forward(x, wt, b, *hyper)
    dy = rng.standard_normal(y_ref.shape).astype(np.float32)
    from fastconv.backends.cuda import conv as launchers
    from fastconv.argcheck import conv_hyper
    hp = conv_hyper(stride, padding, dilation)
    forced = {} if splits is None else {"conv_splits": splits}  # else the caller's setting stands
    with fastconv.using(poison=True, conv_tile=tile, conv_version=version, tf32=tf32, **forced), emu.trace() as t:
        if what == "forward":
            out = launchers.conv2d_forward(cp.asarray(x), cp.asarray(wt), cp.asarray(b), *hp, groups,
                                           activation=activation, slope=0.2)
            want = ACTS[activation](y_ref) if activation else y_ref
        elif what == "backward_data":
            out = ops.conv2d_backward_data(cp.asarray(dy), cp.asarray(wt), x.shape, *hyper)
            want = ref.conv2d_backward_data(dy, wt, x.shape, *hyper)
        else:
            out = ops.conv2d_backward_weight(cp.asarray(dy), cp.asarray(x), wt.shape, *hyper)
            want = ref.conv2d_backward_weight(dy, x, wt.shape, *hyper)
    if absolute:
        ax, aw, ady = np.abs(x), np.abs(wt), np.abs(dy)
        mag = {"forward": lambda: ref.conv2d_forward(ax, aw, None, *hyper),
               "backward_data": lambda: ref.conv2d_backward_data(ady, aw, x.shape, *hyper),
               "backward_weight": lambda: ref.conv2d_backward_weight(ady, ax, wt.shape, *hyper)}[what]()
        return cp.asnumpy(out), want, t.launch_names, mag
    return cp.asnumpy(out), want, t.launch_names


def _check(cp, what, case, **kw):
    out, want, names = _run(cp, what, case, **kw)
    assert np.isfinite(out).all(), f"{what}: NaN/inf left in the output (an element not written); ran {names}"
    assert_close(out, want, F32_TOL, f"{what} {case} {kw}")
    return names


# N, C, H, W, K, R, S, stride, padding, dilation, groups
GEMM_CASES = [
    (2, 6, 7, 6, 10, 3, 3, 1, 1, 1, 1),
    (2, 8, 9, 8, 6, 3, 2, (2, 1), (1, 0), (1, 2), 2),      # groups, mixed stride, dilation
    (1, 10, 8, 9, 5, 4, 4, 2, 1, 1, 1),                   # DCGAN-like 4/2/1: four phases of 2x2 taps
    (2, 5, 7, 7, 4, 3, 3, 3, 1, 2, 1),                    # stride 3, dilation 2: phases of 1 or 2 taps
    (1, 6, 5, 5, 6, 2, 2, 3, 0, 1, 1),                    # stride > kernel: phases no tap reaches (zeros)
]


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("what", CONV_PASSES)
def test_every_pass_and_tile(cp, what, tile):
    for case in GEMM_CASES:
        names = _check(cp, what, case, tile=tile)
        assert f"conv2d_{what}_v3_{tile}" in names, names


def test_phase_decomposition_is_one_launch_without_zero_taps(cp):
    case = (1, 10, 8, 9, 5, 4, 4, 2, 1, 1, 1)
    names = _check(cp, "backward_data", case, tile="t64x64")
    gemm = [nm for nm in names if nm.startswith("conv2d_backward_data_v3")]
    assert names[0] == "conv2d_pack_backward_data_v1" and len(gemm) == 1, names


@pytest.mark.parametrize("what", CONV_PASSES)
def test_split_k(cp, what):
    # one-block grids with reductions of C*R*S = K*R*S = 512 (2 * MIN_SPLIT_CHUNK) and, for the
    # backward-weight, N*P*Q = 1024 (> 2 * WGRAD_CHUNK)
    case = (16, 2, 8, 8, 2, 3, 3, 1, 1, 1, 1) if what == "backward_weight" else (1, 32, 8, 8, 32, 4, 4, 1, 1, 1, 1)
    names = _check(cp, what, case, tile="t64x64")
    assert "conv2d_splitk_reduce_v1" in names, names


@pytest.mark.parametrize("what", CONV_PASSES)
def test_forced_split_count(cp, what):
    """The conv_splits setting (tuning sweeps) forces the split count: 3 slices of a 128-long
    reduction are 48, 48 and 32 long (whole BK tiles), so the grid's z is 3 and the sum is right."""
    case = (2, 8, 6, 6, 8, 4, 4, 1, 1, 1, 1)
    with fastconv.using(conv_splits=3), emu.trace() as t:
        names = _check(cp, what, case, tile="t64x64")
    gemm = [rec for rec in t.launches if rec.name == f"conv2d_{what}_v3_t64x64"]
    assert "conv2d_splitk_reduce_v1" in names and [rec.grid[2] for rec in gemm] == [3], names


@pytest.mark.parametrize("tile", TILES)
def test_every_tile_split_across_row_tiles(cp, tile):
    """Each tile, every pass, forced into split-K (3 slices asked; slices are whole BK tiles, so the
    BK 16 tiles get 2 or 3, the last one partial) on a grouped, strided, dilated case, then
    unsplit with more GEMM rows than any tile has (70 filters: a partial last row tile) and
    reductions of 42 to 630 (partial last k tiles)."""
    for what in ("forward", "backward_data", "backward_weight"):
        with fastconv.using(conv_splits=3):
            names = _check(cp, what, (2, 12, 9, 11, 10, 3, 3, (2, 1), (1, 1), (1, 2), 2), tile=tile)
        assert f"conv2d_{what}_v3_{tile}" in names and "conv2d_splitk_reduce_v1" in names, names
        names = _check(cp, what, (1, 5, 6, 7, 70, 3, 3, 1, 1, 1, 1), tile=tile)
        assert f"conv2d_{what}_v3_{tile}" in names, names


def test_many_splits_share_warps(cp):
    """From config.REDUCE_WARP_SPLITS splits on, conv2d_splitk_reduce_v2 sums them (warps share the
    splits of 32 outputs): a backward-weight over N*P*Q = 1024 forced into 32 slices of 32."""
    with fastconv.using(conv_splits=40):
        names = _check(cp, "backward_weight", (16, 2, 8, 8, 2, 3, 3, 1, 1, 1, 1), tile="t64x64")
    assert names[-1] == "conv2d_splitk_reduce_v2", names


@pytest.mark.parametrize("activation", list(ACTS))
@pytest.mark.parametrize("split", [False, True])
def test_fused_bias_and_activation(cp, activation, split):
    case = (1, 32, 8, 8, 32, 4, 4, 1, 1, 1, 1) if split else (2, 6, 7, 6, 10, 3, 3, 1, 1, 1, 1)
    names = _check(cp, "forward", case, tile="t64x64", activation=activation)
    assert ("conv2d_splitk_reduce_v1" in names) == split, names


def test_unknown_activation_is_refused(cp):
    from fastconv.backends.cuda import conv as launchers
    x, w = cp.zeros((1, 1, 3, 3), np.float32), cp.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="activation: got 'gelu'"):
        launchers.conv2d_forward(x, w, None, (1, 1), (0, 0), (1, 1), 1, activation="gelu")


SMALL_CASES = [
    (2, 1, 10, 9, 6, 5, 5, 1, 2, 1, 1),     # LeNet conv1-like: C = 1, 5x5, pad 2; K, Q not multiples of 8, 4
    (2, 2, 9, 9, 4, 3, 3, 2, 1, 1, 1),      # C*R*S = 18, stride 2: four phases, register window
    (1, 4, 7, 8, 4, 2, 2, 1, 0, 2, 2),      # groups, dilation 2: phase columns 2 apart (no window)
    (1, 2, 5, 6, 140, 2, 2, 1, 1, 1, 2),    # 70 filters per group: 3 filter chunks of every pass
    (2, 3, 8, 8, 12, 3, 3, 1, 1, 1, 1),     # C = 3, Q % 4 == 0: float4 stores of forward and backward-data
    (1, 4, 7, 7, 9, 2, 1, (3, 1), (0, 1), 1, 1),  # C = 4, mixed stride (phases no tap reaches), 2x1 taps
    (1, 2, 4, 14, 5, 1, 12, 1, (0, 3), 1, 1),     # 12 taps a row: more than the window's, 4 loads per tap
    (1, 1, 22, 4, 3, 20, 1, 1, (2, 0), 1, 1),     # 20x1: 80 padded taps staged per filter (4 per lane)
    (1, 2, 9, 7, 5, 3, 3, 1, (2, 1), (2, 1), 1),  # row dilation 2: windows along rows only
]


@pytest.mark.parametrize("case", SMALL_CASES)
def test_small_channel_paths(cp, case):
    assert "conv2d_forward_smallc_v2" in _check(cp, "forward", case, activation="relu")
    assert "conv2d_backward_data_smallc_v2" in _check(cp, "backward_data", case)
    names = _check(cp, "backward_weight", case)
    assert names[0] == "conv2d_backward_weight_smallc_v1" and names[1:] in ([], ["conv2d_splitk_reduce_v1"], ["conv2d_splitk_reduce_v2"]), names


def test_small_channel_slices(cp, monkeypatch):
    """Backward-weight's slices: a 28x28 LeNet image is 4 slices of 7 rows (the x and dy tiles of 8
    rows do not fit), and with one SM 5 images are 2 blocks of 3 and 2 slices; forward and
    backward-data tile the image in 4-row and 8-row tiles with float4 stores, all NaN-poisoned."""
    from fastconv.backends.cuda import conv as launchers
    monkeypatch.setattr(launchers, "num_sms", lambda: 1)
    with emu.trace() as t:
        _check(cp, "backward_weight", (5, 1, 6, 6, 3, 3, 3, 1, 1, 1, 1))
        for what in ("forward", "backward_data", "backward_weight"):
            _check(cp, what, (1, 1, 28, 28, 9, 5, 5, 1, 2, 1, 1))
    # vec (16-byte stores or loads: the last argument, before backward-data's bias and activation)
    # and, of backward-weight, slices per block before it
    grids = [(rec.name, rec.grid, tuple(rec.args[-6:-4] if "backward_data" in rec.name else rec.args[-2:]))
             for rec in t.launches if "smallc" in rec.name]
    assert grids[0] == ("conv2d_backward_weight_smallc_v1", (2, 1, 1), (3, 0)), grids
    assert [g[:2] + (g[2][-1],) for g in grids[1:3]] == [("conv2d_forward_smallc_v2", (7, 1, 1), 1),
                                                        ("conv2d_backward_data_smallc_v2", (4, 1, 1), 1)], grids
    assert grids[3] == ("conv2d_backward_weight_smallc_v1", (2, 1, 1), (2, 1)), grids


def test_small_channel_tiles():
    """The tile functions of the small-channel kernels (pure; the kernels' staging relies on them)."""
    s1, d1 = (1, 1), (1, 1)
    # lenet.conv1 at batch 128: 7 quads x 4 rows (28 of 32 lanes), 8 x 33 floats of input
    assert scfg.smallc_forward_tile(1, 28, 28, 5, 5, s1, d1) == (4, 7)
    # backward-data: 4 pairs of rows x 7 quads (lanes of 2 x 4 pixels), 4 chunks of 8 filters
    assert scfg.smallc_backward_data_tile(32, 28, 28, 5, 5, s1, d1) == (4, 7, 8)
    assert scfg.smallc_backward_weight_tile(1, 28, 28, 5, 5, s1, d1) == 7
    assert scfg.smallc_backward_weight_splits(128 * 4, 1, 132, 800) == (256, 2)
    assert scfg.smallc_backward_weight_splits(3, 1, 132, 800) == (3, 1)
    assert scfg.smallc_backward_weight_splits(10, 4, 1, 800) == (1, 10)
    assert scfg.smallc_backward_weight_splits(9, 1, 2, 800) == (3, 3)
    assert scfg.smallc_backward_weight_splits(512, 1, 132, 2**22) == (4, 128)   # partials capped at 2^24 floats
    assert scfg.smallc_forward_tile(1, 3, 300, 1, 1, s1, d1) == (1, 25)   # 75 quads a row: 3 tiles of 25
    # a tile whose input does not fit shared memory: the GEMM core runs instead
    assert scfg.smallc_forward_tile(1, 9, 9, 5, 5, s1, (60, 60)) is None
    assert scfg.smallc_backward_data_tile(4, 300, 300, 5, 5, s1, (60, 60)) is None
    assert scfg.smallc_backward_weight_tile(1, 8, 300, 1, 1, s1, d1) is None
    assert scfg.smallc_pitch(32) == 33 and scfg.smallc_pitch(33) == 33 and scfg.smallc_pitch(34) == 37
    with pytest.raises(ValueError, match="smallc_backward_weight_splits: got slices=0"):
        scfg.smallc_backward_weight_splits(0, 1, 132, 800)


@pytest.mark.parametrize("what", CONV_PASSES)
def test_direct_reference_v1(cp, what):
    for case in GEMM_CASES[:2] + SMALL_CASES[:1]:
        names = _check(cp, what, case, version=1)
        assert names == [f"conv2d_{what}_v1"], names


def test_shuffled_threads(cp):
    """Threads of a block in a seeded random order between barriers: a missing __syncthreads or a
    cp.async read before its wait shows up as a wrong result."""
    with emu.shuffled(7):
        for what in ("forward", "backward_data", "backward_weight"):
            _check(cp, what, GEMM_CASES[2], tile="t128x64")
            _check(cp, what, SMALL_CASES[1])


LENET_CONV1 = (1, 1, 28, 28, 32, 5, 5, 1, 2, 1, 1)  # small-channel backward-data in 4 chunks of 8 filters


def test_early_copies(cp):
    """Every cp.async landing when issued (the other end of the GPU's window): a stage refilled
    before every thread has read it, a missing barrier that the default (landing at the wait) never
    shows, changes the result (issuing the next stage before gemm_mainloop's barrier fails here and
    passes the shuffled-thread and per-tile tests). Reductions of 7-20 k tiles, so the pipeline's
    stages are reused; LeNet's conv1, whose small-channel backward-data stages 4 filter chunks
    (TF32: tests/ops/test_conv_tf32.py)."""
    with emu.early_copies():
        for what in ("forward", "backward_data", "backward_weight"):
            for tile in ("t128x64", "t64x64"):
                _check(cp, what, GEMM_CASES[0], tile=tile)
                _check(cp, what, GEMM_CASES[2], tile=tile)
            _check(cp, what, SMALL_CASES[3])
            _check(cp, what, LENET_CONV1)


def test_conv_transpose2d_forward_runs_the_phases(cp):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 4, 5)).astype(np.float32)
    w = rng.standard_normal((6, 5, 4, 4)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    with fastconv.using(poison=True), emu.trace() as t:
        y = cp.asnumpy(ops.conv_transpose2d_forward(cp.asarray(x), cp.asarray(w), cp.asarray(b), 2, 1, 1))
    assert_close(y, ref.conv_transpose2d_forward(x, w, b, 2, 1, 1), F32_TOL, "conv_transpose2d")
    assert any(nm.startswith("conv2d_backward_data_v3") for nm in t.launch_names)


@hsettings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(n=st.integers(1, 2), cg=st.integers(1, 5), kg=st.integers(1, 6), groups=st.integers(1, 2),
       h=st.integers(1, 7), w=st.integers(1, 7), r=st.integers(1, 4), s=st.integers(1, 4),
       stride=st.integers(1, 3), padding=st.integers(0, 2), dilation=st.integers(1, 2),
       what=st.sampled_from(["forward", "backward_data", "backward_weight"]), tile=st.sampled_from([None] + TILES))
def test_hypothesis_shapes(cp, n, cg, kg, groups, h, w, r, s, stride, padding, dilation, what, tile):
    if h + 2 * padding < dilation * (r - 1) + 1 or w + 2 * padding < dilation * (s - 1) + 1:
        return  # no output
    _check(cp, what, (n, cg * groups, h, w, kg * groups, r, s, stride, padding, dilation, groups), tile=tile)


@pytest.mark.parametrize("what", CONV_PASSES)
def test_conv_passes_replay_from_a_cuda_graph(cp, what, monkeypatch):
    """benchmarks/conv_table.py and gpu_table.py time kernels as a captured CUDA graph
    (benchmarks/timing.py): every path's launches (packing, split-K workspace and reduce, phases)
    capture without a sync and replay to the same result into the buffers captured."""
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "benchmarks"))
    import timing
    case = (6, 8, 6, 6, 8, 4, 4, 2, 1, 1, 1)   # split-K and four phases
    rng = np.random.default_rng(9)
    x = rng.standard_normal(case[:4]).astype(np.float32)
    w = rng.standard_normal((8, 8, 4, 4)).astype(np.float32)
    dy = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    gx, gw, gdy = cp.asarray(x), cp.asarray(w), cp.asarray(dy)
    fn, want = {
        "forward": (lambda: ops.conv2d_forward(gx, gw, None, 2, 1), ref.conv2d_forward(x, w, None, 2, 1)),
        "backward_data": (lambda: ops.conv2d_backward_data(gdy, gw, x.shape, 2, 1),
                          ref.conv2d_backward_data(dy, w, x.shape, 2, 1)),
        "backward_weight": (lambda: ops.conv2d_backward_weight(gdy, gx, w.shape, 2, 1),
                            ref.conv2d_backward_weight(dy, x, w.shape, 2, 1)),
    }[what]
    graph = timing.CupyGraph(cp, fn, calls=2)
    out = graph.keep[-1]
    out.fill(np.nan)
    graph.replay()
    graph.stream.synchronize()
    assert_close(cp.asnumpy(out), want, F32_TOL, f"{what} replayed")
