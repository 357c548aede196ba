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


def test_adam_step_counter_equals_int_steps(rng):
    """The int32 counter form of ``step`` (count before the update, advanced in place) gives the
    updates of the int form."""
    p1, m1, v1 = randn(rng, (5, 4), np.float64), randn(rng, (5, 4), np.float64), np.abs(randn(rng, (5, 4), np.float64))
    p2, m2, v2 = p1.copy(), m1.copy(), v1.copy()
    counter = np.array([2, 0], np.int32)
    for k in range(3):
        g = randn(rng, (5, 4), np.float64)
        ops.adam_update(p1, g, m1, v1, 3 + k, 1e-2, 0.5)
        ops.adam_update(p2, g, m2, v2, counter, 1e-2, 0.5)
    assert counter.tolist() == [5, 0]
    np.testing.assert_array_equal(p2, p1)
    np.testing.assert_array_equal(m2, m1)
    np.testing.assert_array_equal(v2, v1)


def test_accumulate_and_its_errors(rng):
    acc, x = randn(rng, (3, 4), np.float32), randn(rng, (3, 4), np.float32)
    want = acc.astype(np.float64) + x
    ops.accumulate(acc, x)
    np.testing.assert_allclose(acc, want, rtol=1e-6)
    with raises(ValueError, "x: got shape (4, 3)", "expected (3, 4)"):
        ops.accumulate(acc, x.T.copy())
    with raises(ValueError, "acc: got a non-contiguous array"):
        ops.accumulate(acc.T, x.T)


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_update_multi_equals_one_by_one(momentum, nesterov, rng):
    shapes = [(4, 3), (7,), (2, 2, 5)]
    ps = [randn(rng, s, np.float32) for s in shapes]
    gs = [randn(rng, s, np.float32) for s in shapes]
    vs = [randn(rng, s, np.float32) for s in shapes] if momentum else None
    ps2, vs2 = [p.copy() for p in ps], [v.copy() for v in vs] if momentum else None
    ops.sgd_update_multi(ps, gs, vs, 0.1, momentum, 1e-2, nesterov)
    for i in range(len(shapes)):
        ops.sgd_update(ps2[i], gs[i], vs2[i] if momentum else None, 0.1, momentum, 1e-2, nesterov)
        np.testing.assert_array_equal(ps[i], ps2[i])


def test_sgd_update_multi_errors(rng):
    p, g = randn(rng, (3, 2), np.float32), randn(rng, (3, 2), np.float32)
    with raises(ValueError, "grads[1]: got float32 (2, 3)", "expected float32 (3, 2) (the params[1]'s)"):
        ops.sgd_update_multi([p, p.copy()], [g, g.T.copy()], None, 0.1)
    with raises(ValueError, "velocities: got None", "momentum != 0"):
        ops.sgd_update_multi([p], [g], None, 0.1, 0.9)
    with raises(ValueError, "expected 2 (one per param)"):
        ops.sgd_update_multi([p, p], [g], None, 0.1)
    with raises(TypeError, "params, grads: got ndarray"):
        ops.sgd_update_multi(p, g, None, 0.1)


def test_adam_update_multi_equals_one_by_one(rng):
    shapes = [(4, 3), (7,)]
    ps, gs, ms = ([randn(rng, s, np.float64) for s in shapes] for _ in range(3))
    vs = [np.abs(randn(rng, s, np.float64)) for s in shapes]
    ps2, ms2, vs2 = [p.copy() for p in ps], [m.copy() for m in ms], [v.copy() for v in vs]
    counters = [np.array([3, 0], np.int32), np.array([5, 0], np.int32)]
    ops.adam_update_multi(ps, gs, ms, vs, counters, 1e-2, 0.5, 0.999, 1e-8, 1e-3)
    for i, step in enumerate((4, 6)):
        ops.adam_update(ps2[i], gs[i], ms2[i], vs2[i], step, 1e-2, 0.5, 0.999, 1e-8, 1e-3)
        np.testing.assert_array_equal(ps[i], ps2[i])
    assert [c.tolist() for c in counters] == [[4, 0], [6, 0]]
    with raises(ValueError, "steps[1]: got int64 (2,)", "int32 counter"):
        ops.adam_update_multi(ps, gs, ms, vs, [counters[0], np.zeros(2, np.int64)], 1e-2)
    with raises(ValueError, "expected 2 (one per param)"):
        ops.adam_update_multi(ps, gs, ms, vs[:1], counters, 1e-2)
