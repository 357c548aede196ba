"""Dropout: a counter-based hash mask, identical on every backend for the same seed."""

from __future__ import annotations

import numpy as np

from ..argcheck import ANY_NDIM, activation_output as check_activation_output, array, fused_activation, probability, \
    same_device
from ..backend import op
from ..plan import planned


def _seed32(seed) -> int:
    """The seed as the launchers take it: its low 32 bits."""
    return int(seed) & 0xFFFFFFFF


@planned(per_call={"seed": _seed32})   # a new seed every call: one plan per shape, the seed filled in
def dropout_forward(x, p, seed, calls=None, *, kernels=None):
    """Returns (y, mask) with mask uint8; element i is kept when fmix32(i ^ fmix32(s)) >= p * 2**32,
    s = seed, or with ``calls`` (a uint32 counter (call count, 0) of shape (2,) on x's device)
    s = seed + calls[0] mod 2**32, and the call advances calls[0] by one: the mask changes at
    every call, also in the replays of a CUDA graph of the step."""
    array(x, "x", ANY_NDIM)
    p = probability(p)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: got {seed!r}, expected an int")
    if calls is not None:
        same_device(x=x, calls=calls)
        if not (calls.shape == (2,) and calls.dtype == np.uint32 and calls.flags.c_contiguous):
            raise ValueError(f"calls: got {calls.dtype} {calls.shape}, expected a C-contiguous uint32 counter of "
                             "shape (2,) beside x")
    return op("dropout_forward", x, kernels=kernels)(x, p, _seed32(seed), calls)


@planned
def dropout_backward(dy, mask, p, *, activation=None, negative_slope=0.01, activation_output=None, kernels=None):
    """dx = dy * mask / (1 - p). With ``activation_output`` (the dropout's input x, when x was the
    output of ``activation``, one of argcheck.FUSED_ACTIVATIONS) the gradient w.r.t. that
    activation's input instead, in the same pass."""
    array(dy, "dy", ANY_NDIM)
    array(mask, "mask", dy.ndim, dtype=np.uint8)
    if tuple(mask.shape) != tuple(dy.shape):
        raise ValueError(f"mask: got shape {tuple(mask.shape)}, expected {tuple(dy.shape)}")
    same_device(dy=dy, mask=mask)
    p = probability(p)
    activation, slope = fused_activation(activation, negative_slope)
    check_activation_output(activation_output, activation, dy.shape, dy, "dy")
    return op("dropout_backward", dy, kernels=kernels)(dy, mask, p, activation, slope, activation_output)
