"""dropout (the documented hash mask, forward and backward): the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py), and both passes on every backend
(tests/backends.py)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import FEW, GPU, GPU_DRAWN, SHAPES, judge
from checks import arr, check, DTYPES, raises, randn
from fastconv import ops
from fastconv.testing import F32_TOL, assert_close
import oracle as ref


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


def test_dropout_call_counter(rng):
    """With a call counter the mask is the seed + count one (mod 2**32) and the count advances."""
    x = randn(rng, (40,), np.float32)
    calls = np.array([2 ** 32 - 2, 0], np.uint32)
    for k in (2 ** 32 - 2, 2 ** 32 - 1, 0):
        np.testing.assert_array_equal(ops.dropout_forward(x, 0.5, 9, calls)[1], ref.dropout_mask(40, 0.5, (9 + k) % 2 ** 32))
    assert calls.tolist() == [1, 0]
    with raises(ValueError, "calls: got int32 (2,)", "uint32 counter of shape (2,)"):
        ops.dropout_forward(x, 0.5, 9, np.zeros(2, np.int32))


# ---- bad arguments ---------------------------------------------------------------------------

def test_dropout_errors():
    for p in (1.0, -0.1, 2):
        with raises(ValueError, f"p: got {p!r}", "expected a probability in [0, 1)"):
            ops.dropout_forward(arr(5), p, 0)
    with raises(TypeError, "mask: got dtype bool", "expected uint8"):
        ops.dropout_backward(arr(5), np.ones(5, bool), 0.5)


# ---- every backend: float32, outputs poisoned -------------------------------------------------


def dropout_all_passes(backend, rng, size, p, seed):
    """The mask of every backend is the CPU's and the oracle's (the documented hash), bit for bit."""
    x = randn(rng, (size,), np.float32)
    y, mask = ops.dropout_forward(backend.asarray(x), p, seed)
    y_cpu, mask_cpu = ops.dropout_forward(x, p, seed)
    assert np.array_equal(backend.get(mask), mask_cpu), "dropout mask differs from the CPU's"
    assert np.array_equal(backend.get(mask), ref.dropout_mask(size, p, seed)), "dropout mask differs from the oracle"
    keep = ref.dropout_mask(size, p, seed).astype(np.float64)
    assert_close(y, x * keep / (1 - p), F32_TOL, "dropout forward")
    dy = randn(rng, (size,), np.float32)
    assert_close(ops.dropout_backward(backend.asarray(dy), mask, p), dy * keep / (1 - p), F32_TOL, "dropout backward")

@FEW
@given(size=st.integers(1, 700), p=st.floats(0.05, 0.95))
def test_dropout_drawn(backend, size, p):
    dropout_all_passes(backend, np.random.default_rng(size), size, p, size * 7919)


@pytest.mark.parametrize("size,p,seed", [(1000, 0.5, 7), (37, 0.1, 2**32 + 5), (300, 0.9, 0)])
def test_dropout_masks_equal_the_cpu(backend, rng, size, p, seed):
    dropout_all_passes(backend, rng, size, p, seed)


# ---- GPU: fastconv check's judgement of drawn shapes ------------------------------------------


@pytest.mark.parametrize("backend", GPU, indirect=True)
@GPU_DRAWN
@given(shape=SHAPES)
def test_dropout_gpu_drawn(backend, shape):
    judge("dropout", shape, backend.name)


@pytest.mark.parametrize("act,slope", ref.FUSED)
def test_dropout_backward_through_activation_output(backend, rng, act, slope):
    """dropout_backward with activation_output (the dropout's input, an activation's outputs) returns
    the gradient w.r.t. the activation's input, in the dropout kernel on the GPU families (no
    activation kernel), against the float64 oracle at the activation's input z."""
    from fastconv import emu
    z = randn(rng, (5, 37), np.float32)
    y = ref.activation(act, z, slope).astype(np.float32)
    dy, p = randn(rng, z.shape, np.float32), 0.4
    mask = ref.dropout_mask(z.size, p, 9).reshape(z.shape)
    with emu.trace() as t:
        dx = ops.dropout_backward(backend.asarray(dy), backend.asarray(mask), p, activation=act, negative_slope=slope,
                                  activation_output=backend.asarray(y), kernels=backend.kernels)
    assert_close(dx, ref.activation_backward(act, ref._f64(dy) * mask / (1 - p), z, slope), F32_TOL,
                 f"dropout_backward through {act}")
    if backend.name == "emu":
        assert t.launch_names == ["dropout_backward_v1"], t.launch_names
    with raises(ValueError, "activation: got None with an activation_output"):
        ops.dropout_backward(backend.asarray(dy), backend.asarray(mask), p, activation_output=backend.asarray(y))
