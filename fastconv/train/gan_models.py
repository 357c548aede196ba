"""The GAN architectures: DCGAN for 28x28 images, its class-conditional form and the original MLP
GAN, and the table that names them for ``fastconv train gan --model``."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn.conditional import ConditionalGenerator, ProjectionDiscriminator
from .common import parse_int_list

CLASSES = 10          # labels of a conditional model (the data sets' classes)
EMBED_DIM = 10        # numbers of the label embedding joined to z


def _normal_init(model, rng):
    """DCGAN's initialisation: conv/linear weights N(0, 0.02), BN scale N(1, 0.02), biases 0."""
    for _, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight.data, rng, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias.data)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight.data, rng, mean=1.0, std=0.02)
            nn.init.zeros_(m.bias.data)


def build_dcgan(nz=100, width=64, image_shape=(1, 28, 28), rng=None):
    """DCGAN for 28x28 images; ``width`` = 64 gives the sizes below.

    G: Linear nz->2w*7*7, BN, ReLU, ConvT 2w->w 4/2/1, BN, ReLU, ConvT w->C 4/2/1, Tanh.
    D: Conv C->w 4/2/1, LeakyReLU .2, Conv w->2w 4/2/1, BN, LeakyReLU .2, Linear 2w*7*7->1.
    Layers followed by BN have no bias (BN's shift replaces it).
    """
    c, h, w = image_shape
    if h % 4 or w % 4:
        raise ValueError(f"image_shape: got {tuple(image_shape)}, expected H and W divisible by 4 for DCGAN")
    h4, w4, w2 = h // 4, w // 4, 2 * width
    G = nn.Sequential(
        nn.Linear(nz, w2 * h4 * w4, bias=False, rng=rng), nn.BatchNorm1d(w2 * h4 * w4), nn.ReLU(),
        nn.Unflatten((w2, h4, w4)),
        nn.ConvTranspose2d(w2, width, 4, stride=2, padding=1, bias=False, rng=rng), nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, c, 4, stride=2, padding=1, rng=rng), nn.Tanh())
    D = nn.Sequential(
        nn.Conv2d(c, width, 4, stride=2, padding=1, rng=rng), nn.LeakyReLU(0.2),
        nn.Conv2d(width, w2, 4, stride=2, padding=1, bias=False, rng=rng), nn.BatchNorm2d(w2), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(w2 * h4 * w4, 1, rng=rng))
    init_rng = rng if rng is not None else np.random.default_rng()
    _normal_init(G, init_rng)
    _normal_init(D, init_rng)
    return G, D


def build_cdcgan(nz=100, width=64, image_shape=(1, 28, 28), rng=None):
    """(G, D) of the class-conditional DCGAN (fastconv.train.cdcgan says why this form): DCGAN's
    layers and initialisation, G's input widened by EMBED_DIM numbers for the label embedding
    (N(0, 1), like z), D's class projection N(0, 0.02) on the flattened trunk features."""
    body, plain_d = build_dcgan(nz + EMBED_DIM, width, image_shape, rng=rng)
    layers = plain_d.layers
    head = layers[-1]  # Linear(2w * H/4 * W/4 -> 1)
    G = ConditionalGenerator(body, nz, CLASSES, EMBED_DIM, rng=rng)
    D = ProjectionDiscriminator(nn.Sequential(*layers[:-1]), head, head.in_features, CLASSES, rng=rng)
    return G, D


def is_conditional(G) -> bool:
    """Whether G takes class labels beside the noise."""
    return isinstance(G, ConditionalGenerator)


def noise(rng: np.random.Generator, n: int, nz: int, xp=np):
    """n noise vectors z ~ N(0, I), float32 (n, nz), drawn on the host (same numbers on CPU and GPU)."""
    return xp.asarray(rng.standard_normal((n, nz), dtype=np.float32))


def random_labels(rng: np.random.Generator, n: int, classes: int = CLASSES, xp=np):
    """n labels drawn uniformly from [0, classes), int64, drawn on the host (same on CPU and GPU)."""
    return xp.asarray(rng.integers(0, classes, n, dtype=np.int64))


def grid_labels(classes: int, per_class: int, xp=np):
    """Labels for a grid with one row per class: 0 x per_class, 1 x per_class, ..."""
    return xp.asarray(np.repeat(np.arange(classes, dtype=np.int64), per_class))


def build_mlp_gan(nz=100, g_hidden=(256, 512), d_hidden=(512, 256), image_shape=(1, 28, 28), rng=None):
    """The original fully connected GAN: G noise -> ReLU hidden layers -> tanh image; D image ->
    LeakyReLU(0.2) hidden layers -> one logit. Weights He-normal, biases 0."""
    size = int(np.prod(image_shape))
    g_layers, f = [], nz
    for u in parse_int_list(g_hidden, "g_hidden"):
        g_layers += [nn.Linear(f, u, rng=rng), nn.ReLU()]
        f = u
    g_layers += [nn.Linear(f, size, rng=rng), nn.Tanh(), nn.Unflatten(tuple(image_shape))]
    d_layers, f = [nn.Flatten()], size
    for u in parse_int_list(d_hidden, "d_hidden"):
        d_layers += [nn.Linear(f, u, rng=rng), nn.LeakyReLU(0.2)]
        f = u
    d_layers.append(nn.Linear(f, 1, rng=rng))
    return nn.Sequential(*g_layers), nn.Sequential(*d_layers)


# model name -> (builder, its architecture flags): builder(nz=, image_shape=, rng=, **{flag: value});
# a flag's value is a list of ints (hidden sizes) or an int. A new model is one entry here.
MODELS = {
    "dcgan": (build_dcgan, ("width",)),
    "cdcgan": (build_cdcgan, ("width",)),
    "mlp": (build_mlp_gan, ("g_hidden", "d_hidden")),
}


def build_gan(arch: dict, rng=None):
    """(G, D) for an architecture dict as :func:`arch_of` makes it."""
    if arch["model"] not in MODELS:
        raise ValueError(f"model: got {arch['model']!r}, expected one of {', '.join(map(repr, MODELS))}")
    builder, flags = MODELS[arch["model"]]
    return builder(nz=arch["nz"], image_shape=tuple(arch["image_shape"]), rng=rng, **{f: arch[f] for f in flags})


def arch_of(cfg, image_shape) -> dict:
    """The architecture a GANConfig names: model, nz, image shape and the model's own flags."""
    arch = {"model": cfg.model, "nz": int(cfg.nz), "image_shape": [int(s) for s in image_shape]}
    for flag in MODELS[cfg.model][1]:
        value = getattr(cfg, flag)
        arch[flag] = parse_int_list(value, flag) if isinstance(value, (str, list, tuple)) else int(value)
    return arch
