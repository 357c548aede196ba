"""NumPy CPU backend: the fallback when there is no GPU, and the reference every GPU kernel is
validated against.

Convolution is im2col + one BLAS matmul per batch chunk and group: the chunk is staged zero-padded
with the batch index inner (or outer) to the image, copied through a strided window view into a
column buffer and multiplied by the weights; col2im is R x S strided adds (see the comment above
conv2d_forward). Pooling loops over the R x S window offsets with strided slices, with a pairwise
fast path for 2x2/stride-2 max-pooling. There are no Python loops over pixels or the batch (the
conv batch chunks only bound the column buffer). Arguments arrive validated by fastconv.ops.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

# Batch chunks keep each column buffer under about this many bytes. A compromise measured both ways:
# on a quiet machine (Xeon, 2 cores pinned) cache-sized chunks win (LeNet step 8/16/64 MiB:
# 109/112/122 ms, torch 133); on the shared 2-core box under load every multi-threaded BLAS call
# risks a stall while OpenBLAS's second thread wakes up, so fewer chunks win there (8/32/128 MiB:
# 688/438/384 ms, torch ~500). The buffers are per-thread scratch kept between calls: first-touch
# page faults cost ~14 us per 4 KiB page on that box.
_COLS_BYTES = 16 << 20

# ---- helpers ------------------------------------------------------------------------------------


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


def _out_size(h, r, stride, pad, dil):
    return (h + 2 * pad - dil * (r - 1) - 1) // stride + 1


# ---- convolution --------------------------------------------------------------------------------
#
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


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    p = _out_size(h, r, stride[0], padding[0], dilation[0])
    q = _out_size(wd, s, stride[1], padding[1], dilation[1])
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
    return y


def conv2d_backward_data(dy, w, x_shape, stride, padding, dilation, groups):
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
    return dx


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups):
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
    dwt = np.empty((groups, crs, kg) if cols_first else (groups, kg, crs), dtype=x.dtype)
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
    if not cols_first:
        return dwt.reshape(k, cg, r, s)
    return np.ascontiguousarray(dwt.transpose(0, 2, 1)).reshape(k, cg, r, s)


def conv2d_backward_bias(dy):
    return dy.sum(axis=(0, 2, 3))


# ---- activations --------------------------------------------------------------------------------


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(dy, y):
    return dy * (y > 0)


def leaky_relu_forward(x, slope):
    return np.where(x > 0, x, x * x.dtype.type(slope))


def leaky_relu_backward(dy, y, slope):
    return np.where(y > 0, dy, dy * dy.dtype.type(slope))


def sigmoid_forward(x):
    # 1 / (1 + exp(-x)) without overflow for large |x|
    return np.exp(-np.logaddexp(0, -x)).astype(x.dtype, copy=False)


def sigmoid_backward(dy, y):
    return dy * y * (1 - y)


def tanh_forward(x):
    return np.tanh(x)


def tanh_backward(dy, y):
    return dy * (1 - y * y)


# ---- pooling ------------------------------------------------------------------------------------


def _offset_slices(i, j, p, q, stride):
    sh, sw = stride
    return (slice(None), slice(None), slice(i, i + sh * (p - 1) + 1, sh), slice(j, j + sw * (q - 1) + 1, sw))


def _plane_index(off, ks, stride, padding, w):
    """Window offset (i*S + j) of each output -> index h*W + w into the unpadded input plane."""
    p, q = off.shape[-2:]
    oi, oj = np.divmod(off.astype(np.int32, copy=False), np.int32(ks[1]))
    rows = (np.arange(p, dtype=np.int32) * stride[0] - padding[0]).reshape(p, 1)
    cols = (np.arange(q, dtype=np.int32) * stride[1] - padding[1]).reshape(1, q)
    return (oi + rows) * np.int32(w) + (oj + cols)


def _max_pool2x2(x):
    """2x2 windows, stride 2, no padding: pairwise maxima, horizontal first so that ties go to the
    first position in row-major window order (a bottom-row or right-column element wins only
    when strictly greater). About 10 array passes instead of ~25 in the general path."""
    n, c, h, w = x.shape
    p, q = h // 2, w // 2
    x = x[:, :, :2 * p, :2 * q]
    left, right = x[..., 0::2], x[..., 1::2]          # (n, c, 2p, q)
    hmax = np.maximum(left, right)
    hsel = np.greater(right, left)                     # right column won its row
    top, bot = hmax[:, :, 0::2], hmax[:, :, 1::2]      # (n, c, p, q)
    y = np.maximum(top, bot)
    lower = np.greater(bot, top)                       # bottom row won
    # the winning row's column bit; bitwise on bools is ~5x cheaper than np.where here
    col = (lower & hsel[:, :, 1::2]) | (~lower & hsel[:, :, 0::2])
    arg = np.multiply(lower, np.int32(w), dtype=np.int32)
    arg += col
    base = (np.arange(p, dtype=np.int32) * np.int32(2 * w)).reshape(p, 1) + np.arange(0, 2 * q, 2, dtype=np.int32)
    arg += base
    return y, arg


def max_pool2d_forward(x, ks, stride, padding):
    if ks == (2, 2) and stride == (2, 2) and padding == (0, 0):
        y, arg = _max_pool2x2(x)
        if not np.isnan(y).any():
            return y, arg
        # NaN input: the pairwise fast path does not track which element was NaN; the general
        # path below does
    n, c, h, w = x.shape
    p = _out_size(h, ks[0], stride[0], padding[0], 1)
    q = _out_size(w, ks[1], stride[1], padding[1], 1)
    xpad = _pad(x, padding, -np.inf)
    views = [xpad[_offset_slices(i, j, p, q, stride)] for i in range(ks[0]) for j in range(ks[1])]
    best = views[0].copy()
    for v in views[1:]:
        np.maximum(best, v, out=best)
    # the first window position holding the maximum wins (scan order, as in PyTorch): assign the
    # offsets from last to first so earlier ones overwrite later ties
    odt = np.uint8 if len(views) < 256 else np.int32
    off = np.zeros(best.shape, dtype=odt)
    for o in range(len(views) - 1, -1, -1):
        np.copyto(off, odt(o), where=views[o] == best)
    nan = np.isnan(best)
    if nan.any():
        # a NaN in a window is its maximum (np.maximum propagates it); point argmax at the first
        # NaN in scan order, as the GPU kernels do, so the gradient reaches the NaN's input
        for o in range(len(views) - 1, -1, -1):
            np.copyto(off, odt(o), where=nan & np.isnan(views[o]))
    return best, _plane_index(off, ks, stride, padding, w)


def max_pool2d_backward(dy, argmax, x_shape, ks, stride, padding):
    n, c, h, w = x_shape
    p, q = dy.shape[2:]
    if stride[0] >= ks[0] and stride[1] >= ks[1]:
        # windows do not overlap: every input element is chosen at most once, so scatter by assignment
        # (np.put on flat indices: ~25% cheaper than put_along_axis, which builds index arrays per axis)
        dx = np.zeros(n * c * h * w, dtype=dy.dtype)
        it = np.int32 if n * c * h * w < 2 ** 31 else np.int64
        flat = argmax.reshape(n * c, p * q).astype(it)
        flat += (np.arange(n * c, dtype=it) * it(h * w)).reshape(n * c, 1)
        np.put(dx, flat, dy)
        return dx.reshape(x_shape)
    # overlapping windows: several outputs may choose one input; sum them with bincount per plane
    planes = (np.arange(n * c, dtype=np.int64) * (h * w)).reshape(n * c, 1)
    flat = (argmax.reshape(n * c, p * q) + planes).ravel()
    dx = np.bincount(flat, weights=dy.ravel(), minlength=n * c * h * w)
    return dx.astype(dy.dtype, copy=False).reshape(x_shape)


def _avg_divisor(h, w, p, q, ks, stride, padding, count_include_pad, dtype):
    """(P, Q) divisor map: the window area, or the count of its elements inside the input."""
    if count_include_pad:
        return dtype.type(ks[0] * ks[1])

    def counts(size, k, st, pd, out):
        start = np.arange(out) * st - pd
        return np.minimum(start + k, size) - np.maximum(start, 0)

    return np.outer(counts(h, ks[0], stride[0], padding[0], p), counts(w, ks[1], stride[1], padding[1], q)).astype(dtype)


def avg_pool2d_forward(x, ks, stride, padding, count_include_pad):
    n, c, h, w = x.shape
    p = _out_size(h, ks[0], stride[0], padding[0], 1)
    q = _out_size(w, ks[1], stride[1], padding[1], 1)
    xpad = _pad(x, padding)
    acc = np.zeros((n, c, p, q), dtype=x.dtype)
    for i in range(ks[0]):
        for j in range(ks[1]):
            acc += xpad[_offset_slices(i, j, p, q, stride)]
    acc /= _avg_divisor(h, w, p, q, ks, stride, padding, count_include_pad, x.dtype)
    return acc


def avg_pool2d_backward(dy, x_shape, ks, stride, padding, count_include_pad):
    n, c, h, w = x_shape
    p, q = dy.shape[2:]
    g = dy / _avg_divisor(h, w, p, q, ks, stride, padding, count_include_pad, dy.dtype)
    dxpad = np.zeros((n, c, h + 2 * padding[0], w + 2 * padding[1]), dtype=dy.dtype)
    for i in range(ks[0]):
        for j in range(ks[1]):
            dxpad[_offset_slices(i, j, p, q, stride)] += g
    return np.ascontiguousarray(dxpad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w])


# ---- linear -------------------------------------------------------------------------------------


def linear_forward(x, w, b):
    y = x @ w.T
    if b is not None:
        y += b
    return y


def linear_backward_data(dy, w):
    return dy @ w


def linear_backward_weight(dy, x):
    return dy.T @ x, dy.sum(axis=0)


# ---- batch normalisation ------------------------------------------------------------------------


def _bn_axes_shape(x):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, x.shape[1]) if x.ndim == 2 else (1, x.shape[1], 1, 1)
    return axes, shape


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    axes, shape = _bn_axes_shape(x)
    if training:
        count = x.size // x.shape[1]
        mean = x.mean(axis=axes)
        xc = x - mean.reshape(shape)
        var = np.mean(xc * xc, axis=axes)
        invstd = 1 / np.sqrt(var + x.dtype.type(eps))
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += (momentum * count / (count - 1)) * var
    else:
        mean = running_mean.copy()
        invstd = 1 / np.sqrt(running_var + x.dtype.type(eps))
        xc = x - mean.reshape(shape)
    y = xc * (invstd * gamma).reshape(shape) + beta.reshape(shape)
    return y, mean, invstd.astype(x.dtype, copy=False)


def batchnorm_backward(dy, x, gamma, mean, invstd, training):
    axes, shape = _bn_axes_shape(x)
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    if training:
        count = x.size // x.shape[1]
        dx = (gamma * invstd / count).reshape(shape) * (count * dy - dbeta.reshape(shape) - xhat * dgamma.reshape(shape))
    else:
        dx = dy * (gamma * invstd).reshape(shape)
    return dx, dgamma, dbeta


# ---- dropout ------------------------------------------------------------------------------------


def fmix32(h):
    """MurmurHash3's 32-bit finaliser on a uint32 array (wrapping arithmetic)."""
    h = np.asarray(h, dtype=np.uint32)
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def dropout_mask(size, p, seed):
    """uint8 keep-mask of ``size`` elements for drop probability p (the hash in fastconv.ops)."""
    key = fmix32(np.array([seed], dtype=np.uint32))[0]  # an array: numpy warns on scalar wrap-around
    h = fmix32(np.arange(size, dtype=np.uint32) ^ key)
    return (h.astype(np.uint64) >= np.uint64(int(p * 4294967296.0))).astype(np.uint8)


