"""The one place that holds fastconv's process-wide settings.

``Settings`` fields (defaults in brackets):

- ``kernels`` ["cupy"]: the GPU kernel family, "cupy" (CUDA C in kernels/*.cu) or "numba". The
  ``FASTCONV_KERNELS`` environment variable is read into it once, on first use. A ``kernels=``
  argument on an op, or ``Module.to(device, kernels=...)``, still picks the family for that call
  or that model: an argument wins over the setting.
- ``poison`` [False]: every GPU output buffer is filled with NaN (int: -1, uint8: 255) before the
  kernel runs, so an element a kernel forgets to write is caught (``fastconv check``, GPU tests).
- ``conv_version`` [3]: the cupy family's conv kernels, 3 = the implicit-GEMM core (with its
  small-channel kernels), 1 = the direct reference kernels.
- ``conv_tile`` [None]: the v3 tile, picked per call by the launch heuristic when None; else one
  of ``fastconv.backends.cuda.config.CONV_TILES`` (e.g. "t128x128", "t64x64"; TF32_TILES with tf32), which
  also turns the small-channel kernels off; ``config.WINOGRAD`` ("winograd") runs backward-weight on the
  Winograd kernels of kernels/winograd.cu (3x3 / 5x5, stride 1; the other passes refuse it).
- ``conv_splits`` [None]: the split-K count of the v3 core's GEMMs, picked per call
  (``config.conv_splits``) when None; else a forced count >= 1 (rounded so that every slice is
  whole BK tiles, and at most one slice per 8 reduction elements) — for tuning sweeps.
- ``winograd_tile`` [None]: the v3 tile of the cupy family's Winograd product GEMMs (a 1x1
  convolution in A^2 groups per pass), picked per call (``winograd_config.winograd_tile``) when None; else
  one of ``CONV_TILES`` — for tuning sweeps. The conv_splits setting splits those GEMMs too.
- ``pool_variant`` [None]: the CUDA C family's 2x2 / stride-2 / unpadded pooling kernels, picked per
  call by the launcher's rule when None; else one forced for every pooling call: a key of
  ``fastconv.backends.cuda.config.POOL_2X2`` ("2x2", "2x2w", "2x2v4x2", "2x2r") or "general" (the
  any-window kernels). A call the forced kernel cannot serve (another window, W not a multiple of
  its vector, unaligned arrays, a pass it lacks) raises a ValueError — for tuning benchmarks.
- ``tf32`` [False]: the cupy family's conv kernels (mma.sync) use TF32 tensor cores (operands
  rounded to 10 mantissa bits, fp32 accumulation). The ``FASTCONV_TF32`` environment variable
  ("1"/"0") is read into it once, on first use; a ``precision="tf32"``/``"fp32"`` argument on a
  conv op or layer wins for that call or layer. Linear layers stay on the fp32 kernels of
  kernels/linear.cu either way (no cuBLAS, so a training step stays capturable in a CUDA graph).
  NumPy (CPU) results are exact fp32 either way.
- ``autotune`` [False]: the cupy family's conv passes pick their kernel by timing (as PyTorch's
  ``torch.backends.cudnn.benchmark``): the first call of a pass with a given shape, precision and
  device times the launch heuristic's choice, every tile with its split counts and, where it
  applies, Winograd, each as a CUDA graph of repeated calls, and that call and every later one run
  the fastest (``fastconv.backends.cuda.autotune``). The ``FASTCONV_AUTOTUNE`` environment variable
  ("1"/"0") is read into it once, on first use. A forced ``conv_tile``, ``conv_splits`` or
  ``winograd_tile`` setting, or ``conv_version`` 1, turns it off for the calls they govern.
- ``tf32_vector_gather`` [True]: with ``tf32``, backward-weight's GEMM gathers its operands 16
  bytes per copy (its ``vec`` kernel) from channels-last copies of dy and x (one transpose launch
  each) when K/groups and C/groups are multiples of 4; False: 4 bytes per copy from the NCHW tensors
  themselves, as forward and backward-data always do. An H200 ran the 16-byte backward-weight faster
  on the TF32 rows of benchmarks/shapes.py (lenet.conv2 45 against 64 us, resnet.c2 218 against 278).

Change them for a block with ``fastconv.using(...)`` (restored on exit, also on an exception) or
for the rest of the process with ``fastconv.configure(...)``; read them with
``fastconv.settings.current()``. The settings are process-wide, not per thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

FAMILIES = ("cupy", "numba")
ENV_KERNELS = "FASTCONV_KERNELS"
ENV_TF32 = "FASTCONV_TF32"
ENV_AUTOTUNE = "FASTCONV_AUTOTUNE"
PRECISIONS = ("fp32", "tf32")
CONV_PASSES = ("forward", "backward_data", "backward_weight")


@dataclasses.dataclass(frozen=True)
class Settings:
    kernels: str = "cupy"
    poison: bool = False
    conv_version: int = 3
    conv_tile: str | None = None
    conv_splits: int | None = None
    winograd_tile: str | None = None
    pool_variant: str | None = None
    tf32: bool = False
    tf32_vector_gather: bool = True
    autotune: bool = False


_current: Settings | None = None  # None until first use, when the environment variables are read


def check_family(family, argname: str = "kernels") -> str:
    """A kernel family name ("cupy" or "numba"), else a ValueError naming ``argname``."""
    if family not in FAMILIES:
        raise ValueError(f"{argname}: got {family!r}, expected one of {', '.join(map(repr, FAMILIES))}")
    return family


def check_precision(precision, argname: str = "precision"):
    """None (the tf32 setting decides), "fp32" or "tf32", else a ValueError naming ``argname``."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"{argname}: got {precision!r}, expected None, 'fp32' or 'tf32'")
    return precision


