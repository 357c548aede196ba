"""Launchers of kernels/pool.cu: max and average pooling."""

from __future__ import annotations

import numpy as np

from ...argcheck import conv_out_size
from . import config as cfg
from .launch import _F32, _alloc, _arg, _eltwise_grid, _i32, _i32s, _launch


def _pool_ints(name, nc, h, w, p, q, ks, stride, padding):
    """The pooling kernels' int parameters; they index a plane with h*W + w and p*Q + q in 32-bit
    ints, so H*W and P*Q are checked too (N*C is only passed as an int; its products are 64-bit)."""
    cfg.check_int32(name, h * w, "H*W")
    cfg.check_int32(name, p * q, "P*Q")
    return _i32s(name, "N*C H W P Q kernel_h kernel_w stride_h stride_w pad_h pad_w",
                 (nc, h, w, p, q, ks[0], ks[1], stride[0], stride[1], padding[0], padding[1]))


def _forward_args(x, ks, stride, padding):
    """The checked input, output shape (N, C, P, Q) and int32 kernel arguments of a forward pass."""
    x = _arg(x, "x")
    n, c, h, w = x.shape
    p = conv_out_size(h, ks[0], stride[0], padding[0], 1)
    q = conv_out_size(w, ks[1], stride[1], padding[1], 1)
    return x, (n, c, p, q), _pool_ints("x", n * c, h, w, p, q, ks, stride, padding)


def max_pool2d_forward(x, ks, stride, padding):
    x, (n, c, p, q), ints = _forward_args(x, ks, stride, padding)
    y = _alloc((n, c, p, q), _F32, "max_pool2d_forward output")
    am = _alloc((n, c, p, q), np.int32, "max_pool2d_forward argmax")
    _launch("pool.cu", "max_pool2d_forward_v1", _eltwise_grid(y.size), cfg.BLOCK, (x, y, am) + ints)
    return y, am


def max_pool2d_backward(dy, argmax, x_shape, ks, stride, padding):
    dy = _arg(dy, "dy")
    argmax = _arg(argmax, "argmax", np.int32)
    n, c, h, w = x_shape
    p, q = dy.shape[2], dy.shape[3]
    ints = _pool_ints("dy", n * c, h, w, p, q, ks, stride, padding)
    dx = _alloc((n, c, h, w), _F32, "max_pool2d_backward output")
    _launch("pool.cu", "max_pool2d_backward_v1", _eltwise_grid(dx.size), cfg.BLOCK, (dy, argmax, dx) + ints)
    return dx


def avg_pool2d_forward(x, ks, stride, padding, count_include_pad):
    x, (n, c, p, q), ints = _forward_args(x, ks, stride, padding)
    y = _alloc((n, c, p, q), _F32, "avg_pool2d_forward output")
    _launch("pool.cu", "avg_pool2d_forward_v1", _eltwise_grid(y.size), cfg.BLOCK,
            (x, y) + ints + (_i32(bool(count_include_pad)),))
    return y


def avg_pool2d_backward(dy, x_shape, ks, stride, padding, count_include_pad):
    dy = _arg(dy, "dy")
    n, c, h, w = x_shape
    p, q = dy.shape[2], dy.shape[3]
    ints = _pool_ints("dy", n * c, h, w, p, q, ks, stride, padding)
    dx = _alloc((n, c, h, w), _F32, "avg_pool2d_backward output")
    _launch("pool.cu", "avg_pool2d_backward_v1", _eltwise_grid(dx.size), cfg.BLOCK,
            (dy, dx) + ints + (_i32(bool(count_include_pad)),))
    return dx
