"""The one place that holds fastconv's process-wide settings.

``Settings`` fields (defaults in brackets):

- ``kernels`` ["cupy"]: the GPU kernel family, "cupy" (CUDA C in kernels/*.cu) or "numba". The
  ``FASTCONV_KERNELS`` environment variable is read into it once, on first use. A ``kernels=``
  argument on an op, or ``Module.to(device, kernels=...)``, still picks the family for that call
  or that model: an argument wins over the setting.
- ``poison`` [False]: every GPU output buffer is filled with NaN (int: -1, uint8: 255) before the
  kernel runs, so an element a kernel forgets to write is caught (``fastconv check``, GPU tests).
- ``conv_version`` [2]: the cupy family's conv kernels, 2 = tiled implicit GEMM, 1 = direct.
- ``conv_tile`` [None]: the v2 tile, picked per call by the launch heuristic when None; else one
  of ``fastconv.backends.cuda.config.CONV_TILES`` ("t128x128", "t64x64", "t32x128").
- ``tf32`` [False]: the cupy family's linear layers run on cuBLAS (CuPy's matmul) with TF32 tensor
  cores instead of the fp32 kernels of kernels/linear.cu (not capturable in a CUDA graph).

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


@dataclasses.dataclass(frozen=True)
class Settings:
    kernels: str = "cupy"
    poison: bool = False
    conv_version: int = 2
    conv_tile: str | None = None
    tf32: bool = False


_current: Settings | None = None  # None until first use, when FASTCONV_KERNELS is read


def check_family(family, argname: str = "kernels") -> str:
    """A kernel family name ("cupy" or "numba"), else a ValueError naming ``argname``."""
    if family not in FAMILIES:
        raise ValueError(f"{argname}: got {family!r}, expected one of {', '.join(map(repr, FAMILIES))}")
    return family


def from_environment() -> Settings:
    """The defaults, with the kernel family FASTCONV_KERNELS names (a bad name is a ValueError)."""
    env = os.environ.get(ENV_KERNELS)
    if env:
        return Settings(kernels=check_family(env.strip().lower(), ENV_KERNELS))
    return Settings()


def current() -> Settings:
    """The settings now in force (reads FASTCONV_KERNELS the first time)."""
    global _current
    if _current is None:
        _current = from_environment()
    return _current


def _checked(s: Settings) -> Settings:
    check_family(s.kernels)
    for name in ("poison", "tf32"):
        if not isinstance(getattr(s, name), bool):
            raise TypeError(f"{name}: got {getattr(s, name)!r}, expected True or False")
    if s.conv_version not in (1, 2) or isinstance(s.conv_version, bool):
        raise ValueError(f"conv_version: got {s.conv_version!r}, expected 1 or 2")
    if s.conv_tile is not None:
        from .backends.cuda.config import CONV_TILES  # pure Python; needs no CuPy
        if s.conv_tile not in CONV_TILES:
            raise ValueError(f"conv_tile: got {s.conv_tile!r}, expected None or one of {sorted(CONV_TILES)}")
    return s


def configure(**changes) -> Settings:
    """Change settings for the rest of the process; returns the settings in force before.

    Keyword arguments are Settings fields (kernels, poison, conv_version, conv_tile, tf32); an
    unknown name or a bad value raises before anything changes.
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
    """Back to the defaults; FASTCONV_KERNELS is read again on next use (for tests)."""
    global _current
    _current = None
