"""Launchers of kernels/linear.cu: tiled fp32 GEMMs with bias and activation fused.

The tf32 setting does not reach them: linear layers stay fp32 kernels (no cuBLAS), so a training
step with TF32 conv kernels is still captured whole in a CUDA graph."""

from __future__ import annotations

import numpy as np

from . import config as cfg
from .launch import _F32, _alloc, _arg, _eltwise_grid, _epilogue, _i32, _i32s, _launch, _out, num_sms

ROWS_MAX_OUT = 16    # kernels/linear.cu LIN_ROWS_N: linear_forward_rows_v1's (and _backward's) most outputs ...
ROWS_THREADS = 256   # ... and its threads (LIN_ROWS_THREADS)
BACK_THREADS = 128   # linear_backward_rows_v1's threads, one per input feature (LIN_BACK_THREADS) ...
BACK_ROWS = 16       # ... and its batch rows per block (LIN_BACK_ROWS)


def _gemm_split_k(kernel, what, out, m, n, k, operands, fused=(), operand=None, epi=None):
    """Launch ``kernel`` with ``operands``, the output, M N K, ``fused`` and the slice length over
    the m x n output ``out`` (reduction k), split along k when its tiles are too few for the card
    (config.linear_splits): the slices then go to a workspace that linear_splitk_reduce_v1 sums in
    order, then applies the epilogue ``epi`` (launch._epilogue's ints; none by default) with its
    ``operand`` (a bias, or with EPI_GRAD an activation's outputs)."""
    splits, chunk = cfg.linear_splits(m, n, k, num_sms())
    ws = out if splits == 1 else _alloc((splits, m, n), _F32, f"{kernel} split-K workspace")
    _launch("linear.cu", kernel, cfg.linear_grid(m, n, splits), cfg.LINEAR_THREADS,
            operands + (ws,) + _i32s(what, "M N K", (m, n, k)) + fused + (_i32(chunk),))
    if splits > 1:
        _launch("linear.cu", "linear_splitk_reduce_v1", _eltwise_grid(m * n), cfg.BLOCK,
                (ws, out, out if operand is None else operand) + _i32s(what, "M*N N splits", (m * n, n, splits))
                + (epi or _epilogue(None, 0, 0.0)))
    return out


def _activation_grad(activation_name, slope, activation_output):
    """(y, the epilogue's ints) of a pass whose dx goes through the backward of an activation at its
    outputs ``activation_output`` (EPI_GRAD), or (None, no epilogue) without them."""
    if activation_output is None:
        return None, _epilogue(None, 0, 0.0)
    return (_arg(activation_output, "activation_output"),
            _epilogue(activation_output, cfg.LINEAR_ACTIVATIONS[activation_name], slope, grad=True))


def linear_forward(x, w, b, activation_name=None, slope=0.0):
    """y[M,N] = act(x[M,K] w[N,K]^T + b[N]): the tiled GEMM, or for at most ROWS_MAX_OUT outputs
    whose GEMM would be split (a discriminator's 1-logit head) linear_forward_rows_v1, one launch."""
    x, w = _arg(x, "x"), _arg(w, "w")
    b = None if b is None else _arg(b, "b")
    (m, k), n = x.shape, w.shape[0]
    y = _alloc((m, n), _F32, "linear_forward output")
    act = cfg.LINEAR_ACTIVATIONS[activation_name]
    bias, fused = w if b is None else b, _epilogue(b, act, slope)
    if n <= ROWS_MAX_OUT and cfg.linear_splits(m, n, k, num_sms())[0] > 1:
        _launch("linear.cu", "linear_forward_rows_v1", cfg.check_grid("x", (m, 1, 1)), ROWS_THREADS,
                (x, w, bias, y) + _i32s("x", "M N K", (m, n, k)) + fused)
        return y
    return _gemm_split_k("linear_forward_v2", "x", y, m, n, k, (x, w, bias), fused, b, fused)


def linear_backward_data(dy, w, activation_name=None, slope=0.0, activation_output=None):
    """dx[M,N] = dy[M,K] w[K,N]; given ``activation_output`` (M x N, the outputs of the activation
    ``activation_name`` that were x), dx through that activation's backward, in the epilogue."""
    dy, w = _arg(dy, "dy"), _arg(w, "w")
    (m, k), n = dy.shape, w.shape[1]
    dx = _alloc((m, n), _F32, "linear_backward_data output")
    y, epi = _activation_grad(activation_name, slope, activation_output)
    return _gemm_split_k("linear_backward_data_v2", "dy", dx, m, n, k, (dy, w), (dx if y is None else y,) + epi, y,
                         epi)


def linear_backward_weight(dy, x, out=(None, None), accumulate=(False, False)):
    """(dw[M,N] = dy[K,M]^T x[K,N], db[M] = sum over K of dy), each into its entry of ``out`` when
    that is an array (added into it where ``accumulate`` says so, by the kernel)."""
    dy, x = _arg(dy, "dy"), _arg(x, "x")
    (k, m), n = dy.shape, x.shape[1]
    dw = _out(out[0], (m, n), "linear_backward_weight output")
    db = _out(out[1], (m,), "linear_backward_weight bias gradient")
    _launch("linear.cu", "linear_backward_weight_v1", cfg.linear_grid(m, n), cfg.LINEAR_THREADS,
            (dy, x, dw, db) + _i32s("dy", "M N K", (m, n, k)) + (_i32(1), _i32(accumulate[0]), _i32(accumulate[1])))
    return dw, db


def linear_backward(dy, x, w, input_grad=True, weight_grad=True, out=(None, None), accumulate=(False, False),
                    activation_name=None, slope=0.0, activation_output=None):
    """(dx, dw, db) of y = x w^T + b: linear_backward_data's dx (None unless input_grad) and
    linear_backward_weight's (dw, db) (None, None unless weight_grad). Both, for at most ROWS_MAX_OUT
    outputs, in one launch of linear_backward_rows_v1 (one pass over x; BACK_ROWS batch rows per
    block, their partial sums added by the last block of each column tile)."""
    if not (input_grad and weight_grad) or dy.shape[1] > ROWS_MAX_OUT:
        dx = linear_backward_data(dy, w, activation_name, slope, activation_output) if input_grad else None
        return (dx,) + (linear_backward_weight(dy, x, out, accumulate) if weight_grad else (None, None))
    dy, x, w = _arg(dy, "dy"), _arg(x, "x"), _arg(w, "w")
    (m, o), n = dy.shape, x.shape[1]
    dw = _out(out[0], (o, n), "linear_backward_weight output")
    db = _out(out[1], (o,), "linear_backward_weight bias gradient")
    dx = _alloc((m, n), _F32, "linear_backward_data output")
    y, epi = _activation_grad(activation_name, slope, activation_output)
    grid = cfg.check_grid("x", (cfg.cdiv(n, BACK_THREADS), cfg.cdiv(m, BACK_ROWS), 1))
    split = grid[1] > 1   # row groups: partials for each column tile's last block (a counter each, left zero)
    pw = _alloc((grid[1], o, n), _F32, "linear_backward partial dw") if split else dw
    pb = _alloc((grid[1], o), _F32, "linear_backward partial db") if split else db
    count = _alloc((grid[0],), np.uint32, "linear_backward counters", zero=True)
    _launch("linear.cu", "linear_backward_rows_v1", grid, BACK_THREADS,
            (dy, x, w, dw, db, dx) + _i32s("x", "M N", (m, n)) + (_i32(o), _i32(accumulate[0]), _i32(accumulate[1]))
            + (dx if y is None else y,) + epi + (pw, pb, count))
    return dx, dw, db
