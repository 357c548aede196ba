"""Launcher of kernels/bias.cu: the conv bias gradient as a deterministic multi-block reduction."""

from __future__ import annotations

import numpy as np

from . import config as cfg
from .launch import _F32, _aligned, _alloc, _arg, _eltwise_grid, _i32, _i32s, _launch, num_sms


def channel_launch(name, x, n, c, hw):
    """(grid, slices, chunk, width) of a per-channel reduction over x viewed as (n, c, hw)
    (kernels/reduce.cuh): blocks = (slices, c); width 4 (the ``_f4`` kernels) when hw % 4 == 0 and
    x is 16-byte aligned, else 1. Checks the 32-bit offsets (n*c*hw) and the grid."""
    cfg.check_int32(name, n * c * hw, "N*C*H*W")
    splits, chunk = cfg.channel_splits(c, n, hw, num_sms())
    grid = cfg.check_grid(name, (splits, c, 1))
    return grid, splits, chunk, 4 if hw % 4 == 0 and _aligned(x) else 1


def conv2d_backward_bias(dy):
    """db[K] = dy[N, K, P, Q] summed over N, P, Q."""
    dy = _arg(dy, "dy")
    n, k, p, q = dy.shape
    db = _alloc((k,), _F32, "conv2d_backward_bias output")
    grid, splits, chunk, width = channel_launch("dy", dy, n, k, p * q)
    part = _alloc((k, splits), np.float64, "conv2d_backward_bias partial sums")  # unread when splits == 1
    _launch("bias.cu", f"conv2d_backward_bias_v2_f{width}", grid, cfg.BLOCK,
            (dy, db, part) + _i32s("dy", "N K P*Q", (n, k, p * q)) + (_i32(chunk),))
    if splits > 1:
        _launch("bias.cu", "conv2d_backward_bias_finish_v2", _eltwise_grid(k), cfg.BLOCK,
                (part, db, _i32(k), _i32(splits)))
    return db
