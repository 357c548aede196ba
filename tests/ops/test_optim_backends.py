"""sgd_update and adam_update on every backend (tests/backends.py), outputs poisoned, against the
oracle; the CPU path in float32/float64 and the argument errors are in test_optim.py."""

import numpy as np
import pytest
from hypothesis import given

import oracle as ref
from backends import GPU, GPU_DRAWN, SHAPES, judge
from checks import randn
from fastconv import ops
from fastconv.testing import F32_TOL, assert_close


def sgd_update_case(backend, rng, momentum, wd, nesterov):
    """One SGD step of backend (velocity when momentum > 0) against the oracle."""
    p, g, v = (randn(rng, (333,), np.float32) for _ in range(3))
    pd, vd = backend.asarray(p), backend.asarray(v)
    ops.sgd_update(pd, backend.asarray(g), vd if momentum else None, 0.1, momentum, wd, nesterov)
    p_ref, v_ref = ref.sgd_step(p, g, v, 0.1, momentum, wd, nesterov)
    assert_close(pd, p_ref, F32_TOL, "param")
    if momentum:
        assert_close(vd, v_ref, F32_TOL, "velocity")


@pytest.mark.parametrize("momentum,wd,nesterov", [(0.0, 0.0, False), (0.9, 1e-2, False), (0.9, 0.0, True)])
def test_sgd_update_backends(backend, rng, momentum, wd, nesterov):
    sgd_update_case(backend, rng, momentum, wd, nesterov)


def adam_update_case(backend, rng, device_lr=False):
    """Two Adam steps of backend (param, m, v) against the oracle; lr a float or a float32 array
    (1,) on the backend's device."""
    p, g = randn(rng, (257,), np.float32), randn(rng, (257,), np.float32)
    m, v = randn(rng, (257,), np.float32) * 0.1, np.abs(randn(rng, (257,), np.float32)) * 0.1
    pd, md, vd = backend.asarray(p), backend.asarray(m), backend.asarray(v)
    lr = backend.asarray(np.array([1e-2], np.float32)) if device_lr else 1e-2
    for step in (3, 4):
        ops.adam_update(pd, backend.asarray(g), md, vd, step, lr, 0.9, 0.999, 1e-8, 1e-2)
        p, m, v = ref.adam_step(p, g, m, v, step, 1e-2, 0.9, 0.999, 1e-8, 1e-2)
        assert_close(pd, p, F32_TOL, f"param at step {step}")
        assert_close(md, m, F32_TOL, f"m at step {step}")
        assert_close(vd, v, F32_TOL, f"v at step {step}")


@pytest.mark.parametrize("device_lr", [False, True])
def test_adam_update_backends(backend, rng, device_lr):
    adam_update_case(backend, rng, device_lr)


# ---- GPU: fastconv check's judgement of drawn shapes ------------------------------------------


@pytest.mark.parametrize("backend", GPU, indirect=True)
@GPU_DRAWN
@given(shape=SHAPES)
def test_optim_gpu_drawn(backend, shape):
    judge("optim", shape, backend.name)
