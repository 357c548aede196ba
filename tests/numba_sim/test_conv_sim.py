"""The numba implicit-GEMM conv kernels under the CUDA simulator against the NumPy path run in
float64: every pass, stride, padding, dilation, groups, odd sizes, more than one tile in every GEMM
dimension, split reductions. These shapes have C/G*R*S <= 32, which the small-channel kernels serve
by default (test_conv_smallc_sim.py), so the tests here name a GEMM tile or split count.

Shapes are tiny (the simulator runs each GPU thread as a Python thread). Outputs are poisoned with
NaN before each launch so unwritten elements fail; run by tests/test_numba_sim.py.
"""

import itertools

import numpy as np
import pytest

from fastconv.backends import cpu
from fastconv.backends import numba as nb
from fastconv.backends.numba import tiles as K
from fastconv.testing import F32_TOL, assert_close
from sim_arrays import _empty, _f64, _rand

assert nb.SIMULATOR


# (N, C, H, W), (K, C/G, R, S), stride, padding, dilation, groups
CONV_CASES = [
    pytest.param((2, 3, 5, 6), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1, id="3x3-p1-odd"),
    pytest.param((1, 4, 7, 5), (6, 2, 3, 2), (2, 1), (1, 0), (1, 2), 2, id="stride21-dil12-g2"),
    pytest.param((2, 2, 6, 7), (3, 2, 1, 1), (2, 2), (0, 0), (1, 1), 1, id="1x1-s2"),
    pytest.param((1, 3, 6, 6), (3, 1, 3, 3), (2, 2), (2, 1), (2, 1), 3, id="depthwise-s2-p21-dil2"),
    pytest.param((2, 1, 6, 5), (5, 1, 5, 5), (1, 1), (2, 2), (1, 1), 1, id="1-channel-5x5-p2"),
]


def _geometry(x_shape, w_shape, stride, padding, dilation):
    n, _, h, w = x_shape
    k, _, r, s = w_shape
    p = (h + 2 * padding[0] - dilation[0] * (r - 1) - 1) // stride[0] + 1
    q = (w + 2 * padding[1] - dilation[1] * (s - 1) - 1) // stride[1] + 1
    return (n, k, p, q)


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", CONV_CASES)
def test_conv2d_all_passes(rng, x_shape, w_shape, stride, padding, dilation, groups):
    x, w, b = _rand(rng, *x_shape), _rand(rng, *w_shape), _rand(rng, w_shape[0])
    y_shape = _geometry(x_shape, w_shape, stride, padding, dilation)
    dy = _rand(rng, *y_shape)
    args = (stride, padding, dilation, groups)

    gemm = K.TILE_64
    y = nb.launch_conv2d_forward(_empty(*y_shape), x, w, b, *args, tile=gemm)
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), _f64(b), *args), F32_TOL, "forward+bias")
    y = nb.launch_conv2d_forward(_empty(*y_shape), x, w, None, *args, tile=gemm)
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), None, *args), F32_TOL, "forward")

    dx = nb.launch_conv2d_backward_data(_empty(*x_shape), dy, w, *args, tile=gemm)
    assert_close(dx, cpu.conv2d_backward_data(_f64(dy), _f64(w), x_shape, *args), F32_TOL, "backward_data")

    dw = nb.launch_conv2d_backward_weight(_empty(*w_shape), dy, x, *args, tile=gemm)
    ref_dw = cpu.conv2d_backward_weight(_f64(dy), _f64(x), w_shape, *args)
    assert_close(dw, ref_dw, F32_TOL, "backward_weight")

    db = nb.launch_conv2d_backward_bias(_empty(w_shape[0]), dy)
    assert_close(db, cpu.conv2d_backward_bias(_f64(dy)), F32_TOL, "backward_bias")


# backward data by stride phases: phases no tap reaches (stride > kernel), dilation sharing a factor
# with the stride (rstep < stride), negative dy row offsets (padding > 0), odd sizes not divisible by the
# stride, phases of different column tiles (17 x 17 at stride 2: 81 columns of phase (0, 0) in two 64-wide
# tiles, 64 of phase (1, 1) in one, so its second block returns at once)
BWD_PHASE_CASES = [
    pytest.param((1, 2, 7, 8), (3, 2, 2, 1), (3, 3), (0, 0), (1, 1), 1, id="s3-k2-untouched-phases"),
    pytest.param((2, 2, 9, 7), (2, 2, 3, 3), (2, 2), (2, 1), (2, 3), 1, id="s2-dil2-dil3-p21"),
    pytest.param((1, 4, 8, 9), (4, 1, 5, 3), (2, 3), (2, 1), (1, 1), 4, id="depthwise-s23-k53"),
    pytest.param((1, 3, 11, 5), (2, 3, 4, 2), (4, 2), (3, 0), (2, 2), 1, id="s4-dil2-taps-every-2nd"),
    pytest.param((1, 2, 17, 17), (2, 2, 3, 3), (2, 2), (1, 1), (1, 1), 1, id="s2-odd-phase-column-tiles"),
]


