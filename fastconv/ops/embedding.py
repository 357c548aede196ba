"""Label embeddings for the class-conditional GAN (fastconv.nn.conditional): a table's rows picked
by integer labels, their gradient summed by label, and the projection discriminator's class term.

Labels are an integer (N,) array with values in [0, C); on the CPU other values are an error, on
the GPU (where checking them would read them back to the host) they give NaN outputs."""

from __future__ import annotations

from ..argcheck import accumulate_flags, array, class_labels, out_array, same_device, same_dtype
from ..backend import op
from ..plan import planned


def _rows(a, name: str, n: int, ref, ref_name: str, scale: bool = False):
    """An optional per-row array: a prefix (N, P), or a scale (N,) / (N, 1); of ref's dtype."""
    if a is None:
        return
    array(a, name, (1, 2) if scale else 2)
    if a.shape[0] != n or (scale and a.size != n):
        want = f"({n},) or ({n}, 1)" if scale else f"({n}, P)"
        raise ValueError(f"{name}: got shape {tuple(a.shape)}, expected {want}")
    same_dtype(ref, ref_name, (a, name))


@planned
def embedding_forward(weight, labels, *, prefix=None, scale=None, out=None, accumulate=False, kernels=None):
    """out (N, P + D): out[n, :P] = prefix[n] (prefix (N, P) optional), out[n, P:] = scale[n] *
    weight[labels[n]] (weight (C, D); scale (N,) or (N, 1) optional, else 1); written into ``out``
    when given (C-contiguous, weight's dtype and device), added into it with ``accumulate``."""
    array(weight, "weight", 2)
    xp = same_device(weight=weight, labels=labels, **({} if prefix is None else {"prefix": prefix}),
                     **({} if scale is None else {"scale": scale}))
    class_labels(labels, weight.shape[0], None, xp)
    n = labels.shape[0]
    _rows(prefix, "prefix", n, weight, "weight")
    _rows(scale, "scale", n, weight, "weight", scale=True)
    out = out_array(out, "out", (n, weight.shape[1] + (0 if prefix is None else prefix.shape[1])), weight, "weight")
    return op("embedding_forward", weight, kernels=kernels)(weight, labels, prefix, scale, out=out,
                                                         accumulate=accumulate_flags(accumulate, out))


@planned
def embedding_backward(dy, labels, weight_shape, *, scale=None, out=None, accumulate=False, kernels=None):
    """dweight (C, D) = weight_shape: dweight[c] = sum over n with labels[n] == c of scale[n] *
    dy[n, K - D:] (the last D of dy's K >= D columns; scale (N,) or (N, 1) optional, else 1);
    written into ``out`` (C-contiguous, dy's dtype and device) when given, added into it with
    ``accumulate``."""
    array(dy, "dy", 2)
    xp = same_device(dy=dy, labels=labels, **({} if scale is None else {"scale": scale}))
    if not (isinstance(weight_shape, tuple) and len(weight_shape) == 2 and all(
            isinstance(v, int) and v > 0 for v in weight_shape)) or weight_shape[1] > dy.shape[1]:
        raise ValueError(f"weight_shape: got {weight_shape!r}, expected a tuple (C, D) of positive ints with "
                         f"D <= {dy.shape[1]} (the columns of dy)")
    class_labels(labels, weight_shape[0], dy.shape[0], xp)
    _rows(scale, "scale", dy.shape[0], dy, "dy", scale=True)
    out = out_array(out, "out", weight_shape, dy, "dy")
    return op("embedding_backward", dy, kernels=kernels)(dy, labels, weight_shape, scale, out=out,
                                                          accumulate=accumulate_flags(accumulate, out))


@planned
def class_projection_forward(h, weight, labels, *, out=None, accumulate=False, kernels=None):
    """out (N, 1): out[n] = sum_j weight[labels[n], j] * h[n, j] (h (N, F), weight (C, F)); written
    into ``out`` when given (C-contiguous, h's dtype and device), added into it with ``accumulate``
    (the projection discriminator adds it to its head's logits)."""
    array(h, "h", 2)
    array(weight, "weight", 2)
    xp = same_device(h=h, weight=weight, labels=labels)
    same_dtype(h, "h", (weight, "weight"))
    if weight.shape[1] != h.shape[1]:
        raise ValueError(f"weight: got shape {tuple(weight.shape)}, expected (C, {h.shape[1]}) (the columns of h)")
    class_labels(labels, weight.shape[0], h.shape[0], xp)
    out = out_array(out, "out", (h.shape[0], 1), h, "h")
    return op("class_projection_forward", h, kernels=kernels)(h, weight, labels, out=out,
                                                             accumulate=accumulate_flags(accumulate, out))
