"""Launchers of kernels/activation.cu's elementwise activations (vectorised float4 where aligned)."""

from __future__ import annotations

import numpy as np

from . import config as cfg
from .launch import _F32, _aligned, _alloc, _arg, _eltwise_grid, _f32, _launch


def _unary(name, x, scalars=(), vec=False):
    x = _arg(x, "x")
    y = _alloc(x.shape, _F32, f"{name} output")
    if x.size:
        v2 = vec and _aligned(x, y)
        kname = f"{name}_v2" if v2 else f"{name}_v1"
        _launch("activation.cu", kname, _eltwise_grid(x.size, 4 if v2 else 1), cfg.BLOCK,
                (x, y, np.int64(x.size)) + scalars)
    return y


def _binary(name, dy, y, scalars=(), vec=False):
    dy = _arg(dy, "dy")
    y = _arg(y, "y")
    dx = _alloc(dy.shape, _F32, f"{name} output")
    if dy.size:
        v2 = vec and _aligned(dy, y, dx)
        kname = f"{name}_v2" if v2 else f"{name}_v1"
        _launch("activation.cu", kname, _eltwise_grid(dy.size, 4 if v2 else 1), cfg.BLOCK,
                (dy, y, dx, np.int64(dy.size)) + scalars)
    return dx


def relu_forward(x):
    return _unary("relu_forward", x, vec=True)


def relu_backward(dy, y):
    return _binary("relu_backward", dy, y, vec=True)


def leaky_relu_forward(x, slope):
    return _unary("leaky_relu_forward", x, (_f32(slope),), vec=True)


def leaky_relu_backward(dy, y, slope):
    return _binary("leaky_relu_backward", dy, y, (_f32(slope),), vec=True)


def sigmoid_forward(x):
    return _unary("sigmoid_forward", x)


def sigmoid_backward(dy, y):
    return _binary("sigmoid_backward", dy, y)


def tanh_forward(x):
    return _unary("tanh_forward", x)


def tanh_backward(dy, y):
    return _binary("tanh_backward", dy, y)
