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
PACK_TILE = 32              # the weight pack and nchw_to_nhwc kernels' transpose tile (kernels/conv.cu PACK_TILE) ...
PACK_BLOCK = 256            # ... and their threads per block (PACK_ROWS warps)
REDUCE_BLOCK = 1024         # threads of the single-block final reductions (sum_scale_v1)
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65535
MAX_SPLITS = 512
MIN_SPLIT_CHUNK = 256       # reduction elements per split-K slice of forward / backward-data, at least
TF32_MIN_SPLIT_CHUNK = 400  # the same for the TF32 tiles
WGRAD_CHUNK = 384           # backward-weight: reduction elements per slice, about (conv_splits)
WGRAD_WAVES = 4             # backward-weight: split up to this many waves of blocks
TF32_WGRAD_MIN_CHUNK = 128  # TF32 backward-weight: reduction elements per slice, at least (conv_splits)
TF32_WGRAD_WIDE_CHUNK = 512  # ... and the slice length of one wave of t128x128 blocks that takes it (conv_tile)
PHASED_BLOCKS_PER_SM = 3    # fp32 backward-data phases: split up to this many blocks per SM (conv_splits)
MAX_WORKSPACE = 1 << 24     # split-K workspace elements (64 MiB of float32), at most
REDUCE_WARP_SPLITS = 32     # split counts from which conv2d_splitk_reduce_v2 (warps share the splits) sums them
MIN_SLICE_ELEMS = 4096      # elements per block of a split per-channel reduction, at least
BN_COLS = 32                # channels per block (one per lane) of batchnorm.cu's c32 kernels, for (N, C) inputs
SPLIT_ALIGN = 8             # split-K slices are whole BK tiles (BK 4 or 8; the BK 16 tiles: 16)

# tile name -> (BM, BN, BK, threads, min blocks per SM), as CONV_V3_KERNELS instantiates them in
# kernels/conv.cu (tests/test_conv_build.py compares the two); every tile holds 8x8 outputs per
# thread. The min blocks let ptxas use up to 170 registers (255 for t128x128): 155-167 with no
# spills (sm_90), where 128 spilled. The wide-k tile t64x128k16 (BK 16) halves the loop's fixed
# work per FFMA but holds 16 gathered columns per thread: 197-213 registers (sm_90), so it runs 8
# warps per SM (at 170 it spilled).
CONV_TILES = {
    "t128x128": (128, 128, 8, 256, 1),
    "t128x64": (128, 64, 8, 128, 3),
    "t64x128": (64, 128, 8, 128, 3),
    "t64x64": (64, 64, 8, 64, 6),
    "t32x128": (32, 128, 4, 64, 6),
    "t64x32": (64, 32, 4, 32, 12),
    "t64x128k16": (64, 128, 16, 128, 2),
}
# The TF32 (mma.sync m16n8k8) tiles, as CONV_V3_TF32_KERNELS instantiates them in
# kernels/conv_tf32.cu (tests compare; its comment says why each has its warp tiles and BK), same
# fields: the BM x BN of five fp32 tiles, whose names they share, and t128x64w2 (conv_grid serves both
# tables by name), all within 48 KiB of static shared memory (TileGeom asserts it). t128x64w2 is for
# sweeps only until a GPU has timed it: conv_tile never picks it. Deeper-k TF32 tiles won no row of an
# H200 sweep (522e92d, 4-byte gathers) and were dropped: t128x128k16, t128x64k32, t64x128k32 and
# t64x64k32 (54-78 KiB of dynamic shared memory) ran >= 1.04x slower than the heuristic's tile on every row.
TF32_TILES = {
    "t128x128": (128, 128, 8, 128, 2),
    "t128x64": (128, 64, 16, 128, 3),
    "t64x128": (64, 128, 16, 128, 3),
    "t64x64": (64, 64, 8, 64, 6),
    "t128x64w2": (128, 64, 16, 64, 4),
    "t32x128": (32, 128, 16, 128, 4),
}
# Filter taps per dimension the TF32 tiles' forward and backward-data serve, at most (GATHER_MASK_TAPS
# of kernels/conv_index.cuh: their loaders test bounds by per-column bitmasks; tests compare).
GATHER_MASK_TAPS = 15
# conv2d by Winograd's minimal filtering on 4 x 4 tiles (kernels/winograd.cu): the conv_tile setting
# value that asks for it, the filter sizes it has tables for, and its tile side (WINO_M).
WINOGRAD = "winograd"
WINOGRAD_TAPS = (3, 5)
WINOGRAD_TILE = 4
# Its filter transform's block (WINO_FT_M x WINO_FT_KK): output channels x reduction indices of the
# products' GEMM, a thread each; its backward-weight output transform's threads per block (small
# blocks: lenet.conv2's 64 x 32 x 5 rows make only 160 of them).
WINOGRAD_FILTER_BLOCK = (32, 8)
WINOGRAD_WGRAD_OUTPUT_BLOCK = 64
# Slots ((image, channel, tile) each) per block of the output transform (WINO_SLOTS), served by A
# threads apiece.
WINOGRAD_SLOTS = 32
ACTIVATIONS = {None: 0, "relu": 1, "leaky_relu": 2, "tanh": 3}  # the act codes of conv_act in common.cuh
# The 2x2 / stride-2 / unpadded pooling kernels of kernels/pool_2x2.cu, by suffix (max_pool2d_*_v3_<suffix>,
# avg_pool2d_*_v3_<suffix>, relu_max_pool2d_*_v2_<suffix>): (outputs per thread per grid-stride step,
# the multiple of W they need, the byte alignment every array needs, the passes they serve). The
# launcher takes the first of POOL_2X2_ORDER that fits a call, else the general kernels; the
# pool_variant setting forces one of these or POOL_GENERAL (benchmarks/gpu_table.py times each).
POOL_2X2 = {
    "2x2": (1, 2, 8, ("forward", "backward")),
    "2x2w": (2, 4, 16, ("forward", "backward")),
    "2x2v4x2": (8, 8, 16, ("backward",)),    # 16-byte dy loads of two items in flight, sector-whole stores
    "2x2r": (2, 4, 16, ("backward",)),       # by dx rows: a warp's 16-byte stores 512 contiguous bytes
}
POOL_2X2_ORDER = ("2x2v4x2", "2x2w", "2x2")
POOL_GENERAL = "general"

