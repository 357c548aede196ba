"""Block and tile sizes shared by the numba kernels and their launchers; the conv GEMM tiles (64x64,
128x128, 32x128, 128x64 and 64x128, 8x8 outputs per thread) with their choice and register-tile
FMA, the small-channel kernels' tiles (smallc_tile), the division-free index digits of the conv
loaders and pooling kernels, the 32-bit grid-stride loop, the backward-data stride phases, the
grid and split-K of the implicit-GEMM conv kernels and their geometry argument list.
"""

from __future__ import annotations

from typing import NamedTuple

from numba import cuda, float32, int32, uint32, uint64

from ... import settings as _settings
from ...argcheck import conv_out_size
from ..cuda import config as _cfg
from ..cuda import smallc_config as scfg
from ..cuda import winograd_config as _wcfg
from ..cuda.config import cdiv

BK = 8                  # reduction slice staged in shared memory per step


PAD = 4                 # shared row padding: k-fast stores hit 8 different banks; keeps rows 16-byte aligned


VEC = 4                 # floats per 16-byte shared load: a thread's rows (columns) come in whole runs of VEC


ELEMENTWISE_THREADS = 256


REDUCE_THREADS = 256    # power of two (tree reduction)


WAVE_BLOCKS = 132       # one block per SM of an H100 SXM: fewer big-tile blocks than this leave SMs idle


