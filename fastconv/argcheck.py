"""Argument checks shared by the op interface (fastconv.ops) and the layers (fastconv.nn).

Each check returns the checked value (converted where that helps: pairs as tuples of ints, reals
as floats) or raises a one-line TypeError/ValueError naming the argument, the value received and
what was expected. The conv and pooling output-size formulas live here, once.
"""

from __future__ import annotations

import numpy as np

from .backend import array_module

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def pair(v, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum, as a tuple of two ints."""
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


def array(a, name: str, ndim: int | tuple[int, ...], dtype=None):
    """A non-empty numpy/cupy array of ndim (or one of ndims); float32/float64 (GPU: float32) unless dtype is given."""
    xp = array_module(a, names=[name])
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if a.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name}: got an array of shape {tuple(a.shape)} ({a.ndim}-d), expected {want}-d")
    if a.size == 0:
        raise ValueError(f"{name}: got an empty array of shape {tuple(a.shape)}, expected at least one element")
    if dtype is None:
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: got dtype {a.dtype}, expected float32 or float64")
        if xp is not np and a.dtype != np.float32:
            raise TypeError(f"{name}: got dtype {a.dtype} on the GPU, expected float32")
    elif a.dtype != dtype:
        raise TypeError(f"{name}: got dtype {a.dtype}, expected {np.dtype(dtype)}")
    return a


def same_device(**named):
    """The array module of the named arrays; a numpy/cupy mix is an error naming the argument."""
    return array_module(*named.values(), names=list(named))


def operands(ref: str, *specs):
    """Arrays given as (array, name, ndim) triples (None arrays skipped), each checked by
    :func:`array`, then all of the dtype of the one named ``ref`` and on one device; returns the
    array module (numpy or cupy)."""
    given = [(a, name, ndim) for a, name, ndim in specs if a is not None]
    for a, name, ndim in given:
        array(a, name, ndim)
    ref_array = next(a for a, name, _ in given if name == ref)
    same_dtype(ref_array, ref, *[(a, name) for a, name, _ in given if name != ref])
    return same_device(**{name: a for a, name, _ in given})


def same_dtype(ref, ref_name: str, *others):
    """Every (array, name) in others (None skipped) has the dtype of ref."""
    for a, name in others:
        if a is not None and a.dtype != ref.dtype:
            raise TypeError(f"{name}: got dtype {a.dtype}, expected {ref.dtype} (the dtype of {ref_name})")


def shape4(shape, name: str) -> tuple[int, int, int, int]:
    """A shape of 4 positive ints, as a tuple."""
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


def conv_hyper(stride, padding, dilation):
    """Checked (stride, padding, dilation) pairs of a convolution."""
    return pair(stride, "stride", 1), pair(padding, "padding", 0), pair(dilation, "dilation", 1)


def conv_transpose_out_size(h, r, stride, pad, dil, output_padding):
    """Output length of a transposed convolution along one axis."""
    return (h - 1) * stride - 2 * pad + dil * (r - 1) + output_padding + 1


def pool_hyper(kernel_size, stride, padding):
    """Checked (kernel_size, stride, padding) pairs of a pooling window; stride defaults to the window."""
    kernel_size = pair(kernel_size, "kernel_size", 1)
    stride = kernel_size if stride is None else pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    for i in range(2):
        if padding[i] * 2 > kernel_size[i]:
            raise ValueError(f"padding: got {padding}, expected at most half the kernel size {kernel_size}")
    return kernel_size, stride, padding


def same_shape(a, an, b, bn):
    """a (named an) has the shape, dtype and device of b (named bn)."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{an}: got shape {tuple(a.shape)}, expected {tuple(b.shape)} (the shape of {bn})")
    same_dtype(b, bn, (a, an))
    array_module(a, b, names=[an, bn])


ANY_NDIM = (1, 2, 3, 4, 5)


def out_array(out, name: str, shape, ref, ref_name: str):
    """``out`` (None: the op allocates its result) checked as an array an op writes its result of
    ``shape`` into: that shape, the dtype and device of ``ref``, C-contiguous (a view, such as a
    parameter's slice of an optimizer's flat gradient buffer, is written in place, never copied)."""
    if out is None:
        return None
    xp = array_module(ref, out, names=[ref_name, name])
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name}: got shape {tuple(out.shape)}, expected {tuple(shape)}")
    same_dtype(ref, ref_name, (out, name))
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: got a non-contiguous array, expected a C-contiguous one (the result is written "
                         "into it)")
    if xp is not np and out.device.id != ref.device.id:
        raise ValueError(f"{name}: got an array on GPU {out.device.id}, expected GPU {ref.device.id} (the device of "
                         f"{ref_name})")
    return out