_CONV_PASSES = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight")

KERNELS = {
    "conv.cu": tuple(f"{p}_v1" for p in _CONV_PASSES)
    + tuple(f"{p}_v3_{t}" for p in _CONV_PASSES for t in CONV_TILES)
    + ("conv2d_pack_forward_v1", "conv2d_pack_backward_data_v1", "conv2d_splitk_reduce_v1", "conv2d_splitk_reduce_v2",
       "nchw_to_nhwc_v1"),
    "conv_smallc.cu": ("conv2d_forward_smallc_v2", "conv2d_backward_data_smallc_v2",
                       "conv2d_backward_weight_smallc_v1"),
    "conv_tf32.cu": tuple(f"{p}_v3_tf32_{t}" for p in _CONV_PASSES for t in TF32_TILES)
    + tuple(f"conv2d_backward_weight_v3_tf32_vec_{t}" for t in TF32_TILES),   # 16-byte gathers: backward-weight only
    "winograd.cu": tuple(f"conv2d_winograd_{k}_v{v}_r{r}" for r in WINOGRAD_TAPS for k, v in
                         (("input", 3), ("filter", 2), ("output", 2), ("wgrad_dy", 3), ("wgrad_output", 2))),
    "activation.cu": tuple(f"{a}_{p}_{v}" for a in ("relu", "leaky_relu", "sigmoid", "tanh")
                           for p in ("forward", "backward") for v in ("v1", "v2"))
    + ("dropout_forward_v1", "dropout_forward_v2", "dropout_backward_v1"),
    "pool.cu": tuple(f"{op}_{p}_v2" for op in ("max_pool2d", "avg_pool2d") for p in ("forward", "backward"))
    + ("relu_max_pool2d_forward_v1", "relu_max_pool2d_backward_v1"),
    "pool_2x2.cu": tuple(f"{op}_{p}_{v}_{s}"
                         for op, v in (("max_pool2d", "v3"), ("avg_pool2d", "v3"), ("relu_max_pool2d", "v2"))
                         for s, spec in POOL_2X2.items() for p in spec[3]),
    "bias.cu": ("conv2d_backward_bias_v3_f1", "conv2d_backward_bias_v3_f4", "bias_add_v1"),
    "batchnorm.cu": ("batchnorm_forward_eval_v2",)
    + tuple(f"batchnorm_{k}_v{ver}_{form}" for k, ver in (("stats", 3), ("forward_train", 3), ("backward_sums", 2),
                                                           ("backward", 2)) for form in ("f1", "f4", "c32")),
    "loss.cu": ("softmax_xent_rows_v1", "bce_logits_v1", "sum_scale_v1", "gan_stats_v1"),
    "optim.cu": ("sgd_update_v1", "sgd_update_v2", "adam_update_v1", "adam_update_v2", "adam_update_v3",
                 "adam_update_v4", "accumulate_v2"),
    "linear.cu": ("linear_forward_v2", "linear_backward_data_v2", "linear_backward_weight_v1",
                  "linear_splitk_reduce_v1", "linear_forward_rows_v1", "linear_backward_rows_v1"),
    "embedding.cu": ("embedding_forward_v1", "embedding_backward_v1", "class_projection_forward_v1"),
}

