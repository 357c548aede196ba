"""The "cupy" GPU kernel family: launchers for the CUDA C kernels in kernels/*.cu.

Every op of notes/INTERFACES.md with the same signature as fastconv.backends.cpu. Arguments
arrive validated by fastconv.ops; the launchers still check what a RawKernel cannot (dtype
float32, device, C-contiguity: non-contiguous inputs are copied to contiguous ones) and pass
scalars as numpy int32/int64/float32 so the kernel sees the C types it declares. Grids, tile
shapes and split-K come from fastconv.backends.cuda_config (pure Python, unit-tested).

Module switches (for tests and ``fastconv check``):
  POISON = True       every output buffer is filled with NaN (int: -1, uint8: 255) before the
                      kernel runs, so an element a kernel forgets to write is caught.
  CONV_VERSION = 2    the tiled implicit-GEMM conv kernels; 1 = the direct v1 kernels.
  CONV_TILE = None    v2 tile shape picked by cuda_config.conv_tile; or force one of
                      cuda_config.CONV_TILES ("t128x128", "t64x64", "t32x128").
Linear layers use CuPy's matmul (cuBLAS, fp32; TF32 stays off unless CUPY_TF32=1).
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from . import cuda_config as cfg
from .cuda_loader import function

POISON = False
CONV_VERSION = 2
CONV_TILE = None

_F32 = np.dtype(np.float32)
_sms: dict[int, int] = {}


class GPUOutOfMemoryError(MemoryError):
    """A GPU allocation failed; the message names the bytes asked for."""


# ---------------------------------------------------------------------------------------------
# helpers

def num_sms() -> int:
    dev = cp.cuda.Device()
    n = _sms.get(dev.id)
    if n is None:
        n = _sms[dev.id] = int(dev.attributes["MultiProcessorCount"])
    return n


def _alloc(shape, dtype, what: str, zero: bool = False):
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    try:
        a = cp.zeros(shape, dtype) if zero else cp.empty(shape, dtype)
    except cp.cuda.memory.OutOfMemoryError:
        free, total = cp.cuda.runtime.memGetInfo()
        raise GPUOutOfMemoryError(
            f"{what}: out of GPU memory asking for {nbytes} bytes ({tuple(shape)} {dtype}); "
            f"{free} of {total} bytes free on GPU {cp.cuda.Device().id}; expected a smaller batch or "
            "fewer arrays alive") from None
    if POISON and not zero:
        if dtype.kind == "f":
            a.fill(np.nan)
        elif dtype.kind == "u":
            a.fill(np.iinfo(dtype).max)
        else:
            a.fill(-1)
    return a


def _arg(a, name: str, dtype=_F32, inplace: bool = False):
    """Check a device array; return it C-contiguous (a copy when it was not, unless in place)."""
    if not isinstance(a, cp.ndarray):
        raise TypeError(f"{name}: got {type(a).__name__}, expected a cupy.ndarray")
    if a.dtype != dtype:
        raise TypeError(f"{name}: got dtype {a.dtype} on the GPU, expected {np.dtype(dtype)}")
    dev = cp.cuda.Device().id
    if a.device.id != dev:
        raise ValueError(f"{name}: got an array on GPU {a.device.id}, expected the current GPU {dev}")
    if not a.flags.c_contiguous:
        if inplace:
            raise ValueError(f"{name}: got a non-contiguous array, expected a C-contiguous one (updated in place)")
        a = cp.ascontiguousarray(a)
    return a


def _i32(v):
    """A small int (flag, split count, chunk) as np.int32; sizes go through _i32s."""
    return np.int32(v)


def _i32s(name: str, labels: str, values) -> tuple:
    """``values`` as np.int32 scalars; a ValueError naming the argument and the quantity (instead of
    numpy's OverflowError) when one does not fit the kernel's 32-bit int parameter."""
    if max(values) > cfg.INT32_MAX or min(values) < -cfg.INT32_MAX - 1:
        for label, v in zip(labels.split(), values):
            if not -cfg.INT32_MAX - 1 <= v <= cfg.INT32_MAX:
                raise ValueError(f"{name}: got {label} = {v}, expected at most {cfg.INT32_MAX} (the GPU kernel "
                                 "takes it as a 32-bit int); split the batch")
    return tuple(np.int32(v) for v in values)


def _f32(v):
    return np.float32(v)


def _launch(filename, name, grid, block, args):
    fn = function(filename, name)
    fn(tuple(int(g) for g in grid), (int(block),), args)


def _conv_tile(m, cols):
    if CONV_TILE is None:
        return cfg.conv_tile(m, cols, num_sms())
    if CONV_TILE not in cfg.CONV_TILES:
        raise ValueError(f"CONV_TILE: got {CONV_TILE!r}, expected None or one of {sorted(cfg.CONV_TILES)}")
    return CONV_TILE


def _eltwise_grid(n, per_thread=1):
    return (cfg.elementwise_blocks(n, num_sms(), cfg.BLOCK, per_thread),)


def _aligned(*arrays):
    return all(a.data.ptr % 16 == 0 for a in arrays)


# ---------------------------------------------------------------------------------------------
# convolution

_CONV_LABELS = "N C H W K R S P Q stride_h stride_w pad_h pad_w dilation_h dilation_w groups"


def _conv_ints(name, n, c, h, w, k, r, s, p, q, stride, padding, dilation, groups):
    return _i32s(name, _CONV_LABELS, (n, c, h, w, k, r, s, p, q, stride[0], stride[1], padding[0], padding[1],
                                      dilation[0], dilation[1], groups))


def _conv_shape_checks(name, n, c, h, w, k, r, s, p, q, groups):
    cfg.check_int32(name, n * p * q, "N*P*Q")
    cfg.check_int32(name, n * h * w, "N*H*W")
    cfg.check_int32(name, (c // groups) * r * s, "C/groups*R*S")
    cfg.check_int32(name, (k // groups) * r * s, "K/groups*R*S")


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    x = _arg(x, "x")
    w = _arg(w, "w")
    b = None if b is None else _arg(b, "b")
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    p = cfg.conv_out_size(h, r, stride[0], padding[0], dilation[0])
    q = cfg.conv_out_size(wd, s, stride[1], padding[1], dilation[1])
    _conv_shape_checks("x", n, c, h, wd, k, r, s, p, q, groups)
    y = _alloc((n, k, p, q), _F32, "conv2d_forward output")
    ints = _conv_ints("x", n, c, h, wd, k, r, s, p, q, stride, padding, dilation, groups)
    args = (x, w, w if b is None else b, y) + ints + (_i32(b is not None),)
    if CONV_VERSION == 1:
        _launch("conv.cu", "conv2d_forward_v1", _eltwise_grid(y.size), cfg.BLOCK, args)
        return y
    m, cols = k // groups, n * p * q
    tile = _conv_tile(m, cols)
    _launch("conv.cu", f"conv2d_forward_v2_{tile}", cfg.conv_grid(m, cols, tile, groups), cfg.CONV_THREADS, args)
    return y


def conv2d_backward_data(dy, w, x_shape, stride, padding, dilation, groups):
    dy = _arg(dy, "dy")
    w = _arg(w, "w")
    n, c, h, wd = x_shape
    k, cg, r, s = w.shape
    p, q = dy.shape[2], dy.shape[3]
    _conv_shape_checks("dy", n, c, h, wd, k, r, s, p, q, groups)
    dx = _alloc((n, c, h, wd), _F32, "conv2d_backward_data output")
    args = (dy, w, dx) + _conv_ints("dy", n, c, h, wd, k, r, s, p, q, stride, padding, dilation, groups)
    if CONV_VERSION == 1:
        _launch("conv.cu", "conv2d_backward_data_v1", _eltwise_grid(dx.size), cfg.BLOCK, args)
        return dx
    m, cols = c // groups, n * h * wd
    tile = _conv_tile(m, cols)
    _launch("conv.cu", f"conv2d_backward_data_v2_{tile}", cfg.conv_grid(m, cols, tile, groups),
            cfg.CONV_THREADS, args)
    return dx


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups):
    dy = _arg(dy, "dy")
    x = _arg(x, "x")
    n, c, h, wd = x.shape
    k, cg, r, s = w_shape
    p, q = dy.shape[2], dy.shape[3]
    _conv_shape_checks("dy", n, c, h, wd, k, r, s, p, q, groups)
    dw = _alloc((k, cg, r, s), _F32, "conv2d_backward_weight output")
    ints = _conv_ints("dy", n, c, h, wd, k, r, s, p, q, stride, padding, dilation, groups)
    if CONV_VERSION == 1:
        _launch("conv.cu", "conv2d_backward_weight_v1", _eltwise_grid(dw.size), cfg.BLOCK, (dy, x, dw) + ints)
        return dw
    m, cols, red = k // groups, cg * r * s, n * p * q
    tile = _conv_tile(m, cols)
    splits, chunk = cfg.wgrad_splits(m, cols, red, tile, groups, num_sms())
    grid = cfg.conv_grid(m, cols, tile, groups * splits)
    name = f"conv2d_backward_weight_v2_{tile}"
    if splits == 1:
        _launch("conv.cu", name, grid, cfg.CONV_THREADS, (dy, x, dw) + ints + (_i32(1), _i32(chunk)))
        return dw
    ws = _alloc((splits, dw.size), _F32, "conv2d_backward_weight split-K workspace")
    _launch("conv.cu", name, grid, cfg.CONV_THREADS, (dy, x, ws) + ints + (_i32(splits), _i32(chunk)))
    _launch("conv.cu", "conv2d_wgrad_reduce_v1", _eltwise_grid(dw.size), cfg.BLOCK,
            (ws, dw, np.int64(dw.size), _i32(splits)))
    return dw


def conv2d_backward_bias(dy):
    dy = _arg(dy, "dy")
    n, k, p, q = dy.shape
    db = _alloc((k,), _F32, "conv2d_backward_bias output")
    _launch("conv.cu", "conv2d_backward_bias_v1", (k,), cfg.BLOCK, (dy, db) + _i32s("dy", "N K P*Q", (n, k, p * q)))
    return db


# ---------------------------------------------------------------------------------------------
# activations

def _unary(name, x, scalars=(), vec=False):
    x = _arg(x, "x")
    y = _alloc(x.shape, _F32, f"{name} output")
    if x.size:
        v2 = vec and _aligned(x, y)
        kname = f"{name}_v2" if v2 else f"{name}_v1"
        _launch("eltwise.cu", kname, _eltwise_grid(x.size, 4 if v2 else 1), cfg.BLOCK,
                (x, y, np.int64(x.size)) + scalars)
    return y


def _binary(name, dy, y, scalars=(), vec=False):
    dy = _arg(dy, "dy")
    y = _arg(y, "y")
    dx = _alloc(dy.shape, _F32, f"{name} output")
    if dy.size:
        v2 = vec and _aligned(dy, y, dx)
        kname = f"{name}_v2" if v2 else f"{name}_v1"
        _launch("eltwise.cu", kname, _eltwise_grid(dy.size, 4 if v2 else 1), cfg.BLOCK,
                (dy, y, dx, np.int64(dy.size)) + scalars)
    return dx


def relu_forward(x):
    return _unary("relu_forward", x, vec=True)


def relu_backward(dy, y):
    return _binary("relu_backward", dy, y, vec=True)


def leaky_relu_forward(x, slope):
    return _unary("leaky_relu_forward", x, (_f32(slope),), vec=True)


def leaky_relu_backward(dy, y, slope):
    return _binary("leaky_relu_backward", dy, y, (_f32(slope),), vec=True)


def sigmoid_forward(x):
    return _unary("sigmoid_forward", x)


def sigmoid_backward(dy, y):
    return _binary("sigmoid_backward", dy, y)


def tanh_forward(x):
    return _unary("tanh_forward", x)


def tanh_backward(dy, y):
    return _binary("tanh_backward", dy, y)


# ---------------------------------------------------------------------------------------------
# pooling

def _pool_ints(name, nc, h, w, p, q, ks, stride, padding):
    """The pooling kernels' int parameters; they index a plane with h*W + w and p*Q + q in 32-bit
    ints, so H*W and P*Q are checked too (N*C is only passed as an int; its products are 64-bit)."""
    cfg.check_int32(name, h * w, "H*W")
    cfg.check_int32(name, p * q, "P*Q")
    return _i32s(name, "N*C H W P Q kernel_h kernel_w stride_h stride_w pad_h pad_w",
                 (nc, h, w, p, q, ks[0], ks[1], stride[0], stride[1], padding[0], padding[1]))


def max_pool2d_forward(x, ks, stride, padding):
    x = _arg(x, "x")
    n, c, h, w = x.shape
    p = cfg.conv_out_size(h, ks[0], stride[0], padding[0], 1)
    q = cfg.conv_out_size(w, ks[1], stride[1], padding[1], 1)
    ints = _pool_ints("x", n * c, h, w, p, q, ks, stride, padding)
    y = _alloc((n, c, p, q), _F32, "max_pool2d_forward output")
    am = _alloc((n, c, p, q), np.int32, "max_pool2d_forward argmax")
    _launch("pool.cu", "max_pool2d_forward_v1", _eltwise_grid(y.size), cfg.BLOCK, (x, y, am) + ints)
    return y, am


def max_pool2d_backward(dy, argmax, x_shape, ks, stride, padding):
    dy = _arg(dy, "dy")
    argmax = _arg(argmax, "argmax", np.int32)
    n, c, h, w = x_shape
    p, q = dy.shape[2], dy.shape[3]
    ints = _pool_ints("dy", n * c, h, w, p, q, ks, stride, padding)
    dx = _alloc((n, c, h, w), _F32, "max_pool2d_backward output")
    _launch("pool.cu", "max_pool2d_backward_v1", _eltwise_grid(dx.size), cfg.BLOCK, (dy, argmax, dx) + ints)
    return dx


def avg_pool2d_forward(x, ks, stride, padding, count_include_pad):
    x = _arg(x, "x")
    n, c, h, w = x.shape
    p = cfg.conv_out_size(h, ks[0], stride[0], padding[0], 1)
    q = cfg.conv_out_size(w, ks[1], stride[1], padding[1], 1)
    ints = _pool_ints("x", n * c, h, w, p, q, ks, stride, padding)
    y = _alloc((n, c, p, q), _F32, "avg_pool2d_forward output")
    _launch("pool.cu", "avg_pool2d_forward_v1", _eltwise_grid(y.size), cfg.BLOCK,
            (x, y) + ints + (_i32(bool(count_include_pad)),))
    return y


def avg_pool2d_backward(dy, x_shape, ks, stride, padding, count_include_pad):
    dy = _arg(dy, "dy")
    n, c, h, w = x_shape
    p, q = dy.shape[2], dy.shape[3]
    ints = _pool_ints("dy", n * c, h, w, p, q, ks, stride, padding)
    dx = _alloc((n, c, h, w), _F32, "avg_pool2d_backward output")
    _launch("pool.cu", "avg_pool2d_backward_v1", _eltwise_grid(dx.size), cfg.BLOCK,
            (dy, dx) + ints + (_i32(bool(count_include_pad)),))
    return dx


# ---------------------------------------------------------------------------------------------
# linear (cuBLAS through CuPy)

def linear_forward(x, w, b):
    x = _arg(x, "x")
    w = _arg(w, "w")
    y = cp.matmul(x, w.T)
    if b is not None:
        y += _arg(b, "b")
    return y


def linear_backward_data(dy, w):
    return cp.matmul(_arg(dy, "dy"), _arg(w, "w"))


def linear_backward_weight(dy, x):
    dy = _arg(dy, "dy")
    return cp.matmul(dy.T, _arg(x, "x")), dy.sum(axis=0)


# ---------------------------------------------------------------------------------------------
# batch normalisation

def _bn_dims(x):
    n, c = x.shape[0], x.shape[1]
    hw = 1 if x.ndim == 2 else x.shape[2] * x.shape[3]
    return n, c, hw


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    x = _arg(x, "x")
    gamma, beta = _arg(gamma, "gamma"), _arg(beta, "beta")
    running_mean = _arg(running_mean, "running_mean", inplace=True)
    running_var = _arg(running_var, "running_var", inplace=True)
    n, c, hw = _bn_dims(x)
    y = _alloc(x.shape, _F32, "batchnorm_forward output")
    mean = _alloc((c,), _F32, "batchnorm_forward mean")
    invstd = _alloc((c,), _F32, "batchnorm_forward invstd")
    if training:
        _launch("bn.cu", "batchnorm_forward_train_v1", (c,), cfg.BLOCK,
                (x, gamma, beta, running_mean, running_var, y, mean, invstd) + _i32s("x", "N C H*W", (n, c, hw))
                + (_f32(momentum), _f32(eps)))
    else:
        _launch("bn.cu", "batchnorm_forward_eval_v1", _eltwise_grid(max(x.size, c)), cfg.BLOCK,
                (x, gamma, beta, running_mean, running_var, y, mean, invstd, np.int64(x.size))
                + _i32s("x", "C H*W", (c, hw)) + (_f32(eps),))
    return y, mean, invstd


def batchnorm_backward(dy, x, gamma, mean, invstd, training):
    dy, x = _arg(dy, "dy"), _arg(x, "x")
    gamma, mean, invstd = _arg(gamma, "gamma"), _arg(mean, "mean"), _arg(invstd, "invstd")
    n, c, hw = _bn_dims(x)
    dx = _alloc(x.shape, _F32, "batchnorm_backward dx")
    dgamma = _alloc((c,), _F32, "batchnorm_backward dgamma")
    dbeta = _alloc((c,), _F32, "batchnorm_backward dbeta")
    _launch("bn.cu", "batchnorm_backward_v1", (c,), cfg.BLOCK,
            (dy, x, gamma, mean, invstd, dx, dgamma, dbeta) + _i32s("x", "N C H*W", (n, c, hw))
            + (_i32(bool(training)),))
    return dx, dgamma, dbeta


# ---------------------------------------------------------------------------------------------
# dropout

def dropout_forward(x, p, seed):
    x = _arg(x, "x")
    y = _alloc(x.shape, _F32, "dropout_forward output")
    mask = _alloc(x.shape, np.uint8, "dropout_forward mask")
    if x.size:
        thr = np.uint64(int(p * 4294967296.0))
        _launch("eltwise.cu", "dropout_forward_v1", _eltwise_grid(x.size), cfg.BLOCK,
                (x, y, mask, np.int64(x.size), np.uint32(seed & 0xFFFFFFFF), thr, _f32(1.0 / (1.0 - p))))
    return y, mask


def dropout_backward(dy, mask, p):
    dy = _arg(dy, "dy")
    mask = _arg(mask, "mask", np.uint8)
    dx = _alloc(dy.shape, _F32, "dropout_backward output")
    if dy.size:
        _launch("eltwise.cu", "dropout_backward_v1", _eltwise_grid(dy.size), cfg.BLOCK,
                (dy, mask, dx, np.int64(dy.size), _f32(1.0 / (1.0 - p))))
    return dx


# ---------------------------------------------------------------------------------------------
# losses (the loss is a 0-d device array; nothing is copied to the host)

def _sum_scale(values, n, scale, out):
    _launch("loss.cu", "sum_scale_v1", (1,), cfg.REDUCE_BLOCK, (values, out, np.int64(n), np.float64(scale)))


def softmax_cross_entropy(logits, labels):
    logits = _arg(logits, "logits")
    if not isinstance(labels, cp.ndarray) or labels.dtype.kind not in "iu":
        raise TypeError(f"labels: got {getattr(labels, 'dtype', type(labels).__name__)}, expected an integer "
                        "cupy array")
    labels = _arg(labels.astype(np.int32, copy=False), "labels", np.int32)
    n, k = logits.shape
    d = _alloc((n, k), _F32, "softmax_cross_entropy dlogits")
    rows = _alloc((n,), _F32, "softmax_cross_entropy row losses")
    loss = _alloc((), _F32, "softmax_cross_entropy loss")
    _launch("loss.cu", "softmax_xent_rows_v1", (cfg.warp_rows_blocks(n),), cfg.BLOCK,
            (logits, labels, d, rows) + _i32s("logits", "N K", (n, k)) + (_f32(1.0 / n),))
    _sum_scale(rows, n, 1.0 / n, loss)
    return loss, d


def bce_with_logits(logits, targets):
    logits, targets = _arg(logits, "logits"), _arg(targets, "targets")
    n = logits.size
    d = _alloc(logits.shape, _F32, "bce_with_logits dlogits")
    loss = _alloc((), _F32, "bce_with_logits loss")
    blocks = min(cfg.elementwise_blocks(n, num_sms()), 4 * num_sms())
    partial = _alloc((blocks,), _F32, "bce_with_logits partial sums")
    _launch("loss.cu", "bce_logits_v1", (blocks,), cfg.BLOCK,
            (logits, targets, d, partial, np.int64(n), _f32(1.0 / n)))
    _sum_scale(partial, blocks, 1.0 / n, loss)
    return loss, d


# ---------------------------------------------------------------------------------------------
# optimizer updates (in place)

def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    param = _arg(param, "param", inplace=True)
    grad = _arg(grad, "grad")
    has_v = bool(momentum)
    v = _arg(velocity, "velocity", inplace=True) if has_v else param
    if param.size:
        _launch("optim.cu", "sgd_update_v1", _eltwise_grid(param.size), cfg.BLOCK,
                (param, grad, v, np.int64(param.size), _f32(lr), _f32(momentum), _f32(weight_decay),
                 _i32(bool(nesterov)), _i32(has_v)))


def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
    param = _arg(param, "param", inplace=True)
    grad = _arg(grad, "grad")
    m, v = _arg(m, "m", inplace=True), _arg(v, "v", inplace=True)
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    if param.size:
        _launch("optim.cu", "adam_update_v1", _eltwise_grid(param.size), cfg.BLOCK,
                (param, grad, m, v, np.int64(param.size), _f32(lr), _f32(beta1), _f32(beta2), _f32(eps),
                 _f32(weight_decay), _f32(bc1), _f32(bc2)))
