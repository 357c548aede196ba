"""Convolution ops: conv2d and conv_transpose2d, forward and both backward passes.

Every conv op takes ``precision``: None (the ``tf32`` setting decides), "fp32" or "tf32" (the cupy
family's TF32 tensor-core kernels for this call; NumPy results stay exact fp32). The parameter
gradients (backward-weight, bias) take ``out``: an array the result is written into and returned
(shape, dtype and device of the result, C-contiguous; a layer passes its parameter's slice of the
optimizer's flat gradient buffer), None to allocate it; and ``accumulate``: True adds the result into
``out`` instead (a second gradient of the same parameter in one step), in the kernel that writes it
(no extra pass over out on the GPU)."""

from __future__ import annotations

import contextlib

import numpy as np

from ..argcheck import (accumulate_flags, activation_output as check_activation_output, array, conv_geometry,
                        conv_hyper, conv_transpose_out_size, fused_activation, operands, out_array, pair, same_device,
                        same_dtype, shape4)
from .. import settings
from ..backend import array_module, op
from ..plan import planned


def _precision(precision):
    """The settings for one call: unchanged for precision=None, else tf32 on or off."""
    if settings.check_precision(precision) is None:
        return contextlib.nullcontext()
    return settings.using(tf32=precision == "tf32")


@planned
def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None, negative_slope=0.01,
                   kernels=None, precision=None):
    """y[N,K,P,Q] = act(sum_{c,r,s} x[n, g*C/G + c, p*sh - ph + r*dh, q*sw - pw + s*dw] * w[k,c,r,s] + b[k]);
    ``activation`` (one of argcheck.FUSED_ACTIVATIONS, ``negative_slope`` leaky_relu's) is applied in
    the CUDA C family's epilogue."""
    activation, slope = fused_activation(activation, negative_slope)
    operands("w", (x, "x", 4), (w, "w", 4), (b, "b", 1))
    stride, padding, dilation = conv_hyper(stride, padding, dilation)
    conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"b: got shape {tuple(b.shape)}, expected ({w.shape[0]},) to match w's output channels")
    with _precision(precision):
        return op("conv2d_forward", x, w, b, kernels=kernels)(x, w, b, stride, padding, dilation, int(groups),
                                                             activation, slope)


def _conv_backward_args(dy, other, other_name, x_shape, w_shape, x_name, w_name, stride, padding, dilation,
                        groups):
    """Checks shared by the two backward passes: dy against the conv that x_shape and w_shape define."""
    array(dy, "dy", 4)
    same_dtype(other, other_name, (dy, "dy"))
    same_device(dy=dy, **{other_name: other})
    stride, padding, dilation = conv_hyper(stride, padding, dilation)
    n, c, h, wd, k, r, s, p, q = conv_geometry(x_shape, w_shape, stride, padding, dilation, groups, x_name, w_name)
    if tuple(dy.shape) != (n, k, p, q):
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {(n, k, p, q)} (the conv output)")
    return stride, padding, dilation


@planned
def conv2d_backward_data(dy, w, x_shape, stride=1, padding=0, dilation=1, groups=1, *, b=None, activation=None,
                         negative_slope=0.01, activation_output=None, kernels=None, precision=None):
    """dx[N,C,H,W] for y = conv2d(x, w): the transposed convolution of dy with w. As a transposed
    convolution's forward it also takes a bias ``b`` (C,) and an ``activation`` (as conv2d_forward's):
    act(dx + b[c]), in the CUDA C family's epilogue. With ``activation_output`` (x itself, when x was
    the output of ``activation``; no b) it returns the gradient w.r.t. that activation's input
    instead: dx through the activation's backward, in the same epilogue (no pass of its own)."""
    activation, slope = fused_activation(activation, negative_slope)
    operands("w", (w, "w", 4), (b, "b", 1))
    x_shape = shape4(x_shape, "x_shape")
    stride, padding, dilation = _conv_backward_args(dy, w, "w", x_shape, w.shape, "x_shape", "w", stride, padding,
                                                    dilation, groups)
    if b is not None and b.shape[0] != x_shape[1]:
        raise ValueError(f"b: got shape {tuple(b.shape)}, expected ({x_shape[1]},) to match x_shape's channels")
    check_activation_output(activation_output, activation, x_shape, dy, "dy", b)
    with _precision(precision):
        return op("conv2d_backward_data", dy, w, kernels=kernels)(dy, w, x_shape, stride, padding, dilation,
                                                                 int(groups), b=b, activation=activation, slope=slope,
                                                                 activation_output=activation_output)


