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


def _activation(name: str, forward_doc: str, backward_doc: str):
    """The public ``<name>_forward(x)`` and ``<name>_backward(dy, y)`` ops of an activation without parameters."""

    @planned
    def forward(x, *, kernels=None):
        return _unary(f"{name}_forward", x, kernels=kernels)

    @planned
    def backward(dy, y, *, kernels=None):
        return _unary_backward(f"{name}_backward", dy, y, kernels=kernels)

    for f, pass_, doc in ((forward, "forward", forward_doc), (backward, "backward", backward_doc)):
        f.__name__ = f.__qualname__ = f"{name}_{pass_}"
        f.__doc__ = doc
    return forward, backward


relu_forward, relu_backward = _activation("relu", "y = max(x, 0)", "dx = dy where y > 0, else 0")
sigmoid_forward, sigmoid_backward = _activation("sigmoid", "y = 1 / (1 + exp(-x))", "dx = dy * y * (1 - y)")
tanh_forward, tanh_backward = _activation("tanh", "y = tanh(x)", "dx = dy * (1 - y**2)")


@planned
def leaky_relu_forward(x, negative_slope=0.01, *, kernels=None):
    """y = x where x > 0, else negative_slope * x."""
    return _unary("leaky_relu_forward", x, leaky_slope(negative_slope), kernels=kernels)


@planned
def leaky_relu_backward(dy, y, negative_slope=0.01, *, kernels=None):
    """dx = dy where y > 0, else negative_slope * dy."""
    return _unary_backward("leaky_relu_backward", dy, y, leaky_slope(negative_slope), kernels=kernels)
