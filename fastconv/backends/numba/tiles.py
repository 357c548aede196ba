"""Block and tile sizes shared by the numba kernels and their launchers; the register-tile FMA, the
division-free index digits of the conv loaders, the grid and split-K of the implicit-GEMM conv
kernels and their geometry argument list.
"""

from __future__ import annotations

import math

from numba import cuda, float32, uint32

from ...argcheck import conv_out_size
from ..cuda import config as _cfg

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


DIGITS = LOADS + 1      # index-digit slots of a backward-data thread: one per B load, then its A load


AS_W = BM + PAD          # row length of the shared A tile


BS_W = BN + PAD          # row length of the shared B tile


AS_SIZE = BK * AS_W      # floats of the flat shared A tile (row kk at kk*AS_W)


BS_SIZE = BK * BS_W      # floats of the flat shared B tile


GEMM_BLOCK = (TX, TY, 1)


ELEMENTWISE_THREADS = 256


REDUCE_THREADS = 256    # power of two (tree reduction)


assert BM == BN and THREADS % BK == 0 and THREADS % BN == 0 and LOADS * THREADS == BM * BK


@cuda.jit(device=True, inline="always")
def _tile_fma(As, Bs, acc, ty, tx):
    """acc[i, j] += sum_kk As[kk*AS_W + ty + TY*i] * Bs[kk*BS_W + tx + TX*j] over one BK slice
    (As, Bs: the flat shared tiles, rows of AS_W and BS_W floats)."""
    a = cuda.local.array(TM, float32)
    b = cuda.local.array(TN, float32)
    # unsigned 32-bit shared offsets carried by a row per step: no negative-index wraparound and
    # no 64-bit multiply in the address math
    a_off = uint32(ty)
    b_off = uint32(tx)
    while a_off < AS_SIZE:
        for i in range(TM):
            a[i] = As[uint32(a_off + TY * i)]
        for j in range(TN):
            b[j] = Bs[uint32(b_off + TX * j)]
        for i in range(TM):
            for j in range(TN):
                acc[i, j] += a[i] * b[j]
        a_off = uint32(a_off + AS_W)
        b_off = uint32(b_off + BS_W)


@cuda.jit(device=True, inline="always")
def _digits_init(k, base, inner, hi, mid, lo, l):
    """Split index k into digits (hi, mid, lo) of the mixed radix (., base/inner, inner):
    k = hi*base + mid*inner + lo; stored at slot l of the three local arrays."""
    h = k // base
    t = k - h * base
    m = t // inner
    hi[l] = h
    mid[l] = m
    lo[l] = t - m * inner


@cuda.jit(device=True, inline="always")
def _digits_step(base, inner):
    """BK in the same digits (dh, dm, dl), so that advancing an index by BK needs no division."""
    dh = BK // base
    t = BK - dh * base
    dm = t // inner
    return dh, dm, t - dm * inner


@cuda.jit(device=True, inline="always")
def _digits_advance(hi, mid, lo, l, dh, dm, dl, mid_n, inner):
    """Slot l's digits += (dh, dm, dl) with carries (mid_n = base/inner); each digit of the step is
    below its radix, so one carry per digit suffices."""
    lo_v = lo[l] + dl
    mid_v = mid[l] + dm
    if lo_v >= inner:
        lo_v -= inner
        mid_v += 1
    hi_v = hi[l] + dh
    if mid_v >= mid_n:
        mid_v -= mid_n
        hi_v += 1
    lo[l] = lo_v
    mid[l] = mid_v
    hi[l] = hi_v


def _gemm_grid(name: str, cols: int, rows: int, z: int):
    """Grid of a conv GEMM: x over columns, y over row tiles, z = groups (x splits); a ValueError
    naming the pass when y or z passes CUDA's 65535 (instead of a launch failure)."""
    return _cfg.check_grid(name, ((cols + BN - 1) // BN, (rows + BM - 1) // BM, z))


def backward_weight_splits(dy_shape, w_shape, groups, target_blocks: int = 264) -> int:
    """How many slices the N*P*Q reduction of the weight gradient is cut into: enough blocks to
    fill the card (about 2 per SM of an H100/H200), each slice at least 8 BK-steps long, and
    groups*splits within the 65535 blocks grid z allows."""
    n, k, p, q = dy_shape
    _, cg, r, s = w_shape
    base = ((cg * r * s + BN - 1) // BN) * ((k // groups + BM - 1) // BM) * groups
    kred = n * p * q
    return max(1, min((target_blocks + base - 1) // base, kred // (8 * BK), _cfg.MAX_GRID_YZ // groups))


def phase_dim(phi: int, n: int, r: int, st: int, pd: int, d: int) -> tuple[int, int, int, int, int, int, int]:
    """One dimension of a backward-data phase (host side, as phase_dim in kernels/conv_index.cuh):
    rows h = phi + t*st (t < nt) receive the taps r0 + i*rstep (i < nr), tap i of row t reading dy
    row t + base - i*pstep. Returns (phi, nt, r0, rstep, nr, base, pstep); nr == 0 when no tap reaches
    the phase (its rows are zero), nt == 0 when the phase has no rows."""
    nt = -(-(n - phi) // st) if phi < n else 0
    rstep = st // math.gcd(st, d)
    # tap r reaches row h when h + pd - r*d is a multiple of st; the first such r is below rstep
    r0 = next((t for t in range(min(r, rstep)) if (phi + pd - t * d) % st == 0), None)
    if r0 is None:
        return phi, nt, 0, rstep, 0, 0, 0
    return phi, nt, r0, rstep, -(-(r - r0) // rstep), (phi + pd - r0 * d) // st, rstep * d // st


def bwd_phases(h: int, w: int, r: int, s: int, stride, padding, dilation):
    """The stride[0]*stride[1] backward-data phases (h % sh, w % sw) that hold outputs, each the 14
    ints (h0, Ht, r0, rstep, Ri, pbase, pstep, w0, Wt, s0, sstep, Sj, qbase, qstep) of phase_dim."""
    return [phase_dim(a, h, r, stride[0], padding[0], dilation[0]) + phase_dim(b, w, s, stride[1], padding[1],
                                                                              dilation[1])
            for a in range(min(stride[0], h)) for b in range(min(stride[1], w))]


def _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    n, c, h, w = x_shape
    k, _, r, s = w_shape
    p = conv_out_size(h, r, stride[0], padding[0], dilation[0])
    q = conv_out_size(w, s, stride[1], padding[1], dilation[1])
    return (n, c, h, w, k, r, s, p, q, stride[0], stride[1], padding[0], padding[1],
            dilation[0], dilation[1], groups)
