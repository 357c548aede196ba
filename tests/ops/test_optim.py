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
    with raises(ValueError, "step: got 0", "expected an int >= 1"):
        ops.adam_update(p, arr(3, 2), np.zeros_like(p), np.zeros_like(p), 0, 1e-3)
    with raises(ValueError, "grad: got a non-contiguous array", "expected a C-contiguous one"):
        ops.sgd_update(arr(2, 2), arr(2, 2).T, None, 0.1)
