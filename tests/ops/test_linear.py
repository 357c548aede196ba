"""linear (forward, backward data, backward weight and bias): the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py)."""

import numpy as np
import pytest

import oracle as ref
from fastconv import ops
from checks import arr, check, DTYPES, raises, randn


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,fin,fout", [(1, 3, 2), (5, 17, 9), (16, 64, 10)])
def test_linear(n, fin, fout, dtype, rng):
    x, w, b = randn(rng, (n, fin), dtype), randn(rng, (fout, fin), dtype), randn(rng, (fout,), dtype)
    check(ops.linear_forward(x, w, b), ref.linear_forward(x, w, b), dtype, "linear_forward", (x, w, b))
    check(ops.linear_forward(x, w, None), ref.linear_forward(x, w), dtype, "linear_forward(no bias)")
    dy = randn(rng, (n, fout), dtype)
    # backward of y = x w^T + b from the definition: dx[i, j] = sum_o dy[i, o] w[o, j], etc.
    dx_ref = np.array([[sum(float(dy[i, o]) * float(w[o, j]) for o in range(fout)) for j in range(fin)]
                       for i in range(n)])
    dw_ref = np.array([[sum(float(dy[i, o]) * float(x[i, j]) for i in range(n)) for j in range(fin)]
                       for o in range(fout)])
    check(ops.linear_backward_data(dy, w), dx_ref, dtype, "linear_backward_data", (dy, w))
    dw, db = ops.linear_backward_weight(dy, x)
    check(dw, dw_ref, dtype, "linear_backward_weight", (dy, x))
    check(db, ref._f64(dy).sum(axis=0), dtype, "linear_backward_bias", (dy,))


ACTIVATIONS = {"relu": lambda y: ref.relu(y), "leaky_relu": lambda y: ref.leaky_relu(y, 0.2),
               "sigmoid": lambda y: ref.sigmoid(y), "tanh": lambda y: np.tanh(y)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_linear_forward_activation(activation, dtype, rng):
    x, w, b = randn(rng, (6, 13), dtype), randn(rng, (7, 13), dtype), randn(rng, (7,), dtype)
    got = ops.linear_forward(x, w, b, activation=activation, negative_slope=0.2)
    check(got, ACTIVATIONS[activation](ref.linear_forward(x, w, b)), dtype, f"linear_forward({activation})", (x, w, b))


# ---- bad arguments ---------------------------------------------------------------------------

def test_linear_errors():
    with raises(ValueError, "x: got shape (4, 5)", "expected 6 features"):
        ops.linear_forward(arr(4, 5), arr(3, 6))
    with raises(ValueError, "x: got an array of shape (4, 5, 1) (3-d)", "expected 2-d"):
        ops.linear_forward(arr(4, 5, 1), arr(3, 5))
    with raises(TypeError, "x: got dtype float16", "expected float32 or float64"):
        ops.linear_forward(arr(4, 5).astype(np.float16), arr(3, 5))
    with raises(ValueError, "activation: got 'gelu'", "expected one of"):
        ops.linear_forward(arr(4, 5), arr(3, 5), activation="gelu")
    with raises(ValueError, "negative_slope: got 2", "expected"):
        ops.linear_forward(arr(4, 5), arr(3, 5), activation="leaky_relu", negative_slope=2)
    dy, x = arr(4, 3), arr(4, 5)
    with raises(TypeError, "out: got ndarray", "expected None or a pair (dw, db) of arrays or None"):
        ops.linear_backward_weight(dy, x, out=np.zeros((3, 5), np.float32))
    with raises(ValueError, "out[1]: got shape (5,)", "expected (3,)"):
        ops.linear_backward_weight(dy, x, out=(None, np.zeros(5, np.float32)))
    with raises(TypeError, "out[0]: got dtype float64", "expected float32 (the dtype of dy)"):
        ops.linear_backward_weight(dy, x, out=(np.zeros((3, 5)), None))
