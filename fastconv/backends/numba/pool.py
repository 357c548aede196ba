"""Numba max/avg pooling kernels, launchers and backend functions."""

from __future__ import annotations

import math

from numba import cuda, float32

from ...argcheck import conv_out_size
from .driver import _I32, _blocks, _check, _check_out, _empty, _in, launch
from .tiles import ELEMENTWISE_THREADS


def max_pool2d_forward_v1(y, argmax, x, planes, h_in, w_in, p_out, q_out, kh, kw, sh, sw, ph, pw):
    """y = max over the in-bounds part of each window; argmax = h*W + w of the first maximum
    in row-major window order (padding never wins; a NaN is the maximum, the first NaN wins).
    One thread per output. Work: kh*kw compares per output, no FLOPs; traffic N*C*H*W*4 bytes in
    (re-read per overlapping window, cache-served) + N*C*P*Q*(4 + 4) bytes out (y, argmax)."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    total = planes * p_out * q_out
    for o in range(start, total, step):
        plane = o // (p_out * q_out)
        t = o - plane * (p_out * q_out)
        p = t // q_out
        q = t - p * q_out
        h0 = p * sh - ph
        w0 = q * sw - pw
        best = float32(-math.inf)
        best_i = -1
        for r in range(kh):
            hh = h0 + r
            if hh >= 0 and hh < h_in:
                for s in range(kw):
                    ww = w0 + s
                    if ww >= 0 and ww < w_in:
                        v = x[(plane * h_in + hh) * w_in + ww]
                        # the first maximum in scan order wins; a NaN beats everything (first NaN kept)
                        if best_i < 0 or v > best or (v != v and best == best):
                            best = v
                            best_i = hh * w_in + ww
        y[o] = best
        argmax[o] = best_i


@cuda.jit(device=True, inline="always")
def _window_range(i, pad, k, stride, n_out):
    """Outputs o with o*stride - pad <= i <= o*stride - pad + k - 1, clipped to [0, n_out)."""
    hi = (i + pad) // stride
    lo_num = i + pad - k + 1
    lo = 0
    if lo_num > 0:
        lo = (lo_num + stride - 1) // stride
    return lo, min(hi + 1, n_out)


def max_pool2d_backward_v1(dx, dy, argmax, planes, h_in, w_in, p_out, q_out, kh, kw, sh, sw, ph, pw):
    """dx[h, w] = sum of dy over the windows covering (h, w) whose argmax is h*W + w.
    Work: one argmax compare per covering window and 1 FLOP per match; traffic N*C*P*Q*(4 + 4)
    bytes in (dy, argmax; re-read per overlap, cache-served) + N*C*H*W*4 bytes out."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    hw = h_in * w_in
    total = planes * hw
    for o in range(start, total, step):
        plane = o // hw
        idx = o - plane * hw
        hh = idx // w_in
        ww = idx - hh * w_in
        p_lo, p_hi = _window_range(hh, ph, kh, sh, p_out)
        q_lo, q_hi = _window_range(ww, pw, kw, sw, q_out)
        v = float32(0.0)
        for p in range(p_lo, p_hi):
            for q in range(q_lo, q_hi):
                j = (plane * p_out + p) * q_out + q
                if argmax[j] == idx:
                    v += dy[j]
        dx[o] = v


@cuda.jit(device=True, inline="always")
def _avg_divisor(p, q, h_in, w_in, kh, kw, sh, sw, ph, pw, include_pad):
    """Window size: kh*kw with padding counted (floor-mode windows never pass the padded
    edge), else the number of in-bounds elements."""
    if include_pad:
        return float32(kh * kw)
    h0 = p * sh - ph
    w0 = q * sw - pw
    hc = min(h0 + kh, h_in) - max(h0, 0)
    wc = min(w0 + kw, w_in) - max(w0, 0)
    return float32(hc * wc)


def avg_pool2d_forward_v1(y, x, planes, h_in, w_in, p_out, q_out, kh, kw, sh, sw, ph, pw, include_pad):
    """y = mean over each window (divisor as _avg_divisor). Work: kh*kw adds + 1 divide per output
    (FLOPs); traffic N*C*H*W*4 bytes in (re-read per overlap, cache-served) + N*C*P*Q*4 bytes out."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    total = planes * p_out * q_out
    for o in range(start, total, step):
        plane = o // (p_out * q_out)
        t = o - plane * (p_out * q_out)
        p = t // q_out
        q = t - p * q_out
        h0 = p * sh - ph
        w0 = q * sw - pw
        v = float32(0.0)
        for hh in range(max(h0, 0), min(h0 + kh, h_in)):
            for ww in range(max(w0, 0), min(w0 + kw, w_in)):
                v += x[(plane * h_in + hh) * w_in + ww]
        y[o] = v / _avg_divisor(p, q, h_in, w_in, kh, kw, sh, sw, ph, pw, include_pad)


def avg_pool2d_backward_v1(dx, dy, planes, h_in, w_in, p_out, q_out, kh, kw, sh, sw, ph, pw, include_pad):
    """dx[h, w] = sum over the windows covering (h, w) of dy / window size.
    Work: 1 divide + 1 add per covering window (FLOPs); traffic N*C*P*Q*4 bytes in (re-read per
    overlap, cache-served) + N*C*H*W*4 bytes out."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    hw = h_in * w_in
    total = planes * hw
    for o in range(start, total, step):
        plane = o // hw
        idx = o - plane * hw
        hh = idx // w_in
        ww = idx - hh * w_in
        p_lo, p_hi = _window_range(hh, ph, kh, sh, p_out)
        q_lo, q_hi = _window_range(ww, pw, kw, sw, q_out)
        v = float32(0.0)
        for p in range(p_lo, p_hi):
            for q in range(q_lo, q_hi):
                d = _avg_divisor(p, q, h_in, w_in, kh, kw, sh, sw, ph, pw, include_pad)
                v += dy[(plane * p_out + p) * q_out + q] / d
        dx[o] = v


