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


def test_dropout_takes_the_activation_backward(cp):
    """test_layers.dropout_handoff on the CUDA C family; in training the backward launches no
    activation kernel (the ReLU's backward runs in dropout_backward_v1, the LeakyReLU's in the
    Dropout(0)'s place: its own op, as the identity has no kernel)."""
    import numpy as np
    from fastconv import emu
    from test_layers import dropout_handoff
    m = dropout_handoff(cp, cp.asnumpy, "cupy")
    m.train()
    x = cp.asarray(np.random.default_rng(1).standard_normal((7, 6)).astype(np.float32))
    m.forward(x)
    with emu.trace() as t:
        m.backward(cp.ones((7, 3), np.float32))
    names = t.launch_names
    assert "relu_backward_v1" not in names and "relu_backward_v2" not in names, names
    assert names.count("dropout_backward_v1") == 1, names
