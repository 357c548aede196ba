"""batchnorm (forward in training and eval, backward): the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py), the BatchNorm layers against PyTorch CPU,
and both passes on every backend (tests/backends.py)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import FEW, GPU, GPU_DRAWN, judge
from checks import arr, check, check_out, DTYPES, out_view, raises, randn
from fastconv import ops
import fastconv.nn as nn
from fastconv.testing import REDUCTION_TOL, assert_close
import oracle as ref
from torch_checks import T, check as check_torch


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4, 3)], ids=["1d", "2d"])
def test_batchnorm(shape, dtype, training, rng):
    c = shape[1]
    x = (randn(rng, shape, dtype) * 2 + 1.5).astype(dtype)
    gamma, beta = randn(rng, (c,), dtype), randn(rng, (c,), dtype)
    rm = randn(rng, (c,), dtype)
    rv = (rng.random(c) + 0.5).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, invstd = ops.batchnorm_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5)
    y_ref, rm_ref, rv_ref = ref.batchnorm_forward(x, gamma, beta, rm0, rv0, training, 0.1, 1e-5)
    check(y, y_ref, dtype, f"batchnorm_forward(train={training})", (x, gamma, beta, rm, rv))
    check(rm, rm_ref, dtype, f"batchnorm running_mean(train={training})")
    check(rv, rv_ref, dtype, f"batchnorm running_var(train={training})")
    if not training:
        np.testing.assert_array_equal(rm, rm0)
        np.testing.assert_array_equal(rv, rv0)
    dy = randn(rng, shape, dtype)
    dx, dgamma, dbeta = ops.batchnorm_backward(dy, x, gamma, mean, invstd, training)
    dx_ref, dg_ref, db_ref = ref.batchnorm_backward(dy, x, gamma, training, rm0, rv0)
    check(dx, dx_ref, dtype, f"batchnorm_backward dx(train={training})", (dy, x))
    check(dgamma, dg_ref, dtype, f"batchnorm_backward dgamma(train={training})")
    check(dbeta, db_ref, dtype, f"batchnorm_backward dbeta(train={training})")


# ---- bad arguments ---------------------------------------------------------------------------

def test_batchnorm_errors():
    x = arr(4, 3, 2, 2)
    ones = np.ones(3, np.float32)
    with raises(ValueError, "gamma: got shape (2,)", "expected (3,)"):
        ops.batchnorm_forward(x, np.ones(2, np.float32), ones, ones, ones, True)
    with raises(ValueError, "x: got shape (1, 3)", "expected more than 1 value per channel"):
        ops.batchnorm_forward(arr(1, 3), ones, ones, ones, ones, True)
    with raises(ValueError, "x: got an array of shape (4, 3, 2) (3-d)", "expected 2 or 4-d"):
        ops.batchnorm_forward(arr(4, 3, 2), ones, ones, ones, ones, True)
    with raises(ValueError, "out[0]: got shape (4,)", "expected (3,)"):
        ops.batchnorm_backward(x, x, ones, ones, ones, out=(np.zeros(4, np.float32), None))
    with raises(ValueError, "out[1]: got a non-contiguous array", "expected a C-contiguous one"):
        ops.batchnorm_backward(x, x, ones, ones, ones, out=(None, np.zeros(6, np.float32)[::2]))


def test_batchnorm_backward_checks_its_statistics():
    x, dy = arr(4, 3, 2, 2), arr(4, 3, 2, 2)
    g, m, s = arr(3), arr(3), np.abs(arr(3)) + 0.5
    with raises(ValueError, "gamma: got shape (4,)", "expected (3,)"):
        ops.batchnorm_backward(dy, x, arr(4), m, s)
    with raises(TypeError, "mean: got dtype float64", "expected float32"):
        ops.batchnorm_backward(dy, x, g, m.astype(np.float64), s)
    with raises(ValueError, "invstd: got an array of shape (3, 1)", "expected 1-d"):
        ops.batchnorm_backward(dy, x, g, m, s.reshape(3, 1))


# ---- against PyTorch CPU ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_batchnorm_layer_vs_torch(torch, kind, dtype, rng):
    """Several training steps (running stats included), then eval mode, forward and backward."""
    c = 3
    shape = (6, c) if kind == "1d" else (4, c, 3, 5)
    layer = (nn.BatchNorm1d if kind == "1d" else nn.BatchNorm2d)(c, eps=1e-5, momentum=0.2).astype(dtype)
    tl = (torch.nn.BatchNorm1d if kind == "1d" else torch.nn.BatchNorm2d)(c, eps=1e-5, momentum=0.2).double()
    gamma, beta = randn(rng, (c,), dtype), randn(rng, (c,), dtype)
    layer.weight.data[...] = gamma
    layer.bias.data[...] = beta
    with torch.no_grad():
        tl.weight.copy_(T(gamma))
        tl.bias.copy_(T(beta))
    for step in range(3):
        for mode in ("train", "eval") if step == 2 else ("train",):
            layer.train(mode == "train")
            tl.train(mode == "train")
            x = (randn(rng, shape, dtype) * 1.7 + 0.8).astype(dtype)
            tx = T(x, True)
            ty = tl(tx)
            layer.zero_grad()
            tl.zero_grad()
            y = layer.forward(x)
            check_torch(y, ty, dtype, f"BatchNorm{kind} forward ({mode})")
            dy = randn(rng, shape, dtype)
            ty.backward(T(dy))
            check_torch(layer.backward(dy), tx.grad, dtype, f"BatchNorm{kind} dx ({mode})")
            check_torch(layer.weight.grad, tl.weight.grad, dtype, f"BatchNorm{kind} dgamma ({mode})")
            check_torch(layer.bias.grad, tl.bias.grad, dtype, f"BatchNorm{kind} dbeta ({mode})")
            check_torch(layer.buffer("running_mean"), tl.running_mean, dtype, f"BatchNorm{kind} running_mean")
            check_torch(layer.buffer("running_var"), tl.running_var, dtype, f"BatchNorm{kind} running_var")


# ---- every backend: float32, outputs poisoned -------------------------------------------------


def batchnorm_all_passes(backend, rng, shape, training):
    """Forward (training or eval, running statistics) and backward of backend on x of shape."""
    x = randn(rng, shape, np.float32) * 2 + 0.5
    c = shape[1]
    gamma, beta = randn(rng, (c,), np.float32), randn(rng, (c,), np.float32)
    rm, rv = randn(rng, (c,), np.float32) * 0.1, np.abs(randn(rng, (c,), np.float32)) + 0.5
    rmd, rvd = backend.asarray(rm), backend.asarray(rv)
    y, mean, invstd = ops.batchnorm_forward(backend.asarray(x), backend.asarray(gamma), backend.asarray(beta), rmd, rvd,
                                            training, momentum=0.1, eps=1e-5)
    y_ref, rm_ref, rv_ref = ref.batchnorm_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5)
    assert_close(y, y_ref, REDUCTION_TOL, "forward")
    assert_close(rmd, rm_ref, REDUCTION_TOL, "running_mean")
    assert_close(rvd, rv_ref, REDUCTION_TOL, "running_var")
    dy = randn(rng, shape, np.float32)
    dx, dg, db = ops.batchnorm_backward(backend.asarray(dy), backend.asarray(x), backend.asarray(gamma), mean, invstd,
                                        training)
    dx_ref, dg_ref, db_ref = ref.batchnorm_backward(dy, x, gamma, training, rm, rv, 1e-5)
    assert_close(dx, dx_ref, REDUCTION_TOL, "dx")
    assert_close(dg, dg_ref, REDUCTION_TOL, "dgamma")
    assert_close(db, db_ref, REDUCTION_TOL, "dbeta")
    (og, g_untouched), (ob, b_untouched) = out_view(backend, (c,)), out_view(backend, (c,), offset=2)
    dx, dg, db = ops.batchnorm_backward(backend.asarray(dy), backend.asarray(x), backend.asarray(gamma), mean, invstd,
                                        training, out=(og, ob))
    assert_close(dx, dx_ref, REDUCTION_TOL, "dx (out given)")
    check_out(dg, og, g_untouched, dg_ref, REDUCTION_TOL, "batchnorm_backward dgamma")
    check_out(db, ob, b_untouched, db_ref, REDUCTION_TOL, "batchnorm_backward dbeta")


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5, 7), (2, 70, 3, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_backends(backend, rng, shape, training):
    batchnorm_all_passes(backend, rng, shape, training)


@pytest.mark.parametrize("activation,slope", ref.FUSED, ids=[a for a, _ in ref.FUSED])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5, 8)], ids=["1d", "2d-f4"])
def test_batchnorm_fused_activation(backend, rng, shape, training, activation, slope):
    """y = act(batchnorm(x)) and its backward, which recomputes act's input from x and beta: against
    the float64 oracle, and equal bit for bit to the unfused ops (batchnorm, then the activation's own
    op) on the CPU and on the CPU execution layer."""
    x = randn(rng, shape, np.float32) * 2 + 0.5
    c = shape[1]
    gamma, beta = randn(rng, (c,), np.float32), randn(rng, (c,), np.float32)
    rm, rv = randn(rng, (c,), np.float32) * 0.1, np.abs(randn(rng, (c,), np.float32)) + 0.5
    dy = randn(rng, shape, np.float32)
    xd, gd, bd, dyd = (backend.asarray(a) for a in (x, gamma, beta, dy))
    act = {"negative_slope": slope} if activation == "leaky_relu" else {}
    rmd, rvd = backend.asarray(rm), backend.asarray(rv)
    y, mean, invstd = ops.batchnorm_forward(xd, gd, bd, rmd, rvd, training, activation=activation, **act)
    z_ref, rm_ref, rv_ref = ref.batchnorm_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5)
    assert_close(y, ref.activation(activation, z_ref, slope), REDUCTION_TOL, "forward")
    assert_close(rmd, rm_ref, REDUCTION_TOL, "running_mean")
    assert_close(rvd, rv_ref, REDUCTION_TOL, "running_var")
    fused = ops.batchnorm_backward(dyd, xd, gd, mean, invstd, training, beta=bd, activation=activation, **act)
    dz = ref.activation_backward(activation, dy, z_ref, slope)
    for got, want, name in zip(fused, ref.batchnorm_backward(dz, x, gamma, training, rm, rv, 1e-5),
                               ("dx", "dgamma", "dbeta")):
        assert_close(got, want, REDUCTION_TOL, name)
    z, m2, s2 = ops.batchnorm_forward(xd, gd, bd, backend.asarray(rm), backend.asarray(rv), training)
    y2 = getattr(ops, f"{activation}_forward")(z, *act.values())
    unfused = ops.batchnorm_backward(getattr(ops, f"{activation}_backward")(dyd, y2, *act.values()), xd, gd, m2, s2,
                                     training)
    if backend.name in ("cpu", "emu"):
        for got, want, name in zip((y,) + tuple(fused), (y2,) + tuple(unfused), ("y", "dx", "dgamma", "dbeta")):
            np.testing.assert_array_equal(backend.get(got), backend.get(want), err_msg=name)


def test_batchnorm_fused_activation_errors():
    x, ones = arr(4, 3, 2, 2), np.ones(3, np.float32)
    with raises(ValueError, "activation: got 'sigmoid'", "expected one of (None, 'relu', 'leaky_relu', 'tanh')"):
        ops.batchnorm_forward(x, ones, ones, ones, ones, True, activation="sigmoid")
    with raises(ValueError, "negative_slope: got 1.5"):
        ops.batchnorm_forward(x, ones, ones, ones, ones, True, activation="leaky_relu", negative_slope=1.5)
    with raises(ValueError, "beta: got None with activation='relu'", "expected the forward's beta"):
        ops.batchnorm_backward(x, x, ones, ones, ones, activation="relu")
    with raises(ValueError, "beta: got shape (2,)", "expected (3,)"):
        ops.batchnorm_backward(x, x, ones, ones, ones, beta=np.ones(2, np.float32), activation="relu")

@FEW
@given(c=st.integers(1, 9), hw=st.integers(1, 12))
def test_batchnorm_drawn(backend, c, hw):
    # N*H*W >= 4: with 2 samples dx is exactly 0 (all rounding)
    batchnorm_all_passes(backend, np.random.default_rng(c * 13 + hw), (4, c, 1, hw), True)


# ---- GPU: fastconv check's judgement (drawn shapes and the design shapes) ---------------------


@pytest.mark.parametrize("backend", GPU, indirect=True)
@GPU_DRAWN
@given(shape=st.one_of(st.tuples(st.integers(2, 130), st.integers(1, 70)),
                       st.tuples(st.integers(1, 9), st.integers(1, 20), st.integers(1, 15), st.integers(1, 15))))
def test_batchnorm_gpu_drawn(backend, shape):
    # at least 4 values per channel: with 2, xhat = +-d/sqrt(d^2 + eps) and the training dx is
    # O(eps/var), a cancellation that no float32 kernel (nor the CPU path) resolves to 1e-4
    if np.prod(shape) // shape[1] < 4:
        shape = (4,) + tuple(shape[1:])
    judge("batchnorm", shape, backend.name)


@pytest.mark.parametrize("backend", GPU, indirect=True)
def test_batchnorm_design_shapes(backend):
    judge("batchnorm", (128, 6272), backend.name)
    judge("batchnorm", (128, 64, 14, 14), backend.name)
