"""Batch normalisation over axis 1 of (N, C) or (N, C, H, W)."""

from __future__ import annotations

from ..argcheck import accumulate_flags, array, fused_activation, out_pair, real, same_device, same_dtype, same_shape
from ..backend import op
from ..plan import planned


@planned
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5, *,
                      activation=None, negative_slope=0.01, kernels=None):
    """Returns (y, mean, invstd) with mean/invstd of shape (C,) as used (batch or running).

    In training, running_mean/running_var are updated in place with the unbiased batch variance
    (PyTorch's convention): r <- (1 - momentum) * r + momentum * batch_stat. ``activation`` (one of
    argcheck.FUSED_ACTIVATIONS; ``negative_slope`` is leaky_relu's) is applied to y in the same pass:
    y = act((x - mean) * invstd * gamma + beta).
    """
    activation, slope = fused_activation(activation, negative_slope)
    array(x, "x", (2, 4))
    c = x.shape[1]
    for a, name in ((gamma, "gamma"), (beta, "beta"), (running_mean, "running_mean"),
                    (running_var, "running_var")):
        array(a, name, 1)
        if a.shape[0] != c:
            raise ValueError(f"{name}: got shape {tuple(a.shape)}, expected ({c},) for x of shape {tuple(x.shape)}")
    same_dtype(x, "x", (gamma, "gamma"), (beta, "beta"), (running_mean, "running_mean"),
                (running_var, "running_var"))
    same_device(x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    count = x.size // c
    if training and count < 2:
        raise ValueError(f"x: got shape {tuple(x.shape)}, expected more than 1 value per channel in training")
    momentum = real(momentum, "momentum", 0.0, 1.0)
    eps = real(eps, "eps", 0.0, lo_open=True)
    return op("batchnorm_forward", x, kernels=kernels)(x, gamma, beta, running_mean, running_var, bool(training),
                                                       momentum, eps, activation, slope)


@planned
def batchnorm_backward(dy, x, gamma, mean, invstd, training=True, *, beta=None, activation=None,
                       negative_slope=0.01, out=None, accumulate=False, kernels=None):
    """Returns (dx, dgamma, dbeta). training=False differentiates the eval-mode affine map. ``out``:
    None, or a pair (dgamma, dbeta) whose arrays (each may be None: allocated) the parameter
    gradients are written into (shape (C,), C-contiguous, of x's dtype and device) and returned;
    ``accumulate`` (a bool, or a pair for dgamma and dbeta): added into them instead.
    ``activation``: the forward's fused activation, dy the gradient of its output; the backward
    recomputes the output from x, the statistics, gamma and ``beta`` (then required), bit for bit."""
    activation, slope = fused_activation(activation, negative_slope)
    if activation is not None and beta is None:
        raise ValueError(f"beta: got None with activation={activation!r}, expected the forward's beta (the "
                         "backward recomputes the activation's input from it)")
    array(dy, "dy", (2, 4))
    array(x, "x", (2, 4))
    same_shape(dy, "dy", x, "x")
    c = x.shape[1]
    stats = ((gamma, "gamma"), (mean, "mean"), (invstd, "invstd")) + (() if beta is None else ((beta, "beta"),))
    for a, name in stats:
        array(a, name, 1)
        if a.shape[0] != c:
            raise ValueError(f"{name}: got shape {tuple(a.shape)}, expected ({c},) for x of shape {tuple(x.shape)}")
    same_dtype(x, "x", *stats)
    same_device(x=x, **{name: a for a, name in stats})
    out = out_pair(out, "out", ((c,), (c,)), x, "x", "(dgamma, dbeta)")
    return op("batchnorm_backward", dy, kernels=kernels)(dy, x, gamma, mean, invstd, bool(training), out=out,
                                                          beta=beta, activation=activation, slope=slope,
                                                          accumulate=accumulate_flags(accumulate, out))
