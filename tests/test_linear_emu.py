"""kernels/linear.cu on the CPU execution layer (fastconv.emu): the three passes of the cupy
family's linear layer against float64 references, for sizes that are not multiples of the
64 x 64 tile, every fused activation, with and without bias; outputs NaN-poisoned first.
Tolerance: relative L2 error <= F32_TOL (1e-5), the float32 ops' bound."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import fastconv
import oracle as ref
from fastconv import emu, ops
from fastconv.testing import F32_TOL, assert_close

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="fastconv.emu compiles the kernels with g++")

SHAPES = [(3, 5, 7), (70, 37, 19), (9, 130, 65)]   # (batch M, out features N, in features K)
ACTIVATIONS = {None: lambda y: y, "relu": ref.relu, "leaky_relu": lambda y: ref.leaky_relu(y, 0.1),
               "sigmoid": ref.sigmoid, "tanh": np.tanh}


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in, fastconv.using(poison=True, kernels="cupy", tf32=False):
        yield stand_in


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_linear_forward_kernel(cp, m, n, k):
    rng = np.random.default_rng(m * 1000 + n)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((m, k), (n, k), (n,)))
    for activation, act in ACTIVATIONS.items():
        for bias in (b, None):
            with emu.trace() as t:
                y = ops.linear_forward(cp.asarray(x), cp.asarray(w), None if bias is None else cp.asarray(bias),
                                       activation=activation, negative_slope=0.1)
            assert t.launch_names == ["linear_forward_v1"] or cp is not emu.cupy  # a GPU: no trace
            assert_close(y.get(), act(ref.linear_forward(x, w, bias)), F32_TOL, f"linear_forward {activation}")


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_linear_backward_kernels(cp, m, n, k):
    rng = np.random.default_rng(m * 1000 + k)
    dy, w, x = (rng.standard_normal(s).astype(np.float32) for s in ((m, n), (n, k), (m, k)))
    dy64, w64, x64 = (a.astype(np.float64) for a in (dy, w, x))
    dx = ops.linear_backward_data(cp.asarray(dy), cp.asarray(w))
    assert_close(dx.get(), np.einsum("mn,nk->mk", dy64, w64), F32_TOL, "linear_backward_data")
    with emu.trace() as t:
        dw, db = ops.linear_backward_weight(cp.asarray(dy), cp.asarray(x))
    assert t.launch_names == ["linear_backward_weight_v1"] or cp is not emu.cupy, "the bias gradient must be fused"
    assert_close(dw.get(), np.einsum("mn,mk->nk", dy64, x64), F32_TOL, "linear_backward_weight")
    assert_close(db.get(), dy64.sum(axis=0), F32_TOL, "linear_backward_weight bias")
