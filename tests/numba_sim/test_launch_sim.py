"""What every numba-family launcher shares, under the CUDA simulator: the backend functions allocate
and match the NumPy path, bad arrays and grids too large are refused with a clear error,
non-contiguous inputs are copied, empty launches do nothing.

Shapes are tiny (the simulator runs each GPU thread as a Python thread). Outputs are poisoned with
NaN before each launch so unwritten elements fail; run by tests/test_numba_sim.py.
"""

import numpy as np
import pytest

from fastconv.backends import cpu
from fastconv.backends.cpu.activation import activate
from fastconv.backends import numba as nb
from fastconv.backends.numba import tiles as K
from fastconv.testing import F32_TOL, assert_close
from sim_arrays import _empty, _f64, _rand

assert nb.SIMULATOR


def test_backend_functions_allocate_and_match(rng):
    """The backend-level functions (what fastconv.ops calls) on numpy arrays under the simulator."""
    x, w, b = _rand(rng, 2, 4, 5, 5), _rand(rng, 6, 2, 3, 3), _rand(rng, 6)
    args = ((2, 1), (1, 1), (1, 1), 2)
    y = nb.conv2d_forward(x, w, b, *args)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), _f64(b), *args))
    dy = _rand(rng, *y.shape)
    assert_close(nb.conv2d_backward_data(dy, w, x.shape, *args), cpu.conv2d_backward_data(_f64(dy), _f64(w),
                                                                                          x.shape, *args))
    assert_close(nb.conv2d_backward_weight(dy, x, w.shape, *args),
                 cpu.conv2d_backward_weight(_f64(dy), _f64(x), w.shape, *args))
    assert_close(nb.conv2d_backward_bias(dy), cpu.conv2d_backward_bias(_f64(dy)))
    assert_close(nb.relu_forward(x), cpu.relu_forward(_f64(x)))
    yr = cpu.relu_forward(x)
    assert_close(nb.relu_backward(x, yr), cpu.relu_backward(_f64(x), yr))
    assert_close(nb.leaky_relu_forward(x, 0.1), cpu.leaky_relu_forward(_f64(x), 0.1))
    assert_close(nb.leaky_relu_backward(x, yr, 0.1), cpu.leaky_relu_backward(_f64(x), yr, 0.1))
    assert_close(nb.tanh_forward(x), cpu.tanh_forward(_f64(x)))
    yt = cpu.tanh_forward(x)
    assert_close(nb.tanh_backward(x, yt), cpu.tanh_backward(_f64(x), yt))
    for act, slope in (("relu", 0.0), ("leaky_relu", 0.2), ("tanh", 0.0)):  # the fused activation: a second launch
        assert_close(nb.conv2d_forward(x, w, b, *args, act, slope),
                     activate(act, cpu.conv2d_forward(_f64(x), _f64(w), _f64(b), *args), slope), F32_TOL, act)
    yp, arg = nb.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1))
    ref_y, ref_arg = cpu.max_pool2d_forward(_f64(x), (3, 3), (2, 2), (1, 1))
    assert_close(yp, ref_y)
    np.testing.assert_array_equal(arg, ref_arg)
    dyp = _rand(rng, *yp.shape)
    assert_close(nb.max_pool2d_backward(dyp, arg, x.shape, (3, 3), (2, 2), (1, 1)),
                 cpu.max_pool2d_backward(_f64(dyp), ref_arg, x.shape, (3, 3), (2, 2), (1, 1)))
    assert_close(nb.avg_pool2d_forward(x, (3, 3), (2, 2), (1, 1), False),
                 cpu.avg_pool2d_forward(_f64(x), (3, 3), (2, 2), (1, 1), False))
    assert_close(nb.avg_pool2d_backward(dyp, x.shape, (3, 3), (2, 2), (1, 1), True),
                 cpu.avg_pool2d_backward(_f64(dyp), x.shape, (3, 3), (2, 2), (1, 1), True))


