"""Launch configuration of the small-channel conv kernels of kernels/conv_smallc.cu (C/G*R*S <= SMALLC,
e.g. LeNet's conv1: C = 1, 5x5), shared by the CUDA C family (fastconv/backends/cuda/conv.py) and
the Numba family (numba/tiles.py, numba/conv_smallc_launch.py): their limits (the CONV_SMALLC*
defines of conv_smallc.cu; tests compare the two) and the tiles and splits that fit shared memory. Pure
Python: no CuPy needed."""

from __future__ import annotations

import math

from .config import cdiv, phase_max_taps, slice_splits

SMALLC = 32                 # C/G*R*S limit
SMALLC_KT = 8               # filters per thread of the forward and backward-weight
SMALLC_FWD_SMEM = 2048      # floats of the forward's staged input tile
SMALLC_BWD_SMEM = 4096      # floats of backward-data's staged dy chunk
SMALLC_BWD_WS = 1024        # floats of backward-data's staged taps (rows padded to 4)
SMALLC_WGRAD_SMEM = 8192    # floats of backward-weight's staged x and dy tiles
SMALLC_WGRAD_PITCH = 36     # floats per pixel of backward-weight's dy tile
SMALLC_WGRAD_THREADS = 256  # backward-weight's block (its final sum holds 32 floats per thread)
SMALLC_WGRAD_BLOCKS_PER_SM = 2


def smallc_pitch(iw: int) -> int:
    """Row pitch of a small-channel kernel's staged tile (smallc_pitch in conv_smallc.cu): >= iw, = 1 mod 4."""
    return iw + (1 - iw) % 4


def _balanced(n: int, most: int) -> int:
    """The tile <= most that covers n in the fewest tiles with the least overhang."""
    return cdiv(n, cdiv(n, most))


def _quad_tile(rows: int, cols: int, floats) -> tuple[int, int] | None:
    """(tpr, tqq): tpr rows x tqq quads (4 adjacent columns) of a rows x cols output, one warp's 32
    lanes at most, as wide as the row allows (whole rows: coalesced stores), the rows and quads split
    evenly; the largest such tile whose staged input, floats(tpr, tqq), fits. None if none fits."""
    quads = cdiv(cols, 4)
    for tqq in range(min(quads, 32), 0, -1):
        tpr = min(32 // tqq, rows)
        while tpr and floats(tpr, tqq) is None:
            tpr -= 1
        if tpr:
            return _balanced(rows, tpr), _balanced(quads, tqq)
    return None


def _fits(n: int, budget: int):
    return n if n <= budget else None


def smallc_forward_tile(cg: int, p: int, q: int, r: int, s: int, stride, dilation) -> tuple[int, int] | None:
    """Tile (tpr, tqq) of conv2d_forward_smallc_v2 for a P x Q output (see _quad_tile): its input
    rows (tpr-1)*sh + (R-1)*dh + 1 x columns (4*tqq-1)*sw + (S-1)*dw + 1 (pitched) of Cg channels fit
    SMALLC_FWD_SMEM floats. None (the GEMM core runs instead) when even one quad does not."""
    (sh, sw), (dh, dw) = stride, dilation
    return _quad_tile(p, q, lambda tpr, tqq: _fits(
        cg * ((tpr - 1) * sh + (r - 1) * dh + 1) * smallc_pitch((4 * tqq - 1) * sw + (s - 1) * dw + 1),
        SMALLC_FWD_SMEM))


def smallc_backward_data_tile(kg: int, h: int, w: int, r: int, s: int, stride, dilation) -> tuple[int, int, int] | None:
    """(tpr, tqq, kc) of conv2d_backward_data_smallc_v2: a tile of tpr pairs of rows x tqq quads (a
    lane computes 2 x 4 pixels) of the largest phase's ceil(H/sh) x ceil(W/sw) grid (see _quad_tile)
    and kc filters staged at a time (the chunks of K/G even), such that kc planes of dy rows
    2*tpr + (Ri-1)*pstep x columns 4*tqq + (Sj-1)*qstep (pitched; Ri, Sj the most taps a phase has)
    fit SMALLC_BWD_SMEM floats and kc x Ri x (Sj rounded up to 4) taps SMALLC_BWD_WS. None when one
    plane of a one-lane tile does not fit."""
    (sh, sw), (dh, dw) = stride, dilation
    ri, sj = phase_max_taps(r, sh, dh), phase_max_taps(s, sw, dw)
    pstep, qstep = dh // math.gcd(sh, dh), dw // math.gcd(sw, dw)

    def plane(tpr, tqq):
        return (2 * tpr + (ri - 1) * pstep) * smallc_pitch(4 * tqq + (sj - 1) * qstep)
    tile = _quad_tile(cdiv(cdiv(h, sh), 2), cdiv(w, sw), lambda tpr, tqq: _fits(plane(tpr, tqq), SMALLC_BWD_SMEM))
    if tile is None:
        return None
    taps = ri * cdiv(sj, 4) * 4
    return tile + (_balanced(kg, min(kg, SMALLC_BWD_WS // taps, SMALLC_BWD_SMEM // plane(*tile))),)


def smallc_backward_weight_tile(cg: int, p: int, q: int, r: int, s: int, stride, dilation) -> int | None:
    """Output rows per slice of conv2d_backward_weight_smallc_v1: the most (then split evenly over P)
    whose x tile (Cg planes of (tp-1)*sh + (R-1)*dh + 1 rows, pitched width (Q-1)*sw + (S-1)*dw + 1,
    rounded up to 4 floats) and dy tile (tp*Q pixels x SMALLC_WGRAD_PITCH) fit SMALLC_WGRAD_SMEM
    floats. None when one row does not."""
    (sh, sw), (dh, dw) = stride, dilation
    width = smallc_pitch((q - 1) * sw + (s - 1) * dw + 1)
    for tp in range(min(p, SMALLC_WGRAD_SMEM // (q * SMALLC_WGRAD_PITCH)), 0, -1):
        x_tile = cdiv(cg * ((tp - 1) * sh + (r - 1) * dh + 1) * width, 4) * 4
        if x_tile + tp * q * SMALLC_WGRAD_PITCH <= SMALLC_WGRAD_SMEM:
            return _balanced(p, tp)
    return None


def smallc_backward_weight_splits(slices: int, blocks_per_split: int, num_sms: int, out_size: int) -> tuple[int, int]:
    """(splits, per) of conv2d_backward_weight_smallc_v1: each of ``splits`` blocks (times
    blocks_per_split = filter chunks x groups) sums ``per`` consecutive (image, rows) slices into its
    own partial dw of out_size floats; about SMALLC_WGRAD_BLOCKS_PER_SM blocks per SM in all (1-2
    waves), the partials <= MAX_WORKSPACE floats, every block at least one slice, and
    splits = ceil(slices / per) so none is empty."""
    if min(slices, blocks_per_split, num_sms, out_size) < 1:
        raise ValueError(f"smallc_backward_weight_splits: got slices={slices}, blocks_per_split={blocks_per_split}, "
                         f"num_sms={num_sms}, out_size={out_size}; expected positive sizes")
    return slice_splits(slices, cdiv(SMALLC_WGRAD_BLOCKS_PER_SM * num_sms, blocks_per_split), out_size)
