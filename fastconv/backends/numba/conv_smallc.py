"""The numba small-channel conv kernels (C/G*R*S <= smallc_config.SMALLC, e.g. LeNet's conv1: C = 1, 5x5),
where an implicit-GEMM tile would be mostly padding: direct kernels that stage a block's input rows
(with halo, zeros outside the plane) and its filters in shared memory and hold several outputs per
thread in registers. Tiles and shared sizes are the CUDA C family's (fastconv/backends/cuda/config.py
smallc_*), chosen by tiles.smallc_tile; the launchers are in conv_smallc_launch.py.

- conv2d_forward_smallc_v1: 8 filters x 4 adjacent output pixels per thread.
- conv2d_backward_data_smallc_v1: one stride phase per launch, 2 rows x 4 adjacent pixels of it per
  thread, only the taps that reach the phase; the filters split over the block's warps, whose
  partial sums are added in warp order (deterministic). Along a row (qstep == 1) a sliding window
  of 4 registers takes one new dy value per tap.
- conv2d_backward_weight_smallc_v1 (conv_smallc_wgrad.py): slices of (image, output rows) per
  block, 16 filters x 4 taps per thread, a partial dw per block summed by sum_splits_v1.

Index math is 32-bit; the loops carry their indices (no division inside them).
"""

from __future__ import annotations

from numba import cuda, float32, int32, uint64

from ..cuda.smallc_config import SMALLC, SMALLC_BWD_SMEM, SMALLC_BWD_WS, SMALLC_FWD_SMEM, SMALLC_KT
from .conv_gemm import SHARED_ALIGN, _inside, _load, _per_group
from .tiles import _digits_advance, _digits_split

STAGE_BATCH = 4   # loads in flight per thread while staging a tile (a load-store chain per element stalls)


FWD_WS = SMALLC * 32          # floats of the forward's staged filters ([c*R*S][up to 32 filters])


BWD_RED = 3 * 8 * 32          # floats of backward-data's warp sums (warps 1..3, 8 per lane)


@cuda.jit(device=True, inline="always")
def _stage_digits(nr, nc):
    """(ch, i, j) of this thread's first element of a tile staged by _stage (nr rows x nc columns per
    channel) and of the step between its elements (the block size): divides, so called once before
    the loops that stage."""
    ch, i, j = _digits_split(int32(cuda.threadIdx.x), int32(nr * nc), nc)
    dch, di, dj = _digits_split(int32(cuda.blockDim.x), int32(nr * nc), nc)
    return int32(ch), int32(i), int32(j), int32(dch), int32(di), int32(dj)