@pytest.fixture
def launched(monkeypatch):
    """The names of the kernels the conv launchers start, in order."""
    from fastconv.backends.numba import conv
    names, launch = [], conv.launch
    monkeypatch.setattr(conv, "launch", lambda name, *a: names.append(name) or launch(name, *a))
    return names


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", BWD_PHASE_CASES)
def test_conv2d_backward_data_phases(rng, launched, x_shape, w_shape, stride, padding, dilation, groups):
    """Every stride phase in one launch into a NaN-poisoned dx."""
    args = (stride, padding, dilation, groups)
    dy, w = _rand(rng, *_geometry(x_shape, w_shape, stride, padding, dilation)), _rand(rng, *w_shape)
    dx = nb.launch_conv2d_backward_data(_empty(*x_shape), dy, w, *args, tile=K.TILE_64)
    assert launched == ["conv2d_backward_data_t64x64_v1"]
    assert_close(dx, cpu.conv2d_backward_data(_f64(dy), _f64(w), x_shape, *args), F32_TOL, "backward_data")


def test_bwd_phase_column_tiles_differ():
    """The last BWD_PHASE_CASES case has blocks past their phase's columns (pure Python)."""
    (n, _, h, w), (_, _, r, s), stride, padding, dilation, _ = BWD_PHASE_CASES[-1].values
    tiles = [-(-n * ph[1] * ph[8] // K.TILE_64.bn) for ph in K.bwd_phases(h, w, r, s, stride, padding, dilation)]
    assert tiles == [2, 2, 2, 1]


def test_conv2d_backward_data_grid_z_limit(rng):
    """Phases x groups x splits past CUDA's 65535 grid z: a ValueError naming them, before any launch."""
    dy, w = _rand(rng, 1, 16384, 1, 1), _rand(rng, 16384, 1, 1, 1)
    with pytest.raises(ValueError, match=r"conv2d_backward_data: got a grid z of 4 stride phases x 16384 groups x 1 "
                                         r"splits = 65536 blocks, expected at most 65535"):
        nb.launch_conv2d_backward_data(_empty(1, 16384, 2, 2), dy, w, (2, 2), (0, 0), (1, 1), 16384, tile=K.TILE_64)


def test_bwd_phases_cover_every_tap_once():
    """Each (h, r) with (h + pad - r*dil) a multiple of the stride and a dy row in range is visited by
    exactly one phase and tap, and no other pair is (pure Python, many geometries)."""
    for n, r, st, pd, d in itertools.product((1, 5, 8), (1, 2, 3, 5), (1, 2, 3, 4), (0, 1, 3), (1, 2, 3, 4)):
        p = (n + 2 * pd - d * (r - 1) - 1) // st + 1
        if p < 1:
            continue
        want = {(h, t) for h in range(n) for t in range(r)
                if (h + pd - t * d) % st == 0 and 0 <= (h + pd - t * d) // st < p}
        got, rows = [], []
        for phi in range(min(st, n)):
            h0, nt, r0, rstep, nr, base, pstep = K.phase_dim(phi, n, r, st, pd, d)
            rows += [h0 + i * st for i in range(nt)]
            for i in range(nt):
                for j in range(nr):
                    pp = i + base - j * pstep
                    assert (h0 + i * st + pd - (r0 + j * rstep) * d) == pp * st
                    if 0 <= pp < p:
                        got.append((h0 + i * st, r0 + j * rstep))
        assert sorted(rows) == list(range(n))
        assert sorted(got) == sorted(want), (n, r, st, pd, d)


def test_conv2d_multi_tile(rng):
    """More than one BM row tile and BN column tile in each pass (2 x 2 blocks), on shapes whose
    reductions are short so the simulator stays quick; the cases above cover many BK slices."""
    one = ((1, 1), (0, 0), (1, 1), 1)
    x, w = _rand(rng, 1, 2, 9, 8), _rand(rng, 66, 2, 1, 1)  # forward: K=66 rows, 72 columns
    y = nb.launch_conv2d_forward(_empty(1, 66, 9, 8), x, w, None, *one, tile=K.TILE_64)
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), None, *one), F32_TOL, "forward")
    dy, w = _rand(rng, 1, 2, 9, 8), _rand(rng, 2, 66, 1, 1)  # backward data: C=66 rows, 72 columns
    dx = nb.launch_conv2d_backward_data(_empty(1, 66, 9, 8), dy, w, *one)
    assert_close(dx, cpu.conv2d_backward_data(_f64(dy), _f64(w), (1, 66, 9, 8), *one), F32_TOL, "backward_data")
    x, dy = _rand(rng, 1, 66, 3, 3), _rand(rng, 1, 66, 3, 3)  # backward weight: 66 x 66, reduction 9
    dw = nb.launch_conv2d_backward_weight(_empty(66, 66, 1, 1), dy, x, *one)
    assert_close(dw, cpu.conv2d_backward_weight(_f64(dy), _f64(x), (66, 66, 1, 1), *one), F32_TOL,
                 "backward_weight")


