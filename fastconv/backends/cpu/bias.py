"""CPU per-channel bias add, in place."""

from __future__ import annotations


def bias_add(y, b):
    """y[n, c, ...] += b[c] in place."""
    y += b.reshape((1, -1) + (1,) * (y.ndim - 2))
