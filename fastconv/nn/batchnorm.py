"""BatchNorm1d and BatchNorm2d: per-feature normalisation with running statistics (the
batchnorm op family)."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..argcheck import real
from .layers import NO_ACTIVATION, _positive_int
from .module import Module


class _BatchNorm(Module):
    _ndim = None
    # forward(x, activation) / backward(dy, input_grad, activation): the activation after it in a
    # Sequential, fused into both passes (the backward recomputes it from x)
    takes_activation = backward_takes_activation = True

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features")
        self.eps = real(eps, "eps", 0.0, lo_open=True)
        self.momentum = real(momentum, "momentum", 0.0, 1.0)
        self.weight = self.add_parameter("weight", np.ones(self.num_features, dtype))
        self.bias = self.add_parameter("bias", np.zeros(self.num_features, dtype))
        self.add_buffer("running_mean", np.zeros(self.num_features, dtype))
        self.add_buffer("running_var", np.ones(self.num_features, dtype))
        self._cache = None

    def _clear_cache(self):
        self._cache = None

    def forward(self, x, activation=NO_ACTIVATION):
        if x.ndim != self._ndim:
            raise ValueError(f"x: got shape {tuple(x.shape)}, expected a {self._ndim}-d input for "
                             f"{type(self).__name__}")
        name, slope = activation
        y, mean, invstd = ops.batchnorm_forward(x, self.weight.data, self.bias.data, self.buffer("running_mean"),
                                                self.buffer("running_var"), self.training, self.momentum, self.eps,
                                                activation=name, negative_slope=slope, kernels=self.kernels)
        self._cache = (x, mean, invstd, self.training)
        return y

    def backward(self, dy, input_grad=True, activation=NO_ACTIVATION):
        """dy: the gradient of the output, or with the forward's fused ``activation`` of its output."""
        x, mean, invstd, training = self._saved(self._cache, "batch statistics")
        name, slope = activation
        (g_out, g_add), (b_out, b_add) = (p.grad_out() if p.requires_grad else (None, False)
                                          for p in (self.weight, self.bias))
        dx, dgamma, dbeta = ops.batchnorm_backward(dy, x, self.weight.data, mean, invstd, training,
                                                   beta=None if name is None else self.bias.data, activation=name,
                                                   negative_slope=slope, out=(g_out, b_out), accumulate=(g_add, b_add),
                                                   kernels=self.kernels)
        for p, g in ((self.weight, dgamma), (self.bias, dbeta)):  # the op computes both for dx anyway
            if p.requires_grad:
                p.accumulate(g)
        return dx if input_grad else None

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) inputs over N."""
    _ndim = 2


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs over N, H, W."""
    _ndim = 4
