"""CPU convolution: im2col + one BLAS matmul per batch chunk and group; col2im as R x S strided adds."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...argcheck import conv_out_size
from .activation import activate, activate_backward
from .buffers import _batch_chunk, _scratch
from .optim import adds_into


# Per batch chunk of m samples, the convolution is ONE GEMM per group with a long N dimension:
# (K/G x C/G*R*S) @ (C/G*R*S x P*Q*m). The column buffer's columns are ordered either
#   batch-inner (y, x, n): the chunk is first staged as a zero-padded (C, Hp, Wp, m) array, so
#     that the im2col copy and col2im's R*S strided adds move contiguous runs of Q*m elements
#     (m for strides > 1) instead of Q; the price is a gather when the (K, P, Q, m) GEMM output
#     is transposed back to NCHW; or
#   batch-outer (n, y, x): staged as (C, m, Hp, Wp); runs of Q, but the output goes back to NCHW
#     in runs of P*Q.
# Batch-inner pays where the column buffer is large next to the output (C*R*S >> K) and Q is
# short; batch-outer where the output dominates (first layers: C*R*S ~ K, large P*Q).
# Work arrays are logical (c, h, w, n) / (.., y, x, n) views whatever their memory order.


def _batch_inner(crs, k, q):
    return crs >= 2 * k and q < 32


def _chunk_array(name, lead, p, q, m, dtype, inner):
    """Scratch array of logical shape (*lead, p, q, m) in memory order (*lead, p, q, m) when
    inner, else (*lead, m, p, q); returned with its (prod(lead), p*q*m) matrix in memory order."""
    nl = len(lead)
    if inner:
        a = _scratch(name, (*lead, p, q, m), dtype)
        return a, a.reshape(-1, p * q * m)
    a = _scratch(name, (*lead, m, p, q), dtype)
    return a.transpose(*range(nl), nl + 1, nl + 2, nl), a.reshape(-1, m * p * q)


def _stage(x, n0, n1, padding, inner):
    """x[n0:n1] zero-padded, as a logical (C, Hp, Wp, m) scratch view."""
    _, c, h, w = x.shape
    ph, pw = padding
    t, tm = _chunk_array("xt", (c,), h + 2 * ph, w + 2 * pw, n1 - n0, x.dtype, inner)
    if ph or pw:
        tm.fill(0)
    np.copyto(t[:, ph:ph + h, pw:pw + w], x[n0:n1].transpose(1, 2, 3, 0))
    return t


def _im2col(t, r, s, p, q, stride, dilation, inner):
    """Column matrix (C*R*S, P*Q*m) of a staged (C, Hp, Wp, m) view: row (c, i, j), column
    (y, x, n) holds t[c, y*sh + i*dh, x*sw + j*dw, n]."""
    c, _, _, m = t.shape
    sc, sh_, sw_, sn = t.strides
    win = as_strided(t, (c, r, s, p, q, m),
                     (sc, sh_ * dilation[0], sw_ * dilation[1], sh_ * stride[0], sw_ * stride[1], sn),
                     writeable=False)
    cols, mat = _chunk_array("cols", (c, r, s), p, q, m, t.dtype, inner)
    np.copyto(cols, win)
    return mat


def _stage_dy(dy, n0, n1, inner):
    """dy[n0:n1] as a (K, P*Q*m) matrix in the chunk's column order."""
    _, k, p, q = dy.shape
    t, mat = _chunk_array("dyt", (k,), p, q, n1 - n0, dy.dtype, inner)
    np.copyto(t, dy[n0:n1].transpose(1, 2, 3, 0))
    return mat


def conv2d_forward(x, w, b, stride, padding, dilation, groups, activation=None, slope=0.0):
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    p = conv_out_size(h, r, stride[0], padding[0], dilation[0])
    q = conv_out_size(wd, s, stride[1], padding[1], dilation[1])
    kg = k // groups
    crs = cg * r * s
    inner = _batch_inner(crs, kg, q)
    y = np.empty((n, k, p, q), dtype=x.dtype)
    wmat = w.reshape(groups, kg, crs)
    bias = None if b is None else b.reshape(1, k, 1, 1)
    step = _batch_chunk(n, c * r * s * p * q * x.itemsize)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        cols = _im2col(_stage(x, n0, n1, padding, inner), r, s, p, q, stride, dilation, inner)
        out, omat = _chunk_array("out", (k,), p, q, n1 - n0, x.dtype, inner)
        for g in range(groups):
            np.matmul(wmat[g], cols[g * crs:(g + 1) * crs], out=omat[g * kg:(g + 1) * kg])
        chunk = out.transpose(3, 0, 1, 2)
        if bias is None:
            np.copyto(y[n0:n1], chunk)
        else:
            np.add(chunk, bias, out=y[n0:n1])
    return activate(activation, y, slope)


