"""The whole training step as one CUDA graph on a GPU, both kernel families: 20 graph replays of
a LeNet SGD step (also with a per-step learning rate and dropout) and of a DCGAN Adam step equal
the eager steps bit for bit (the same kernels in the same order), no replay allocates; and the kernels the captured step needs beyond the layers
(Adam with its device step counter, gradient sums, the per-channel bias add, the linear kernels
with fused activations) against the NumPy path in float64.

Run on the GPU machine: ``python -m pytest tests/gpu/test_graph_gpu.py -q``. Skipped without a GPU.
"""

import numpy as np
import pytest

import fastconv
from fastconv import ops
from fastconv.graph import StepGraph
from fastconv.testing import F32_TOL, assert_close
from graph_steps import BATCH, dcgan_trainer, gan_state, lenet_state, lenet_trainer

pytestmark = pytest.mark.gpu
FAMILIES = ["cupy", "numba"]
STEPS = 20


@pytest.fixture
def cp():
    import cupy
    with fastconv.using(tf32=False):
        yield cupy


def _pool_bytes(cp):
    cp.cuda.Device().synchronize()
    return cp.get_default_memory_pool().used_bytes()


@pytest.mark.parametrize("kernels", FAMILIES)
def test_lenet_graph_equals_eager(cp, kernels):
    rng = np.random.default_rng(1)
    model_e, opt_e, step_e = lenet_trainer(cp, kernels=kernels)
    model_g, opt_g, step_g = lenet_trainer(cp, kernels=kernels)
    graph = StepGraph(step_g)
    for i in range(STEPS):
        x = cp.asarray(rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32))
        y = cp.asarray(rng.integers(0, 10, BATCH).astype(np.int32))
        loss_e = float(step_e(x, y))
        used = _pool_bytes(cp) if i > 1 else None
        loss_g = float(graph(x, y))
        if used is not None:
            assert _pool_bytes(cp) == used, f"step {i}: a graph replay allocated"
        assert loss_g == loss_e, f"step {i}: {loss_g} != {loss_e}"
    for a, b in zip(lenet_state(model_g, opt_g), lenet_state(model_e, opt_e)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kernels", FAMILIES)
def test_lenet_graph_with_schedule_and_dropout_equals_eager(cp, kernels):
    """The per-step scalars on the device: a learning rate set before every step (the optimizer's
    device copy, read by the update kernel) and Dropout's call counter (advanced by its kernel):
    20 replays equal 20 eager steps bit for bit, and the counter reads back as 20 calls."""
    rng = np.random.default_rng(3)
    (model_e, opt_e, step_e), (model_g, opt_g, step_g) = (lenet_trainer(cp, kernels=kernels, dropout=0.5)
                                                          for _ in range(2))
    graph = StepGraph(step_g)
    for i in range(STEPS):
        x = cp.asarray(rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32))
        y = cp.asarray(rng.integers(0, 10, BATCH).astype(np.int32))
        opt_e.lr = opt_g.lr = 0.05 * (1 - i / STEPS)
        assert float(graph(x, y)) == float(step_e(x, y)), f"step {i}"
    for a, b in zip(lenet_state(model_g, opt_g), lenet_state(model_e, opt_e)):
        np.testing.assert_array_equal(a, b)
    calls = [int(v) for k, v in model_g.state_dict().items() if k.endswith(".calls")]
    assert calls == [STEPS], calls


@pytest.mark.parametrize("kernels", FAMILIES)
def test_dcgan_graph_equals_eager(cp, kernels):
    rng = np.random.default_rng(2)
    models_e, opts_e, step_e = dcgan_trainer(cp, kernels=kernels)
    models_g, opts_g, step_g = dcgan_trainer(cp, kernels=kernels)
    graph = StepGraph(step_g)
    for i in range(STEPS):
        x = cp.asarray(rng.uniform(-1, 1, (BATCH, 1, 28, 28)).astype(np.float32))
        z = cp.asarray(rng.standard_normal((BATCH, 16)).astype(np.float32))
        losses_e = [float(v) for v in step_e(x, z)]
        assert [float(v) for v in graph(x, z)] == losses_e, f"step {i}"
    for a, b in zip(gan_state(models_g, opts_g), gan_state(models_e, opts_e)):
        np.testing.assert_array_equal(a, b)
    assert opts_g[0].step_counts() == [STEPS] * len(opts_g[0].params)


def test_capture_kernels_against_float64(cp):
    rng = np.random.default_rng(3)
    p, m, v, g = (rng.standard_normal(5000).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    dp, dm, dv = (cp.asarray(a) for a in (p, m, v))
    counter = cp.asarray(np.array([9, 0], np.int32))
    with fastconv.using(poison=True):
        ops.adam_update(dp, cp.asarray(g), dm, dv, counter, 1e-2, 0.5, 0.999, 1e-8, 0.01)
    hp, hm, hv = (a.astype(np.float64) for a in (p, m, v))
    ops.adam_update(hp, g.astype(np.float64), hm, hv, 10, 1e-2, 0.5, 0.999, 1e-8, 0.01)
    assert counter.get().tolist() == [10, 0]
    for got, want in ((dp, hp), (dm, hm), (dv, hv)):
        assert_close(got.get(), want, F32_TOL, "adam_update_v2")
    y, b = rng.standard_normal((4, 6, 5, 5)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    dy = cp.asarray(y)
    ops.bias_add(dy, cp.asarray(b))
    assert_close(dy.get(), y.astype(np.float64) + b[None, :, None, None], F32_TOL, "bias_add")
    ops.accumulate(dy, cp.asarray(y))
    assert_close(dy.get(), 2 * y.astype(np.float64) + b[None, :, None, None], F32_TOL, "accumulate")
    x, w, bl = (rng.standard_normal(s).astype(np.float32) for s in ((130, 300), (70, 300), (70,)))
    with fastconv.using(poison=True):
        for act, f in ((None, lambda t: t), ("relu", lambda t: np.maximum(t, 0)), ("tanh", np.tanh)):
            got = ops.linear_forward(cp.asarray(x), cp.asarray(w), cp.asarray(bl), activation=act)
            assert_close(got.get(), f(x.astype(np.float64) @ w.T + bl), F32_TOL, f"linear_forward {act}")
