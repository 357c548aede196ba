"""CPU losses: softmax cross-entropy and BCE with logits, mean reduction, returning (loss, dlogits)."""

from __future__ import annotations

import numpy as np

from .activation import sigmoid_forward


def softmax_cross_entropy(logits, labels):
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = (np.log(s[:, 0]) - z[rows, labels]).mean()
    d = e / s
    d[rows, labels] -= 1
    d /= n
    return np.asarray(loss, dtype=logits.dtype), d


def bce_with_logits(logits, targets, negate=False):
    z = logits
    loss = (np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))).mean()
    d = (sigmoid_forward(z) - targets) / z.size
    if negate:
        loss, d = -loss, -d
    return np.asarray(loss, dtype=logits.dtype), d.astype(logits.dtype, copy=False)


def gan_stats(sums, loss_real, loss_fake, loss_g, logits_real, logits_fake, logits_g):
    sums += [float(loss_real) + float(loss_fake), float(loss_g)] + [
        float(sigmoid_forward(z).astype(np.float64).mean()) for z in (logits_real, logits_fake, logits_g)]
