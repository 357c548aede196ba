"""Independent float64 oracles for the CPU test tier, written straight from the definitions.

Each function loops over output positions and filter taps exactly as the formula reads; the loops
are vectorised over the batch and channel axes only (no im2col, no reuse of fastconv code), so an
error in fastconv's im2col/col2im or index arithmetic cannot be mirrored here. Everything is
computed in float64 whatever the input dtype.

Conventions match notes/INTERFACES.md: NCHW, conv weights K x C/G x R x S, transposed-conv weights
C_in x C_out/G x R x S, hyper-parameters as (h, w) pairs.
"""

from __future__ import annotations

import numpy as np


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def out_size(h, r, stride, pad, dil=1):
    return (h + 2 * pad - dil * (r - 1) - 1) // stride + 1


# ---------------------------------------------------------------------------------------------
# convolution: y[n,k,p,q] = b[k] + sum_{c,r,s} x[n, g*C/G + c, p*sh - ph + r*dh, q*sw - pw + s*dw] w[k,c,r,s]

def _conv_taps(h, wd, r, s, p, q, stride, padding, dilation):
    """Yield (p, q, r, s, ih, iw) for every tap that lands inside the unpadded input."""
    for pi in range(p):
        for qi in range(q):
            for ri in range(r):
                ih = pi * stride[0] - padding[0] + ri * dilation[0]
                if not 0 <= ih < h:
                    continue
                for si in range(s):
                    iw = qi * stride[1] - padding[1] + si * dilation[1]
                    if 0 <= iw < wd:
                        yield pi, qi, ri, si, ih, iw


def _grouped_taps(h, wd, w_shape, groups, p, q, stride, padding, dilation):
    """Yield (xs, ks, p, q, r, s, ih, iw): per group, its input-channel slice xs and output-channel
    slice ks of a conv with weight shape K x C/G x R x S, with every tap of _conv_taps."""
    k, cg, r, s = w_shape
    kg = k // groups
    for g in range(groups):
        xs, ks = slice(g * cg, (g + 1) * cg), slice(g * kg, (g + 1) * kg)
        for tap in _conv_taps(h, wd, r, s, p, q, stride, padding, dilation):
            yield (xs, ks) + tap


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    x, w, b = _f64(x), _f64(w), _f64(b)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    p = out_size(h, r, stride[0], padding[0], dilation[0])
    q = out_size(wd, s, stride[1], padding[1], dilation[1])
    y = np.zeros((n, k, p, q))
    for xs, ks, pi, qi, ri, si, ih, iw in _grouped_taps(h, wd, w.shape, groups, p, q, stride, padding, dilation):
        y[:, ks, pi, qi] += x[:, xs, ih, iw] @ w[ks, :, ri, si].T
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_backward_data(dy, w, x_shape, stride=1, padding=0, dilation=1, groups=1):
    """dx = d(sum(y * dy))/dx: every tap of the forward sends dy * w back to the input it read."""
    dy, w = _f64(dy), _f64(w)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    h, wd = x_shape[2:]
    p, q = dy.shape[2:]
    dx = np.zeros(x_shape)
    for xs, ks, pi, qi, ri, si, ih, iw in _grouped_taps(h, wd, w.shape, groups, p, q, stride, padding, dilation):
        dx[:, xs, ih, iw] += dy[:, ks, pi, qi] @ w[ks, :, ri, si]
    return dx


def conv2d_backward_weight(dy, x, w_shape, stride=1, padding=0, dilation=1, groups=1):
    """dw[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] * x[n, g*C/G + c, p*sh - ph + r*dh, q*sw - pw + s*dw]."""
    dy, x = _f64(dy), _f64(x)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    h, wd = x.shape[2:]
    p, q = dy.shape[2:]
    dw = np.zeros(w_shape)
    for xs, ks, pi, qi, ri, si, ih, iw in _grouped_taps(h, wd, w_shape, groups, p, q, stride, padding, dilation):
        dw[ks, :, ri, si] += dy[:, ks, pi, qi].T @ x[:, xs, ih, iw]
    return dw


def conv2d_backward_bias(dy):
    return _f64(dy).sum(axis=(0, 2, 3))


