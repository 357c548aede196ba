"""softmax_cross_entropy and bce_with_logits: the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py)."""

import numpy as np
import pytest

import oracle as ref
from fastconv import ops
from checks import arr, check, DTYPES, raises, randn


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_softmax_cross_entropy(scale, dtype, label_dtype, rng):
    z = (randn(rng, (7, 5), dtype) * scale).astype(dtype)
    labels = rng.integers(0, 5, 7).astype(label_dtype)
    loss, d = ops.softmax_cross_entropy(z, labels)
    want_loss, want_d = ref.softmax_cross_entropy(z, labels)
    assert loss.shape == () and loss.dtype == np.dtype(dtype)
    check(np.asarray(loss).reshape(1), np.array([want_loss]), dtype, "softmax_cross_entropy loss")
    check(d, want_d, dtype, "softmax_cross_entropy dlogits", (z,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,scale", [((8, 1), 1.0), ((4, 6), 3.0), ((2, 3, 4, 5), 1.0), ((9,), 200.0)])
def test_bce_with_logits(shape, scale, dtype, rng):
    z = (randn(rng, shape, dtype) * scale).astype(dtype)
    t = rng.random(shape).astype(dtype)
    loss, d = ops.bce_with_logits(z, t)
    want_loss, want_d = ref.bce_with_logits(z, t)
    assert loss.shape == () and loss.dtype == np.dtype(dtype)
    check(np.asarray(loss).reshape(1), np.array([want_loss]), dtype, "bce_with_logits loss")
    check(d, want_d, dtype, "bce_with_logits dlogits", (z, t))


# ---- bad arguments ---------------------------------------------------------------------------

def test_loss_errors():
    z = arr(4, 3)
    with raises(TypeError, "labels: got float32", "expected a 1-d integer array"):
        ops.softmax_cross_entropy(z, np.zeros(4, np.float32))
    with raises(ValueError, "labels: got values in [0, 3]", "expected [0, 3)"):
        ops.softmax_cross_entropy(z, np.array([0, 1, 2, 3]))
    with raises(ValueError, "labels: got 3 labels", "expected 4"):
        ops.softmax_cross_entropy(z, np.array([0, 1, 2]))
    with raises(ValueError, "targets: got shape (4, 2)", "expected (4, 3)"):
        ops.bce_with_logits(z, arr(4, 2))
