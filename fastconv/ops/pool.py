"""Max and average pooling over NCHW windows, and ReLU + max pooling fused."""

from __future__ import annotations

import numpy as np

from ..argcheck import array, conv_out_size, pool_hyper, same_device, shape4
from ..backend import op
from ..plan import planned


def _pool_args(x_shape, kernel_size, stride, padding, x_name="x"):
    kernel_size, stride, padding = pool_hyper(kernel_size, stride, padding)
    _, _, h, w = x_shape
    p = conv_out_size(h, kernel_size[0], stride[0], padding[0], 1)
    q = conv_out_size(w, kernel_size[1], stride[1], padding[1], 1)
    if p < 1 or q < 1:
        raise ValueError(f"kernel_size: got {kernel_size}, larger than the padded input "
                         f"{h + 2 * padding[0]}x{w + 2 * padding[1]} of {x_name}; expected a window that fits")
    return kernel_size, stride, padding, p, q


@planned
def max_pool2d_forward(x, kernel_size, stride=None, padding=0, *, kernels=None):
    """Returns (y, argmax): argmax[n,c,p,q] is the int32 index h*W + w of the maximum in x[n,c]."""
    array(x, "x", 4)
    ks, st, pd, _, _ = _pool_args(x.shape, kernel_size, stride, padding)
    return op("max_pool2d_forward", x, kernels=kernels)(x, ks, st, pd)


def _backward_args(dy, argmax, argmax_dtype, x_shape, kernel_size, stride, padding):
    """The checked (x_shape, kernel, stride, padding) of a pooling backward pass: dy (and argmax, when
    given, of ``argmax_dtype`` on dy's device) shaped [N, C, P, Q] for x_shape's pooling."""
    array(dy, "dy", 4)
    if argmax is not None:
        array(argmax, "argmax", 4, dtype=argmax_dtype)
        same_device(dy=dy, argmax=argmax)
    x_shape = shape4(x_shape, "x_shape")
    ks, st, pd, p, q = _pool_args(x_shape, kernel_size, stride, padding, "x_shape")
    want = (x_shape[0], x_shape[1], p, q)
    for name, a in (("dy", dy), ("argmax", argmax)):
        if a is not None and tuple(a.shape) != want:
            raise ValueError(f"{name}: got shape {tuple(a.shape)}, expected {want}")
    return x_shape, ks, st, pd


@planned
def max_pool2d_backward(dy, argmax, x_shape, kernel_size, stride=None, padding=0, *, kernels=None):
    """dx[N,C,H,W]: each dy element added at its argmax (windows may overlap)."""
    x_shape, ks, st, pd = _backward_args(dy, argmax, np.int32, x_shape, kernel_size, stride, padding)
    return op("max_pool2d_backward", dy, argmax, kernels=kernels)(dy, argmax, x_shape, ks, st, pd)


@planned
def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True, *, kernels=None):
    array(x, "x", 4)
    ks, st, pd, _, _ = _pool_args(x.shape, kernel_size, stride, padding)
    return op("avg_pool2d_forward", x, kernels=kernels)(x, ks, st, pd, bool(count_include_pad))


@planned
def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0, count_include_pad=True, *,
                        kernels=None):
    x_shape, ks, st, pd = _backward_args(dy, None, None, x_shape, kernel_size, stride, padding)
    return op("avg_pool2d_backward", dy, kernels=kernels)(dy, x_shape, ks, st, pd, bool(count_include_pad))


RELU_POOL_NO_GRAD = 255  # relu_max_pool2d argmax code of a window no gradient flows through


@planned
def relu_max_pool2d_forward(x, kernel_size, stride=None, padding=0, *, kernels=None):
    """max_pool2d_forward(relu_forward(x)) in one pass. Returns (y, argmax): y[N,C,P,Q] as the two ops
    give it (a NaN in a window is its maximum), argmax uint8 [N,C,P,Q], the index r*kernel_w + s of
    each window's maximum inside its window, or 255 where that maximum is <= 0 or NaN (ReLU's
    gradient is 0 there: no gradient flows). kernel_h * kernel_w must be at most 255."""
    array(x, "x", 4)
    ks, st, pd, _, _ = _pool_args(x.shape, kernel_size, stride, padding)
    if ks[0] * ks[1] >= RELU_POOL_NO_GRAD:
        raise ValueError(f"kernel_size: got {ks}, expected kernel_h * kernel_w < {RELU_POOL_NO_GRAD} (the fused op's "
                         "uint8 argmax); use relu_forward and max_pool2d_forward")
    return op("relu_max_pool2d_forward", x, kernels=kernels)(x, ks, st, pd)


@planned
def relu_max_pool2d_backward(dy, argmax, x_shape, kernel_size, stride=None, padding=0, *, kernels=None):
    """dx[N,C,H,W], the gradient with respect to the input of the ReLU: each dy element added at its
    window's maximum, none where argmax is 255."""
    x_shape, ks, st, pd = _backward_args(dy, argmax, np.uint8, x_shape, kernel_size, stride, padding)
    if ks[0] * ks[1] >= RELU_POOL_NO_GRAD:
        raise ValueError(f"kernel_size: got {ks}, expected kernel_h * kernel_w < {RELU_POOL_NO_GRAD}")
    return op("relu_max_pool2d_backward", dy, argmax, kernels=kernels)(dy, argmax, x_shape, ks, st, pd)
