"""Launchers of kernels/loss.cu; the loss is a 0-d device array, nothing is copied to the host."""

from __future__ import annotations

import cupy as cp
import numpy as np

from . import config as cfg
from .launch import _F32, _alloc, _arg, _f32, _i32s, _launch, num_sms

# logits elements up to which softmax_xent_rows_v1 runs as one block of REDUCE_BLOCK threads and
# finishes the mean itself (a classifier's batch: LeNet's 128 x 10), saving sum_scale_v1's launch
ONE_BLOCK_ELEMS = 1 << 16


def _sum_scale(values, n, scale, out):
    _launch("loss.cu", "sum_scale_v1", (1,), cfg.REDUCE_BLOCK, (values, out, np.int64(n), np.float64(scale)))


def softmax_cross_entropy(logits, labels):
    logits = _arg(logits, "logits")
    if not isinstance(labels, cp.ndarray) or labels.dtype.kind not in "iu":
        raise TypeError(f"labels: got {getattr(labels, 'dtype', type(labels).__name__)}, expected an integer "
                        "cupy array")
    labels = _arg(labels.astype(np.int32, copy=False), "labels", np.int32)
    n, k = logits.shape
    d = _alloc((n, k), _F32, "softmax_cross_entropy dlogits")
    rows = _alloc((n,), _F32, "softmax_cross_entropy row losses")
    loss = _alloc((), _F32, "softmax_cross_entropy loss")
    one = n * k <= ONE_BLOCK_ELEMS
    _launch("loss.cu", "softmax_xent_rows_v1", (1 if one else cfg.warp_rows_blocks(n),),
            cfg.REDUCE_BLOCK if one else cfg.BLOCK,
            (logits, labels, d, rows) + _i32s("logits", "N K", (n, k)) + (_f32(1.0 / n), loss, np.float64(1.0 / n)))
    if not one:
        _sum_scale(rows, n, 1.0 / n, loss)
    return loss, d


def bce_with_logits(logits, targets, negate=False):
    logits, targets = _arg(logits, "logits"), _arg(targets, "targets")
    n = logits.size
    d = _alloc(logits.shape, _F32, "bce_with_logits dlogits")
    loss = _alloc((), _F32, "bce_with_logits loss")
    blocks = min(cfg.elementwise_blocks(n, num_sms()), 4 * num_sms())
    partial = _alloc((blocks,), _F32, "bce_with_logits partial sums")
    scale = (-1.0 if negate else 1.0) / n
    _launch("loss.cu", "bce_logits_v1", (blocks,), cfg.BLOCK,
            (logits, targets, d, partial, np.int64(n), _f32(scale), loss, np.float64(scale)))
    if blocks > 1:   # one block finishes the mean itself
        _sum_scale(partial, blocks, scale, loss)
    return loss, d


def gan_stats(sums, loss_real, loss_fake, loss_g, logits_real, logits_fake, logits_g):
    sums = _arg(sums, "sums", np.float64, inplace=True)
    args = [_arg(a, name) for a, name in ((loss_real, "loss_real"), (loss_fake, "loss_fake"), (loss_g, "loss_g"),
                                          (logits_real, "logits_real"), (logits_fake, "logits_fake"),
                                          (logits_g, "logits_g"))]
    _launch("loss.cu", "gan_stats_v1", (1,), cfg.REDUCE_BLOCK, (*args, sums, np.int64(logits_real.size)))
