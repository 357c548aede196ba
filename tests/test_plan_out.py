"""Launch plans (fastconv.plan) of the gradient ops called with ``out`` on the CPU execution layer
(fastconv.emu): the out arrays are slotted like inputs, so a plan hit writes into the call's own
out (never the first call's), returns it, and equals the full path bit for bit; an out of another
16-byte alignment (the v3 weight-gradient kernel writes an aligned one itself, another through a
workspace) or None instead of an array is another key. Outputs are NaN-poisoned."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import fastconv
from fastconv import emu, ops, plan

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="fastconv.emu compiles the kernels with g++")


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in, fastconv.using(poison=True, kernels="cupy"):
        yield stand_in


def _cases(cp, rng):
    """(op name, args, the shapes of out: one shape, or a pair of shapes/None) of each gradient op."""
    d = lambda *s: cp.asarray(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    x, dy = d(2, 3, 9, 9), d(2, 4, 5, 5)
    x8 = d(2, 8, 6, 6)
    return [
        ("conv2d_backward_weight", (dy, x, (4, 3, 3, 3), 2, 1), (4, 3, 3, 3)),         # small-channel kernel
        ("conv2d_backward_weight", (d(2, 6, 6, 6), x8, (6, 8, 3, 3), 1, 1), (6, 8, 3, 3)),  # the v3 core
        ("conv2d_backward_bias", (dy,), (4,)),
        ("conv_transpose2d_backward_weight", (d(2, 2, 12, 12), x8, (8, 2, 4, 4), 2, 1), (8, 2, 4, 4)),
        ("linear_backward_weight", (d(5, 3), d(5, 7)), ((3, 7), (3,))),
        ("linear_backward_weight", (d(5, 3), d(5, 7)), ((3, 7), None)),
        ("batchnorm_backward", (d(2, 3, 8, 8), d(2, 3, 8, 8), d(3), d(3), d(3) ** 2 + 0.5, True), ((3,), (3,))),
        ("embedding_backward", (d(6, 5), cp.asarray(np.array([0, 3, 1, 3, 0, 1], np.int32)), (4, 3)), (4, 3)),
    ]


def _out(cp, shapes, offset):
    """Views ``offset`` elements into fresh NaN-filled buffers, shaped as the case's out."""
    def view(shape):
        if shape is None:
            return None
        size = int(np.prod(shape))
        return cp.asarray(np.full(offset + size, np.nan, np.float32))[offset:].reshape(shape)
    return view(shapes) if isinstance(shapes[0], int) else tuple(view(s) for s in shapes)


def _arrays(out):
    return [o for o in (out if isinstance(out, tuple) else (out,)) if o is not None]


def test_gradient_ops_hit_with_out_equals_full_path(cp):
    rng = np.random.default_rng(0)
    for name, args, shapes in _cases(cp, rng):
        fn = getattr(ops, name)
        fn.plans.clear()
        for k, offset in enumerate((0, 1)):      # offset 1: another alignment, another key
            first = _out(cp, shapes, offset)
            full = fn(*args, out=first)
            assert len(fn.plans) == k + 1 and all(isinstance(p, plan.Plan) for p in fn.plans.values()), \
                f"{name}: the call with out left no plan of its own"
            before = [a.get() for a in _arrays(first)]
            second = _out(cp, shapes, offset)
            with emu.trace() as t_hit:
                hit = fn(*args, out=second)
            assert len(fn.plans) == k + 1, f"{name}: the second call with out missed"
            assert t_hit.launch_names, name
            results = full if isinstance(full, tuple) else (full,)
            hits = hit if isinstance(hit, tuple) else (hit,)
            given = second if isinstance(second, tuple) else (second,)
            for g, h in zip(given[::-1], hits[::-1]):   # batchnorm returns dx first: match from the end
                assert g is None or h is g, f"{name}: the hit returned a new array instead of its out"
            for f, h in zip(results, hits):
                assert not np.isnan(f.get()).any(), f"{name}: the full path left NaN"
                np.testing.assert_array_equal(h.get(), f.get(), err_msg=f"{name}: the plan hit differs")
            for a, b in zip(_arrays(first), before):
                np.testing.assert_array_equal(a.get(), b, err_msg=f"{name}: the hit wrote into the first call's out")


def test_out_or_none_is_another_key_and_bad_out_still_raises(cp):
    rng = np.random.default_rng(1)
    dy, x = (cp.asarray(rng.standard_normal(s).astype(np.float32)) for s in ((5, 3), (5, 7)))
    ops.linear_backward_weight.plans.clear()
    fresh = ops.linear_backward_weight(dy, x)
    given = _out(cp, ((3, 7), (3,)), 1)
    dw, db = ops.linear_backward_weight(dy, x, out=given)
    assert dw is given[0] and db is given[1] and len(ops.linear_backward_weight.plans) == 2
    for a, b in zip(fresh, given):
        np.testing.assert_array_equal(b.get(), a.get())
    ops.linear_backward_weight(dy, x, out=_out(cp, ((3, 7), (3,)), 1))     # a hit
    with pytest.raises(ValueError, match=r"out\[1\]: got shape \(4,\), expected \(3,\)"):
        ops.linear_backward_weight(dy, x, out=_out(cp, ((3, 7), (4,)), 1))
