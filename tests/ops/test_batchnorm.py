"""batchnorm (forward in training and eval, backward): the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py)."""

import numpy as np
import pytest

import oracle as ref
from fastconv import ops
from checks import arr, check, DTYPES, raises, randn


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4, 3)], ids=["1d", "2d"])
def test_batchnorm(shape, dtype, training, rng):
    c = shape[1]
    x = (randn(rng, shape, dtype) * 2 + 1.5).astype(dtype)
    gamma, beta = randn(rng, (c,), dtype), randn(rng, (c,), dtype)
    rm = randn(rng, (c,), dtype)
    rv = (rng.random(c) + 0.5).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, invstd = ops.batchnorm_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5)
    y_ref, rm_ref, rv_ref = ref.batchnorm_forward(x, gamma, beta, rm0, rv0, training, 0.1, 1e-5)
    check(y, y_ref, dtype, f"batchnorm_forward(train={training})", (x, gamma, beta, rm, rv))
    check(rm, rm_ref, dtype, f"batchnorm running_mean(train={training})")
    check(rv, rv_ref, dtype, f"batchnorm running_var(train={training})")
    if not training:
        np.testing.assert_array_equal(rm, rm0)
        np.testing.assert_array_equal(rv, rv0)
    dy = randn(rng, shape, dtype)
    dx, dgamma, dbeta = ops.batchnorm_backward(dy, x, gamma, mean, invstd, training)
    dx_ref, dg_ref, db_ref = ref.batchnorm_backward(dy, x, gamma, training, rm0, rv0)
    check(dx, dx_ref, dtype, f"batchnorm_backward dx(train={training})", (dy, x))
    check(dgamma, dg_ref, dtype, f"batchnorm_backward dgamma(train={training})")
    check(dbeta, db_ref, dtype, f"batchnorm_backward dbeta(train={training})")


# ---- bad arguments ---------------------------------------------------------------------------

def test_batchnorm_errors():
    x = arr(4, 3, 2, 2)
    ones = np.ones(3, np.float32)
    with raises(ValueError, "gamma: got shape (2,)", "expected (3,)"):
        ops.batchnorm_forward(x, np.ones(2, np.float32), ones, ones, ones, True)
    with raises(ValueError, "x: got shape (1, 3)", "expected more than 1 value per channel"):
        ops.batchnorm_forward(arr(1, 3), ones, ones, ones, ones, True)
    with raises(ValueError, "x: got an array of shape (4, 3, 2) (3-d)", "expected 2 or 4-d"):
        ops.batchnorm_forward(arr(4, 3, 2), ones, ones, ones, ones, True)


def test_batchnorm_backward_checks_its_statistics():
    x, dy = arr(4, 3, 2, 2), arr(4, 3, 2, 2)
    g, m, s = arr(3), arr(3), np.abs(arr(3)) + 0.5
    with raises(ValueError, "gamma: got shape (4,)", "expected (3,)"):
        ops.batchnorm_backward(dy, x, arr(4), m, s)
    with raises(TypeError, "mean: got dtype float64", "expected float32"):
        ops.batchnorm_backward(dy, x, g, m.astype(np.float64), s)
    with raises(ValueError, "invstd: got an array of shape (3, 1)", "expected 1-d"):
        ops.batchnorm_backward(dy, x, g, m, s.reshape(3, 1))
