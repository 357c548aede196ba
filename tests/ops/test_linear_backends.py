"""linear on every backend (tests/backends.py) and against PyTorch CPU; the CPU path against the loop
oracle and the argument errors are in test_linear.py."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv
import oracle as ref
from backends import DEVICES, GPU, GPU_DRAWN, judge
from checks import DTYPES, check_out, out_view, randn
from fastconv import ops
from fastconv.testing import F32_TOL, REDUCTION_TOL, assert_close
from torch_checks import T, check as check_torch


# ---- against PyTorch CPU ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_vs_torch(torch, dtype, rng):
    F = torch.nn.functional
    x, w, b = randn(rng, (8, 20), dtype), randn(rng, (7, 20), dtype), randn(rng, (7,), dtype)
    tx, tw, tb = T(x, True), T(w, True), T(b, True)
    ty = F.linear(tx, tw, tb)
    check_torch(ops.linear_forward(x, w, b), ty, dtype, "linear_forward")
    dy = randn(rng, (8, 7), dtype)
    ty.backward(T(dy))
    check_torch(ops.linear_backward_data(dy, w), tx.grad, dtype, "linear_backward_data")
    dw, db = ops.linear_backward_weight(dy, x)
    check_torch(dw, tw.grad, dtype, "linear_backward_weight")
    check_torch(db, tb.grad, dtype, "linear_backward_bias")


# ---- every backend: float32, outputs poisoned -------------------------------------------------

def test_linear_backends(backend, rng):
    x, w, b = randn(rng, (4, 7), np.float32), randn(rng, (3, 7), np.float32), randn(rng, (3,), np.float32)
    y = ops.linear_forward(backend.asarray(x), backend.asarray(w), backend.asarray(b))
    assert_close(y, ref.linear_forward(x, w, b), F32_TOL, "linear forward")


@pytest.mark.parametrize("which", ["both", "dw", "db"])
def test_linear_backward_weight_into_out(backend, rng, which):
    """out=(dw, db), (dw, None) and (None, db): NaN-poisoned views one element into larger buffers
    (not 16-byte aligned) get the gradients, the other is allocated; against float64 products."""
    dy, x = randn(rng, (9, 5), np.float32), randn(rng, (9, 7), np.float32)
    want = (dy.astype(np.float64).T @ x, dy.astype(np.float64).sum(axis=0))
    views = [out_view(backend, shape) if which in ("both", name) else (None, None)
             for name, shape in (("dw", (5, 7)), ("db", (5,)))]
    got = ops.linear_backward_weight(backend.asarray(dy), backend.asarray(x), out=tuple(v for v, _ in views),
                                     kernels=backend.kernels)
    for (out, untouched), g, w, key in zip(views, got, want, ("linear_backward_weight", "linear_backward_bias")):
        if out is None:
            assert_close(g, w, REDUCTION_TOL, key)
        else:
            check_out(g, out, untouched, w, REDUCTION_TOL, key)


@pytest.mark.parametrize("backend", DEVICES[:2], indirect=True)  # the CUDA C family's setting
def test_linear_stays_fp32_under_the_tf32_setting(backend, rng):
    """The tf32 setting reaches conv only: linear runs kernels/linear.cu in fp32 (no cuBLAS, so a step
    with TF32 convs is still captured whole), with fp32 accuracy where TF32 would be off by ~2^-11."""
    x, w = randn(rng, (8, 64), np.float32), randn(rng, (5, 64), np.float32)
    with fastconv.using(tf32=True):
        y = ops.linear_forward(backend.asarray(x), backend.asarray(w))
    assert_close(y, ref.linear_forward(x, w), F32_TOL, "linear_forward under tf32=True")


# ---- GPU: fastconv check's judgement of drawn shapes ------------------------------------------


@pytest.mark.parametrize("backend", GPU, indirect=True)
@GPU_DRAWN
@given(shape=st.tuples(st.integers(1, 130), st.integers(1, 300), st.integers(1, 130)))
def test_linear_gpu_drawn(backend, shape):
    judge("linear", shape, backend.name)
