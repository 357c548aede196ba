"""Losses: each returns (loss as a 0-d array, dlogits) with mean reduction."""

from __future__ import annotations

import numpy as np

from ..argcheck import array, class_labels, same_device, same_shape
from ..backend import op
from ..plan import planned


@planned
def softmax_cross_entropy(logits, labels, *, kernels=None):
    """Mean over N of -log softmax(logits)[n, labels[n]]; labels int32/int64 in [0, K)."""
    array(logits, "logits", 2)
    xp = same_device(logits=logits, labels=labels)
    class_labels(labels, logits.shape[1], logits.shape[0], xp, "the rows of logits")
    return op("softmax_cross_entropy", logits, kernels=kernels)(logits, labels)


@planned
def bce_with_logits(logits, targets, *, negate=False, kernels=None):
    """Mean of max(z,0) - z*t + log(1 + exp(-|z|)), stable for any logit z; targets in [0, 1].
    ``negate``: the loss and dlogits times -1 (with t = 0 the minimax GAN generator's loss
    log(1 - sigmoid(z)), in the same launches)."""
    array(logits, "logits", (1, 2, 3, 4))
    array(targets, "targets", logits.ndim)
    same_shape(targets, "targets", logits, "logits")
    if not isinstance(negate, bool):
        raise TypeError(f"negate: got {negate!r}, expected True or False")
    return op("bce_with_logits", logits, kernels=kernels)(logits, targets, negate)


@planned
def gan_stats(sums, loss_real, loss_fake, loss_g, logits_real, logits_fake, logits_g, *, kernels=None):
    """A GAN step's logged numbers added to ``sums`` (5,) float64 in place: [D loss = loss_real +
    loss_fake, G loss, mean sigmoid(logits_real) = mean D(x), mean sigmoid(logits_fake) = mean
    D(G(z)) at the D step, mean sigmoid(logits_g) = mean D(G(z)) at the G step]. The losses are 0-d
    arrays, the logits of one shape (the batch's (N, 1)); on the GPU all stays on the device (a
    trainer reads ``sums`` once per log line)."""
    array(sums, "sums", 1, np.float64)
    if sums.shape != (5,) or not sums.flags.c_contiguous:
        raise ValueError(f"sums: got shape {tuple(sums.shape)}, expected a C-contiguous (5,) array (updated in place)")
    for a, name in ((loss_real, "loss_real"), (loss_fake, "loss_fake"), (loss_g, "loss_g")):
        array(a, name, 0)
    array(logits_real, "logits_real", (1, 2))
    same_device(sums=sums, loss_real=loss_real, loss_fake=loss_fake, loss_g=loss_g, logits_real=logits_real)
    same_shape(logits_fake, "logits_fake", logits_real, "logits_real")
    same_shape(logits_g, "logits_g", logits_real, "logits_real")
    op("gan_stats", logits_real, kernels=kernels)(sums, loss_real, loss_fake, loss_g, logits_real, logits_fake,
                                                   logits_g)
