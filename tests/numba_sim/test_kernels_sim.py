"""Every numba-family kernel under the CUDA simulator against the NumPy twin run in float64.

Shapes are tiny (the simulator runs each GPU thread as a Python thread) but cover stride,
padding, dilation, groups, odd sizes, overlapping pools and more than one tile in every GEMM
dimension. Outputs are poisoned with NaN before each launch so unwritten elements fail.
"""

import numpy as np
import pytest

from fastconv.backends import cpu
from fastconv.backends import numba as nb
from fastconv.backends.numba import tiles as K
from fastconv.testing import F32_TOL, assert_close, poison

assert nb.SIMULATOR


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _f64(a):
    return a.astype(np.float64)


def _empty(*shape, dtype=np.float32):
    return poison(np.empty(shape, dtype))


# (N, C, H, W), (K, C/G, R, S), stride, padding, dilation, groups
CONV_CASES = [
    pytest.param((2, 3, 5, 6), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1, id="3x3-p1-odd"),
    pytest.param((1, 4, 7, 5), (6, 2, 3, 2), (2, 1), (1, 0), (1, 2), 2, id="stride21-dil12-g2"),
    pytest.param((2, 2, 6, 7), (3, 2, 1, 1), (2, 2), (0, 0), (1, 1), 1, id="1x1-s2"),
    pytest.param((1, 3, 6, 6), (3, 1, 3, 3), (2, 2), (2, 1), (2, 1), 3, id="depthwise-s2-p21-dil2"),
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

    y = nb.launch_conv2d_forward(_empty(*y_shape), x, w, b, *args)
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), _f64(b), *args), F32_TOL, "forward+bias")
    y = nb.launch_conv2d_forward(_empty(*y_shape), x, w, None, *args)
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), None, *args), F32_TOL, "forward")

    dx = nb.launch_conv2d_backward_data(_empty(*x_shape), dy, w, *args)
    assert_close(dx, cpu.conv2d_backward_data(_f64(dy), _f64(w), x_shape, *args), F32_TOL, "backward_data")

    dw = nb.launch_conv2d_backward_weight(_empty(*w_shape), dy, x, *args)
    ref_dw = cpu.conv2d_backward_weight(_f64(dy), _f64(x), w_shape, *args)
    assert_close(dw, ref_dw, F32_TOL, "backward_weight")

    db = nb.launch_conv2d_backward_bias(_empty(w_shape[0]), dy)
    assert_close(db, cpu.conv2d_backward_bias(_f64(dy)), F32_TOL, "backward_bias")


