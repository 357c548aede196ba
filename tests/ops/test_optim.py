"""sgd_update and adam_update: the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py)."""

import numpy as np
import pytest

import oracle as ref
from fastconv import ops
from checks import arr, check, DTYPES, raises, randn


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,wd,nesterov", [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 1e-2, True),
                                                  (0.5, 1e-3, False), (0.0, 1e-2, False)])
def test_sgd_update(momentum, wd, nesterov, dtype, rng):
    p = randn(rng, (4, 3, 2), dtype)
    v = np.zeros_like(p) if momentum else None
    p_ref, v_ref = p.astype(np.float64), np.zeros(p.shape)
    for _ in range(4):
        g = randn(rng, p.shape, dtype)
        ops.sgd_update(p, g, v, 0.05, momentum, wd, nesterov)
        p_ref, v_ref = ref.sgd_step(p_ref, g, v_ref, 0.05, momentum, wd, nesterov)
        assert p.dtype == np.dtype(dtype)
        check(p, p_ref, dtype, "sgd_update param")
        if momentum:
            check(v, v_ref, dtype, "sgd_update velocity")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_adam_update(wd, dtype, rng):
    p = randn(rng, (5, 4), dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    p_ref, m_ref, v_ref = p.astype(np.float64), np.zeros(p.shape), np.zeros(p.shape)
    for t in range(1, 6):
        g = randn(rng, p.shape, dtype)
        ops.adam_update(p, g, m, v, t, 1e-2, 0.9, 0.999, 1e-8, wd)
        p_ref, m_ref, v_ref = ref.adam_step(p_ref, g, m_ref, v_ref, t, 1e-2, 0.9, 0.999, 1e-8, wd)
        check(p, p_ref, dtype, "adam_update param")
        check(m, m_ref, dtype, "adam_update m")
        check(v, v_ref, dtype, "adam_update v")


# ---- bad arguments ---------------------------------------------------------------------------

def test_optimizer_update_errors():
    p = arr(3, 2)
    with raises(ValueError, "velocity: got None", "expected an array when momentum != 0"):
        ops.sgd_update(p, arr(3, 2), None, 0.1, momentum=0.9)
    with raises(ValueError, "grad: got float32 (2, 3)", "expected float32 (3, 2)"):
        ops.sgd_update(p, arr(2, 3), None, 0.1)
    with raises(ValueError, "step: got 0", "expected an int in [1, 2147483647]"):
        ops.adam_update(p, arr(3, 2), np.zeros_like(p), np.zeros_like(p), 0, 1e-3)
    with raises(ValueError, "grad: got a non-contiguous array", "expected a C-contiguous one"):
        ops.sgd_update(arr(2, 2), arr(2, 2).T, None, 0.1)


def test_adam_step_counter_equals_int_steps(rng):
    """The int32 counter form of ``step`` (count before the update, advanced in place; several
    rows of equal counts: the parameters of one flat update) and a float32 array lr give the
    updates of the int and float forms."""
    p1, m1, v1 = randn(rng, (5, 4), np.float64), randn(rng, (5, 4), np.float64), np.abs(randn(rng, (5, 4), np.float64))
    p2, m2, v2 = p1.copy(), m1.copy(), v1.copy()
    counters = np.array([[2, 0]] * 3, np.int32)
    lr = np.array([1e-2], np.float32)
    for k in range(3):
        g = randn(rng, (5, 4), np.float64)
        ops.adam_update(p1, g, m1, v1, 3 + k, float(lr[0]), 0.5)
        ops.adam_update(p2, g, m2, v2, counters, lr, 0.5)
    assert counters.tolist() == [[5, 0]] * 3
    np.testing.assert_array_equal(p2, p1)
    np.testing.assert_array_equal(m2, m1)
    np.testing.assert_array_equal(v2, v1)
    with raises(ValueError, "step: got int64 (2,)", "int32 counters"):
        ops.adam_update(p2, g, m2, v2, np.zeros(2, np.int64), lr)
    with raises(ValueError, "lr: got a float64 array of shape (1,)", "float32 array of shape (1,)"):
        ops.adam_update(p2, g, m2, v2, 4, np.ones(1))


def test_sgd_device_lr_equals_float_lr(rng):
    p1, v1, g = (randn(rng, (7, 3), np.float32) for _ in range(3))
    p2, v2 = p1.copy(), v1.copy()
    ops.sgd_update(p1, g, v1, 0.1, 0.9, 1e-2, True)
    ops.sgd_update(p2, g, v2, np.array([0.1], np.float32), 0.9, 1e-2, True)
    np.testing.assert_array_equal(p2, p1)
    np.testing.assert_array_equal(v2, v1)
    with raises(ValueError, "lr: got a float32 array of shape (2,)"):
        ops.sgd_update(p2, g, v2, np.ones(2, np.float32), 0.9)


def test_accumulate_and_its_errors(rng):
    acc, x = randn(rng, (3, 4), np.float32), randn(rng, (3, 4), np.float32)
    want = acc.astype(np.float64) + x
    ops.accumulate(acc, x)
    np.testing.assert_allclose(acc, want, rtol=1e-6)
    ops.accumulate(acc, 2 * x, add=False)
    np.testing.assert_array_equal(acc, 2 * x)
    with raises(ValueError, "x: got shape (4, 3)", "expected (3, 4)"):
        ops.accumulate(acc, x.T.copy())
    with raises(ValueError, "acc: got a non-contiguous array"):
        ops.accumulate(acc.T, x.T)