def test_launchers_reject_bad_arrays(rng):
    x = _rand(rng, 1, 2, 4, 4)
    with pytest.raises(TypeError, match=r"x: got dtype float64, expected float32"):
        nb.relu_forward(x.astype(np.float64))
    with pytest.raises(TypeError, match=r"argmax: got dtype int64, expected int32"):
        nb.max_pool2d_backward(_rand(rng, 1, 2, 2, 2), np.zeros((1, 2, 2, 2), np.int64), (1, 2, 4, 4), (2, 2),
                               (2, 2), (0, 0))
    # the launch layer takes preallocated arrays as they are: a non-contiguous one is refused there
    with pytest.raises(ValueError, match=r"x: got a non-contiguous array of shape \(1, 2, 4, 2\)"):
        nb.launch_relu_forward(_empty(1, 2, 4, 2), x[..., ::2])
    with pytest.raises(TypeError, match=r"argmax: got dtype int64, expected int32"):
        nb.launch_max_pool2d_backward(_empty(1, 2, 4, 4), _rand(rng, 1, 2, 2, 2), np.zeros((1, 2, 2, 2), np.int64),
                                      (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match=r"y: got shape \(1, 2, 4, 3\), expected \(1, 2, 4, 4\)"):
        nb.launch_relu_forward(_empty(1, 2, 4, 3), x)
    with pytest.raises(ValueError, match=r"splits: got 0, expected a positive int"):
        nb.launch_conv2d_backward_weight(_empty(2, 2, 1, 1), _rand(rng, 1, 2, 4, 4), x, (1, 1), (0, 0), (1, 1), 1,
                                         splits=0)


def test_empty_kernel_launches():
    y = _empty(4)
    nb.launch_empty(y)
    assert np.all(np.isnan(y))  # the probe kernel writes nothing


def test_conv_tile_choice():
    """Pure Python: the CUDA C family's choice (config.conv_tile) over the numba tiles, all 8x8 per
    thread: the largest tile whose rows the GEMM fills, 128x128 at most a quarter wave or at least
    two waves of it; 32x128 for at most 32 rows, 64x64 for weight gradients of at most 64 columns
    (and of at most 64 rows), the strided backward-data phases of at most 64 rows on 64x128 (the
    CUDA C family's BK-16 t64x128k16)."""
    assert all(t.tm == t.tn == 8 for t in K.TILES)
    assert K.TILE_128X64.block == (8, 16, 1) and K.TILE_64X128.block == (16, 8, 1)
    assert K.TILE_64.block == (8, 8, 1) and K.TILE_32.block == (16, 4, 1) and K.TILE_32.b_cols == 2
    assert K.conv_tile(256, 64 * 14 * 14, 1) is K.TILE_128X64     # resnet.c4 forward: 98 blocks of 128x128
    assert K.conv_tile(256, 32 * 14 * 14, 1) is K.TILE_128X64
    assert K.conv_tile(256, 128 * 4 * 4, 1) is K.TILE_128         # dcgan.d3 forward: 32 blocks, split-K fills
    assert K.conv_tile(128, 128 * 264, 1) is K.TILE_128           # two waves of 128x128 blocks
    assert K.conv_tile(128, 128 * 263, 1) is K.TILE_128X64
    assert K.conv_tile(128, 128 * 132, 2) is K.TILE_128           # groups (and phases) count as blocks
    assert K.conv_tile(64, 10**6, 1) is K.TILE_64X128             # 64 rows: a 128 tile would idle half
    assert K.conv_tile(64, 10**6, 4) is K.TILE_64X128             # strided backward-data phases (dcgan.d2)
    assert K.conv_tile(64, 1600, 1, wgrad=True) is K.TILE_64
    assert K.conv_tile(256, 2304, 1, wgrad=True) is K.TILE_128X64  # resnet.c4 weight gradient: 36 big blocks
    assert K.conv_tile(128, 1024, 1, wgrad=True) is K.TILE_128    # dcgan.d2 weight gradient: 8
    assert K.conv_tile(256, 64, 1, wgrad=True) is K.TILE_64       # at most 64 columns
    assert K.conv_tile(32, 128 * 784, 1) is K.TILE_32             # lenet.conv1 forward: 32 filters
    assert K.conv_tile(1, 128 * 784, 1) is K.TILE_32              # its input gradient: 1 channel
    assert K.conv_tile(32, 25, 1, wgrad=True) is K.TILE_64        # its weight gradient: 25 columns
    assert K.conv_tile(2, 16, 1) is K.TILE_32                     # under 128 columns too
    assert K.conv_tile(33, 10**6, 1) is K.TILE_64X128


def test_backend_functions_copy_non_contiguous_inputs(rng):
    """As the cupy family does (fastconv.backends.cuda._arg), a non-contiguous input is copied."""
    x = _rand(rng, 1, 2, 4, 8)
    xs = x[..., ::2]
    assert not xs.flags.c_contiguous
    assert_close(nb.relu_forward(xs), cpu.relu_forward(_f64(xs)), F32_TOL, "relu of a strided view")
    y, arg = nb.max_pool2d_forward(xs, (2, 2), (2, 2), (0, 0))
    ref_y, ref_arg = cpu.max_pool2d_forward(_f64(xs), (2, 2), (2, 2), (0, 0))
    assert_close(y, ref_y, F32_TOL, "max_pool of a strided view")
    np.testing.assert_array_equal(arg, ref_arg)
    w = _rand(rng, 3, 4, 1, 1)[:, ::2]  # (3, 2, 1, 1), non-contiguous
    args = ((1, 1), (0, 0), (1, 1), 1)
    assert_close(nb.conv2d_forward(xs, w, None, *args), cpu.conv2d_forward(_f64(xs), _f64(w), None, *args),
                 F32_TOL, "conv of strided views")


def test_grid_limits_are_clear_errors():
    with pytest.raises(ValueError, match=r"conv2d_forward: got a launch grid of \(1, 1, 65536\) blocks"):
        K._gemm_grid("conv2d_forward", 10, 10, 65536)
    with pytest.raises(ValueError, match=r"conv2d_backward_data: got a launch grid of \(1, 65536, 1\)"):
        K._gemm_grid("conv2d_backward_data", 10, 65536 * 64, 1)
    assert K._gemm_grid("conv2d_forward", 10, 65535 * 64, 65535) == (1, 65535, 65535)
    assert K._gemm_grid("conv2d_forward", 129, 65535 * 128, 1, K.TILE_128) == (2, 65535, 1)
    # depthwise conv with 65536 groups: refused before any launch
    x, w = np.ones((1, 65536, 1, 1), np.float32), np.ones((65536, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"z <= 65535"):
        nb.conv2d_forward(x, w, None, (1, 1), (0, 0), (1, 1), 65536)
    # an output too large for the kernels' int32 sizes is refused before it is allocated
    with pytest.raises(ValueError, match=r"avg_pool2d_backward output: got 2500000000 elements"):
        nb.avg_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), (1, 1, 50000, 50000), (2, 2), (2, 2), (0, 0), True)
    # the split heuristic keeps groups*splits within grid z
    assert nb.backward_weight_splits((4096, 60000, 8, 8), (60000, 1, 1, 1), 60000, target_blocks=10**9) == 1
    assert nb.backward_weight_splits((4096, 600, 8, 8), (600, 1, 1, 1), 600, target_blocks=10**9) == 65535 // 600


