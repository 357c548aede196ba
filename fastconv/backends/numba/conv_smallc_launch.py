"""Launchers of the numba small-channel conv kernels (conv_smallc.py, conv_smallc_wgrad.py): grid,
block and the staged-tile sizes of a tiles.smallc_tile choice. conv.py calls them for the shapes that
choice serves (unless a GEMM tile or split count is forced)."""

from __future__ import annotations

from ..cuda import config as _cfg
from ..cuda import smallc_config as scfg
from ..cuda.config import cdiv
from ..cuda.smallc_config import SMALLC_KT, SMALLC_WGRAD_THREADS, smallc_pitch
from .conv_smallc_wgrad import FILTERS, SLOT_FILTERS, SLOT_TAPS
from .driver import launch
from .tiles import WAVE_BLOCKS, bwd_phases


def launch_conv2d_forward_smallc(y, x, w, b, geo, tile, stream=None):
    """y = conv2d(x, w) (+ b) by conv2d_forward_smallc_v1 with ``tile`` = (tpr, tqq) of
    tiles.smallc_tile; ``geo`` the _conv_geometry of the call (arrays already checked)."""
    n, _, _, _, k, r, s, p, q, sh, sw, _, _, dh, dw, groups = geo
    tpr, tqq = tile
    kg = k // groups
    warps = min(4, cdiv(kg, SMALLC_KT))
    ctiles = cdiv(cdiv(q, 4), tqq)
    tiles = cdiv(p, tpr) * ctiles
    iw = (4 * tqq - 1) * sw + (s - 1) * dw + 1
    sizes = (tpr, tqq, ctiles, tiles, (tpr - 1) * sh + (r - 1) * dh + 1, iw, smallc_pitch(iw))
    grid = _cfg.check_grid("conv2d_forward", (n * tiles, cdiv(kg, SMALLC_KT * warps), groups))
    launch("conv2d_forward_smallc_v1", grid, (32 * warps, 1, 1),
           (y, x, w, w if b is None else b, int(b is not None)) + geo + sizes, stream)
    return y


def launch_conv2d_backward_data_smallc(dx, dy, w, geo, tile, stream=None):
    """dx from dy and w by conv2d_backward_data_smallc_v1, one launch per stride phase, with
    ``tile`` = (tpr, tqq, kc) of tiles.smallc_tile (sized for the largest phase)."""
    n, c, h, wd, k, r, s, _, _, sh, sw, ph, pw, dh, dw, groups = geo
    tpr, tqq, kc = tile
    warps = min(4, k // groups)
    for phase in bwd_phases(h, wd, r, s, (sh, sw), (ph, pw), (dh, dw)):
        ht, ri, pstep, wt, sj, qstep = phase[1], phase[4], phase[6], phase[8], phase[11], phase[13]
        ctiles = cdiv(cdiv(wt, 4), tqq)
        tiles = cdiv(cdiv(ht, 2), tpr) * ctiles
        iw = 4 * tqq + max(sj - 1, 0) * qstep
        sizes = (tpr, tqq, kc, ctiles, tiles, 2 * tpr + max(ri - 1, 0) * pstep, iw, smallc_pitch(iw))
        grid = _cfg.check_grid("conv2d_backward_data", (n * tiles, c, 1))
        launch("conv2d_backward_data_smallc_v1", grid, (32 * warps, 1, 1), (dx, dy, w) + geo + phase + sizes, stream)
    return dx


def backward_weight_smallc_splits(geo, tp: int) -> tuple[int, int]:
    """(splits, per) of conv2d_backward_weight_smallc_v1 with tp output rows per slice: blocks of
    ``per`` (image, rows) slices each, about smallc_config.SMALLC_WGRAD_BLOCKS_PER_SM blocks per SM of an
    H100 (smallc_config.smallc_backward_weight_splits); splits partial dw's."""
    n, c, _, _, k, r, s, p, _, _, _, _, _, _, _, groups = geo
    return scfg.smallc_backward_weight_splits(n * cdiv(p, tp), cdiv(k // groups, FILTERS) * groups, WAVE_BLOCKS,
                                              k * c // groups * r * s)


def launch_conv2d_backward_weight_smallc(out, dy, x, geo, tp: int, splits: int, per: int, stream=None):
    """Partial dw's of ``splits`` blocks of ``per`` slices into out (splits*|dw| floats; dw itself
    for one split) by conv2d_backward_weight_smallc_v1, tp output rows per slice."""
    _, c, _, _, k, r, s, p, q, sh, sw, _, _, dh, dw, groups = geo
    kg, crs = k // groups, c // groups * r * s
    ir = (tp - 1) * sh + (r - 1) * dh + 1
    iw = (q - 1) * sw + (s - 1) * dw + 1
    iwp = smallc_pitch(iw)
    eg = cdiv(crs, SLOT_TAPS)
    no = cdiv(min(kg, FILTERS), SLOT_FILTERS) * eg
    sizes = (tp, per, cdiv(p, tp), no, eg, SMALLC_WGRAD_THREADS // no, ir, iw, iwp, cdiv(c // groups * ir * iwp, 4) * 4)
    grid = _cfg.check_grid("conv2d_backward_weight", (splits, cdiv(kg, FILTERS), groups))
    launch("conv2d_backward_weight_smallc_v1", grid, (SMALLC_WGRAD_THREADS, 1, 1), (out, dy, x) + geo + sizes, stream)
    return out
