"""The numba implicit-GEMM conv kernels, one body per pass built for each tile of tiles.TILES.

Every kernel runs the same pipeline over BK-deep reduction slices, with two shared buffers per
operand and one barrier per slice: step j issues the global loads of slice j into registers,
multiplies the slice j-1 already in shared buffer (j-1) % 2 while those loads are in flight,
then stores the registers into buffer j % 2. Loaders carry their index digits by BK (no division
in the loop) and all index math in the loop is 32-bit (the launchers check the int32 limits).
Kernel names: conv2d_<pass><tile.suffix>_v1.
"""

from __future__ import annotations

from numba import cuda, float32, int32

from .tiles import (BK, PAD, THREADS, TILE_64, TILE_128, TX, TY, _digits_advance, _digits_init, _digits_step,
                    make_tile_fma)


def _forward(tile):
    bm, bn, tm, tn, loads = tile.bm, tile.bn, tile.tm, tile.tn, tile.loads
    as_w, bs_w = bm + PAD, bn + PAD
    a_buf, b_buf = BK * as_w, BK * bs_w
    a_size, b_size = 2 * a_buf, 2 * b_buf
    a_step, b_step = THREADS // BK, THREADS // bn
    tile_fma = make_tile_fma(tile)

    def kernel(y, x, w, b, has_bias, n_img, c_in, h_in, w_in, k_out, r_k, s_k, p_out, q_out,
               sh, sw, ph, pw, dh, dw, groups):
        """y[n, g*Kg + m, p, q] = sum_{c,r,s} w[g*Kg + m, c, r, s] * x[n, g*Cg + c, h(p, r), w(q, s)] (+ b).

        GEMM per group g: rows m < Kg, columns (n, p, q) < N*P*Q, reduction (c, r, s) < Cg*R*S.
        Grid (ceil(N*P*Q / bn), ceil(Kg / bm), G), block (TX, TY).
        Work: 2*N*K*P*Q*Cg*R*S FLOPs; compulsory traffic (x + w + y) * 4 bytes, x re-read once per
        bm row tile (mostly from L2).
        """
        As = cuda.shared.array(a_size, float32)
        Bs = cuda.shared.array(b_size, float32)
        acc = cuda.local.array((tm, tn), float32)
        va = cuda.local.array(loads, float32)
        vb = cuda.local.array(loads, float32)
        tx = int32(cuda.threadIdx.x)
        ty = int32(cuda.threadIdx.y)
        tid = int32(ty * TX + tx)
        g = int32(cuda.blockIdx.z)
        kg = int32(k_out // groups)
        cg = int32(c_in // groups)
        rs = int32(r_k * s_k)
        kred = int32(cg * rs)
        pq = int32(p_out * q_out)
        ncols = int32(n_img * pq)
        m0 = int32(cuda.blockIdx.y) * bm
        n0 = int32(cuda.blockIdx.x) * bn
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = 0.0
        # the column this thread loads is fixed: decode (n, p, q) once
        b_col = tid % bn
        b_kk = tid // bn
        col = n0 + b_col
        col_ok = col < ncols
        bn_ = col // pq
        bpq = col - bn_ * pq
        bp = bpq // q_out
        bq = bpq - bp * q_out
        x_img = int32((bn_ * c_in + g * cg) * h_in * w_in)
        h_base = int32(bp * sh - ph)
        w_base = int32(bq * sw - pw)
        a_kk = tid % BK
        a_m = tid // BK
        # each B load's reduction index walks by BK: its (c, r, s) digits are carried, not divided
        bc = cuda.local.array(loads, int32)
        br = cuda.local.array(loads, int32)
        bs = cuda.local.array(loads, int32)
        for l in range(loads):
            _digits_init(b_kk + l * b_step, rs, s_k, bc, br, bs, l)
        dc, dr, ds = _digits_step(rs, s_k)
        w_row = int32((g * kg + m0 + a_m) * kred + a_kk)
        a_st = int32(a_kk * as_w + a_m)
        b_st = int32(b_kk * bs_w + b_col)
        k0 = int32(0)
        cur_a = int32(0)  # offsets of the buffers being filled; the other one (a_buf - cur_a) is multiplied
        cur_b = int32(0)
        while True:
            more = k0 < kred
            if more:
                for l in range(loads):
                    # A: weights, contiguous along the reduction
                    v = float32(0.0)
                    if int32(m0 + a_m + l * a_step) < kg and int32(k0 + a_kk) < kred:
                        v = w[int32(w_row + l * a_step * kred + k0)]
                    va[l] = v
                    # B: im2col gather of x
                    v = float32(0.0)
                    if col_ok and int32(k0 + b_kk + l * b_step) < kred:
                        hh = int32(h_base + br[l] * dh)
                        ww = int32(w_base + bs[l] * dw)
                        if hh >= 0 and hh < h_in and ww >= 0 and ww < w_in:
                            v = x[int32(x_img + (bc[l] * h_in + hh) * w_in + ww)]
                    vb[l] = v
                    _digits_advance(bc, br, bs, l, dc, dr, ds, r_k, s_k)
            if k0 > 0:
                tile_fma(As, Bs, acc, ty, tx, int32(a_buf - cur_a), int32(b_buf - cur_b))
            if not more:
                break
            for l in range(loads):
                As[int32(cur_a + a_st + l * a_step)] = va[l]
                Bs[int32(cur_b + b_st + l * b_step * bs_w)] = vb[l]
            cuda.syncthreads()
            cur_a = int32(a_buf - cur_a)
            cur_b = int32(b_buf - cur_b)
            k0 = int32(k0 + BK)
        for j in range(tn):
            col = n0 + tx + TX * j
            if col < ncols:
                n = col // pq
                t = col - n * pq
                for i in range(tm):
                    m = m0 + ty + TY * i
                    if m < kg:
                        k = g * kg + m
                        v = acc[i, j]
                        if has_bias:
                            v += b[k]
                        y[(n * k_out + k) * pq + t] = v
    kernel.__name__ = f"conv2d_forward{tile.suffix}_v1"
    return kernel


def _backward_data(tile):
    bm, bn, tm, tn, loads = tile.bm, tile.bn, tile.tm, tile.tn, tile.loads
    as_w, bs_w = bm + PAD, bn + PAD
    a_buf, b_buf = BK * as_w, BK * bs_w
    a_size, b_size = 2 * a_buf, 2 * b_buf
    a_step, b_step = THREADS // BK, THREADS // bn
    digits = loads + 1  # index-digit slots: one per B load, then the A load's
    tile_fma = make_tile_fma(tile)

    def kernel(dx, dy, w, n_img, c_in, h_in, w_in, k_out, r_k, s_k, p_out, q_out, sh, sw, ph, pw, dh, dw, groups,
               h0, ht, r0, rstep, ri, pbase, pstep, w0, wt, s0, sstep, sj, qbase, qstep):
        """One stride phase of dx (see tiles.bwd_phases): for h = h0 + th*sh (th < Ht), w = w0 + tw*sw (tw < Wt)
        dx[n, g*Cg + m, h, w] = sum_{k, i < Ri, j < Sj} w[g*Kg + k, m, r0 + i*rstep, s0 + j*sstep]
                                                      * dy[n, g*Kg + k, th + pbase - i*pstep, tw + qbase - j*qstep]
        (dy terms outside P x Q are zero). Only the taps that reach the phase are visited.

        GEMM per group g: rows m < Cg, columns (n, th, tw) < N*Ht*Wt, reduction (k, i, j) < Kg*Ri*Sj,
        a gather so every dx element is written once by one thread (no atomics); Ri*Sj == 0 writes zeros.
        Grid (ceil(N*Ht*Wt / bn), ceil(Cg / bm), G), block (TX, TY), one launch per phase.
        Work: 2*N*C*Ht*Wt*Kg*Ri*Sj FLOPs per phase (2*N*C*H*W*Kg*R*S/(sh*sw) in all for dilation 1);
        compulsory traffic (dy + w + dx) * 4 bytes.
        """
        As = cuda.shared.array(a_size, float32)
        Bs = cuda.shared.array(b_size, float32)
        acc = cuda.local.array((tm, tn), float32)
        va = cuda.local.array(loads, float32)
        vb = cuda.local.array(loads, float32)
        tx = int32(cuda.threadIdx.x)
        ty = int32(cuda.threadIdx.y)
        tid = int32(ty * TX + tx)
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
        m0 = int32(cuda.blockIdx.y) * bm
        n0 = int32(cuda.blockIdx.x) * bn
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = 0.0
        # the column this thread loads is fixed: decode (n, th, tw) once
        b_col = tid % bn
        b_kk = tid // bn
        col = n0 + b_col
        col_ok = col < ncols
        bn_ = col // tt
        bt = col - bn_ * tt
        bth = bt // wt
        btw = bt - bth * wt
        dy_img = int32((bn_ * k_out + g * kg) * pq)
        p_base = int32(bth + pbase)
        q_base = int32(btw + qbase)
        a_kk = tid % BK
        a_m = tid // BK
        # reduction digits (k, i, j) carried by BK per step (radices kept >= 1 for a phase no tap
        # reaches: its loop does not run)
        ij_r = max(ij, 1)
        sj_r = max(sj, 1)
        bk = cuda.local.array(digits, int32)
        bi = cuda.local.array(digits, int32)
        bj = cuda.local.array(digits, int32)
        for l in range(loads):
            _digits_init(b_kk + l * b_step, ij_r, sj_r, bk, bi, bj, l)
        _digits_init(a_kk, ij_r, sj_r, bk, bi, bj, loads)
        dk, di, dj = _digits_step(ij_r, sj_r)
        w_img = int32((g * kg * cg + m0 + a_m) * rs + r0 * s_k + s0)
        w_k = int32(cg * rs)
        w_i = int32(rstep * s_k)
        a_st = int32(a_kk * as_w + a_m)
        b_st = int32(b_kk * bs_w + b_col)
        k0 = int32(0)
        cur_a = int32(0)  # offsets of the buffers being filled; the other one (a_buf - cur_a) is multiplied
        cur_b = int32(0)
        while True:
            more = k0 < kred
            if more:
                a_ok = int32(k0 + a_kk) < kred
                # A: w[g*Kg + k, m, r0 + i*rstep, s0 + j*sstep]
                a_off = int32(w_img + int32(bk[loads] * w_k) + int32(bi[loads] * w_i) + int32(bj[loads] * sstep))
                _digits_advance(bk, bi, bj, loads, dk, di, dj, ri, sj)
                for l in range(loads):
                    v = float32(0.0)
                    if int32(m0 + a_m + l * a_step) < cg and a_ok:
                        v = w[int32(a_off + l * a_step * rs)]
                    va[l] = v
                    # B: dy at the output position tap (i, j) of this phase reads for column (n, th, tw)
                    v = float32(0.0)
                    if col_ok and int32(k0 + b_kk + l * b_step) < kred:
                        p = int32(p_base - bi[l] * pstep)
                        q = int32(q_base - bj[l] * qstep)
                        if p >= 0 and p < p_out and q >= 0 and q < q_out:
                            v = dy[int32(dy_img + bk[l] * pq + p * q_out + q)]
                    vb[l] = v
                    _digits_advance(bk, bi, bj, l, dk, di, dj, ri, sj)
            if k0 > 0:
                tile_fma(As, Bs, acc, ty, tx, int32(a_buf - cur_a), int32(b_buf - cur_b))
            if not more:
                break
            for l in range(loads):
                As[int32(cur_a + a_st + l * a_step)] = va[l]
                Bs[int32(cur_b + b_st + l * b_step * bs_w)] = vb[l]
            cuda.syncthreads()
            cur_a = int32(a_buf - cur_a)
            cur_b = int32(b_buf - cur_b)
            k0 = int32(k0 + BK)
        for j in range(tn):
            col = n0 + tx + TX * j
            if col < ncols:
                n = col // tt
                t = col - n * tt
                th = t // wt
                out = (n * c_in + g * cg) * hw + (h0 + th * sh) * w_in + w0 + (t - th * wt) * sw
                for i in range(tm):
                    m = m0 + ty + TY * i
                    if m < cg:
                        dx[out + m * hw] = acc[i, j]
    kernel.__name__ = f"conv2d_backward_data{tile.suffix}_v1"
    return kernel


def _backward_weight(tile):
    bm, bn, tm, tn, loads = tile.bm, tile.bn, tile.tm, tile.tn, tile.loads
    as_w, bs_w = bm + PAD, bn + PAD
    a_buf, b_buf = BK * as_w, BK * bs_w
    a_size, b_size = 2 * a_buf, 2 * b_buf
    a_step = THREADS // BK
    tile_fma = make_tile_fma(tile)

    def kernel(out, dy, x, n_img, c_in, h_in, w_in, k_out, r_k, s_k, p_out, q_out, sh, sw, ph, pw, dh, dw, groups,
               splits, chunk):
        """Partial dw over one slice of the reduction:
        out[split, g*Kg + m, (c, r, s)] = sum_{(n,p,q) in slice} dy[n, g*Kg + m, p, q] * x[n, g*Cg + c, h, w].

        GEMM per group g: rows m < Kg, columns (c, r, s) < Cg*R*S, reduction (n, p, q) < N*P*Q cut
        into ``splits`` slices of ``chunk`` (a multiple of BK). With splits == 1, out is dw itself.
        Grid (ceil(Cg*R*S / bn), ceil(Kg / bm), G*splits), block (TX, TY).
        Work: 2*K*Cg*R*S*N*P*Q FLOPs; compulsory traffic (dy + x) * 4 bytes + splits*K*Cg*R*S*4 bytes
        of partial sums written.
        """
        As = cuda.shared.array(a_size, float32)
        Bs = cuda.shared.array(b_size, float32)
        acc = cuda.local.array((tm, tn), float32)
        va = cuda.local.array(loads, float32)
        vb = cuda.local.array(loads, float32)
        tx = int32(cuda.threadIdx.x)
        ty = int32(cuda.threadIdx.y)
        tid = int32(ty * TX + tx)
        g = int32(cuda.blockIdx.z) // splits
        split = int32(cuda.blockIdx.z) - g * splits
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
        m0 = int32(cuda.blockIdx.y) * bm
        n0 = int32(cuda.blockIdx.x) * bn
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = 0.0
        # both operands are contiguous along the reduction: every thread loads reduction index a_kk
        # of rows a_m + l*a_step of A and of columns a_m + l*a_step of B
        a_kk = tid % BK
        a_m = tid // BK
        # the reduction index walks by BK with its (n, p, q) digits carried; the B columns' (c, r, s) are fixed
        nd = cuda.local.array(1, int32)
        pd = cuda.local.array(1, int32)
        qd = cuda.local.array(1, int32)
        _digits_init(k_begin + a_kk, pq, q_out, nd, pd, qd, 0)
        dn, dp, dq = _digits_step(pq, q_out)
        cc = cuda.local.array(loads, int32)
        cr = cuda.local.array(loads, int32)
        cs = cuda.local.array(loads, int32)
        # per B column: its offset in x (channel c, dilated taps (r, s)) from the window corner
        x_col = cuda.local.array(loads, int32)
        for l in range(loads):
            _digits_init(n0 + a_m + l * a_step, rs, s_k, cc, cr, cs, l)
            cr[l] = int32(cr[l] * dh)
            cs[l] = int32(cs[l] * dw)
            x_col[l] = int32(((g * cg + cc[l]) * h_in + cr[l]) * w_in + cs[l])
        dy_row = int32((g * kg + m0 + a_m) * pq)
        a_st = int32(a_kk * as_w + a_m)
        b_st = int32(a_kk * bs_w + a_m)
        k0 = k_begin
        cur_a = int32(0)  # offsets of the buffers being filled; the other one (a_buf - cur_a) is multiplied
        cur_b = int32(0)
        while True:
            more = k0 < k_end
            if more:
                kr_ok = int32(k0 + a_kk) < k_end
                n = nd[0]
                p = pd[0]
                q = qd[0]
                h0 = int32(p * sh - ph)
                w0 = int32(q * sw - pw)
                dy_off = int32(n * dy_n + dy_row + p * q_out + q)
                x_off = int32(n * x_n + h0 * w_in + w0)
                _digits_advance(nd, pd, qd, 0, dn, dp, dq, p_out, q_out)
                for l in range(loads):
                    v = float32(0.0)
                    if int32(m0 + a_m + l * a_step) < kg and kr_ok:
                        v = dy[int32(dy_off + l * a_step * pq)]
                    va[l] = v
                    v = float32(0.0)
                    if int32(n0 + a_m + l * a_step) < ncols and kr_ok:
                        hh = int32(h0 + cr[l])
                        ww = int32(w0 + cs[l])
                        if hh >= 0 and hh < h_in and ww >= 0 and ww < w_in:
                            v = x[int32(x_off + x_col[l])]
                    vb[l] = v
            if k0 > k_begin:
                tile_fma(As, Bs, acc, ty, tx, int32(a_buf - cur_a), int32(b_buf - cur_b))
            if not more:
                break
            for l in range(loads):
                As[int32(cur_a + a_st + l * a_step)] = va[l]
                Bs[int32(cur_b + b_st + l * a_step)] = vb[l]
            cuda.syncthreads()
            cur_a = int32(a_buf - cur_a)
            cur_b = int32(b_buf - cur_b)
            k0 = int32(k0 + BK)
        base = split * k_out * ncols
        for i in range(tm):
            m = m0 + ty + TY * i
            if m < kg:
                for j in range(tn):
                    col = n0 + tx + TX * j
                    if col < ncols:
                        out[base + (g * kg + m) * ncols + col] = acc[i, j]
    kernel.__name__ = f"conv2d_backward_weight{tile.suffix}_v1"
    return kernel


# module-level names: driver.launch finds kernel bodies by name
conv2d_forward_v1 = _forward(TILE_64)
conv2d_backward_data_v1 = _backward_data(TILE_64)
conv2d_backward_weight_v1 = _backward_weight(TILE_64)
conv2d_forward_t128_v1 = _forward(TILE_128)
conv2d_backward_data_t128_v1 = _backward_data(TILE_128)
conv2d_backward_weight_t128_v1 = _backward_weight(TILE_128)