def test_backward_bias_uses_several_blocks_per_channel(rng, monkeypatch):
    """The bias gradient is a multi-block reduction: several blocks per channel (grid y) whose
    partial sums are added in order; checked on the launch a 16x64x56x56 gradient gets (recorded,
    not run) and, run, on a small one split 3 ways with a poisoned workspace."""
    from fastconv.backends.numba import conv
    launches = []
    monkeypatch.setattr(conv, "launch", lambda name, grid, block, args, stream=None: launches.append((name, grid)))
    nb.launch_conv2d_backward_bias(_empty(64), np.ones((16, 64, 56, 56), np.float32))
    assert launches[0][0] == "conv2d_backward_bias_v1" and launches[0][1][:2] == (64, 12), launches
    assert launches[1][0] == "sum_splits_v1"
    monkeypatch.undo()
    dy = _rand(rng, 3, 4, 5, 7)
    ws = _empty(3 * 4)
    db = nb.launch_conv2d_backward_bias(_empty(4), dy, splits=3, workspace=ws)
    assert np.all(np.isfinite(ws))
    assert_close(db, cpu.conv2d_backward_bias(_f64(dy)), F32_TOL, "split backward_bias")
    assert nb.backward_bias_splits(256, 64, 56 * 56) * 64 >= 8 * K.WAVE_BLOCKS
    assert nb.backward_bias_splits(1, 64, 10) == 1
