"""Numba conv kernels (implicit GEMM; see the package docstring), launchers and backend functions."""

from __future__ import annotations

from numba import cuda, float32

from ...argcheck import conv_out_size
from ..cuda import config as _cfg
from .driver import _blocks, _check, _check_out, _empty, _in, launch
from .tiles import (AS_W, BK, BM, BN, BS_W, ELEMENTWISE_THREADS, GEMM_BLOCK, LOADS, REDUCE_THREADS, THREADS, TM,
                    TN, TX, TY, _gemm_grid, _tile_fma)


def conv2d_forward_v1(y, x, w, b, has_bias, n_img, c_in, h_in, w_in, k_out, r_k, s_k, p_out, q_out,
                      sh, sw, ph, pw, dh, dw, groups):
    """y[n, g*Kg + m, p, q] = sum_{c,r,s} w[g*Kg + m, c, r, s] * x[n, g*Cg + c, h(p, r), w(q, s)] (+ b).

    GEMM per group g: rows m < Kg, columns (n, p, q) < N*P*Q, reduction (c, r, s) < Cg*R*S.
    Grid (ceil(N*P*Q / BN), ceil(Kg / BM), G), block (TX, TY).
    Work: 2*N*K*P*Q*Cg*R*S FLOPs; compulsory traffic (x + w + y) * 4 bytes, x re-read once per
    BM row tile (mostly from L2).
    """
    As = cuda.shared.array((BK, AS_W), float32)
    Bs = cuda.shared.array((BK, BS_W), float32)
    acc = cuda.local.array((TM, TN), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * TX + tx
    g = cuda.blockIdx.z
    kg = k_out // groups
    cg = c_in // groups
    rs = r_k * s_k
    kred = cg * rs
    pq = p_out * q_out
    ncols = n_img * pq
    m0 = cuda.blockIdx.y * BM
    n0 = cuda.blockIdx.x * BN
    for i in range(TM):
        for j in range(TN):
            acc[i, j] = 0.0
    # the column this thread loads is fixed: decode (n, p, q) once
    b_col = tid % BN
    b_kk = tid // BN
    col = n0 + b_col
    col_ok = col < ncols
    bn = col // pq
    bpq = col - bn * pq
    bp = bpq // q_out
    bq = bpq - bp * q_out
    x_img = (bn * c_in + g * cg) * h_in * w_in
    h_base = bp * sh - ph
    w_base = bq * sw - pw
    a_kk = tid % BK
    a_m = tid // BK
    for k0 in range(0, kred, BK):
        for l in range(LOADS):
            # A: weights, contiguous along the reduction
            m = a_m + l * (THREADS // BK)
            kr = k0 + a_kk
            v = float32(0.0)
            if m0 + m < kg and kr < kred:
                v = w[(g * kg + m0 + m) * kred + kr]
            As[a_kk, m] = v
            # B: im2col gather of x
            kk = b_kk + l * (THREADS // BN)
            kr = k0 + kk
            v = float32(0.0)
            if col_ok and kr < kred:
                c = kr // rs
                t = kr - c * rs
                r = t // s_k
                s = t - r * s_k
                hh = h_base + r * dh
                ww = w_base + s * dw
                if hh >= 0 and hh < h_in and ww >= 0 and ww < w_in:
                    v = x[x_img + (c * h_in + hh) * w_in + ww]
            Bs[kk, b_col] = v
        cuda.syncthreads()
        _tile_fma(As, Bs, acc, ty, tx)
        cuda.syncthreads()
    for j in range(TN):
        col = n0 + tx + TX * j
        if col < ncols:
            n = col // pq
            t = col - n * pq
            for i in range(TM):
                m = m0 + ty + TY * i
                if m < kg:
                    k = g * kg + m
                    v = acc[i, j]
                    if has_bias:
                        v += b[k]
                    y[(n * k_out + k) * pq + t] = v


def conv2d_backward_data_v1(dx, dy, w, n_img, c_in, h_in, w_in, k_out, r_k, s_k, p_out, q_out,
                            sh, sw, ph, pw, dh, dw, groups):
    """dx[n, g*Cg + m, h, w] = sum_{k,r,s} w[g*Kg + k, m, r, s] * dy[n, g*Kg + k, p, q]
    over the (r, s) with h = p*sh - ph + r*dh and w = q*sw - pw + s*dw for integer p < P, q < Q.

    GEMM per group g: rows m < Cg, columns (n, h, w) < N*H*W, reduction (k, r, s) < Kg*R*S,
    written as a gather so every dx element is written once by one thread (no atomics).
    Grid (ceil(N*H*W / BN), ceil(Cg / BM), G), block (TX, TY).
    Work: 2*N*C*H*W*Kg*R*S FLOPs issued (a fraction 1/(sh*sw) on non-zero operands); compulsory
    traffic (dy + w + dx) * 4 bytes.
    """
    As = cuda.shared.array((BK, AS_W), float32)
    Bs = cuda.shared.array((BK, BS_W), float32)
    acc = cuda.local.array((TM, TN), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * TX + tx
    g = cuda.blockIdx.z
    kg = k_out // groups
    cg = c_in // groups
    rs = r_k * s_k
    kred = kg * rs
    hw = h_in * w_in
    pq = p_out * q_out
    ncols = n_img * hw
    m0 = cuda.blockIdx.y * BM
    n0 = cuda.blockIdx.x * BN
    for i in range(TM):
        for j in range(TN):
            acc[i, j] = 0.0
    b_col = tid % BN
    b_kk = tid // BN
    col = n0 + b_col
    col_ok = col < ncols
    bn = col // hw
    bhw = col - bn * hw
    bh = bhw // w_in
    bw = bhw - bh * w_in
    dy_img = (bn * k_out + g * kg) * pq
    a_kk = tid % BK
    a_m = tid // BK
    for k0 in range(0, kred, BK):
        for l in range(LOADS):
            # A: w[g*Kg + k, m, r, s] with reduction index (k, r, s)
            m = a_m + l * (THREADS // BK)
            kr = k0 + a_kk
            v = float32(0.0)
            if m0 + m < cg and kr < kred:
                k = kr // rs
                t = kr - k * rs
                v = w[((g * kg + k) * cg + m0 + m) * rs + t]
            As[a_kk, m] = v
            # B: dy at the output position whose window tap (r, s) lands on (h, w), if any
            kk = b_kk + l * (THREADS // BN)
            kr = k0 + kk
            v = float32(0.0)
            if col_ok and kr < kred:
                k = kr // rs
                t = kr - k * rs
                r = t // s_k
                s = t - r * s_k
                hp = bh + ph - r * dh
                wq = bw + pw - s * dw
                if hp >= 0 and wq >= 0:
                    p = hp // sh
                    q = wq // sw
                    if p * sh == hp and q * sw == wq and p < p_out and q < q_out:
                        v = dy[dy_img + k * pq + p * q_out + q]
            Bs[kk, b_col] = v
        cuda.syncthreads()
        _tile_fma(As, Bs, acc, ty, tx)
        cuda.syncthreads()
    for j in range(TN):
        col = n0 + tx + TX * j
        if col < ncols:
            n = col // hw
            t = col - n * hw
            for i in range(TM):
                m = m0 + ty + TY * i
                if m < cg:
                    dx[(n * c_in + g * cg + m) * hw + t] = acc[i, j]


def conv2d_backward_weight_v1(out, dy, x, n_img, c_in, h_in, w_in, k_out, r_k, s_k, p_out, q_out,
                              sh, sw, ph, pw, dh, dw, groups, splits, chunk):
    """Partial dw over one slice of the reduction:
    out[split, g*Kg + m, (c, r, s)] = sum_{(n,p,q) in slice} dy[n, g*Kg + m, p, q] * x[n, g*Cg + c, h, w].

    GEMM per group g: rows m < Kg, columns (c, r, s) < Cg*R*S, reduction (n, p, q) < N*P*Q cut
    into ``splits`` slices of ``chunk`` (a multiple of BK). With splits == 1, out is dw itself.
    Grid (ceil(Cg*R*S / BN), ceil(Kg / BM), G*splits), block (TX, TY).
    Work: 2*K*Cg*R*S*N*P*Q FLOPs; compulsory traffic (dy + x) * 4 bytes + splits*K*Cg*R*S*4 bytes
    of partial sums written.
    """
    As = cuda.shared.array((BK, AS_W), float32)
    Bs = cuda.shared.array((BK, BS_W), float32)
    acc = cuda.local.array((TM, TN), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * TX + tx
    g = cuda.blockIdx.z // splits
    split = cuda.blockIdx.z - g * splits
    kg = k_out // groups
    cg = c_in // groups
    rs = r_k * s_k
    ncols = cg * rs
    pq = p_out * q_out
    kred = n_img * pq
    k_begin = split * chunk
    k_end = min(kred, k_begin + chunk)
    m0 = cuda.blockIdx.y * BM
    n0 = cuda.blockIdx.x * BN
    for i in range(TM):
        for j in range(TN):
            acc[i, j] = 0.0
    # both operands are contiguous along the reduction: every thread loads reduction index kk
    # of rows a_m (+32) of A and of columns a_m (+32) of B, decoding (n, p, q) once per slice
    a_kk = tid % BK
    a_m = tid // BK
    for k0 in range(k_begin, k_end, BK):
        kr = k0 + a_kk
        kr_ok = kr < k_end
        n = kr // pq
        t = kr - n * pq
        p = t // q_out
        q = t - p * q_out
        for l in range(LOADS):
            m = a_m + l * (THREADS // BK)
            v = float32(0.0)
            if m0 + m < kg and kr_ok:
                v = dy[(n * k_out + g * kg + m0 + m) * pq + t]
            As[a_kk, m] = v
            col = n0 + m
            v = float32(0.0)
            if col < ncols and kr_ok:
                c = col // rs
                u = col - c * rs
                r = u // s_k
                s = u - r * s_k
                hh = p * sh - ph + r * dh
                ww = q * sw - pw + s * dw
                if hh >= 0 and hh < h_in and ww >= 0 and ww < w_in:
                    v = x[((n * c_in + g * cg + c) * h_in + hh) * w_in + ww]
            Bs[a_kk, m] = v
        cuda.syncthreads()
        _tile_fma(As, Bs, acc, ty, tx)
        cuda.syncthreads()
    base = split * k_out * ncols
    for i in range(TM):
        m = m0 + ty + TY * i
        if m < kg:
            for j in range(TN):
                col = n0 + tx + TX * j
                if col < ncols:
                    out[base + (g * kg + m) * ncols + col] = acc[i, j]


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


def _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    n, c, h, w = x_shape
    k, _, r, s = w_shape
    p = conv_out_size(h, r, stride[0], padding[0], dilation[0])
    q = conv_out_size(w, s, stride[1], padding[1], dilation[1])
    return (n, c, h, w, k, r, s, p, q, stride[0], stride[1], padding[0], padding[1],
            dilation[0], dilation[1], groups)


def launch_conv2d_forward(y, x, w, b, stride, padding, dilation, groups, stream=None):
    _check(x, "x"), _check(w, "w")
    geo = _conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    n, _, _, _, k, _, _, p, q = geo[:9]
    _check_out(y, "y", (n, k, p, q))
    if b is not None:
        _check_out(b, "b", (k,))
    grid = _gemm_grid("conv2d_forward", n * p * q, k // groups, groups)
    launch("conv2d_forward_v1", grid, GEMM_BLOCK, (y, x, w, w if b is None else b, int(b is not None)) + geo,
           stream)
    return y


def launch_conv2d_backward_data(dx, dy, w, stride, padding, dilation, groups, stream=None):
    _check(dy, "dy"), _check(w, "w")
    geo = _conv_geometry(dx.shape, w.shape, stride, padding, dilation, groups)
    n, c, h, wd, k, _, _, p, q = geo[:9]
    _check_out(dx, "dx", dx.shape)
    _check_out(dy, "dy", (n, k, p, q))
    grid = _gemm_grid("conv2d_backward_data", n * h * wd, c // groups, groups)
    launch("conv2d_backward_data_v1", grid, GEMM_BLOCK, (dx, dy, w) + geo, stream)
    return dx


def backward_weight_splits(dy_shape, w_shape, groups, target_blocks: int = 264) -> int:
    """How many slices the N*P*Q reduction of the weight gradient is cut into: enough blocks to
    fill the card (about 2 per SM of an H100/H200), each slice at least 8 BK-steps long, and
    groups*splits within the 65535 blocks grid z allows."""
    n, k, p, q = dy_shape
    _, cg, r, s = w_shape
    base = ((cg * r * s + BN - 1) // BN) * ((k // groups + BM - 1) // BM) * groups
    kred = n * p * q
    return max(1, min((target_blocks + base - 1) // base, kred // (8 * BK), _cfg.MAX_GRID_YZ // groups))


def launch_conv2d_backward_weight(dw, dy, x, stride, padding, dilation, groups, splits=None, workspace=None,
                                  stream=None):
    """dw from dy and x. The reduction is cut into ``splits`` slices (default: see
    backward_weight_splits) whose partial sums go to ``workspace`` (splits*|dw| floats, allocated
    when None) and are then added in a fixed order, so the result is deterministic."""
    _check(dy, "dy"), _check(x, "x")
    geo = _conv_geometry(x.shape, dw.shape, stride, padding, dilation, groups)
    n, _, _, _, k, r, s, p, q = geo[:9]
    _check_out(dw, "dw", dw.shape)
    _check_out(dy, "dy", (n, k, p, q))
    kred = n * p * q
    if splits is None:
        splits = backward_weight_splits(dy.shape, dw.shape, groups)
    if not (isinstance(splits, int) and splits >= 1):
        raise ValueError(f"splits: got {splits!r}, expected a positive int")
    chunk = -(-kred // splits)
    chunk = -(-chunk // BK) * BK
    splits = -(-kred // chunk)
    cg = dw.shape[1]
    grid = _gemm_grid("conv2d_backward_weight", cg * r * s, k // groups, groups * splits)
    out = dw
    if splits > 1:
        if workspace is None:
            workspace = _empty((splits * dw.size,), dw, what="conv2d_backward_weight split workspace")
        _check_out(workspace, "workspace", (splits * dw.size,))
        out = workspace
    launch("conv2d_backward_weight_v1", grid, GEMM_BLOCK, (out, dy, x) + geo + (splits, chunk), stream)
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
