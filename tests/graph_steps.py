"""Training steps shared by the graph tests on the CPU layer (tests/test_graph_emu.py) and on the
GPU (tests/gpu/test_graph_gpu.py): a small LeNet with SGD and a small DCGAN with Adam, each with
its step function, and the state a step changes."""

import numpy as np

from fastconv import nn, optim
from fastconv.train.cnn import build_cnn
from fastconv.train.gan import build_dcgan

BATCH = 8


def lenet_trainer(cp, seed=0, kernels="cupy", dropout=0.0):
    """A small LeNet (the trainer's build_cnn, with ``dropout`` after its hidden layer) on the
    device, its SGD and the step function."""
    model = build_cnn(channels=(4, 8), hidden=(16,), rng=np.random.default_rng(seed), dropout=dropout)
    model.to("cuda", kernels=kernels)
    loss_fn = nn.CrossEntropyLoss(kernels=kernels)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step(x, y):
        loss = loss_fn.forward(model.forward(x), y)
        opt.zero_grad()
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        return loss
    return model, opt, step


def lenet_state(model, opt):
    arrays = [p.data.get() for p in model.parameters()]
    arrays += [v.get() for v in opt.state["velocity"] if v is not None]
    return arrays


def dcgan_trainer(cp, seed=0, batch=BATCH, kernels="cupy"):
    """A small DCGAN (the trainer's build_dcgan), Adam for G and D, and the GAN step (D on a real
    and a fake batch, G through D) as one function of the real batch and the noise."""
    G, D = build_dcgan(nz=16, width=8, image_shape=(1, 28, 28), rng=np.random.default_rng(seed))
    G.to("cuda", kernels=kernels)
    D.to("cuda", kernels=kernels)
    oG = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    oD = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss(kernels=kernels)
    ones, zeros = cp.ones((batch, 1), np.float32), cp.zeros((batch, 1), np.float32)

    def step(x, z):
        oD.zero_grad()
        loss_real = bce.forward(D.forward(x), ones)
        D.backward(bce.backward(), input_grad=False)
        fake = G.forward(z)
        loss_fake = bce.forward(D.forward(fake), zeros)
        D.backward(bce.backward(), input_grad=False)
        oD.step()
        oG.zero_grad()
        loss_g = bce.forward(D.forward(fake), ones)
        G.backward(D.backward(bce.backward()), input_grad=False)
        oG.step()
        return loss_real, loss_fake, loss_g
    return (G, D), (oG, oD), step


def gan_state(models, opts):
    out = []
    for m in models:
        out += [a.get() for a in m.state_dict().values()]
    for o in opts:
        out += [a.get() for a in o.state["m"] + o.state["v"]]
        out.append(np.asarray(o.step_counts()))
    return out
