"""The training step as one CUDA graph (fastconv.graph.StepGraph, fastconv.arena.Arena) on the CPU
execution layer (fastconv.emu, whose graph capture records launches and whose replay runs only
them, so any work in the step that is not a kernel launch would be missing from a replay):

- capture safety: after the first pass, a LeNet SGD step in its arena allocates nothing, copies
  nothing between host and device, synchronises nowhere, and issues the same launches (kernel,
  grid, block, pointers) in two consecutive passes; a graph replay allocates, copies and syncs
  nothing either;
- the graph step equals the eager step bit for bit (same kernels in the same order) over four
  steps: loss, every parameter and every momentum buffer;
- a step whose allocations change between passes is refused with a clear error.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import fastconv
from fastconv import emu
from fastconv.graph import StepGraph
from fastconv.arena import Arena
from graph_steps import BATCH, gan_data, gan_state, gan_trainer, lenet_state, lenet_trainer

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="fastconv.emu compiles the kernels with g++")

@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in, fastconv.using(kernels="cupy", tf32=False):
        yield stand_in


def _batches(cp, n):
    rng = np.random.default_rng(11)
    return [(cp.asarray(rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)),
             cp.asarray(rng.integers(0, 10, BATCH).astype(np.int32))) for _ in range(n)]


def test_arena_step_is_capture_safe(cp):
    model, opt, step = lenet_trainer(cp)
    (x, y), = _batches(cp, 1)
    arena = Arena()
    with arena.step():
        step(x, y)                        # first pass: allocates the static buffers
    passes = []
    for _ in range(2):
        with emu.trace() as t, arena.step():
            step(x, y)
        assert t.allocations == 0, f"a step after the first allocated {t.allocations} arrays"
        assert (t.downloads, t.uploads, t.syncs) == (0, 0, 0), "a step copied to/from the host or synchronised"
        passes.append([(r.name, r.grid, r.block, r.pointers) for r in t.launches])
    assert passes[0] == passes[1], "two consecutive steps issued different launches"
    assert len(passes[0]) >= 20, passes[0]
    # only conv2's input gradient is needed (conv1's is not): conv2 (5x5) runs it by Winograd, whose
    # filter transform serves its forward and that backward-data
    names = [p[0] for p in passes[0]]
    assert not [n for n in names if n.startswith("conv2d_backward_data")], names
    assert len([n for n in names if n.startswith("conv2d_winograd_filter")]) == 2, names


@pytest.mark.parametrize("tf32", [False, True])
def test_graph_step_equals_eager_step(cp, tf32):
    """Also with the tf32 setting on: conv2 (4 channels, 5x5) then runs the TF32 vec kernels, its
    channels-last copies and packs inside the captured step."""
    with fastconv.using(tf32=tf32):
        _graph_equals_eager(cp)


def _graph_equals_eager(cp):
    batches = _batches(cp, 4)
    model_e, opt_e, step_e = lenet_trainer(cp)
    model_g, opt_g, step_g = lenet_trainer(cp)
    graph = StepGraph(step_g, on_capture=lambda: setattr(opt_g, "steps", opt_g.steps - 1),
                      on_replay=lambda: setattr(opt_g, "steps", opt_g.steps + 1))
    for i, (x, y) in enumerate(batches):
        with emu.trace() as t:
            loss_e = float(step_e(x, y))
        assert any("_tf32_vec_" in r.name for r in t.launches) == fastconv.settings.current().tf32, t.launch_names
        if i == 1:
            with emu.trace() as t:
                out = graph(x, y)
            assert t.allocations == 0 and t.syncs == 0 and t.uploads == 0 and t.downloads == 0, \
                (t.allocations, t.syncs, t.uploads, t.downloads)
            loss_g = float(out)
        else:
            loss_g = float(graph(x, y))
        assert loss_g == loss_e, f"step {i}: graph loss {loss_g} != eager loss {loss_e}"
        for a, b in zip(lenet_state(model_g, opt_g), lenet_state(model_e, opt_e)):
            assert not np.isnan(a).any()
            np.testing.assert_array_equal(a, b, err_msg=f"step {i}: the graph step differs from the eager step")
    assert graph.replays == 3 and opt_g.steps == opt_e.steps == 4


def test_graph_refuses_other_shapes(cp):
    _, _, step = lenet_trainer(cp)
    graph = StepGraph(step)
    (x, y), = _batches(cp, 1)
    graph(x, y)
    with pytest.raises(ValueError, match=r"inputs\[0\]: got \(4, 1, 28, 28\) float32, expected \(8, 1, 28, 28\)"):
        graph(x[:4], y[:4])


def test_arena_refuses_changing_allocations(cp):
    from fastconv import ops
    arena = Arena()
    x = cp.asarray(np.ones((4, 5), np.float32))
    with arena.step():
        ops.relu_forward(x)
    with pytest.raises(ValueError, match=r"arena: got allocation 0 of \(2, 5\) float32, expected \(4, 5\)"):
        with arena.step():
            ops.relu_forward(x[:2])


def _train(tmp_path, monkeypatch, name, epochs, graph, resume=None, **recipe):
    """fastconv's CNN trainer on the device (the CPU layer): 20 fake images, batch 8 (two full
    batches and a short one per epoch), a small LeNet; ``recipe``: more CNNConfig fields."""
    from fastconv.checkpoint import load_checkpoint
    from fastconv.data import fake_dataset
    from fastconv.train import cnn

    monkeypatch.setattr(cnn, "load_dataset", lambda *a, **k: fake_dataset(train=20, test=16))
    cfg = cnn.CNNConfig(dataset="fashion-mnist", train_size=20, batch_size=8, epochs=epochs, channels=[4, 8],
                        hidden=[16], device="cuda", kernels="cupy", out=str(tmp_path / name), graph=graph,
                        progress=False, test_batch_size=8, resume=resume, log_every=2, **recipe)
    result = cnn.train_cnn(cfg)
    tensors, _ = load_checkpoint(result["checkpoint"])
    return result, tensors


def test_cnn_trainer_graph_equals_eager_and_resumes_exactly(cp, tmp_path, monkeypatch):
    eager, t_eager = _train(tmp_path, monkeypatch, "eager", 2, "off")
    graph, t_graph = _train(tmp_path, monkeypatch, "graph", 2, "on")
    _train(tmp_path, monkeypatch, "resumed", 1, "on")
    resumed, t_resumed = _train(tmp_path, monkeypatch, "resumed", 2, "on", resume=True)
    assert eager["history"]["train_loss"] == graph["history"]["train_loss"] == resumed["history"]["train_loss"]
    assert sorted(t_eager) == sorted(t_graph) == sorted(t_resumed)
    for k in t_eager:
        np.testing.assert_array_equal(t_graph[k], t_eager[k], err_msg=f"{k}: graph run differs from eager run")
        np.testing.assert_array_equal(t_resumed[k], t_eager[k], err_msg=f"{k}: resumed graph run differs")


@pytest.mark.parametrize("recipe", [dict(schedule="cosine", dropout=0.5, momentum=0.9),
                                    dict(optimizer="adam", lr=1e-3, schedule="step", lr_step=1.0, dropout=0.3)],
                         ids=["sgd-cosine-dropout", "adam-step-dropout"])
def test_cnn_graph_with_schedule_and_dropout_equals_eager(cp, tmp_path, monkeypatch, recipe):
    """A schedule (the optimizer's device learning rate, set between replays) and dropout (its
    device call counter) in the captured step: the graph run equals the eager run bit for bit;
    with the step schedule (cosine's depends on --epochs) a graph run resumed after epoch 1
    equals both (the counters read back into the checkpoint's Dropout buffers and Adam's step
    counts)."""
    runs = [_train(tmp_path, monkeypatch, "eager", 2, "off", **recipe),
            _train(tmp_path, monkeypatch, "graph", 2, "on", **recipe)]
    if recipe["schedule"] == "step":
        _train(tmp_path, monkeypatch, "resumed", 1, "on", **recipe)
        runs.append(_train(tmp_path, monkeypatch, "resumed", 2, "on", resume=True, **recipe))
    (eager, t_eager), others = runs[0], runs[1:]
    calls = [k for k in t_eager if k.endswith(".calls")]
    assert calls and all(int(t_eager[k]) == 6 for k in calls), {k: t_eager[k] for k in calls}  # 3 steps x 2 epochs
    for run, tensors in others:
        assert run["history"]["train_loss"] == eager["history"]["train_loss"]
        assert sorted(tensors) == sorted(t_eager)
        for k in t_eager:
            np.testing.assert_array_equal(tensors[k], t_eager[k], err_msg=f"{k}: {run['checkpoint']} differs from "
                                          "the eager run")


def test_graph_flag_errors(cp, tmp_path, monkeypatch):
    from fastconv.train.common import use_graph
    with pytest.raises(ValueError, match="graph: got 'on' on the CPU, expected --device cuda"):
        use_graph("on", "cpu")
    with pytest.raises(ValueError, match="graph: got 'on', but a reason; expected --graph off"):
        use_graph("on", "cuda", "a reason")
    with pytest.raises(ValueError, match="graph: got 'sometimes', expected 'on' or 'off'"):
        use_graph("sometimes", "cuda")
    assert use_graph(None, "cuda") and not use_graph(None, "cpu") and not use_graph("off", "cuda")
    assert not use_graph(None, "cuda", "a reason")
    from fastconv.train import cnn
    sgd = cnn.CNNConfig(optimizer="sgd")
    assert cnn._graph_wanted(sgd, "cuda") and not cnn._graph_wanted(sgd, "cpu")
    with fastconv.using(tf32=True):           # TF32 convs capture too (test_graph_step_equals_eager_step)
        assert cnn._graph_wanted(sgd, "cuda")
        sgd.graph = "off"
        assert not cnn._graph_wanted(sgd, "cuda")


def _gan_steps(cp, model, n, **kw):
    """n steps of a GANStep eager and of one replayed as a graph on the same inputs; after each, the
    logged sums and the whole state (weights, BN statistics, Adam's m, v and step counts) agree
    bit for bit, and a replay allocates, copies and syncs nothing."""
    images, labels = gan_data(cp)
    rngs = [np.random.default_rng(7), np.random.default_rng(7)]
    (models_e, opts_e, step_e), (models_g, opts_g, step_g) = (gan_trainer(cp, model, graph=g, **kw)
                                                              for g in (False, True))
    per = step_e.batch_size * step_e.d_steps
    for i in range(n):
        idx = cp.asarray((np.arange(per) * 5 + i) % len(images))
        step_e(*step_e.inputs(rngs[0], images, labels, idx))
        inputs = step_g.inputs(rngs[1], images, labels, idx)
        with emu.trace() as t:
            step_g(*inputs)
        if i > 0:
            assert (t.allocations, t.uploads, t.downloads, t.syncs) == (0, 0, 0, 0), \
                (t.allocations, t.uploads, t.downloads, t.syncs)
        means_e, means_g = step_e.take(), step_g.take()
        assert means_g == means_e and all(np.isfinite(list(means_e.values()))), (i, means_g, means_e)
        for a, b in zip(gan_state(models_g, opts_g), gan_state(models_e, opts_e)):
            assert not np.isnan(a).any()
            np.testing.assert_array_equal(a, b, err_msg=f"step {i}: the {model} graph step differs from eager")
    assert step_g.graph.replays == n - 1
    for o_g, o_e in zip(opts_g, opts_e):
        assert o_g.steps == o_e.steps and o_g.step_counts() == o_e.step_counts()


def test_dcgan_graph_step_equals_eager_step(cp):
    _gan_steps(cp, "dcgan", 3, d_steps=2)


def test_mlp_gan_minimax_graph_step_equals_eager_step(cp):
    _gan_steps(cp, "mlp", 3, g_loss="minimax")


def test_cdcgan_graph_step_equals_eager_step(cp):
    _gan_steps(cp, "cdcgan", 3)


@pytest.mark.parametrize("model", ["dcgan", "cdcgan"])
def test_gan_step_is_capture_safe(cp, model):
    """After the first pass, the trainer's GAN step in its arena allocates, copies and syncs nothing
    and issues the same launches in two consecutive passes (the statistics kernel among them)."""
    images, labels = gan_data(cp)
    _, _, step = gan_trainer(cp, model)
    inputs = step.inputs(np.random.default_rng(1), images, labels, cp.asarray(np.arange(step.batch_size)))
    arena = Arena()
    with arena.step():
        step._step(*inputs)
    passes = []
    for _ in range(2):
        with emu.trace() as t, arena.step():
            step._step(*inputs)
        assert t.allocations == 0, f"a step after the first allocated {t.allocations} arrays"
        assert (t.downloads, t.uploads, t.syncs) == (0, 0, 0), "a step copied to/from the host or synchronised"
        passes.append([(r.name, r.grid, r.block, r.pointers) for r in t.launches])
    assert passes[0] == passes[1], "two consecutive steps issued different launches"
    assert passes[0][-1][0] == "gan_stats_v1" and len(passes[0]) >= 40, passes[0]


def test_capture_kernels_against_float64(cp):
    """The kernels a captured step needs beyond the layers: Adam with its device step counter
    (three updates against the NumPy Adam in float64 with int steps), gradient accumulation and
    the per-channel bias add; outputs within F32_TOL, the counter exact."""
    from fastconv import ops
    from fastconv.testing import F32_TOL, assert_close

    rng = np.random.default_rng(9)
    p, m, v = (rng.standard_normal(300).astype(np.float32) for _ in range(3))
    v = np.abs(v)
    grads = [rng.standard_normal(300).astype(np.float32) for _ in range(3)]
    dp, dm, dv = (cp.asarray(a) for a in (p, m, v))
    counter = cp.asarray(np.array([4, 0], np.int32))          # 4 updates done before
    hp, hm, hv = (a.astype(np.float64) for a in (p, m, v))
    for k, g in enumerate(grads):
        ops.adam_update(dp, cp.asarray(g), dm, dv, counter, 1e-2, 0.5, 0.999, 1e-8, 0.01)
        ops.adam_update(hp, g.astype(np.float64), hm, hv, 5 + k, 1e-2, 0.5, 0.999, 1e-8, 0.01)
    assert counter.get().tolist() == [7, 0]
    for got, want, name in ((dp, hp, "param"), (dm, hm, "m"), (dv, hv, "v")):
        assert_close(got.get(), want, F32_TOL, f"adam_update_v2 {name}")
    acc, x = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    dacc = cp.asarray(acc)
    ops.accumulate(dacc, cp.asarray(x))
    assert_close(dacc.get(), acc.astype(np.float64) + x, F32_TOL, "accumulate")
    y, b = rng.standard_normal((2, 3, 4, 5)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    dy = cp.asarray(y)
    ops.bias_add(dy, cp.asarray(b))
    assert_close(dy.get(), y.astype(np.float64) + b.astype(np.float64)[None, :, None, None], F32_TOL, "bias_add")
    with pytest.raises(ValueError, match=r"step: got int64 \(2,\)"):
        ops.adam_update(dp, dp, dm, dv, cp.asarray(np.zeros(2, np.int64)), 1e-2)
    with pytest.raises(ValueError, match=r"b: got shape \(4,\), expected \(3,\)"):
        ops.bias_add(dy, cp.asarray(np.ones(4, np.float32)))
