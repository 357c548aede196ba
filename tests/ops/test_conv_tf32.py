"""The TF32 tensor-core conv kernels (kernels/conv_tf32.cu: the 4-byte kernels of every pass and the
vec backward-weight) on the CPU execution layer (fastconv.emu) through their real launchers, against
the float64 oracles at TF32's rounding bound (fastconv.testing.tf32_bound), outputs NaN-poisoned:
every pass x TF32 tile, both gathers of backward-weight, split-K, the packs and channels-last copies
they read, the fused epilogue, the precision setting and argument. The fp32 kernels' tests and the shared runner (_run): test_conv_kernels.py."""

import numpy as np
import pytest

import fastconv
from fastconv import emu, ops
from fastconv.backends.cuda import config as cfg
from fastconv.testing import F32_TOL, tf32_bound
from ops.test_conv_kernels import ACTS, GEMM_CASES, SMALL_CASES, _check, _run

pytestmark = pytest.mark.skipif(__import__("shutil").which("g++") is None,
                                reason="fastconv.emu compiles the CUDA C kernels with g++")


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in:
        yield stand_in

# TF32 is judged elementwise by fastconv.testing.tf32_bound (its derivation is there) times the same
# pass on |operands|, for 216 terms (more than any reduction of GEMM_CASES, at most 160) or 1296
# for TF32_FULL; its error must also be above fp32's (TF32 really ran). TF32_FULL fills every warp,
# mma tile and fragment row of each TF32 tile (GEMM rows and columns >= 130 in every pass: 136
# filters, 70 channels, 630 weight columns, 72 output pixels) and crosses tile edges. TF32_SPLIT
# runs split along K in every pass (conv_splits 3: 2-3 slices of whole BK tiles, up to BK 16).
# The vec backward-weight (the tf32_vector_gather setting: 16-byte gathers) serves K/G and C/G that are
# multiples of 4: VEC_CASES (groups, mixed stride and dilation, GATHER_MASK_TAPS taps), VEC_SPLIT and
# TF32_FULL_VEC; under the setting forward and backward-data run the 4-byte kernels on them (phases
# with 1 or 2 taps and none).
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
    """Whether the vec kernel serves this pass of case: backward-weight, C/G and K/G multiples of 4."""
    n, c, h, w, k, r, s, stride, padding, dilation, groups = case
    return what == "backward_weight" and c // groups % 4 == 0 and k // groups % 4 == 0


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
    assert ran_vec >= 9 * (vec and what == "backward_weight"), f"{what} {tile}: {ran_vec} cases on the vec kernel"


@pytest.mark.parametrize("vec", [False, True])
def test_tf32_early_copies(cp, vec):
    """The TF32 pipelines with every cp.async landing when issued (fastconv.emu.early_copies): a stage
    refilled before its readers' barrier changes the result, since a warp runs on to the next barrier
    once its lanes meet at a warp collective (ldmatrix, mma) while the other warps wait at theirs."""
    with emu.early_copies(), fastconv.using(tf32_vector_gather=vec):
        for what in ("forward", "backward_data", "backward_weight"):
            for tile in ("t128x64", "t64x64"):
                out, want, names, mag = _run(cp, what, VEC_CASES[0], tile=tile, tf32=True, absolute=True)
                assert f"conv2d_{what}_v3_tf32_{'vec_' if vec and what == 'backward_weight' else ''}{tile}" in names
                err = np.abs(out.astype(np.float64) - want)
                assert np.isfinite(out).all() and (err <= TF32_BOUND * mag + 1e-30).all(), (what, tile)


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


