"""dropout (the documented hash mask, forward and backward): the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py)."""

import numpy as np
import pytest

import oracle as ref
from fastconv import ops
from checks import arr, check, DTYPES, raises, randn


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p,seed", [(0.5, 0), (0.1, 1), (0.9, 12345), (0.3, 2 ** 32 - 1), (0.0, 7)])
def test_dropout_mask_is_the_documented_hash(p, seed, dtype, rng):
    x = randn(rng, (3, 4, 5, 6), dtype)
    y, mask = ops.dropout_forward(x, p, seed)
    want = ref.dropout_mask(x.size, p, seed).reshape(x.shape)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, want)
    check(y, ref._f64(x) * want / (1 - p), dtype, "dropout_forward", (x,))
    dy = randn(rng, x.shape, dtype)
    check(ops.dropout_backward(dy, mask, p), ref._f64(dy) * want / (1 - p), dtype, "dropout_backward", (dy,))


def test_dropout_keep_rate_and_seed_dependence(rng):
    x = np.ones((64, 1000), dtype=np.float32)
    _, m0 = ops.dropout_forward(x, 0.3, 0)
    _, m1 = ops.dropout_forward(x, 0.3, 1)
    assert abs(m0.mean() - 0.7) < 0.01
    assert (m0 != m1).mean() > 0.3  # different seeds give (mostly) different masks
    np.testing.assert_array_equal(m0, ops.dropout_forward(x, 0.3, 0)[1])  # and the same seed the same one


# ---- bad arguments ---------------------------------------------------------------------------

def test_dropout_errors():
    for p in (1.0, -0.1, 2):
        with raises(ValueError, f"p: got {p!r}", "expected a probability in [0, 1)"):
            ops.dropout_forward(arr(5), p, 0)
    with raises(TypeError, "mask: got dtype bool", "expected uint8"):
        ops.dropout_backward(arr(5), np.ones(5, bool), 0.5)
