"""Launchers of kernels/optim.cu: SGD and Adam updates and gradient accumulation, in place.

``lr`` is a float, or a float32 device array of shape (1,) that the kernel reads (the optimizers'
device learning rate, which a schedule changes between replays of a captured step)."""

from __future__ import annotations

import numpy as np

from . import config as cfg
from .launch import _arg, _eltwise_grid, _f32, _i32, _launch


def _lr(lr):
    """(whether lr is on the device, the kernel argument)."""
    return (False, _f32(lr)) if isinstance(lr, float) else (True, _arg(lr, "lr"))


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    param = _arg(param, "param", inplace=True)
    grad = _arg(grad, "grad")
    has_v = bool(momentum)
    v = _arg(velocity, "velocity", inplace=True) if has_v else param
    on_device, lr = _lr(lr)
    if param.size:
        _launch("optim.cu", "sgd_update_v2" if on_device else "sgd_update_v1", _eltwise_grid(param.size), cfg.BLOCK,
                (param, grad, v, np.int64(param.size), lr, _f32(momentum), _f32(weight_decay), _i32(bool(nesterov)),
                 _i32(has_v)))


def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
    """``step``: the int step count, or device int32 counters (rows, 2) advanced by the kernel."""
    param = _arg(param, "param", inplace=True)
    grad = _arg(grad, "grad")
    m, v = _arg(m, "m", inplace=True), _arg(v, "v", inplace=True)
    on_device, lr = _lr(lr)
    if isinstance(step, int):
        name, step_args = ("adam_update_v4" if on_device else "adam_update_v1"), (_i32(step),)
    else:
        step = _arg(step, "step", np.int32, inplace=True)
        name, step_args = ("adam_update_v3" if on_device else "adam_update_v2"), (step, _i32(step.size // 2))
    if param.size:
        _launch("optim.cu", name, _eltwise_grid(param.size), cfg.BLOCK,
                (param, grad, m, v, np.int64(param.size), lr, np.float64(beta1), np.float64(beta2), _f32(eps),
                 _f32(weight_decay)) + step_args)


def accumulate(acc, x, add):
    acc = _arg(acc, "acc", inplace=True)
    x = _arg(x, "x")
    if acc.size:
        _launch("optim.cu", "accumulate_v2", _eltwise_grid(acc.size), cfg.BLOCK,
                (acc, x, np.int64(acc.size), _i32(bool(add))))
