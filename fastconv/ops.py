"""The op interface: argument checks, then one call into the backend chosen by fastconv.backend.

Every function takes numpy arrays (CPU, float32 or float64) or cupy arrays (GPU, float32) and
returns arrays of the same kind. Layouts are NCHW; conv weights are ``K x C/groups x R x S`` as in
PyTorch. Bad arguments raise ValueError/TypeError naming the argument, the value received and
what was expected. ``kernels=`` picks the GPU kernel family for one call ("cupy" or "numba").

Shape letters: N batch, C input channels, H x W input size, K output channels, R x S filter
size, P x Q output size.
"""

from __future__ import annotations

import numpy as np

from .backend import array_module, op

# ---------------------------------------------------------------------------------------------
# argument checks

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _pair(v, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        t = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(
            isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v):
        t = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{name}: got {v!r}, expected an int or a pair of ints")
    if t[0] < minimum or t[1] < minimum:
        raise ValueError(f"{name}: got {v!r}, expected values >= {minimum}")
    return t


def real(v, name: str, lo=None, hi=None, lo_open=False, hi_open=False, what="a number") -> float:
    """A finite real number within [lo, hi] (ends open when asked), as a float; else a clear error."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: got {v!r} ({type(v).__name__}), expected a real number")
    f = float(v)
    lo_ok = lo is None or (f > lo if lo_open else f >= lo)
    hi_ok = hi is None or (f < hi if hi_open else f <= hi)
    if not (np.isfinite(f) and lo_ok and hi_ok):
        rng = (f"{'(-inf' if lo is None else ('(' if lo_open else '[') + format(lo, 'g')}, "
               f"{'inf)' if hi is None else format(hi, 'g') + (')' if hi_open else ']')}")
        raise ValueError(f"{name}: got {v!r}, expected {what} in {rng}")
    return f


def _array(a, name: str, ndim: int | tuple[int, ...], dtype=None):
    xp = array_module(a, names=[name])
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if a.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name}: got an array of shape {tuple(a.shape)} ({a.ndim}-d), expected {want}-d")
    if a.size == 0:
        raise ValueError(f"{name}: got an empty array of shape {tuple(a.shape)}, expected at least one element")
    if dtype is None:
        if a.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name}: got dtype {a.dtype}, expected float32 or float64")
        if xp is not np and a.dtype != np.float32:
            raise TypeError(f"{name}: got dtype {a.dtype} on the GPU, expected float32")
    elif a.dtype != dtype:
        raise TypeError(f"{name}: got dtype {a.dtype}, expected {np.dtype(dtype)}")
    return a


def _same_device(**named):
    """The array module of the named arrays; a numpy/cupy mix is an error naming the argument."""
    return array_module(*named.values(), names=list(named))


def _same_dtype(ref, ref_name: str, *others):
    for a, name in others:
        if a is not None and a.dtype != ref.dtype:
            raise TypeError(f"{name}: got dtype {a.dtype}, expected {ref.dtype} (the dtype of {ref_name})")


def _shape4(shape, name: str) -> tuple[int, int, int, int]:
    if not (isinstance(shape, (tuple, list)) and len(shape) == 4 and all(
            isinstance(e, (int, np.integer)) and e > 0 for e in shape)):
        raise ValueError(f"{name}: got {shape!r}, expected 4 positive ints")
    return tuple(int(e) for e in shape)


def conv_out_size(h: int, r: int, stride: int, pad: int, dil: int) -> int:
    """Output length of a convolution/pooling along one axis (floor mode)."""
    return (h + 2 * pad - dil * (r - 1) - 1) // stride + 1


def conv_geometry(x_shape, w_shape, stride, padding, dilation, groups, x_name="x", w_name="w"):
    """Check a conv's shapes and return (N, C, H, W, K, R, S, P, Q) with hyper-parameters as pairs."""
    n, c, h, wd = x_shape
    k, cg, r, s = w_shape
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups: got {groups!r}, expected a positive int")
    if c % groups:
        raise ValueError(f"groups: got {groups}, expected a divisor of the {c} input channels of {x_name}")
    if k % groups:
        raise ValueError(f"groups: got {groups}, expected a divisor of the {k} output channels of {w_name}")
    if cg * groups != c:
        raise ValueError(
            f"{w_name}: got shape {tuple(w_shape)}, expected {c // groups} input channels per group "
            f"(dim 1) to match {x_name} with {c} channels and groups={groups}")
    p = conv_out_size(h, r, stride[0], padding[0], dilation[0])
    q = conv_out_size(wd, s, stride[1], padding[1], dilation[1])
    if p < 1 or q < 1:
        raise ValueError(
            f"{w_name}: got a {r}x{s} kernel (dilation {dilation}), larger than the padded input "
            f"{h + 2 * padding[0]}x{wd + 2 * padding[1]} of {x_name} (padding {padding}); expected "
            "a kernel that fits")
    return n, c, h, wd, k, r, s, p, q


def _conv_args(stride, padding, dilation):
    return _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)


