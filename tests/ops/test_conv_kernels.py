"""The CUDA C conv kernels (kernels/conv.cu) run on the CPU execution layer (fastconv.emu) through
their real launchers, against the float64 loop oracles of tests/oracle.py, outputs NaN-poisoned:
every pass x every v3 tile, the small-channel kernels, the phase-decomposed backward-data (also as
ConvTranspose2d forward), split-K, groups, dilation, padding, stride, the fused activations and the
direct v1 reference. Each case also checks which kernels ran, so a path cannot silently change.

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
from fastconv.testing import F32_TOL, assert_close, tf32_bound

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
@pytest.mark.parametrize("what", ["forward", "backward_data", "backward_weight"])
def test_every_pass_and_tile(cp, what, tile):
    for case in GEMM_CASES:
        names = _check(cp, what, case, tile=tile)
        assert f"conv2d_{what}_v3_{tile}" in names, names


def test_phase_decomposition_is_one_launch_without_zero_taps(cp):
    case = (1, 10, 8, 9, 5, 4, 4, 2, 1, 1, 1)
    names = _check(cp, "backward_data", case, tile="t64x64")
    gemm = [nm for nm in names if nm.startswith("conv2d_backward_data_v3")]
    assert names[0] == "conv2d_pack_backward_data_v1" and len(gemm) == 1, names


@pytest.mark.parametrize("what", ["forward", "backward_data", "backward_weight"])
def test_split_k(cp, what):
    # one-block grids with reductions of C*R*S = K*R*S = 512 (2 * MIN_SPLIT_CHUNK) and, for the
    # backward-weight, N*P*Q = 1024 (> 2 * WGRAD_CHUNK)
    case = (16, 2, 8, 8, 2, 3, 3, 1, 1, 1, 1) if what == "backward_weight" else (1, 32, 8, 8, 32, 4, 4, 1, 1, 1, 1)
    names = _check(cp, what, case, tile="t64x64")
    assert "conv2d_splitk_reduce_v1" in names, names


@pytest.mark.parametrize("what", ["forward", "backward_data", "backward_weight"])
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


@pytest.mark.parametrize("activation", list(ACTS))
def test_tf32_vec_epilogue_fuses_bias_and_activation(cp, activation):
    """The TF32 vec forward (what a Sequential's Conv2d + activation runs under --tf32), split and
    not: act(conv + b) within the TF32 bound of conv + b (the activations are 1-Lipschitz)."""
    for case, splits in (((2, 8, 7, 6, 12, 3, 3, 1, 1, 1, 1), None), ((1, 32, 8, 8, 32, 4, 4, 1, 1, 1, 1), 3)):
        with fastconv.using(tf32_vector_gather=True):
            out, want, names, mag = _run(cp, "forward", case, tile="t64x64", tf32=True, activation=activation,
                                         absolute=True, splits=splits)
        assert "conv2d_forward_v3_tf32_vec_t64x64" in names and ("conv2d_splitk_reduce_v1" in names) == bool(splits)
        err = np.abs(out.astype(np.float64) - want)   # the products' TF32 rounding, + fp32's of the bias add
        assert np.isfinite(out).all() and (err <= TF32_BOUND * mag + 1e-6 * np.abs(want) + 1e-30).all(), activation
        assert np.linalg.norm(err) > F32_TOL * np.linalg.norm(want), "fp32's error: the TF32 kernel did not run"


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
    # the last arguments: vec (16-byte stores or loads) and, of backward-weight, slices per block before it
    grids = [(rec.name, rec.grid, tuple(rec.args[-2:])) for rec in t.launches if "smallc" in rec.name]
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


@pytest.mark.parametrize("what", ["forward", "backward_data", "backward_weight"])
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


# TF32 is judged elementwise by fastconv.testing.tf32_bound (its derivation is there) times the same
# pass on |operands|, for 216 terms (more than any reduction of GEMM_CASES, at most 160) or 1296
# for TF32_FULL; its error must also be above fp32's (TF32 really ran). TF32_FULL fills every warp,
# mma tile and fragment row of each TF32 tile (GEMM rows and columns >= 130 in every pass: 136
# filters, 70 channels, 630 weight columns, 72 output pixels) and crosses tile edges. TF32_SPLIT
# runs split along K in every pass (conv_splits 3: 2-3 slices of whole BK tiles, up to BK 16).
# The vec kernels (the tf32_vector_gather setting: 16-byte gathers) serve forward and backward-data
# whose channels per group are multiples of 4 and backward-weight whose P*Q and C/G are: VEC_CASES
# (groups, mixed stride and dilation, phases with 1 or 2 taps and none, GATHER_MASK_TAPS taps),
# VEC_SPLIT and TF32_FULL_VEC serve every pass but the first two cases' backward-weight (P*Q = 42, 30).
TF32_BOUND = tf32_bound(216)
TF32_FULL = (2, 70, 6, 6, 136, 3, 3, 1, 1, 1, 1)
TF32_FULL_VEC = (2, 72, 6, 6, 136, 3, 3, 1, 1, 1, 1)
TF32_SPLIT = (6, 8, 6, 6, 8, 4, 4, 1, 1, 1, 1)
VEC_SPLIT = (6, 8, 7, 7, 8, 4, 4, 1, 1, 1, 1)
VEC_CASES = [
    (2, 8, 7, 6, 12, 3, 3, 1, 1, 1, 1),
    (2, 16, 9, 8, 8, 3, 2, (2, 1), (1, 0), (1, 2), 2),
    (1, 12, 8, 9, 8, 4, 4, 2, 1, 1, 1),
    (2, 4, 7, 7, 4, 3, 3, 3, 1, 2, 1),
    (1, 8, 5, 5, 4, 2, 2, 3, 0, 1, 1),
    (1, 4, 16, 17, 4, 15, 15, 1, (7, 6), 1, 1),
    (2, 16, 9, 9, 8, 3, 3, 2, 1, 2, 2),
]


def _vec_case(what, case):
    """Whether the vec kernel serves this pass of case: channels per group (forward: C/G,
    backward-data: K/G, backward-weight: both) multiples of 4."""
    n, c, h, w, k, r, s, stride, padding, dilation, groups = case
    return all(ch // groups % 4 == 0 for ch in {"forward": (c,), "backward_data": (k,)}.get(what, (c, k)))


@pytest.mark.parametrize("tile", cfg.TF32_TILES)
@pytest.mark.parametrize("vec", [False, True])
@pytest.mark.parametrize("what", ["forward", "backward_data", "backward_weight"])
def test_tf32_within_its_rounding_bound(cp, what, vec, tile):
    worst, ran_vec = 0.0, 0
    cases = VEC_CASES + [VEC_SPLIT, TF32_FULL_VEC] if vec else GEMM_CASES + [TF32_SPLIT, TF32_FULL]
    for case in cases:
        bound = tf32_bound(1296) if case in (TF32_FULL, TF32_FULL_VEC) else TF32_BOUND
        bound = tf32_bound(240) if case == VEC_CASES[-1] else bound
        split = case in (TF32_SPLIT, VEC_SPLIT)
        with fastconv.using(tf32_vector_gather=vec):
            out, want, names, mag = _run(cp, what, case, tile=tile, tf32=True, absolute=True,
                                         splits=3 if split else None)
        served = vec and _vec_case(what, case)
        ran_vec += served
        assert f"conv2d_{what}_v3_tf32_{'vec_' if served else ''}{tile}" in names, names
        assert ("nchw_to_nhwc_v1" in names) == served, names
        assert not split or "conv2d_splitk_reduce_v1" in names, names
        assert np.isfinite(out).all(), f"{what}: NaN/inf left in the output; ran {names}"
        err = np.abs(out.astype(np.float64) - want)
        assert (err <= bound * mag + 1e-30).all(), f"{what} {case}: max err/bound {(err / (bound * mag)).max()}"
        worst = max(worst, float(np.linalg.norm(err) / np.linalg.norm(want)))
    assert worst > F32_TOL, f"{what} {tile}: relative error {worst:.2e} is fp32's, not TF32's"
    assert ran_vec >= 9 * vec, f"{what} {tile}: {ran_vec} cases on the vec kernel"


@pytest.mark.parametrize("splits,reduce", [(1, None), (3, "v1"), (40, "v2")])
def test_vec_backward_weight_sums_splits_into_dw_order(cp, splits, reduce):
    """The vec backward-weight's columns run (r, s, c): split, its reduce (either kernel) writes the
    sums in dw's (K, C/G, R*S) order itself, so only dy and x are transposed; unsplit, one transpose
    of the kernel's output follows. Within the TF32 bound either way."""
    case = (8, 8, 14, 14, 8, 3, 2, 1, 1, 1, 1)   # N*P*Q = 1,560: 40 slices of whole BK tiles
    with fastconv.using(tf32_vector_gather=True):
        out, want, names, mag = _run(cp, "backward_weight", case, tile="t64x64", tf32=True, absolute=True,
                                     splits=splits)
    assert "conv2d_backward_weight_v3_tf32_vec_t64x64" in names, names
    assert names.count("nchw_to_nhwc_v1") == (3 if reduce is None else 2), names
    assert reduce is None or f"conv2d_splitk_reduce_{reduce}" in names, names
    err = np.abs(out.astype(np.float64) - want)
    assert np.isfinite(out).all() and (err <= TF32_BOUND * mag + 1e-30).all(), (err / (TF32_BOUND * mag)).max()


@pytest.mark.parametrize("tf32", [False, True])
def test_packed_weights_are_tf32_values_for_the_tf32_kernels(cp, tf32):
    """With tf32 the pack kernels round each weight to tf32 once (nearest, ties away from zero,
    lower 13 bits zero), so the TF32 kernels feed them to the mma without cvt.rna; fp32 packs copy
    them exactly. Forward and the 4 phases of a stride-2 backward-data each hold every weight once."""
    from fastconv.argcheck import conv_hyper
    from fastconv.backends.cuda import conv as launchers
    n, c, h, w, k, r, s, *hyper = (1, 10, 8, 9, 5, 4, 4, 2, 1, 1, 1)
    rng = np.random.default_rng(3)
    wt = rng.standard_normal((k, c, r, s)).astype(np.float32)
    u = wt.view(np.uint32).ravel()
    want = np.sort(((u + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32) if tf32 else wt.ravel())
    x = cp.asarray(rng.standard_normal((n, c, h, w)).astype(np.float32))
    dy = cp.asarray(rng.standard_normal((n, k, 4, 4)).astype(np.float32))
    with fastconv.using(tf32=tf32), emu.trace() as t:
        launchers.conv2d_forward(x, cp.asarray(wt), None, *conv_hyper(*hyper[:3]), hyper[3])
        ops.conv2d_backward_data(dy, cp.asarray(wt), (n, c, h, w), *hyper)
    packs = [rec for rec in t.launches if rec.name.startswith("conv2d_pack_")]
    assert [rec.name for rec in packs] == ["conv2d_pack_forward_v1", "conv2d_pack_backward_data_v1"]
    for rec in packs:
        wp = cp.asnumpy(rec.args[1]).ravel()
        got = np.sort(wp[wp != 0])
        np.testing.assert_array_equal(got, want, err_msg=rec.name)


def test_forward_pack_is_the_transposed_weights_padded_to_4_rows(cp):
    """conv2d_pack_forward_v1 transposes each group's K/G x C/G*R*S weights through 32 x 32 tiles:
    wp[g][kk][m] = w[g*K/G + m][kk], zero for the rows m >= K/G up to the multiple of 4; shapes whose
    sides are not multiples of the tile (37 filters per group, 45 taps x channels, 2 groups) check the
    tile edges."""
    from fastconv.backends.cuda import conv as launchers
    n, c, k, g = 1, 10, 74, 2
    rng = np.random.default_rng(5)
    wt = rng.standard_normal((k, c // g, 3, 3)).astype(np.float32)
    x = cp.asarray(rng.standard_normal((n, c, 6, 7)).astype(np.float32))
    with fastconv.using(conv_tile="t64x64"), emu.trace() as t:
        launchers.conv2d_forward(x, cp.asarray(wt), None, (1, 1), (1, 1), (1, 1), g)
    rec = next(rec for rec in t.launches if rec.name == "conv2d_pack_forward_v1")
    kg, crs = k // g, c // g * 9
    want = np.zeros((g, crs, 40), np.float32)
    want[:, :, :kg] = wt.reshape(g, kg, crs).transpose(0, 2, 1)
    np.testing.assert_array_equal(cp.asnumpy(rec.args[1]).reshape(want.shape), want)


def _unquad(wp, slabs, mp):
    """Packed TF32 weights (conv_index.cuh packed_quad_at: slabs of k quads, 4 consecutive reduction
    rows of a column m per 16 bytes) as (slabs, rows, mp), the rows in order."""
    return wp.reshape(slabs, -1, mp, 4).transpose(0, 1, 3, 2).reshape(slabs, -1, mp)


def test_tf32_packs_hold_k_quads_with_zero_pad_rows(cp):
    """For the TF32 tiles both packs write their rows in k quads (packed_quad_at: wp[g][kk/4][m][kk%4]),
    a reduction that is not whole quads padded with zero rows: forward C/G*R*S = 5*3*3 = 45 rows
    -> 48, backward-data K/G*R*S = 3*3*3 = 27 -> 28, exactly the weights fp32's pack holds in its
    own row order, rounded to tf32."""
    from fastconv.backends.cuda import conv as launchers
    n, c, h, w, k, g = 1, 10, 7, 6, 6, 2
    rng = np.random.default_rng(11)
    wt = rng.standard_normal((k, c // g, 3, 3)).astype(np.float32)
    x = cp.asarray(rng.standard_normal((n, c, h, w)).astype(np.float32))
    dy = cp.asarray(rng.standard_normal((n, k, h, w)).astype(np.float32))
    packs = {}
    for tf32 in (False, True):
        with fastconv.using(tf32=tf32, conv_tile="t64x64"), emu.trace() as t:
            launchers.conv2d_forward(x, cp.asarray(wt), None, (1, 1), (1, 1), (1, 1), g)
            ops.conv2d_backward_data(dy, cp.asarray(wt), (n, c, h, w), 1, 1, 1, g)
        packs[tf32] = [cp.asnumpy(rec.args[1]) for rec in t.launches if rec.name.startswith("conv2d_pack_")]
    tf32 = lambda a: ((a.view(np.uint32) + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)  # noqa: E731
    (fwd, bwd), (qfwd, qbwd) = packs[False], packs[True]
    assert fwd.shape == (g, 45, 4) and qfwd.shape == (g, 48, 4), (fwd.shape, qfwd.shape)
    got = _unquad(qfwd, g, 4)
    np.testing.assert_array_equal(got[:, :45], tf32(fwd))
    assert not got[:, 45:].any()
    assert bwd.shape == (1, g, 27, 8) and qbwd.shape == (1, g, 28, 8), (bwd.shape, qbwd.shape)
    got = _unquad(qbwd, g, 8)
    np.testing.assert_array_equal(got[:, :27], tf32(bwd[0]))
    assert not got[:, 27:].any()


def test_vec_copy_and_packs_are_channel_fastest(cp):
    """The TF32 vec kernels' three preparations, exactly, all rounded to tf32 (the kernels feed them
    to the mma as they are): nchw_to_nhwc_v1 is x (forward) or dy (backward-data) transposed to
    (N, H, W, C) through 32 x 32 tiles (40 channels, 5 x 7 pixels: both sides cross a tile edge); the
    forward pack's rows run (r, s, c) with c fastest (wp[g][rs*Cg + c][m] = w[g*Kg + m][c][rs]); the
    backward-data pack's rows (i, j, k) with k fastest, here at stride 1 (one phase holding every tap:
    wp[g][(r*S + s)*Kg + k][c] = w[g*Kg + k][c][r][s]); both in k quads (_unquad)."""
    from fastconv.argcheck import conv_hyper
    from fastconv.backends.cuda import conv as launchers
    n, c, h, w, k, r, s, g = 2, 40, 5, 7, 16, 3, 2, 2
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c // g, r, s)).astype(np.float32)
    dy = rng.standard_normal((n, k, h, w - 1)).astype(np.float32)
    with fastconv.using(tf32=True, conv_tile="t64x64"), emu.trace() as t:
        launchers.conv2d_forward(cp.asarray(x), cp.asarray(wt), None, *conv_hyper(1, (1, 0), 1), g)
        ops.conv2d_backward_data(cp.asarray(dy), cp.asarray(wt), x.shape, 1, (1, 0), 1, g)
    recs = {}
    for rec in t.launches:
        recs.setdefault(rec.name, []).append(rec)
    tf32 = lambda a: ((a.view(np.uint32) + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)  # noqa: E731
    copies = [cp.asnumpy(rec.args[1]) for rec in recs["nchw_to_nhwc_v1"]]
    np.testing.assert_array_equal(copies[0], tf32(x.transpose(0, 2, 3, 1).copy()))
    np.testing.assert_array_equal(copies[1], tf32(dy.transpose(0, 2, 3, 1).copy()))
    kg, cg = k // g, c // g
    want = np.zeros((g, r * s * cg, kg), np.float32)
    want[:] = wt.reshape(g, kg, cg, r * s).transpose(0, 3, 2, 1).reshape(g, r * s * cg, kg)
    got = _unquad(cp.asnumpy(recs["conv2d_pack_forward_v1"][0].args[1]), g, 8)
    np.testing.assert_array_equal(got[:, :, :kg], tf32(want))
    assert not got[:, :, kg:].any()
    taps = wt.reshape(g, kg, cg, r * s)                          # stride 1: tap (i, j) = (r, s)
    want = taps.transpose(0, 3, 1, 2).reshape(g, r * s * kg, cg)  # rows (i, j, k), k fastest
    got = _unquad(cp.asnumpy(recs["conv2d_pack_backward_data_v1"][0].args[1]), g, 20)
    np.testing.assert_array_equal(got[:, :, :cg], tf32(want))


@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_fused_backward_makes_dy_channels_last_once(cp, transposed):
    """TF32 vec kernels: conv2d_backward transposes dy once for both passes (backward-data and
    backward-weight read the same copy), x once, dw's (r, s, c) order back once: 3 copies where the
    separate passes make 4; conv_transpose2d_backward likewise (its conv2d forward and backward-weight
    both read dy as their x). The results are the separate passes' bit for bit."""
    rng = np.random.default_rng(3)
    x = cp.asarray(rng.standard_normal((2, 8, 6, 5)).astype(np.float32))
    w = cp.asarray(rng.standard_normal((12, 8, 3, 3)).astype(np.float32))
    hyper = (1, 1, 0, 1, 1) if transposed else (1, 1, 1, 1)
    if transposed:   # ConvTranspose2d of x (8 channels) to 12: its weight is C_in x C_out
        w = cp.asarray(rng.standard_normal((8, 12, 3, 3)).astype(np.float32))
        fused, data, weight = ops.conv_transpose2d_backward, ops.conv_transpose2d_backward_data, \
            ops.conv_transpose2d_backward_weight
        dy = cp.asarray(rng.standard_normal(ops.conv_transpose2d_forward(x, w, None, *hyper).shape).astype(np.float32))
    else:
        fused, data, weight = ops.conv2d_backward, ops.conv2d_backward_data, ops.conv2d_backward_weight
        dy = cp.asarray(rng.standard_normal(ops.conv2d_forward(x, w, None, *hyper).shape).astype(np.float32))
    with fastconv.using(tf32=True, poison=True):
        with emu.trace() as t:
            dx, dw = fused(dy, x, w, *hyper)
        with emu.trace() as t2:
            want_dx, want_dw = data(dy, w, x.shape, *hyper), weight(dy, x, w.shape, *hyper)
    copies = lambda tr: sum(r.name == "nchw_to_nhwc_v1" for r in tr.launches)  # noqa: E731
    assert (copies(t), copies(t2)) == (3, 4), [r.name for r in t.launches]
    assert any("_tf32_vec_" in r.name for r in t.launches)
    np.testing.assert_array_equal(cp.asnumpy(dx), cp.asnumpy(want_dx))
    np.testing.assert_array_equal(cp.asnumpy(dw), cp.asnumpy(want_dw))


def test_tf32_setting_keeps_small_channel_kernels_in_fp32(cp):
    """With tf32 on, small-channel shapes still run the fp32 small-channel kernels (memory-bound: TF32
    gains nothing there), to fp32's tolerance; a forced tile runs the TF32 core."""
    case = SMALL_CASES[0]
    for what, kernel in (("forward", "conv2d_forward_smallc_v2"), ("backward_data", "conv2d_backward_data_smallc_v2"),
                         ("backward_weight", "conv2d_backward_weight_smallc_v1")):
        assert kernel in _check(cp, what, case, tf32=True)
    assert "conv2d_forward_v3_tf32_t64x64" in _run(cp, "forward", case, tile="t64x64", tf32=True)[2]
    with pytest.raises(ValueError, match="conv_tile: got 't64x32' with tf32 on"):
        _run(cp, "forward", case, tile="t64x32", tf32=True)

# a filter one tap wider than the TF32 tiles' bitmasks hold; C*R*S = 48: past the small-channel kernels
WIDE = (1, 3, cfg.GATHER_MASK_TAPS + 2, 4, 4, cfg.GATHER_MASK_TAPS + 1, 1, 1, 0, 1, 1)


def test_tf32_setting_runs_filters_wider_than_the_masks_in_fp32(cp):
    """The TF32 tiles' forward and backward-data test bounds by per-column bitmasks of at most
    config.GATHER_MASK_TAPS taps per dimension: a filter one tap wider runs those passes on the fp32
    tiles (to fp32's tolerance, weights packed unrounded), backward-weight still on TF32."""
    for what in ("forward", "backward_data"):
        names = _check(cp, what, WIDE, tf32=True)
        assert any(n.startswith(f"conv2d_{what}_v3_t") for n in names), names
        assert not any("tf32" in n for n in names), names  # and F32_TOL held: weights packed unrounded
    assert any("_v3_tf32_" in n for n in _run(cp, "backward_weight", WIDE, tf32=True)[2])


def test_tf32_only_tile_where_the_fp32_tiles_run_is_refused(cp, monkeypatch):
    """A tile name only TF32_TILES holds (none today: each TF32 tile has an fp32 namesake) forced
    where the fp32 tiles run, with tf32 off or for a filter wider than the masks, is a one-line error
    saying which, not a launch of a kernel that does not exist."""
    from fastconv.backends.cuda import config  # the module the launchers use: the CPU layer re-imports them
    monkeypatch.setitem(config.TF32_TILES, "t64x64only", config.TF32_TILES["t64x64"])
    with pytest.raises(ValueError, match="conv_tile: got 't64x64only' with tf32 off"):
        _run(cp, "forward", SMALL_CASES[0], tile="t64x64only")
    with pytest.raises(ValueError, match=f"got 't64x64only' for a filter wider than {cfg.GATHER_MASK_TAPS} taps"):
        _run(cp, "forward", WIDE, tile="t64x64only", tf32=True)


def test_precision_argument_on_ops_and_layers(cp):
    """precision="tf32" on a conv op or layer runs the TF32 kernels for that call; "fp32" wins over
    the tf32 setting; the setting comes back afterwards."""
    from fastconv import nn
    rng = np.random.default_rng(5)
    x = cp.asarray(rng.standard_normal((2, 8, 6, 6)).astype(np.float32))
    w = cp.asarray(rng.standard_normal((8, 8, 3, 3)).astype(np.float32))
    with emu.trace() as t:
        ops.conv2d_forward(x, w, None, 1, 1, precision="tf32")
        with fastconv.using(tf32=True):
            ops.conv2d_backward_data(ops.conv2d_forward(x, w, None, 1, 1), w, x.shape, 1, 1, precision="fp32")
        layer = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, precision="tf32", rng=rng).to("cuda")
        layer.backward(layer.forward(x))
    names = [nm for nm in t.launch_names if "_v3_" in nm]
    # the op's argument, the setting, "fp32" over the setting, then the layer's three passes
    assert ["tf32" in nm for nm in names] == [True, True, False, True, True, True], names
    assert not fastconv.settings.current().tf32


def test_precision_errors_and_environment(monkeypatch):
    from fastconv import nn, settings
    with pytest.raises(ValueError, match="precision: got 'fp16', expected None, 'fp32' or 'tf32'"):
        ops.conv2d_forward(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 3, 3), np.float32), precision="fp16")
    with pytest.raises(ValueError, match="precision: got 'bf16'"):
        nn.Conv2d(1, 2, 3, precision="bf16")
    monkeypatch.setenv("FASTCONV_TF32", "1")
    assert settings.from_environment().tf32
    monkeypatch.setenv("FASTCONV_TF32", "yes")
    with pytest.raises(ValueError, match="FASTCONV_TF32: got 'yes', expected '1'"):
        settings.from_environment()


def test_tf32_cli_flag(monkeypatch):
    import fastconv.train.cnn as cnn
    from fastconv import cli, settings
    seen = {}
    monkeypatch.setattr(cnn, "train_cnn", lambda cfg: seen.setdefault("tf32", settings.current().tf32) and
                        {"test_accuracy": None, "epochs": 0})
    cli.main(["train", "cnn", "--dry-run", "--tf32"])
    assert seen == {"tf32": True}


@pytest.mark.parametrize("what", ["forward", "backward_data", "backward_weight"])
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
