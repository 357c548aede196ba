"""Numba elementwise activation kernels, launchers and backend functions.

Each thread takes UNROLL elements a block width apart per trip of a 32-bit grid-stride loop and
loads all of them before storing any: UNROLL loads in flight per thread, where one element per
trip left one (a thread waits for its load before the next trip) and the kernels short of the
memory bandwidth (ReLU 0.74 / 0.67 of the device copy on an H200). The kernels come from two
factories over the elementwise function: forward ``y = f(x, slope)``, backward
``dx = g((dy, y), slope)`` (ReLU's and tanh's kernels ignore the slope)."""

from __future__ import annotations

import math

from numba import cuda, float32, uint32

from .. import fused_activation
from ..cuda.config import cdiv
from .driver import _check, _check_out, _empty, _in, launch
from .tiles import ELEMENTWISE_THREADS

UNROLL = 4                 # elements per thread per trip (the kernels below are written for 4)
MAX_BLOCKS = 65535         # grid cap; the loop walks what a full grid does not cover (tests lower it)


@cuda.jit(device=True, inline="always")
def _unrolled_stride():
    """(first element, distance between a thread's UNROLL elements, grid step), as uint32: block b
    covers [b*B*UNROLL, (b + 1)*B*UNROLL) on each trip (B threads), each load coalesced across a warp."""
    b = uint32(cuda.blockDim.x)
    tile = uint32(b * uint32(UNROLL))
    return uint32(uint32(cuda.blockIdx.x) * tile + uint32(cuda.threadIdx.x)), b, uint32(uint32(cuda.gridDim.x) * tile)


@cuda.jit(device=True, inline="always")
def _relu(v, slope):
    return v if v > 0 else float32(0.0)


@cuda.jit(device=True, inline="always")
def _leaky_relu(v, slope):
    return v if v > 0 else v * slope


@cuda.jit(device=True, inline="always")
def _relu_grad(dy_y, slope):
    d, y = dy_y
    return d if y > 0 else float32(0.0)


@cuda.jit(device=True, inline="always")
def _leaky_relu_grad(dy_y, slope):
    d, y = dy_y
    return d if y > 0 else d * slope


@cuda.jit(device=True, inline="always")
def _tanh(v, slope):
    return math.tanh(v)


@cuda.jit(device=True, inline="always")
def _tanh_grad(dy_y, slope):
    d, y = dy_y
    return d * (float32(1.0) - y * y)


def _unrolled_loop(load, f):
    """Device function loop(out, ins, n, slope): out[j] = f(load(ins, j), slope) for j < n, as the
    module docstring says (UNROLL = 4 values loaded, then 4 stored; a tail trip one at a time)."""
    @cuda.jit(device=True, inline="always")
    def loop(out, ins, n, slope):
        i, b, step = _unrolled_stride()
        n = uint32(n)
        while i < n:
            if i + uint32(3) * b < n:
                j1, j2, j3 = uint32(i + b), uint32(i + uint32(2) * b), uint32(i + uint32(3) * b)
                v0, v1, v2, v3 = load(ins, i), load(ins, j1), load(ins, j2), load(ins, j3)
                out[i], out[j1], out[j2], out[j3] = f(v0, slope), f(v1, slope), f(v2, slope), f(v3, slope)
            else:
                j = i
                while j < n:
                    out[j] = f(load(ins, j), slope)
                    j = uint32(j + b)
            i = uint32(i + step)
    return loop


@cuda.jit(device=True, inline="always")
def _at(x, j):
    return x[j]


@cuda.jit(device=True, inline="always")
def _pair_at(dy_y, j):
    return dy_y[0][j], dy_y[1][j]


def _forward_kernel(f):
    """The forward kernel of elementwise function f (see the module docstring)."""
    loop = _unrolled_loop(_at, f)

    def kernel(y, x, n, slope):
        """y = f(x, slope) over n elements. Work: n compares (+ n FLOPs leaky); traffic 2*n*4
        bytes (x in, y out)."""
        loop(y, x, n, slope)
    return kernel


