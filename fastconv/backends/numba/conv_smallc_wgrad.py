"""The numba small-channel weight-gradient kernel (C/G*R*S <= smallc_config.SMALLC; see conv_smallc.py)."""

from __future__ import annotations

from numba import cuda, float32, int32, uint64

from ..cuda.smallc_config import SMALLC_WGRAD_PITCH, SMALLC_WGRAD_SMEM, SMALLC_WGRAD_THREADS
from .conv_gemm import SHARED_ALIGN, _load, _per_group
from .conv_smallc import STAGE_BATCH, _stage, _stage_digits

FILTERS = 32        # filters per block (grid y: chunks of them); the dy tile holds 32 per pixel
SLOT_FILTERS = 16   # filters per thread
SLOT_TAPS = 4       # (c, r, s) taps per thread


@cuda.jit(device=True, inline="always")
def _park(sm, acc, first, tid, nthreads):
    """sm[(i*4 + j)*nthreads + tid] = acc[first + i, j] for i < 8: half of a thread's sums (the
    shared tile holds 32 floats per thread)."""
    for i in range(8):
        for j in range(SLOT_TAPS):
            sm[int32((i * SLOT_TAPS + j) * nthreads + tid)] = acc[first + i, j]


def conv2d_backward_weight_smallc_v1(out, dy, x, n_img, c_in, h_in, w_in, k_out, r_k, s_k, p_out, q_out, sh, sw, ph,
                                     pw, dh, dw, groups, tp, per, rtiles, no, eg, npart, ir, iw, iwp, dso):
    """out[split, k, (c, r, s)] = sum over the slices of block ``split`` of
    dy[n, k, p, q] * x[n, g*Cg + c, p*sh - ph + r*dh, q*sw - pw + s*dw]: the long axis is the
    reduction over N*P*Q. A slice is (image n, tp output rows; rtiles slices per image); block x takes
    slices x*per .. x*per + per - 1 (grid y: chunks of 32 filters, z: groups) and stages each slice's
    x rows (ir x iw, pitch iwp, zero padding) as [c][row][pitch] and its dy as
    [pixel][SMALLC_WGRAD_PITCH] from float dso on. Thread = (slot, part): slot < no owns 16 filters x
    4 consecutive taps (eg tap groups), the npart parts take every npart-th pixel of the slice
    (pixel carried, no division): per pixel 4 x loads, 16 dy loads, 64 FMAs in registers. The parts
    are then summed in part order through shared memory (deterministic), two halves of 8 filters.
    With one split, out is dw itself. Block (SMALLC_WGRAD_THREADS,).
    Work: 2*K*Cg*R*S*N*P*Q FLOPs; traffic (dy + x (+ halo rows) + splits*dw) * 4 bytes.
    """
    sm = cuda.shared.array(SMALLC_WGRAD_SMEM, float32, alignment=SHARED_ALIGN)
    tid = int32(cuda.threadIdx.x)
    nw = int32(SMALLC_WGRAD_THREADS >> 5)
    warp = tid >> 5
    lane = tid & 31
    g = int32(cuda.blockIdx.z)
    kg, cg, rs = _per_group(k_out, c_in, r_k, s_k, groups)
    crs = int32(cg * rs)
    kb0 = int32(int32(cuda.blockIdx.y) * FILTERS)
    nk = int32(min(FILTERS, kg - kb0))
    part = int32(tid // no)
    slot = int32(tid - part * no)
    kt = int32(slot // eg)
    e0 = int32(SLOT_TAPS * (slot - kt * eg))
    off = cuda.local.array(SLOT_TAPS, int32)  # x offset of each tap from a pixel's (row 0, column 0)
    for j in range(SLOT_TAPS):
        e = int32(min(e0 + j, crs - 1))
        c = int32(e // rs)
        t = int32(e - c * rs)
        r = int32(t // s_k)
        off[j] = int32((c * ir + r * dh) * iwp + (t - r * s_k) * dw)
    acc = cuda.local.array((SLOT_FILTERS, SLOT_TAPS), float32)
    for i in range(SLOT_FILTERS):
        for j in range(SLOT_TAPS):
            acc[i, j] = float32(0.0)
    dv = cuda.local.array(SLOT_FILTERS, float32)
    xv = cuda.local.array(SLOT_TAPS, float32)
    v = cuda.local.array(STAGE_BATCH, float32)
    # this thread's first pixel (row, column) of a slice and its step, decoded once
    a_first = int32(part // q_out)
    j_first = int32(part - a_first * q_out)
    a_step = int32(npart // q_out)
    j_step = int32(npart - a_step * q_out)
    pq = int32(p_out * q_out)
    hw = int32(h_in * w_in)
    sl = int32(int32(cuda.blockIdx.x) * per)
    img = int32(sl // rtiles)
    rt = int32(sl - img * rtiles)
    sl_end = int32(min(sl + per, n_img * rtiles))
    dig = _stage_digits(ir, iw)
    d4_step = uint64(npart * (SMALLC_WGRAD_PITCH // 4))
    while sl < sl_end:
        p0 = int32(rt * tp)
        npix = int32(min(tp, p_out - p0) * q_out)
        cuda.syncthreads()  # the previous slice is no longer read
        _stage(sm, x, int32((img * c_in + g * cg) * hw), cg, hw, h_in, w_in, int32(p0 * sh - ph), ir, -pw, iw, iwp, dig)
        # dy tile: lane = filter (conflict-free transposed stores), warps over pixels
        dbase = int32((img * k_out + g * kg + kb0 + lane) * pq + p0 * q_out)
        dst = int32(dso + lane)
        kin = lane < nk
        i0 = warp
        while i0 < npix:
            for u in range(STAGE_BATCH):
                i = int32(i0 + u * nw)
                v[u] = _load(dy, int32(dbase + i), kin and i < npix)
            for u in range(STAGE_BATCH):
                i = int32(i0 + u * nw)
                if i < npix:
                    sm[int32(dst + i * SMALLC_WGRAD_PITCH)] = v[u]
            i0 = int32(i0 + STAGE_BATCH * nw)
        cuda.syncthreads()
        if part < npart:
            # the slot's 16 filters of a pixel: 16-byte aligned runs of 4 (d4: their offset / 4,
            # unsigned and pointer-wide so that the compiler reads them with ld.shared.v4)
            d4 = uint64((dso + part * SMALLC_WGRAD_PITCH + kt * SLOT_FILTERS) >> 2)
            kk = part
            a = a_first
            jc = j_first
            while kk < npix:
                xo = int32(a * sh * iwp + jc * sw)
                for j in range(SLOT_TAPS):
                    xv[j] = sm[int32(xo + off[j])]
                for i in range(SLOT_FILTERS):
                    dv[i] = sm[uint64(d4 * uint64(4) + uint64(i))]
                for i in range(SLOT_FILTERS):
                    for j in range(SLOT_TAPS):
                        acc[i, j] += dv[i] * xv[j]
                kk = int32(kk + npart)
                d4 = uint64(d4 + d4_step)
                a = int32(a + a_step)
                jc = int32(jc + j_step)
                if jc >= q_out:
                    jc = int32(jc - q_out)
                    a = int32(a + 1)
        rt = int32(rt + 1)
        if rt == rtiles:
            rt = int32(0)
            img = int32(img + 1)
        sl = int32(sl + 1)
    # lane = tap (crs <= 32); filter k of the chunk sits in slot (k >> 4)*eg + (e >> 2), row k & 15
    e = lane
    base = int32(int32(cuda.blockIdx.x) * k_out * crs + (g * kg + kb0) * crs + e)
    for half in range(2):
        cuda.syncthreads()  # the tiles (then the previous half) are no longer read
        if part < npart:
            _park(sm, acc, 8 * half, tid, SMALLC_WGRAD_THREADS)
        cuda.syncthreads()
        if e < crs:
            k = warp
            while k < nk:
                if ((k >> 3) & 1) == half:
                    o = int32(((k & 7) * SLOT_TAPS + (e & 3)) * SMALLC_WGRAD_THREADS + (k >> 4) * eg + (e >> 2))
                    s = float32(0.0)
                    q2 = int32(0)
                    while q2 < npart:
                        s += sm[o]
                        o = int32(o + no)
                        q2 = int32(q2 + 1)
                    out[int32(base + k * crs)] = s
                k = int32(k + nw)
