"""Arrays of the numba simulator tests: float32 inputs and NaN-poisoned outputs."""

import numpy as np

from fastconv.testing import poison


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _f64(a):
    return a.astype(np.float64)


def _empty(*shape, dtype=np.float32):
    return poison(np.empty(shape, dtype))
