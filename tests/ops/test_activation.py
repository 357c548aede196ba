"""relu, leaky_relu, sigmoid and tanh: the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py)."""

import numpy as np
import pytest

import oracle as ref
from fastconv import ops
from checks import arr, away_from_zero, check, DTYPES, raises, randn


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4, 5)])
def test_relu(shape, dtype, rng):
    x = away_from_zero(rng, shape, dtype)
    y = ops.relu_forward(x)
    check(y, ref.relu(x), dtype, "relu_forward", (x,))
    dy = randn(rng, shape, dtype)
    check(ops.relu_backward(dy, y), np.where(ref.relu(x) > 0, ref._f64(dy), 0.0), dtype, "relu_backward", (dy, y))


@pytest.mark.parametrize("slope", [0.01, 0.2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu(slope, dtype, rng):
    x = away_from_zero(rng, (2, 3, 4, 5), dtype)
    y = ops.leaky_relu_forward(x, slope)
    check(y, ref.leaky_relu(x, slope), dtype, "leaky_relu_forward", (x,))
    dy = randn(rng, x.shape, dtype)
    check(ops.leaky_relu_backward(dy, y, slope), np.where(ref._f64(x) > 0, 1.0, slope) * ref._f64(dy), dtype,
          "leaky_relu_backward", (dy, y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_tanh(dtype, rng):
    x = randn(rng, (2, 3, 4, 5), dtype) * 3
    dy = randn(rng, x.shape, dtype)
    s = ops.sigmoid_forward(x)
    check(s, ref.sigmoid(x), dtype, "sigmoid_forward", (x,))
    check(ops.sigmoid_backward(dy, s), ref._f64(dy) * ref.sigmoid(x) * (1 - ref.sigmoid(x)), dtype,
          "sigmoid_backward", (dy, s))
    t = ops.tanh_forward(x)
    check(t, np.tanh(ref._f64(x)), dtype, "tanh_forward", (x,))
    check(ops.tanh_backward(dy, t), ref._f64(dy) * (1 - np.tanh(ref._f64(x)) ** 2), dtype, "tanh_backward",
          (dy, t))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_extreme_inputs_stay_finite(dtype):
    x = np.array([-1000.0, -100.0, -30.0, 0.5, 30.0, 100.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise"):
        s = ops.sigmoid_forward(x)
    assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))
    check(s, ref.sigmoid(np.clip(x, -700, 700)), dtype, "sigmoid_forward(extreme)")


# ---- bad arguments ---------------------------------------------------------------------------

def test_activation_errors():
    with raises(ValueError, "negative_slope: got 1.5", "expected a number in [0, 1)"):
        ops.leaky_relu_forward(arr(3), 1.5)
    with raises(ValueError, "dy: got shape (3,)", "expected (4,)"):
        ops.relu_backward(arr(3), arr(4))
    with raises(TypeError, "x: got dtype int32", "expected float32 or float64"):
        ops.relu_forward(np.arange(4, dtype=np.int32))
