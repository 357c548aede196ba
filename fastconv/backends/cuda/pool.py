"""Launchers of kernels/pool.cu and pool_2x2.cu (the 2x2 / stride-2 fast paths): max and average pooling.

The 2x2 / stride-2 / unpadded windows (LeNet's pools) go to the first kernel of
``config.POOL_2X2_ORDER`` whose needs a call meets (``config.POOL_2X2``): backward to ``*_2x2v4x2``
when W % 8 == 0 (four outputs per thread, two items' 16-byte loads in flight, sector-whole 16-byte
stores; 0.89-0.90 of the device copy on an H200), either pass
to ``*_2x2w`` when W % 4 == 0 (two outputs per thread, 16-byte row accesses), else to ``*_2x2`` when
W is even (one output per thread, 8-byte accesses); the wider ones need 16-byte aligned arrays,
``*_2x2`` 8-byte. Other windows, and calls none fits, go to the general kernels (``*_v2``; the fused
op's ``*_v1``). The pool_variant setting forces one of them. All use 32-bit index math, so
N*C*H*W and N*C*P*Q are checked against INT32_LIMIT. Every max-pool path returns the int32 argmax
h*W + w of ``fastconv.ops.max_pool2d_forward``; the fused relu_max_pool2d its uint8 window index
(its 2x2 kernels are ``*_v2_<suffix>``, the same dispatch).
"""

from __future__ import annotations

import numpy as np

from ... import settings
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


def _fast_2x2(op, ks, stride, padding, w, *arrays):
    """The 2x2 kernel suffix (a key of config.POOL_2X2) for ``op``'s windows, input width ``w`` and
    arrays, or None (the general kernel): the pool_variant setting's, else the first of
    POOL_2X2_ORDER that fits. A forced suffix that does not fit is a ValueError."""
    pass_name = op.rsplit("_", 1)[1]

    def fits(suffix):
        _, multiple, align, passes = cfg.POOL_2X2[suffix]
        return (ks == (2, 2) and stride == (2, 2) and padding == (0, 0) and w % multiple == 0
                and pass_name in passes and _aligned(*arrays, nbytes=align))

    forced = settings.current().pool_variant
    if forced is None:
        return next((s for s in cfg.POOL_2X2_ORDER if fits(s)), None)
    if forced == cfg.POOL_GENERAL:
        return None
    if fits(forced):
        return forced
    raise ValueError(f"pool_variant: got {forced!r} for {op} (kernel {ks}, stride {stride}, padding {padding}, "
                     f"W={w}), expected {cfg.POOL_GENERAL!r} or one that fits it: "
                     f"{[s for s in cfg.POOL_2X2 if fits(s)]}")


def _run(op, window, arrays, ints, outputs, threads, extra=(), versions=("v3", "v2")):
    """Launch ``op``'s 2x2 kernel for these (kernel, stride, padding) ``window`` and arrays (_fast_2x2;
    N*C H W P Q only) or else its general kernel (one thread per ``threads`` item, all ints + extra);
    ``versions`` = (the 2x2 kernels' version, the general kernel's)."""
    fast = _fast_2x2(op, *window, int(ints[2]), *arrays)
    if fast:
        _launch("pool_2x2.cu", f"{op}_{versions[0]}_{fast}", _eltwise_grid(outputs, cfg.POOL_2X2[fast][0]), cfg.BLOCK,
                arrays + ints[:5])
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
    _run("max_pool2d_forward", (ks, stride, padding), (x, y, am), ints, y.size, y.size)
    return y, am


def max_pool2d_backward(dy, argmax, x_shape, ks, stride, padding):
    dy, argmax, dx, ints = _backward_args("max_pool2d", dy, (argmax, np.int32), x_shape, ks, stride, padding)
    _run("max_pool2d_backward", (ks, stride, padding), (dy, argmax, dx), ints, dy.size, dx.size)
    return dx


def avg_pool2d_forward(x, ks, stride, padding, count_include_pad):
    x, (n, c, p, q), ints = _forward_args(x, ks, stride, padding)
    y = _alloc((n, c, p, q), _F32, "avg_pool2d_forward output")
    _run("avg_pool2d_forward", (ks, stride, padding), (x, y), ints, y.size, y.size,
         (_i32(bool(count_include_pad)),))
    return y


def avg_pool2d_backward(dy, x_shape, ks, stride, padding, count_include_pad):
    dy, _, dx, ints = _backward_args("avg_pool2d", dy, None, x_shape, ks, stride, padding)
    _run("avg_pool2d_backward", (ks, stride, padding), (dy, dx), ints, dy.size, dx.size,
         (_i32(bool(count_include_pad)),))
    return dx


def relu_max_pool2d_forward(x, ks, stride, padding):
    x, (n, c, p, q), ints = _forward_args(x, ks, stride, padding)
    y = _alloc((n, c, p, q), _F32, "relu_max_pool2d_forward output")
    code = _alloc((n, c, p, q), np.uint8, "relu_max_pool2d_forward argmax")
    _run("relu_max_pool2d_forward", (ks, stride, padding), (x, y, code), ints, y.size, y.size,
         versions=("v2", "v1"))
    return y, code


def relu_max_pool2d_backward(dy, code, x_shape, ks, stride, padding):
    dy, code, dx, ints = _backward_args("relu_max_pool2d", dy, (code, np.uint8), x_shape, ks, stride, padding)
    _run("relu_max_pool2d_backward", (ks, stride, padding), (dy, code, dx), ints, dy.size, dx.size,
         versions=("v2", "v1"))
    return dx
