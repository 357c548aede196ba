"""The numba pooling kernels under the CUDA simulator against the NumPy path run in float64:
overlapping windows, padding, stride larger than the kernel, NaN inputs.

Shapes are tiny (the simulator runs each GPU thread as a Python thread). Outputs are poisoned with
NaN before each launch so unwritten elements fail; run by tests/test_numba_sim.py.
"""

import numpy as np
import pytest

from fastconv.backends import cpu
from fastconv.backends import numba as nb
from fastconv.testing import F32_TOL, assert_close
from sim_arrays import _empty, _f64, _rand

assert nb.SIMULATOR


# (N, C, H, W), kernel, stride, padding
POOL_CASES = [
    pytest.param((2, 3, 6, 8), (2, 2), (2, 2), (0, 0), id="2x2-s2"),
    pytest.param((1, 2, 7, 5), (2, 2), (2, 2), (0, 0), id="2x2-s2-odd-h-w"),
    pytest.param((2, 1, 5, 4), (2, 2), (2, 2), (0, 0), id="2x2-s2-odd-h"),
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


@pytest.mark.parametrize("group_elements", [1, 40], ids=["plane-per-slice", "2-planes-per-slice"])
def test_pool_kernels_walk_planes(rng, monkeypatch, group_elements):
    """Grid z lowered to 2 slices: every thread walks several planes (plane += 2*group), the last
    group ragged (9 planes); forward and backward of both pools against the float64 path."""
    from fastconv.backends.numba import pool
    monkeypatch.setattr(pool, "POOL_MAX_Z", 2)
    monkeypatch.setattr(pool, "POOL_GROUP_ELEMENTS", group_elements)
    for count_include_pad in (True, False):
        test_avg_pool2d(rng, (3, 3, 5, 6), (3, 2), (2, 2), (1, 1), count_include_pad)
    test_max_pool2d(rng, (3, 3, 5, 6), (3, 2), (2, 2), (1, 1))
    test_max_pool2d(rng, (3, 3, 5, 7), (2, 2), (2, 2), (0, 0))      # the 2x2 kernels walk planes too
    test_avg_pool2d(rng, (3, 3, 5, 7), (2, 2), (2, 2), (0, 0), True)


def test_2x2_kernels_chosen_for_2x2_stride_2_only(rng, monkeypatch):
    """The *_v2_2x2 kernels run for 2x2 windows, stride 2, no padding, and only there."""
    from fastconv.backends.numba import pool
    names = []
    launch = pool.launch
    monkeypatch.setattr(pool, "launch", lambda name, *a, **k: (names.append(name), launch(name, *a, **k)))
    test_max_pool2d(rng, (1, 2, 6, 6), (2, 2), (2, 2), (0, 0))
    test_avg_pool2d(rng, (1, 2, 6, 6), (2, 2), (2, 2), (0, 0), False)
    assert names == ["max_pool2d_forward_v2_2x2", "max_pool2d_backward_v2_2x2", "avg_pool2d_forward_v2_2x2",
                     "avg_pool2d_backward_v2_2x2"]
    names.clear()
    for ks, stride, padding in (((2, 2), (2, 2), (1, 1)), ((2, 2), (1, 1), (0, 0)), ((3, 3), (2, 2), (0, 0))):
        test_max_pool2d(rng, (1, 2, 6, 6), ks, stride, padding)
    assert set(names) == {"max_pool2d_forward_v1", "max_pool2d_backward_v1"}
