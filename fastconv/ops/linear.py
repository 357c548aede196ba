"""Linear: y = x @ w.T + b with w of shape (out_features, in_features)."""

from __future__ import annotations

from ..argcheck import array, same_device, same_dtype
from ..backend import op


def linear_forward(x, w, b=None, *, kernels=None):
    array(x, "x", 2)
    array(w, "w", 2)
    if b is not None:
        array(b, "b", 1)
    same_dtype(w, "w", (x, "x"), (b, "b"))
    same_device(x=x, w=w, b=b)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x: got shape {tuple(x.shape)}, expected {w.shape[1]} features (dim 1) to match w "
                         f"of shape {tuple(w.shape)}")
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"b: got shape {tuple(b.shape)}, expected ({w.shape[0]},)")
    return op("linear_forward", x, w, b, kernels=kernels)(x, w, b)


def linear_backward_data(dy, w, *, kernels=None):
    array(dy, "dy", 2)
    array(w, "w", 2)
    same_dtype(w, "w", (dy, "dy"))
    same_device(dy=dy, w=w)
    if dy.shape[1] != w.shape[0]:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {w.shape[0]} columns")
    return op("linear_backward_data", dy, w, kernels=kernels)(dy, w)


def linear_backward_weight(dy, x, *, kernels=None):
    """Returns (dw, db)."""
    array(dy, "dy", 2)
    array(x, "x", 2)
    same_dtype(dy, "dy", (x, "x"))
    same_device(dy=dy, x=x)
    if dy.shape[0] != x.shape[0]:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {x.shape[0]} rows (the batch of x)")
    return op("linear_backward_weight", dy, x, kernels=kernels)(dy, x)
