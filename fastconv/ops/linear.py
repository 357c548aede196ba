"""Linear: y = act(x @ w.T + b) with w of shape (out_features, in_features)."""

from __future__ import annotations

from ..argcheck import leaky_slope, operands
from ..backend import op
from ..plan import planned

ACTIVATIONS = (None, "relu", "leaky_relu", "sigmoid", "tanh")


@planned
def linear_forward(x, w, b=None, *, activation=None, negative_slope=0.01, kernels=None):
    """y[N, out] = act(x[N, in] @ w[out, in].T + b[out]); ``activation`` (one of ACTIVATIONS) is
    applied in the GEMM's epilogue on the GPU, ``negative_slope`` is leaky_relu's."""
    operands("w", (x, "x", 2), (w, "w", 2), (b, "b", 1))
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: got {activation!r}, expected one of {ACTIVATIONS}")
    slope = leaky_slope(negative_slope) if activation == "leaky_relu" else 0.0
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x: got shape {tuple(x.shape)}, expected {w.shape[1]} features (dim 1) to match w "
                         f"of shape {tuple(w.shape)}")
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"b: got shape {tuple(b.shape)}, expected ({w.shape[0]},)")
    return op("linear_forward", x, w, b, kernels=kernels)(x, w, b, activation, slope)


@planned
def linear_backward_data(dy, w, *, kernels=None):
    operands("w", (dy, "dy", 2), (w, "w", 2))
    if dy.shape[1] != w.shape[0]:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {w.shape[0]} columns")
    return op("linear_backward_data", dy, w, kernels=kernels)(dy, w)


@planned
def linear_backward_weight(dy, x, *, kernels=None):
    """Returns (dw, db)."""
    operands("dy", (dy, "dy", 2), (x, "x", 2))
    if dy.shape[0] != x.shape[0]:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {x.shape[0]} rows (the batch of x)")
    return op("linear_backward_weight", dy, x, kernels=kernels)(dy, x)
