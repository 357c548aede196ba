"""embedding_forward, embedding_backward and class_projection_forward (the class-conditional
GAN's label ops): the CPU path in float32 and float64 and every backend (tests/backends.py:
outputs NaN-poisoned) against float64 loops, a label outside the classes (an error on the CPU,
NaN rows on the GPU), and bad arguments."""

import numpy as np
import pytest

from checks import DTYPES, arr, check_out, out_view, raises, randn
from fastconv import ops
from fastconv.testing import F32_TOL, REDUCTION_TOL, assert_close

TOL = {np.float32: F32_TOL, np.float64: 1e-12}


def _forward_loops(weight, labels, prefix, scale):
    n, d = len(labels), weight.shape[1]
    p = 0 if prefix is None else prefix.shape[1]
    out = np.zeros((n, p + d))
    for i in range(n):
        for j in range(p):
            out[i, j] = prefix[i, j]
        for j in range(d):
            out[i, p + j] = (1.0 if scale is None else float(scale.ravel()[i])) * float(weight[labels[i], j])
    return out


def _backward_loops(dy, labels, shape, scale):
    dw = np.zeros(shape)
    k = dy.shape[1]
    for i in range(len(labels)):
        for j in range(shape[1]):
            dw[labels[i], j] += (1.0 if scale is None else float(scale.ravel()[i])) * float(dy[i, k - shape[1] + j])
    return dw


def _projection_loops(h, weight, labels):
    out = np.zeros((len(labels), 1))
    for i in range(len(labels)):
        for j in range(h.shape[1]):
            out[i, 0] += float(weight[labels[i], j]) * float(h[i, j])
    return out


def embedding_all_passes(xp, rng, n, classes, d, p, dtype=np.float32, tol=F32_TOL):
    """Every op of the family on arrays of module xp (numpy or a cupy), against the loops."""
    weight, h = randn(rng, (classes, d), dtype), randn(rng, (n, d), dtype)
    labels = rng.integers(0, classes, n)
    labels[0] = classes - 1                                   # both ends of the table
    prefix = randn(rng, (n, p), dtype) if p else None
    scale, dy = randn(rng, (n, 1), dtype), randn(rng, (n, p + d), dtype)
    g = (lambda a: None if a is None else xp.asarray(a))
    sums_tol = REDUCTION_TOL if dtype == np.float32 else tol     # float32 sums over the batch or features
    for sc in (None, scale):
        assert_close(ops.embedding_forward(g(weight), g(labels.astype(np.int32)), prefix=g(prefix), scale=g(sc)),
                     _forward_loops(weight, labels, prefix, sc), tol, "embedding_forward")
        assert_close(ops.embedding_backward(g(dy), g(labels), (classes, d), scale=g(sc)),
                     _backward_loops(dy, labels, (classes, d), sc), sums_tol, "embedding_backward")
    assert_close(ops.class_projection_forward(g(h), g(weight), g(labels)), _projection_loops(h, weight, labels),
                 sums_tol, "class_projection_forward")


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_cpu(rng, dtype):
    embedding_all_passes(np, rng, 9, 4, 5, 3, dtype, TOL[dtype])


@pytest.mark.parametrize("n,classes,d,p", [(7, 10, 6, 0), (40, 3, 70, 5)])
def test_embedding_backends(backend, rng, n, classes, d, p):
    embedding_all_passes(backend.xp, rng, n, classes, d, p)


def test_embedding_backward_into_out(backend, rng):
    """dweight written into a NaN-poisoned view (not 16-byte aligned), a class no label names
    among its rows (zeros), with and without scale, against the loops."""
    dy, scale = randn(rng, (6, 5), np.float32), randn(rng, (6, 1), np.float32)
    labels = np.array([0, 3, 1, 3, 0, 1])       # class 2 absent
    for sc in (None, scale):
        out, untouched = out_view(backend, (4, 3))
        got = ops.embedding_backward(backend.asarray(dy), backend.asarray(labels), (4, 3),
                                     scale=None if sc is None else backend.asarray(sc), out=out, kernels=backend.kernels)
        check_out(got, out, untouched, _backward_loops(dy, labels, (4, 3), sc), REDUCTION_TOL, "embedding_backward")


def test_embedding_bad_label_values(backend, rng):
    weight, labels = randn(rng, (3, 4), np.float32), np.array([0, 3, 1])
    if backend.xp is np:
        with raises(ValueError, "labels: got values in [0, 3]", "expected [0, 3)"):
            ops.embedding_forward(weight, labels)
        return
    out = ops.embedding_forward(backend.asarray(weight), backend.asarray(labels)).get()
    proj = ops.class_projection_forward(backend.asarray(randn(rng, (3, 4), np.float32)), backend.asarray(weight),
                                        backend.asarray(labels)).get()
    assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()
    assert np.isnan(proj[1]).all() and not np.isnan(proj[[0, 2]]).any()


def test_embedding_errors():
    w, labels = arr(4, 3), np.array([0, 1])
    with raises(TypeError, "labels: got float32", "expected a 1-d integer array"):
        ops.embedding_forward(w, np.zeros(2, np.float32))
    with raises(ValueError, "prefix: got shape (3, 2), expected (2, P)"):
        ops.embedding_forward(w, labels, prefix=arr(3, 2))
    with raises(ValueError, "scale: got shape (2, 2), expected (2,) or (2, 1)"):
        ops.embedding_forward(w, labels, scale=arr(2, 2))
    with raises(TypeError, "prefix: got dtype float64, expected float32 (the dtype of weight)"):
        ops.embedding_forward(w, labels, prefix=arr(2, 2, dtype=np.float64))
    with raises(ValueError, "weight_shape: got (4, 5), expected a tuple (C, D) of positive ints with D <= 3"):
        ops.embedding_backward(arr(2, 3), labels, (4, 5))
    with raises(ValueError, "labels: got 2 labels, expected 3"):
        ops.embedding_backward(arr(3, 3), labels, (4, 3))
    with raises(ValueError, "out: got shape (3, 4), expected (4, 3)"):
        ops.embedding_backward(arr(2, 3), labels, (4, 3), out=arr(3, 4))
    with raises(ValueError, "weight: got shape (4, 3), expected (C, 5) (the columns of h)"):
        ops.class_projection_forward(arr(2, 5), w, labels)
