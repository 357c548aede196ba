"""The class-conditional DCGAN: labelled samples, and training in memory for the augmentation
benchmark (``fastconv train gan --model cdcgan`` trains it with checkpoints, fastconv.train.gan).

G(z, y): the label's learned embedding (gan_models.EMBED_DIM numbers) is joined to the noise z
and fed to DCGAN's generator (Linear, BN, ReLU, two transposed convs). D(x, y): DCGAN's
discriminator trunk phi(x) (two strided convs, flattened), its linear head, plus the projection
term <embed(y), phi(x)> (gan_models.build_cdcgan).

Why a projection discriminator rather than label maps joined to the input: D's conv trunk stays
exactly the unconditional DCGAN's (the same kernels and cost; label maps would add 10 input
channels to the first conv), and the class enters as an inner product with D's features, which
is the form of the optimal conditional discriminator's log-ratio when the class posterior is
log-linear in those features (Miyato & Koyama 2018); that paper measures better class fidelity
and sample quality for projection than for input concatenation.

Fake batches draw their labels uniformly from the classes; the G step reuses the D step's last
fake batch and its labels (fastconv.train.gan_step.d_step and g_step).
"""

from __future__ import annotations

import numpy as np

from .gan_models import build_cdcgan, grid_labels, noise
from .gan_step import GANStep


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
               beta1: float = 0.5, nz: int = 100, width: int = 64, device: str = "cpu", kernels: str | None = None):
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
    G, D = build_cdcgan(nz, width, x.shape[1:], rng=rng)
    G.to(device, kernels=kernels)
    D.to(device, kernels=kernels)
    opt_g = Adam(G.parameters(), lr=lr, betas=(beta1, 0.999))
    opt_d = Adam(D.parameters(), lr=lr, betas=(beta1, 0.999))
    b = min(int(batch_size), len(x))
    step = GANStep(G, D, opt_g, opt_d, b, nz, kernels=kernels)
    xd, yd = xp.asarray(x), xp.asarray(labels.astype(np.int32))
    history = {k: [] for k in ("d_loss", "g_loss", "d_x", "d_g_z")}
    order, pos = rng.permutation(len(x)), 0
    for it in range(int(iterations)):
        if pos + b > len(x):  # a new epoch: a new shuffle
            order, pos = rng.permutation(len(x)), 0
        step(*step.inputs(rng, xd, yd, xp.asarray(order[pos:pos + b])))
        pos += b
        m = step.take()
        for k, key in (("d_loss", "d_loss"), ("g_loss", "g_loss"), ("d_x", "d_x"), ("d_g_z", "d_g_z1")):
            history[k].append(m[key])
        if not (np.isfinite(history["d_loss"][-1]) and np.isfinite(history["g_loss"][-1])):
            raise ValueError(f"training: D loss {history['d_loss'][-1]} and G loss {history['g_loss'][-1]} at "
                             f"iteration {it + 1}; expected finite losses (try a lower lr)")
    return G, D, history
