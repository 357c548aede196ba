"""max_pool2d and avg_pool2d: the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py)."""

import numpy as np
import pytest

import oracle as ref
from fastconv import ops
from checks import arr, check, distinct, DTYPES, raises, randn


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
