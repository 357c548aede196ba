"""Launchers of kernels/embedding.cu: label embeddings and the projection discriminator's class term."""

from __future__ import annotations

import cupy as cp
import numpy as np

from . import config as cfg
from .launch import _arg, _eltwise_grid, _i32, _i32s, _launch, _out


def _labels(labels):
    """int32 labels for the kernels (an int32 array is used as it is: no CuPy work in a captured step)."""
    if not isinstance(labels, cp.ndarray) or labels.dtype.kind not in "iu":
        raise TypeError(f"labels: got {getattr(labels, 'dtype', type(labels).__name__)}, expected an integer "
                        "cupy array")
    return _arg(labels.astype(np.int32, copy=False), "labels", np.int32)


def _scale(scale, fallback):
    """(scale array, use_scale flag): the fallback array stands in (never read) when there is none."""
    return (fallback, np.int32(0)) if scale is None else (_arg(scale, "scale"), np.int32(1))


def embedding_forward(weight, labels, prefix=None, scale=None, out=None, accumulate=False):
    """(N, P + D) rows, into ``out`` when given (added into it with ``accumulate``, by the kernel)."""
    weight, labels = _arg(weight, "weight"), _labels(labels)
    n, (c, d) = labels.shape[0], weight.shape
    p = 0 if prefix is None else prefix.shape[1]
    prefix = weight if prefix is None else _arg(prefix, "prefix")
    scale, use = _scale(scale, weight)
    out = _out(out, (n, p + d), "embedding_forward output")
    _launch("embedding.cu", "embedding_forward_v1", _eltwise_grid(n * (p + d)), cfg.BLOCK,
            (weight, labels, prefix, scale, out, np.int64(n)) + _i32s("weight", "C D P", (c, d, p))
            + (use, _i32(accumulate)))
    return out


def embedding_backward(dy, labels, weight_shape, scale=None, out=None, accumulate=False):
    """dweight, into ``out`` when given (added into it with ``accumulate``, by the kernel)."""
    dy, labels = _arg(dy, "dy"), _labels(labels)
    (n, k), (c, d) = dy.shape, weight_shape
    scale, use = _scale(scale, dy)
    dw = _out(out, (c, d), "embedding_backward dweight")
    _launch("embedding.cu", "embedding_backward_v1", _eltwise_grid(c * d), cfg.BLOCK,
            (dy, labels, scale, dw) + _i32s("dy", "N C D K", (n, c, d, k)) + (use, _i32(accumulate)))
    return dw


def class_projection_forward(h, weight, labels, out=None, accumulate=False):
    """(N, 1) class terms, into ``out`` when given (added into it with ``accumulate``, by the kernel)."""
    h, weight, labels = _arg(h, "h"), _arg(weight, "weight"), _labels(labels)
    (n, f), c = h.shape, weight.shape[0]
    out = _out(out, (n, 1), "class_projection_forward output")
    _launch("embedding.cu", "class_projection_forward_v1", (cfg.warp_rows_blocks(n),), cfg.BLOCK,
            (h, weight, labels, out) + _i32s("h", "N C F", (n, c, f)) + (_i32(accumulate),))
    return out
