"""max_pool2d, avg_pool2d and relu_max_pool2d: the CPU path against tests/oracle.py and PyTorch, bad
arguments (tolerances and poisoning: tests/ops/__init__.py), and every pass on every backend
(tests/backends.py). Drawn shapes: test_pool_hypothesis.py."""

import numpy as np
import pytest

import oracle as ref
from fastconv import ops
from backends import GPU, judge
from checks import arr, check, distinct, DTYPES, raises, randn
from fastconv.testing import F32_TOL, assert_close
from torch_checks import T, check as check_torch


# H, W, kernel, stride, padding
POOL_CASES = [
    (6, 6, 2, None, 0),
    (7, 9, 3, 2, 1),            # overlapping windows, padding
    (5, 5, 3, 1, 1),            # heavy overlap
    (9, 7, (3, 2), (2, 1), (1, 1)),
    (8, 7, 2, 3, 1),            # stride larger than the kernel
    (11, 10, 5, 2, 2),
    (3, 3, 3, None, 0),         # one window covering everything
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_max_pool2d(case, dtype, rng):
    h, w, ks, stride, pad = case
    x = distinct(rng, (2, 3, h, w), dtype)
    y, argmax = ops.max_pool2d_forward(x, ks, stride, pad)
    want_y, want_arg = ref.max_pool2d_forward(x, ks, stride, pad)
    check(y, want_y, dtype, "max_pool2d_forward", (x,))
    assert argmax.dtype == np.int32
    np.testing.assert_array_equal(argmax, want_arg)
    dy = randn(rng, y.shape, dtype)
    check(ops.max_pool2d_backward(dy, argmax, x.shape, ks, stride, pad),
          ref.max_pool2d_backward(dy, x, ks, stride, pad), dtype, "max_pool2d_backward", (dy,))


def test_max_pool2d_negative_inputs_ignore_padding(rng):
    """All-negative inputs: a zero-padded implementation would pick the padding; -inf padding must not."""
    x = -np.abs(distinct(rng, (1, 2, 5, 5), np.float64)) - 1.0
    y, argmax = ops.max_pool2d_forward(x, 3, 2, 1)
    check(y, ref.max_pool2d_forward(x, 3, 2, 1)[0], np.float64, "max_pool2d_forward(negative)")
    assert (y < 0).all()


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_avg_pool2d(case, dtype, count_include_pad, rng):
    h, w, ks, stride, pad = case
    x = randn(rng, (2, 3, h, w), dtype) + 0.5  # not zero-mean, so the divisor matters
    y = ops.avg_pool2d_forward(x, ks, stride, pad, count_include_pad)
    check(y, ref.avg_pool2d_forward(x, ks, stride, pad, count_include_pad), dtype, "avg_pool2d_forward", (x,))
    dy = randn(rng, y.shape, dtype)
    check(ops.avg_pool2d_backward(dy, x.shape, ks, stride, pad, count_include_pad),
          ref.avg_pool2d_backward(dy, x.shape, ks, stride, pad, count_include_pad), dtype,
          "avg_pool2d_backward", (dy,))


@pytest.mark.parametrize("ks,stride,padding", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (0, 1))])
def test_max_pool_nan_wins_and_takes_the_gradient(ks, stride, padding):
    """A NaN in a window is its maximum and its argmax is the first NaN in scan order (as on the
    GPU), so the gradient reaches the NaN's input instead of hiding it."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 7, 8)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    x[0, 1, 2, 4] = np.nan
    y, arg = ops.max_pool2d_forward(x, ks, stride, padding)
    clean = x.copy()
    clean[0, 1, 2, 3:5] = -np.inf
    y_clean, _ = ops.max_pool2d_forward(clean, ks, stride, padding)
    nan = np.isnan(y)
    assert nan.any() and not np.isnan(y_clean).any()
    # windows holding a NaN: y is NaN and argmax names the first NaN of the window in scan order
    for n, c, p, q in zip(*np.nonzero(nan)):
        h0, w0 = p * stride[0] - padding[0], q * stride[1] - padding[1]
        cells = [(h, w) for h in range(h0, h0 + ks[0]) for w in range(w0, w0 + ks[1])
                 if 0 <= h < 7 and 0 <= w < 8 and np.isnan(x[n, c, h, w])]
        assert arg[n, c, p, q] == cells[0][0] * 8 + cells[0][1]
    # the other windows are untouched by the NaN
    np.testing.assert_array_equal(y[~nan], y_clean[~nan])
    dx = ops.max_pool2d_backward(np.ones_like(y), arg, x.shape, ks, stride, padding)
    assert dx[0, 1, 2, 3] + dx[0, 1, 2, 4] >= nan.sum()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_relu_max_pool2d(case, dtype, rng):
    """relu_max_pool2d = max_pool2d of relu(x): y from the oracle's pool of relu(x); argmax the window
    index of the oracle's argmax where y > 0, else 255; dx the oracle's pool gradient of relu(x)
    with dy zeroed where y <= 0 (relu passes no gradient there)."""
    h, w, ks, stride, pad = case
    x = distinct(rng, (2, 3, h, w), dtype)  # half negative: many windows have y == 0
    y, code = ops.relu_max_pool2d_forward(x, ks, stride, pad)
    r = ref.relu(x)
    want_y, want_arg = ref.max_pool2d_forward(r, ks, stride, pad)
    check(y, want_y, dtype, "relu_max_pool2d_forward", (x,))
    assert code.dtype == np.uint8 and (code != 255).any()
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    sh, sw = (stride, stride) if isinstance(stride, int) else stride if stride else (kh, kw)
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    p_i = (np.arange(y.shape[2]) * sh - ph).reshape(-1, 1)
    q_i = (np.arange(y.shape[3]) * sw - pw).reshape(1, -1)
    window = (want_arg // w - p_i) * kw + (want_arg % w - q_i)
    np.testing.assert_array_equal(code, np.where(want_y > 0, window, 255))
    dy = randn(rng, y.shape, dtype)
    check(ops.relu_max_pool2d_backward(dy, code, x.shape, ks, stride, pad),
          ref.max_pool2d_backward(dy * (want_y > 0), r, ks, stride, pad), dtype, "relu_max_pool2d_backward", (dy,))


def test_relu_max_pool2d_nan_propagates_without_gradient():
    x = np.random.default_rng(5).standard_normal((1, 1, 4, 4)).astype(np.float32)
    x[0, 0, 0, 1] = np.nan
    y, code = ops.relu_max_pool2d_forward(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and code[0, 0, 0, 0] == 255
    dx = ops.relu_max_pool2d_backward(np.ones_like(y), code, x.shape, 2)
    assert (dx[0, 0, :2, :2] == 0).all()


# ---- bad arguments ---------------------------------------------------------------------------

def test_pool_errors():
    x = arr(1, 2, 4, 4)
    with raises(ValueError, "kernel_size: got (7, 7)", "larger than the padded input 6x6"):
        ops.max_pool2d_forward(x, 7, padding=1)
    with raises(ValueError, "kernel_size: got (5, 5)", "larger than the padded input 4x4"):
        ops.avg_pool2d_forward(x, 5)
    with raises(ValueError, "padding: got (2, 2)", "expected at most half the kernel size (3, 3)"):
        ops.max_pool2d_forward(x, 3, padding=2)
    with raises(ValueError, "stride: got 0", "expected values >= 1"):
        ops.avg_pool2d_forward(x, 2, stride=0)
    with raises(ValueError, "kernel_size: got 0", "expected values >= 1"):
        ops.max_pool2d_forward(x, 0)
    with raises(ValueError, "x: got an array of shape (2, 4, 4) (3-d)", "expected 4-d"):
        ops.max_pool2d_forward(x[0], 2)
    with raises(TypeError, "x: got dtype int64", "expected float32 or float64"):
        ops.avg_pool2d_forward(x.astype(np.int64), 2)
    y, argmax = ops.max_pool2d_forward(x, 2)
    with raises(TypeError, "argmax: got dtype int64", "expected int32"):
        ops.max_pool2d_backward(y, argmax.astype(np.int64), x.shape, 2)
    with raises(ValueError, "dy: got shape (1, 2, 3, 3)", "expected (1, 2, 2, 2)"):
        ops.avg_pool2d_backward(arr(1, 2, 3, 3), x.shape, 2)
    with raises(ValueError, "kernel_size: got (16, 16)", "expected kernel_h * kernel_w < 255"):
        ops.relu_max_pool2d_forward(arr(1, 1, 16, 16), 16)
    y, code = ops.relu_max_pool2d_forward(x, 2)
    with raises(TypeError, "argmax: got dtype int32", "expected uint8"):
        ops.relu_max_pool2d_backward(y, argmax, x.shape, 2)
    with raises(ValueError, "argmax: got shape (1, 2, 1, 2)", "expected (1, 2, 2, 2)"):
        ops.relu_max_pool2d_backward(y, code[:, :, :1], x.shape, 2)


# ---- against PyTorch CPU ---------------------------------------------------------------------

TORCH_CASES = [(6, 6, 2, None, 0), (7, 9, 3, 2, 1), (5, 5, 3, 1, 1), (9, 7, (3, 2), (2, 1), (1, 1)),
              (8, 7, 2, 3, 1), (11, 10, 5, 2, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_max_pool2d_vs_torch(torch, case, dtype, rng):
    F = torch.nn.functional
    h, w, ks, stride, pad = case
    size = 2 * 3 * h * w
    x = ((rng.permutation(size) - size / 2) * 0.01).reshape(2, 3, h, w).astype(dtype)  # no ties
    tx = T(x, True)
    ty, tidx = F.max_pool2d(tx, ks, stride, pad, return_indices=True)
    y, argmax = ops.max_pool2d_forward(x, ks, stride, pad)
    check_torch(y, ty, dtype, "max_pool2d_forward")
    np.testing.assert_array_equal(argmax, tidx.numpy())
    dy = randn(rng, y.shape, dtype)
    ty.backward(T(dy))
    check_torch(ops.max_pool2d_backward(dy, argmax, x.shape, ks, stride, pad), tx.grad, dtype, "max_pool2d_backward")
    check_torch(ref.max_pool2d_backward(dy, x, ks, stride, pad), tx.grad, np.float64, "oracle max_pool2d_backward")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_avg_pool2d_vs_torch(torch, case, dtype, count_include_pad, rng):
    F = torch.nn.functional
    h, w, ks, stride, pad = case
    x = randn(rng, (2, 3, h, w), dtype) + 0.5
    tx = T(x, True)
    ty = F.avg_pool2d(tx, ks, stride, pad, count_include_pad=count_include_pad)
    y = ops.avg_pool2d_forward(x, ks, stride, pad, count_include_pad)
    check_torch(y, ty, dtype, "avg_pool2d_forward")
    check_torch(ref.avg_pool2d_forward(x, ks, stride, pad, count_include_pad), ty, np.float64, "oracle avg_pool2d_forward")
    dy = randn(rng, y.shape, dtype)
    ty.backward(T(dy))
    check_torch(ops.avg_pool2d_backward(dy, x.shape, ks, stride, pad, count_include_pad), tx.grad, dtype,
          "avg_pool2d_backward")


# ---- every backend: float32, outputs poisoned -------------------------------------------------

DEVICE_CASES = [
    pytest.param((2, 3, 7, 8), (3, 2), (2, 2), (1, 1), id="k32-s2-p1-overlap"),
    pytest.param((1, 2, 6, 6), (2, 2), (2, 2), (0, 0), id="k2-s2"),
    pytest.param((1, 3, 9, 5), (3, 3), (1, 2), (1, 0), id="k3-s12-p10"),
]


def pool_all_passes(backend, rng, x_shape, ks, stride, padding):
    x = randn(rng, x_shape, np.float32)
    xd = backend.asarray(x)
    y, am = ops.max_pool2d_forward(xd, ks, stride, padding)
    y_ref, am_ref = ref.max_pool2d_forward(x, ks, stride, padding)
    assert_close(y, y_ref, F32_TOL, "max forward")
    assert np.array_equal(backend.get(am), am_ref), "max_pool2d argmax differs from the oracle"
    dy = randn(rng, y_ref.shape, np.float32)
    dx = ops.max_pool2d_backward(backend.asarray(dy), am, x.shape, ks, stride, padding)
    assert_close(dx, ref.max_pool2d_backward(dy, x, ks, stride, padding), F32_TOL, "max backward")
    for inc in (True, False):
        assert_close(ops.avg_pool2d_forward(xd, ks, stride, padding, inc),
                     ref.avg_pool2d_forward(x, ks, stride, padding, inc), F32_TOL, f"avg forward pad={inc}")
        assert_close(ops.avg_pool2d_backward(backend.asarray(dy), x.shape, ks, stride, padding, inc),
                     ref.avg_pool2d_backward(dy, x.shape, ks, stride, padding, inc), F32_TOL, f"avg backward pad={inc}")


@pytest.mark.parametrize("x_shape,ks,stride,padding", DEVICE_CASES)
def test_pooling_backends(backend, rng, x_shape, ks, stride, padding):
    pool_all_passes(backend, rng, x_shape, ks, stride, padding)


@pytest.mark.parametrize("backend", GPU, indirect=True)
def test_pooling_design_shape(backend):
    judge("pooling", (64, 64, 56, 56, (2, 2), (2, 2), (0, 0)), backend.name)


@pytest.mark.parametrize("backend", GPU, indirect=True)
def test_max_pool2d_nan_inputs(backend):
    """NaN inputs: y is NaN where a window holds one and argmax points at the first NaN in
    row-major window order (kernels/pool.cu, fastconv/backends/numba/pool.py and the CPU path agree)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, size=flat.size // 5, replace=False)] = np.nan
    flat[:2] = np.nan  # two NaNs in the first window
    for ks, sd, pd in [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 3), (1, 1), (1, 1))]:
        ref_y, ref_arg = ops.max_pool2d_forward(x.astype(np.float64), ks, sd, pd)
        y, arg = ops.max_pool2d_forward(backend.asarray(x), ks, sd, pd, kernels=backend.name)
        np.testing.assert_array_equal(backend.get(y), ref_y.astype(np.float32))  # NaN where the CPU has NaN
        np.testing.assert_array_equal(backend.get(arg), ref_arg)
        dy = rng.standard_normal(ref_y.shape).astype(np.float32)
        dx = ops.max_pool2d_backward(backend.asarray(dy), arg, x.shape, ks, sd, pd, kernels=backend.name)
        assert_close(dx, ops.max_pool2d_backward(dy.astype(np.float64), ref_arg, x.shape, ks, sd, pd), F32_TOL,
                     f"max_pool2d backward {ks} {sd} {pd}")