# the other tiles' kernels on the cases above (all 8x8 per thread): 128x128 (4 A and 4 B loads
# per thread and slice), 32x128 (64 threads: 4 A loads, 2 B columns of 8 reduction rows each),
# 128x64 and 64x128 (128 threads: 8 A and 4 B loads, B two reduction rows apart; 4 A and 8 B loads,
# B in consecutive reduction rows)
BIG_TILE_CASES = ([pytest.param(K.TILE_128, *c.values, id=f"t128-{c.id}") for c in CONV_CASES + BWD_PHASE_CASES[:2]]
                  + [pytest.param(K.TILE_32, *c.values, id=f"t32x128-{c.id}") for c in (CONV_CASES[1], CONV_CASES[4])]
                  + [pytest.param(t, *c.values, id=f"{t.suffix[1:]}-{c.id}") for t in (K.TILE_128X64, K.TILE_64X128)
                     for c in (CONV_CASES[1], BWD_PHASE_CASES[1])])


@pytest.mark.parametrize("tile,x_shape,w_shape,stride,padding,dilation,groups", BIG_TILE_CASES)
def test_conv2d_all_passes_big_tiles(rng, tile, x_shape, w_shape, stride, padding, dilation, groups):
    x, w, b = _rand(rng, *x_shape), _rand(rng, *w_shape), _rand(rng, w_shape[0])
    y_shape = _geometry(x_shape, w_shape, stride, padding, dilation)
    dy = _rand(rng, *y_shape)
    args = (stride, padding, dilation, groups)
    y = nb.launch_conv2d_forward(_empty(*y_shape), x, w, b, *args, tile=tile)
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), _f64(b), *args), F32_TOL, "forward+bias")
    dx = nb.launch_conv2d_backward_data(_empty(*x_shape), dy, w, *args, tile=tile)
    assert_close(dx, cpu.conv2d_backward_data(_f64(dy), _f64(w), x_shape, *args), F32_TOL, "backward_data")
    dw = nb.launch_conv2d_backward_weight(_empty(*w_shape), dy, x, *args, splits=2, tile=tile)
    assert_close(dw, cpu.conv2d_backward_weight(_f64(dy), _f64(x), w_shape, *args), F32_TOL, "backward_weight")


@pytest.mark.parametrize("tile", [K.TILE_128, K.TILE_32, K.TILE_128X64, K.TILE_64X128],
                         ids=["t128", "t32x128", "t128x64", "t64x128"])
def test_conv2d_multi_big_tile(rng, tile):
    """2 x 2 (3 x 2 for 64 columns) blocks of the big tiles in each pass (bm + 2 rows, 144 or 131
    columns), with ragged edges in both GEMM dimensions."""
    one = ((1, 1), (0, 0), (1, 1), 1)
    m = tile.bm + 2
    x, w = _rand(rng, 1, 3, 9, 16), _rand(rng, m, 3, 1, 1)  # forward: m rows, 144 columns
    y = nb.launch_conv2d_forward(_empty(1, m, 9, 16), x, w, None, *one, tile=tile)
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), None, *one), F32_TOL, "forward")
    dy, w = _rand(rng, 1, 3, 9, 16), _rand(rng, 3, m, 1, 1)  # backward data: m rows, 144 columns
    dx = nb.launch_conv2d_backward_data(_empty(1, m, 9, 16), dy, w, *one, tile=tile)
    assert_close(dx, cpu.conv2d_backward_data(_f64(dy), _f64(w), (1, m, 9, 16), *one), F32_TOL, "backward_data")
    x, dy = _rand(rng, 1, 131, 3, 3), _rand(rng, 1, m, 3, 3)  # backward weight: m x 131, reduction 9
    dw = nb.launch_conv2d_backward_weight(_empty(m, 131, 1, 1), dy, x, *one, tile=tile)
    assert_close(dw, cpu.conv2d_backward_weight(_f64(dy), _f64(x), (m, 131, 1, 1), *one), F32_TOL,
                 "backward_weight")


