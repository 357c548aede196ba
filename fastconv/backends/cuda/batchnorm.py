"""Launchers of kernels/batchnorm.cu."""

from __future__ import annotations

import numpy as np

from . import config as cfg
from .launch import _F32, _alloc, _arg, _eltwise_grid, _f32, _i32, _i32s, _launch


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
        _launch("batchnorm.cu", "batchnorm_forward_train_v1", (c,), cfg.BLOCK,
                (x, gamma, beta, running_mean, running_var, y, mean, invstd) + _i32s("x", "N C H*W", (n, c, hw))
                + (_f32(momentum), _f32(eps)))
    else:
        _launch("batchnorm.cu", "batchnorm_forward_eval_v1", _eltwise_grid(max(x.size, c)), cfg.BLOCK,
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
    _launch("batchnorm.cu", "batchnorm_backward_v1", (c,), cfg.BLOCK,
            (dy, x, gamma, mean, invstd, dx, dgamma, dbeta) + _i32s("x", "N C H*W", (n, c, hw))
            + (_i32(bool(training)),))
    return dx, dgamma, dbeta
