"""Launchers of kernels/bias.cu: the conv bias gradient as a deterministic multi-block reduction, and
a per-channel bias added in place."""

from __future__ import annotations

import numpy as np

from . import config as cfg
from .launch import _alloc, _arg, _eltwise_grid, _i32, _i32s, _launch, _channel_launch, _out


def conv2d_backward_bias(dy, out=None, accumulate=False):
    """db[K] = dy[N, K, P, Q] summed over N, P, Q (into ``out`` when given; added into it with
    ``accumulate``, by the kernel that writes it)."""
    dy = _arg(dy, "dy")
    n, k, p, q = dy.shape
    grid, splits, chunk, width = _channel_launch("dy", dy, n, k, p * q)
    db = _out(out, (k,), "conv2d_backward_bias output")
    part = _alloc((k, splits), np.float64, "conv2d_backward_bias partial sums")  # unread when splits == 1
    count = _alloc((k,), np.uint32, "conv2d_backward_bias counters", zero=True)  # left zero; unread when splits == 1
    _launch("bias.cu", f"conv2d_backward_bias_v3_f{width}", grid, cfg.BLOCK,
            (dy, db, part, count) + _i32s("dy", "N K P*Q", (n, k, p * q)) + (_i32(chunk), _i32(accumulate)))
    return db


def bias_add(y, b):
    """y[n, c, ...] += b[c] in place."""
    y = _arg(y, "y", inplace=True)
    b = _arg(b, "b")
    if y.size:
        inner = y.size // (y.shape[0] * y.shape[1])
        cfg.check_int32("y", y.size, "N*C*H*W")  # the kernel indexes y with 32-bit ints
        _launch("bias.cu", "bias_add_v1", _eltwise_grid(y.size), cfg.BLOCK,
                (y, b) + _i32s("y", "N*C*H*W C H*W", (y.size, y.shape[1], inner)))
