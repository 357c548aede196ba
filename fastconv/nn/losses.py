"""Losses: forward returns the mean loss as a 0-d array (no host sync on the GPU); backward returns
the gradient w.r.t. the logits."""

from __future__ import annotations

from .. import ops


class _Loss:
    def __init__(self, kernels=None):
        self.kernels = kernels
        self._dlogits = None

    def backward(self):
        if self._dlogits is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._dlogits

    def __call__(self, logits, target):
        return self.forward(logits, target)


class CrossEntropyLoss(_Loss):
    """Mean softmax cross-entropy over a batch of logits (N, K) and integer labels (N,)."""

    def forward(self, logits, labels):
        loss, self._dlogits = ops.softmax_cross_entropy(logits, labels, kernels=self.kernels)
        return loss


class BCEWithLogitsLoss(_Loss):
    """Mean binary cross-entropy on logits, stable for any logit; targets in [0, 1]."""

    def forward(self, logits, targets):
        loss, self._dlogits = ops.bce_with_logits(logits, targets, kernels=self.kernels)
        return loss
