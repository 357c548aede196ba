"""Launch configuration of kernels/conv_wgrad.cu, the direct fp32 backward-weight: pure Python, no
CuPy, unit-tested on the CPU (fastconv.backends.cuda.conv launches it; fastconv.settings accepts
WGRAD_DIRECT as a conv_tile)."""

from __future__ import annotations

from .config import cdiv, slice_splits

# Its CONV_WGRAD_* defines (tests compare the two). Run by the conv_tile setting WGRAD_DIRECT (not
# picked by config.conv_tile yet), a block of WGRAD_DIRECT_KB filters x up to WGRAD_DIRECT_PAIRS
# (octet of WGRAD_DIRECT_CB channels, tap) pairs, 8 threads a pair.
WGRAD_DIRECT = "wgrad_direct"
WGRAD_DIRECT_KB = 64
WGRAD_DIRECT_CB = 8
WGRAD_DIRECT_PAIRS = 32
WGRAD_DIRECT_STAGE = 6136   # floats of one of its two pipeline stages (both within 48 KiB of static shared memory)
WGRAD_DIRECT_MINB = 2       # its __launch_bounds__ min blocks per SM (<= 128 registers a thread)
WGRAD_DIRECT_SMEM_BLOCKS = 4  # its blocks an SM's shared memory holds (227 KiB / 48 KiB)


def wgrad_direct_pairs(cg: int, r: int, s: int) -> int:
    """(channel octet, tap) pairs per block of conv2d_backward_weight_direct_v1: the multiple of 4 (8
    threads a pair: whole warps) up to WGRAD_DIRECT_PAIRS that leaves the fewest idle pairs in the
    last block over the ceil(Cg / 8) * R*S pairs (ties: the larger; lenet.conv2's 100 pairs: 5 blocks
    of 20)."""
    pairs = cdiv(cg, WGRAD_DIRECT_CB) * r * s
    return min(range(WGRAD_DIRECT_PAIRS, 0, -4), key=lambda t: cdiv(pairs, t) * t)


def wgrad_direct_tile(cg: int, p: int, q: int, r: int, s: int, stride, dilation) -> tuple[int, int] | None:
    """(tp, tgb) of conv2d_backward_weight_direct_v1: tgb = wgrad_direct_pairs, and tp output rows per
    slice. A stage must fit WGRAD_DIRECT_STAGE floats in the widest block: the x tile of
    (tgb - 2) // (R*S) + 2 octets (at most all) x (tp-1)*sh + (R-1)*dh + 1 rows x (Q-1)*sw + (S-1)*dw + 1
    columns (channel pitch 8, or 8 per octet + 4 for several), then for tp*Q pixels rounded up to 4 a
    table entry and WGRAD_DIRECT_KB filters of dy. Of the tp that fit, the one with the fewest thread
    instructions per image in a model of the kernel: 72 per pixel slot (64 FFMA and their loads; a
    slice's pixels rounded up to 4 are slots) for each of the block's 8 * tgb threads, 8 per staged x
    element and dy element (2 when whole slices are 16-byte runs: wgrad_direct_vec), 32 per thread and
    slice (barriers, table); ties: the larger tp. lenet.conv2: tp 2 (28-pixel slices, 16-byte dy runs)
    over tp 3 (42 pixels: 4 % of the FFMA on padding). None when one row does not fit."""
    (sh, sw), (dh, dw) = stride, dilation
    tgb = wgrad_direct_pairs(cg, r, s)
    octs = min(cdiv(cg, WGRAD_DIRECT_CB), max(1, (tgb - 2) // (r * s) + 2))
    pitch = WGRAD_DIRECT_CB if octs == 1 else WGRAD_DIRECT_CB * octs + 4
    xc = (q - 1) * sw + (s - 1) * dw + 1
    best = None
    for tp in range(1, p + 1):
        x_tile, n_pix = pitch * ((tp - 1) * sh + (r - 1) * dh + 1) * xc, cdiv(tp * q, 4) * 4
        if x_tile + (1 + WGRAD_DIRECT_KB) * n_pix > WGRAD_DIRECT_STAGE:
            break
        slices = cdiv(p, tp)
        slots = (p // tp) * n_pix + (cdiv(p % tp * q, 4) * 4 if p % tp else 0)
        staged = slices * (8 * x_tile * WGRAD_DIRECT_CB * octs // pitch
                           + (2 if wgrad_direct_vec(p, q, tp) else 8) * WGRAD_DIRECT_KB * n_pix)
        cost = 8 * tgb * (72 * slots + 32 * slices) + staged
        if best is None or cost <= best[0]:
            best = cost, tp
    return None if best is None else (best[1], tgb)


def wgrad_direct_vec(p: int, q: int, tp: int) -> bool:
    """Whether conv2d_backward_weight_direct_v1 may stage dy as 16-byte runs with slices of tp rows:
    P*Q and tp*Q multiples of 4 (the launcher also needs dy 16-byte aligned)."""
    return p * q % 4 == 0 and tp * q % 4 == 0


def wgrad_direct_grid(kg: int, cg: int, r: int, s: int, groups: int, splits: int, tgb: int) -> tuple[int, int, int]:
    """Grid of conv2d_backward_weight_direct_v1 (8 * tgb threads): x = splits, y = blocks of tgb
    (octet, tap) pairs, z = groups x filter blocks."""
    return splits, cdiv(cdiv(cg, WGRAD_DIRECT_CB) * r * s, tgb), groups * cdiv(kg, WGRAD_DIRECT_KB)


def wgrad_direct_splits(slices: int, blocks_per_split: int, threads: int, num_sms: int, out_size: int,
                        force: int | None = None) -> tuple[int, int]:
    """(splits, per) of conv2d_backward_weight_direct_v1: each of ``splits`` blocks (times
    blocks_per_split = pair blocks x filter blocks x groups) sums ``per`` consecutive (image, rows)
    slices into its own partial dw of out_size floats. As many blocks as are resident at once (one
    wave: its __launch_bounds__ registers, 128 a thread, for blocks of ``threads``, at most
    WGRAD_DIRECT_SMEM_BLOCKS by shared memory) or ``force`` (the conv_splits setting), at most one
    per slice, the partials <= MAX_WORKSPACE floats; splits = ceil(slices / per), so none is empty."""
    if min(slices, blocks_per_split, threads, num_sms, out_size) < 1:
        raise ValueError(f"wgrad_direct_splits: got slices={slices}, blocks_per_split={blocks_per_split}, "
                         f"threads={threads}, num_sms={num_sms}, out_size={out_size}; expected positive sizes")
    regs = 65536 // (256 * WGRAD_DIRECT_MINB)
    per_sm = min(65536 // (threads * regs), WGRAD_DIRECT_SMEM_BLOCKS)
    return slice_splits(slices, force if force is not None else per_sm * num_sms // blocks_per_split, out_size)