@planned
def conv2d_backward_weight(dy, x, w_shape, stride=1, padding=0, dilation=1, groups=1, *, out=None, accumulate=False,
                           kernels=None, precision=None):
    """dw[K,C/G,R,S] = sum_{n,p,q} dy[n,k,p,q] * x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw] (into ``out``
    when given; added into it with ``accumulate``)."""
    array(x, "x", 4)
    w_shape = shape4(w_shape, "w_shape")
    stride, padding, dilation = _conv_backward_args(dy, x, "x", x.shape, w_shape, "x", "w_shape", stride, padding,
                                                    dilation, groups)
    out = out_array(out, "out", w_shape, dy, "dy")
    accumulate = accumulate_flags(accumulate, out)
    with _precision(precision):
        return op("conv2d_backward_weight", dy, x, kernels=kernels)(dy, x, w_shape, stride, padding, dilation,
                                                                   int(groups), out=out, accumulate=accumulate)


@planned
def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1, *, input_grad=True, weight_grad=True,
                    out=None, accumulate=False, input_activation=None, input_negative_slope=0.01, kernels=None,
                    precision=None):
    """(dx, dw) of y = conv2d(x, w) in one call: conv2d_backward_data unless input_grad is False,
    conv2d_backward_weight (into ``out`` when given, added into it with ``accumulate``) unless
    weight_grad is False, None for a pass not run. ``input_activation`` (one of
    argcheck.FUSED_ACTIVATIONS, ``input_negative_slope`` leaky_relu's): x is that activation's
    output, and dx is the gradient w.r.t. its input (conv2d_backward_data's activation_output)."""
    array(x, "x", 4), array(w, "w", 4)
    dw = (conv2d_backward_weight(dy, x, w.shape, stride, padding, dilation, groups, out=out, accumulate=accumulate,
                                 kernels=kernels, precision=precision) if weight_grad else None)
    dx = (conv2d_backward_data(dy, w, x.shape, stride, padding, dilation, groups, activation=input_activation,
                               negative_slope=input_negative_slope,
                               activation_output=None if input_activation is None else x, kernels=kernels,
                               precision=precision) if input_grad else None)
    return dx, dw


@planned
def conv2d_backward_bias(dy, *, out=None, accumulate=False, kernels=None):
    """db[K] = sum over N, P, Q of dy[N,K,P,Q] (into ``out`` when given; added into it with ``accumulate``)."""
    array(dy, "dy", 4)
    out = out_array(out, "out", (dy.shape[1],), dy, "dy")
    return op("conv2d_backward_bias", dy, kernels=kernels)(dy, out=out, accumulate=accumulate_flags(accumulate, out))