class Tile(NamedTuple):
    """Block tile of a conv GEMM: bm rows x bn columns per block of ty_threads x tx_threads
    (= threads) threads, each thread holding a tm x tn register tile (rows ty*tm + i, columns
    tx*tn + j); ``suffix`` names its kernels; ``per_sm``: its blocks resident per SM of an H100
    (registers: tests/test_numba_ptx.py checks ptxas' count against it)."""
    bm: int
    bn: int
    tm: int
    tn: int
    suffix: str
    per_sm: int

    @property
    def wave(self):
        """Blocks of this tile the whole card holds at once."""
        return WAVE_BLOCKS * self.per_sm

    @property
    def ty_threads(self):
        return self.bm // self.tm

    @property
    def tx_threads(self):
        return self.bn // self.tn

    @property
    def threads(self):
        return self.ty_threads * self.tx_threads

    @property
    def block(self):
        """The launch block (x over columns, y over rows)."""
        return (self.tx_threads, self.ty_threads, 1)

    def blocks(self, rows: int, cols: int) -> int:
        """Blocks of this tile over a rows x cols GEMM."""
        return cdiv(rows, self.bm) * cdiv(cols, self.bn)

    @property
    def a_loads(self):
        """Elements of A (bm x BK) one thread stages per BK slice."""
        return self.bm * BK // self.threads

    @property
    def b_loads(self):
        """Elements of B (BK x bn) one thread stages per BK slice."""
        return self.bn * BK // self.threads

    @property
    def b_cols(self):
        """B columns one thread gathers in forward / backward-data: columns tid + j*threads (j <
        b_cols), more than one where the tile has fewer threads than columns."""
        return max(1, self.bn // self.threads)

    @property
    def b_step(self):
        """Reduction rows between one thread's B gathers in forward / backward-data (it gathers
        rows tid // bn + l*b_step, l < b_rows, of each of its columns)."""
        return max(1, self.threads // self.bn)

    @property
    def b_rows(self):
        return self.b_loads // self.b_cols


TILE_64 = Tile(64, 64, 8, 8, "_t64x64", 6)        # 8x8 per thread, 64 threads: weight gradients of <= 64 columns


TILE_128 = Tile(128, 128, 8, 8, "_t128", 1)      # 8x8 outputs per thread: half the shared traffic per FMA


TILE_32 = Tile(32, 128, 8, 8, "_t32x128", 5)     # 8x8 per thread, 64 threads (2 B columns each): <= 32 rows
#                                                   (5 per SM: its backward-weight takes 183 registers)


TILE_128X64 = Tile(128, 64, 8, 8, "_t128x64", 3)   # 8x8 per thread, 128 threads: GEMMs of > 64 rows


TILE_64X128 = Tile(64, 128, 8, 8, "_t64x128", 3)   # 8x8 per thread, 128 threads: GEMMs of 33..64 rows


TILES = (TILE_64, TILE_128, TILE_32, TILE_128X64, TILE_64X128)


for _t in TILES:
    assert _t.tm % VEC == 0 and _t.tn % VEC == 0 and _t.threads % BK == 0
    assert _t.a_loads * _t.threads == _t.bm * BK and _t.b_loads * _t.threads == _t.bn * BK
    assert _t.threads % _t.bn == 0 or _t.bn % _t.threads == 0


def conv_tile(rows: int, cols: int, z: int, wgrad: bool = False) -> Tile:
    """Tile of a conv GEMM of rows x cols, z times (groups x phases); ``wgrad``: a backward-weight
    (cols = Cg*R*S, the short side). The CUDA C family's choice (config.conv_tile on WAVE_BLOCKS
    SMs) mapped by its BM x BN to the tile here of the same shape, else the nearest one (its BK-16
    t64x128k16 of the strided backward-data phases to 64x128)."""
    return _nearest(_cfg.conv_tile(rows, cols, WAVE_BLOCKS, z, wgrad=wgrad))


def winograd_tile(rows: int, cols: int, z: int, wgrad: bool = False) -> Tile:
    """Tile of a Winograd products GEMM: z = A^2 groups of rows x cols (``wgrad``: the backward-weight
    products, cols = C). The CUDA C family's choice for its products (winograd_config.winograd_tile on
    WAVE_BLOCKS SMs), mapped as conv_tile maps its."""
    return _nearest(_wcfg.winograd_tile(rows, cols, WAVE_BLOCKS, z, wgrad))


def _nearest(name: str) -> Tile:
    """The tile here nearest the CUDA C family's tile ``name`` by its BM x BN."""
    bm, bn = _cfg.tile_spec(name)[:2]
    return min(TILES, key=lambda t: abs(t.bm - bm) + abs(t.bn - bn))


SMALLC_PASSES = _settings.CONV_PASSES  # the small-channel kernels serve every pass


def smallc_tile(pass_name: str, geo):
    """The small-channel kernels' tile of conv pass ``pass_name`` (one of SMALLC_PASSES) for the
    _conv_geometry ``geo``: the CUDA C family's choice (smallc_config.smallc_forward_tile (tpr, tqq),
    smallc_backward_data_tile (tpr, tqq, kc), smallc_backward_weight_tile tp) where C/G*R*S <=
    smallc_config.SMALLC and the staged tiles fit shared memory; None (the implicit GEMM runs) otherwise."""
    n, c, h, w, k, r, s, p, q, sh, sw, _, _, dh, dw, groups = geo
    cg, stride, dilation = c // groups, (sh, sw), (dh, dw)
    if cg * r * s > scfg.SMALLC:
        return None
    if pass_name == "forward":
        return scfg.smallc_forward_tile(cg, p, q, r, s, stride, dilation)
    if pass_name == "backward_data":
        return scfg.smallc_backward_data_tile(k // groups, h, w, r, s, stride, dilation)
    if pass_name == "backward_weight":
        return scfg.smallc_backward_weight_tile(cg, p, q, r, s, stride, dilation)
    raise ValueError(f"pass_name: got {pass_name!r}, expected one of {SMALLC_PASSES}")


def make_tile_fma(tile: Tile):
    """Device function tile_fma(As, Bs, acc, ty, tx, a_buf, b_buf) for ``tile``:
    acc[i, j] += sum_kk As[a_buf + kk*(bm+PAD) + ty*tm + i] * Bs[b_buf + kk*(bn+PAD) + tx*tn + j]
    over one BK slice of the flat shared tiles (a_buf, b_buf: the offsets of the buffer in use).
    A thread's rows (and columns) are contiguous and start on a 16-byte boundary (tm, tn, PAD and
    the buffer sizes are multiples of VEC), so the compiler reads them with ld.shared.v4
    (tests/test_numba_ptx.py checks): for 8x8, 4 loads per step instead of 16 (the B reads of 8
    columns then meet 2-way bank conflicts, cheaper than 12 more load instructions)."""
    tm, tn, as_w, bs_w = tile.tm, tile.tn, tile.bm + PAD, tile.bn + PAD

    @cuda.jit(device=True, inline="always")
    def tile_fma(As, Bs, acc, ty, tx, a_buf, b_buf):
        a = cuda.local.array(tm, float32)
        b = cuda.local.array(tn, float32)
        # shared offsets carried by a row per step (no multiply), unsigned (no negative-index
        # wraparound code) and in the pointer width (the shared address is a 64-bit base + offset
        # anyway, so no widening per load)
        a_off = uint64(a_buf + ty * tm)
        b_off = uint64(b_buf + tx * tn)
        a_end = uint64(a_off + uint64(BK * as_w))
        while a_off < a_end:
            for i in range(tm):
                a[i] = As[uint64(a_off + uint64(i))]
            for j in range(tn):
                b[j] = Bs[uint64(b_off + uint64(j))]
            for i in range(tm):
                for j in range(tn):
                    acc[i, j] += a[i] * b[j]
            a_off = uint64(a_off + uint64(as_w))
            b_off = uint64(b_off + uint64(bs_w))
    return tile_fma


@cuda.jit(device=True, inline="always")
def grid_stride():
    """(first index, step) of this thread in a 1-d grid-stride loop, as uint32: the loop
    ``while i < uint32(n): ...; i = uint32(i + step)`` then does 32-bit index math (cuda.grid(1) and range()
    would make it 64-bit) and cannot wrap below n (n < 2**31, which the launchers check)."""
    return (uint32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x),
            uint32(cuda.gridDim.x * cuda.blockDim.x))


@cuda.jit(device=True, inline="always")
def _digits_split(k, base, inner):
    """Index k as digits (hi, mid, lo) of the mixed radix (., base/inner, inner):
    k = hi*base + mid*inner + lo. Divides: for set-up before a loop, which then steps the digits
    with _digits_advance (a step split the same way) instead of dividing."""
    h = k // base
    t = k - h * base
    m = t // inner
    return h, m, t - m * inner


@cuda.jit(device=True, inline="always")
def _digits_init(k, base, inner, hi, mid, lo, l):
    """_digits_split(k, base, inner) stored at slot l of the three local arrays."""
    hi[l], mid[l], lo[l] = _digits_split(k, base, inner)


@cuda.jit(device=True, inline="always")
def _digits_advance(hi, mid, lo, l, dh, dm, dl, mid_n, inner):
    """Slot l's digits += (dh, dm, dl) with carries (mid_n = base/inner); each digit of the step is
    below its radix, so one carry per digit suffices."""
    # int32 throughout (numba widens int32 + int32 to int64; LLVM then rewrote the carries of
    # consecutive slots into a 64-bit multiply in the main loop)
    lo_v = int32(lo[l] + dl)
    mid_v = int32(mid[l] + dm)
    if lo_v >= inner:
        lo_v = int32(lo_v - inner)
        mid_v = int32(mid_v + 1)
    hi_v = int32(hi[l] + dh)
    if mid_v >= mid_n:
        mid_v = int32(mid_v - mid_n)
        hi_v = int32(hi_v + 1)
    lo[l] = lo_v
    mid[l] = mid_v
    hi[l] = hi_v


def _gemm_grid(name: str, cols: int, rows: int, z: int, tile: Tile = TILE_64):
    """Grid of a conv GEMM: x over column tiles, y over row tiles, z = groups (x splits); a ValueError
    naming the pass when y or z passes CUDA's 65535 (instead of a launch failure)."""
    return _cfg.check_grid(name, (cdiv(cols, tile.bn), cdiv(rows, tile.bm), z))


def gemm_splits(base_blocks: int, kred: int, z: int, target_blocks: int) -> int:
    """How many slices a conv GEMM's reduction of length ``kred`` is cut into (split-K) when its
    output tiles make ``base_blocks`` blocks: as many as keep the grid within ``target_blocks``
    (whole waves of the tile, Tile.wave: a wave begun by a few blocks costs as much as a full one),
    each slice at least 8 BK-steps long, and z*splits within the 65535 blocks grid z allows (z: the
    groups the grid's z already holds)."""
    return max(1, min(target_blocks // base_blocks, kred // (8 * BK), _cfg.MAX_GRID_YZ // z))


@cuda.jit(device=True, inline="always")
def _slice_len(kred, splits):
    """slice_len on the device (int32; divides: for set-up before a kernel's main loop). Rounds up
    as (x - 1) // y + 1 (floor division: 0 for x == 0), which cannot pass int32 for kred < 2**31 - BK."""
    per = int32(int32(int32(kred - 1) // splits) + 1)
    return int32(max(BK, int32(int32(int32(per - 1) // BK) + 1) * BK))


def slice_len(kred: int, splits: int) -> int:
    """Length of each of ``splits`` slices of a reduction of ``kred``: a multiple of BK, at least BK
    (_slice_len's body, which the backward-data kernels run on the device)."""
    return int(_slice_len.py_func(kred, splits))


def split_chunk(kred: int, splits: int) -> tuple[int, int]:
    """(splits, chunk): the reduction cut into slices of slice_len, as few slices as that leaves
    (at most ``splits``, at least 1)."""
    chunk = slice_len(kred, splits)
    return max(1, cdiv(kred, chunk)), chunk


def backward_weight_splits(dy_shape, w_shape, groups, target_blocks: int | None = None,
                           tile: Tile = TILE_64) -> int:
    """gemm_splits for the weight gradient: its N*P*Q reduction is long and its Kg x Cg*R*S output
    often a few tiles, so it splits whatever the grid, by default into the whole waves of ``tile``
    within about 2 blocks per SM (one wave where the tile holds more)."""
    n, k, p, q = dy_shape
    _, cg, r, s = w_shape
    base = tile.blocks(k // groups, cg * r * s) * groups
    if target_blocks is None:
        target_blocks = max(tile.wave, 2 * WAVE_BLOCKS // tile.wave * tile.wave)
    return gemm_splits(base, n * p * q, groups, target_blocks)


@cuda.jit(device=True, inline="always")
def _phase_dim(phi, n, r, st, pd, d):
    """One dimension of a backward-data phase (as phase_dim in kernels/conv_index.cuh): rows
    h = phi + t*st (t < nt) of an extent n receive the taps r0 + i*rstep (i < nr) of a filter of r
    taps at dilation d, padding pd, tap i of row t reading dy row t + base - i*pstep. Returns
    (phi, nt, r0, rstep, nr, base, pstep) as int32; nr == 0 when no tap reaches the phase (its rows
    are zero), nt == 0 when the phase has no rows. The backward-data kernels decode their phase
    with it on the device (it divides: set-up before the main loop); phase_dim runs its body on the
    host."""
    nt = int32(0)
    if phi < n:
        nt = int32(int32(n - phi + st - 1) // st)
    a = int32(st)  # gcd(st, d), Euclid's
    b = int32(d)
    while b != 0:
        a, b = b, int32(a % b)
    rstep = int32(st // a)
    # tap t reaches row phi when phi + pd - t*d is a multiple of st; the first such t is below
    # rstep. res = (phi + pd - t*d) mod st as t grows
    res = int32(int32(phi + pd) % st)
    dm = int32(d % st)
    r0 = int32(-1)
    t = int32(0)
    last = min(r, rstep)
    while r0 < 0 and t < last:
        if res == 0:
            r0 = t
        res = int32(res - dm)
        if res < 0:
            res = int32(res + st)
        t = int32(t + 1)
    if r0 < 0:
        return int32(phi), nt, int32(0), rstep, int32(0), int32(0), int32(0)
    nr = int32(int32(r - r0 + rstep - 1) // rstep)
    base = int32(int32(phi + pd - r0 * d) // st)  # an exact multiple: floor is the quotient
    return int32(phi), nt, r0, rstep, nr, base, int32(int32(rstep * d) // st)


def phase_dim(phi: int, n: int, r: int, st: int, pd: int, d: int) -> tuple[int, int, int, int, int, int, int]:
    """_phase_dim on the host (its body, as Python ints)."""
    return tuple(int(v) for v in _phase_dim.py_func(phi, n, r, st, pd, d))


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
