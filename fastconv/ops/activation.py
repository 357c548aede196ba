"""Elementwise activations; backward passes take the forward output y, not x."""

from __future__ import annotations

from ..argcheck import ANY_NDIM, array, leaky_slope, same_shape
from ..backend import op
from ..plan import planned


def _unary(name, x, *extra, kernels=None):
    """Elementwise forward ops: x of any ndim 1-5."""
    array(x, "x", ANY_NDIM)
    return op(name, x, kernels=kernels)(x, *extra)


def _unary_backward(name, dy, y, *extra, kernels=None):
    """Elementwise backward ops: dy and the forward output y of one shape, dtype and device."""
    same_shape(array(dy, "dy", ANY_NDIM), "dy", array(y, "y", ANY_NDIM), "y")
    return op(name, dy, y, kernels=kernels)(dy, y, *extra)


@planned
def relu_forward(x, *, kernels=None):
    return _unary("relu_forward", x, kernels=kernels)


@planned
def relu_backward(dy, y, *, kernels=None):
    return _unary_backward("relu_backward", dy, y, kernels=kernels)



@planned
def leaky_relu_forward(x, negative_slope=0.01, *, kernels=None):
    return _unary("leaky_relu_forward", x, leaky_slope(negative_slope), kernels=kernels)


@planned
def leaky_relu_backward(dy, y, negative_slope=0.01, *, kernels=None):
    return _unary_backward("leaky_relu_backward", dy, y, leaky_slope(negative_slope), kernels=kernels)


@planned
def sigmoid_forward(x, *, kernels=None):
    return _unary("sigmoid_forward", x, kernels=kernels)


@planned
def sigmoid_backward(dy, y, *, kernels=None):
    return _unary_backward("sigmoid_backward", dy, y, kernels=kernels)


@planned
def tanh_forward(x, *, kernels=None):
    return _unary("tanh_forward", x, kernels=kernels)


@planned
def tanh_backward(dy, y, *, kernels=None):
    return _unary_backward("tanh_backward", dy, y, kernels=kernels)
