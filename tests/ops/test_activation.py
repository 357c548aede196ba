"""relu, leaky_relu, sigmoid and tanh: the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py), PyTorch CPU as a second oracle, and
every pass on every backend (tests/backends.py)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import FEW, GPU, GPU_DRAWN, SHAPES, judge
from checks import arr, away_from_zero, check, DTYPES, raises, randn
from fastconv import ops
from fastconv.testing import F32_TOL, assert_close
import oracle as ref
from torch_checks import T, check as check_torch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4, 5)])
def test_relu(shape, dtype, rng):
    x = away_from_zero(rng, shape, dtype)
    y = ops.relu_forward(x)
    check(y, ref.relu(x), dtype, "relu_forward", (x,))
    dy = randn(rng, shape, dtype)
    check(ops.relu_backward(dy, y), np.where(ref.relu(x) > 0, ref._f64(dy), 0.0), dtype, "relu_backward", (dy, y))


@pytest.mark.parametrize("slope", [0.01, 0.2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu(slope, dtype, rng):
    x = away_from_zero(rng, (2, 3, 4, 5), dtype)
    y = ops.leaky_relu_forward(x, slope)
    check(y, ref.leaky_relu(x, slope), dtype, "leaky_relu_forward", (x,))
    dy = randn(rng, x.shape, dtype)
    check(ops.leaky_relu_backward(dy, y, slope), np.where(ref._f64(x) > 0, 1.0, slope) * ref._f64(dy), dtype,
          "leaky_relu_backward", (dy, y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_tanh(dtype, rng):
    x = randn(rng, (2, 3, 4, 5), dtype) * 3
    dy = randn(rng, x.shape, dtype)
    s = ops.sigmoid_forward(x)
    check(s, ref.sigmoid(x), dtype, "sigmoid_forward", (x,))
    check(ops.sigmoid_backward(dy, s), ref._f64(dy) * ref.sigmoid(x) * (1 - ref.sigmoid(x)), dtype,
          "sigmoid_backward", (dy, s))
    t = ops.tanh_forward(x)
    check(t, np.tanh(ref._f64(x)), dtype, "tanh_forward", (x,))
    check(ops.tanh_backward(dy, t), ref._f64(dy) * (1 - np.tanh(ref._f64(x)) ** 2), dtype, "tanh_backward",
          (dy, t))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_extreme_inputs_stay_finite(dtype):
    x = np.array([-1000.0, -100.0, -30.0, 0.5, 30.0, 100.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise"):
        s = ops.sigmoid_forward(x)
    assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))
    check(s, ref.sigmoid(np.clip(x, -700, 700)), dtype, "sigmoid_forward(extreme)")


# ---- bad arguments ---------------------------------------------------------------------------

def test_activation_errors():
    with raises(ValueError, "negative_slope: got 1.5", "expected a number in [0, 1)"):
        ops.leaky_relu_forward(arr(3), 1.5)
    with raises(ValueError, "dy: got shape (3,)", "expected (4,)"):
        ops.relu_backward(arr(3), arr(4))
    with raises(TypeError, "x: got dtype int32", "expected float32 or float64"):
        ops.relu_forward(np.arange(4, dtype=np.int32))


# ---- against PyTorch CPU ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_vs_torch(torch, dtype, rng):
    F = torch.nn.functional
    x = randn(rng, (2, 3, 4, 5), dtype) * 2
    x = (x + np.sign(x) * 0.05).astype(dtype)
    dy = randn(rng, x.shape, dtype)
    for name, fwd, bwd, tfn in [
        ("relu", ops.relu_forward, ops.relu_backward, F.relu),
        ("tanh", ops.tanh_forward, ops.tanh_backward, torch.tanh),
        ("sigmoid", ops.sigmoid_forward, ops.sigmoid_backward, torch.sigmoid),
        ("leaky_relu", lambda a: ops.leaky_relu_forward(a, 0.2), lambda d, y: ops.leaky_relu_backward(d, y, 0.2),
         lambda t: F.leaky_relu(t, 0.2)),
    ]:
        tx = T(x, True)
        ty = tfn(tx)
        ty.backward(T(dy))
        y = fwd(x)
        check_torch(y, ty, dtype, f"{name}_forward")
        check_torch(bwd(dy, y), tx.grad, dtype, f"{name}_backward")


# ---- every backend: float32, outputs poisoned -------------------------------------------------

def activations_all_passes(backend, rng, size, offset):
    """Every activation pass of backend on size elements starting offset elements into the buffer."""
    x = randn(rng, (size + offset,), np.float32)
    dy = randn(rng, (size + offset,), np.float32)
    xd, dyd = backend.asarray(x)[offset:], backend.asarray(dy)[offset:]
    x, dy = x[offset:], dy[offset:]
    cases = [("relu", ops.relu_forward, ops.relu_backward, ref.relu(x), ()),
             ("leaky_relu", ops.leaky_relu_forward, ops.leaky_relu_backward, ref.leaky_relu(x, 0.2), (0.2,)),
             ("sigmoid", ops.sigmoid_forward, ops.sigmoid_backward, ref.sigmoid(x), ()),
             ("tanh", ops.tanh_forward, ops.tanh_backward, np.tanh(x.astype(np.float64)), ())]
    for name, fwd, bwd, y_ref, extra in cases:
        y = fwd(xd, *extra)
        assert_close(y, y_ref, F32_TOL, f"{name} forward")
        grad = {"relu": (y_ref > 0) * 1.0, "leaky_relu": np.where(y_ref > 0, 1.0, 0.2),
                "sigmoid": y_ref * (1 - y_ref), "tanh": 1 - y_ref ** 2}[name]
        assert_close(bwd(dyd, y, *extra), dy * grad, F32_TOL, f"{name} backward")


@pytest.mark.parametrize("size,offset", [(1031, 0), (1031, 1), (8, 0), (3, 0)],
                         ids=["aligned-v2", "unaligned-v1", "small", "tail-only"])
def test_activations_backends(backend, rng, size, offset):
    activations_all_passes(backend, rng, size, offset)


@FEW
@given(size=st.integers(1, 700))
def test_activations_drawn(backend, size):
    activations_all_passes(backend, np.random.default_rng(size), size, size % 2)


# ---- GPU: fastconv check's judgement (drawn shapes and the design shapes) ---------------------


@pytest.mark.parametrize("backend", GPU, indirect=True)
@GPU_DRAWN
@given(shape=SHAPES)
def test_activations_gpu_drawn(backend, shape):
    judge("activations", shape, backend.name)


@pytest.mark.parametrize("backend", GPU, indirect=True)
def test_activations_large_unaligned(backend):
    judge("activations", (3, 1000003), backend.name)  # float4 body plus a scalar tail