def _conv_transpose_geometry(x_shape, w_shape, stride, padding, output_padding, dilation, groups, x_name="x"):
    """Check a transposed conv and return (hyper-parameters, output shape, x's extent).

    The transposed conv is conv2d's backward-data pass onto its output. The conv2d that maps the
    output back has an input of x's extent: x's own shape, except where output_padding reaches the
    stride (allowed while it is below the dilation), whose extra output rows and columns the conv2d
    maps onto rows and columns past x's. Those hold zeros (_extend), and every pass runs on that
    extent: the extra output rows get what the taps bring them, as PyTorch's.
    """
    stride, padding, dilation = conv_hyper(stride, padding, dilation)
    output_padding = pair(output_padding, "output_padding", 0)
    for i in range(2):
        if output_padding[i] >= max(stride[i], dilation[i]):
            raise ValueError(f"output_padding: got {output_padding}, expected values smaller than stride "
                             f"{stride} or dilation {dilation}")
    n, cin, h, wd = x_shape
    if w_shape[0] != cin:
        raise ValueError(f"w: got shape {tuple(w_shape)}, expected dim 0 = {cin} (the channels of {x_name})")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1 or cin % groups:
        raise ValueError(f"groups: got {groups!r}, expected a positive divisor of the {cin} channels of {x_name}")
    full, extent = [n, w_shape[1] * groups], [n, cin]
    for i, size in enumerate((h, wd)):
        args = (w_shape[2 + i], stride[i], padding[i], dilation[i])
        full.append(conv_transpose_out_size(size, *args, output_padding[i]))
        extent.append(size + output_padding[i] // stride[i])   # conv_out_size(full[2 + i], *args)
    if full[2] < 1 or full[3] < 1:
        raise ValueError(f"padding: got {padding}, leaves an empty output ({full[2]}x{full[3]}); expected less padding")
    return (stride, padding, dilation, int(groups)), tuple(full), tuple(extent)


def _extend(a, shape):
    """a (N, C, H, W) with zero rows and columns after its own up to ``shape`` (a itself if it has it)."""
    if tuple(a.shape) == tuple(shape):
        return a
    out = array_module(a).zeros(shape, dtype=a.dtype)
    out[:, :, :a.shape[2], :a.shape[3]] = a
    return out


def _crop(a, shape):
    """The first rows and columns of a (N, C, H, W) up to ``shape`` (a itself if it has it)."""
    if tuple(a.shape) == tuple(shape):
        return a
    return array_module(a).ascontiguousarray(a[:, :, :shape[2], :shape[3]])


@planned
def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1, *,
                             activation=None, negative_slope=0.01, kernels=None, precision=None):
    """Transposed convolution; w is ``C_in x C_out/groups x R x S`` as in PyTorch's ConvTranspose2d;
    y = act(conv_transpose2d(x, w) + b), ``activation`` as conv2d_forward's.

    It is conv2d's backward-data pass with x in the role of dy, so it needs no kernels of its own; the
    bias and activation go into that pass's epilogue.
    """
    operands("w", (x, "x", 4), (w, "w", 4), (b, "b", 1))
    hyper, full, extent = _conv_transpose_geometry(x.shape, w.shape, stride, padding, output_padding, dilation,
                                                   groups)
    if b is not None and b.shape[0] != full[1]:
        raise ValueError(f"b: got shape {tuple(b.shape)}, expected ({full[1]},)")
    return conv2d_backward_data(_extend(x, extent), w, full, *hyper, b=b, activation=activation,
                                negative_slope=negative_slope, kernels=kernels, precision=precision)


@planned
def conv_transpose2d_backward_data(dy, w, x_shape, stride=1, padding=0, output_padding=0, dilation=1, groups=1, *,
                                   kernels=None, precision=None):
    """dx of a transposed conv: conv2d forward of dy with w (its rows and columns past x's dropped)."""
    x_shape = shape4(x_shape, "x_shape")
    hyper, full, _ = _conv_transpose_geometry(x_shape, array(w, "w", 4).shape, stride, padding, output_padding,
                                              dilation, groups, "x_shape")
    if tuple(array(dy, "dy", 4).shape) != full:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {full} (the transposed conv's output)")
    return _crop(conv2d_forward(dy, w, None, *hyper, kernels=kernels, precision=precision), x_shape)


@planned
def conv_transpose2d_backward_weight(dy, x, w_shape, stride=1, padding=0, output_padding=0, dilation=1, groups=1, *,
                                     out=None, accumulate=False, kernels=None, precision=None):
    """dw of a transposed conv: conv2d backward-weight with x (at its extent) and dy in exchanged
    roles (into ``out`` when given; added into it with ``accumulate``)."""
    w_shape = shape4(w_shape, "w_shape")
    hyper, full, extent = _conv_transpose_geometry(array(x, "x", 4).shape, w_shape, stride, padding, output_padding,
                                                   dilation, groups)
    if tuple(array(dy, "dy", 4).shape) != full:
        raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected {full} (the transposed conv's output)")
    accumulate_flags(accumulate, out_array(out, "out", w_shape, x, "x"))   # named as this op's caller knows them
    return conv2d_backward_weight(_extend(x, extent), dy, w_shape, *hyper, out=out, accumulate=accumulate,
                                  kernels=kernels, precision=precision)


@planned
def conv_transpose2d_backward(dy, x, w, stride=1, padding=0, output_padding=0, dilation=1, groups=1, *,
                              input_grad=True, weight_grad=True, out=None, accumulate=False, kernels=None,
                              precision=None):
    """(dx, dw) of a transposed conv in one call, as conv2d_backward."""
    array(x, "x", 4), array(w, "w", 4)
    hyper = (stride, padding, output_padding, dilation, groups)
    dw = (conv_transpose2d_backward_weight(dy, x, w.shape, *hyper, out=out, accumulate=accumulate, kernels=kernels,
                                           precision=precision) if weight_grad else None)
    dx = (conv_transpose2d_backward_data(dy, w, x.shape, *hyper, kernels=kernels, precision=precision)
          if input_grad else None)
    return dx, dw