def test_conv2d_multi_tile(rng):
    """More than one BM row tile and BN column tile in each pass (2 x 2 blocks), on shapes whose
    reductions are short so the simulator stays quick; the cases above cover many BK slices."""
    one = ((1, 1), (0, 0), (1, 1), 1)
    x, w = _rand(rng, 1, 2, 9, 8), _rand(rng, 66, 2, 1, 1)  # forward: K=66 rows, 72 columns
    y = nb.launch_conv2d_forward(_empty(1, 66, 9, 8), x, w, None, *one)
    assert_close(y, cpu.conv2d_forward(_f64(x), _f64(w), None, *one), F32_TOL, "forward")
    dy, w = _rand(rng, 1, 2, 9, 8), _rand(rng, 2, 66, 1, 1)  # backward data: C=66 rows, 72 columns
    dx = nb.launch_conv2d_backward_data(_empty(1, 66, 9, 8), dy, w, *one)
    assert_close(dx, cpu.conv2d_backward_data(_f64(dy), _f64(w), (1, 66, 9, 8), *one), F32_TOL, "backward_data")
    x, dy = _rand(rng, 1, 66, 3, 3), _rand(rng, 1, 66, 3, 3)  # backward weight: 66 x 66, reduction 9
    dw = nb.launch_conv2d_backward_weight(_empty(66, 66, 1, 1), dy, x, *one)
    assert_close(dw, cpu.conv2d_backward_weight(_f64(dy), _f64(x), (66, 66, 1, 1), *one), F32_TOL,
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
    # lenet.conv1: 1 block of output tiles, a 100k-long reduction -> split to fill the card
    assert nb.backward_weight_splits((128, 32, 28, 28), (32, 1, 5, 5), 1) == 264
    # few reduction steps: never slices shorter than 8 BK steps
    assert nb.backward_weight_splits((1, 4, 4, 4), (4, 4, 3, 3), 1) == 1
    # resnet.c4: 144 output tiles -> 2 slices
    assert nb.backward_weight_splits((32, 256, 14, 14), (256, 256, 3, 3), 1) == 2
    # 576 output tiles already fill the card: no split
    assert nb.backward_weight_splits((32, 512, 7, 7), (512, 512, 3, 3), 1) == 1


# (N, C, H, W), kernel, stride, padding
POOL_CASES = [
    pytest.param((2, 3, 6, 8), (2, 2), (2, 2), (0, 0), id="2x2-s2"),
    pytest.param((2, 2, 7, 5), (3, 3), (2, 2), (1, 1), id="3x3-s2-p1-overlap"),
    pytest.param((1, 3, 5, 7), (3, 2), (1, 2), (1, 0), id="3x2-s12-p10-odd"),
    pytest.param((1, 2, 4, 4), (2, 2), (3, 3), (1, 1), id="stride-gt-kernel"),
    pytest.param((1, 2, 6, 6), (4, 4), (1, 1), (2, 2), id="4x4-s1-p2-heavy-overlap"),
]


def _pool_out(x_shape, ks, stride, padding):
    n, c, h, w = x_shape
    return (n, c, (h + 2 * padding[0] - ks[0]) // stride[0] + 1, (w + 2 * padding[1] - ks[1]) // stride[1] + 1)


@pytest.mark.parametrize("x_shape,ks,stride,padding", POOL_CASES)
def test_max_pool2d(rng, x_shape, ks, stride, padding):
    x = _rand(rng, *x_shape)
    y_shape = _pool_out(x_shape, ks, stride, padding)
    y, arg = nb.launch_max_pool2d_forward(_empty(*y_shape), _empty(*y_shape, dtype=np.int32), x, ks, stride,
                                          padding)
    ref_y, ref_arg = cpu.max_pool2d_forward(_f64(x), ks, stride, padding)
    assert_close(y, ref_y, F32_TOL, "max_pool forward")
    assert arg.dtype == np.int32
    np.testing.assert_array_equal(arg, ref_arg)
    dy = _rand(rng, *y_shape)
    dx = nb.launch_max_pool2d_backward(_empty(*x_shape), dy, arg, ks, stride, padding)
    assert_close(dx, cpu.max_pool2d_backward(_f64(dy), ref_arg, x_shape, ks, stride, padding), F32_TOL,
                 "max_pool backward")


@pytest.mark.parametrize("count_include_pad", [True, False], ids=["include-pad", "exclude-pad"])
@pytest.mark.parametrize("x_shape,ks,stride,padding", POOL_CASES)
def test_avg_pool2d(rng, x_shape, ks, stride, padding, count_include_pad):
    x = _rand(rng, *x_shape)
    y_shape = _pool_out(x_shape, ks, stride, padding)
    y = nb.launch_avg_pool2d_forward(_empty(*y_shape), x, ks, stride, padding, count_include_pad)
    assert_close(y, cpu.avg_pool2d_forward(_f64(x), ks, stride, padding, count_include_pad), F32_TOL,
                 "avg_pool forward")
    dy = _rand(rng, *y_shape)
    dx = nb.launch_avg_pool2d_backward(_empty(*x_shape), dy, ks, stride, padding, count_include_pad)
    assert_close(dx, cpu.avg_pool2d_backward(_f64(dy), x_shape, ks, stride, padding, count_include_pad), F32_TOL,
                 "avg_pool backward")


@pytest.mark.parametrize("shape", [(7,), (3, 5, 47), (2, 3, 4, 5, 2)], ids=["1d", "3d-3blocks", "5d"])
def test_activations(rng, shape):
    x, dy = _rand(rng, *shape), _rand(rng, *shape)
    slope = 0.2
    y = nb.launch_relu_forward(_empty(*shape), x)
    ref_y = cpu.relu_forward(_f64(x))
    assert_close(y, ref_y, F32_TOL, "relu forward")
    assert_close(nb.launch_relu_backward(_empty(*shape), dy, y), cpu.relu_backward(_f64(dy), ref_y), F32_TOL,
                 "relu backward")
    y = nb.launch_leaky_relu_forward(_empty(*shape), x, slope)
    ref_y = cpu.leaky_relu_forward(_f64(x), slope)
    assert_close(y, ref_y, F32_TOL, "leaky_relu forward")
    assert_close(nb.launch_leaky_relu_backward(_empty(*shape), dy, y, slope),
                 cpu.leaky_relu_backward(_f64(dy), ref_y, slope), F32_TOL, "leaky_relu backward")


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


def test_tile_constants_consistent():
    assert K.TM * K.TY == K.BM and K.TN * K.TX == K.BN and K.LOADS * K.THREADS == K.BM * K.BK


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
        K._gemm_grid("conv2d_backward_data", 10, 65536 * K.BM, 1)
    assert K._gemm_grid("conv2d_forward", 10, 65535 * K.BM, 65535) == (1, 65535, 65535)
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


# max-pool with NaN inputs: a NaN in a window is its maximum and the argmax points at the first NaN
# in row-major window order, as kernels/pool.cu and the CPU path do
def _nan_pool_check(x, ks, stride, padding, rng):
    y_shape = _pool_out(x.shape, ks, stride, padding)
    y, arg = nb.launch_max_pool2d_forward(_empty(*y_shape), _empty(*y_shape, dtype=np.int32), x, ks, stride,
                                          padding)
    ref_y, ref_arg = cpu.max_pool2d_forward(_f64(x), ks, stride, padding)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref_y))
    np.testing.assert_array_equal(y, ref_y.astype(np.float32))  # NaN positions equal, other values exact
    np.testing.assert_array_equal(arg, ref_arg)
    # every NaN output points at a NaN input, every other output at its value
    planes = x.reshape(x.shape[0] * x.shape[1], -1)
    picked = np.take_along_axis(planes, arg.reshape(planes.shape[0], -1), axis=1).reshape(y.shape)
    np.testing.assert_array_equal(picked, y)
    dy = _rand(rng, *y_shape)
    dx = nb.launch_max_pool2d_backward(_empty(*x.shape), dy, arg, ks, stride, padding)
    assert_close(dx, cpu.max_pool2d_backward(_f64(dy), ref_arg, x.shape, ks, stride, padding), F32_TOL,
                 "max_pool backward with NaN inputs")
    return y, arg