def out_pair(out, name: str, shapes, ref, ref_name: str, what: str):
    """``out`` of an op returning two gradients ``what`` (e.g. "(dw, db)"): None, or a pair whose
    entries are each None (allocated) or checked by :func:`out_array` against ``shapes``; returned
    as a tuple of two."""
    if out is None:
        return None, None
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"{name}: got {type(out).__name__}, expected None or a pair {what} of arrays or None")
    return tuple(out_array(o, f"{name}[{i}]", shape, ref, ref_name) for i, (o, shape) in enumerate(zip(out, shapes)))


def accumulate_flags(accumulate, out, name: str = "accumulate"):
    """The ``accumulate`` of an op whose ``out`` is an array or None (or the pair :func:`out_pair`
    returned; the parameter-gradient ops, the projection discriminator's terms): whether the result
    is added into out instead of written there; a bool (for a pair: a pair of bools, or one bool for
    both). True needs an array to add into."""
    pair = isinstance(out, tuple)
    flags = tuple(accumulate) if pair and isinstance(accumulate, (tuple, list)) else (accumulate,) * (1 + pair)
    if len(flags) != 1 + pair or not all(isinstance(f, (bool, np.bool_)) for f in flags):
        raise TypeError(f"{name}: got {accumulate!r}, expected a bool" + (" or a pair of bools" if pair else ""))
    for i, (add, o) in enumerate(zip(flags, out if pair else (out,))):
        if add and o is None:
            where = f"{name}[{i}]" if pair and isinstance(accumulate, (tuple, list)) else name
            raise ValueError(f"{where}: got True with out{f'[{i}]' if pair else ''} None, expected False or an out "
                             "array to add the result into")
    flags = tuple(bool(f) for f in flags)
    return flags if pair else flags[0]


def leaky_slope(slope) -> float:
    """The negative_slope of a leaky ReLU: a real in [0, 1)."""
    return real(slope, "negative_slope", 0.0, 1.0, hi_open=True)


FUSED_ACTIVATIONS = (None, "relu", "leaky_relu", "tanh")  # what conv2d_forward and batchnorm fuse


def fused_activation(activation, negative_slope, allowed=FUSED_ACTIVATIONS) -> tuple:
    """(activation, slope) of an op's fused ``activation`` (one of ``allowed``: FUSED_ACTIVATIONS, or
    an op's own set); the slope is ``negative_slope`` for leaky_relu, else 0."""
    if activation not in allowed:
        raise ValueError(f"activation: got {activation!r}, expected one of {allowed}")
    return activation, leaky_slope(negative_slope) if activation == "leaky_relu" else 0.0


def activation_output(y, activation, shape, ref, ref_name: str, b=None) -> None:
    """Check a backward-data op's ``activation_output``: the outputs of ``activation`` (given, not
    None) that were the op's input, so of the input's ``shape`` and of ref's dtype and device; the
    op then returns the gradient through that activation and adds no bias ``b``."""
    if y is None:
        return
    if activation is None:
        raise ValueError("activation: got None with an activation_output, expected the activation whose outputs it "
                         "holds")
    if b is not None:
        raise ValueError("b: got a bias with an activation_output, expected None (a gradient through an activation "
                         "takes no bias)")
    array(y, "activation_output", len(shape))
    if tuple(y.shape) != tuple(shape):
        raise ValueError(f"activation_output: got shape {tuple(y.shape)}, expected {tuple(shape)} (the input's)")
    same_dtype(ref, ref_name, (y, "activation_output"))
    same_device(**{ref_name: ref, "activation_output": y})


def probability(p, name: str = "p") -> float:
    """A drop probability: a real in [0, 1)."""
    return real(p, name, 0.0, 1.0, hi_open=True, what="a probability")


def class_labels(labels, classes: int, n: int | None, xp, rows: str = "the rows of the other inputs"):
    """Class labels: a 1-d integer array of xp (n of them when n is given: ``rows`` names what
    fixes n) with values in [0, classes), those checked on the CPU only (on the GPU that would
    read them back to the host)."""
    if not isinstance(labels, xp.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise TypeError(f"labels: got {getattr(labels, 'dtype', type(labels).__name__)} of shape "
                        f"{getattr(labels, 'shape', None)}, expected a 1-d integer array")
    if n is not None and labels.shape[0] != n:
        raise ValueError(f"labels: got {labels.shape[0]} labels, expected {n} ({rows})")
    if xp is np and labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels: got values in [{labels.min()}, {labels.max()}], expected [0, {classes})")
    return labels