def test_tf32_packs_are_the_fp32_packs_rounded(cp):
    """For the TF32 tiles both packs write the fp32 tiles' layout (k-major rows: packed_forward_at,
    backward-data's phase slabs), every value rounded to tf32 (round to nearest, ties away: the
    kernels feed A to the mma as it is): forward C/G*R*S = 5*3*3 = 45 rows, backward-data K/G*R*S =
    3*3*3 = 27, columns padded to 4 with zeros. (Weights in k quads, one ldmatrix per A tile, ran the
    TF32 GEMMs at up to half the speed on an H200.)"""
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
    (fwd, bwd), (tfwd, tbwd) = packs[False], packs[True]
    assert fwd.shape == tfwd.shape == (g, 45, 4) and bwd.shape == tbwd.shape == (1, g, 27, 8)
    assert fwd[:, :, :k // g].all() and not fwd[:, :, k // g:].any()
    np.testing.assert_array_equal(tfwd, tf32(fwd))
    np.testing.assert_array_equal(tbwd, tf32(bwd))
    assert not np.array_equal(tfwd, fwd)   # the rounding happened


def test_vec_backward_weight_copies_are_channels_last(cp):
    """The vec backward-weight's copies, exactly: nchw_to_nhwc_v1 is dy, then x, transposed to
    (N, H, W, C) through 32 x 32 tiles and rounded to tf32 (the kernel feeds them to the mma as they
    are); 40 channels, 5 x 7 pixels: both sides cross a tile edge. Forward and backward-data make no
    copy under the setting."""
    n, c, h, w, k, r, s, g = 2, 40, 5, 7, 16, 3, 2, 2
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c // g, r, s)).astype(np.float32)
    dy = rng.standard_normal((n, k, h, w - 1)).astype(np.float32)
    with fastconv.using(tf32=True, conv_tile="t64x64", tf32_vector_gather=True), emu.trace() as t:
        ops.conv2d_forward(cp.asarray(x), cp.asarray(wt), None, 1, (1, 0), 1, g)
        ops.conv2d_backward_data(cp.asarray(dy), cp.asarray(wt), x.shape, 1, (1, 0), 1, g)
        assert "nchw_to_nhwc_v1" not in t.launch_names, t.launch_names
        ops.conv2d_backward_weight(cp.asarray(dy), cp.asarray(x), wt.shape, 1, (1, 0), 1, g)
    assert "conv2d_backward_weight_v3_tf32_vec_t64x64" in t.launch_names, t.launch_names
    tf32 = lambda a: ((a.view(np.uint32) + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)  # noqa: E731
    copies = [cp.asnumpy(rec.args[1]) for rec in t.launches if rec.name == "nchw_to_nhwc_v1"]
    np.testing.assert_array_equal(copies[0], tf32(dy.transpose(0, 2, 3, 1).copy()))
    np.testing.assert_array_equal(copies[1], tf32(x.transpose(0, 2, 3, 1).copy()))


@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_fused_backward_is_the_separate_passes(cp, transposed):
    """TF32 (the vec backward-weight): conv2d_backward and conv_transpose2d_backward launch what their
    separate passes launch, with the results bit for bit."""
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
            want_dw, want_dx = weight(dy, x, w.shape, *hyper), data(dy, w, x.shape, *hyper)
    assert t.launch_names == t2.launch_names and any("_tf32_vec_" in n for n in t.launch_names), t.launch_names
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
    names = [nm for nm in t.launch_names if nm.split("_v3_")[0] in ("conv2d_forward", "conv2d_backward_data",
                                                                     "conv2d_backward_weight")]
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


@pytest.mark.parametrize("activation", list(ACTS))
def test_tf32_epilogue_fuses_bias_and_activation(cp, activation):
    """The TF32 forward (what a Sequential's Conv2d + activation runs under --tf32), split and not:
    act(conv + b) within the TF32 bound of conv + b (the activations are 1-Lipschitz)."""
    for case, splits in (((2, 8, 7, 6, 12, 3, 3, 1, 1, 1, 1), None), ((1, 32, 8, 8, 32, 4, 4, 1, 1, 1, 1), 3)):
        out, want, names, mag = _run(cp, "forward", case, tile="t64x64", tf32=True, activation=activation,
                                     absolute=True, splits=splits)
        assert "conv2d_forward_v3_tf32_t64x64" in names and ("conv2d_splitk_reduce_v1" in names) == bool(splits)
        err = np.abs(out.astype(np.float64) - want)   # the products' TF32 rounding, + fp32's of the bias add
        assert np.isfinite(out).all() and (err <= TF32_BOUND * mag + 1e-6 * np.abs(want) + 1e-30).all(), activation
        assert np.linalg.norm(err) > F32_TOL * np.linalg.norm(want), "fp32's error: the TF32 kernel did not run"