LINEAR_TILE = (64, 64)      # (LIN_BM, LIN_BN) of kernels/linear.cu
LINEAR_BK = 8               # LIN_BK: split-K slices are whole k-steps
LINEAR_MIN_CHUNK = 128      # reduction elements per split-K slice, at least
LINEAR_MAX_SPLITS = 64
LINEAR_THREADS = 256        # LIN_THREADS
LINEAR_ACTIVATIONS = {None: 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}  # its `act` numbers

CONV_FILES_CHECKED_FOR_SPILLS = ("conv.cu", "conv_smallc.cu", "conv_tf32.cu", "winograd.cu")


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


def conv_tile(m: int, n: int, num_sms: int, z: int = 1, tf32: bool = False, wgrad: bool = False,
              red: int = 0) -> str:
    """Tile for a GEMM of m rows by n columns, z times (groups x phases); ``wgrad``: the GEMM is a
    backward-weight (n = C/G*R*S columns, a long reduction of ``red`` over N*P*Q); with tf32 one of
    TF32_TILES.

    Tuned on an H200 by benchmarks/conv_sweep.py (every tile x split count of the 18 benchmark rows;
    the launch then splits the reduction, conv_splits): the fastest tile was the largest one whose
    rows the GEMM fills, with split-K making up the wave, so
    - backward-weight with n <= 64 (small-channel convs): t64x64;
    - m <= 32: t32x128, TF32 too (untimed: a 64-row tile wastes half its mma work on padding rows;
      lenet.conv2 backward-data, 32 rows, ran TF32 at 0.73x cuDNN on t64x128);
    - m <= 64: t64x128; for z > 1 (the phases of a strided backward-data) t64x128k16 in fp32 and
      t64x64 in TF32 (dcgan.d2's fastest on an H200: 1.04x t64x64 / 1.02x t64x128); t64x64 for fp32
      backward-weight (n is the small side there; TF32 lenet.conv2 ran 1.13x faster on t64x128);
      TF32 t64x128 (at BK 8 with 4-byte gathers, 522e92d, H200: lenet.conv2 / resnet.c2 forward and
      backward-data 1.01-1.05x faster than at BK 16; with 16-byte gathers it takes BK 16, untimed);
    - otherwise t128x64, or t128x128 when the whole GEMM is at most a quarter wave of 128x128 blocks
      (dcgan.d3 forward, dcgan.d2 backward-weight: few blocks, each split many ways) or at least two
      waves of them (large GEMMs: its higher arithmetic intensity). TF32 (its own tiles, swept at
      commit d780806): t128x64, and t128x128 for large GEMMs; TF32 backward-weight (a reduction of
      ``red``, split to one wave by conv_splits) takes t128x128 when one wave of its blocks still leaves
      slices of at least TF32_WGRAD_WIDE_CHUNK, else t128x64 (H200 sweep of the 16-byte backward-weight
      kernels at 9952e13, fastest: resnet.c4 t128x128 in 7 slices of 896, 74.5 us against 97.9 for the
      heuristic then, t128x128 in 16; dcgan.d3 t128x64 in 11 slices, 28.9 against 32.1; dcgan.d2
      t128x64, 28.1 against 31.6).
    """
    if m < 1 or n < 1 or z < 1:
        raise ValueError(f"conv_tile: got m={m}, n={n}, z={z}, expected positive GEMM sizes")
    if wgrad and n <= 64:
        return "t64x64"
    if m <= 32 and (tf32 or z == 1):
        return "t32x128"
    if m <= 64 and z > 1:
        return "t64x64" if tf32 else "t64x128k16"
    if m <= 64 and tf32:
        return "t64x128"
    if m <= 64:
        return "t64x64" if wgrad else "t64x128"
    big = cdiv(m, 128) * cdiv(n, 128) * z
    if tf32:  # t128x64 was fastest for TF32 forward and backward-data; large GEMMs want t128x128's 64x64 warp
        # tiles, and so does a backward-weight whose slices at one wave of t128x128 blocks are long (conv_splits)
        wide = wgrad and red * big >= TF32_WGRAD_WIDE_CHUNK * num_sms * TF32_TILES["t128x128"][4]
        return "t128x128" if wide or big >= 2 * num_sms else "t128x64"
    return "t128x128" if 4 * big <= num_sms or big >= 2 * num_sms else "t128x64"


