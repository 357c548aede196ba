"""Launchers of kernels/pool.cu: max and average pooling.

The 2x2 / stride-2 / unpadded windows (LeNet's pools) go to the ``*_v3_2x2w`` kernels when W % 4
== 0 and the arrays are 16-byte aligned (two outputs per thread, 16-byte row loads), else to
``*_v3_2x2`` when W is even (one output per thread, 8-byte loads); other windows to the general
``*_v2`` kernels. All use 32-bit index math, so N*C*H*W and N*C*P*Q are checked against
INT32_LIMIT. Every max-pool path returns the int32 argmax h*W + w of
``fastconv.ops.max_pool2d_forward``; the fused relu_max_pool2d its uint8 window index (``_v2_2x2*``
and ``_v1`` kernels, the same dispatch).
"""

from __future__ import annotations

import numpy as np

from ...argcheck import conv_out_size
from . import config as cfg
from .launch import _F32, _aligned, _alloc, _arg, _eltwise_grid, _i32, _i32s, _launch

_LABELS = "N*C H W P Q kernel_h kernel_w stride_h stride_w pad_h pad_w"


def _pool_ints(name, nc, h, w, p, q, ks, stride, padding):
    """The pooling kernels' int parameters; the kernels index x and y with 32-bit unsigned flat
    indices, so N*C*H*W and N*C*P*Q are checked against INT32_LIMIT."""
    cfg.check_int32(name, nc * h * w, "N*C*H*W")
    cfg.check_int32(name, nc * p * q, "N*C*P*Q")
    return _i32s(name, _LABELS, (nc, h, w, p, q, ks[0], ks[1], stride[0], stride[1], padding[0], padding[1]))


def _fast_2x2(ks, stride, padding, w, *arrays):
    """The 2x2 kernel suffix ("v3_2x2w", "v3_2x2") for these windows and arrays, or None."""
    if ks != (2, 2) or stride != (2, 2) or padding != (0, 0) or w % 2:
        return None
    return "v3_2x2w" if w % 4 == 0 and _aligned(*arrays) else "v3_2x2" if _aligned(*arrays, nbytes=8) else None


def _run(op, fast, arrays, ints, outputs, threads, extra=(), versions=("v3", "v2")):
    """Launch ``op``'s 2x2 kernel ``fast`` (one thread per one or two outputs; N*C H W P Q only) or,
    when fast is None, its general kernel (one thread per ``threads`` item, all ints + extra);
    ``versions`` = (the 2x2 kernels' version, the general kernel's)."""
    if fast:
        name, per_thread = f"{op}_{fast.replace('v3', versions[0])}", 2 if fast.endswith("w") else 1
        _launch("pool.cu", name, _eltwise_grid(outputs, per_thread), cfg.BLOCK, arrays + ints[:5])
    else:
        _launch("pool.cu", f"{op}_{versions[1]}", _eltwise_grid(threads), cfg.BLOCK, arrays + ints + extra)


def _forward_args(x, ks, stride, padding):
    """The checked input, output shape (N, C, P, Q) and int32 kernel arguments of a forward pass."""
    x = _arg(x, "x")
    n, c, h, w = x.shape
    p = conv_out_size(h, ks[0], stride[0], padding[0], 1)
    q = conv_out_size(w, ks[1], stride[1], padding[1], 1)
    return x, (n, c, p, q), _pool_ints("x", n * c, h, w, p, q, ks, stride, padding)


def _backward_args(op, dy, argmax, x_shape, ks, stride, padding):
    """The checked dy and ``argmax`` (the forward's (array, dtype), or None: average pooling), the
    new dx of shape ``x_shape`` (N, C, H, W) and the int32 kernel arguments of ``op``'s backward pass."""
    dy = _arg(dy, "dy")
    argmax = None if argmax is None else _arg(argmax[0], "argmax", argmax[1])
    n, c, h, w = x_shape
    ints = _pool_ints("dy", n * c, h, w, dy.shape[2], dy.shape[3], ks, stride, padding)
    return dy, argmax, _alloc((n, c, h, w), _F32, f"{op}_backward output"), ints


def max_pool2d_forward(x, ks, stride, padding):
    x, (n, c, p, q), ints = _forward_args(x, ks, stride, padding)
    y = _alloc((n, c, p, q), _F32, "max_pool2d_forward output")
    am = _alloc((n, c, p, q), np.int32, "max_pool2d_forward argmax")
    _run("max_pool2d_forward", _fast_2x2(ks, stride, padding, x.shape[3], x, y, am), (x, y, am), ints, y.size, y.size)
    return y, am


def max_pool2d_backward(dy, argmax, x_shape, ks, stride, padding):
    dy, argmax, dx, ints = _backward_args("max_pool2d", dy, (argmax, np.int32), x_shape, ks, stride, padding)
    _run("max_pool2d_backward", _fast_2x2(ks, stride, padding, dx.shape[3], dy, argmax, dx), (dy, argmax, dx), ints,
         dy.size, dx.size)
    return dx


def avg_pool2d_forward(x, ks, stride, padding, count_include_pad):
    x, (n, c, p, q), ints = _forward_args(x, ks, stride, padding)
    y = _alloc((n, c, p, q), _F32, "avg_pool2d_forward output")
    _run("avg_pool2d_forward", _fast_2x2(ks, stride, padding, x.shape[3], x, y), (x, y), ints, y.size, y.size,
         (_i32(bool(count_include_pad)),))
    return y


def avg_pool2d_backward(dy, x_shape, ks, stride, padding, count_include_pad):
    dy, _, dx, ints = _backward_args("avg_pool2d", dy, None, x_shape, ks, stride, padding)
    _run("avg_pool2d_backward", _fast_2x2(ks, stride, padding, dx.shape[3], dy, dx), (dy, dx), ints, dy.size, dx.size,
         (_i32(bool(count_include_pad)),))
    return dx


def relu_max_pool2d_forward(x, ks, stride, padding):
    x, (n, c, p, q), ints = _forward_args(x, ks, stride, padding)
    y = _alloc((n, c, p, q), _F32, "relu_max_pool2d_forward output")
    code = _alloc((n, c, p, q), np.uint8, "relu_max_pool2d_forward argmax")
    _run("relu_max_pool2d_forward", _fast_2x2(ks, stride, padding, x.shape[3], x, y, code), (x, y, code), ints,
         y.size, y.size, versions=("v2", "v1"))
    return y, code


def relu_max_pool2d_backward(dy, code, x_shape, ks, stride, padding):
    dy, code, dx, ints = _backward_args("relu_max_pool2d", dy, (code, np.uint8), x_shape, ks, stride, padding)
    _run("relu_max_pool2d_backward", _fast_2x2(ks, stride, padding, dx.shape[3], dy, code, dx), (dy, code, dx), ints,
         dy.size, dx.size, versions=("v2", "v1"))
    return dx
