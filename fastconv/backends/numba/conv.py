"""Numba conv kernels (implicit GEMM; see the package docstring), launchers and backend functions."""

from __future__ import annotations

from numba import cuda, float32, int32

from .driver import _blocks, _check, _check_out, _empty, _in, launch
from .tiles import (AS_SIZE, AS_W, BK, BS_SIZE, BM, BN, BS_W, DIGITS, ELEMENTWISE_THREADS, GEMM_BLOCK, LOADS, REDUCE_THREADS, THREADS, TM,
                    TN, TX, TY, _digits_advance, bwd_phases, _digits_init, _digits_step, _gemm_grid, _tile_fma,
                    _conv_geometry, backward_weight_splits)


def conv2d_forward_v1(y, x, w, b, has_bias, n_img, c_in, h_in, w_in, k_out, r_k, s_k, p_out, q_out,
                      sh, sw, ph, pw, dh, dw, groups):
    """y[n, g*Kg + m, p, q] = sum_{c,r,s} w[g*Kg + m, c, r, s] * x[n, g*Cg + c, h(p, r), w(q, s)] (+ b).

    GEMM per group g: rows m < Kg, columns (n, p, q) < N*P*Q, reduction (c, r, s) < Cg*R*S.
    Grid (ceil(N*P*Q / BN), ceil(Kg / BM), G), block (TX, TY).
    Work: 2*N*K*P*Q*Cg*R*S FLOPs; compulsory traffic (x + w + y) * 4 bytes, x re-read once per
    BM row tile (mostly from L2).
    """
    As = cuda.shared.array(AS_SIZE, float32)
    Bs = cuda.shared.array(BS_SIZE, float32)
    acc = cuda.local.array((TM, TN), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * TX + tx
    g = cuda.blockIdx.z
    kg = int32(k_out // groups)
    cg = int32(c_in // groups)
    rs = int32(r_k * s_k)
    kred = int32(cg * rs)
    pq = int32(p_out * q_out)
    ncols = int32(n_img * pq)
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
    x_img = int32((bn * c_in + g * cg) * h_in * w_in)
    h_base = int32(bp * sh - ph)
    w_base = int32(bq * sw - pw)
    a_kk = tid % BK
    a_m = tid // BK
    # each B load's reduction index walks by BK: its (c, r, s) digits are carried, not divided
    bc = cuda.local.array(LOADS, int32)
    br = cuda.local.array(LOADS, int32)
    bs = cuda.local.array(LOADS, int32)
    for l in range(LOADS):
        _digits_init(b_kk + l * (THREADS // BN), rs, s_k, bc, br, bs, l)
    dc, dr, ds = _digits_step(rs, s_k)
    w_row = int32((g * kg + m0 + a_m) * kred + a_kk)
    k0 = int32(0)
    while k0 < kred:
        for l in range(LOADS):
            # A: weights, contiguous along the reduction
            m = a_m + l * (THREADS // BK)
            v = float32(0.0)
            if m0 + m < kg and int32(k0 + a_kk) < kred:
                v = w[int32(w_row + l * (THREADS // BK) * kred + k0)]
            As[a_kk * AS_W + m] = v
            # B: im2col gather of x
            kk = b_kk + l * (THREADS // BN)
            v = float32(0.0)
            if col_ok and int32(k0 + kk) < kred:
                hh = int32(h_base + br[l] * dh)
                ww = int32(w_base + bs[l] * dw)
                if hh >= 0 and hh < h_in and ww >= 0 and ww < w_in:
                    v = x[int32(x_img + (bc[l] * h_in + hh) * w_in + ww)]
            Bs[kk * BS_W + b_col] = v
            _digits_advance(bc, br, bs, l, dc, dr, ds, r_k, s_k)
        cuda.syncthreads()
        _tile_fma(As, Bs, acc, ty, tx)
        cuda.syncthreads()
        k0 = int32(k0 + BK)
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
                            sh, sw, ph, pw, dh, dw, groups,
                            h0, ht, r0, rstep, ri, pbase, pstep, w0, wt, s0, sstep, sj, qbase, qstep):
    """One stride phase of dx (see tiles.bwd_phases): for h = h0 + th*sh (th < Ht), w = w0 + tw*sw (tw < Wt)
    dx[n, g*Cg + m, h, w] = sum_{k, i < Ri, j < Sj} w[g*Kg + k, m, r0 + i*rstep, s0 + j*sstep]
                                                  * dy[n, g*Kg + k, th + pbase - i*pstep, tw + qbase - j*qstep]
    (dy terms outside P x Q are zero). Only the taps that reach the phase are visited and no index
    is divided in the main loop.

    GEMM per group g: rows m < Cg, columns (n, th, tw) < N*Ht*Wt, reduction (k, i, j) < Kg*Ri*Sj,
    a gather so every dx element is written once by one thread (no atomics); Ri*Sj == 0 writes zeros.
    Grid (ceil(N*Ht*Wt / BN), ceil(Cg / BM), G), block (TX, TY), one launch per phase.
    Work: 2*N*C*Ht*Wt*Kg*Ri*Sj FLOPs per phase (2*N*C*H*W*Kg*R*S/(sh*sw) in all for dilation 1);
    compulsory traffic (dy + w + dx) * 4 bytes.
    """
    As = cuda.shared.array(AS_SIZE, float32)
    Bs = cuda.shared.array(BS_SIZE, float32)
    acc = cuda.local.array((TM, TN), float32)
    tx = int32(cuda.threadIdx.x)
    ty = int32(cuda.threadIdx.y)
    tid = ty * TX + tx
    g = int32(cuda.blockIdx.z)
    kg = int32(k_out // groups)
    cg = int32(c_in // groups)
    ij = int32(ri * sj)
    kred = int32(kg * ij)
    rs = int32(r_k * s_k)
    hw = int32(h_in * w_in)
    pq = int32(p_out * q_out)
    tt = int32(ht * wt)
    ncols = int32(n_img * tt)
    m0 = int32(cuda.blockIdx.y) * BM
    n0 = int32(cuda.blockIdx.x) * BN
    for i in range(TM):
        for j in range(TN):
            acc[i, j] = 0.0
    # the column this thread loads is fixed: decode (n, th, tw) once
    b_col = tid % BN
    b_kk = tid // BN
    col = n0 + b_col
    col_ok = col < ncols
    bn = col // tt
    bt = col - bn * tt
    bth = bt // wt
    btw = bt - bth * wt
    dy_img = int32((bn * k_out + g * kg) * pq)
    p_base = int32(bth + pbase)
    q_base = int32(btw + qbase)
    a_kk = tid % BK
    a_m = tid // BK
    # reduction digits (k, i, j) carried by BK per step: one slot per B load, then the A load's slot
    # (radices kept >= 1 for a phase no tap reaches: its loop does not run)
    ij_r = max(ij, 1)
    sj_r = max(sj, 1)
    bk = cuda.local.array(DIGITS, int32)
    bi = cuda.local.array(DIGITS, int32)
    bj = cuda.local.array(DIGITS, int32)
    for l in range(LOADS):
        _digits_init(b_kk + l * (THREADS // BN), ij_r, sj_r, bk, bi, bj, l)
    _digits_init(a_kk, ij_r, sj_r, bk, bi, bj, LOADS)
    dk, di, dj = _digits_step(ij_r, sj_r)
    w_img = int32((g * kg * cg + m0 + a_m) * rs + r0 * s_k + s0)
    w_k = int32(cg * rs)
    w_i = int32(rstep * s_k)
    k0 = int32(0)
    while k0 < kred:
        a_ok = int32(k0 + a_kk) < kred
        # A: w[g*Kg + k, m, r0 + i*rstep, s0 + j*sstep]
        a_off = int32(w_img + int32(bk[LOADS] * w_k) + int32(bi[LOADS] * w_i) + int32(bj[LOADS] * sstep))
        _digits_advance(bk, bi, bj, LOADS, dk, di, dj, ri, sj)
        for l in range(LOADS):
            m = a_m + l * (THREADS // BK)
            v = float32(0.0)
            if int32(m0 + m) < cg and a_ok:
                v = w[int32(a_off + l * (THREADS // BK) * rs)]
            As[a_kk * AS_W + m] = v
            # B: dy at the output position tap (i, j) of this phase reads for column (n, th, tw)
            kk = b_kk + l * (THREADS // BN)
            v = float32(0.0)
            if col_ok and int32(k0 + kk) < kred:
                p = int32(p_base - bi[l] * pstep)
                q = int32(q_base - bj[l] * qstep)
                if p >= 0 and p < p_out and q >= 0 and q < q_out:
                    v = dy[int32(dy_img + bk[l] * pq + p * q_out + q)]
            Bs[kk * BS_W + b_col] = v
            _digits_advance(bk, bi, bj, l, dk, di, dj, ri, sj)
        cuda.syncthreads()
        _tile_fma(As, Bs, acc, ty, tx)
        cuda.syncthreads()
        k0 = int32(k0 + BK)
    for j in range(TN):
        col = n0 + tx + TX * j
        if col < ncols:
            n = col // tt
            t = col - n * tt
            th = t // wt
            out = (n * c_in + g * cg) * hw + (h0 + th * sh) * w_in + w0 + (t - th * wt) * sw
            for i in range(TM):
                m = m0 + ty + TY * i
                if m < cg:
                    dx[out + m * hw] = acc[i, j]


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
    As = cuda.shared.array(AS_SIZE, float32)
    Bs = cuda.shared.array(BS_SIZE, float32)
    acc = cuda.local.array((TM, TN), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * TX + tx
    g = cuda.blockIdx.z // splits
    split = cuda.blockIdx.z - g * splits
    kg = int32(k_out // groups)
    cg = int32(c_in // groups)
    rs = int32(r_k * s_k)
    ncols = int32(cg * rs)
    pq = int32(p_out * q_out)
    kred = int32(n_img * pq)
    k_begin = int32(split * chunk)
    k_end = int32(min(kred, k_begin + chunk))
    dy_n = int32(k_out * pq)      # dy and x strides of one image
    x_n = int32(c_in * h_in * w_in)
    m0 = cuda.blockIdx.y * BM
    n0 = cuda.blockIdx.x * BN
    for i in range(TM):
        for j in range(TN):
            acc[i, j] = 0.0
    # both operands are contiguous along the reduction: every thread loads reduction index kk
    # of rows a_m (+32) of A and of columns a_m (+32) of B, decoding (n, p, q) once per slice
    a_kk = tid % BK
    a_m = tid // BK
    # the reduction index walks by BK with its (n, p, q) digits carried; the B columns' (c, r, s) are fixed
    nd = cuda.local.array(1, int32)
    pd = cuda.local.array(1, int32)
    qd = cuda.local.array(1, int32)
    _digits_init(k_begin + a_kk, pq, q_out, nd, pd, qd, 0)
    dn, dp, dq = _digits_step(pq, q_out)
    cc = cuda.local.array(LOADS, int32)
    cr = cuda.local.array(LOADS, int32)
    cs = cuda.local.array(LOADS, int32)
    # per B column: its offset in x (channel c, taps (r, s) at dilation) relative to the window corner
    x_col = cuda.local.array(LOADS, int32)
    for l in range(LOADS):
        _digits_init(n0 + a_m + l * (THREADS // BK), rs, s_k, cc, cr, cs, l)
        cr[l] = int32(cr[l] * dh)
        cs[l] = int32(cs[l] * dw)
        x_col[l] = int32(((g * cg + cc[l]) * h_in + cr[l]) * w_in + cs[l])
    dy_row = int32((g * kg + m0 + a_m) * pq)
    k0 = k_begin
    while k0 < k_end:
        kr_ok = int32(k0 + a_kk) < k_end
        n = nd[0]
        p = pd[0]
        q = qd[0]
        h0 = int32(p * sh - ph)
        w0 = int32(q * sw - pw)
        dy_off = int32(n * dy_n + dy_row + p * q_out + q)
        x_off = int32(n * x_n + h0 * w_in + w0)
        _digits_advance(nd, pd, qd, 0, dn, dp, dq, p_out, q_out)
        for l in range(LOADS):
            m = a_m + l * (THREADS // BK)
            v = float32(0.0)
            if int32(m0 + m) < kg and kr_ok:
                v = dy[int32(dy_off + l * (THREADS // BK) * pq)]
            As[a_kk * AS_W + m] = v
            v = float32(0.0)
            if int32(n0 + m) < ncols and kr_ok:
                hh = int32(h0 + cr[l])
                ww = int32(w0 + cs[l])
                if hh >= 0 and hh < h_in and ww >= 0 and ww < w_in:
                    v = x[int32(x_off + x_col[l])]
            Bs[a_kk * BS_W + m] = v
        cuda.syncthreads()
        _tile_fma(As, Bs, acc, ty, tx)
        cuda.syncthreads()
        k0 = int32(k0 + BK)
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
    n, c, h, wd, k, r, s, p, q = geo[:9]
    _check_out(dx, "dx", dx.shape)
    _check_out(dy, "dy", (n, k, p, q))
    for phase in bwd_phases(h, wd, r, s, stride, padding, dilation):
        grid = _gemm_grid("conv2d_backward_data", n * phase[1] * phase[8], c // groups, groups)
        launch("conv2d_backward_data_v1", grid, GEMM_BLOCK, (dx, dy, w) + geo + phase, stream)
    return dx


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