def conv2d_backward_data(dy, w, x_shape, stride, padding, dilation, groups, b=None, activation=None, slope=0.0,
                         activation_output=None):
    """act(dx + b[c]): no bias or activation by default (ConvTranspose2d's forward takes both); given
    ``activation_output`` (the outputs of ``activation`` that were x), dx through its backward."""
    n, c, h, wd = x_shape
    k, cg, r, s = w.shape
    p, q = dy.shape[2:]
    kg = k // groups
    crs = cg * r * s
    inner = _batch_inner(crs, kg, q)
    ph, pw = padding
    sh, sw = stride
    dh, dw = dilation
    dx = np.empty(x_shape, dtype=dy.dtype)
    wmat = w.reshape(groups, kg, crs)
    step = _batch_chunk(n, c * r * s * p * q * dy.itemsize)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        m = n1 - n0
        dyt = _stage_dy(dy, n0, n1, inner)
        dcols, dmat = _chunk_array("cols", (c, r, s), p, q, m, dy.dtype, inner)
        for g in range(groups):
            np.matmul(wmat[g].T, dyt[g * kg:(g + 1) * kg], out=dmat[g * crs:(g + 1) * crs])
        # col2im: dxt[c, y*sh + i*dh, x*sw + j*dw, n] += dcols[c, i, j, y, x, n], R*S strided adds
        dxt, dxm = _chunk_array("xt", (c,), h + 2 * ph, wd + 2 * pw, m, dy.dtype, inner)
        dxm.fill(0)
        for i in range(r):
            for j in range(s):
                dxt[:, i * dh:i * dh + sh * (p - 1) + 1:sh, j * dw:j * dw + sw * (q - 1) + 1:sw] += dcols[:, i, j]
        np.copyto(dx[n0:n1], dxt[:, ph:ph + h, pw:pw + wd].transpose(3, 0, 1, 2))
    if activation_output is not None:
        return activate_backward(activation, dx, activation_output, slope)
    if b is not None:
        dx += b.reshape(1, -1, 1, 1)
    return activate(activation, dx, slope)


@adds_into
def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups, out=None):
    n, c, h, wd = x.shape
    k, cg, r, s = w_shape
    p, q = dy.shape[2:]
    kg = k // groups
    crs = cg * r * s
    inner = _batch_inner(crs, kg, q)
    # dW = dy @ cols^T reduces over the long P*Q*m axis. Multi-threaded OpenBLAS is fast only when
    # the operand with MORE rows comes first (A @ B^T with rows(A) >= rows(B)); the other order ran
    # 10-200x slower on the 2-core box under load (lenet.conv2: 36 vs 440 ms; lenet.conv1: 8 vs
    # 1450 ms). So compute whichever of dW and dW^T puts the taller matrix first.
    cols_first = crs >= kg
    dw = np.empty(w_shape, dtype=x.dtype) if out is None else out
    dwt = np.empty((groups, crs, kg), dtype=x.dtype) if cols_first else dw.reshape(groups, kg, crs)
    step = _batch_chunk(n, c * r * s * p * q * x.itemsize)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        cols = _im2col(_stage(x, n0, n1, padding, inner), r, s, p, q, stride, dilation, inner)
        dyt = _stage_dy(dy, n0, n1, inner)
        for g in range(groups):
            cg_, dg = cols[g * crs:(g + 1) * crs], dyt[g * kg:(g + 1) * kg]
            part = cg_ @ dg.T if cols_first else dg @ cg_.T
            if n0 == 0:
                dwt[g] = part
            else:
                dwt[g] += part
    if cols_first:
        np.copyto(dw.reshape(groups, kg, crs), dwt.transpose(0, 2, 1))
    return dw


@adds_into
def conv2d_backward_bias(dy, out=None):
    return dy.sum(axis=(0, 2, 3), out=out)
