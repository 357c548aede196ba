"""Launch configuration for the CUDA C kernels: pure Python, no CuPy, unit-tested on the CPU.

Everything the launcher (``fastconv.backends.cuda``) decides about grids, tile shapes and
split-K lives here, together with the table of kernel names each ``kernels/*.cu`` file must
define (the static tests compile every file and check each name is an entry point).
"""

from __future__ import annotations

import math

INT32_MAX = 2**31 - 1
# GEMM dimensions and per-plane sizes must stay this far below INT32_MAX: the kernels form
# k0 + BK, n0 + BN and similar tile-overshoot values in 32-bit ints (at most a few hundred past
# the dimension; 4096 leaves room for any tile override).
INT32_MARGIN = 4096
INT32_LIMIT = INT32_MAX - INT32_MARGIN
BLOCK = 256                 # threads per block of element-wise / pooling / reduction kernels
REDUCE_BLOCK = 1024         # threads of the single-block final reductions (sum_scale_v1)
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65535
MAX_SPLITS = 64
MIN_SPLIT_CHUNK = 64        # reduction elements per split-K slice, at least
MIN_SLICE_ELEMS = 4096      # elements per block of a split per-channel reduction, at least
SPLIT_ALIGN = 8             # split-K slices are whole BK tiles (BK 4 or 8; the BK 16 TF32 tiles: 16)
SMALLC = 32                 # C/G*R*S limit of the small-channel kernels (CONV_SMALLC in conv.cu)
SMALLC_THREADS = 256

# tile name -> (BM, BN, BK, threads, min blocks per SM), as CONV_V3_KERNELS instantiates them in
# kernels/conv.cu (tests/test_conv_build.py compares the two); every tile holds 8x8 outputs per
# thread. The min blocks let ptxas use up to 170 registers (255 for t128x128): 155-167 with no
# spills (sm_90), where 128 spilled.
CONV_TILES = {
    "t128x128": (128, 128, 8, 256, 1),
    "t128x64": (128, 64, 8, 128, 3),
    "t64x128": (64, 128, 8, 128, 3),
    "t64x64": (64, 64, 8, 64, 6),
    "t32x128": (32, 128, 4, 64, 6),
    "t64x32": (64, 32, 4, 32, 12),
}
# The TF32 (mma.sync m16n8k8) tiles, as CONV_V3_TF32_KERNELS instantiates them (tests compare),
# same fields; each has the BM x BN of the CONV_TILES entry of its name (conv_grid serves both).
# Warp tiles: t128x128 64x64 (4 x 8 mma tiles per warp: an A fragment serves 8 mma, a B fragment
# 4), t128x64 64x32, t64x128 32x64, t64x64 32x64 (2 warps). Registers (sm_90, no spills): 220-231,
# 162-166, 147-157 and 148-157 of their 255, 170, 170, 170.
TF32_TILES = {
    "t128x128": (128, 128, 8, 128, 2),
    "t128x64": (128, 64, 16, 128, 3),
    "t64x128": (64, 128, 8, 128, 3),
    "t64x64": (64, 64, 8, 64, 6),
}
ACTIVATIONS = {None: 0, "relu": 1, "leaky_relu": 2, "tanh": 3}  # the act codes of conv_act in conv_gemm.cuh

_CONV_PASSES = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight")

KERNELS = {
    "conv.cu": tuple(f"{p}_v1" for p in _CONV_PASSES)
    + tuple(f"{p}_v3_{t}" for p in _CONV_PASSES for t in CONV_TILES)
    + tuple(f"{p}_v3_tf32_{t}" for p in _CONV_PASSES for t in TF32_TILES)
    + ("conv2d_forward_smallc_v1", "conv2d_backward_data_smallc_v1", "conv2d_pack_forward_v1",
       "conv2d_pack_backward_data_v1", "conv2d_splitk_reduce_v1"),
    "activation.cu": tuple(f"{a}_{p}_{v}" for a in ("relu", "leaky_relu", "sigmoid", "tanh")
                           for p in ("forward", "backward") for v in ("v1", "v2"))
    + ("dropout_forward_v1", "dropout_backward_v1"),
    "pool.cu": tuple(f"{op}_{v}" for op in ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
                                             "avg_pool2d_backward") for v in ("v2", "v3_2x2", "v3_2x2w"))
    + tuple(f"relu_max_pool2d_{p}_{v}" for p in ("forward", "backward") for v in ("v1", "v2_2x2", "v2_2x2w")),
    "bias.cu": ("conv2d_backward_bias_v2_f1", "conv2d_backward_bias_v2_f4", "conv2d_backward_bias_finish_v2",
                "bias_add_v1"),
    "batchnorm.cu": ("batchnorm_forward_eval_v2",)
    + tuple(f"batchnorm_{k}_v2_f{v}" for k in ("sum", "sqdev", "forward_train", "backward_sums", "backward")
            for v in (1, 4)),
    "loss.cu": ("softmax_xent_rows_v1", "bce_logits_v1", "sum_scale_v1"),
    "optim.cu": ("sgd_update_v1", "adam_update_v1", "adam_update_v2", "accumulate_v1",
                 "sgd_update_multi_v1", "adam_update_multi_v2"),
    "linear.cu": ("linear_forward_v1", "linear_backward_data_v1", "linear_backward_weight_v1"),
}

