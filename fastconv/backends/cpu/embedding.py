"""CPU label embeddings: rows of a table picked by labels, their gradient summed by label, and the
projection discriminator's class term (fastconv.ops.embedding states the shapes)."""

from __future__ import annotations

import numpy as np

from .optim import adds_into


def _rows(scale, n):
    return None if scale is None else scale.reshape(n, 1)


@adds_into
def embedding_forward(weight, labels, prefix=None, scale=None, out=None):
    n, d = labels.shape[0], weight.shape[1]
    p = 0 if prefix is None else prefix.shape[1]
    out = np.empty((n, p + d), weight.dtype) if out is None else out
    if p:
        out[:, :p] = prefix
    out[:, p:] = weight[labels]
    if scale is not None:
        out[:, p:] *= _rows(scale, n)
    return out


@adds_into
def embedding_backward(dy, labels, weight_shape, scale=None, out=None):
    n, d = dy.shape[0], weight_shape[1]
    g = dy[:, dy.shape[1] - d:]
    if scale is not None:
        g = g * _rows(scale, n)
    dw = np.empty(weight_shape, dy.dtype) if out is None else out
    dw.fill(0)
    np.add.at(dw, labels, g)  # rows added in order of n
    return dw


@adds_into
def class_projection_forward(h, weight, labels, out=None):
    y = np.einsum("nf,nf->n", weight[labels], h)[:, None].astype(h.dtype, copy=False)
    if out is None:
        return y
    out[...] = y
    return out