def dropout_forward(x, p, seed):
    mask = dropout_mask(x.size, p, seed).reshape(x.shape)
    return x * (mask * x.dtype.type(1.0 / (1.0 - p))), mask


def dropout_backward(dy, mask, p):
    return dy * (mask * dy.dtype.type(1.0 / (1.0 - p)))


# ---- losses -------------------------------------------------------------------------------------


def softmax_cross_entropy(logits, labels):
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = (np.log(s[:, 0]) - z[rows, labels]).mean()
    d = e / s
    d[rows, labels] -= 1
    d /= n
    return np.asarray(loss, dtype=logits.dtype), d


def bce_with_logits(logits, targets):
    z = logits
    loss = (np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))).mean()
    d = (sigmoid_forward(z) - targets) / z.size
    return np.asarray(loss, dtype=logits.dtype), d.astype(logits.dtype, copy=False)


# ---- optimizer updates (in place) ---------------------------------------------------------------


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    g = grad + param.dtype.type(weight_decay) * param if weight_decay else grad
    if momentum:
        velocity *= param.dtype.type(momentum)
        velocity += g
        g = g + param.dtype.type(momentum) * velocity if nesterov else velocity
    param -= param.dtype.type(lr) * g


def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
    t = param.dtype.type
    g = grad + t(weight_decay) * param if weight_decay else grad
    m *= t(beta1)
    m += t(1 - beta1) * g
    v *= t(beta2)
    v += t(1 - beta2) * (g * g)
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    denom = np.sqrt(v / t(bc2)) + t(eps)
    param -= t(lr / bc1) * m / denom
