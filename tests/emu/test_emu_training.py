"""A LeNet and a DCGAN training step through the CUDA C family on the CPU layer (fastconv.emu)
equal to the NumPy path run in float64: the loss within 1e-4 relative, every parameter and
buffer after the optimizer step within relative L2 error 1e-4 (the GPU tier's tolerances); and
SGD and Adam on device parameters (flat buffers, device learning rate and step counters) against
the update formulas over steps where some parameters have no gradient."""

import numpy as np
import pytest

from fastconv import nn, optim
from fastconv.testing import rel_error
from fastconv.train.gan import build_dcgan

TOL = 1e-4


def _step_compare(cp, build, step):
    host = build(np.random.default_rng(7))
    dev = build(np.random.default_rng(7))
    for m in host:
        m.astype(np.float64)
    for m in dev:
        m.to("cuda", kernels="cupy")
    loss_h = step(host, np.random.default_rng(3), np)
    loss_d = step(dev, np.random.default_rng(3), cp)
    assert isinstance(loss_d, cp.ndarray), "the device step must run on device arrays"
    assert abs(float(loss_d) - float(loss_h)) <= TOL * max(1.0, abs(float(loss_h)))
    for mh, md in zip(host, dev):
        for (name, a), (_, b) in zip(mh.state_dict().items(), md.state_dict().items()):
            assert isinstance(b, cp.ndarray), f"{name} left the device"
            err = rel_error(b, a)
            assert err <= TOL, f"{name}: relative error {err:.3e} after one step"


def test_lenet_step(cp):
    def build(rng):
        return [nn.Sequential(nn.Conv2d(1, 6, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(6, 16, 5, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(400, 120, rng=rng), nn.ReLU(), nn.Linear(120, 10, rng=rng))]

    def step(models, rng, xp):
        (m,) = models
        x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, size=8)
        dt = np.float64 if xp is np else np.float32
        x, y = xp.asarray(x.astype(dt)), xp.asarray(y)
        opt = optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        opt.zero_grad()
        loss = loss_fn.forward(m.forward(x), y)
        m.backward(loss_fn.backward())
        opt.step()
        return loss

    _step_compare(cp, build, step)


def test_dcgan_step(cp):
    def build(rng):
        return list(build_dcgan(nz=16, width=8, image_shape=(1, 28, 28), rng=rng))

    def step(models, rng, xp):
        G, D = models
        z = rng.standard_normal((4, 16)).astype(np.float32)
        dt = np.float64 if xp is np else np.float32
        z = xp.asarray(z.astype(dt))
        ones = xp.ones((4, 1), dtype=dt)
        opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        loss_fn = nn.BCEWithLogitsLoss()
        opt_g.zero_grad()
        opt_d.zero_grad()
        loss = loss_fn.forward(D.forward(G.forward(z)), ones)
        G.backward(D.backward(loss_fn.backward()))
        opt_g.step()
        opt_d.step()
        return loss

    _step_compare(cp, build, step)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_optimizer_with_gaps_and_a_changing_lr(cp, kind):
    from test_optim import gaps_case
    gaps_case(kind, cp.asarray, lambda a: a.get(), second_dtype=False)
