"""The GAN training step: ``d_steps`` discriminator updates, then one generator update
(fastconv.train.gan explains the losses), as one function of device arrays, run eagerly or
replayed as one CUDA graph (fastconv.graph.StepGraph), with its logged numbers summed on the device.

A step's inputs are drawn by :meth:`GANStep.inputs`: the ``d_steps`` real batches stacked
(d_steps*B, C, H, W) by one gather from the data on the device, and, drawn on the host from the
run's numpy generator in the order of the D steps (B noise vectors, then for a conditional pair B
labels for G), the noise (d_steps*B, nz) and the labels, uploaded at once. Host draws make the same
numbers on every device, so a graph run equals an eager run and a resumed run continues the
generator exactly. A graph copies the inputs into its static buffers; nothing else of the step
changes between steps (Adam's step counts live on the device, the learning rate is constant).

Statistics: ops.gan_stats adds each step's D loss, G loss, mean D(x), and mean D(G(z)) at the
last D step and at the G step to five float64 sums on the device; :meth:`GANStep.sync` reads them
(one device sync, every --log-every steps on a GPU) into host sums that :meth:`GANStep.take` averages.
"""

from __future__ import annotations

import numpy as np

from .. import nn, ops
from ..backend import array_module, to_device
from ..graph import StepGraph
from .gan_models import CLASSES, is_conditional, noise, random_labels

KEYS = ("d_loss", "g_loss", "d_x", "d_g_z1", "d_g_z2")   # the sums of ops.gan_stats, in its order


def d_step(G, D, opt_d, bce, real, z, ones, zeros, labels=None, fake_labels=None):
    """One D update: descend BCE(D(x), 1) + BCE(D(G(z)), 0), G's output used as a constant.
    A conditional pair gets the real batch's ``labels`` and the ``fake_labels`` asked of G.
    Returns (loss on the real batch, its logits, the fake images, loss on them, their logits),
    all on the device."""
    real_y = () if labels is None else (labels,)
    fake_y = () if fake_labels is None else (fake_labels,)
    D.zero_grad()
    logits_real = D.forward(real, *real_y)
    loss_real = bce.forward(logits_real, ones)
    D.backward(bce.backward(), input_grad=False)
    fake = G.forward(z, *fake_y)  # G is not updated here
    logits_fake = D.forward(fake, *fake_y)
    loss_fake = bce.forward(logits_fake, zeros)
    D.backward(bce.backward(), input_grad=False)  # grads add to the real batch's
    opt_d.step()
    return loss_real, logits_real, fake, loss_fake, logits_fake


def g_step(G, D, opt_g, bce, fake, g_loss: str, ones, zeros, fake_labels=None):
    """One G update on ``fake`` (G's latest output, for ``fake_labels`` if conditional) scored by the
    current D: descend -log D(G(z)) ("nonsat") or log(1 - D(G(z))) = -BCE(D(G(z)), 0) ("minimax").
    D's backward computes only its input gradient (D.requires_grad_(False) meanwhile: its parameter
    gradients would be discarded, so their ops are not run), through G's last activation when D's
    first layer can take it (Module.takes_input_activation: G then skips that activation's pass).
    Returns (G loss, D(G(z)) logits)."""
    G.zero_grad()
    logits = D.forward(fake) if fake_labels is None else D.forward(fake, fake_labels)
    if g_loss == "nonsat":
        loss = bce.forward(logits, ones)
        dlogits = bce.backward()
    else:
        loss, dlogits = ops.bce_with_logits(logits, zeros, negate=True, kernels=bce.kernels)
    params = D.parameters()
    wanted = [p.requires_grad for p in params]
    D.requires_grad_(False)
    act = G.output_activation() if D.takes_input_activation else None
    try:
        dfake = D.backward(dlogits) if act is None else D.backward(dlogits, input_activation=act)
    finally:
        for p, w in zip(params, wanted):
            p.requires_grad = w
    if act is None:
        G.backward(dfake, input_grad=False)
    else:
        G.backward(dfake, input_grad=False, skip_output_activation=True)
    opt_g.step()
    return loss, logits


