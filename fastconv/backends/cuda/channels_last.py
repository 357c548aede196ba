"""Channels-last copies of NCHW tensors (nchw_to_nhwc_v1 in kernels/conv.cu), which the TF32 vec
kernels gather from, and the scope in which one op call makes each tensor's copy once."""

from __future__ import annotations

import contextlib
import threading

from . import config as cfg
from .launch import _F32, _alloc, _i32, _launch


class _Copies(threading.local):
    memo = None   # inside shared_copies(): {(address, shape, strides, tf32): (tensor, its copy)}


_copies = _Copies()


@contextlib.contextmanager
def shared_copies():
    """Within: one channels-last copy per tensor (and rounding), made by the first launcher that
    wants it and reused by the others; for one op call that runs several passes on the same arrays
    (fastconv.ops.conv2d_backward: dy's copy, for backward-data and backward-weight)."""
    outer, _copies.memo = _copies.memo, {} if _copies.memo is None else _copies.memo
    try:
        yield
    finally:
        _copies.memo = outer


@contextlib.contextmanager
def unshared_copies():
    """Within: no copy is shared (an autotuner's trial calls each pay for the copies they make)."""
    outer, _copies.memo = _copies.memo, None
    try:
        yield
    finally:
        _copies.memo = outer


def to_nhwc(t, what, out=None, tf32=True):
    """A channels-last copy (N, H, W, C) of the NCHW tensor t (into ``out`` when given), rounded to tf32
    unless ``tf32`` is False, by nchw_to_nhwc_v1; inside shared_copies() a tensor's copy is made once."""
    memo = _copies.memo if out is None else None
    key = memo is not None and (t.data.ptr, t.shape, t.strides, tf32)
    if memo and key in memo:
        return memo[key][1]
    n, c, h, wd = t.shape
    out = _alloc((n, h, wd, c), _F32, f"channels-last copy of {what}") if out is None else out
    _launch("conv.cu", "nchw_to_nhwc_v1",
            cfg.check_grid(what, (n * cfg.cdiv(h * wd, cfg.PACK_TILE), cfg.cdiv(c, cfg.PACK_TILE), 1)), cfg.PACK_BLOCK,
            (t, out, _i32(c), _i32(h * wd), _i32(tf32)))
    if memo is not None:
        memo[key] = (t, out)   # t kept alive: its address cannot be reused while the memo holds it
    return out
