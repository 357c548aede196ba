"""The numba small-channel conv kernels (conv_smallc.py, conv_smallc_wgrad.py) under the CUDA
simulator against the NumPy path run in float64, outputs NaN-poisoned: C = 1 and C/G = 2, stride,
padding, dilation (backward-data phases with pstep, qstep > 1 and phases no tap reaches), several
tiles per image, several filter chunks and staged dy chunks, split weight gradients. Run by
tests/test_numba_sim.py."""

import numpy as np
import pytest

from fastconv.backends import cpu
from fastconv.backends import numba as nb
from fastconv.backends.numba import tiles as K
from fastconv.backends.numba.conv_smallc_launch import backward_weight_smallc_splits
from fastconv.testing import F32_TOL, assert_close
from sim_arrays import _empty, _f64, _rand
from test_conv_sim import BWD_PHASE_CASES, CONV_CASES, _geometry

assert nb.SIMULATOR


# (N, C, H, W), (K, C/G, R, S), stride, padding, dilation, groups: of the GEMM tests' cases C/G = 2
# with stride (2, 1) and dilation (1, 2), depthwise stride 2 dilated, C = 1 5x5, phases no tap
# reaches, taps of every second phase row (the simulator is slow: the others add no new path)
SMALLC_CASES = [CONV_CASES[i] for i in (1, 3, 4)] + [BWD_PHASE_CASES[i] for i in (0, 3)] + [
    # 2 row tiles x 1 quad tile per image (forward), 2 pairs-of-rows tiles (backward-data)
    pytest.param((1, 1, 20, 8), (3, 1, 3, 3), (1, 1), (1, 1), (1, 1), 1, id="c1-tall-2-tiles"),
    # 40 filters: 2 forward chunks of 32 (4 warps), 2 staged dy chunks of 20 (backward-data), 2
    # weight-gradient chunks of 32 filters (the second one 8)
    pytest.param((2, 1, 5, 6), (40, 1, 5, 5), (1, 1), (2, 2), (1, 1), 1, id="lenet-conv1-like-k40"),
    # C/G = 2 with stride 2 and dilation 3 (backward-data: pstep = qstep = 3, 4 phases)
    pytest.param((1, 4, 9, 10), (6, 2, 3, 2), (2, 2), (2, 1), (3, 3), 2, id="g2-s2-dil3"),
]


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", SMALLC_CASES)
def test_conv2d_smallc_all_passes(rng, x_shape, w_shape, stride, padding, dilation, groups):
    args = (stride, padding, dilation, groups)
    y_shape = _geometry(x_shape, w_shape, stride, padding, dilation)
    geo = K._conv_geometry(x_shape, w_shape, *args)
    assert all(K.smallc_tile(p, geo) for p in K.SMALLC_PASSES), "case not served by the small-channel kernels"
    x, w, b, dy = _rand(rng, *x_shape), _rand(rng, *w_shape), _rand(rng, w_shape[0]), _rand(rng, *y_shape)
    y = nb.launch_conv2d_forward(_empty(*y_shape), x, w, b, *args)
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), _f64(b), *args), F32_TOL, "forward+bias")
    y = nb.launch_conv2d_forward(_empty(*y_shape), x, w, None, *args)
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), None, *args), F32_TOL, "forward")
    dx = nb.launch_conv2d_backward_data(_empty(*x_shape), dy, w, *args)
    assert_close(dx, cpu.conv2d_backward_data(_f64(dy), _f64(w), x_shape, *args), F32_TOL, "backward_data")
    splits = backward_weight_smallc_splits(geo, K.smallc_tile("backward_weight", geo))[0]
    ws = _empty(splits * int(np.prod(w_shape)))
    dw = nb.launch_conv2d_backward_weight(_empty(*w_shape), dy, x, *args, workspace=ws)
    assert splits == 1 or np.all(np.isfinite(ws)), "a split left its partial dw unwritten"
    assert_close(dw, cpu.conv2d_backward_weight(_f64(dy), _f64(x), w_shape, *args), F32_TOL, "backward_weight")