def conv_grid(m: int, n: int, tile: str, z: int) -> tuple[int, int, int]:
    """Grid (x over GEMM columns, y over GEMM rows, z = groups x phases x splits)."""
    bm, bn = (CONV_TILES[tile] if tile in CONV_TILES else TF32_TILES[tile])[:2]
    gy = cdiv(m, bm)
    if gy > MAX_GRID_YZ or z > MAX_GRID_YZ:
        raise ValueError(f"conv grid: got {gy} row tiles and z = {z}, expected at most {MAX_GRID_YZ} each")
    return (cdiv(n, bn), gy, z)


def conv_splits(m: int, n: int, red: int, tile: str, z: int, num_sms: int, force: int | None = None,
                wgrad: bool = False, tf32: bool = False, phased: bool = False,
                out_elems: int = 1) -> tuple[int, int]:
    """Split-K for any pass: (splits, chunk) with chunk a multiple of SPLIT_ALIGN (and of the tile's
    BK: tile_spec(tile, tf32)) and splits = ceil(red / chunk), so every slice is non-empty and they
    tile [0, red) exactly.

    Tuned with conv_tile (benchmarks/conv_sweep.py on an H200, retuned on an H100): forward and
    backward-data split into as many slices as keep the grid within one wave (num_sms x the tile's
    blocks per SM, at most PHASED_BLOCKS_PER_SM for the phases of a strided backward-data: dcgan.d2's
    392 t64x64 blocks ran 1.13x faster unsplit, dcgan.d3's 128 t128x64 blocks fastest in 3 slices)
    with slices >= MIN_SPLIT_CHUNK long (TF32: TF32_MIN_SPLIT_CHUNK; dcgan.d2 forward ran 1.12x
    faster in 2 slices than in 4); backward-weight (a long reduction over N*P*Q onto a small
    output) into slices of about WGRAD_CHUNK, up to WGRAD_WAVES waves, and at least as many as
    fill one wave; TF32 backward-weight (its 16-byte kernels) into as many slices as fill one wave of the
    tile's blocks per SM, slices >= TF32_WGRAD_MIN_CHUNK (H200 sweep at 9952e13: the fastest split of
    resnet.c4, dcgan.d3 and resnet.c2 was the one-wave count, 7, 11 and 79, against the 16, 8 and 128
    of the rule before, which gave each block a set number of multiply-adds: 1.32x, 1.11x and 1.03x
    faster with the tiles conv_tile now picks; dcgan.d2 and lenet.conv2 ran fastest at 16 and 32 slices,
    where one wave is 24 and 56).
    Always splits <= MAX_SPLITS, z*splits <= 65535, and the split-K workspace
    (splits x the output's ``out_elems`` elements) <= MAX_WORKSPACE elements. The kernel computes
    a slice end as z*chunk + chunk in a 32-bit int: when that would pass INT32_LIMIT the reduction
    is not split. A reduction of 0 (a phase no tap reaches) is one empty slice. ``force`` (the
    conv_splits setting) asks for that many splits instead (still whole SPLIT_ALIGN slices and
    z*splits <= 65535, but no workspace cap). ``phased``: the phase GEMMs of a strided
    backward-data, which TF32 does not split (dcgan.d2 / d3 ran 1.30x / 1.04x faster unsplit).
    """
    if red < 0:
        raise ValueError(f"conv_splits: got a reduction of {red}, expected >= 0")
    gx, gy, _ = conv_grid(m, n, tile, z)
    _, _, bk, _, minb = tile_spec(tile, tf32)
    align = max(SPLIT_ALIGN, bk)
    blocks, wave = gx * gy * z, num_sms * minb
    if force is not None:
        want = force
    else:
        if tf32 and phased:
            want = 1
        elif tf32 and wgrad:
            want = min(wave // blocks, red // TF32_WGRAD_MIN_CHUNK)
        else:
            if phased:
                wave = num_sms * min(minb, PHASED_BLOCKS_PER_SM)
            want = min(wave // blocks, red // (TF32_MIN_SPLIT_CHUNK if tf32 else MIN_SPLIT_CHUNK))
            if wgrad:
                want = max(want, min(red // WGRAD_CHUNK, WGRAD_WAVES * wave // blocks))
        want = min(want, MAX_SPLITS, MAX_WORKSPACE // out_elems)
    want = max(1, min(want, MAX_GRID_YZ // z))
    chunk = max(align, cdiv(cdiv(max(red, 1), want), align) * align)
    splits = cdiv(max(red, 1), chunk)
    if splits * chunk > INT32_LIMIT:
        splits, chunk = 1, cdiv(red, align) * align
    return splits, chunk


def slice_splits(slices: int, want: int, out_size: int) -> tuple[int, int]:
    """(splits, per) of a kernel whose blocks each sum ``per`` consecutive slices of a reduction into
    their own partial output of out_size floats (the small-channel backward-weight):
    about ``want`` blocks along the slices, at most one per slice, the partials <= MAX_WORKSPACE
    floats, and splits = ceil(slices / per), so none is empty."""
    want = max(1, min(want, slices, MAX_WORKSPACE // out_size))
    per = cdiv(slices, want)
    return cdiv(slices, per), per


def phase_max_taps(r: int, stride: int, dilation: int) -> int:
    """The most filter taps one backward-data phase has along a dimension (phase_max_taps in
    kernels/conv_index.cuh): ceil(r / (stride / gcd(stride, dilation)))."""
    return cdiv(r, stride // math.gcd(stride, dilation))


def activation_code(activation) -> int:
    """The kernels' code of a fused activation (None, "relu", "leaky_relu", "tanh")."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: got {activation!r}, expected one of None, 'relu', 'leaky_relu', 'tanh'")
    return ACTIVATIONS[activation]


def linear_grid(m: int, n: int, splits: int = 1) -> tuple[int, int, int]:
    """Grid of kernels/linear.cu for an m x n output (x over column tiles, y over row tiles, z over
    split-K slices)."""
    return check_grid("linear", (cdiv(n, LINEAR_TILE[1]), cdiv(m, LINEAR_TILE[0]), splits))


def linear_splits(m: int, n: int, k: int, num_sms: int) -> tuple[int, int]:
    """Split-K of a linear forward / backward-data GEMM (m x n output, reduction k): (splits, chunk),
    chunk a multiple of LINEAR_BK and splits = ceil(k / chunk) (non-empty slices tiling [0, k)).
    A grid of at most num_sms / 2 tiles (a card mostly idle) is split towards two blocks per SM,
    each slice at least LINEAR_MIN_CHUNK long, at most LINEAR_MAX_SPLITS slices, the workspace
    (splits x m x n) within INT32_LIMIT elements; a larger grid, or a short reduction, is not split."""
    if m < 1 or n < 1 or k < 0 or num_sms < 1:
        raise ValueError(f"linear_splits: got m={m}, n={n}, k={k}, num_sms={num_sms}; expected positive sizes")
    tiles = cdiv(m, LINEAR_TILE[0]) * cdiv(n, LINEAR_TILE[1])
    want = min(cdiv(2 * num_sms, tiles), k // LINEAR_MIN_CHUNK, LINEAR_MAX_SPLITS, INT32_LIMIT // (m * n))
    if 2 * tiles > num_sms or want < 2:
        return 1, max(k, 1)
    chunk = cdiv(cdiv(k, want), LINEAR_BK) * LINEAR_BK
    return cdiv(k, chunk), chunk
