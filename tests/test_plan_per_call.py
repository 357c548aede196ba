"""Per-call values of launch plans (fastconv.plan ``per_call``) on the CPU execution layer: an
argument that changes on every call (dropout's seed, Adam's int step) is filled in by one plan
per shape, and the replay equals the full path and the NumPy path for every value."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import fastconv
from fastconv import emu, ops

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="fastconv.emu compiles the kernels with g++")


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in, fastconv.using(poison=True, kernels="cupy"):
        yield stand_in


def _dev(cp, rng, *shape):
    return cp.asarray(rng.standard_normal(shape).astype(np.float32))


def test_dropout_seed_is_filled_in_per_call(cp):
    """dropout_forward's seed changes every call: one plan per shape replays with the call's seed
    and gives the full path's mask and output for it; a seed of another type, or a bad one, takes
    the full path."""
    rng = np.random.default_rng(11)
    x = _dev(cp, rng, 3, 50)
    ops.dropout_forward.plans.clear()
    ops.dropout_forward(x, 0.5, 1)
    assert len(ops.dropout_forward.plans) == 1
    for seed in (2, 3, 2**32 + 5, np.int64(9)):
        y, mask = ops.dropout_forward(x, 0.5, seed)
        ref_y, ref_mask = ops.dropout_forward(x.get(), 0.5, seed)          # the NumPy path: the same hash
        np.testing.assert_array_equal(mask.get(), ref_mask, err_msg=f"seed {seed}")
        np.testing.assert_array_equal(y.get(), ref_y, err_msg=f"seed {seed}")
    assert len(ops.dropout_forward.plans) == 2, "an np.int64 seed must get its own plan, an int seed none"
    assert not np.array_equal(ops.dropout_forward(x, 0.5, 2)[1].get(), ops.dropout_forward(x, 0.5, 3)[1].get())
    with pytest.raises(TypeError, match="seed: got True"):
        ops.dropout_forward(x, 0.5, True)
    with pytest.raises(TypeError, match="seed: got 1.5"):
        ops.dropout_forward(x, 0.5, 1.5)


def test_per_call_value_found_once_or_no_plan(cp):
    """A seed equal to another scalar the kernel takes (here x.size) cannot be told apart: no plan
    is stored from that call, and the next call, with another seed, builds one."""
    x = _dev(cp, np.random.default_rng(12), 4, 8)
    ops.dropout_forward.plans.clear()
    y, _ = ops.dropout_forward(x, 0.5, x.size)
    assert not ops.dropout_forward.plans
    np.testing.assert_array_equal(y.get(), ops.dropout_forward(x.get(), 0.5, x.size)[0])
    ops.dropout_forward(x, 0.5, 7)
    assert len(ops.dropout_forward.plans) == 1
    np.testing.assert_array_equal(ops.dropout_forward(x, 0.5, x.size)[0].get(), y.get())


def test_adam_int_step_is_filled_in_per_call(cp):
    """Adam's int step: one plan per shape and lr form (a float, or the device lr array) replays
    with the call's step; each step's update equals the full path's (plans dropped before it) bit
    for bit and the NumPy path's within F32 rounding; an np.int64 step (made an int by adam_update) hits
the same plan."""
    from fastconv.testing import F32_TOL, assert_close

    rng = np.random.default_rng(14)
    p, g = rng.standard_normal(300).astype(np.float32), rng.standard_normal(300).astype(np.float32)
    m, v = rng.standard_normal(300).astype(np.float32) * 0.1, rng.random(300).astype(np.float32) * 0.1
    stepped = ops.optim._adam_stepped
    for lr in (2e-2, cp.asarray(np.array([2e-2], np.float32))):
        stepped.plans.clear()
        hit, full = [cp.asarray(a) for a in (p, m, v)], [cp.asarray(a) for a in (p, m, v)]
        host = [a.copy() for a in (p, m, v)]
        for step in (1, 2, 3, 1000, np.int64(4)):
            gd = cp.asarray((g * int(step) % 3).astype(np.float32))
            ops.adam_update(hit[0], gd, hit[1], hit[2], step, lr, 0.8, 0.99, 1e-8, 1e-2)
            kept = dict(stepped.plans)
            stepped.plans.clear()
            ops.adam_update(full[0], gd, full[1], full[2], step, lr, 0.8, 0.99, 1e-8, 1e-2)
            stepped.plans.update(kept)
            ops.adam_update(host[0], gd.get(), host[1], host[2], int(step), 2e-2, 0.8, 0.99, 1e-8, 1e-2)
            for h, f, n, name in zip(hit, full, host, ("param", "m", "v")):
                np.testing.assert_array_equal(h.get(), f.get(), err_msg=f"{name} at step {step}: hit vs full path")
                assert_close(h, n, F32_TOL, f"{name} at step {step}")
        assert len(stepped.plans) == 1, "one plan for every step"
    with pytest.raises(ValueError, match=r"step: got 2147483648, expected an int in \[1, 2147483647\]"):
        ops.adam_update(hit[0], gd, hit[1], hit[2], 2**31, 1e-3)
