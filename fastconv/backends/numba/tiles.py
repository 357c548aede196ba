"""Block and tile sizes shared by the numba kernels and their launchers; the register-tile FMA and
the grid of the implicit-GEMM conv kernels.
"""

from __future__ import annotations

from numba import cuda, float32

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


def _gemm_grid(name: str, cols: int, rows: int, z: int):
    """Grid of a conv GEMM: x over columns, y over row tiles, z = groups (x splits); a ValueError
    naming the pass when y or z passes CUDA's 65535 (instead of a launch failure)."""
    return _cfg.check_grid(name, ((cols + BN - 1) // BN, (rows + BM - 1) // BM, z))
