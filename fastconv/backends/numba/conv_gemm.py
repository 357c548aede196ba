"""The parts the numba implicit-GEMM conv kernels (conv_kernels.py) share: the main loop over the
reduction (double-buffered shared tiles, one barrier per BK step, the register-tile FMA of
tiles.make_tile_fma), the thread's load coordinates and the split-K slice of a block; with the
small-channel kernels (conv_smallc*.py) the shared-tile alignment, masked loads, the bounds test
of a plane position and the per-group sizes.
"""

from __future__ import annotations

from numba import cuda, float32, int32, uint32, uint64

from .driver import SIMULATOR
from .tiles import BK, PAD, _digits_advance, _digits_split, make_tile_fma

# shared tiles 16-byte aligned, so that tile_fma reads runs of 4 floats with vector loads (the
# simulator refuses the argument; it has no vector loads either)
SHARED_ALIGN = None if SIMULATOR else 16


def _main_loop(tile, load):
    """Device function main_loop(acc, k_begin, k_end, ops, st, ar, a_st, b_st, b_ls, b_js) for
    ``tile``: acc (tm x tn, zeroed here) = this thread's share of A[:, k_begin:k_end] @ B[k_begin:k_end, :],
    with load(va, vb, k0, k_end, ops, st, ar) filling the registers of slice k0 (zero where out of
    range). Register l of A goes to shared offset a_st + l*(tile.threads//BK), register
    l*tile.b_cols + j of B to b_st + l*b_ls + j*b_js."""
    tm, tn, a_loads, b_loads = tile.tm, tile.tn, tile.a_loads, tile.b_loads
    b_rows, b_cols = tile.b_rows, tile.b_cols
    a_buf, b_buf = BK * (tile.bm + PAD), BK * (tile.bn + PAD)
    a_size, b_size = 2 * a_buf, 2 * b_buf
    a_ls = tile.threads // BK
    tile_fma = make_tile_fma(tile)

    @cuda.jit(device=True, inline="always")
    def main_loop(acc, k_begin, k_end, ops, st, ar, a_st, b_st, b_ls, b_js):
        As = cuda.shared.array(a_size, float32, alignment=SHARED_ALIGN)
        Bs = cuda.shared.array(b_size, float32, alignment=SHARED_ALIGN)
        va = cuda.local.array(a_loads, float32)
        vb = cuda.local.array(b_loads, float32)
        tx = int32(cuda.threadIdx.x)
        ty = int32(cuda.threadIdx.y)
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = 0.0
        k0 = int32(k_begin)
        cur_a = int32(0)  # offsets of the buffers being filled; the other one (a_buf - cur_a) is multiplied
        cur_b = int32(0)
        while True:
            more = k0 < k_end
            if more:
                load(va, vb, k0, k_end, ops, st, ar)
            if k0 > k_begin:
                tile_fma(As, Bs, acc, ty, tx, int32(a_buf - cur_a), int32(b_buf - cur_b))
            if not more:
                break
            # the stores' offsets as a 64-bit base + constants (one address per operand, the
            # constants folded into the stores; an int32 offset per store is sign-extended apart)
            a_at = uint64(cur_a + a_st)
            for l in range(a_loads):
                As[uint64(a_at + uint64(l * a_ls))] = va[l]
            b_at = uint64(cur_b + b_st)
            for l in range(b_rows):
                for j in range(b_cols):
                    Bs[uint64(b_at + uint64(l * b_ls + j * b_js))] = vb[l * b_cols + j]
            cuda.syncthreads()
            cur_a = int32(a_buf - cur_a)
            cur_b = int32(b_buf - cur_b)
            k0 = int32(k0 + BK)
    return main_loop


def _thread(tile):
    """Device function thread() -> (tx, ty, the thread's A row / reduction index a_m, a_kk, its
    first B column / reduction index b_col, b_kk when B is loaded column-wise across the tile (see
    Tile.b_cols, Tile.b_step), the block's first row m0 and column n0)."""
    bm, bn, tx_threads = tile.bm, tile.bn, tile.tx_threads

    @cuda.jit(device=True, inline="always")
    def thread():
        tx = int32(cuda.threadIdx.x)
        ty = int32(cuda.threadIdx.y)
        tid = int32(ty * tx_threads + tx)
        return (tx, ty, tid // BK, tid % BK, tid % bn, tid // bn, int32(cuda.blockIdx.y) * bm,
                int32(cuda.blockIdx.x) * bn)
    return thread