def _backward_kernel(g):
    """The backward kernel of elementwise gradient g((dy, y), slope) (see the module docstring)."""
    loop = _unrolled_loop(_pair_at, g)

    def kernel(dx, dy, y, n, slope):
        """dx = g((dy, y), slope) over n elements. Work: n compares (+ n FLOPs leaky); traffic
        3*n*4 bytes (dy, y in, dx out)."""
        loop(dx, (dy, y), n, slope)
    return kernel


relu_forward_v2 = _forward_kernel(_relu)
relu_backward_v2 = _backward_kernel(_relu_grad)
leaky_relu_forward_v2 = _forward_kernel(_leaky_relu)
tanh_forward_v2 = _forward_kernel(_tanh)
tanh_backward_v2 = _backward_kernel(_tanh_grad)
leaky_relu_backward_v2 = _backward_kernel(_leaky_relu_grad)


def _elementwise(name, out, inputs, scalars, stream):
    """Check and launch elementwise kernel ``name``: ``out`` and ``inputs`` are (array, argument
    name) pairs, every array of the first input's shape, in the kernel's order after ``out``."""
    first = _check(*inputs[0])
    _check_out(*out, first.shape)
    for a, an in inputs[1:]:
        _check_out(a, an, first.shape)
    n = first.size
    grid = (max(1, min(cdiv(n, ELEMENTWISE_THREADS * UNROLL), MAX_BLOCKS)), 1, 1)
    launch(name, grid, (ELEMENTWISE_THREADS, 1, 1), (out[0],) + tuple(a for a, _ in inputs) + (n,) + scalars,
           stream)
    return out[0]


def launch_relu_forward(y, x, stream=None):
    return _elementwise("relu_forward_v2", (y, "y"), [(x, "x")], (0.0,), stream)


def launch_relu_backward(dx, dy, y, stream=None):
    return _elementwise("relu_backward_v2", (dx, "dx"), [(dy, "dy"), (y, "y")], (0.0,), stream)


def launch_leaky_relu_forward(y, x, slope, stream=None):
    return _elementwise("leaky_relu_forward_v2", (y, "y"), [(x, "x")], (float(slope),), stream)


def launch_leaky_relu_backward(dx, dy, y, slope, stream=None):
    return _elementwise("leaky_relu_backward_v2", (dx, "dx"), [(dy, "dy"), (y, "y")], (float(slope),), stream)


def launch_tanh_forward(y, x, stream=None):
    return _elementwise("tanh_forward_v2", (y, "y"), [(x, "x")], (0.0,), stream)


def launch_tanh_backward(dx, dy, y, stream=None):
    return _elementwise("tanh_backward_v2", (dx, "dx"), [(dy, "dy"), (y, "y")], (0.0,), stream)


def _backend_functions(name):
    """The backend functions ``<name>_forward(x, *slope)`` and ``<name>_backward(dy, y, *slope)``
    (leaky_relu's take the slope): new outputs, then the launch_ functions above."""
    launch_forward, launch_backward = globals()[f"launch_{name}_forward"], globals()[f"launch_{name}_backward"]

    def forward(x, *slope):
        x = _in(x, "x")
        return launch_forward(_empty(x.shape, x, what=f"{name}_forward output"), x, *slope)

    def backward(dy, y, *slope):
        dy, y = _in(dy, "dy"), _in(y, "y")
        return launch_backward(_empty(dy.shape, dy, what=f"{name}_backward output"), dy, y, *slope)

    forward.__name__, backward.__name__ = f"{name}_forward", f"{name}_backward"
    return forward, backward


relu_forward, relu_backward = _backend_functions("relu")
leaky_relu_forward, leaky_relu_backward = _backend_functions("leaky_relu")
tanh_forward, tanh_backward = _backend_functions("tanh")


def activate(activation, y, slope):
    """act(y), a fused activation of another op's output (None, "relu", "leaky_relu", "tanh"), as one
    elementwise launch into a new array (y itself for None)."""
    return fused_activation(globals(), activation, "forward", y, slope=slope)


def activate_backward(activation, dy, y, slope):
    """dy through the backward of a fused activation at its output y, one elementwise launch into a new
    array (dy itself for None)."""
    return fused_activation(globals(), activation, "backward", dy, y, slope=slope)