def _env_flag(name: str, what: str) -> bool:
    value = os.environ.get(name, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{name}: got {value!r}, expected '1' ({what}) or '0'")
    return value == "1"


def from_environment() -> Settings:
    """The defaults, with the kernel family FASTCONV_KERNELS names, FASTCONV_TF32 and
    FASTCONV_AUTOTUNE ("1" or "0"); a bad value is a ValueError naming the variable."""
    env = os.environ.get(ENV_KERNELS)
    tf32, autotune = _env_flag(ENV_TF32, "TF32 tensor cores"), _env_flag(ENV_AUTOTUNE, "conv autotuning")
    kernels = check_family(env.strip().lower(), ENV_KERNELS) if env else Settings.kernels
    return Settings(kernels=kernels, tf32=tf32, autotune=autotune)


def current() -> Settings:
    """The settings now in force (reads the environment variables the first time)."""
    global _current
    if _current is None:
        _current = from_environment()
    return _current


def _checked(s: Settings) -> Settings:
    check_family(s.kernels)
    for name in ("poison", "tf32", "tf32_vector_gather", "autotune"):
        if not isinstance(getattr(s, name), bool):
            raise TypeError(f"{name}: got {getattr(s, name)!r}, expected True or False")
    if s.conv_version not in (1, 3) or isinstance(s.conv_version, bool):
        raise ValueError(f"conv_version: got {s.conv_version!r}, expected 1 or 3")
    if s.conv_tile is not None:
        from .backends.cuda.config import CONV_TILES, TF32_TILES, WINOGRAD  # pure Python; needs no CuPy
        if s.conv_tile not in CONV_TILES and s.conv_tile not in TF32_TILES and s.conv_tile != WINOGRAD:
            raise ValueError(f"conv_tile: got {s.conv_tile!r}, expected None or one of "
                             f"{sorted(set(CONV_TILES) | set(TF32_TILES) | {WINOGRAD})}")
    if s.winograd_tile is not None:
        from .backends.cuda.config import CONV_TILES
        if s.winograd_tile not in CONV_TILES:
            raise ValueError(f"winograd_tile: got {s.winograd_tile!r}, expected None or one of {sorted(CONV_TILES)}")
    if s.pool_variant is not None:
        from .backends.cuda.config import POOL_2X2, POOL_GENERAL  # pure Python; needs no CuPy
        if s.pool_variant not in POOL_2X2 and s.pool_variant != POOL_GENERAL:
            raise ValueError(f"pool_variant: got {s.pool_variant!r}, expected None, {POOL_GENERAL!r} or one of "
                             f"{sorted(POOL_2X2)}")
    if s.conv_splits is not None and (isinstance(s.conv_splits, bool) or not isinstance(s.conv_splits, int)
                                      or not 1 <= s.conv_splits <= 65535):
        raise ValueError(f"conv_splits: got {s.conv_splits!r}, expected None or an int in [1, 65535]")
    return s


def configure(**changes) -> Settings:
    """Change settings for the rest of the process; returns the settings in force before.

    Keyword arguments are Settings fields (kernels, poison, conv_version, conv_tile, conv_splits,
    winograd_tile, pool_variant, tf32, tf32_vector_gather, autotune); an unknown name or a bad value
    raises before anything changes.
    """
    global _current
    fields = {f.name for f in dataclasses.fields(Settings)}
    for name in changes:
        if name not in fields:
            raise TypeError(f"{name}: not a setting; expected one of {', '.join(sorted(fields))}")
    before = current()
    _current = _checked(dataclasses.replace(before, **changes))
    return before


@contextlib.contextmanager
def using(**changes):
    """``with fastconv.using(kernels="numba", poison=True): ...``: the settings change inside the
    block and come back on exit. Yields the settings in force inside."""
    before = configure(**changes)
    try:
        yield current()
    finally:
        global _current
        _current = before


def reset() -> None:
    """Back to the defaults; the environment variables are read again on next use (for tests)."""
    global _current
    _current = None
