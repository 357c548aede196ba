"""Launchers of kernels/activation.cu's elementwise activations: the float4 v2 kernels when every
array is 16-byte aligned, else v1; both index in 32 bits, so the size is checked against INT32_LIMIT."""

from __future__ import annotations

import numpy as np

from . import config as cfg
from .launch import _F32, _aligned, _alloc, _arg, _eltwise_grid, _f32, _launch


def _run(name, arrays, scalars):
    """v2 (float4, two vectors per thread per step) when every array is aligned, else v1; the
    size was checked against INT32_LIMIT by the caller."""
    v2 = _aligned(*arrays)
    n = arrays[0].size
    _launch("activation.cu", f"{name}_v2" if v2 else f"{name}_v1", _eltwise_grid(n, 8 if v2 else 1), cfg.BLOCK,
            arrays + (np.int32(n),) + scalars)


def _unary(name, x, scalars=()):
    x = _arg(x, "x")
    cfg.check_int32("x", x.size, "size")
    y = _alloc(x.shape, _F32, f"{name} output")
    if x.size:
        _run(name, (x, y), scalars)
    return y


def _binary(name, dy, y, scalars=()):
    dy = _arg(dy, "dy")
    y = _arg(y, "y")
    cfg.check_int32("dy", dy.size, "size")
    dx = _alloc(dy.shape, _F32, f"{name} output")
    if dy.size:
        _run(name, (dy, y, dx), scalars)
    return dx


def relu_forward(x):
    return _unary("relu_forward", x)


def relu_backward(dy, y):
    return _binary("relu_backward", dy, y)


def leaky_relu_forward(x, slope):
    return _unary("leaky_relu_forward", x, (_f32(slope),))


def leaky_relu_backward(dy, y, slope):
    return _binary("leaky_relu_backward", dy, y, (_f32(slope),))


def sigmoid_forward(x):
    return _unary("sigmoid_forward", x)


def sigmoid_backward(dy, y):
    return _binary("sigmoid_backward", dy, y)


def tanh_forward(x):
    return _unary("tanh_forward", x)


def tanh_backward(dy, y):
    return _binary("tanh_backward", dy, y)
