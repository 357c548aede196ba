"""Losses: each returns (loss as a 0-d array, dlogits) with mean reduction."""

from __future__ import annotations

import numpy as np

from ..argcheck import array, same_device, same_shape
from ..backend import op
from ..plan import planned


@planned
def softmax_cross_entropy(logits, labels, *, kernels=None):
    """Mean over N of -log softmax(logits)[n, labels[n]]; labels int32/int64 in [0, K)."""
    array(logits, "logits", 2)
    xp = same_device(logits=logits, labels=labels)
    if not isinstance(labels, xp.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise TypeError(f"labels: got {getattr(labels, 'dtype', type(labels).__name__)} of shape "
                        f"{getattr(labels, 'shape', None)}, expected a 1-d integer array")
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels: got {labels.shape[0]} labels, expected {logits.shape[0]} (the rows of logits)")
    if xp is np and labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels: got values in [{labels.min()}, {labels.max()}], expected [0, {logits.shape[1]})")
    return op("softmax_cross_entropy", logits, kernels=kernels)(logits, labels)


@planned
def bce_with_logits(logits, targets, *, kernels=None):
    """Mean of max(z,0) - z*t + log(1 + exp(-|z|)), stable for any logit z; targets in [0, 1]."""
    array(logits, "logits", (1, 2, 3, 4))
    array(targets, "targets", logits.ndim)
    same_shape(targets, "targets", logits, "logits")
    return op("bce_with_logits", logits, kernels=kernels)(logits, targets)
