"""Launchers of kernels/batchnorm.cu: the per-channel statistics as deterministic multi-block
reductions (slices x channels blocks, kernels/reduce.cuh; for (N, C) inputs slices x 32-channel
blocks, the c32 kernels), the element-wise passes in the same blocks, an activation
(config.ACTIVATIONS) fused after the normalisation in both passes."""

from __future__ import annotations

import numpy as np

from . import config as cfg
from .launch import (_F32, _aligned, _alloc, _arg, _channel_launch, _eltwise_grid, _f32, _i32, _i32s, _launch, _out,
                     num_sms)


def _bn_dims(x):
    n, c = x.shape[0], x.shape[1]
    hw = 1 if x.ndim == 2 else x.shape[2] * x.shape[3]
    return n, c, hw


def _slices(name, x, *others):
    """(grid, splits, the kernels' suffix, their N C HW chunk ints) for x: c32 for (N, C) (HW = 1: a
    block per slice x 32 channels), f4 when HW % 4 == 0 and every array is 16-byte aligned, else f1."""
    n, c, hw = _bn_dims(x)
    if hw == 1:
        groups = cfg.cdiv(c, cfg.BN_COLS)
        cfg.check_int32(name, n * c, "N*C")
        splits, chunk = cfg.channel_splits(groups, n, cfg.BN_COLS, num_sms())
        return (cfg.check_grid(name, (splits, groups, 1)), splits, "c32",
                _i32s(name, "N C H*W", (n, c, hw)) + (_i32(chunk),))
    grid, splits, chunk, width = _channel_launch(name, x, n, c, hw)
    if width == 4 and not _aligned(*others):
        width = 1
    return grid, splits, f"f{width}", _i32s(name, "N C H*W", (n, c, hw)) + (_i32(chunk),)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, activation=None,
                      slope=0.0):
    act = (_i32(cfg.activation_code(activation)), _f32(slope))
    x = _arg(x, "x")
    gamma, beta = _arg(gamma, "gamma"), _arg(beta, "beta")
    running_mean = _arg(running_mean, "running_mean", inplace=True)
    running_var = _arg(running_var, "running_var", inplace=True)
    n, c, hw = _bn_dims(x)
    cfg.check_int32("x", x.size, "N*C*H*W")
    y = _alloc(x.shape, _F32, "batchnorm_forward output")
    mean = _alloc((c,), _F32, "batchnorm_forward mean")
    invstd = _alloc((c,), _F32, "batchnorm_forward invstd")
    if not training:
        _launch("batchnorm.cu", "batchnorm_forward_eval_v2", _eltwise_grid(max(x.size, c)), cfg.BLOCK,
                (x, gamma, beta, running_mean, running_var, y, mean, invstd)
                + _i32s("x", "N*C*H*W C H*W", (x.size, c, hw)) + (_f32(eps),) + act)
        return y, mean, invstd
    grid, splits, form, ints = _slices("x", x, y)
    psum = _alloc((c, splits), np.float64, "batchnorm_forward partial sums")
    psq = _alloc((c, splits), np.float64, "batchnorm_forward partial sums of squares")
    _launch("batchnorm.cu", f"batchnorm_stats_v3_{form}", grid, cfg.BLOCK, (x, psum, psq) + ints)
    _launch("batchnorm.cu", f"batchnorm_forward_train_v3_{form}", grid, cfg.BLOCK,
            (x, gamma, beta, psum, psq, running_mean, running_var, y, mean, invstd) + ints
            + (_f32(momentum), _f32(eps)) + act)
    return y, mean, invstd


def batchnorm_backward(dy, x, gamma, mean, invstd, training, out=(None, None), beta=None, activation=None, slope=0.0,
                       accumulate=(False, False)):
    """(dx, dgamma, dbeta), the last two into their entries of ``out`` when those are arrays (added
    into them where ``accumulate`` says so, by the kernel); with an ``activation``, dy is the
    gradient of act(y) and the kernels recompute y from x and ``beta``."""
    act = (_i32(cfg.activation_code(activation)), _f32(slope))
    dy, x = _arg(dy, "dy"), _arg(x, "x")
    gamma, mean, invstd = _arg(gamma, "gamma"), _arg(mean, "mean"), _arg(invstd, "invstd")
    beta = gamma if beta is None else _arg(beta, "beta")  # read only with an activation
    c = x.shape[1]
    cfg.check_int32("x", x.size, "N*C*H*W")
    dx = _alloc(x.shape, _F32, "batchnorm_backward dx")
    dgamma = _out(out[0], (c,), "batchnorm_backward dgamma")
    dbeta = _out(out[1], (c,), "batchnorm_backward dbeta")
    grid, splits, form, ints = _slices("x", x, dy, dx)
    part = _alloc((2, c, splits), np.float64, "batchnorm_backward partial sums")
    _launch("batchnorm.cu", f"batchnorm_backward_sums_v2_{form}", grid, cfg.BLOCK,
            (dy, x, gamma, beta, mean, invstd, part) + ints + act)
    _launch("batchnorm.cu", f"batchnorm_backward_v2_{form}", grid, cfg.BLOCK,
            (dy, x, gamma, mean, invstd, part, dx, dgamma, dbeta) + ints + (_i32(bool(training)), beta) + act
            + (_i32(accumulate[0]), _i32(accumulate[1])))
    return dx, dgamma, dbeta