# ---------------------------------------------------------------------------------------------
# convolution

def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *, kernels=None):
    """y[N,K,P,Q] = sum_{c,r,s} x[n, g*C/G + c, p*sh - ph + r*dh, q*sw - pw + s*dw] * w[k,c,r,s] + b[k]."""
    _array(x, "x", 4)
    _array(w, "w", 4)
    if b is not None:
        _array(b, "b", 1)
    _same_dtype(w, "w", (x, "x"), (b, "b"))
    _same_device(x=x, w=w, b=b)
    stride, padding, dilation = _conv_args(stride, padding, dilation)
    conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"b: got shape {tuple(b.shape)}, expected ({w.shape[0]},) to match w's output channels")
    return op("conv2d_forward", x, w, b, kernels=kernels)(x, w, b, stride, padding, dilation, int(groups))


def _conv_backward_args(dy, other, other_name, x_shape, w_shape, x_name, w_name, stride, padding, dilation,
                        groups):
    """Checks shared by the two backward passes: dy against the conv that x_shape and w_shape define."""
    _array(dy, "dy", 4)
    _same_dtype(other, other_name, (dy, "dy"))
    _same_device(dy=dy, **{other_name: other})
    stride, padding, dilation = _conv_args(stride, padding, dilation)
    n, c, h, wd, k, r, s, p, q = conv_geometry(x_shape, w_shape, stride, padding, dilation, groups, x_name, w_name)
    if tuple(dy.shape) != (n, k, p, q):
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {(n, k, p, q)} (the conv output)")
    return stride, padding, dilation


def conv2d_backward_data(dy, w, x_shape, stride=1, padding=0, dilation=1, groups=1, *, kernels=None):
    """dx[N,C,H,W] for y = conv2d(x, w): the transposed convolution of dy with w."""
    _array(w, "w", 4)
    x_shape = _shape4(x_shape, "x_shape")
    stride, padding, dilation = _conv_backward_args(dy, w, "w", x_shape, w.shape, "x_shape", "w", stride, padding,
                                                    dilation, groups)
    return op("conv2d_backward_data", dy, w, kernels=kernels)(dy, w, x_shape, stride, padding, dilation,
                                                             int(groups))


def conv2d_backward_weight(dy, x, w_shape, stride=1, padding=0, dilation=1, groups=1, *, kernels=None):
    """dw[K,C/G,R,S] = sum_{n,p,q} dy[n,k,p,q] * x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw]."""
    _array(x, "x", 4)
    w_shape = _shape4(w_shape, "w_shape")
    stride, padding, dilation = _conv_backward_args(dy, x, "x", x.shape, w_shape, "x", "w_shape", stride, padding,
                                                    dilation, groups)
    return op("conv2d_backward_weight", dy, x, kernels=kernels)(dy, x, w_shape, stride, padding, dilation,
                                                               int(groups))


def conv2d_backward_bias(dy, *, kernels=None):
    """db[K] = sum over N, P, Q of dy[N,K,P,Q]."""
    _array(dy, "dy", 4)
    return op("conv2d_backward_bias", dy, kernels=kernels)(dy)


def conv_transpose_out_size(h, r, stride, pad, dil, output_padding):
    return (h - 1) * stride - 2 * pad + dil * (r - 1) + output_padding + 1


