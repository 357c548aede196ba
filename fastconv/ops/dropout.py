"""Dropout: a counter-based hash mask, identical on every backend for the same seed."""

from __future__ import annotations

import numpy as np

from ..argcheck import ANY_NDIM, array, probability, same_device
from ..backend import op
from ..plan import planned


def _seed32(seed) -> int:
    """The seed as the launchers take it: its low 32 bits."""
    return int(seed) & 0xFFFFFFFF


@planned(per_call={"seed": _seed32})   # a new seed every call: one plan per shape, the seed filled in
def dropout_forward(x, p, seed, *, kernels=None):
    """Returns (y, mask) with mask uint8; element i is kept when fmix32(i ^ fmix32(seed)) >= p * 2**32."""
    array(x, "x", ANY_NDIM)
    p = probability(p)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: got {seed!r}, expected an int")
    return op("dropout_forward", x, kernels=kernels)(x, p, _seed32(seed))


@planned
def dropout_backward(dy, mask, p, *, kernels=None):
    array(dy, "dy", ANY_NDIM)
    array(mask, "mask", dy.ndim, dtype=np.uint8)
    if tuple(mask.shape) != tuple(dy.shape):
        raise ValueError(f"mask: got shape {tuple(mask.shape)}, expected {tuple(dy.shape)}")
    same_device(dy=dy, mask=mask)
    p = probability(p)
    return op("dropout_backward", dy, kernels=kernels)(dy, mask, p)
