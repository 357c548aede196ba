"""The autotune setting on a GPU (marker gpu; the CPU layer's cases are tests/emu/test_emu_autotune.py):
every pass of a LeNet-sized conv tuned with the real timer (CUDA graph replays between events), fp32
and TF32, its result and a plan replay of the pick against the float64 oracle; and a LeNet step
tuned inside a graph's eager pass equals the eager step bit for bit.

Run on the GPU machine: ``python -m pytest tests/gpu/test_autotune_gpu.py -q``. Skipped without a GPU.
"""

import numpy as np
import pytest

import fastconv
import oracle as ref
from checks import TF32_L2, randn
from fastconv import ops
from fastconv.testing import F32_TOL, REDUCTION_TOL, assert_close
from graph_steps import BATCH, lenet_graph_equals_eager

pytestmark = pytest.mark.gpu
X, W, HYPER = (16, 32, 14, 14), (64, 32, 5, 5), (1, 2, 1, 1)   # lenet.conv2 at batch 16


@pytest.fixture
def autotune():
    from fastconv.backends.cuda import autotune
    autotune.clear()
    yield autotune
    autotune.clear()


@pytest.mark.parametrize("tf32", [False, True])
def test_every_pass_tuned_and_right(autotune, tf32):
    import cupy as cp
    rng = np.random.default_rng(0)
    x, w = randn(rng, X, np.float32), randn(rng, W, np.float32)
    dy = randn(rng, (16, 64, 14, 14), np.float32)
    xd, wd, dyd = cp.asarray(x), cp.asarray(w), cp.asarray(dy)
    calls = {"forward": (lambda: ops.conv2d_forward(xd, wd, None, *HYPER), ref.conv2d_forward(x, w, None, *HYPER),
                         F32_TOL),
             "backward_data": (lambda: ops.conv2d_backward_data(dyd, wd, X, *HYPER),
                               ref.conv2d_backward_data(dy, w, X, *HYPER), F32_TOL),
             "backward_weight": (lambda: ops.conv2d_backward_weight(dyd, xd, W, *HYPER),
                                 ref.conv2d_backward_weight(dy, x, W, *HYPER), REDUCTION_TOL)}
    with fastconv.using(autotune=True, tf32=tf32, poison=True):
        for what, (call, want, tol) in calls.items():
            tol = TF32_L2 if tf32 else tol
            assert_close(call(), want, tol, f"{what}, tuning call")
            assert_close(call(), want, tol, f"{what}, plan replay")
    found = autotune.results()
    assert sorted(k[0] for k in found) == sorted(calls)
    for tuned in found.values():
        assert all(ms > 0 for _, ms, why in tuned.trials if ms is not None), tuned.trials
        assert all(why.startswith("ValueError") for _, ms, why in tuned.trials if ms is None), tuned.trials
        assert tuned.trials[0][1] is not None and tuned.pick in [c for c, ms, _ in tuned.trials if ms is not None]


def test_graph_step_tuned_in_its_eager_pass_equals_eager(autotune):
    import cupy as cp
    rng = np.random.default_rng(1)
    batches = [(cp.asarray(rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)),
                cp.asarray(rng.integers(0, 10, BATCH).astype(np.int32))) for _ in range(4)]
    with fastconv.using(autotune=True, tf32=False):
        lenet_graph_equals_eager(cp, batches, lambda: autotune.results() or pytest.fail("the eager pass tuned nothing"))
