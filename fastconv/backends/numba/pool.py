"""Numba max/avg pooling kernels, launchers and backend functions.

Every kernel has one thread per position of a plane (an output for forward, an input for
backward) that walks the N*C planes: its window (or the windows covering it) is decoded once with
32-bit divisions, and the loop over planes only adds offsets (no division, 32-bit index math).
The 2x2 / stride 2 / no padding windows (LeNet's and most CNNs' pools) have kernels of their own
(``*_v2_2x2``): straight-line window code, and backward as one thread per OUTPUT writing its four
input pixels (the windows do not overlap), where the general gather form walks runtime-bounded
window loops per input pixel."""

from __future__ import annotations

import math

from numba import cuda, float32, int32

from ...argcheck import conv_out_size
from ..cuda import config as _cfg
from ..cuda.config import cdiv
from .driver import _F32, _I32, _check, _check_out, _empty, _in, launch
from .tiles import ELEMENTWISE_THREADS, _digits_split

# elements (of whole planes) one z-slice of a pooling grid covers: a 28x28 plane alone would
# leave 240 of its 1024 threads idle, 6 of them 160 of 4864
POOL_GROUP_ELEMENTS = 4096

# grid z of the pooling kernels: CUDA's limit (tests lower it to make the kernels walk planes)
POOL_MAX_Z = _cfg.MAX_GRID_YZ


@cuda.jit(device=True, inline="always")
def _plane_slot(per_plane, inner, group):
    """This thread's element of a pooling grid: blockIdx.z and x (blocks of ELEMENTWISE_THREADS)
    cover ``group`` planes of ``per_plane`` elements (rows of ``inner``). Returns (ok, plane, row,
    column, plane step): decoded once here with 32-bit divisions, then the kernel walks planes
    (plane += plane step) with no division."""
    t = int32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
    pl, row, col = _digits_split(t, per_plane, inner)
    return (t < int32(group * per_plane), int32(cuda.blockIdx.z * group + pl), int32(row), int32(col),
            int32(cuda.gridDim.z * group))


