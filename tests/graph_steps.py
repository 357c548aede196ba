"""Training steps shared by the graph tests on the CPU layer (tests/test_graph_emu.py) and on the
GPU (tests/gpu/test_graph_gpu.py): a small LeNet with SGD and its step function, a small GAN of
the trainer with Adam and the trainer's GAN step (fastconv.train.gan_step.GANStep), and the state
a step changes."""

import numpy as np

from fastconv import nn, optim
from fastconv.train.cnn import build_cnn, train_step
from fastconv.train.gan import build_gan
from fastconv.train.gan_step import GANStep

BATCH = 8


def lenet_trainer(cp, seed=0, kernels="cupy", dropout=0.0):
    """A small LeNet (the trainer's build_cnn, with ``dropout`` after its hidden layer) on the
    device, its SGD and the step function."""
    model = build_cnn(channels=(4, 8), hidden=(16,), rng=np.random.default_rng(seed), dropout=dropout)
    model.to("cuda", kernels=kernels)
    loss_fn = nn.CrossEntropyLoss(kernels=kernels)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step(x, y):
        return train_step(model, opt, loss_fn, x, y)
    return model, opt, step


def lenet_state(model, opt):
    arrays = [p.data.get() for p in model.parameters()]
    arrays += [v.get() for v in opt.state["velocity"] if v is not None]
    return arrays


def lenet_graph_equals_eager(cp, batches, after_first=lambda: None):
    """A LeNet step as a StepGraph and eagerly, on each of ``batches`` in turn (the graph first, so
    its eager pass meets every shape first; ``after_first()`` runs after that call): the same loss
    and the same parameters and momentum, bit for bit."""
    from fastconv.graph import StepGraph
    model_g, opt_g, step_g = lenet_trainer(cp)
    model_e, opt_e, step_e = lenet_trainer(cp)
    graph = StepGraph(step_g, on_capture=lambda: setattr(opt_g, "steps", opt_g.steps - 1),
                      on_replay=lambda: setattr(opt_g, "steps", opt_g.steps + 1))
    for i, (x, y) in enumerate(batches):
        loss_g = float(graph(x, y))
        if i == 0:
            after_first()
        assert float(step_e(x, y)) == loss_g, f"step {i}"
        for a, b in zip(lenet_state(model_g, opt_g), lenet_state(model_e, opt_e)):
            assert not np.isnan(a).any()
            np.testing.assert_array_equal(a, b, err_msg=f"step {i}: the graph step differs from the eager step")


def gan_trainer(cp, model="dcgan", graph=False, seed=0, batch=BATCH, d_steps=1, g_loss="nonsat", kernels="cupy"):
    """A small GAN of the trainer (build_gan: DCGAN width 8, the MLP GAN, or the conditional DCGAN),
    Adam for G and D, and the trainer's GANStep (eager, or replayed as a CUDA graph)."""
    arch = {"model": model, "nz": 16, "image_shape": [1, 28, 28], "width": 8, "g_hidden": [32], "d_hidden": [32]}
    G, D = build_gan(arch, rng=np.random.default_rng(seed))
    G.to("cuda", kernels=kernels)
    D.to("cuda", kernels=kernels)
    oG = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    oD = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    return (G, D), (oG, oD), GANStep(G, D, oG, oD, batch, 16, d_steps, g_loss, graph, kernels)


def gan_data(cp, n=4 * BATCH, seed=3):
    """n real images in [-1, 1] and their int32 labels on the device."""
    rng = np.random.default_rng(seed)
    return (cp.asarray(rng.uniform(-1, 1, (n, 1, 28, 28)).astype(np.float32)),
            cp.asarray(rng.integers(0, 10, n).astype(np.int32)))


def gan_state(models, opts):
    out = []
    for m in models:
        out += [a.get() for a in m.state_dict().values()]
    for o in opts:
        out += [a.get() for a in o.state["m"] + o.state["v"]]
        out.append(np.asarray(o.step_counts()))
    return out
