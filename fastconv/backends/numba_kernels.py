"""Numba CUDA kernel bodies for the "numba" kernel family (launched by fastconv.backends.numba_cuda).

Every array argument is indexed flat (``x[i]``), so one body serves two argument kinds: raw
``float32*`` / ``int32*`` pointers on the GPU (the launcher compiles each kernel once with a
``CPointer`` signature) and 1-d arrays under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1, CI).
The functions here are plain Python; numba_cuda.py turns them into kernels.

Kernel list (versions as in kernels/*.cu naming: op, pass, version):

- conv2d_forward_v1, conv2d_backward_data_v1, conv2d_backward_weight_v1: implicit GEMM, one
  block per BM x BN output tile, BK-deep slices of both operands staged in shared memory, each
  of the TY x TX threads accumulating a TM x TN register tile (rows ty + TY*i, columns
  tx + TX*j, so shared reads are broadcast or consecutive and global stores coalesce).
  backward_data is written as a gather (no atomics); backward_weight splits its long N*P*Q
  reduction over blockIdx.z and writes per-split partial sums that sum_splits_v1 adds in a fixed
  order (deterministic, no atomics).
- conv2d_backward_bias_v1: one block per output channel, shared-memory tree reduction.
- relu / leaky_relu forward and backward: grid-stride elementwise loops.
- max_pool2d / avg_pool2d forward: one thread per output; backward: one thread per input
  element gathering from the windows that cover it (overlapping windows add, no atomics).

Work per conv pass (for judging speed against the card's ceilings): 2*N*K*P*Q*C/G*R*S FLOPs;
bytes moved at least 4*(|x| + |w| + |y|).
"""

from __future__ import annotations

import math

from numba import cuda, float32

# ---------------------------------------------------------------------------------------------
# tile configuration of the implicit-GEMM conv kernels (shared by all three passes)

BM = 64                 # output rows (channels) per block
BN = 64                 # output columns (pixels or filter taps) per block
BK = 8                  # reduction slice staged in shared memory per step
TY = 16                 # threads along rows
TX = 16                 # threads along columns
TM = BM // TY           # register tile rows per thread
TN = BN // TX           # register tile columns per thread
THREADS = TX * TY       # 256 threads: each loads BM*BK/THREADS = 2 elements of each operand
PAD = 4                 # shared row padding: k-fast stores hit 8 different banks
LOADS = BM * BK // THREADS
AS_W = BM + PAD          # row length of the shared A tile
BS_W = BN + PAD          # row length of the shared B tile
GEMM_BLOCK = (TX, TY, 1)

ELEMENTWISE_THREADS = 256
REDUCE_THREADS = 256    # power of two (tree reduction)

assert BM == BN and THREADS % BK == 0 and THREADS % BN == 0 and LOADS * THREADS == BM * BK


@cuda.jit(device=True, inline="always")
def _tile_fma(As, Bs, acc, ty, tx):
    """acc[i, j] += sum_kk As[kk, ty + TY*i] * Bs[kk, tx + TX*j] over one BK slice."""
    a = cuda.local.array(TM, float32)
    b = cuda.local.array(TN, float32)
    for kk in range(BK):
        for i in range(TM):
            a[i] = As[kk, ty + TY * i]
        for j in range(TN):
            b[j] = Bs[kk, tx + TX * j]
        for i in range(TM):
            for j in range(TN):
                acc[i, j] += a[i] * b[j]


# ---------------------------------------------------------------------------------------------
# launch-cost probe


def empty_v1(y, n):
    """Does nothing: launched by benchmarks/bench_numba_launch.py and the GPU tests to measure the
    host-side cost of one launch through numba_cuda.launch. Work: 0 FLOPs, 0 bytes."""


# ---------------------------------------------------------------------------------------------
# convolution


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


# ---------------------------------------------------------------------------------------------
# activations (backward passes take the forward output y)


def relu_forward_v1(y, x, n):
    """y = max(x, 0). Work: n compares, no FLOPs; traffic 2*n*4 bytes (x in, y out)."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, n, step):
        v = x[i]
        y[i] = v if v > 0 else float32(0.0)


def relu_backward_v1(dx, dy, y, n):
    """dx = dy where y > 0, else 0. Work: n compares, no FLOPs; traffic 3*n*4 bytes."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, n, step):
        dx[i] = dy[i] if y[i] > 0 else float32(0.0)


def leaky_relu_forward_v1(y, x, n, slope):
    """y = x if x > 0 else x*slope. Work: n compares, up to n FLOPs; traffic 2*n*4 bytes."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, n, step):
        v = x[i]
        y[i] = v if v > 0 else v * slope


def leaky_relu_backward_v1(dx, dy, y, n, slope):
    """dx = dy if y > 0 else dy*slope. Work: n compares, up to n FLOPs; traffic 3*n*4 bytes."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, n, step):
        d = dy[i]
        dx[i] = d if y[i] > 0 else d * slope


# ---------------------------------------------------------------------------------------------
# pooling: planes = N*C; windows start at p*sh - ph and may overlap (stride < kernel)


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
