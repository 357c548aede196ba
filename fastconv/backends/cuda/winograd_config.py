"""When the Winograd kernels (kernels/winograd.cu, and the Numba family's port) run a conv pass, and
on which v3 tile their products' GEMMs run: shared by both kernel families. Pure Python: no CuPy
needed. The Winograd constants (WINOGRAD_TAPS, tile and block sizes) are config's, beside the kernel
names they make."""

from __future__ import annotations

from ...settings import CONV_PASSES
from .config import WINOGRAD, WINOGRAD_TAPS, conv_tile
from .smallc_config import SMALLC


def winograd_tile(m: int, n: int, num_sms: int, z: int, wgrad: bool = False) -> str:
    """Tile of a Winograd product GEMM (fp32): z = A^2 groups of m x n, each over a reduction of
    C or K (forward, backward-data: n = N x tiles) or of N x tiles (``wgrad``: n = C). The groups are
    independent GEMMs, not the phases conv_tile's z > 1 rule was tuned for.

    Swept on an H100 (benchmarks/conv_sweep.py, every products tile; commit d1de1c8), fastest:
    - forward / backward-data: m <= 32 t32x128 (lenet.conv2 backward-data: 84.7 us against 94.4 on
      t64x32 and 95.5 on t64x128); m <= 64 t64x64 (resnet.c2: 305.5 / 314.7 us against 311.6 / 319.4 on
      t64x128; lenet.conv2 forward: every 64-row tile within 1 %); wider t128x64 (resnet.c4: 115.7 /
      155.0 us against 134.9 / 173.5 on t128x128);
    - backward-weight with n <= 32: t64x32 (lenet.conv2: 115.8 us against 124.1 on t64x64), else as
      config.conv_tile."""
    if wgrad:
        return "t64x32" if n <= 32 else conv_tile(m, n, num_sms, z, False, True)
    return "t32x128" if m <= 32 else "t64x64" if m <= 64 else "t128x64"


def winograd(r: int, s: int, stride, dilation, groups: int) -> bool:
    """Whether kernels/winograd.cu computes this convolution's passes: a square filter of
    WINOGRAD_TAPS taps, stride 1, dilation 1, one group."""
    return r == s and r in WINOGRAD_TAPS and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1


# The passes that run by Winograd by default (fp32, conv_tile unset), per filter size: on an H200
# (benchmarks/conv_sweep.py at commit ecba0d3) it ran resnet.c2 / resnet.c4's 3x3 forward 1.26x / 1.41x,
# backward-data 1.19x / 1.18x and backward-weight 1.60x / 1.79x faster than the GEMM. 5x5 (lenet.conv2)
# since its products take winograd_tile (H100 sweep of d1de1c8): forward 1.18x, backward-data
# 1.09x, backward-weight 1.01x faster than the GEMM, before the packed filter transform and the
# per-row weight-gradient output transform took 17-35 us more off those passes. TF32's GEMM beat it
# on every row but resnet.c4 backward-weight (1.09x), so TF32 never takes it by default.
WINOGRAD_PASSES = {r: CONV_PASSES for r in WINOGRAD_TAPS}


def use_winograd(conv_tile, tf32: bool, what: str, r: int, s: int, stride, dilation, groups: int,
                 cg: int) -> bool:
    """Whether pass ``what`` ("forward", "backward_data", "backward_weight") of a convolution runs by
    Winograd (either kernel family): asked for by the conv_tile setting ``conv_tile`` (a shape it has
    no tables for is refused in one line), or by default in fp32 for the passes WINOGRAD_PASSES lists,
    when C/G*R*S is above the small-channel kernels' limit (they serve those shapes)."""
    if conv_tile == WINOGRAD:
        if not winograd(r, s, stride, dilation, groups):
            raise ValueError(f"conv_tile: got {WINOGRAD!r} for a convolution of {r}x{s} taps, stride {tuple(stride)}, "
                             f"dilation {tuple(dilation)}, {groups} groups; expected a square filter of "
                             f"{' or '.join(map(str, WINOGRAD_TAPS))} taps, stride 1, dilation 1, one group")
        return True
    return (conv_tile is None and not tf32 and winograd(r, s, stride, dilation, groups) and cg * r * s > SMALLC
            and what in WINOGRAD_PASSES[r])