def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Scatter form: input pixel (p, q) adds x * w[:, :, r, s] at output (p*sh - ph + r*dh, q*sw - pw + s*dw)."""
    x, w, b = _f64(x), _f64(w), _f64(b)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    output_padding = _pair(output_padding)
    n, cin, h, wd = x.shape
    _, og, r, s = w.shape
    cg = cin // groups
    ho = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (r - 1) + output_padding[0] + 1
    wo = (wd - 1) * stride[1] - 2 * padding[1] + dilation[1] * (s - 1) + output_padding[1] + 1
    y = np.zeros((n, og * groups, ho, wo))
    for g in range(groups):
        xs, os_ = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        # input pixel (pi, qi) scatters through tap (ri, si) to output (oh, ow): the conv taps with
        # the roles of input and output exchanged
        for pi, qi, ri, si, oh, ow in _conv_taps(ho, wo, r, s, h, wd, stride, padding, dilation):
            y[:, os_, oh, ow] += x[:, xs, pi, qi] @ w[xs, :, ri, si]
    if b is not None:
        y += b[None, :, None, None]
    return y


# ---------------------------------------------------------------------------------------------
# pooling (floor mode; windows may overlap; padding never wins a max and counts for avg only
# when count_include_pad)

def winograd_patches(img, size, lo, tp, tq):
    """(N, C, TP, TQ, size, size) float64 patches of ``img`` (N, C, H, W) at (4 tp - lo, 4 tq - lo),
    zeros outside: the blocks Winograd's F(4, .) transforms read (size = A for the input, 4 for dy)."""
    n, c, h, w = img.shape
    big = np.zeros((n, c, 4 * tp + size, 4 * tq + size))
    big[:, :, lo:lo + h, lo:lo + w] = img
    return np.stack([np.stack([big[:, :, 4 * i:4 * i + size, 4 * j:4 * j + size] for j in range(tq)], 2)
                     for i in range(tp)], 2)


def _pool_hyper(kernel_size, stride, padding):
    """(kernel, stride, padding) as pairs; stride None: the kernel size."""
    ks = _pair(kernel_size)
    return ks, ks if stride is None else _pair(stride), _pair(padding)


def _pool_out(h, wd, ks, stride, padding):
    return out_size(h, ks[0], stride[0], padding[0]), out_size(wd, ks[1], stride[1], padding[1])


def _windows(h, wd, ks, stride, padding):
    p, q = _pool_out(h, wd, ks, stride, padding)
    for pi in range(p):
        for qi in range(q):
            h0, w0 = pi * stride[0] - padding[0], qi * stride[1] - padding[1]
            yield pi, qi, h0, w0


