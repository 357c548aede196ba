"""The numba family's accumulate under the CUDA simulator: the weight and bias gradients added into
dw / db (``add``) by their last kernel: sum_splits_v1 (on the GEMM and small-channel paths, one
slice then going to a workspace too; the bias gradient) or Winograd's output transform. dw holds,
bit for bit, its prior values plus the gradient the same launch writes without ``add`` (the fp32
sum a separate add makes), and that is close to prior + the float64 CPU path. (The simulator runs
a thread at a time: the split sums run the same line of sum_splits_v1, so one slice each here.)"""

import numpy as np
import pytest

from fastconv.backends import cpu
from fastconv.backends import numba as nb
from fastconv.backends.numba import tiles as K
from fastconv.testing import F32_TOL, REDUCTION_TOL, assert_close
from sim_arrays import _empty, _f64, _rand

assert nb.SIMULATOR

ARGS = ((1, 1), (1, 1), (1, 1), 1)  # stride, padding, dilation, groups


def _check_added(got, prior, alone, want, tol, key):
    assert np.isfinite(got).all(), f"{key}: non-finite values"
    np.testing.assert_array_equal(got, prior + alone, err_msg=f"{key}: not prior + the launch's result")
    assert_close(got, _f64(prior) + want, tol, key)


# name: x shape, w shape, keyword arguments of the launch
WGRAD_CASES = [
    pytest.param((2, 4, 5, 6), (6, 2, 3, 3), {"tile": K.TILE_64, "splits": 1}, id="gemm-unsplit"),
    pytest.param((2, 1, 6, 5), (5, 1, 3, 3), {}, id="smallc"),
]


@pytest.mark.parametrize("x_shape,w_shape,kw", WGRAD_CASES)
def test_backward_weight_adds(rng, x_shape, w_shape, kw):
    groups = 2 if w_shape[1] * 2 == x_shape[1] else 1
    args = ARGS[:3] + (groups,)
    x, dy = _rand(rng, *x_shape), _rand(rng, x_shape[0], w_shape[0], *x_shape[2:])
    alone = nb.launch_conv2d_backward_weight(_empty(*w_shape), dy, x, *args, **kw)
    prior = _rand(rng, *w_shape)
    got = nb.launch_conv2d_backward_weight(prior.copy(), dy, x, *args, add=True, **kw)
    _check_added(got, prior, alone, cpu.conv2d_backward_weight(_f64(dy), _f64(x), w_shape, *args), REDUCTION_TOL,
                 f"backward_weight {kw}")


def test_winograd_output_transform_adds(rng):
    """Winograd's weight gradient ends in conv2d_winograd_wgrad_output_v2_r3 (AT m A of each (k, c,
    row)): with add it adds its rows into dw; the path around it is the launch's (its products
    summed first, unadded)."""
    from fastconv.backends.numba import winograd
    from fastconv.backends.numba.winograd_tables import matrices
    k, c = 2, 3
    products = _rand(rng, 36 * k * c)
    launch = lambda dw, add: winograd.launch("conv2d_winograd_wgrad_output_v2_r3", (1, 1, 1), (32, 1, 1),
                                             (products, dw, k, c, add), None) or dw
    alone = launch(_empty(k * c * 9), 0)
    prior = _rand(rng, k * c * 9)
    m = _f64(products).reshape(6, 6, k, c)
    at = _f64(matrices(3, 3, 4)[0])   # F(3x3, 4x4): AT of 3 outputs from 6 points
    want = np.einsum("ru,uvkc,sv->kcrs", at, m, at).reshape(-1)
    _check_added(launch(prior.copy(), 1), prior, alone, want, F32_TOL, "wgrad_output")


def test_backward_bias_adds(rng):
    dy = _rand(rng, 3, 4, 5, 6)
    alone = nb.launch_conv2d_backward_bias(_empty(4), dy, splits=1)
    prior = _rand(rng, 4)
    got = nb.launch_conv2d_backward_bias(prior.copy(), dy, splits=1, add=True)
    _check_added(got, prior, alone, _f64(dy).sum(axis=(0, 2, 3)), F32_TOL, "backward_bias")
