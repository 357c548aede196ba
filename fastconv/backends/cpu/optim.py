"""CPU optimizer updates (SGD, Adam) and gradient accumulation, in place."""

from __future__ import annotations

import functools

import numpy as np


def _lr(lr) -> float:
    """A float, or the float32 array (1,) of a device learning rate (read as the GPU kernel does)."""
    return lr if isinstance(lr, float) else float(lr[0])


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    g = grad + param.dtype.type(weight_decay) * param if weight_decay else grad
    if momentum:
        velocity *= param.dtype.type(momentum)
        velocity += g
        g = g + param.dtype.type(momentum) * velocity if nesterov else velocity
    param -= param.dtype.type(_lr(lr)) * g


def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
    """``step``: the int step count, or int32 counters (rows, 2) advanced here, as the GPU's."""
    if not isinstance(step, int):
        counters, step = step.reshape(-1, 2), int(step.flat[0]) + 1
        counters[:, 0] = step
    t = param.dtype.type
    g = grad + t(weight_decay) * param if weight_decay else grad
    m *= t(beta1)
    m += t(1 - beta1) * g
    v *= t(beta2)
    v += t(1 - beta2) * (g * g)
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    denom = np.sqrt(v / t(bc2)) + t(eps)
    param -= t(_lr(lr) / bc1) * m / denom


def accumulate(acc, x, add):
    if add:
        acc += x
    else:
        acc[...] = x


def adds_into(fn):
    """Give a CPU function with ``out`` (a gradient op's, an embedding's) ``accumulate``: each ``out``
    array to be added into is computed into a new array by ``fn`` and then added to (accumulate's
    ``acc += x``: the same two fp32 roundings as the GPU kernels' store_or_add). ``out`` is one
    array (``accumulate`` a bool) or a pair, the last two of ``fn``'s results (``accumulate`` a
    pair of bools)."""
    @functools.wraps(fn)
    def call(*args, out=None, accumulate=False, **kw):
        if not isinstance(out, tuple):
            if not accumulate:
                return fn(*args, out=out, **kw)
            out += fn(*args, out=None, **kw)
            return out
        res = fn(*args, out=tuple(None if add else o for o, add in zip(out, accumulate)), **kw)
        head, grads = res[:-2], res[-2:]
        for o, add, g in zip(out, accumulate, grads):
            if add:
                o += g
        return head + tuple(o if add else g for o, add, g in zip(out, accumulate, grads))
    return call
