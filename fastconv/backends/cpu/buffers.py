"""Per-thread scratch buffers, zero padding and batch chunking shared by the CPU conv and pooling code."""

from __future__ import annotations

import math
import threading

import numpy as np


# Batch chunks keep each column buffer under about this many bytes. A compromise measured both ways:
# on a quiet machine (Xeon, 2 cores pinned) cache-sized chunks win (LeNet step 8/16/64 MiB:
# 109/112/122 ms, torch 133); on the shared 2-core box under load every multi-threaded BLAS call
# risks a stall while OpenBLAS's second thread wakes up, so fewer chunks win there (8/32/128 MiB:
# 688/438/384 ms, torch ~500). The buffers are per-thread scratch kept between calls: first-touch
# page faults cost ~14 us per 4 KiB page on that box.
_COLS_BYTES = 16 << 20


def _pad(x, padding, value=0.0):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


_tls = threading.local()


def _scratch(name, shape, dtype):
    """A per-thread work array, reused across calls so that the big column buffers are not
    re-faulted into memory on every call. Never returned to the caller, nor live across a call:
    each name is used by one array at a time inside one op."""
    bufs = _tls.__dict__.setdefault("bufs", {})
    size = math.prod(shape)
    key = (name, np.dtype(dtype))
    buf = bufs.get(key)
    if buf is None or buf.size < size:
        buf = bufs[key] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def _batch_chunk(n, bytes_per_sample):
    """Samples per chunk: as few chunks as fit _COLS_BYTES, balanced (128 -> 64+64, not 107+21)."""
    most = max(1, min(n, _COLS_BYTES // max(1, bytes_per_sample)))
    chunks = -(-n // most)
    return -(-n // chunks)