@cuda.jit(device=True, inline="always")
def _block_tile(tiles, ctiles):
    """(image, tile row, tile column) of this block: blockIdx.x = image*tiles + row*ctiles + column.
    _digits_split's digits with every step truncated to 32 bits (_digits_split itself keeps 64-bit
    intermediates here: two more 64-bit multiplies in the PTX)."""
    bx = int32(cuda.blockIdx.x)
    img = int32(bx // tiles)
    t = int32(bx - img * tiles)
    tr = int32(t // ctiles)
    return img, tr, int32(t - tr * ctiles)


@cuda.jit(device=True, inline="always")
def _stage(s, src, base, nch, plane, h_n, w_n, h0, nr, w0, nc, pitch, dig):
    """s[(ch*nr + i)*pitch + j] = src[base + ch*plane + (h0 + i)*w_n + w0 + j] for ch < nch, i < nr,
    j < nc; zero outside the h_n x w_n plane (padding and halo become plain reads). Consecutive
    threads take consecutive elements (coalesced), their (ch, i, j) digits (``dig``: _stage_digits)
    carried by the block size (no division), STAGE_BATCH loads issued before their stores. All
    threads call it."""
    nt = int32(cuda.blockDim.x)
    total = int32(nch * nr * nc)
    ch0, i0, j0, dch, di, dj = dig
    ch = cuda.local.array(1, int32)
    ii = cuda.local.array(1, int32)
    jj = cuda.local.array(1, int32)
    ch[0] = ch0
    ii[0] = i0
    jj[0] = j0
    v = cuda.local.array(STAGE_BATCH, float32)
    so = cuda.local.array(STAGE_BATCH, int32)
    e = int32(cuda.threadIdx.x)
    while e < total:
        for u in range(STAGE_BATCH):
            h = int32(h0 + ii[0])
            wc = int32(w0 + jj[0])
            live = int32(e + u * nt) < total
            v[u] = _load(src, int32(base + ch[0] * plane + h * w_n + wc), live and _inside(h, h_n, wc, w_n))
            so[u] = int32((ch[0] * nr + ii[0]) * pitch + jj[0]) if live else int32(-1)
            _digits_advance(ch, ii, jj, 0, dch, di, dj, nr, nc)
        for u in range(STAGE_BATCH):
            if so[u] >= 0:
                s[so[u]] = v[u]
        e = int32(e + STAGE_BATCH * nt)


def conv2d_forward_smallc_v1(y, x, w, b, has_bias, n_img, c_in, h_in, w_in, k_out, r_k, s_k, p_out, q_out,
                             sh, sw, ph, pw, dh, dw, groups, tpr, tqq, ctiles, tiles, ir, iw, iwp):
    """y[n, k, p, q] = sum_{c,r,s} x[n, g*Cg + c, p*sh - ph + r*dh, q*sw - pw + s*dw] * w[k, c, r, s] (+ b[k]).

    Block (32*warps,): one image, a tile of tpr output rows x tqq quads (4 adjacent columns; ctiles
    tiles across, ``tiles`` per image), KB = 8*warps filters of group g. Grid (N*tiles,
    ceil(Kg / KB), G). The tile's input rows (ir x iw, pitch iwp, per channel) and its filters as
    [c*R*S][KB] are staged in shared memory once; warp w owns filters 8w..8w+7 of the chunk, lane l
    one quad: per tap 4 input and 8 broadcast weight loads feed 32 FMAs in registers.
    Work: 2*N*K*P*Q*Cg*R*S FLOPs; traffic (x (+ halo, per filter chunk) + w + y) * 4 bytes.
    """
    xs = cuda.shared.array(SMALLC_FWD_SMEM, float32, alignment=SHARED_ALIGN)
    ws = cuda.shared.array(FWD_WS, float32, alignment=SHARED_ALIGN)
    tid = int32(cuda.threadIdx.x)
    nw = int32(cuda.blockDim.x) >> 5
    warp = tid >> 5
    lane = tid & 31
    kb_n = int32(nw * SMALLC_KT)
    g = int32(cuda.blockIdx.z)
    kg, cg, rs = _per_group(k_out, c_in, r_k, s_k, groups)
    crs = int32(cg * rs)
    kb0 = int32(int32(cuda.blockIdx.y) * kb_n)
    img, tr, tc = _block_tile(tiles, ctiles)
    p0 = int32(tr * tpr)
    q0 = int32(tc * tqq * 4)
    hw = int32(h_in * w_in)
    _stage(xs, x, int32((img * c_in + g * cg) * hw), cg, hw, h_in, w_in, int32(p0 * sh - ph), ir,
           int32(q0 * sw - pw), iw, iwp, _stage_digits(ir, iw))
    e = warp
    while e < crs:  # lane = filter: conflict-free stores
        if lane < kb_n:
            f = int32(kb0 + lane)
            ws[int32(e * kb_n + lane)] = _load(w, int32((g * kg + f) * crs + e), f < kg)
        e = int32(e + nw)
    cuda.syncthreads()
    lr = int32(lane // tqq)
    p = int32(p0 + lr)
    q = int32(q0 + 4 * (lane - lr * tqq))
    kq = int32(kb0 + warp * SMALLC_KT)
    if lr >= tpr or p >= p_out or q >= q_out or kq >= kg:
        return  # past the only barrier
    acc = cuda.local.array((SMALLC_KT, 4), float32)
    for i in range(SMALLC_KT):
        for j in range(4):
            acc[i, j] = float32(0.0)
    xv = cuda.local.array(4, float32)
    wv = cuda.local.array(SMALLC_KT, float32)
    # the warp's 8 filters of a tap: 16-byte aligned runs of 4 (w4: their offset / 4, unsigned and
    # pointer-wide so that the compiler sees the alignment and reads them with ld.shared.v4)
    w4 = uint64(warp * (SMALLC_KT // 4))
    w4_step = uint64(kb_n >> 2)
    xrow = int32(lr * sh * iwp + (q - q0) * sw)  # channel 0, tap row 0
    row_step = int32(dh * iwp)
    chan_step = int32(ir * iwp - r_k * row_step)
    c = int32(0)
    while c < cg:
        r = int32(0)
        while r < r_k:
            xo = xrow
            s = int32(0)
            while s < s_k:
                for j in range(4):
                    xv[j] = xs[int32(xo + j * sw)]
                for i in range(SMALLC_KT):
                    wv[i] = ws[uint64(w4 * uint64(4) + uint64(i))]
                for i in range(SMALLC_KT):
                    for j in range(4):
                        acc[i, j] += xv[j] * wv[i]
                w4 = uint64(w4 + w4_step)
                xo = int32(xo + dw)
                s = int32(s + 1)
            xrow = int32(xrow + row_step)
            r = int32(r + 1)
        xrow = int32(xrow + chan_step)
        c = int32(c + 1)
    pq = int32(p_out * q_out)
    k0 = int32(g * kg + kq)
    o = int32((img * k_out + k0) * pq + p * q_out + q)
    for i in range(SMALLC_KT):
        if kq + i < kg:
            bv = b[int32(k0 + i)] if has_bias != 0 else float32(0.0)
            for j in range(4):
                if q + j < q_out:
                    y[int32(o + j)] = acc[i, j] + bv
        o = int32(o + pq)


@cuda.jit(device=True, inline="always")
def _tap(d, ws, wa, wb, use_a, use_b, a, b):
    """One tap for 4 pixels d of two output rows: a += d * ws[wa] (when use_a), b += d * ws[wb]
    (when use_b)."""
    if use_a:
        wv = ws[wa]
        for v in range(4):
            a[v] += d[v] * wv
    if use_b:
        wv = ws[wb]
        for v in range(4):
            b[v] += d[v] * wv


@cuda.jit(device=True, inline="always")
def _row_taps(ds, ws, drow, wa, wb, use_a, use_b, sj, qstep, a, b):
    """The taps of one staged dy row for two output rows: a[v] += sum_jj ds[drow + v + jj*qstep] *
    ws[wa + jj] (when use_a), b[v] likewise with ws[wb + jj] (when use_b), jj < sj, v < 4. With
    qstep == 1 a sliding window of 4 registers takes one new dy value per tap (pixel v at tap jj is
    pixel v + 1 at tap jj - 1); otherwise 4 loads per tap."""
    d = cuda.local.array(4, float32)
    jj = int32(0)
    if qstep == 1:
        for v in range(3):
            d[v] = ds[int32(drow + v)]
        col = int32(drow + 3)
        while jj < sj:
            d[3] = ds[col]
            _tap(d, ws, int32(wa + jj), int32(wb + jj), use_a, use_b, a, b)
            for v in range(3):
                d[v] = d[v + 1]
            col = int32(col + 1)
            jj = int32(jj + 1)
    else:
        col = drow
        while jj < sj:
            for v in range(4):
                d[v] = ds[int32(col + v)]
            _tap(d, ws, int32(wa + jj), int32(wb + jj), use_a, use_b, a, b)
            col = int32(col + qstep)
            jj = int32(jj + 1)


def conv2d_backward_data_smallc_v1(dx, dy, w, n_img, c_in, h_in, w_in, k_out, r_k, s_k, p_out, q_out, sh, sw, ph, pw,
                                   dh, dw, groups, h0, ht, r0, rstep, ri, pbase, pstep, w0, wt, s0, sstep, sj, qbase,
                                   qstep, tpr, tqq, kc, ctiles, tiles, ir, iw, iwp):
    """One stride phase of dx (tiles.bwd_phases): for h = h0 + th*sh (th < Ht), w = w0 + tw*sw (tw < Wt)
    dx[n, c, h, w] = sum_{k of c's group, i < Ri, j < Sj} w[k, c - g*Cg, r0 + i*rstep, s0 + j*sstep]
                                                       * dy[n, k, th + pbase - i*pstep, tw + qbase - j*qstep].

    Block (32*warps,): one image, one channel c (grid y), a tile of tpr pairs of phase rows x tqq
    quads of phase columns (ctiles across, ``tiles`` per image; grid x = N*tiles). The dy rows of the
    tile (ir x iw, pitch iwp, zero outside dy) for kc filters at a time and the phase's taps of
    those filters for channel c ([k][i][Sj-1-j]) are staged in shared memory; warp w takes filters
    w, w + warps, ...; lane l computes phase rows 2l', 2l'+1 x 4 adjacent columns. The warps' partial
    sums are added in warp order through shared memory. Ri*Sj == 0 writes zeros.
    Work: 2*N*C*Ht*Wt*Kg*Ri*Sj FLOPs; traffic (dy (+ halo, per channel) + w + dx) * 4 bytes.
    """
    ds = cuda.shared.array(SMALLC_BWD_SMEM, float32, alignment=SHARED_ALIGN)
    ws = cuda.shared.array(SMALLC_BWD_WS, float32, alignment=SHARED_ALIGN)
    red = cuda.shared.array(BWD_RED, float32)
    tid = int32(cuda.threadIdx.x)
    nw = int32(cuda.blockDim.x) >> 5
    warp = tid >> 5
    lane = tid & 31
    c = int32(cuda.blockIdx.y)
    kg, cg, rs = _per_group(k_out, c_in, r_k, s_k, groups)
    g = int32(c // cg)
    img, tr, tc = _block_tile(tiles, ctiles)
    t0 = int32(tr * tpr * 2)
    u0 = int32(tc * tqq * 4)
    lr = int32(lane // tqq)
    qq = int32(lane - lr * tqq)
    tt = int32(t0 + 2 * lr)
    uu = int32(u0 + 4 * qq)
    live = lr < tpr and tt < ht and uu < wt
    a0 = cuda.local.array(4, float32)
    a1 = cuda.local.array(4, float32)
    for v in range(4):
        a0[v] = float32(0.0)
        a1[v] = float32(0.0)
    taps = int32(ri * sj)
    if taps > 0:  # else no tap reaches the phase: dx = 0
        plane = int32(ir * iwp)
        pq = int32(p_out * q_out)
        # lane = tap (taps <= R*S <= SMALLC <= 32): its filter offset, decoded once
        ti = int32(lane // sj)
        wtap = int32((r0 + ti * rstep) * s_k + s0 + (sj - 1 - (lane - ti * sj)) * sstep)
        wk = int32(((g * kg) * cg + c - g * cg) * rs + wtap)
        wk_step = int32(cg * rs)
        w_step = int32(nw * wk_step)
        dig = _stage_digits(ir, iw)
        k0 = int32(0)
        while k0 < kg:
            nk = int32(min(kc, kg - k0))
            cuda.syncthreads()  # the previous chunk is no longer read
            _stage(ds, dy, int32((img * k_out + g * kg + k0) * pq), nk, pq, p_out, q_out,
                   int32(t0 + pbase - (ri - 1) * pstep), ir, int32(u0 + qbase - (sj - 1) * qstep), iw, iwp, dig)
            k = warp
            wo = int32(wk + (k0 + warp) * wk_step)
            while k < nk:
                if lane < taps:
                    ws[int32(k * taps + lane)] = w[wo]
                k = int32(k + nw)
                wo = int32(wo + w_step)
            cuda.syncthreads()
            if live:
                k = warp
                while k < nk:
                    kb = int32(k * plane + 2 * lr * iwp + 4 * qq)
                    kw = int32(k * taps)
                    if pstep == 1:  # staged row 2l' + rho serves tap row Ri-1-rho of row 0, Ri-rho of row 1
                        rho = int32(0)
                        while rho <= ri:
                            _row_taps(ds, ws, int32(kb + rho * iwp), int32(kw + (ri - 1 - rho) * sj),
                                      int32(kw + (ri - rho) * sj), rho < ri, rho > 0, sj, qstep, a0, a1)
                            rho = int32(rho + 1)
                    else:
                        i = int32(0)
                        while i < ri:
                            drow = int32(kb + (ri - 1 - i) * pstep * iwp)
                            wi = int32(kw + i * sj)
                            _row_taps(ds, ws, drow, wi, wi, True, False, sj, qstep, a0, a1)
                            _row_taps(ds, ws, int32(drow + iwp), wi, wi, False, True, sj, qstep, a0, a1)
                            i = int32(i + 1)
                    k = int32(k + nw)
            k0 = int32(k0 + kc)
    cuda.syncthreads()  # every warp's partial sums are complete
    if warp > 0:
        o = int32((warp - 1) * 8 * 32 + lane)
        for v in range(4):
            red[int32(o + v * 32)] = a0[v]
            red[int32(o + (4 + v) * 32)] = a1[v]
    cuda.syncthreads()
    if warp > 0 or not live:
        return
    wi = int32(1)
    while wi < nw:
        o = int32((wi - 1) * 8 * 32 + lane)
        for v in range(4):
            a0[v] += red[int32(o + v * 32)]
            a1[v] += red[int32(o + (4 + v) * 32)]
        wi = int32(wi + 1)
    o = int32((img * c_in + c) * h_in * w_in + (h0 + tt * sh) * w_in + w0 + uu * sw)
    for v in range(4):
        if uu + v < wt:
            dx[int32(o + v * sw)] = a0[v]
    if tt + 1 < ht:
        o = int32(o + sh * w_in)
        for v in range(4):
            if uu + v < wt:
                dx[int32(o + v * sw)] = a1[v]
