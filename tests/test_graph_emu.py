"""The training step as one CUDA graph (fastconv.graph.StepGraph, fastconv.plan.Arena) on the CPU
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
from fastconv import emu, nn, optim
from fastconv.graph import StepGraph
from fastconv.plan import Arena
from fastconv.train.cnn import build_cnn

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="fastconv.emu compiles the kernels with g++")

BATCH = 8


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in, fastconv.using(kernels="cupy", tf32=False):
        yield stand_in


def _trainer(cp, seed=0):
    """A small LeNet (the trainer's build_cnn) on the device, its SGD and the step function."""
    model = build_cnn(channels=(4, 8), hidden=(16,), rng=np.random.default_rng(seed))
    model.to("cuda", kernels="cupy")
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step(x, y):
        loss = loss_fn.forward(model.forward(x), y)
        opt.zero_grad()
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        return loss
    return model, opt, step


def _batches(cp, n):
    rng = np.random.default_rng(11)
    return [(cp.asarray(rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)),
             cp.asarray(rng.integers(0, 10, BATCH).astype(np.int32))) for _ in range(n)]


def _state(model, opt):
    arrays = [p.data.get() for p in model.parameters()]
    arrays += [v.get() for v in opt.state["velocity"] if v is not None]
    return arrays


def test_arena_step_is_capture_safe(cp):
    model, opt, step = _trainer(cp)
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
    data_grads = [p[0] for p in passes[0] if p[0].startswith("conv2d_backward_data")]
    assert len(data_grads) == 1, f"only conv2's input gradient is needed, got {data_grads}"


def test_graph_step_equals_eager_step(cp):
    batches = _batches(cp, 4)
    model_e, opt_e, step_e = _trainer(cp)
    model_g, opt_g, step_g = _trainer(cp)
    graph = StepGraph(step_g, on_capture=lambda: setattr(opt_g, "steps", opt_g.steps - 1),
                      on_replay=lambda: setattr(opt_g, "steps", opt_g.steps + 1))
    for i, (x, y) in enumerate(batches):
        loss_e = float(step_e(x, y))
        if i == 1:
            with emu.trace() as t:
                out = graph(x, y)
            assert t.allocations == 0 and t.syncs == 0 and t.uploads == 0 and t.downloads == 0, \
                (t.allocations, t.syncs, t.uploads, t.downloads)
            loss_g = float(out)
        else:
            loss_g = float(graph(x, y))
        assert loss_g == loss_e, f"step {i}: graph loss {loss_g} != eager loss {loss_e}"
        for a, b in zip(_state(model_g, opt_g), _state(model_e, opt_e)):
            assert not np.isnan(a).any()
            np.testing.assert_array_equal(a, b, err_msg=f"step {i}: the graph step differs from the eager step")
    assert graph.replays == 3 and opt_g.steps == opt_e.steps == 4


def test_graph_refuses_other_shapes(cp):
    _, _, step = _trainer(cp)
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


def _train(tmp_path, monkeypatch, name, epochs, graph, resume=None):
    """fastconv's CNN trainer on the device (the CPU layer): 20 fake images, batch 8 (two full
    batches and a short one per epoch), a small LeNet."""
    from fastconv.checkpoint import load_checkpoint
    from fastconv.data import fake_dataset
    from fastconv.train import cnn

    monkeypatch.setattr(cnn, "load_dataset", lambda *a, **k: fake_dataset(train=20, test=16))
    cfg = cnn.CNNConfig(dataset="fashion-mnist", train_size=20, batch_size=8, epochs=epochs, channels=[4, 8],
                        hidden=[16], device="cuda", kernels="cupy", out=str(tmp_path / name), graph=graph,
                        progress=False, test_batch_size=8, resume=resume, log_every=2)
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


def test_graph_flag_errors(cp, tmp_path, monkeypatch):
    from fastconv.train.common import use_graph
    with pytest.raises(ValueError, match="graph: got 'on' on the CPU, expected --device cuda"):
        use_graph("on", "cpu")
    with pytest.raises(ValueError, match="graph: got 'on', but --optimizer adam"):
        from fastconv.train import cnn
        use_graph("on", "cuda", cnn._why_not_capturable(cnn.CNNConfig(optimizer="adam")))
    with pytest.raises(ValueError, match="graph: got 'sometimes', expected 'on' or 'off'"):
        use_graph("sometimes", "cuda")
    assert use_graph(None, "cuda") and not use_graph(None, "cpu") and not use_graph("off", "cuda")
    assert not use_graph(None, "cuda", "a reason")
