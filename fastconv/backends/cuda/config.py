"""Launch configuration for the CUDA C kernels: pure Python, no CuPy, unit-tested on the CPU.

Everything the launcher (``fastconv.backends.cuda``) decides about grids, tile shapes and
split-K lives here, together with the table of kernel names each ``kernels/*.cu`` file must
define (the static tests compile every file and check each name is an entry point).
"""

from __future__ import annotations

INT32_MAX = 2**31 - 1
# GEMM dimensions and per-plane sizes must stay this far below INT32_MAX: the kernels form
# k0 + BK, n0 + BN and similar tile-overshoot values in 32-bit ints (at most a few hundred past
# the dimension; 4096 leaves room for any tile override).
INT32_MARGIN = 4096
INT32_LIMIT = INT32_MAX - INT32_MARGIN
BLOCK = 256                 # threads per block of element-wise / pooling / reduction kernels
REDUCE_BLOCK = 1024         # threads of the single-block final reductions (sum_scale_v1)
CONV_THREADS = 256          # threads per block of the tiled conv kernels (fixed in conv.cu)
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65535
MAX_WGRAD_SPLITS = 256
MIN_WGRAD_CHUNK = 256       # reduction elements per split-K slice, at least
SPLIT_ALIGN = 16            # split-K slices are whole BK tiles for every tile shape (BK 8 or 16)

# tile name -> (BM, BN, BK), as instantiated by CONV_V2_KERNELS in kernels/conv.cu
CONV_TILES = {
    "t128x128": (128, 128, 8),
    "t64x64": (64, 64, 16),
    "t32x128": (32, 128, 16),
}

_CONV_PASSES = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight")

KERNELS = {
    "conv.cu": tuple(f"{p}_v1" for p in _CONV_PASSES)
    + tuple(f"{p}_v2_{t}" for p in _CONV_PASSES for t in CONV_TILES)
    + ("conv2d_wgrad_reduce_v1", "conv2d_backward_bias_v1"),
    "activation.cu": (
        "relu_forward_v1", "relu_backward_v1", "relu_forward_v2", "relu_backward_v2",
        "leaky_relu_forward_v1", "leaky_relu_backward_v1", "leaky_relu_forward_v2", "leaky_relu_backward_v2",
        "sigmoid_forward_v1", "sigmoid_backward_v1", "tanh_forward_v1", "tanh_backward_v1",
        "dropout_forward_v1", "dropout_backward_v1",
    ),
    "pool.cu": ("max_pool2d_forward_v1", "max_pool2d_backward_v1", "avg_pool2d_forward_v1",
                "avg_pool2d_backward_v1"),
    "batchnorm.cu": ("batchnorm_forward_train_v1", "batchnorm_forward_eval_v1", "batchnorm_backward_v1"),
    "loss.cu": ("softmax_xent_rows_v1", "bce_logits_v1", "sum_scale_v1"),
    "optim.cu": ("sgd_update_v1", "adam_update_v1", "adam_update_v2", "accumulate_v1",
                 "sgd_update_multi_v1", "adam_update_multi_v2"),
    "bias.cu": ("bias_add_v1",),
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


def warp_rows_blocks(rows: int, block: int = BLOCK) -> int:
    """Blocks for a one-warp-per-row kernel."""
    return max(1, cdiv(rows * 32, block))


def conv_tile(m: int, n: int, num_sms: int) -> str:
    """Tile shape for a GEMM of m rows (output/input channels per group) by n columns.

    Measured on an H100 (benchmarks/gpu_table.py forces each tile on the benchmarks/shapes.py conv shapes):
    64x64 (4x4 per thread, BK 16) was fastest or within 10% almost everywhere; 32x128 won when
    m <= 32 (less row padding, e.g. backward-data of LeNet's conv1/conv2); 128x128 (8x8 per
    thread) won only for m >= 256 with enough 128-tiles to cover a quarter of the SMs (resnet.c4
    forward and backward-weight: 0.41 vs 0.43 ms, 0.36 vs 0.47 ms) and lost by 1.3-1.6x on the
    smaller GEMMs, where its 159 registers per thread leave one block per SM.
    """
    if m < 1 or n < 1:
        raise ValueError(f"conv_tile: got m={m}, n={n}, expected positive GEMM sizes")
    if m <= 32:
        return "t32x128"
    if m >= 256 and cdiv(m, 128) * cdiv(n, 128) >= num_sms // 4:
        return "t128x128"
    return "t64x64"


def conv_grid(m: int, n: int, tile: str, z: int) -> tuple[int, int, int]:
    """Grid (x over GEMM columns, y over GEMM rows, z = groups or groups*splits)."""
    bm, bn, _ = CONV_TILES[tile]
    gy = cdiv(m, bm)
    if gy > MAX_GRID_YZ or z > MAX_GRID_YZ:
        raise ValueError(f"conv grid: got {gy} row tiles and z = {z}, expected at most {MAX_GRID_YZ} each")
    return (cdiv(n, bn), gy, z)


def wgrad_splits(m: int, n: int, red: int, tile: str, groups: int, num_sms: int) -> tuple[int, int]:
    """Split-K for backward-weight: (splits, chunk) with chunk a multiple of SPLIT_ALIGN and
    splits = ceil(red / chunk), so every slice is non-empty and they tile [0, red) exactly.

    Aims at about 4 blocks per SM in all, keeps each slice >= MIN_WGRAD_CHUNK long and
    splits <= MAX_WGRAD_SPLITS, groups*splits <= 65535. The kernel computes the end of its slice
    as z*chunk + chunk in a 32-bit int, which is at most splits*chunk: when that would pass
    INT32_LIMIT (reductions near 2^31) the reduction is not split.
    """
    if red < 1:
        raise ValueError(f"wgrad_splits: got a reduction of {red}, expected >= 1")
    gx, gy, _ = conv_grid(m, n, tile, groups)
    tiles = gx * gy * groups
    want = cdiv(4 * num_sms, tiles)
    want = min(want, MAX_WGRAD_SPLITS, max(1, red // MIN_WGRAD_CHUNK), MAX_GRID_YZ // groups)
    want = max(1, want)
    chunk = cdiv(cdiv(red, want), SPLIT_ALIGN) * SPLIT_ALIGN
    splits = cdiv(red, chunk)
    if splits * chunk > INT32_LIMIT:
        splits, chunk = 1, cdiv(red, SPLIT_ALIGN) * SPLIT_ALIGN
    return splits, chunk


def linear_grid(m: int, n: int) -> tuple[int, int, int]:
    """Grid of kernels/linear.cu for an m x n output (x over column tiles, y over row tiles)."""
    return check_grid("linear", (cdiv(n, LINEAR_TILE[1]), cdiv(m, LINEAR_TILE[0]), 1))