def test_backward_weight_smallc_several_slices_per_block(rng):
    """The slice loop of the weight gradient: 3 images x 3 row tiles of tp = 2 rows (the last one
    ragged) = 9 slices, 4 per block (blocks cross image boundaries, the last one takes 1), each
    block's partial dw in a poisoned workspace, their sum against the float64 oracle."""
    from fastconv.backends.numba.conv_smallc_launch import launch_conv2d_backward_weight_smallc
    args = ((1, 1), (1, 1), (1, 1), 1)
    x_shape, w_shape = (3, 1, 5, 6), (4, 1, 3, 3)
    x, dy = _rand(rng, *x_shape), _rand(rng, 3, 4, 5, 6)
    ws = _empty(3, *w_shape)
    launch_conv2d_backward_weight_smallc(ws, dy, x, K._conv_geometry(x_shape, w_shape, *args), 2, 3, 4)
    assert np.all(np.isfinite(ws)), "a block left its partial dw unwritten"
    assert_close(ws.astype(np.float64).sum(axis=0), cpu.conv2d_backward_weight(_f64(dy), _f64(x), w_shape, *args),
                 F32_TOL, "backward_weight")


def test_smallc_tile_choice():
    """Pure Python: the shapes the small-channel kernels serve and their tiles, the CUDA C family's
    (config.smallc_*_tile) for C/G*R*S <= smallc_config.SMALLC."""
    one = ((1, 1), (2, 2), (1, 1), 1)
    lenet1 = K._conv_geometry((128, 1, 28, 28), (32, 1, 5, 5), *one)
    assert [K.smallc_tile(p, lenet1) for p in K.SMALLC_PASSES] == [(4, 7), (4, 7, 8), 7]
    lenet2 = K._conv_geometry((128, 32, 14, 14), (64, 32, 5, 5), *one)
    assert [K.smallc_tile(p, lenet2) for p in K.SMALLC_PASSES] == [None] * 3          # 800 taps: the GEMM
    for c, r, groups, served in [(2, 4, 1, True), (3, 3, 1, True), (2, 5, 1, False), (64, 3, 32, True),
                                 (33, 1, 1, False)]:
        geo = K._conv_geometry((2, c, 8, 8), (8, c // groups, r, r), (1, 1), (1, 1), (1, 1), groups)
        assert bool(K.smallc_tile("forward", geo)) == served, (c, r, groups)
    # a 1x32 filter dilated by 70: one quad's input row passes the staged tile (2048 floats)
    wide = K._conv_geometry((1, 1, 4, 2300), (4, 1, 1, 32), (1, 1), (0, 0), (1, 70), 1)
    assert K.smallc_tile("forward", wide) is None
    with pytest.raises(ValueError, match=r"pass_name: got 'backward', expected one of"):
        K.smallc_tile("backward", lenet1)


def test_tile_or_splits_force_the_gemm(rng, monkeypatch):
    """Launch names: the small-channel kernels by default, the implicit GEMM with a tile or a split
    count given (to compare the two)."""
    from fastconv.backends.numba import conv, conv_smallc_launch
    names = []

    def recording(launch):
        def wrapped(name, *a, **kw):
            names.append(name)
            return launch(name, *a, **kw)
        return wrapped
    monkeypatch.setattr(conv, "launch", recording(conv.launch))
    monkeypatch.setattr(conv_smallc_launch, "launch", recording(conv_smallc_launch.launch))
    args = ((1, 1), (1, 1), (1, 1), 1)
    x, w, dy = _rand(rng, 1, 1, 4, 4), _rand(rng, 2, 1, 3, 3), _rand(rng, 1, 2, 4, 4)
    for force in ({}, {"tile": K.TILE_64}, {"splits": 1}):
        names.clear()
        y = nb.launch_conv2d_forward(_empty(1, 2, 4, 4), x, w, None, *args, **force)
        dx = nb.launch_conv2d_backward_data(_empty(1, 1, 4, 4), dy, w, *args, **force)
        dw = nb.launch_conv2d_backward_weight(_empty(2, 1, 3, 3), dy, x, *args, **force)
        tiles = [force["tile"]] if "tile" in force else K.TILES
        want = [{f"conv2d_{p}{t.suffix}_v1" for t in tiles} if force else {f"conv2d_{p}_smallc_v1"}
                for p in K.SMALLC_PASSES]
        assert len(names) == 3 and all(n in w for n, w in zip(names, want)), (force, names)
        assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), None, *args), F32_TOL, "forward")
        assert_close(dx, cpu.conv2d_backward_data(_f64(dy), _f64(w), (1, 1, 4, 4), *args), F32_TOL, "backward_data")
        assert_close(dw, cpu.conv2d_backward_weight(_f64(dy), _f64(x), (2, 1, 3, 3), *args), F32_TOL, "backward_weight")
