"""CPU dropout: the counter-based hash mask every backend reproduces bit for bit."""

from __future__ import annotations

import numpy as np

from .activation import activate_backward


def fmix32(h):
    """MurmurHash3's 32-bit finaliser on a uint32 array (wrapping arithmetic)."""
    h = np.asarray(h, dtype=np.uint32)
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def dropout_mask(size, p, seed):
    """uint8 keep-mask of ``size`` elements for drop probability p (the hash in fastconv.ops)."""
    key = fmix32(np.array([seed], dtype=np.uint32))[0]  # an array: numpy warns on scalar wrap-around
    h = fmix32(np.arange(size, dtype=np.uint32) ^ key)
    return (h.astype(np.uint64) >= np.uint64(int(p * 4294967296.0))).astype(np.uint8)


def dropout_forward(x, p, seed, calls=None):
    """``calls``: None, or the uint32 counter (call count, 0) added to seed and advanced, as the GPU's."""
    if calls is not None:
        seed = (seed + int(calls[0])) & 0xFFFFFFFF
        calls[0] = (int(calls[0]) + 1) & 0xFFFFFFFF
    mask = dropout_mask(x.size, p, seed).reshape(x.shape)
    return x * (mask * x.dtype.type(1.0 / (1.0 - p))), mask


def dropout_backward(dy, mask, p, activation=None, slope=0.0, activation_output=None):
    """dy * mask / (1 - p); given ``activation_output`` (the outputs of ``activation`` that were the
    dropout's input), through that activation's backward."""
    dx = dy * (mask * dy.dtype.type(1.0 / (1.0 - p)))
    return dx if activation_output is None else activate_backward(activation, dx, activation_output, slope)