def test_conv2d_backward_weight_split_reduction(rng):
    """Split-K: 3 slices of the N*P*Q = 60 reduction (chunk 24 = 3 BK steps, last one ragged),
    partial sums in a poisoned workspace, then summed by sum_splits_v1."""
    x_shape, w_shape, args = (2, 4, 5, 6), (6, 2, 3, 3), ((1, 1), (1, 1), (1, 1), 2)
    x, dy = _rand(rng, *x_shape), _rand(rng, 2, 6, 5, 6)
    ws = _empty(3 * int(np.prod(w_shape)))
    dw = nb.launch_conv2d_backward_weight(_empty(*w_shape), dy, x, *args, splits=3, workspace=ws)
    assert np.all(np.isfinite(ws))
    assert_close(dw, cpu.conv2d_backward_weight(_f64(dy), _f64(x), w_shape, *args), F32_TOL, "split backward_weight")


def test_backward_weight_splits_heuristic():
    # lenet.conv1: 1 block of output tiles, a 100k-long reduction -> split to fill the card (one
    # wave of 6 64x64 blocks per SM)
    assert nb.backward_weight_splits((128, 32, 28, 28), (32, 1, 5, 5), 1) == 792
    # dcgan.d3 on 128x128 tiles (1 per SM): 18 output tiles -> 14 slices, 252 blocks in 2 waves (15
    # would begin a third)
    assert nb.backward_weight_splits((128, 256, 4, 4), (256, 128, 3, 3), 1, tile=K.TILE_128) == 14
    # few reduction steps: never slices shorter than 8 BK steps
    assert nb.backward_weight_splits((1, 4, 4, 4), (4, 4, 3, 3), 1) == 1
    # resnet.c4 on 64x64 tiles: 144 output tiles -> 5 slices
    assert nb.backward_weight_splits((32, 256, 14, 14), (256, 256, 3, 3), 1) == 5
    # 576 output tiles already fill the card: no split
    assert nb.backward_weight_splits((32, 512, 7, 7), (512, 512, 3, 3), 1) == 1


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", [
    pytest.param((1, 6, 7, 5), (4, 3, 4, 4), (2, 1), (1, 2), (1, 2), 2, id="g2-s21-dil12-reduction48"),
    BWD_PHASE_CASES[0]])
def test_conv2d_split_reduction_forward_backward_data(rng, launched, x_shape, w_shape, stride, padding, dilation,
                                                      groups):
    """Split-K for forward (bias added by slice 0 only; a reduction of 48 makes 3 slices of 16, the
    second case's 4 stays whole) and backward-data (every phase cut into the same 3 slices in one
    launch; slices past a short phase's reduction, and phases no tap reaches, write zeros): partial
    sums in a poisoned workspace, every element of it written, then summed in order."""
    args = (stride, padding, dilation, groups)
    x, w, b = _rand(rng, *x_shape), _rand(rng, *w_shape), _rand(rng, w_shape[0])
    y_shape = _geometry(x_shape, w_shape, stride, padding, dilation)
    slices = K.split_chunk(int(np.prod(w_shape[1:])), 3)[0]
    ws = _empty(slices * int(np.prod(y_shape)))
    y = nb.launch_conv2d_forward(_empty(*y_shape), x, w, b, *args, splits=3, workspace=ws)
    assert slices == 1 or np.all(np.isfinite(ws))
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), _f64(b), *args), F32_TOL, "split forward+bias")
    dy = _rand(rng, *y_shape)
    ws = _empty(3 * int(np.prod(x_shape)))
    del launched[:]
    dx = nb.launch_conv2d_backward_data(_empty(*x_shape), dy, w, *args, splits=3, workspace=ws)
    assert len(launched) == 2 and launched[0].startswith("conv2d_backward_data_t") and launched[1] == "sum_splits_v1"
    assert np.all(np.isfinite(ws))
    assert_close(dx, cpu.conv2d_backward_data(_f64(dy), _f64(w), x_shape, *args), F32_TOL, "split backward_data")


def test_forward_and_backward_data_split_only_under_a_wave():
    """Pure Python: the default slices of forward / backward-data (conv._slices)."""
    from fastconv.backends.numba import conv
    t64 = K.TILE_64
    assert conv._slices(None, 128, 1152, 1, t64) == 6        # 128 64x64 blocks, 792 fit the card
    assert conv._slices(None, 32, 1152, 1, K.TILE_128) == 4  # dcgan.d3 forward: 32 128x128 blocks, 1 per SM
    assert conv._slices(None, 400, 800, 1, t64) == 1         # over half a wave: no room for a second slice
    assert conv._slices(None, 4, 40, 1, t64) == 1            # reductions under 8 BK steps stay whole
    assert conv._slices(None, 1, 10**6, 65535, t64) == 1     # grid z has no room
    assert conv._slices(2, 10**4, 10, 1, t64) == 2           # an explicit count is kept
    with pytest.raises(ValueError, match=r"splits: got 0, expected a positive int"):
        conv._slices(0, 1, 1, 1, t64)