def _taps(h, wd, ks, h0, w0):
    """The input positions (ih, iw) of the window whose corner is (h0, w0) that lie inside the
    input, in row-major window order."""
    for ri in range(ks[0]):
        for si in range(ks[1]):
            ih, iw = h0 + ri, w0 + si
            if 0 <= ih < h and 0 <= iw < wd:
                yield ih, iw


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Returns (y, argmax) with argmax = h*W + w of the first maximum in row-major window order."""
    x = _f64(x)
    ks, stride, padding = _pool_hyper(kernel_size, stride, padding)
    n, c, h, wd = x.shape
    y = np.full((n, c, *_pool_out(h, wd, ks, stride, padding)), -np.inf)
    arg = np.full(y.shape, -1, dtype=np.int64)
    for pi, qi, h0, w0 in _windows(h, wd, ks, stride, padding):
        for ih, iw in _taps(h, wd, ks, h0, w0):
            v = x[:, :, ih, iw]
            better = v > y[:, :, pi, qi]
            y[:, :, pi, qi] = np.where(better, v, y[:, :, pi, qi])
            arg[:, :, pi, qi] = np.where(better, ih * wd + iw, arg[:, :, pi, qi])
    return y, arg


def max_pool2d_backward(dy, x, kernel_size, stride=None, padding=0):
    """dx: each dy element added to the input that won its window (recomputed from x here)."""
    dy = _f64(dy)
    _, arg = max_pool2d_forward(x, kernel_size, stride, padding)
    n, c, h, wd = x.shape
    dx = np.zeros((n, c, h * wd))
    for ni in range(n):
        for ci in range(c):
            np.add.at(dx[ni, ci], arg[ni, ci].ravel(), dy[ni, ci].ravel())
    return dx.reshape(n, c, h, wd)


def _avg_count(h, wd, ks, h0, w0, count_include_pad):
    if count_include_pad:
        return ks[0] * ks[1]
    rows = min(h0 + ks[0], h) - max(h0, 0)
    cols = min(w0 + ks[1], wd) - max(w0, 0)
    return rows * cols


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    x = _f64(x)
    ks, stride, padding = _pool_hyper(kernel_size, stride, padding)
    n, c, h, wd = x.shape
    y = np.zeros((n, c, *_pool_out(h, wd, ks, stride, padding)))
    for pi, qi, h0, w0 in _windows(h, wd, ks, stride, padding):
        total = np.zeros((n, c))
        for ih, iw in _taps(h, wd, ks, h0, w0):
            total += x[:, :, ih, iw]
        y[:, :, pi, qi] = total / _avg_count(h, wd, ks, h0, w0, count_include_pad)
    return y


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0, count_include_pad=True):
    dy = _f64(dy)
    ks, stride, padding = _pool_hyper(kernel_size, stride, padding)
    h, wd = x_shape[2:]
    dx = np.zeros(x_shape)
    for pi, qi, h0, w0 in _windows(h, wd, ks, stride, padding):
        share = dy[:, :, pi, qi] / _avg_count(h, wd, ks, h0, w0, count_include_pad)
        for ih, iw in _taps(h, wd, ks, h0, w0):
            dx[:, :, ih, iw] += share
    return dx


# ---------------------------------------------------------------------------------------------
# elementwise, linear

def relu(x):
    x = _f64(x)
    return np.where(x > 0, x, 0.0)


def leaky_relu(x, slope):
    x = _f64(x)
    return np.where(x > 0, x, slope * x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-_f64(x)))


# the activations ops fuse into conv2d_forward and batchnorm (argcheck.FUSED_ACTIVATIONS), with
# negative slopes for leaky_relu
FUSED = [("relu", 0.0), ("leaky_relu", 0.2), ("tanh", 0.0)]


def activation(name, z, slope=0.0):
    """A fused activation of z: "relu", "leaky_relu" (``slope``), "tanh"."""
    return {"relu": lambda: relu(z), "leaky_relu": lambda: leaky_relu(z, slope), "tanh": lambda: np.tanh(_f64(z))}[name]()


def activation_backward(name, dy, z, slope=0.0):
    """dy through the derivative of activation ``name`` at its input z."""
    dy, z = _f64(dy), _f64(z)
    return {"relu": lambda: np.where(z > 0, dy, 0.0), "leaky_relu": lambda: np.where(z > 0, dy, slope * dy),
            "tanh": lambda: dy * (1 - np.tanh(z) ** 2)}[name]()


def linear_forward(x, w, b=None):
    x, w = _f64(x), _f64(w)
    n, _ = x.shape
    o = w.shape[0]
    y = np.zeros((n, o))
    for j in range(o):
        y[:, j] = (x * w[j]).sum(axis=1)
    if b is not None:
        y += _f64(b)
    return y


# ---------------------------------------------------------------------------------------------
# batch normalisation over axis 1; statistics over every other axis

def _bn_axes(x):
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _bc(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Returns (y, new_running_mean, new_running_var); nothing is modified in place."""
    x, gamma, beta = _f64(x), _f64(gamma), _f64(beta)
    rm, rv = _f64(running_mean).copy(), _f64(running_var).copy()
    axes = _bn_axes(x)
    if training:
        m = x.size // x.shape[1]
        mean = x.mean(axis=axes)
        var = ((x - _bc(mean, x)) ** 2).mean(axis=axes)
        rm = (1 - momentum) * rm + momentum * mean
        rv = (1 - momentum) * rv + momentum * var * m / (m - 1)
    else:
        mean, var = rm, rv
    y = (x - _bc(mean, x)) / np.sqrt(_bc(var, x) + eps) * _bc(gamma, x) + _bc(beta, x)
    return y, rm, rv