def _conv_transpose_geometry(x_shape, w_shape, stride, padding, output_padding, dilation, groups, x_name="x"):
    """Check a transposed conv and return (hyper-parameters, full output shape, core output shape).

    The core is the part of the output that the equivalent conv2d maps back onto x exactly;
    output_padding beyond stride - 1 (allowed while it is below the dilation) adds rows and
    columns that only the bias reaches.
    """
    stride, padding, dilation = _conv_args(stride, padding, dilation)
    output_padding = _pair(output_padding, "output_padding", 0)
    for i in range(2):
        if output_padding[i] >= max(stride[i], dilation[i]):
            raise ValueError(f"output_padding: got {output_padding}, expected values smaller than stride "
                             f"{stride} or dilation {dilation}")
    n, cin, h, wd = x_shape
    if w_shape[0] != cin:
        raise ValueError(f"w: got shape {tuple(w_shape)}, expected dim 0 = {cin} (the channels of {x_name})")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1 or cin % groups:
        raise ValueError(f"groups: got {groups!r}, expected a positive divisor of the {cin} channels of {x_name}")
    cout = w_shape[1] * groups
    full, core = [n, cout], [n, cout]
    for i, size in enumerate((h, wd)):
        args = (size, w_shape[2 + i], stride[i], padding[i], dilation[i])
        full.append(conv_transpose_out_size(*args, output_padding[i]))
        core.append(conv_transpose_out_size(*args, min(output_padding[i], stride[i] - 1)))
    if core[2] < 1 or core[3] < 1:
        raise ValueError(f"padding: got {padding}, leaves an empty output ({full[2]}x{full[3]}); expected less padding")
    return (stride, padding, dilation, int(groups)), tuple(full), tuple(core)


def _crop(a, shape):
    if tuple(a.shape) == tuple(shape):
        return a
    return array_module(a).ascontiguousarray(a[:, :, :shape[2], :shape[3]])


