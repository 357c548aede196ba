"""Class-conditioning layers and the two class-conditional GAN wrappers built from them.

- ``Embedding``: integer labels (N,) -> learned vectors (N, D).
- ``ClassProjection``: the projection discriminator's class term <embed(label), h> (Miyato &
  Koyama 2018, "cGANs with Projection Discriminator").
- ``ConditionalGenerator``: G(z, y) = body([z, embed(y)]), the label embedding joined to the noise.
- ``ProjectionDiscriminator``: D(x, y) = head(phi(x)) + <embed(y), phi(x)> with phi a feature trunk.

Labels carry no gradient: the backward passes return the gradient w.r.t. the float input only.
Every pass is one of the embedding ops (fastconv.ops.embedding: kernels/embedding.cu on the GPU;
the projection's terms added into the head's logits and input gradient by those kernels, their
``accumulate``), so a training step of these layers can be captured as a CUDA graph; inside a
captured step (a fastconv.arena.Arena) the label values are not checked on the host (that would
read them back): a label outside the classes then gives NaN outputs.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..argcheck import real
from ..backend import array_module
from ..arena import current_arena
from .layers import _positive_int, _rng
from .module import Module


def _check_labels(labels, classes: int, batch: int | None = None, values: bool = True):
    """A clear error unless ``labels`` is an integer (N,) array with values in [0, classes)
    (``values=False``: their values are left to a check that follows, which reads them once)."""
    shape, kind = tuple(getattr(labels, "shape", ())), getattr(getattr(labels, "dtype", None), "kind", None)
    if len(shape) != 1 or kind not in ("i", "u"):
        raise ValueError(f"labels: got {type(labels).__name__} of shape {shape} and dtype "
                         f"{getattr(labels, 'dtype', None)}, expected an integer array (N,)")
    if batch is not None and shape[0] != batch:
        raise ValueError(f"labels: got {shape[0]} labels, expected {batch} (the batch of the input)")
    if values and shape[0] and current_arena() is None and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels: got values in [{int(labels.min())}, {int(labels.max())}], expected class indices "
                         f"in [0, {classes - 1}]")


class Embedding(Module):
    """Label -> vector: ``weight`` (num_embeddings, embedding_dim), PyTorch's layout and N(0, 1) init.

    forward(labels int (N,), prefix=None) -> weight[labels] (N, embedding_dim), after the columns of
    ``prefix`` (N, P) if given; backward(dy (N, P + embedding_dim)) accumulates dweight (the sum of
    dy's last embedding_dim columns by label) and returns None (labels have no gradient).
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

    def forward(self, labels, prefix=None):
        _check_labels(labels, self.num_embeddings)
        array_module(labels, self.weight.data, names=["labels", "weight"])  # same device
        self._labels = labels
        return ops.embedding_forward(self.weight.data, labels, prefix=prefix, kernels=self.kernels)

    def backward(self, dy, input_grad=True):
        labels = self._saved(self._labels, "labels")
        if getattr(dy, "ndim", 0) != 2 or dy.shape[0] != labels.shape[0] or dy.shape[1] < self.embedding_dim:
            raise ValueError(f"dy: got shape {tuple(getattr(dy, 'shape', ()))}, expected ({labels.shape[0]}, "
                             f"P + {self.embedding_dim})")
        if self.weight.requires_grad:
            out, add = self.weight.grad_out()
            self.weight.accumulate(ops.embedding_backward(dy, labels, tuple(self.weight.data.shape), out=out,
                                                          accumulate=add, kernels=self.kernels))
        return None

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class ClassProjection(Module):
    """The class term of a projection discriminator: out (N, 1) = sum_j embed(labels)[:, j] * h[:, j].

    forward(h (N, F), labels (N,)); backward(dy (N, 1)) accumulates the embedding's gradient
    dy * h (summed by label) and returns dh = dy * embed(labels). Both take ``add_to``: an array
    of their result's shape that the result is added into by the op's kernel and returned.
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

    def forward(self, h, labels, add_to=None):
        if getattr(h, "ndim", 0) != 2 or h.shape[1] != self.embed.embedding_dim:
            raise ValueError(f"h: got shape {tuple(getattr(h, 'shape', ()))}, expected (N, "
                             f"{self.embed.embedding_dim})")
        _check_labels(labels, self.embed.num_embeddings, h.shape[0])
        self._cache = (h, labels)
        return ops.class_projection_forward(h, self.embed.weight.data, labels, out=add_to,
                                            accumulate=add_to is not None, kernels=self.kernels)

    def backward(self, dy, input_grad=True, add_to=None):
        h, labels = self._saved(self._cache, "features")
        if tuple(dy.shape) != (h.shape[0], 1):
            raise ValueError(f"dy: got shape {tuple(dy.shape)}, expected ({h.shape[0]}, 1)")
        w = self.embed.weight
        if w.requires_grad:
            out, add = w.grad_out()
            w.accumulate(ops.embedding_backward(h, labels, tuple(w.data.shape), scale=dy, out=out, accumulate=add,
                                                kernels=self.kernels))
        if not input_grad:
            return None
        return ops.embedding_forward(w.data, labels, scale=dy, out=add_to, accumulate=add_to is not None,
                                     kernels=self.kernels)

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
        _check_labels(labels, self.num_classes, z.shape[0], values=False)  # values: by the embedding's forward
        array_module(z, labels, names=["z", "labels"])  # same device
        return self.body.forward(self.embed.forward(labels, prefix=z))  # [z, embed(labels)]

    def output_activation(self):
        return self.body.output_activation()

    def backward(self, dy, input_grad=True, skip_output_activation=False):
        """``skip_output_activation`` as Sequential's: dy is through the body's last activation."""
        # the embedding needs its part of dh
        dh = self.body.backward(dy, input_grad=True, skip_output_activation=skip_output_activation)
        self.embed.backward(dh)  # its last embed_dim columns
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
        return self.project.forward(h, labels, add_to=self.head.forward(h))

    @property
    def takes_input_activation(self):
        return self.trunk.takes_input_activation

    def backward(self, dy, input_grad=True, input_activation=None):
        """``input_activation`` as Sequential's: passed to the trunk, which x goes into."""
        dh = self.project.backward(dy, add_to=self.head.backward(dy, input_grad=True))
        kw = {} if input_activation is None else {"input_activation": input_activation}
        return self.trunk.backward(dh, input_grad=input_grad, **kw)
