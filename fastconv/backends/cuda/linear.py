"""Launchers of kernels/linear.cu: tiled fp32 GEMMs with bias and activation fused.

The tf32 setting does not reach them: linear layers stay fp32 kernels (no cuBLAS), so a training
step with TF32 conv kernels is still captured whole in a CUDA graph."""

from __future__ import annotations

from . import config as cfg
from .launch import _F32, _alloc, _arg, _f32, _i32, _i32s, _launch


def linear_forward(x, w, b, activation_name=None, slope=0.0):
    """y[M,N] = act(x[M,K] w[N,K]^T + b[N])."""
    x, w = _arg(x, "x"), _arg(w, "w")
    b = None if b is None else _arg(b, "b")
    (m, k), n = x.shape, w.shape[0]
    y = _alloc((m, n), _F32, "linear_forward output")
    _launch("linear.cu", "linear_forward_v1", cfg.linear_grid(m, n), cfg.LINEAR_THREADS,
            (x, w, y if b is None else b, y) + _i32s("x", "M N K", (m, n, k))
            + (_i32(b is not None), _i32(cfg.LINEAR_ACTIVATIONS[activation_name]), _f32(slope)))
    return y


def linear_backward_data(dy, w):
    """dx[M,N] = dy[M,K] w[K,N]."""
    dy, w = _arg(dy, "dy"), _arg(w, "w")
    (m, k), n = dy.shape, w.shape[1]
    dx = _alloc((m, n), _F32, "linear_backward_data output")
    _launch("linear.cu", "linear_backward_data_v1", cfg.linear_grid(m, n), cfg.LINEAR_THREADS,
            (dy, w, dx) + _i32s("dy", "M N K", (m, n, k)))
    return dx


def linear_backward_weight(dy, x):
    """(dw[M,N] = dy[K,M]^T x[K,N], db[M] = sum over K of dy)."""
    dy, x = _arg(dy, "dy"), _arg(x, "x")
    (k, m), n = dy.shape, x.shape[1]
    dw = _alloc((m, n), _F32, "linear_backward_weight output")
    db = _alloc((m,), _F32, "linear_backward_weight bias gradient")
    _launch("linear.cu", "linear_backward_weight_v1", cfg.linear_grid(m, n), cfg.LINEAR_THREADS,
            (dy, x, dw, db) + _i32s("dy", "M N K", (m, n, k)) + (_i32(1),))
    return dw, db