def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1, *,
                             kernels=None):
    """Transposed convolution; w is ``C_in x C_out/groups x R x S`` as in PyTorch's ConvTranspose2d.

    It is conv2d's backward-data pass with x in the role of dy, so it needs no kernels of its own.
    """
    _array(x, "x", 4)
    _array(w, "w", 4)
    if b is not None:
        _array(b, "b", 1)
    _same_dtype(w, "w", (x, "x"), (b, "b"))
    xp = _same_device(x=x, w=w, b=b)
    hyper, full, core = _conv_transpose_geometry(x.shape, w.shape, stride, padding, output_padding, dilation, groups)
    if b is not None and b.shape[0] != full[1]:
        raise ValueError(f"b: got shape {tuple(b.shape)}, expected ({full[1]},)")
    y = conv2d_backward_data(x, w, core, *hyper, kernels=kernels)
    if core != full:
        y_full = xp.zeros(full, dtype=y.dtype)
        y_full[:, :, :core[2], :core[3]] = y
        y = y_full
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward_data(dy, w, x_shape, stride=1, padding=0, output_padding=0, dilation=1, groups=1, *,
                                   kernels=None):
    """dx of a transposed conv: conv2d forward of dy (cropped to the core) with w."""
    x_shape = _shape4(x_shape, "x_shape")
    hyper, full, core = _conv_transpose_geometry(x_shape, _array(w, "w", 4).shape, stride, padding, output_padding,
                                                 dilation, groups, "x_shape")
    if tuple(_array(dy, "dy", 4).shape) != full:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {full} (the transposed conv's output)")
    return conv2d_forward(_crop(dy, core), w, None, *hyper, kernels=kernels)


def conv_transpose2d_backward_weight(dy, x, w_shape, stride=1, padding=0, output_padding=0, dilation=1, groups=1, *,
                                     kernels=None):
    """dw of a transposed conv: conv2d backward-weight with x and dy in exchanged roles."""
    w_shape = _shape4(w_shape, "w_shape")
    hyper, full, core = _conv_transpose_geometry(_array(x, "x", 4).shape, w_shape, stride, padding, output_padding,
                                                 dilation, groups)
    if tuple(_array(dy, "dy", 4).shape) != full:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {full} (the transposed conv's output)")
    return conv2d_backward_weight(x, _crop(dy, core), w_shape, *hyper, kernels=kernels)


# ---------------------------------------------------------------------------------------------
# activations (backward passes take the forward output y, not x)

_ANY_NDIM = (1, 2, 3, 4, 5)


def _unary(name, x, *extra, kernels=None):
    """Elementwise forward ops: x of any ndim 1-5."""
    _array(x, "x", _ANY_NDIM)
    return op(name, x, kernels=kernels)(x, *extra)


def _unary_backward(name, dy, y, *extra, kernels=None):
    """Elementwise backward ops: dy and the forward output y of one shape, dtype and device."""
    _same_shape(_array(dy, "dy", _ANY_NDIM), "dy", _array(y, "y", _ANY_NDIM), "y")
    return op(name, dy, y, kernels=kernels)(dy, y, *extra)


def relu_forward(x, *, kernels=None):
    return _unary("relu_forward", x, kernels=kernels)


def relu_backward(dy, y, *, kernels=None):
    return _unary_backward("relu_backward", dy, y, kernels=kernels)


def _slope(slope):
    return real(slope, "negative_slope", 0.0, 1.0, hi_open=True)


def leaky_relu_forward(x, negative_slope=0.01, *, kernels=None):
    return _unary("leaky_relu_forward", x, _slope(negative_slope), kernels=kernels)


def leaky_relu_backward(dy, y, negative_slope=0.01, *, kernels=None):
    return _unary_backward("leaky_relu_backward", dy, y, _slope(negative_slope), kernels=kernels)


def sigmoid_forward(x, *, kernels=None):
    return _unary("sigmoid_forward", x, kernels=kernels)


def sigmoid_backward(dy, y, *, kernels=None):
    return _unary_backward("sigmoid_backward", dy, y, kernels=kernels)


def tanh_forward(x, *, kernels=None):
    return _unary("tanh_forward", x, kernels=kernels)


def tanh_backward(dy, y, *, kernels=None):
    return _unary_backward("tanh_backward", dy, y, kernels=kernels)


def _same_shape(a, an, b, bn):
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{an}: got shape {tuple(a.shape)}, expected {tuple(b.shape)} (the shape of {bn})")
    _same_dtype(b, bn, (a, an))
    array_module(a, b, names=[an, bn])


# ---------------------------------------------------------------------------------------------
# pooling

def pool_hyper(kernel_size, stride, padding):
    """Checked (kernel_size, stride, padding) pairs of a pooling window; stride defaults to the window."""
    kernel_size = _pair(kernel_size, "kernel_size", 1)
    stride = kernel_size if stride is None else _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    for i in range(2):
        if padding[i] * 2 > kernel_size[i]:
            raise ValueError(f"padding: got {padding}, expected at most half the kernel size {kernel_size}")
    return kernel_size, stride, padding


def _pool_args(x_shape, kernel_size, stride, padding, x_name="x"):
    kernel_size, stride, padding = pool_hyper(kernel_size, stride, padding)
    _, _, h, w = x_shape
    p = conv_out_size(h, kernel_size[0], stride[0], padding[0], 1)
    q = conv_out_size(w, kernel_size[1], stride[1], padding[1], 1)
    if p < 1 or q < 1:
        raise ValueError(f"kernel_size: got {kernel_size}, larger than the padded input "
                         f"{h + 2 * padding[0]}x{w + 2 * padding[1]} of {x_name}; expected a window that fits")
    return kernel_size, stride, padding, p, q


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, *, kernels=None):
    """Returns (y, argmax): argmax[n,c,p,q] is the int32 index h*W + w of the maximum in x[n,c]."""
    _array(x, "x", 4)
    ks, st, pd, _, _ = _pool_args(x.shape, kernel_size, stride, padding)
    return op("max_pool2d_forward", x, kernels=kernels)(x, ks, st, pd)


def max_pool2d_backward(dy, argmax, x_shape, kernel_size, stride=None, padding=0, *, kernels=None):
    """dx[N,C,H,W]: each dy element added at its argmax (windows may overlap)."""
    _array(dy, "dy", 4)
    _array(argmax, "argmax", 4, dtype=np.int32)
    _same_device(dy=dy, argmax=argmax)
    x_shape = _shape4(x_shape, "x_shape")
    ks, st, pd, p, q = _pool_args(x_shape, kernel_size, stride, padding, "x_shape")
    want = (x_shape[0], x_shape[1], p, q)
    if tuple(dy.shape) != want:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {want}")
    if tuple(argmax.shape) != want:
        raise ValueError(f"argmax: got shape {tuple(argmax.shape)}, expected {want}")
    return op("max_pool2d_backward", dy, argmax, kernels=kernels)(dy, argmax, x_shape, ks, st, pd)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True, *, kernels=None):
    _array(x, "x", 4)
    ks, st, pd, _, _ = _pool_args(x.shape, kernel_size, stride, padding)
    return op("avg_pool2d_forward", x, kernels=kernels)(x, ks, st, pd, bool(count_include_pad))


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0, count_include_pad=True, *,
                        kernels=None):
    _array(dy, "dy", 4)
    x_shape = _shape4(x_shape, "x_shape")
    ks, st, pd, p, q = _pool_args(x_shape, kernel_size, stride, padding, "x_shape")
    want = (x_shape[0], x_shape[1], p, q)
    if tuple(dy.shape) != want:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {want}")
    return op("avg_pool2d_backward", dy, kernels=kernels)(dy, x_shape, ks, st, pd, bool(count_include_pad))


