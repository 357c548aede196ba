"""CPU batch normalisation over axis 1 of (N, C) or (N, C, H, W)."""

from __future__ import annotations

import numpy as np

from .activation import activate, activate_backward
from .optim import adds_into


def _bn_axes_shape(x):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, x.shape[1]) if x.ndim == 2 else (1, x.shape[1], 1, 1)
    return axes, shape


def _affine(xc, gamma, beta, invstd, shape):
    """(x - mean) * invstd * gamma + beta from xc = x - mean: the forward's output before its
    activation, which the fused backward recomputes with this same expression."""
    return xc * (invstd * gamma).reshape(shape) + beta.reshape(shape)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, activation=None,
                      slope=0.0):
    axes, shape = _bn_axes_shape(x)
    if training:
        count = x.size // x.shape[1]
        mean = x.mean(axis=axes)
        xc = x - mean.reshape(shape)
        var = np.mean(xc * xc, axis=axes)
        invstd = 1 / np.sqrt(var + x.dtype.type(eps))
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += (momentum * count / (count - 1)) * var
    else:
        mean = running_mean.copy()
        invstd = 1 / np.sqrt(running_var + x.dtype.type(eps))
        xc = x - mean.reshape(shape)
    invstd = invstd.astype(x.dtype, copy=False)
    return activate(activation, _affine(xc, gamma, beta, invstd, shape), slope), mean, invstd


@adds_into
def batchnorm_backward(dy, x, gamma, mean, invstd, training, out=(None, None), beta=None, activation=None, slope=0.0):
    """(dx, dgamma, dbeta), the last two written into their entries of ``out`` when those are arrays;
    with an ``activation``, dy is the gradient of act(y), y recomputed from x and ``beta``."""
    axes, shape = _bn_axes_shape(x)
    xc = x - mean.reshape(shape)
    if activation is not None:
        dy = activate_backward(activation, dy, activate(activation, _affine(xc, gamma, beta, invstd, shape), slope),
                               slope)
    xhat = xc * invstd.reshape(shape)
    dbeta = dy.sum(axis=axes, out=out[1])
    dgamma = (dy * xhat).sum(axis=axes, out=out[0])
    if training:
        count = x.size // x.shape[1]
        dx = (gamma * invstd / count).reshape(shape) * (count * dy - dbeta.reshape(shape) - xhat * dgamma.reshape(shape))
    else:
        dx = dy * (gamma * invstd).reshape(shape)
    return dx, dgamma, dbeta