@cuda.jit(device=True, inline="always")
def _window_range(i, pad, k, stride, n_out):
    """Outputs o with o*stride - pad <= i <= o*stride - pad + k - 1, clipped to [0, n_out)."""
    hi = int32((i + pad) // stride)
    lo_num = int32(i + pad - k + 1)
    lo = int32(0)
    if lo_num > 0:
        lo = int32((lo_num + stride - 1) // stride)
    return lo, int32(min(hi + 1, n_out))


@cuda.jit(device=True, inline="always")
def _window_rows(o, stride, pad, k, n_in):
    """In-bounds input rows [lo, hi) of output row o's window."""
    h0 = int32(o * stride - pad)
    return int32(max(h0, 0)), int32(min(h0 + k, n_in))


def max_pool2d_forward_v1(y, argmax, x, planes, h_in, w_in, p_out, q_out, kh, kw, sh, sw, ph, pw, group):
    """y = max over the in-bounds part of each window; argmax = h*W + w of the first maximum
    in row-major window order (padding never wins; a NaN is the maximum, the first NaN wins).
    One thread per output position, walking the planes (see _plane_slot); 32-bit index math, the
    window decoded once per thread. Work: kh*kw compares per output, no FLOPs; traffic N*C*H*W*4
    bytes in (re-read per overlapping window, cache-served) + N*C*P*Q*(4 + 4) bytes out (y, argmax)."""
    ok, plane, p, q, step = _plane_slot(int32(p_out * q_out), q_out, group)
    h_lo, h_hi = _window_rows(p, sh, ph, kh, h_in)
    w_lo, w_hi = _window_rows(q, sw, pw, kw, w_in)
    hw = int32(h_in * w_in)
    pq = int32(p_out * q_out)
    first = int32(h_lo * w_in + w_lo)  # window corner in the plane
    x_off = int32(plane * hw)
    y_off = int32(plane * pq + p * q_out + q)
    while ok and plane < planes:
        best = float32(-math.inf)
        best_i = int32(-1)
        row = first
        for _ in range(h_hi - h_lo):
            i = row
            for _ in range(w_hi - w_lo):
                v = x[int32(x_off + i)]
                # the first maximum in scan order wins; a NaN beats everything (first NaN kept)
                if best_i < 0 or v > best or (v != v and best == best):
                    best = v
                    best_i = i
                i = int32(i + 1)
            row = int32(row + w_in)
        y[y_off] = best
        argmax[y_off] = best_i
        plane = int32(plane + step)
        x_off = int32(x_off + step * hw)
        y_off = int32(y_off + step * pq)


def max_pool2d_backward_v1(dx, dy, argmax, planes, h_in, w_in, p_out, q_out, kh, kw, sh, sw, ph, pw, group):
    """dx[h, w] = sum of dy over the windows covering (h, w) whose argmax is h*W + w.
    One thread per input position, walking the planes; the covering windows decoded once per
    thread. Work: one argmax compare per covering window and 1 FLOP per match; traffic
    N*C*P*Q*(4 + 4) bytes in (dy, argmax; re-read per overlap, cache-served) + N*C*H*W*4 bytes out."""
    ok, plane, hh, ww, step = _plane_slot(int32(h_in * w_in), w_in, group)
    p_lo, p_hi = _window_range(hh, ph, kh, sh, p_out)
    q_lo, q_hi = _window_range(ww, pw, kw, sw, q_out)
    idx = int32(hh * w_in + ww)
    hw = int32(h_in * w_in)
    pq = int32(p_out * q_out)
    first = int32(p_lo * q_out + q_lo)
    dx_off = int32(plane * hw + idx)
    dy_off = int32(plane * pq)
    while ok and plane < planes:
        v = float32(0.0)
        row = int32(dy_off + first)
        for _ in range(p_hi - p_lo):
            j = row
            for _ in range(q_hi - q_lo):
                if argmax[j] == idx:
                    v += dy[j]
                j = int32(j + 1)
            row = int32(row + q_out)
        dx[dx_off] = v
        plane = int32(plane + step)
        dx_off = int32(dx_off + step * hw)
        dy_off = int32(dy_off + step * pq)


@cuda.jit(device=True, inline="always")
def _avg_divisor(h_lo, h_hi, w_lo, w_hi, kh, kw, include_pad):
    """Size of the window whose in-bounds rows and columns are [h_lo, h_hi) x [w_lo, w_hi):
    kh*kw with padding counted (floor-mode windows never pass the padded edge), else the number
    of in-bounds elements."""
    if include_pad:
        return float32(int32(kh * kw))
    return float32(int32((h_hi - h_lo) * (w_hi - w_lo)))


def avg_pool2d_forward_v1(y, x, planes, h_in, w_in, p_out, q_out, kh, kw, sh, sw, ph, pw, group, include_pad):
    """y = mean over each window (divisor as _avg_divisor, computed once per thread). One thread
    per output position, walking the planes. Work: kh*kw adds + 1 divide per output (FLOPs);
    traffic N*C*H*W*4 bytes in (re-read per overlap, cache-served) + N*C*P*Q*4 bytes out."""
    ok, plane, p, q, step = _plane_slot(int32(p_out * q_out), q_out, group)
    h_lo, h_hi = _window_rows(p, sh, ph, kh, h_in)
    w_lo, w_hi = _window_rows(q, sw, pw, kw, w_in)
    d = _avg_divisor(h_lo, h_hi, w_lo, w_hi, kh, kw, include_pad)
    hw = int32(h_in * w_in)
    pq = int32(p_out * q_out)
    x_off = int32(plane * hw + h_lo * w_in + w_lo)
    y_off = int32(plane * pq + p * q_out + q)
    while ok and plane < planes:
        v = float32(0.0)
        row = x_off
        for _ in range(h_hi - h_lo):
            i = row
            for _ in range(w_hi - w_lo):
                v += x[i]
                i = int32(i + 1)
            row = int32(row + w_in)
        y[y_off] = v / d
        plane = int32(plane + step)
        x_off = int32(x_off + step * hw)
        y_off = int32(y_off + step * pq)


def avg_pool2d_backward_v1(dx, dy, planes, h_in, w_in, p_out, q_out, kh, kw, sh, sw, ph, pw, group, include_pad):
    """dx[h, w] = sum over the windows covering (h, w) of dy / window size.
    One thread per input position, walking the planes. Work: 1 divide + 1 add per covering
    window (FLOPs); traffic N*C*P*Q*4 bytes in (re-read per overlap, cache-served) + N*C*H*W*4
    bytes out."""
    ok, plane, hh, ww, step = _plane_slot(int32(h_in * w_in), w_in, group)
    p_lo, p_hi = _window_range(hh, ph, kh, sh, p_out)
    q_lo, q_hi = _window_range(ww, pw, kw, sw, q_out)
    hw = int32(h_in * w_in)
    pq = int32(p_out * q_out)
    dx_off = int32(plane * hw + hh * w_in + ww)
    dy_off = int32(plane * pq + p_lo * q_out + q_lo)
    while ok and plane < planes:
        v = float32(0.0)
        row = dy_off
        h0 = int32(p_lo * sh - ph)  # window rows h0 .. h0 + kh - 1, carried by the stride
        for _ in range(p_hi - p_lo):
            j = row
            w0 = int32(q_lo * sw - pw)
            for _ in range(q_hi - q_lo):
                d = _avg_divisor(max(h0, 0), min(int32(h0 + kh), h_in), max(w0, 0), min(int32(w0 + kw), w_in), kh, kw,
                                 include_pad)
                v += dy[j] / d
                j = int32(j + 1)
                w0 = int32(w0 + sw)
            row = int32(row + q_out)
            h0 = int32(h0 + sh)
        dx[dx_off] = v
        plane = int32(plane + step)
        dx_off = int32(dx_off + step * hw)
        dy_off = int32(dy_off + step * pq)


@cuda.jit(device=True, inline="always")
def _block_2x2(h_in, w_in, p_out, q_out, group):
    """This thread's output of a 2x2 / stride-2 pooling grid (see _plane_slot): (ok, plane, the
    output's index in its plane, its window's top-left index in the input plane, plane step,
    whether it writes the zero column right of its window (W odd, last output column), whether
    it writes the zero row below it (H odd, last output row)): the input pixels of no window."""
    ok, plane, p, q, step = _plane_slot(int32(p_out * q_out), q_out, group)
    return (ok, plane, int32(p * q_out + q), int32(2 * p * w_in + 2 * q), step,
            (w_in & 1) == 1 and q == q_out - 1, (h_in & 1) == 1 and p == p_out - 1)


@cuda.jit(device=True, inline="always")
def _write_2x2(dx, i, w_in, a, b, c, d, tail_col, tail_row):
    """dx[i], dx[i + 1], dx[i + W], dx[i + W + 1] = a, b, c, d, and the zeros of the uncovered
    tail column / row next to the window (see _block_2x2), so that dx is written exactly once."""
    r = int32(i + w_in)
    dx[i] = a
    dx[int32(i + 1)] = b
    dx[r] = c
    dx[int32(r + 1)] = d
    if tail_col:
        dx[int32(i + 2)] = float32(0.0)
        dx[int32(r + 2)] = float32(0.0)
    if tail_row:
        r2 = int32(r + w_in)
        dx[r2] = float32(0.0)
        dx[int32(r2 + 1)] = float32(0.0)
        if tail_col:
            dx[int32(r2 + 2)] = float32(0.0)


@cuda.jit(device=True, inline="always")
def _keep_max(best, k, v, t):
    """(best, k) after window element v at scan index t: v wins when greater, or when it is the
    first NaN (as max_pool2d_forward_v1 decides)."""
    if v > best or (v != v and best == best):
        return v, t
    return best, k


def max_pool2d_forward_v2_2x2(y, argmax, x, planes, h_in, w_in, p_out, q_out, group):
    """max_pool2d_forward_v1 for 2x2 windows, stride 2, no padding: the window (a b / c d) read
    as four loads, its first maximum in scan order kept (a NaN wins, the first NaN), as v1 does.
    Work: 3 compares per output; traffic N*C*P*Q*(16 + 8) bytes (x in; y, argmax out)."""
    ok, plane, o, top, step, _, _ = _block_2x2(h_in, w_in, p_out, q_out, group)
    hw, pq = int32(h_in * w_in), int32(p_out * q_out)
    x_off, y_off = int32(plane * hw + top), int32(plane * pq + o)
    while ok and plane < planes:
        r = int32(x_off + w_in)
        best, k = x[x_off], int32(top)
        best, k = _keep_max(best, k, x[int32(x_off + 1)], int32(top + 1))
        best, k = _keep_max(best, k, x[r], int32(top + w_in))
        best, k = _keep_max(best, k, x[int32(r + 1)], int32(top + w_in + 1))
        y[y_off] = best
        argmax[y_off] = k
        plane = int32(plane + step)
        x_off = int32(x_off + step * hw)
        y_off = int32(y_off + step * pq)


def max_pool2d_backward_v2_2x2(dx, dy, argmax, planes, h_in, w_in, p_out, q_out, group):
    """max_pool2d_backward_v1 for 2x2 windows, stride 2, no padding: one thread per output writes
    dy to its window's argmax pixel and 0 to the other three (and the uncovered tail, _write_2x2).
    Work: 4 compares per output; traffic N*C*P*Q*(4 + 4) bytes in + N*C*H*W*4 bytes out."""
    ok, plane, o, top, step, tail_col, tail_row = _block_2x2(h_in, w_in, p_out, q_out, group)
    hw, pq = int32(h_in * w_in), int32(p_out * q_out)
    x_off, y_off = int32(plane * hw + top), int32(plane * pq + o)
    zero = float32(0.0)
    while ok and plane < planes:
        g, a = dy[y_off], argmax[y_off]
        _write_2x2(dx, x_off, w_in, g if a == top else zero, g if a == top + 1 else zero,
                   g if a == top + w_in else zero, g if a == top + w_in + 1 else zero, tail_col, tail_row)
        plane = int32(plane + step)
        x_off = int32(x_off + step * hw)
        y_off = int32(y_off + step * pq)


def avg_pool2d_forward_v2_2x2(y, x, planes, h_in, w_in, p_out, q_out, group):
    """avg_pool2d_forward_v1 for 2x2 windows, stride 2, no padding (the divisor is 4 with or
    without count_include_pad): the window summed in v1's row-major order, then times 0.25 (as
    exact as v1's division by 4). Work: 4 FLOPs per output; traffic N*C*P*Q*(16 + 4) bytes."""
    ok, plane, o, top, step, _, _ = _block_2x2(h_in, w_in, p_out, q_out, group)
    hw, pq = int32(h_in * w_in), int32(p_out * q_out)
    x_off, y_off = int32(plane * hw + top), int32(plane * pq + o)
    while ok and plane < planes:
        r = int32(x_off + w_in)
        y[y_off] = (((x[x_off] + x[int32(x_off + 1)]) + x[r]) + x[int32(r + 1)]) * float32(0.25)
        plane = int32(plane + step)
        x_off = int32(x_off + step * hw)
        y_off = int32(y_off + step * pq)


def avg_pool2d_backward_v2_2x2(dx, dy, planes, h_in, w_in, p_out, q_out, group):
    """avg_pool2d_backward_v1 for 2x2 windows, stride 2, no padding: one thread per output writes
    dy / 4 to its four pixels (and the uncovered tail, _write_2x2). Work: 1 FLOP per output;
    traffic N*C*P*Q*4 bytes in + N*C*H*W*4 bytes out."""
    ok, plane, o, top, step, tail_col, tail_row = _block_2x2(h_in, w_in, p_out, q_out, group)
    hw, pq = int32(h_in * w_in), int32(p_out * q_out)
    x_off, y_off = int32(plane * hw + top), int32(plane * pq + o)
    while ok and plane < planes:
        g = dy[y_off] * float32(0.25)
        _write_2x2(dx, x_off, w_in, g, g, g, g, tail_col, tail_row)
        plane = int32(plane + step)
        x_off = int32(x_off + step * hw)
        y_off = int32(y_off + step * pq)


def _pool_geometry(x_shape, ks, stride, padding):
    n, c, h, w = x_shape
    p = conv_out_size(h, ks[0], stride[0], padding[0], 1)
    q = conv_out_size(w, ks[1], stride[1], padding[1], 1)
    return (n * c, h, w, p, q, ks[0], ks[1], stride[0], stride[1], padding[0], padding[1])


def _is_2x2(ks, stride, padding) -> bool:
    """Whether the pooling has 2x2 windows, stride 2 and no padding (the *_v2_2x2 kernels)."""
    return tuple(ks) == (2, 2) and tuple(stride) == (2, 2) and tuple(padding) == (0, 0)


def _launch_pool(op, x_side, pooled, ks, stride, padding, scalars, stream):
    """Check and launch the kernel of pooling op ``op`` (e.g. "max_pool2d_forward"): its 2x2 fast
    path where _is_2x2 (no ``scalars``: count_include_pad does not matter there), else the general
    v1. x_side: (array, argument name) of the input's shape (x forward, dx backward), pooled:
    ((array, argument name, dtype), ...) of the pooled shape in the kernel's order (a forward kernel
    takes the pooled arrays first, a backward one dx first). One thread per element of a plane
    (outputs for forward and for the 2x2 backward, inputs for the general backward); blockIdx.z
    walks groups of planes, each group at least POOL_GROUP_ELEMENTS long so that ragged plane ends
    idle few threads."""
    x = _check(*x_side)
    geo = _pool_geometry(x.shape, ks, stride, padding)
    shape = x.shape[:2] + geo[3:5]
    for a, what, dtype in pooled:
        _check_out(a, what, shape, dtype)
    fast = _is_2x2(ks, stride, padding)
    forward = op.endswith("_forward")
    per_plane = geo[3] * geo[4] if forward or fast else geo[1] * geo[2]
    outs = tuple(a for a, _, _ in pooled)
    arrays = outs + (x,) if forward else (x,) + outs
    planes = geo[0]
    group = max(1, min(planes, cdiv(POOL_GROUP_ELEMENTS, max(per_plane, 1))))
    name = f"{op}_v2_2x2" if fast else f"{op}_v1"
    grid = _cfg.check_grid(name, (max(1, cdiv(group * per_plane, ELEMENTWISE_THREADS)), 1,
                                  max(1, min(cdiv(planes, group), POOL_MAX_Z))))
    args = arrays + geo[:5] + (group,) if fast else arrays + geo + (group,) + scalars
    launch(name, grid, (ELEMENTWISE_THREADS, 1, 1), args, stream)


def launch_max_pool2d_forward(y, argmax, x, ks, stride, padding, stream=None):
    _launch_pool("max_pool2d_forward", (x, "x"), [(y, "y", _F32), (argmax, "argmax", _I32)], ks, stride,
                 padding, (), stream)
    return y, argmax


def launch_max_pool2d_backward(dx, dy, argmax, ks, stride, padding, stream=None):
    _launch_pool("max_pool2d_backward", (dx, "dx"), [(dy, "dy", _F32), (argmax, "argmax", _I32)], ks, stride,
                 padding, (), stream)
    return dx


def launch_avg_pool2d_forward(y, x, ks, stride, padding, count_include_pad, stream=None):
    _launch_pool("avg_pool2d_forward", (x, "x"), [(y, "y", _F32)], ks, stride, padding,
                 (int(bool(count_include_pad)),), stream)
    return y


def launch_avg_pool2d_backward(dx, dy, ks, stride, padding, count_include_pad, stream=None):
    _launch_pool("avg_pool2d_backward", (dx, "dx"), [(dy, "dy", _F32)], ks, stride, padding,
                 (int(bool(count_include_pad)),), stream)
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
