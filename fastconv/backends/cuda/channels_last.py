"""Channels-last copies of NCHW tensors (nchw_to_nhwc_v1 in kernels/conv.cu): the dy and x that the
TF32 vec backward-weight gathers from, and its (K, R*S, C/G) result turned into dw's order."""

from __future__ import annotations

from . import config as cfg
from .launch import _F32, _alloc, _i32, _launch


def to_nhwc(t, what, out=None, tf32=True):
    """A channels-last copy (N, H, W, C) of the NCHW tensor t (into ``out`` when given), rounded to tf32
    unless ``tf32`` is False, by nchw_to_nhwc_v1."""
    n, c, h, wd = t.shape
    out = _alloc((n, h, wd, c), _F32, f"channels-last copy of {what}") if out is None else out
    _launch("conv.cu", "nchw_to_nhwc_v1",
            cfg.check_grid(what, (n * cfg.cdiv(h * wd, cfg.PACK_TILE), cfg.cdiv(c, cfg.PACK_TILE), 1)), cfg.PACK_BLOCK,
            (t, out, _i32(c), _i32(h * wd), _i32(tf32)))
    return out
