"""Per-channel bias added in place: for the ops whose kernels have no bias epilogue."""

from __future__ import annotations

from ..argcheck import array, same_device, same_dtype
from ..backend import op
from ..plan import planned


@planned
def bias_add(y, b, *, kernels=None):
    """y[n, c, ...] += b[c] in place; y of 2-5 dims (N, C, ...), b of shape (C,)."""
    array(y, "y", (2, 3, 4, 5))
    array(b, "b", 1)
    same_dtype(y, "y", (b, "b"))
    same_device(y=y, b=b)
    if b.shape[0] != y.shape[1]:
        raise ValueError(f"b: got shape {tuple(b.shape)}, expected ({y.shape[1]},) (the channels of y)")
    if not y.flags.c_contiguous:
        raise ValueError("y: got a non-contiguous array, expected a C-contiguous one (updated in place)")
    op("bias_add", y, kernels=kernels)(y, b)
