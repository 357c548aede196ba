"""Kernel launches per training step on the CPU execution layer (fastconv.emu, launches recorded,
not run): the trainers' LeNet (SGD and Adam) and DCGAN / cDCGAN steps at batch 128, after two
warm-up steps. The gradient ops write the first gradient of a step straight into the optimizer's
flat gradient buffer (their ``out``), so no accumulate_v2 copies it there, and add a second one
(D's fake batch after its real one) into it in their own last kernel (``accumulate``), so no
accumulate_v2 adds it either; the projection discriminator's class terms are added into its
logits and its input gradient by their kernels too: no step launches accumulate_v2. The G step
computes no gradient of D's parameters (requires_grad_).

Before the gradient ops took ``out`` these steps issued 40, 40, 150 and 173 launches, of which
8, 8, 15 and 17 were copies. Before a Sequential fused its activations into the layer before them
(Linear + ReLU forward; BatchNorm + ReLU / LeakyReLU both passes; the discriminator's first Conv2d +
LeakyReLU forward) they issued 37, 37, 131 and 152; the GAN steps 118 and 139 before batchnorm's
statistics took one pass over x (batchnorm_stats_v3) instead of two, and 113 and 134 (14 and 22
adds) while the G step still computed D's parameter gradients; 99 and 118 (7 and 14 adds) before
the gradient ops took ``accumulate``, 92 and 110 before the generator's last ConvTranspose2d took
its bias and Tanh into its kernel's epilogue (no bias_add_v1, no tanh_forward_v2); cDCGAN 108 (6
adds) before the projection's terms were added by their own kernels; LeNet 36, DCGAN 90 and cDCGAN
102 while every loss took two launches (the loss kernel, then sum_scale_v1 for the mean: now one
block finishes it for a batch's logits); DCGAN 87 and cDCGAN 99 while D's one-logit head (6272 -> 1)
ran split along K and reduced, LeNet 35 while its last Linear (256 -> 10) did (now
linear_forward_rows_v1, one launch each); LeNet 34, DCGAN 84 and cDCGAN 96 while an activation's
backward after a Conv2d or Linear (LeNet's ReLU before its last Linear; the discriminator's
LeakyReLU after its first conv, three times; the generator's Tanh, through D's first conv) ran as a
launch of its own, not in the next layer's backward-data epilogue (activation_output); LeNet 33,
DCGAN 80 and cDCGAN 92 while the backward of a Linear with at most 16 outputs (LeNet's last, D's
head on its real and its fake batch) took two launches (now linear_backward_rows_v1); LeNet 32,
DCGAN 78 and cDCGAN 90 while a conv bias gradient over several slices of the batch took a second
launch to sum them (now the channel's last block does)."""

from __future__ import annotations

import collections
import shutil

import numpy as np
import pytest

import fastconv
from fastconv import emu, nn, optim
from fastconv.train.cnn import build_cnn, train_step
from fastconv.train.gan import build_gan
from fastconv.train.gan_step import GANStep

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="fastconv.emu compiles the kernels with g++")

BATCH = 128


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in, fastconv.using(kernels="cupy", tf32=False):
        yield stand_in


def _lenet(cp, opt_cls, dropout=0.0, **kw):
    rng = np.random.default_rng(0)
    model = build_cnn(rng=rng, dropout=dropout)
    opt = opt_cls(model.parameters(), **kw)      # before .to(), as the trainer does
    model.to("cuda")
    loss_fn = nn.CrossEntropyLoss()
    x = cp.asarray(rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32))
    y = cp.asarray(rng.integers(0, 10, BATCH).astype(np.int32))
    return lambda: train_step(model, opt, loss_fn, x, y)


def _gan(cp, model):
    G, D = build_gan({"model": model, "nz": 100, "image_shape": [1, 28, 28], "width": 64},
                     rng=np.random.default_rng(0))
    opts = [optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (G, D)]
    G.to("cuda")
    D.to("cuda")
    step = GANStep(G, D, *opts, BATCH, 100)
    rng = np.random.default_rng(1)
    images = cp.asarray(rng.uniform(-1, 1, (BATCH, 1, 28, 28)).astype(np.float32))
    labels = cp.asarray(rng.integers(0, 10, BATCH).astype(np.int32))
    inputs = step.inputs(rng, images, labels, cp.asarray(np.arange(BATCH)))
    return lambda: step(*inputs)


# step -> (launches per step, accumulate_v2 launches among them)
STEPS = {
    "lenet-sgd": (lambda cp: _lenet(cp, optim.SGD, lr=0.05, momentum=0.9), 30, 0),
    "lenet-adam": (lambda cp: _lenet(cp, optim.Adam, lr=1e-3), 30, 0),
    # + dropout_forward_v2 and dropout_backward_v1, which takes the ReLU's backward (33 before)
    "lenet-dropout": (lambda cp: _lenet(cp, optim.SGD, dropout=0.3, lr=0.05, momentum=0.9), 32, 0),
    "dcgan": (lambda cp: _gan(cp, "dcgan"), 75, 0),   # the 4 phase GEMMs of the generator unsplit
    "cdcgan": (lambda cp: _gan(cp, "cdcgan"), 87, 0),
}


@pytest.mark.parametrize("name", list(STEPS))
def test_launches_per_step(cp, name):
    make, launches, adds = STEPS[name]
    with emu.trace(execute=False):
        step = make(cp)
        counts = []
        for _ in range(3):           # the first step makes the flat buffers (at its first gradient)
            with emu.trace(execute=False) as t:
                step()
            names = collections.Counter(r.name for r in t.launches)
            counts.append((len(t.launches), names["accumulate_v2"]))
    assert counts == [(launches, adds)] * 3, (counts, dict(names))


# TF32 steps: (launches per step, channels-last copies among them). Only backward-weight gathers 16
# bytes per copy: its dy and x copies, and a split vec backward-weight's reduce writes dw in its order
# (no transpose of dw). DCGAN 110 before accumulate, 103 before the epilogue, 101 (LeNet 34) with two
# launches per loss, 98 with a split head, 95 (LeNet 32) with the activations' backward passes of their
# own, 91 (LeNet 31) with two launches per narrow Linear's backward, 89 (LeNet 30) with two per split
# bias gradient.
TF32_STEPS = {"lenet-sgd": (27, 2), "dcgan": (81, 6)}


@pytest.mark.parametrize("name", list(TF32_STEPS))
def test_tf32_launches_per_step(cp, name):
    with fastconv.using(tf32=True), emu.trace(execute=False):
        step = STEPS[name][0](cp)
        for _ in range(3):
            with emu.trace(execute=False) as t:
                step()
    names = collections.Counter(r.name for r in t.launches)
    assert (len(t.launches), names["nchw_to_nhwc_v1"]) == TF32_STEPS[name], dict(names)