LINEAR_TILE = (64, 64)      # (LIN_BM, LIN_BN) of kernels/linear.cu
LINEAR_THREADS = 256        # LIN_THREADS
LINEAR_ACTIVATIONS = {None: 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}  # its `act` numbers

CONV_FILES_CHECKED_FOR_SPILLS = ("conv.cu",)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def check_int32(name: str, value: int, what: str) -> int:
    """Kernels index GEMM dimensions with 32-bit ints and add tile offsets to them; refuse sizes
    above INT32_LIMIT (INT32_MAX less INT32_MARGIN) so that no such sum overflows."""
    if value > INT32_LIMIT:
        raise ValueError(f"{name}: got {what} = {value}, expected at most {INT32_LIMIT} "
                         "(the GPU kernels index this dimension with 32-bit ints); split the batch")
    return value


def check_grid(name: str, grid) -> tuple[int, int, int]:
    """A 3-d launch grid within CUDA's limits (x <= 2^31 - 1, y and z <= 65535, all >= 1)."""
    gx, gy, gz = (int(g) for g in grid)
    if not (1 <= gx <= MAX_GRID_X and 1 <= gy <= MAX_GRID_YZ and 1 <= gz <= MAX_GRID_YZ):
        raise ValueError(f"{name}: got a launch grid of {(gx, gy, gz)} blocks, expected 1 <= x <= {MAX_GRID_X} "
                         f"and 1 <= y, z <= {MAX_GRID_YZ} (y: output-row tiles, z: groups x reduction splits); "
                         "use fewer groups or channels per call")
    return gx, gy, gz


def elementwise_blocks(n: int, num_sms: int, block: int = BLOCK, per_thread: int = 1) -> int:
    """Blocks for a grid-stride loop over n items (per_thread items per thread per step):
    enough to cover n once, capped at 32 blocks per SM (the loop covers the rest); >= 1."""
    if n < 0 or num_sms < 1 or block < 1 or per_thread < 1:
        raise ValueError(f"elementwise_blocks: got n={n}, num_sms={num_sms}, block={block}, "
                         f"per_thread={per_thread}; expected n >= 0 and positive others")
    need = cdiv(cdiv(n, per_thread), block)
    return max(1, min(need, 32 * num_sms))


