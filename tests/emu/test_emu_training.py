"""A LeNet and a DCGAN training step through the CUDA C family on the CPU layer (fastconv.emu)
equal to the NumPy path run in float64 (tests/train_steps.py: the GPU tier's tolerances); and
SGD and Adam on device parameters (flat buffers, device learning rate and step counters) against
the update formulas over steps where some parameters have no gradient."""

import pytest

from fastconv import nn
from fastconv.train.gan import build_dcgan
from train_steps import dcgan_step, lenet_step, step_compare


def test_lenet_step(cp):
    def build(rng):
        return [nn.Sequential(nn.Conv2d(1, 6, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(6, 16, 5, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(400, 120, rng=rng), nn.ReLU(), nn.Linear(120, 10, rng=rng))]

    step_compare(cp, build, lenet_step(8, "cupy"), "cupy")


def test_dcgan_step(cp):
    def build(rng):
        return list(build_dcgan(nz=16, width=8, image_shape=(1, 28, 28), rng=rng))

    step_compare(cp, build, dcgan_step(16, 4, "cupy"), "cupy")


def test_sequential_fusion_matches_unfused(cp):
    """A Sequential's fused activations (test_layers.fusion_net) on the CUDA C family: bit for bit the
    layers run one at a time. Its backward launches no activation kernel but the Sigmoid's: the
    LeakyReLU, Tanh and LeakyReLU before a Conv2d, a Conv2d and a Linear run in their backward-data
    epilogues, the rest in batchnorm's and the pooling's backward."""
    import numpy as np
    from fastconv import emu
    from test_layers import fusion_matches_unfused, fusion_net
    x = cp.asarray(np.random.default_rng(1).standard_normal((5, 2, 6, 6)).astype(np.float32))
    dy = cp.asarray(np.random.default_rng(2).standard_normal((5, 5)).astype(np.float32))
    m = fusion_net().to("cuda", kernels="cupy")
    fusion_matches_unfused(m, x, dy, cp.asnumpy)
    m.forward(x)
    with emu.trace() as t:
        m.backward(dy)
    assert [n for n in t.launch_names if "_backward_v" in n and n.split("_backward")[0] in
            ("relu", "leaky_relu", "tanh", "sigmoid")] == ["sigmoid_backward_v2"], t.launch_names


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_optimizer_with_gaps_and_a_changing_lr(cp, kind):
    from test_optim import gaps_case
    gaps_case(kind, cp.asarray, lambda a: a.get(), second_dtype=False)


def test_activation_backward_handed_past_dropout_and_reshapes(cp):
    """test_layers.handoff_nets on the CUDA C family, bit for bit their layers' own passes; in
    training the backward launches only the LeakyReLU's activation kernel in place of the Dropout(0)
    (the identity has no kernel to take it), none in the net with the reshapes."""
    from fastconv import emu
    from test_layers import handoff_matches_layers, handoff_nets
    for (m, x_shape, dy_shape), want in zip(handoff_nets(), (["leaky_relu_backward_v2"], [])):
        x, dy = handoff_matches_layers(m, x_shape, dy_shape, cp, cp.asnumpy, "cupy")
        m.train()
        m.forward(x)
        with emu.trace() as t:
            m.backward(dy)
        assert [n for n in t.launch_names if "relu_backward" in n or "tanh_backward" in n] == want, t.launch_names