def _columns(tile):
    """Device function columns(ok, img, a_at, b_at, first, ncols, plane, inner, img_n, img_0, a_mul,
    a_add, b_mul, b_add) filling four tile.b_cols-long arrays for the B columns a thread gathers
    in forward / backward-data, first + j*tile.threads, each decoded once as (n, a, b) (col =
    n*plane + a*inner + b): ok[j] = the column is below ncols, img[j] = n*img_n + img_0,
    a_at[j] = a*a_mul + a_add, b_at[j] = b*b_mul + b_add."""
    b_cols, threads = tile.b_cols, tile.threads

    @cuda.jit(device=True, inline="always")
    def columns(ok, img, a_at, b_at, first, ncols, plane, inner, img_n, img_0, a_mul, a_add, b_mul, b_add):
        for j in range(b_cols):
            col = int32(first + j * threads)
            n, a, b = _digits_split(col, plane, inner)
            ok[j] = int32(col < ncols)
            img[j] = int32(n * img_n + img_0)
            a_at[j] = int32(a * a_mul + a_add)
            b_at[j] = int32(b * b_mul + b_add)
    return columns


def _gather(tile):
    """Device function gather(vb, src, k0, k_end, b_kk, dig, scale, step, radix, cols, plane): the
    B gather of forward and backward-data. Row l < tile.b_rows of the slice (reduction index
    k0 + b_kk + l*tile.b_step, digits (d0, d1, d2) = dig[0][l], dig[1][l], dig[2][l]) of the
    thread's column j (cols = (ok, img, a_at, b_at) of columns()):
    vb[l*b_cols + j] = src[img[j] + d0*s0 + a*b_n + b], a = a_at[j] + d1*s1, b = b_at[j] + d2*s2
    ((s0, s1, s2) = scale, (a_n, b_n) = plane), zero where the column or the row is out of range
    or (a, b) lies outside the a_n x b_n plane; then the row's digits advance by BK (step: BK's
    digits, radix: (mid_n, inner) of _digits_advance)."""
    b_rows, b_cols, b_step = tile.b_rows, tile.b_cols, tile.b_step

    @cuda.jit(device=True, inline="always")
    def gather(vb, src, k0, k_end, b_kk, dig, scale, step, radix, cols, plane):
        d0, d1, d2 = dig
        s0, s1, s2 = scale
        ok, img, a_at, b_at = cols
        a_n, b_n = plane
        for l in range(b_rows):
            k_ok = int32(k0 + b_kk + l * b_step) < k_end
            off0 = int32(d0[l] * s0)
            off1 = int32(d1[l] * s1)
            off2 = int32(d2[l] * s2)
            for j in range(b_cols):
                a = int32(a_at[j] + off1)
                b = int32(b_at[j] + off2)
                vb[l * b_cols + j] = _load(src, int32(img[j] + off0 + a * b_n + b),
                                           (ok[j] != 0) & k_ok & _inside(a, a_n, b, b_n))
            _digits_advance(d0, d1, d2, l, step[0], step[1], step[2], radix[0], radix[1])
    return gather


@cuda.jit(device=True, inline="always")
def _load(a, i, ok):
    """a[i] where ok, else 0 (a[i] is then not read). The offset is read as unsigned: where ok it
    is in [0, 2**31), and a zero-extended index costs no sign extension in the 64-bit address."""
    if ok:
        return a[uint32(i)]
    return float32(0.0)


@cuda.jit(device=True, inline="always")
def _inside(h, h_n, w, w_n):
    """(h, w) lies in an h_n x w_n plane: one unsigned compare per side (a negative int32 is
    above every plane size as uint32)."""
    return (uint32(h) < uint32(h_n)) & (uint32(w) < uint32(w_n))


@cuda.jit(device=True, inline="always")
def _per_group(k_out, c_in, r_k, s_k, groups):
    """(output channels, input channels per group, filter taps R*S)."""
    return int32(k_out // groups), int32(c_in // groups), int32(r_k * s_k)


@cuda.jit(device=True, inline="always")
def _split(z, splits, chunk, kred):
    """(group, split, k_begin, k_end) of a block whose blockIdx.z is group*splits + split."""
    g = int32(z // splits)
    split = int32(z - g * splits)
    k_begin = int32(split * chunk)
    return g, split, k_begin, int32(min(kred, k_begin + chunk))
