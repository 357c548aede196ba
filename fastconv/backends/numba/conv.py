"""Numba conv launchers and backend functions (the implicit-GEMM kernels are in conv_kernels.py),
the split-K sum and the bias-gradient kernels."""

from __future__ import annotations

from numba import cuda, float32, int32

from .driver import _blocks, _check, _check_out, _empty, _in, launch
from .tiles import (BK, ELEMENTWISE_THREADS, GEMM_BLOCK, REDUCE_THREADS, _conv_geometry, _gemm_grid,
                    backward_weight_splits, bwd_phases, conv_tile)


def sum_splits_v1(out, parts, n, splits):
    """out[i] = sum_s parts[s*n + i], summed in split order (deterministic).
    Work: splits*n FLOPs (adds); traffic (splits + 1)*n*4 bytes."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, n, step):
        v = float32(0.0)
        for s in range(splits):
            v += parts[s * n + i]
        out[i] = v


def conv2d_backward_bias_v1(db, dy, n_img, k_out, pq):
    """db[k] = sum_{n, p, q} dy[n, k, p, q]. Grid (K,), block (REDUCE_THREADS,).
    Work: N*K*P*Q FLOPs (adds); traffic N*K*P*Q*4 bytes in, K*4 bytes out."""
    part = cuda.shared.array(REDUCE_THREADS, float32)
    k = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    total = n_img * pq
    v = float32(0.0)
    for i in range(tid, total, REDUCE_THREADS):
        n = i // pq
        v += dy[(n * k_out + k) * pq + i - n * pq]
    part[tid] = v
    cuda.syncthreads()
    width = REDUCE_THREADS // 2
    while width > 0:
        if tid < width:
            part[tid] += part[tid + width]
        cuda.syncthreads()
        width //= 2
    if tid == 0:
        db[k] = part[0]


def launch_conv2d_forward(y, x, w, b, stride, padding, dilation, groups, stream=None, tile=None):
    """y = conv2d(x, w) (+ b); ``tile``: a tiles.Tile, default tiles.conv_tile's choice."""
    _check(x, "x"), _check(w, "w")
    geo = _conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    n, _, _, _, k, _, _, p, q = geo[:9]
    _check_out(y, "y", (n, k, p, q))
    if b is not None:
        _check_out(b, "b", (k,))
    tile = tile or conv_tile(k // groups, n * p * q, groups)
    grid = _gemm_grid("conv2d_forward", n * p * q, k // groups, groups, tile)
    launch(f"conv2d_forward{tile.suffix}_v1", grid, GEMM_BLOCK, (y, x, w, w if b is None else b, int(b is not None)) + geo,
           stream)
    return y


def launch_conv2d_backward_data(dx, dy, w, stride, padding, dilation, groups, stream=None, tile=None):
    """dx from dy and w, one launch per stride phase; ``tile`` as for launch_conv2d_forward."""
    _check(dy, "dy"), _check(w, "w")
    geo = _conv_geometry(dx.shape, w.shape, stride, padding, dilation, groups)
    n, c, h, wd, k, r, s, p, q = geo[:9]
    _check_out(dx, "dx", dx.shape)
    _check_out(dy, "dy", (n, k, p, q))
    phases = bwd_phases(h, wd, r, s, stride, padding, dilation)
    tile = tile or conv_tile(c // groups, n * phases[0][1] * phases[0][8], groups * len(phases))
    for phase in phases:
        grid = _gemm_grid("conv2d_backward_data", n * phase[1] * phase[8], c // groups, groups, tile)
        launch(f"conv2d_backward_data{tile.suffix}_v1", grid, GEMM_BLOCK, (dx, dy, w) + geo + phase, stream)
    return dx


def launch_conv2d_backward_weight(dw, dy, x, stride, padding, dilation, groups, splits=None, workspace=None,
                                  stream=None, tile=None):
    """dw from dy and x. The reduction is cut into ``splits`` slices (default: see
    backward_weight_splits) whose partial sums go to ``workspace`` (splits*|dw| floats, allocated
    when None) and are then added in a fixed order, so the result is deterministic. ``tile`` as for
    launch_conv2d_forward."""
    _check(dy, "dy"), _check(x, "x")
    geo = _conv_geometry(x.shape, dw.shape, stride, padding, dilation, groups)
    n, _, _, _, k, r, s, p, q = geo[:9]
    _check_out(dw, "dw", dw.shape)
    _check_out(dy, "dy", (n, k, p, q))
    kred = n * p * q
    cg = dw.shape[1]
    tile = tile or conv_tile(k // groups, cg * r * s, groups)
    if splits is None:
        splits = backward_weight_splits(dy.shape, dw.shape, groups, tile=tile)
    if not (isinstance(splits, int) and splits >= 1):
        raise ValueError(f"splits: got {splits!r}, expected a positive int")
    chunk = -(-kred // splits)
    chunk = -(-chunk // BK) * BK
    splits = -(-kred // chunk)
    grid = _gemm_grid("conv2d_backward_weight", cg * r * s, k // groups, groups * splits, tile)
    out = dw
    if splits > 1:
        if workspace is None:
            workspace = _empty((splits * dw.size,), dw, what="conv2d_backward_weight split workspace")
        _check_out(workspace, "workspace", (splits * dw.size,))
        out = workspace
    launch(f"conv2d_backward_weight{tile.suffix}_v1", grid, GEMM_BLOCK, (out, dy, x) + geo + (splits, chunk), stream)
    if splits > 1:
        launch("sum_splits_v1", (_blocks(dw.size, ELEMENTWISE_THREADS), 1, 1), (ELEMENTWISE_THREADS, 1, 1),
               (dw, workspace, dw.size, splits), stream)
    return dw


def launch_conv2d_backward_bias(db, dy, stream=None):
    _check(dy, "dy")
    n, k, p, q = dy.shape
    _check_out(db, "db", (k,))
    launch("conv2d_backward_bias_v1", (k, 1, 1), (REDUCE_THREADS, 1, 1), (db, dy, n, k, p * q), stream)
    return db


# backend functions (signatures of notes/INTERFACES.md): check inputs as the cupy family does,
# allocate (NaN-poisoned under the poison setting), then launch on the current stream


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    x, w = _in(x, "x"), _in(w, "w")
    b = None if b is None else _in(b, "b")
    geo = _conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    y = _empty((geo[0], geo[4], geo[7], geo[8]), x, what="conv2d_forward output")
    return launch_conv2d_forward(y, x, w, b, stride, padding, dilation, groups)


def conv2d_backward_data(dy, w, x_shape, stride, padding, dilation, groups):
    dy, w = _in(dy, "dy"), _in(w, "w")
    dx = _empty(tuple(x_shape), dy, what="conv2d_backward_data output")
    return launch_conv2d_backward_data(dx, dy, w, stride, padding, dilation, groups)


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups):
    dy, x = _in(dy, "dy"), _in(x, "x")
    dw = _empty(tuple(w_shape), dy, what="conv2d_backward_weight output")
    return launch_conv2d_backward_weight(dw, dy, x, stride, padding, dilation, groups)


def conv2d_backward_bias(dy):
    dy = _in(dy, "dy")
    return launch_conv2d_backward_bias(_empty((dy.shape[1],), dy, what="conv2d_backward_bias output"), dy)
