"""CPU optimizer updates (SGD, Adam), in place."""

from __future__ import annotations

import numpy as np


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    g = grad + param.dtype.type(weight_decay) * param if weight_decay else grad
    if momentum:
        velocity *= param.dtype.type(momentum)
        velocity += g
        g = g + param.dtype.type(momentum) * velocity if nesterov else velocity
    param -= param.dtype.type(lr) * g


def sgd_update_multi(params, grads, velocities, lr, momentum, weight_decay, nesterov):
    for i, (p, g) in enumerate(zip(params, grads)):
        sgd_update(p, g, velocities[i] if momentum else None, lr, momentum, weight_decay, nesterov)


def adam_update_multi(params, grads, ms, vs, counters, lr, beta1, beta2, eps, weight_decay):
    for i, (p, g) in enumerate(zip(params, grads)):
        adam_update(p, g, ms[i], vs[i], counters[i], lr, beta1, beta2, eps, weight_decay)


def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
    """``step``: the int step count, or an int32 counter (count, 0) advanced here, as the GPU's."""
    if not isinstance(step, int):
        counter, step = step, int(step[0]) + 1
        counter[0] = step
    t = param.dtype.type
    g = grad + t(weight_decay) * param if weight_decay else grad
    m *= t(beta1)
    m += t(1 - beta1) * g
    v *= t(beta2)
    v += t(1 - beta2) * (g * g)
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    denom = np.sqrt(v / t(bc2)) + t(eps)
    param -= t(lr / bc1) * m / denom


def accumulate(acc, x):
    acc += x
