"""What every cupy-family launcher shares: output allocation (NaN poisoning, out-of-memory
messages), input checks, int32 argument checks and the RawKernel launch. Allocations and launches
are reported to fastconv.plan, which records them on an op's first call with a key and repeats
them on later calls (a plan hit never reaches the launchers).
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from ... import settings
from ...arena import current_arena
from ...plan_record import note_alloc, note_launch
from . import config as cfg
from .loader import function


_F32 = np.dtype(np.float32)


_sms: dict[int, int] = {}


class GPUOutOfMemoryError(MemoryError):
    """A GPU allocation failed; the message names the bytes asked for."""


def num_sms() -> int:
    dev = cp.cuda.Device()
    n = _sms.get(dev.id)
    if n is None:
        n = _sms[dev.id] = int(dev.attributes["MultiProcessorCount"])
    return n


def _alloc(shape, dtype, what: str, zero: bool = False):
    """A new device array (NaN-filled under the poison setting); the one allocator of both kernel
    families, so launch plans (fastconv.plan) repeat it on a plan hit and an Arena's step gets its
    static buffers from it. ``zero``: zeros when made, for a workspace its kernel leaves zero again
    (a last-block counter): a plan keeps it and an Arena's later passes take it as it is. ``dtype``
    is a numpy dtype (or type); the out-of-memory error names ``what`` and the bytes asked for."""
    make = cp.zeros if zero else cp.empty
    arena = current_arena()
    try:
        a = make(shape, dtype) if arena is None else arena.take(shape, dtype, lambda: make(shape, dtype))
    except cp.cuda.memory.OutOfMemoryError:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        free, total = cp.cuda.runtime.memGetInfo()
        raise GPUOutOfMemoryError(
            f"{what}: out of GPU memory asking for {nbytes} bytes ({tuple(shape)} {dtype}); "
            f"{free} of {total} bytes free on GPU {cp.cuda.Device().id}; expected a smaller batch or "
            "fewer arrays alive") from None
    if not zero and settings.current().poison:
        kind = a.dtype.kind
        a.fill(np.nan if kind == "f" else np.iinfo(a.dtype).max if kind == "u" else -1)
    note_alloc(_alloc, (shape, dtype, what, zero), a, make, reusable=True)
    return a


def _arg(a, name: str, dtype=_F32, inplace: bool = False):
    """Check a device array; return it C-contiguous (a copy when it was not, unless in place)."""
    if not isinstance(a, cp.ndarray):
        raise TypeError(f"{name}: got {type(a).__name__}, expected a cupy.ndarray")
    if a.dtype != dtype:
        raise TypeError(f"{name}: got dtype {a.dtype} on the GPU, expected {np.dtype(dtype)}")
    dev = cp.cuda.Device().id
    if a.device.id != dev:
        raise ValueError(f"{name}: got an array on GPU {a.device.id}, expected the current GPU {dev}")
    if not a.flags.c_contiguous:
        if inplace:
            raise ValueError(f"{name}: got a non-contiguous array, expected a C-contiguous one (updated in place)")
        a = cp.ascontiguousarray(a)
    return a


def _out(out, shape, what: str):
    """The array a launcher writes a result into: ``out`` checked (a cupy float32 array on the
    current GPU, C-contiguous: fastconv.ops has checked its shape), else a new one (see _alloc)."""
    return _alloc(shape, _F32, what) if out is None else _arg(out, "out", inplace=True)


EPI_NONE, EPI_BIAS, EPI_GRAD = 0, 1, 2   # a fused epilogue's modes (kernels/common.cuh, the same names)


def _epilogue(b, act, slope, grad=False):
    """The int arguments of a fused epilogue: (mode, act, slope); the mode is EPI_GRAD with ``grad``
    (b is then the outputs of the activation act, shaped as the kernel's output: the epilogue
    applies that activation's backward), else EPI_BIAS with a bias b, else EPI_NONE."""
    return _i32(EPI_GRAD if grad else EPI_BIAS if b is not None else EPI_NONE), _i32(act), _f32(slope)


def _i32(v):
    """A small int (flag, split count, chunk) as np.int32; sizes go through _i32s."""
    return np.int32(v)


def _i32s(name: str, labels: str, values) -> tuple:
    """``values`` as np.int32 scalars; a ValueError naming the argument and the quantity (instead of
    numpy's OverflowError) when one does not fit the kernel's 32-bit int parameter."""
    if max(values) > cfg.INT32_MAX or min(values) < -cfg.INT32_MAX - 1:
        for label, v in zip(labels.split(), values):
            if not -cfg.INT32_MAX - 1 <= v <= cfg.INT32_MAX:
                raise ValueError(f"{name}: got {label} = {v}, expected at most {cfg.INT32_MAX} (the GPU kernel "
                                 "takes it as a 32-bit int); split the batch")
    return tuple(np.int32(v) for v in values)


def _f32(v):
    return np.float32(v)


def _launch(filename, name, grid, block, args):
    """Launch kernel ``name`` of ``filename`` on a grid of 1-d blocks."""
    fn = function(filename, name)
    grid, block = tuple(int(g) for g in grid), (int(block),)
    fn(grid, block, args)
    note_launch(fn, grid, block, args)


def _eltwise_grid(n, per_thread=1):
    return (cfg.elementwise_blocks(n, num_sms(), cfg.BLOCK, per_thread),)


def _aligned(*arrays, nbytes=16):
    """Whether every array starts on an ``nbytes`` boundary (a view may not: vector loads need it)."""
    return all(a.data.ptr % nbytes == 0 for a in arrays)


def _channel_launch(name, x, n, c, hw):
    """(grid, slices, chunk, width) of a per-channel reduction over x viewed as (n, c, hw)
    (kernels/reduce.cuh): blocks = (slices, c); width 4 (the ``_f4`` kernels) when hw % 4 == 0 and
    x is 16-byte aligned, else 1. Checks the 32-bit offsets (n*c*hw) and the grid."""
    cfg.check_int32(name, n * c * hw, "N*C*H*W")
    splits, chunk = cfg.channel_splits(c, n, hw, num_sms())
    grid = cfg.check_grid(name, (splits, c, 1))
    return grid, splits, chunk, 4 if hw % 4 == 0 and _aligned(x) else 1
