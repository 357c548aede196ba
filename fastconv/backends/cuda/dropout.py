"""Launchers of the dropout kernels in kernels/activation.cu (the counter-based hash mask of
fastconv.backends.cpu.dropout); 32-bit indices, the size checked against INT32_LIMIT."""

from __future__ import annotations

import numpy as np

from . import config as cfg
from .launch import _F32, _alloc, _arg, _eltwise_grid, _epilogue, _f32, _launch


def dropout_forward(x, p, seed, calls=None):
    x = _arg(x, "x")
    calls = None if calls is None else _arg(calls, "calls", np.uint32, inplace=True)
    cfg.check_int32("x", x.size, "size")
    y = _alloc(x.shape, _F32, "dropout_forward output")
    mask = _alloc(x.shape, np.uint8, "dropout_forward mask")
    if x.size:
        thr = np.uint64(int(p * 4294967296.0))
        args = (x, y, mask, np.int32(x.size), np.uint32(seed & 0xFFFFFFFF), thr, _f32(1.0 / (1.0 - p)))
        _launch("activation.cu", "dropout_forward_v1" if calls is None else "dropout_forward_v2",
                _eltwise_grid(x.size), cfg.BLOCK, args if calls is None else args + (calls,))
    return y, mask


def dropout_backward(dy, mask, p, activation=None, slope=0.0, activation_output=None):
    """dx = dy * mask / (1 - p); given ``activation_output`` (the outputs of ``activation`` that were
    the dropout's input), through that activation's backward, in the same kernel."""
    dy = _arg(dy, "dy")
    mask = _arg(mask, "mask", np.uint8)
    cfg.check_int32("dy", dy.size, "size")
    dx = _alloc(dy.shape, _F32, "dropout_backward output")
    grad = activation_output is not None
    y = _arg(activation_output, "activation_output") if grad else None
    if dy.size:
        _launch("activation.cu", "dropout_backward_v1", _eltwise_grid(dy.size), cfg.BLOCK,
                (dy, mask, dx, np.int32(dy.size), _f32(1.0 / (1.0 - p)), dx if y is None else y)
                + _epilogue(y, cfg.activation_code(activation) if grad else 0, slope, grad))
    return dx