class GANStep:
    """One GAN iteration of G, D and their optimizers at a fixed batch size (see the module
    docstring); ``graph=True`` replays it as a CUDA graph (GPU only), else it runs eagerly.

    ``step(*step.inputs(rng, images, labels, idx))`` runs one iteration; idx holds the
    d_steps*batch_size indices of its real images.
    """

    def __init__(self, G, D, opt_g, opt_d, batch_size: int, nz: int, d_steps: int = 1, g_loss: str = "nonsat",
                 graph: bool = False, kernels=None):
        xp = array_module(G.parameters()[0].data)
        self.G, self.D, self.opt_g, self.opt_d = G, D, opt_g, opt_d
        self.batch_size, self.nz, self.d_steps, self.g_loss = batch_size, nz, d_steps, g_loss
        self.conditional, self.kernels = is_conditional(G), kernels
        self.bce = nn.BCEWithLogitsLoss(kernels=kernels)
        self.ones, self.zeros = xp.ones((batch_size, 1), np.float32), xp.zeros((batch_size, 1), np.float32)
        self.sums = xp.zeros(len(KEYS), np.float64)          # on the device; the graph writes them
        self.host, self.count, self.host_count = np.zeros(len(KEYS)), 0, 0
        # the capture pass runs the Python step once more than it trains, a replay not at all
        self.graph = StepGraph(self._step, on_capture=lambda: self._count_updates(-1),
                               on_replay=lambda: self._count_updates(1)) if graph else None

    def _count_updates(self, sign: int) -> None:
        self.opt_d.steps += sign * self.d_steps
        self.opt_g.steps += sign

    def inputs(self, rng: np.random.Generator, images, labels, idx) -> tuple:
        """(real images, noise) or, conditional, (real images, noise, their labels int32, G's labels
        int32) of one iteration; idx (d_steps*B,) on the device of images."""
        xp = array_module(images)
        z, fake = [], []
        for _ in range(self.d_steps):
            z.append(noise(rng, self.batch_size, self.nz))
            if self.conditional:
                fake.append(random_labels(rng, self.batch_size, CLASSES).astype(np.int32))
        real, z = images[idx], xp.asarray(np.concatenate(z))
        return (real, z) if not self.conditional else (real, z, labels[idx], xp.asarray(np.concatenate(fake)))

    def _step(self, real, z, labels=None, fake_labels=None):
        b = self.batch_size
        for j in range(self.d_steps):
            s = slice(j * b, (j + 1) * b)
            fake_y = None if fake_labels is None else fake_labels[s]
            loss_real, logits_real, fake, loss_fake, logits_fake = d_step(
                self.G, self.D, self.opt_d, self.bce, real[s], z[s], self.ones, self.zeros,
                None if labels is None else labels[s], fake_y)
        # G's update scores the last D step's fake batch
        loss_g, logits_g = g_step(self.G, self.D, self.opt_g, self.bce, fake, self.g_loss, self.ones, self.zeros,
                                  fake_y)
        ops.gan_stats(self.sums, loss_real, loss_fake, loss_g, logits_real, logits_fake, logits_g,
                      kernels=self.kernels)

    def __call__(self, *inputs) -> None:
        if self.graph is not None:
            self.graph(*inputs)
        else:
            self._step(*inputs)
        self.count += 1

    def sync(self) -> dict:
        """Move the device sums to the host (one sync); the means since the last :meth:`take`."""
        if self.count:
            self.host += to_device(self.sums, "cpu")
            self.sums[...] = 0
            self.host_count, self.count = self.host_count + self.count, 0
        return dict(zip(KEYS, (self.host / max(self.host_count, 1)).tolist()))

    def take(self) -> dict:
        """The means since the last take (after a :meth:`sync`), then start anew."""
        means = self.sync()
        self.host[...], self.host_count = 0.0, 0
        return means
