"""Class-conditioning layers and the two class-conditional GAN wrappers built from them.

- ``Embedding``: integer labels (N,) -> learned vectors (N, D).
- ``ClassProjection``: the projection discriminator's class term <embed(label), h> (Miyato &
  Koyama 2018, "cGANs with Projection Discriminator").
- ``ConditionalGenerator``: G(z, y) = body([z, embed(y)]), the label embedding joined to the noise.
- ``ProjectionDiscriminator``: D(x, y) = head(phi(x)) + <embed(y), phi(x)> with phi a feature trunk.

Labels carry no gradient: the backward passes return the gradient w.r.t. the float input only.
Weight gradients of the embeddings are (one-hot labels)^T @ dy, computed by the linear
backward-weight op, so they run on the same kernels as Linear on every device.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..argcheck import real
from ..backend import array_module
from .layers import _positive_int, _rng
from .module import Module


def _check_labels(labels, classes: int, batch: int | None = None):
    """A clear error unless ``labels`` is an integer (N,) array with values in [0, classes)."""
    shape, kind = tuple(getattr(labels, "shape", ())), getattr(getattr(labels, "dtype", None), "kind", None)
    if len(shape) != 1 or kind not in ("i", "u"):
        raise ValueError(f"labels: got {type(labels).__name__} of shape {shape} and dtype "
                         f"{getattr(labels, 'dtype', None)}, expected an integer array (N,)")
    if batch is not None and shape[0] != batch:
        raise ValueError(f"labels: got {shape[0]} labels, expected {batch} (the batch of the input)")
    if shape[0] and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels: got values in [{int(labels.min())}, {int(labels.max())}], expected class indices "
                         f"in [0, {classes - 1}]")


def _one_hot(labels, classes: int, dtype):
    xp = array_module(labels)
    out = xp.zeros((labels.shape[0], classes), dtype)
    out[xp.arange(labels.shape[0]), labels] = 1
    return out


class Embedding(Module):
    """Label -> vector: ``weight`` (num_embeddings, embedding_dim), PyTorch's layout and N(0, 1) init.

    forward(labels int (N,)) -> weight[labels] (N, embedding_dim); backward(dy (N, D)) accumulates
    dweight = onehot(labels)^T @ dy and returns None (labels have no gradient).
    """

    def __init__(self, num_embeddings, embedding_dim, rng=None, dtype=np.float32):
        super().__init__()
        self.num_embeddings = _positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = _positive_int(embedding_dim, "embedding_dim")
        self.weight = self.add_parameter(
            "weight", _rng(rng).standard_normal((self.num_embeddings, self.embedding_dim)).astype(dtype))
        self._labels = None

    def _clear_cache(self):
        self._labels = None

    def forward(self, labels):
        _check_labels(labels, self.num_embeddings)
        array_module(labels, self.weight.data, names=["labels", "weight"])  # same device
        self._labels = labels
        return self.weight.data[labels]

    def backward(self, dy, input_grad=True):
        labels = self._saved(self._labels, "labels")
        if tuple(dy.shape) != (labels.shape[0], self.embedding_dim):
            raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected ({labels.shape[0]}, {self.embedding_dim})")
        onehot = _one_hot(labels, self.num_embeddings, dy.dtype)
        dw, _ = ops.linear_backward_weight(onehot, dy, kernels=self.kernels)  # onehot^T @ dy
        self.weight.accumulate(dw)
        return None

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class ClassProjection(Module):
    """The class term of a projection discriminator: out (N, 1) = sum_j embed(labels)[:, j] * h[:, j].

    forward(h (N, F), labels (N,)); backward(dy (N, 1)) accumulates the embedding's gradient
    dy * h (by label) and returns dh = dy * embed(labels).
    """

    def __init__(self, num_classes, features, std=0.02, rng=None, dtype=np.float32):
        super().__init__()
        self.embed = self.add_module("embed", Embedding(num_classes, features, rng=rng, dtype=dtype))
        # N(0, std^2): DCGAN's 0.02 keeps the initial class term as small as the rest of D's logit
        w = self.embed.weight.data
        w *= w.dtype.type(real(std, "std", 0.0, lo_open=True))
        self._cache = None

    def _clear_cache(self):
        self._cache = None

    def forward(self, h, labels):
        if getattr(h, "ndim", 0) != 2 or h.shape[1] != self.embed.embedding_dim:
            raise ValueError(f"h: got shape {tuple(getattr(h, 'shape', ()))}, expected (N, "
                             f"{self.embed.embedding_dim})")
        _check_labels(labels, self.embed.num_embeddings, h.shape[0])
        e = self.embed.forward(labels)
        self._cache = (h, e)
        return (e * h).sum(axis=1, keepdims=True)

    def backward(self, dy, input_grad=True):
        h, e = self._saved(self._cache, "features")
        if tuple(dy.shape) != (h.shape[0], 1):
            raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected ({h.shape[0]}, 1)")
        self.embed.backward(dy * h)
        return dy * e if input_grad else None

    def extra_repr(self):
        return f"num_classes={self.embed.num_embeddings}, features={self.embed.embedding_dim}"


class ConditionalGenerator(Module):
    """G(z, y) = body(concat(z, embed(y))): ``body`` takes nz + embed_dim features.

    forward(z (N, nz), labels (N,)) -> body's output; backward(dy) -> dz (N, nz).
    """

    def __init__(self, body: Module, nz, num_classes, embed_dim, rng=None, dtype=np.float32):
        super().__init__()
        self.nz = _positive_int(nz, "nz")
        self.embed = self.add_module("embed", Embedding(num_classes, embed_dim, rng=rng, dtype=dtype))
        self.body = self.add_module("body", body)

    @property
    def num_classes(self) -> int:
        return self.embed.num_embeddings

    def forward(self, z, labels):
        if getattr(z, "ndim", 0) != 2 or z.shape[1] != self.nz:
            raise ValueError(f"z: got shape {tuple(getattr(z, 'shape', ()))}, expected (N, {self.nz})")
        _check_labels(labels, self.num_classes, z.shape[0])
        xp = array_module(z, labels, names=["z", "labels"])
        return self.body.forward(xp.concatenate([z, self.embed.forward(labels)], axis=1))

    def backward(self, dy, input_grad=True):
        dh = self.body.backward(dy, input_grad=True)  # the embedding needs its part of dh
        self.embed.backward(dh[:, self.nz:])
        return dh[:, :self.nz] if input_grad else None


class ProjectionDiscriminator(Module):
    """D(x, y) = head(trunk(x)) + <embed(y), trunk(x)>: one logit per image (N, 1).

    ``trunk`` maps images to features (N, F); ``head`` is a Linear F -> 1. backward(dlogits)
    returns d images.
    """

    def __init__(self, trunk: Module, head: Module, features, num_classes, rng=None, dtype=np.float32):
        super().__init__()
        self.trunk = self.add_module("trunk", trunk)
        self.head = self.add_module("head", head)
        self.project = self.add_module("project", ClassProjection(num_classes, features, rng=rng, dtype=dtype))

    @property
    def num_classes(self) -> int:
        return self.project.embed.num_embeddings

    def forward(self, x, labels):
        h = self.trunk.forward(x)
        return self.head.forward(h) + self.project.forward(h, labels)

    def backward(self, dy, input_grad=True):
        dh = self.head.backward(dy, input_grad=True) + self.project.backward(dy)
        return self.trunk.backward(dh, input_grad=input_grad)