def channel_splits(channels: int, rows: int, row_elems: int, num_sms: int) -> tuple[int, int]:
    """Slices of a per-channel reduction over an (N, C, HW) tensor (kernels/reduce.cuh): returns
    (splits, chunk), ``chunk`` batch rows per slice and splits = ceil(rows / chunk), so the slices
    are non-empty and tile [0, rows) exactly. Aims at about 4 blocks per SM in all (channels x
    splits) while each block keeps >= MIN_SLICE_ELEMS elements (enough loads in flight per thread);
    the grid's y extent is ``channels`` (<= 65535, checked by the launcher's check_grid)."""
    if channels < 1 or rows < 1 or row_elems < 1 or num_sms < 1:
        raise ValueError(f"channel_splits: got channels={channels}, rows={rows}, row_elems={row_elems}, "
                         f"num_sms={num_sms}; expected positive sizes")
    want = cdiv(4 * num_sms, channels)
    want = max(1, min(want, rows, rows * row_elems // MIN_SLICE_ELEMS))
    chunk = cdiv(rows, want)
    return cdiv(rows, chunk), chunk


def warp_rows_blocks(rows: int, block: int = BLOCK) -> int:
    """Blocks for a one-warp-per-row kernel."""
    return max(1, cdiv(rows * 32, block))


def tile_spec(tile: str, tf32: bool = False) -> tuple[int, int, int, int, int]:
    """(BM, BN, BK, threads, min blocks per SM) of a v3 tile: TF32_TILES with tf32, else CONV_TILES."""
    return (TF32_TILES if tf32 else CONV_TILES)[tile]


def conv_tile(m: int, n: int, num_sms: int, z: int = 1, tf32: bool = False) -> str:
    """Tile for a GEMM of m rows by n columns, z times (groups x phases); with tf32 one of
    TF32_TILES (t64x64 stands in for the small-m and small-n tiles).

    N <= 32 (backward-weight of a small-channel conv, N = C/G*R*S): t64x32. m <= 32: t32x128 (no
    row padding past 32). Otherwise the rows pick 64- or 128-row tiles (m <= 64: 64), and a
    bigger tile is kept only while it still gives every SM a block; split-K (conv_splits) then
    fills the rest of the wave. Not yet tuned on a GPU.
    """
    if m < 1 or n < 1 or z < 1:
        raise ValueError(f"conv_tile: got m={m}, n={n}, z={z}, expected positive GEMM sizes")
    if tf32 and (n <= 32 or m <= 32):
        return "t64x64"
    if n <= 32:
        return "t64x32"
    if m <= 32:
        return "t32x128"
    order = ("t64x128", "t64x64") if m <= 64 else ("t128x128", "t128x64", "t64x64")
    for tile in order[:-1]:
        bm, bn = CONV_TILES[tile][:2]
        if cdiv(m, bm) * cdiv(n, bn) * z >= num_sms:
            return tile
    return order[-1]


def conv_grid(m: int, n: int, tile: str, z: int) -> tuple[int, int, int]:
    """Grid (x over GEMM columns, y over GEMM rows, z = groups x phases x splits)."""
    bm, bn = CONV_TILES[tile][:2]
    gy = cdiv(m, bm)
    if gy > MAX_GRID_YZ or z > MAX_GRID_YZ:
        raise ValueError(f"conv grid: got {gy} row tiles and z = {z}, expected at most {MAX_GRID_YZ} each")
    return (cdiv(n, bn), gy, z)


def conv_splits(m: int, n: int, red: int, tile: str, z: int, num_sms: int, force: int | None = None,
                tf32: bool = False) -> tuple[int, int]:
    """Split-K for any pass: (splits, chunk) with chunk a multiple of SPLIT_ALIGN (and of the tile's
    BK: tile_spec(tile, tf32)) and splits = ceil(red / chunk), so every slice is non-empty and they
    tile [0, red) exactly.

    Splits only when the grid is less than one wave (num_sms x the tile's blocks per SM), to about
    one wave; each slice >= MIN_SPLIT_CHUNK long, splits <= MAX_SPLITS, z*splits <= 65535. The
    kernel computes a slice end as z*chunk + chunk in a 32-bit int (at most splits*chunk): when
    that would pass INT32_LIMIT the reduction is not split. A reduction of 0 (a phase no tap
    reaches) is one empty slice. ``force`` (the conv_splits setting) asks for that many splits
    instead of the wave rule (still whole SPLIT_ALIGN slices and z*splits <= 65535).
    """
    if red < 0:
        raise ValueError(f"conv_splits: got a reduction of {red}, expected >= 0")
    gx, gy, _ = conv_grid(m, n, tile, z)
    _, _, bk, _, minb = tile_spec(tile, tf32)
    align = max(SPLIT_ALIGN, bk)
    blocks, wave = gx * gy * z, num_sms * minb
    want = 1
    if force is not None:
        want = max(1, min(force, MAX_GRID_YZ // z))
    elif blocks < wave:
        want = min(cdiv(wave, blocks), MAX_SPLITS, max(1, red // MIN_SPLIT_CHUNK), MAX_GRID_YZ // z)
    chunk = max(align, cdiv(cdiv(max(red, 1), want), align) * align)
    splits = cdiv(max(red, 1), chunk)
    if splits * chunk > INT32_LIMIT:
        splits, chunk = 1, cdiv(red, align) * align
    return splits, chunk


def phase_max_taps(r: int, stride: int, dilation: int) -> int:
    """The most filter taps one backward-data phase has along a dimension (phase_max_taps in
    kernels/conv_index.cuh): ceil(r / (stride / gcd(stride, dilation)))."""
    return cdiv(r, stride // math.gcd(stride, dilation))


def activation_code(activation) -> int:
    """The kernels' code of a fused activation (None, "relu", "leaky_relu", "tanh")."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: got {activation!r}, expected one of None, 'relu', 'leaky_relu', 'tanh'")
    return ACTIVATIONS[activation]


def linear_grid(m: int, n: int) -> tuple[int, int, int]:
    """Grid of kernels/linear.cu for an m x n output (x over column tiles, y over row tiles)."""
    return check_grid("linear", (cdiv(n, LINEAR_TILE[1]), cdiv(m, LINEAR_TILE[0]), 1))
