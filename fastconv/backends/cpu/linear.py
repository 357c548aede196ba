"""CPU linear layer: y = act(x @ w.T + b) through BLAS."""

from __future__ import annotations

import numpy as np

from . import activation
from .optim import adds_into


def linear_forward(x, w, b, activation_name=None, slope=0.0):
    y = x @ w.T
    if b is not None:
        y += b
    if activation_name is None:
        return y
    extra = (slope,) if activation_name == "leaky_relu" else ()
    return getattr(activation, f"{activation_name}_forward")(y, *extra)


def linear_backward_data(dy, w, activation_name=None, slope=0.0, activation_output=None):
    """dx = dy @ w; given ``activation_output`` (the outputs of the activation that were x), through
    that activation's backward."""
    dx = dy @ w
    return dx if activation_output is None else activation.activate_backward(activation_name, dx, activation_output,
                                                                             slope)


@adds_into
def linear_backward_weight(dy, x, out=(None, None)):
    """(dw, db), each written into its entry of ``out`` when that is an array."""
    return np.matmul(dy.T, x, out=out[0]), dy.sum(axis=0, out=out[1])


def linear_backward(dy, x, w, input_grad=True, weight_grad=True, out=(None, None), accumulate=(False, False),
                    activation_name=None, slope=0.0, activation_output=None):
    """(dx, dw, db): linear_backward_data and linear_backward_weight, None for a pass not run."""
    dx = linear_backward_data(dy, w, activation_name, slope, activation_output) if input_grad else None
    return (dx,) + (linear_backward_weight(dy, x, out=out, accumulate=accumulate) if weight_grad else (None, None))
