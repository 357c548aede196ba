"""Launchers of kernels/conv.cu: conv2d forward, backward data, backward weight (split-K), bias."""

from __future__ import annotations

import numpy as np

from ... import settings
from ...argcheck import conv_out_size
from . import config as cfg
from .launch import _F32, _alloc, _arg, _conv_tile, _eltwise_grid, _i32, _i32s, _launch, num_sms


_CONV_LABELS = "N C H W K R S P Q stride_h stride_w pad_h pad_w dilation_h dilation_w groups"


def _conv_ints(name, n, c, h, w, k, r, s, p, q, stride, padding, dilation, groups):
    return _i32s(name, _CONV_LABELS, (n, c, h, w, k, r, s, p, q, stride[0], stride[1], padding[0], padding[1],
                                      dilation[0], dilation[1], groups))


def _conv_shape_checks(name, n, c, h, w, k, r, s, p, q, groups):
    cfg.check_int32(name, n * p * q, "N*P*Q")
    cfg.check_int32(name, n * h * w, "N*H*W")
    cfg.check_int32(name, (c // groups) * r * s, "C/groups*R*S")
    cfg.check_int32(name, (k // groups) * r * s, "K/groups*R*S")


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    x = _arg(x, "x")
    w = _arg(w, "w")
    b = None if b is None else _arg(b, "b")
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    p = conv_out_size(h, r, stride[0], padding[0], dilation[0])
    q = conv_out_size(wd, s, stride[1], padding[1], dilation[1])
    _conv_shape_checks("x", n, c, h, wd, k, r, s, p, q, groups)
    y = _alloc((n, k, p, q), _F32, "conv2d_forward output")
    ints = _conv_ints("x", n, c, h, wd, k, r, s, p, q, stride, padding, dilation, groups)
    args = (x, w, w if b is None else b, y) + ints + (_i32(b is not None),)
    if settings.current().conv_version == 1:
        _launch("conv.cu", "conv2d_forward_v1", _eltwise_grid(y.size), cfg.BLOCK, args)
        return y
    m, cols = k // groups, n * p * q
    tile = _conv_tile(m, cols)
    _launch("conv.cu", f"conv2d_forward_v2_{tile}", cfg.conv_grid(m, cols, tile, groups), cfg.CONV_THREADS, args)
    return y


def conv2d_backward_data(dy, w, x_shape, stride, padding, dilation, groups):
    dy = _arg(dy, "dy")
    w = _arg(w, "w")
    n, c, h, wd = x_shape
    k, cg, r, s = w.shape
    p, q = dy.shape[2], dy.shape[3]
    _conv_shape_checks("dy", n, c, h, wd, k, r, s, p, q, groups)
    dx = _alloc((n, c, h, wd), _F32, "conv2d_backward_data output")
    args = (dy, w, dx) + _conv_ints("dy", n, c, h, wd, k, r, s, p, q, stride, padding, dilation, groups)
    if settings.current().conv_version == 1:
        _launch("conv.cu", "conv2d_backward_data_v1", _eltwise_grid(dx.size), cfg.BLOCK, args)
        return dx
    m, cols = c // groups, n * h * wd
    tile = _conv_tile(m, cols)
    _launch("conv.cu", f"conv2d_backward_data_v2_{tile}", cfg.conv_grid(m, cols, tile, groups),
            cfg.CONV_THREADS, args)
    return dx


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups):
    dy = _arg(dy, "dy")
    x = _arg(x, "x")
    n, c, h, wd = x.shape
    k, cg, r, s = w_shape
    p, q = dy.shape[2], dy.shape[3]
    _conv_shape_checks("dy", n, c, h, wd, k, r, s, p, q, groups)
    dw = _alloc((k, cg, r, s), _F32, "conv2d_backward_weight output")
    ints = _conv_ints("dy", n, c, h, wd, k, r, s, p, q, stride, padding, dilation, groups)
    if settings.current().conv_version == 1:
        _launch("conv.cu", "conv2d_backward_weight_v1", _eltwise_grid(dw.size), cfg.BLOCK, (dy, x, dw) + ints)
        return dw
    m, cols, red = k // groups, cg * r * s, n * p * q
    tile = _conv_tile(m, cols)
    splits, chunk = cfg.wgrad_splits(m, cols, red, tile, groups, num_sms())
    grid = cfg.conv_grid(m, cols, tile, groups * splits)
    name = f"conv2d_backward_weight_v2_{tile}"
    if splits == 1:
        _launch("conv.cu", name, grid, cfg.CONV_THREADS, (dy, x, dw) + ints + (_i32(1), _i32(chunk)))
        return dw
    ws = _alloc((splits, dw.size), _F32, "conv2d_backward_weight split-K workspace")
    _launch("conv.cu", name, grid, cfg.CONV_THREADS, (dy, x, ws) + ints + (_i32(splits), _i32(chunk)))
    _launch("conv.cu", "conv2d_wgrad_reduce_v1", _eltwise_grid(dw.size), cfg.BLOCK,
            (ws, dw, np.int64(dw.size), _i32(splits)))
    return dw


def conv2d_backward_bias(dy):
    dy = _arg(dy, "dy")
    n, k, p, q = dy.shape
    db = _alloc((k,), _F32, "conv2d_backward_bias output")
    _launch("conv.cu", "conv2d_backward_bias_v1", (k,), cfg.BLOCK, (dy, db) + _i32s("dy", "N K P*Q", (n, k, p * q)))
    return db