# ---------------------------------------------------------------------------------------------
# linear: y = x @ w.T + b with w of shape (out_features, in_features)

def linear_forward(x, w, b=None, *, kernels=None):
    _array(x, "x", 2)
    _array(w, "w", 2)
    if b is not None:
        _array(b, "b", 1)
    _same_dtype(w, "w", (x, "x"), (b, "b"))
    _same_device(x=x, w=w, b=b)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x: got shape {tuple(x.shape)}, expected {w.shape[1]} features (dim 1) to match w "
                         f"of shape {tuple(w.shape)}")
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"b: got shape {tuple(b.shape)}, expected ({w.shape[0]},)")
    return op("linear_forward", x, w, b, kernels=kernels)(x, w, b)


def linear_backward_data(dy, w, *, kernels=None):
    _array(dy, "dy", 2)
    _array(w, "w", 2)
    _same_dtype(w, "w", (dy, "dy"))
    _same_device(dy=dy, w=w)
    if dy.shape[1] != w.shape[0]:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {w.shape[0]} columns")
    return op("linear_backward_data", dy, w, kernels=kernels)(dy, w)


def linear_backward_weight(dy, x, *, kernels=None):
    """Returns (dw, db)."""
    _array(dy, "dy", 2)
    _array(x, "x", 2)
    _same_dtype(dy, "dy", (x, "x"))
    _same_device(dy=dy, x=x)
    if dy.shape[0] != x.shape[0]:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {x.shape[0]} rows (the batch of x)")
    return op("linear_backward_weight", dy, x, kernels=kernels)(dy, x)


# ---------------------------------------------------------------------------------------------
# batch normalisation over axis 1 of (N, C) or (N, C, H, W)