def batchnorm_backward(dy, x, gamma, training, running_mean=None, running_var=None, eps=1e-5):
    """(dx, dgamma, dbeta) of y = batchnorm(x): in training through the batch statistics, in eval
    mode through the fixed affine map (x - running_mean) / sqrt(running_var + eps) * gamma + beta."""
    dy, x, gamma = _f64(dy), _f64(x), _f64(gamma)
    axes = _bn_axes(x)
    m = x.size // x.shape[1]
    if training:
        mean = x.mean(axis=axes)
        var = ((x - _bc(mean, x)) ** 2).mean(axis=axes)
    else:
        mean, var = _f64(running_mean), _f64(running_var)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - _bc(mean, x)) * _bc(invstd, x)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    dxhat = dy * _bc(gamma, x)
    if not training:
        return dxhat * _bc(invstd, x), dgamma, dbeta
    # d/dx of (x - mean(x)) / sqrt(var(x) + eps): the direct term, the mean term, the variance term
    dx = _bc(invstd, x) / m * (m * dxhat - _bc(dxhat.sum(axis=axes), x)
                               - xhat * _bc((dxhat * xhat).sum(axis=axes), x))
    return dx, dgamma, dbeta


# ---------------------------------------------------------------------------------------------
# losses (mean reduction)

def softmax_cross_entropy(logits, labels):
    z = _f64(logits)
    n, k = z.shape
    loss = 0.0
    grad = np.zeros_like(z)
    for i in range(n):
        zmax = z[i].max()
        e = np.exp(z[i] - zmax)
        lse = zmax + np.log(e.sum())
        loss += lse - z[i, labels[i]]
        grad[i] = e / e.sum()
        grad[i, labels[i]] -= 1.0
    return loss / n, grad / n


def bce_with_logits(logits, targets):
    z, t = _f64(logits), _f64(targets)
    # log(1 + exp(z)) - z t, evaluated without overflow
    loss = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return loss.mean(), (sigmoid(z) - t) / z.size


# ---------------------------------------------------------------------------------------------
# dropout hash (the documented murmur3 finaliser), in Python integers

def fmix32(h: int) -> int:
    h &= 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def dropout_mask(size: int, p: float, seed: int) -> np.ndarray:
    threshold = int(np.floor(p * 2 ** 32))
    s = fmix32(seed & 0xFFFFFFFF)
    return np.array([1 if fmix32((i & 0xFFFFFFFF) ^ s) >= threshold else 0 for i in range(size)],
                    dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# optimizers, PyTorch semantics, one step on float64 copies

def sgd_step(p, g, v, lr, momentum, weight_decay, nesterov):
    p, g = _f64(p).copy(), _f64(g).copy()
    g = g + weight_decay * p
    if momentum:
        v = momentum * _f64(v) + g
        step = g + momentum * v if nesterov else v
    else:
        step = g
    return p - lr * step, v


def adam_step(p, g, m, v, t, lr, b1, b2, eps, weight_decay):
    p, g = _f64(p).copy(), _f64(g).copy()
    g = g + weight_decay * p
    m = b1 * _f64(m) + (1 - b1) * g
    v = b2 * _f64(v) + (1 - b2) * g * g
    mhat = m / (1 - b1 ** t)
    vhat = v / (1 - b2 ** t)
    return p - lr * mhat / (np.sqrt(vhat) + eps), m, v


# ---------------------------------------------------------------------------------------------
# bookkeeping shared by the CPU test files: worst error seen per check, hypothesis example
# counts; both printed in pytest's terminal summary

WORST: dict[str, float] = {}
EXAMPLES: dict[str, int] = {}


def record(key: str, err: float) -> float:
    WORST[key] = max(WORST.get(key, 0.0), float(err))
    return err


class _Summary:
    def pytest_terminal_summary(self, terminalreporter):
        if WORST:
            terminalreporter.section("fastconv: worst relative L2 error per check")
            for key in sorted(WORST):
                terminalreporter.write_line(f"{key:60s} {WORST[key]:.2e}")
        if EXAMPLES:
            terminalreporter.section("fastconv: hypothesis examples run per op")
            for key in sorted(EXAMPLES):
                terminalreporter.write_line(f"{key:60s} {EXAMPLES[key]}")


def install_summary(config) -> None:
    """Register the summary printer once per session (called from a fixture)."""
    if not config.pluginmanager.has_plugin("fastconv-oracle-summary"):
        config.pluginmanager.register(_Summary(), "fastconv-oracle-summary")
