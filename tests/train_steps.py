"""One LeNet (SGD) and one DCGAN (Adam) training step run twice from the same weights: on the host
in float64 (NumPy, the reference) and through a device kernel family; the loss within 1e-4
relative, every parameter and buffer after the optimizer step within relative L2 error 1e-4.
Shared by tests/emu/test_emu_training.py (fastconv.emu) and tests/gpu/test_gpu_ops.py (the GPU)."""

import numpy as np

from fastconv import nn, optim
from fastconv.testing import rel_error

TOL = 1e-4


def step_compare(cp, build, step, family):
    """``build(rng)`` -> list of modules; ``step(models, rng, xp)`` -> loss. ``cp``: the device array
    module (CuPy or the fastconv.emu stand-in), ``family``: the kernel family the device copy uses."""
    host = build(np.random.default_rng(7))
    dev = build(np.random.default_rng(7))
    for m in host:
        m.astype(np.float64)
    for m in dev:
        m.to("cuda", kernels=family)
    loss_h = step(host, np.random.default_rng(3), np)
    loss_d = step(dev, np.random.default_rng(3), cp)
    assert isinstance(loss_d, cp.ndarray), "the device step must run on device arrays"
    assert abs(float(loss_d) - float(loss_h)) <= TOL * max(1.0, abs(float(loss_h)))
    for mh, md in zip(host, dev):
        for (name, a), (_, b) in zip(mh.state_dict().items(), md.state_dict().items()):
            assert isinstance(b, cp.ndarray), f"{name} left the device"
            err = rel_error(b, a)
            assert err <= TOL, f"{name}: relative error {err:.3e} after one step"


def lenet_step(batch, family):
    """One SGD step (momentum 0.9) of a classifier on ``batch`` random 1x28x28 images and labels."""

    def step(models, rng, xp):
        (m,) = models
        x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, size=batch)
        dt = np.float64 if xp is np else np.float32
        x, y = xp.asarray(x.astype(dt)), xp.asarray(y)
        opt = optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss(kernels=family if xp is not np else None)
        opt.zero_grad()
        loss = loss_fn.forward(m.forward(x), y)
        m.backward(loss_fn.backward())
        opt.step()
        return loss
    return step


def dcgan_step(nz, batch, family):
    """One Adam step (2e-4, betas 0.5/0.999) of G and D together on BCE(D(G(z)), 1)."""

    def step(models, rng, xp):
        G, D = models
        z = rng.standard_normal((batch, nz)).astype(np.float32)
        dt = np.float64 if xp is np else np.float32
        z = xp.asarray(z.astype(dt))
        ones = xp.ones((batch, 1), dtype=dt)
        opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        loss_fn = nn.BCEWithLogitsLoss(kernels=family if xp is not np else None)
        opt_g.zero_grad()
        opt_d.zero_grad()
        loss = loss_fn.forward(D.forward(G.forward(z)), ones)
        G.backward(D.backward(loss_fn.backward()))
        opt_g.step()
        opt_d.step()
        return loss
    return step
