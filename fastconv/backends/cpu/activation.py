"""CPU elementwise activations (backward passes take the forward output y)."""

from __future__ import annotations

import numpy as np

from .. import fused_activation


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(dy, y):
    return dy * (y > 0)


def leaky_relu_forward(x, slope):
    return np.where(x > 0, x, x * x.dtype.type(slope))


def leaky_relu_backward(dy, y, slope):
    return np.where(y > 0, dy, dy * dy.dtype.type(slope))


def sigmoid_forward(x):
    # 1 / (1 + exp(-x)) without overflow for large |x|
    return np.exp(-np.logaddexp(0, -x)).astype(x.dtype, copy=False)


def sigmoid_backward(dy, y):
    return dy * y * (1 - y)


def tanh_forward(x):
    return np.tanh(x)


def tanh_backward(dy, y):
    return dy * (1 - y * y)


def activate(activation, x, slope=0.0):
    """x through a fused activation (None, "relu", "leaky_relu" with ``slope``, "tanh")."""
    return fused_activation(globals(), activation, "forward", x, slope=slope)


def activate_backward(activation, dy, y, slope=0.0):
    """dy through the backward of a fused activation at its output y."""
    return fused_activation(globals(), activation, "backward", dy, y, slope=slope)
