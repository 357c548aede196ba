"""The class-conditional DCGAN: its models, its discriminator and generator steps, and sampling.

G(z, y): the label's learned embedding (``embed_dim`` numbers) is joined to the noise z and fed to
DCGAN's generator (Linear, BN, ReLU, two transposed convs). D(x, y): DCGAN's discriminator trunk
phi(x) (two strided convs, flattened), its linear head, plus the projection term <embed(y), phi(x)>.

Why a projection discriminator rather than label maps joined to the input: D's conv trunk stays
exactly the unconditional DCGAN's (the same kernels and cost; label maps would add 10 input
channels to the first conv), and the class enters as an inner product with D's features, which
is the form of the optimal conditional discriminator's log-ratio when the class posterior is
log-linear in those features (Miyato & Koyama 2018); that paper measures better class fidelity
and sample quality for projection than for input concatenation.

Fake batches draw their labels uniformly from the classes; the G step reuses the D step's last
fake batch and labels, as fastconv.train.gan does for the unconditional models.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn.conditional import ConditionalGenerator, ProjectionDiscriminator
from .gan import build_dcgan, noise


def build_cdcgan(nz=100, width=64, image_shape=(1, 28, 28), classes=10, embed_dim=10, rng=None):
    """(G, D) of the conditional DCGAN; DCGAN's layers and initialisation (fastconv.train.gan.build_dcgan),
    G's input widened by ``embed_dim`` for the label embedding (N(0, 1), like z), D's class
    projection N(0, 0.02)."""
    body, plain_d = build_dcgan(nz + embed_dim, width, image_shape, rng=rng)
    layers = plain_d.layers
    head = layers[-1]  # Linear(2w * H/4 * W/4 -> 1)
    G = ConditionalGenerator(body, nz, classes, embed_dim, rng=rng)
    D = ProjectionDiscriminator(nn.Sequential(*layers[:-1]), head, head.in_features, classes, rng=rng)
    return G, D


def random_labels(rng: np.random.Generator, n: int, classes: int, xp=np):
    """n labels drawn uniformly from [0, classes), int64, drawn on the host (same on CPU and GPU)."""
    return xp.asarray(rng.integers(0, classes, n, dtype=np.int64))


def grid_labels(classes: int, per_class: int, xp=np):
    """Labels for a grid with one row per class: 0 x per_class, 1 x per_class, ..."""
    return xp.asarray(np.repeat(np.arange(classes, dtype=np.int64), per_class))


def d_step(G, D, real, labels, z, fake_labels, bce, ones, zeros, opt_d):
    """One D update on a real batch (with its labels) and a fake batch G(z, fake_labels).

    Returns (fake images, D loss, D logits on the real batch, D logits on the fake batch).
    """
    D.zero_grad()
    logits_real = D.forward(real, labels)
    loss_real = bce.forward(logits_real, ones)
    D.backward(bce.backward(), input_grad=False)
    fake = G.forward(z, fake_labels)  # G is not updated here
    logits_fake = D.forward(fake, fake_labels)
    loss_fake = bce.forward(logits_fake, zeros)
    D.backward(bce.backward(), input_grad=False)  # grads add to the real batch's
    opt_d.step()
    return fake, loss_real + loss_fake, logits_real, logits_fake


def g_step(G, D, fake, fake_labels, bce, ones, zeros, opt_g, g_loss="nonsat"):
    """One G update through D on the last fake batch; returns (G loss, D logits on that batch).

    ``fake`` must be the output of G's latest forward (its saved activations are used).
    """
    G.zero_grad()
    logits = D.forward(fake, fake_labels)
    if g_loss == "nonsat":
        loss = bce.forward(logits, ones)
        dlogits = bce.backward()
    else:  # log(1 - sigmoid(l)) = -BCE(l, 0)
        loss = -bce.forward(logits, zeros)
        dlogits = -bce.backward()
    G.backward(D.backward(dlogits), input_grad=False)
    opt_g.step()
    return loss, logits


def generate_labelled(G, n_per_class: int, rng: np.random.Generator, batch_size: int = 500, xp=np):
    """(images (C * n_per_class, 1, H, W) in [-1, 1], labels) from G in eval mode, n_per_class of each class."""
    labels = grid_labels(G.num_classes, n_per_class)
    was = G.training
    G.eval()
    out = []
    for i in range(0, len(labels), batch_size):
        lb = labels[i:i + batch_size]
        out.append(G.forward(noise(rng, len(lb), G.nz, xp), xp.asarray(lb)))
    G.train(was)
    return xp.concatenate(out), labels


def fit_cdcgan(x, labels, iterations: int, batch_size: int = 64, seed: int = 0, lr: float = 2e-4,
               beta1: float = 0.5, nz: int = 100, width: int = 64, embed_dim: int = 10, classes: int = 10,
               device: str = "cpu", kernels: str | None = None):
    """Train the conditional DCGAN in memory (no files) on images x (N, C, H, W) in [-1, 1] with labels (N,).

    ``iterations`` D+G updates of ``min(batch_size, N)`` images; epochs are seeded shuffles of x
    drawn from default_rng(seed), which also initialises the weights and draws noise and fake
    labels. Returns (G, D, history) with history {"d_loss", "g_loss", "d_x", "d_g_z"}: per-iteration
    floats (NaN or inf stops training with a ValueError naming the iteration).
    """
    from ..optim import Adam
    from .common import xp_for

    x = np.asarray(x, np.float32)
    labels = np.asarray(labels, np.int64)
    if x.ndim != 4 or len(x) != len(labels) or len(x) < 2:
        raise ValueError(f"x: got shape {x.shape} with {len(labels)} labels, expected (N, C, H, W) with N >= 2 "
                         "and one label per image")
    xp = xp_for(device)
    rng = np.random.default_rng(seed)
    G, D = build_cdcgan(nz, width, x.shape[1:], classes, embed_dim, rng=rng)
    G.to(device, kernels=kernels)
    D.to(device, kernels=kernels)
    opt_g = Adam(G.parameters(), lr=lr, betas=(beta1, 0.999))
    opt_d = Adam(D.parameters(), lr=lr, betas=(beta1, 0.999))
    bce = nn.BCEWithLogitsLoss(kernels=kernels)
    b = min(int(batch_size), len(x))
    ones, zeros = xp.ones((b, 1), np.float32), xp.zeros((b, 1), np.float32)
    xd, yd = xp.asarray(x), xp.asarray(labels)
    history = {k: [] for k in ("d_loss", "g_loss", "d_x", "d_g_z")}
    order, pos = rng.permutation(len(x)), 0
    for it in range(int(iterations)):
        if pos + b > len(x):  # a new epoch: a new shuffle
            order, pos = rng.permutation(len(x)), 0
        idx = xp.asarray(order[pos:pos + b])
        pos += b
        fake_labels = random_labels(rng, b, classes, xp)
        fake, d_loss, lr_real, lr_fake = d_step(G, D, xd[idx], yd[idx], noise(rng, b, nz, xp), fake_labels, bce,
                                                ones, zeros, opt_d)
        g_loss, _ = g_step(G, D, fake, fake_labels, bce, ones, zeros, opt_g)
        for k, v in (("d_loss", d_loss), ("g_loss", g_loss), ("d_x", (1 / (1 + xp.exp(-lr_real))).mean()),
                     ("d_g_z", (1 / (1 + xp.exp(-lr_fake))).mean())):
            history[k].append(float(v))
        if not (np.isfinite(history["d_loss"][-1]) and np.isfinite(history["g_loss"][-1])):
            raise ValueError(f"training: D loss {history['d_loss'][-1]} and G loss {history['g_loss'][-1]} at "
                             f"iteration {it + 1}; expected finite losses (try a lower lr)")
    return G, D, history