def test_max_pool2d_nan_first_in_scan_order(rng):
    nan = np.nan
    x = np.array([[[[1.0, nan, 5.0, nan],
                    [nan, 9.0, 2.0, 3.0],
                    [4.0, 2.0, 7.0, 7.0],
                    [8.0, 1.0, nan, nan]]]], np.float32)
    y, arg = _nan_pool_check(x, (2, 2), (2, 2), (0, 0), rng)
    # windows: {1, nan, nan, 9} -> first NaN (0,1); {5, nan, 2, 3} -> (0,3); {4, 2, 8, 1} -> 8 at (3,0);
    # {7, 7, nan, nan} -> first NaN (3,2)
    np.testing.assert_array_equal(arg[0, 0], [[1, 3], [12, 14]])
    np.testing.assert_array_equal(np.isnan(y[0, 0]), [[True, True], [False, True]])
    assert y[0, 0, 1, 0] == 8.0
    _nan_pool_check(x, (3, 3), (1, 1), (1, 1), rng)  # overlapping windows with padding


@pytest.mark.parametrize("x_shape,ks,stride,padding", POOL_CASES)
def test_max_pool2d_nan_random(rng, x_shape, ks, stride, padding):
    x = _rand(rng, *x_shape)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, size=max(2, flat.size // 4), replace=False)] = np.nan
    flat[:2] = [np.nan, np.nan]  # two NaNs in the first window of the first plane
    _nan_pool_check(x, ks, stride, padding, rng)