def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5, *,
                      kernels=None):
    """Returns (y, mean, invstd) with mean/invstd of shape (C,) as used (batch or running).

    In training, running_mean/running_var are updated in place with the unbiased batch variance
    (PyTorch's convention): r <- (1 - momentum) * r + momentum * batch_stat.
    """
    _array(x, "x", (2, 4))
    c = x.shape[1]
    for a, name in ((gamma, "gamma"), (beta, "beta"), (running_mean, "running_mean"),
                    (running_var, "running_var")):
        _array(a, name, 1)
        if a.shape[0] != c:
            raise ValueError(f"{name}: got shape {tuple(a.shape)}, expected ({c},) for x of shape {tuple(x.shape)}")
    _same_dtype(x, "x", (gamma, "gamma"), (beta, "beta"), (running_mean, "running_mean"),
                (running_var, "running_var"))
    _same_device(x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    count = x.size // c
    if training and count < 2:
        raise ValueError(f"x: got shape {tuple(x.shape)}, expected more than 1 value per channel in training")
    momentum = real(momentum, "momentum", 0.0, 1.0)
    eps = real(eps, "eps", 0.0, lo_open=True)
    return op("batchnorm_forward", x, kernels=kernels)(x, gamma, beta, running_mean, running_var, bool(training),
                                                       momentum, eps)


def batchnorm_backward(dy, x, gamma, mean, invstd, training=True, *, kernels=None):
    """Returns (dx, dgamma, dbeta). training=False differentiates the eval-mode affine map."""
    _array(dy, "dy", (2, 4))
    _array(x, "x", (2, 4))
    _same_shape(dy, "dy", x, "x")
    c = x.shape[1]
    for a, name in ((gamma, "gamma"), (mean, "mean"), (invstd, "invstd")):
        _array(a, name, 1)
        if a.shape[0] != c:
            raise ValueError(f"{name}: got shape {tuple(a.shape)}, expected ({c},) for x of shape {tuple(x.shape)}")
    _same_dtype(x, "x", (gamma, "gamma"), (mean, "mean"), (invstd, "invstd"))
    _same_device(x=x, gamma=gamma, mean=mean, invstd=invstd)
    return op("batchnorm_backward", dy, kernels=kernels)(dy, x, gamma, mean, invstd, bool(training))


# ---------------------------------------------------------------------------------------------
# dropout: a counter-based hash mask, identical on every backend for the same seed

def dropout_forward(x, p, seed, *, kernels=None):
    """Returns (y, mask) with mask uint8; element i is kept when fmix32(i ^ fmix32(seed)) >= p * 2**32."""
    _array(x, "x", (1, 2, 3, 4, 5))
    p = real(p, "p", 0.0, 1.0, hi_open=True, what="a probability")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: got {seed!r}, expected an int")
    return op("dropout_forward", x, kernels=kernels)(x, p, int(seed) & 0xFFFFFFFF)


def dropout_backward(dy, mask, p, *, kernels=None):
    _array(dy, "dy", (1, 2, 3, 4, 5))
    _array(mask, "mask", dy.ndim, dtype=np.uint8)
    if tuple(mask.shape) != tuple(dy.shape):
        raise ValueError(f"mask: got shape {tuple(mask.shape)}, expected {tuple(dy.shape)}")
    _same_device(dy=dy, mask=mask)
    p = real(p, "p", 0.0, 1.0, hi_open=True, what="a probability")
    return op("dropout_backward", dy, kernels=kernels)(dy, mask, p)


# ---------------------------------------------------------------------------------------------
# losses: each returns (loss as a 0-d array, dlogits) with mean reduction

def softmax_cross_entropy(logits, labels, *, kernels=None):
    """Mean over N of -log softmax(logits)[n, labels[n]]; labels int32/int64 in [0, K)."""
    _array(logits, "logits", 2)
    xp = _same_device(logits=logits, labels=labels)
    if not isinstance(labels, xp.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise TypeError(f"labels: got {getattr(labels, 'dtype', type(labels).__name__)} of shape "
                        f"{getattr(labels, 'shape', None)}, expected a 1-d integer array")
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels: got {labels.shape[0]} labels, expected {logits.shape[0]} (the rows of logits)")
    if xp is np and labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels: got values in [{labels.min()}, {labels.max()}], expected [0, {logits.shape[1]})")
    return op("softmax_cross_entropy", logits, kernels=kernels)(logits, labels)


def bce_with_logits(logits, targets, *, kernels=None):
    """Mean of max(z,0) - z*t + log(1 + exp(-|z|)), stable for any logit z; targets in [0, 1]."""
    _array(logits, "logits", (1, 2, 3, 4))
    _array(targets, "targets", logits.ndim)
    _same_shape(targets, "targets", logits, "logits")
    return op("bce_with_logits", logits, kernels=kernels)(logits, targets)


# ---------------------------------------------------------------------------------------------
# optimizer updates, in place

def sgd_update(param, grad, velocity, lr, momentum=0.0, weight_decay=0.0, nesterov=False, *, kernels=None):
    """PyTorch's SGD: g += wd*p; v = momentum*v + g; p -= lr * (g + momentum*v if nesterov else v).

    velocity may be None when momentum == 0.
    """
    _check_update_arrays(param, grad, velocity, "velocity")
    if momentum and velocity is None:
        raise ValueError("velocity: got None, expected an array when momentum != 0")
    op("sgd_update", param, kernels=kernels)(param, grad, velocity, real(lr, "lr", 0.0, lo_open=True),
                                             real(momentum, "momentum", 0.0, 1.0, hi_open=True),
                                             real(weight_decay, "weight_decay", 0.0), bool(nesterov))


def adam_update(param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, *,
                kernels=None):
    """PyTorch's Adam (L2 weight decay added to the gradient); step counts from 1."""
    _check_update_arrays(param, grad, m, "m")
    _check_update_arrays(param, grad, v, "v")
    if not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step: got {step!r}, expected an int >= 1")
    op("adam_update", param, kernels=kernels)(param, grad, m, v, int(step), real(lr, "lr", 0.0, lo_open=True),
                                              real(beta1, "beta1", 0.0, 1.0, hi_open=True),
                                              real(beta2, "beta2", 0.0, 1.0, hi_open=True),
                                              real(eps, "eps", 0.0, lo_open=True),
                                              real(weight_decay, "weight_decay", 0.0))


def _check_update_arrays(param, grad, state, state_name):
    xp = array_module(param, grad, state, names=["param", "grad", state_name])
    for a, name in ((param, "param"), (grad, "grad"), (state, state_name)):
        if a is None:
            continue
        if a.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name}: got dtype {a.dtype}, expected float32 or float64")
        if a.shape != param.shape or a.dtype != param.dtype:
            raise ValueError(f"{name}: got {a.dtype} {tuple(a.shape)}, expected {param.dtype} {tuple(param.shape)} "
                             "(the param's)")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: got a non-contiguous array, expected a C-contiguous one (updated in place)")
    return xp
