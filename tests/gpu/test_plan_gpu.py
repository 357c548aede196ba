"""Launch plans (fastconv.plan) on a GPU, both kernel families: a plan hit equals the full path
bit for bit, with the plan's kept workspaces and the numba family's bound launches (poison off)
and without them (poison on). The CPU checks of plans are in tests/test_plan.py."""

import numpy as np
import pytest

import fastconv
from fastconv import ops, plan

pytestmark = pytest.mark.gpu


def _host(out):
    return [o.get() for o in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("poisoned", [False, True])
def test_gpu_hits_equal_full_path_both_families(poisoned):
    """A plan hit gives the full path's result bit for bit; both match float64 NumPy."""
    import cupy

    from fastconv import check
    from fastconv.testing import assert_close

    rng = np.random.default_rng(15)
    host = {"x": rng.standard_normal((2, 32, 14, 14)), "w": rng.standard_normal((64, 32, 5, 5)) * 0.05,
            "d": rng.standard_normal((3, 50))}
    dev = {k: cupy.asarray(v.astype(np.float32)) for k, v in host.items()}
    cases = [("conv2d_forward", ("x", "w"), (None, 1, 2)), ("relu_forward", ("x",), ()),
             ("max_pool2d_forward", ("x",), (2,)), ("dropout_forward", ("d",), (0.5, 11))]
    for family in check.families():
        with fastconv.using(kernels=family, poison=poisoned):
            for name, names, extra in cases:
                fn = getattr(ops, name)
                fn.plans.clear()
                call = lambda: _host(fn(*(dev[k] for k in names), *extra))  # noqa: E731
                full = call()
                assert any(isinstance(p, plan.Plan) for p in fn.plans.values()), f"{family} {name}: no plan"
                for _ in range(2):
                    for f, h in zip(full, call()):
                        np.testing.assert_array_equal(h, f, err_msg=f"{family} {name}: hit != full path")
                ref = fn(*(host[k] for k in names), *extra)
                for f, r in zip(full, ref if isinstance(ref, tuple) else (ref,)):
                    assert_close(f, r, name=f"{family} {name}")
