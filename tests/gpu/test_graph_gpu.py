"""The whole training step as one CUDA graph on a GPU, both kernel families: 20 graph replays of
a LeNet SGD step (also with a per-step learning rate and dropout) and of the GAN trainer's step
(DCGAN and the conditional DCGAN, Adam) equal the eager steps bit for bit (the same kernels in the
same order), no replay allocates; the GAN trainer with --graph on equals --graph off and resumes
exactly; and the kernels the captured step needs beyond the layers
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
from graph_steps import BATCH, gan_data, gan_state, gan_trainer, lenet_state, lenet_trainer

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


def _floats(losses):
    """A step's loss or tuple of losses (device scalars) as a list of Python floats."""
    return [float(v) for v in (losses if isinstance(losses, tuple) else (losses,))]


def _graph_equals_eager(cp, trainer, state, batch, check_pool):
    """Two identical trainers ``trainer()`` -> (models, optimizers, step), one stepped eagerly and one
    through a StepGraph, STEPS steps on the same batches ``batch()``: the losses of every step and
    the final ``state(models, optimizers)`` equal bit for bit; with ``check_pool``, no replay after
    the second allocates. Returns the graphed side's optimizers."""
    models_e, opts_e, step_e = trainer()
    models_g, opts_g, step_g = trainer()
    graph = StepGraph(step_g)
    for i in range(STEPS):
        args = batch()
        losses_e = _floats(step_e(*args))
        used = _pool_bytes(cp) if check_pool and i > 1 else None
        losses_g = _floats(graph(*args))
        if used is not None:
            assert _pool_bytes(cp) == used, f"step {i}: a graph replay allocated"
        assert losses_g == losses_e, f"step {i}: {losses_g} != {losses_e}"
    for a, b in zip(state(models_g, opts_g), state(models_e, opts_e)):
        np.testing.assert_array_equal(a, b)
    return opts_g


@pytest.mark.parametrize("kernels", FAMILIES)
def test_lenet_graph_equals_eager(cp, kernels):
    rng = np.random.default_rng(1)

    def batch():
        return (cp.asarray(rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)),
                cp.asarray(rng.integers(0, 10, BATCH).astype(np.int32)))
    _graph_equals_eager(cp, lambda: lenet_trainer(cp, kernels=kernels), lenet_state, batch, check_pool=True)


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
@pytest.mark.parametrize("model", ["dcgan", "cdcgan"])
def test_gan_graph_equals_eager(cp, kernels, model):
    """The trainer's GAN step (fastconv.train.gan_step.GANStep, two D steps per G step): 20 graph
    replays equal 20 eager steps bit for bit: the logged sums of every step, and at the end
    weights, BN statistics, Adam's m, v and device step counts; no replay allocates."""
    images, labels = gan_data(cp, n=64)
    rngs = [np.random.default_rng(2), np.random.default_rng(2)]
    (models_e, opts_e, step_e), (models_g, opts_g, step_g) = (
        gan_trainer(cp, model, graph=g, d_steps=2, kernels=kernels) for g in (False, True))
    per = step_e.batch_size * step_e.d_steps
    for i in range(STEPS):
        idx = cp.asarray((np.arange(per) * 3 + i) % len(images))
        step_e(*step_e.inputs(rngs[0], images, labels, idx))
        inputs = step_g.inputs(rngs[1], images, labels, idx)
        used = _pool_bytes(cp) if i > 1 else None
        step_g(*inputs)
        if used is not None:
            assert _pool_bytes(cp) == used, f"step {i}: a graph replay allocated"
        means_e, means_g = step_e.take(), step_g.take()
        assert means_g == means_e and np.isfinite(list(means_e.values())).all(), (i, means_g, means_e)
    for a, b in zip(gan_state(models_g, opts_g), gan_state(models_e, opts_e)):
        np.testing.assert_array_equal(a, b)
    assert step_g.graph.replays == STEPS - 1
    assert opts_g[0].step_counts() == [STEPS] * len(opts_g[0].params)
    assert opts_g[1].step_counts() == [2 * STEPS] * len(opts_g[1].params)


@pytest.mark.parametrize("model", ["dcgan", "cdcgan"])
def test_gan_trainer_graph_resumes_exactly(tmp_path, model):
    """fastconv train gan on the GPU: --graph on equals --graph off bit for bit after 20 iterations
    (checkpoint arrays, RNG state), and a graph run stopped 8 iterations into an epoch and resumed
    from its checkpoint equals the uninterrupted graph run."""
    from fastconv import cli
    from fastconv.checkpoint import load_checkpoint

    flags = ["train", "gan", "--model", model, "--dataset", "fake", "--train-size", "192", "--batch-size", "16",
             "--width", "8", "--nz", "16", "--device", "cuda", "--log-every", "4", "--sample-every", "1000",
             "--n-samples", "4"]

    def run(name, iters, graph, *extra):
        assert cli.main(flags + ["--iterations", str(iters), "--graph", graph, "--out", str(tmp_path / name),
                                 *extra]) == 0
        return load_checkpoint(str(tmp_path / name / "checkpoint.safetensors"))

    (t_eager, m_eager), (t_graph, m_graph) = run("eager", 20, "off"), run("graph", 20, "on")
    run("resumed", 8, "on")
    t_resumed, m_resumed = run("resumed", 20, "on", "--resume")
    assert m_graph["iter"] == m_resumed["iter"] == 20 and m_graph["rng"] == m_eager["rng"] == m_resumed["rng"]
    assert sorted(t_eager) == sorted(t_graph) == sorted(t_resumed)
    for k in t_eager:
        np.testing.assert_array_equal(t_graph[k], t_eager[k], err_msg=f"{k}: graph run differs from eager run")
        np.testing.assert_array_equal(t_resumed[k], t_graph[k], err_msg=f"{k}: resumed graph run differs")


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
