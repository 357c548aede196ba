"""Numba elementwise activation kernels (32-bit grid-stride loops), launchers and backend functions."""

from __future__ import annotations

from numba import float32, uint32

from .driver import _blocks, _check, _check_out, _empty, _in, launch
from .tiles import ELEMENTWISE_THREADS, grid_stride


def relu_forward_v1(y, x, n):
    """y = max(x, 0). Work: n compares, no FLOPs; traffic 2*n*4 bytes (x in, y out)."""
    i, step = grid_stride()
    while i < uint32(n):
        v = x[i]
        y[i] = v if v > 0 else float32(0.0)
        i = uint32(i + step)


def relu_backward_v1(dx, dy, y, n):
    """dx = dy where y > 0, else 0. Work: n compares, no FLOPs; traffic 3*n*4 bytes."""
    i, step = grid_stride()
    while i < uint32(n):
        dx[i] = dy[i] if y[i] > 0 else float32(0.0)
        i = uint32(i + step)


def leaky_relu_forward_v1(y, x, n, slope):
    """y = x if x > 0 else x*slope. Work: n compares, up to n FLOPs; traffic 2*n*4 bytes."""
    i, step = grid_stride()
    while i < uint32(n):
        v = x[i]
        y[i] = v if v > 0 else v * slope
        i = uint32(i + step)


def leaky_relu_backward_v1(dx, dy, y, n, slope):
    """dx = dy if y > 0 else dy*slope. Work: n compares, up to n FLOPs; traffic 3*n*4 bytes."""
    i, step = grid_stride()
    while i < uint32(n):
        d = dy[i]
        dx[i] = d if y[i] > 0 else d * slope
        i = uint32(i + step)


def _elementwise(name, out, inputs, scalars, stream):
    """Check and launch elementwise kernel ``name``: ``out`` and ``inputs`` are (array, argument
    name) pairs, every array of the first input's shape, in the kernel's order after ``out``."""
    first = _check(*inputs[0])
    _check_out(*out, first.shape)
    for a, an in inputs[1:]:
        _check_out(a, an, first.shape)
    n = first.size
    grid = (_blocks(n, ELEMENTWISE_THREADS), 1, 1)
    launch(name, grid, (ELEMENTWISE_THREADS, 1, 1), (out[0],) + tuple(a for a, _ in inputs) + (n,) + scalars,
           stream)
    return out[0]


def launch_relu_forward(y, x, stream=None):
    return _elementwise("relu_forward_v1", (y, "y"), [(x, "x")], (), stream)


def launch_relu_backward(dx, dy, y, stream=None):
    return _elementwise("relu_backward_v1", (dx, "dx"), [(dy, "dy"), (y, "y")], (), stream)


def launch_leaky_relu_forward(y, x, slope, stream=None):
    return _elementwise("leaky_relu_forward_v1", (y, "y"), [(x, "x")], (float(slope),), stream)


def launch_leaky_relu_backward(dx, dy, y, slope, stream=None):
    return _elementwise("leaky_relu_backward_v1", (dx, "dx"), [(dy, "dy"), (y, "y")], (float(slope),), stream)


def relu_forward(x):
    x = _in(x, "x")
    return launch_relu_forward(_empty(x.shape, x, what="relu_forward output"), x)


def relu_backward(dy, y):
    dy, y = _in(dy, "dy"), _in(y, "y")
    return launch_relu_backward(_empty(dy.shape, dy, what="relu_backward output"), dy, y)


def leaky_relu_forward(x, slope):
    x = _in(x, "x")
    return launch_leaky_relu_forward(_empty(x.shape, x, what="leaky_relu_forward output"), x, slope)


def leaky_relu_backward(dy, y, slope):
    dy, y = _in(dy, "dy"), _in(y, "y")
    return launch_leaky_relu_backward(_empty(dy.shape, dy, what="leaky_relu_backward output"), dy, y, slope)
