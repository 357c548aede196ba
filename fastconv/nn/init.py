"""Weight initialisers; each fills a numpy array in place from a numpy Generator and returns it."""

from __future__ import annotations

import math

import numpy as np


def _fans(shape):
    if len(shape) < 2:
        raise ValueError(f"shape: got {tuple(shape)}, expected at least 2 dims to compute fan-in/fan-out")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def he_normal_(a, rng, gain=math.sqrt(2.0)):
    """He et al. (2015): N(0, gain^2 / fan_in); gain sqrt(2) suits ReLU."""
    fan_in, _ = _fans(a.shape)
    a[...] = rng.standard_normal(a.shape) * (gain / math.sqrt(fan_in))
    return a


def xavier_uniform_(a, rng, gain=1.0):
    """Glorot & Bengio (2010): U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(a.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    a[...] = rng.uniform(-bound, bound, a.shape)
    return a


def normal_(a, rng, mean=0.0, std=0.02):
    """N(mean, std^2); std 0.02 is DCGAN's initialisation."""
    a[...] = rng.normal(mean, std, a.shape)
    return a


def zeros_(a, rng=None):
    a[...] = 0
    return a


def ones_(a, rng=None):
    a[...] = 1
    return a