def _pool_geometry(x_shape, ks, stride, padding):
    n, c, h, w = x_shape
    p = conv_out_size(h, ks[0], stride[0], padding[0], 1)
    q = conv_out_size(w, ks[1], stride[1], padding[1], 1)
    return (n * c, h, w, p, q, ks[0], ks[1], stride[0], stride[1], padding[0], padding[1])


def launch_max_pool2d_forward(y, argmax, x, ks, stride, padding, stream=None):
    _check(x, "x")
    geo = _pool_geometry(x.shape, ks, stride, padding)
    shape = x.shape[:2] + geo[3:5]
    _check_out(y, "y", shape), _check_out(argmax, "argmax", shape, _I32)
    launch("max_pool2d_forward_v1", (_blocks(y.size, ELEMENTWISE_THREADS), 1, 1), (ELEMENTWISE_THREADS, 1, 1),
           (y, argmax, x) + geo, stream)
    return y, argmax


def launch_max_pool2d_backward(dx, dy, argmax, ks, stride, padding, stream=None):
    _check(dx, "dx")
    geo = _pool_geometry(dx.shape, ks, stride, padding)
    shape = dx.shape[:2] + geo[3:5]
    _check_out(dy, "dy", shape), _check_out(argmax, "argmax", shape, _I32)
    launch("max_pool2d_backward_v1", (_blocks(dx.size, ELEMENTWISE_THREADS), 1, 1),
           (ELEMENTWISE_THREADS, 1, 1), (dx, dy, argmax) + geo, stream)
    return dx


def launch_avg_pool2d_forward(y, x, ks, stride, padding, count_include_pad, stream=None):
    _check(x, "x")
    geo = _pool_geometry(x.shape, ks, stride, padding)
    _check_out(y, "y", x.shape[:2] + geo[3:5])
    launch("avg_pool2d_forward_v1", (_blocks(y.size, ELEMENTWISE_THREADS), 1, 1), (ELEMENTWISE_THREADS, 1, 1),
           (y, x) + geo + (int(bool(count_include_pad)),), stream)
    return y


def launch_avg_pool2d_backward(dx, dy, ks, stride, padding, count_include_pad, stream=None):
    _check(dx, "dx")
    geo = _pool_geometry(dx.shape, ks, stride, padding)
    _check_out(dy, "dy", dx.shape[:2] + geo[3:5])
    launch("avg_pool2d_backward_v1", (_blocks(dx.size, ELEMENTWISE_THREADS), 1, 1),
           (ELEMENTWISE_THREADS, 1, 1), (dx, dy) + geo + (int(bool(count_include_pad)),), stream)
    return dx


def max_pool2d_forward(x, ks, stride, padding):
    x = _in(x, "x")
    shape = x.shape[:2] + _pool_geometry(x.shape, ks, stride, padding)[3:5]
    return launch_max_pool2d_forward(_empty(shape, x, what="max_pool2d_forward output"),
                                     _empty(shape, x, _I32, "max_pool2d_forward argmax"), x, ks, stride, padding)


def max_pool2d_backward(dy, argmax, x_shape, ks, stride, padding):
    dy, argmax = _in(dy, "dy"), _in(argmax, "argmax", _I32)
    dx = _empty(tuple(x_shape), dy, what="max_pool2d_backward output")
    return launch_max_pool2d_backward(dx, dy, argmax, ks, stride, padding)


def avg_pool2d_forward(x, ks, stride, padding, count_include_pad):
    x = _in(x, "x")
    shape = x.shape[:2] + _pool_geometry(x.shape, ks, stride, padding)[3:5]
    return launch_avg_pool2d_forward(_empty(shape, x, what="avg_pool2d_forward output"), x, ks, stride, padding,
                                     count_include_pad)


def avg_pool2d_backward(dy, x_shape, ks, stride, padding, count_include_pad):
    dy = _in(dy, "dy")
    dx = _empty(tuple(x_shape), dy, what="avg_pool2d_backward output")
    return launch_avg_pool2d_backward(dx, dy, ks, stride, padding, count_include_pad)
