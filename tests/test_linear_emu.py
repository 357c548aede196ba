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


def forward_every_activation(cp, m, n, k, seed, kernel):
    """linear_forward of an (m, k) x (n, k) problem, every activation, with and without bias, against
    the float64 loops, as one launch of ``kernel`` (traced on fastconv.emu; a GPU has no trace)."""
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((m, k), (n, k), (n,)))
    for activation, act in ACTIVATIONS.items():
        for bias in (b, None):
            with emu.trace() as t:
                y = ops.linear_forward(cp.asarray(x), cp.asarray(w), None if bias is None else cp.asarray(bias),
                                       activation=activation, negative_slope=0.1)
            assert t.launch_names == [kernel] or cp is not emu.cupy, t.launch_names
            assert_close(y.get(), act(ref.linear_forward(x, w, bias)), F32_TOL, f"{kernel} {activation}")


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_linear_forward_kernel(cp, m, n, k):
    forward_every_activation(cp, m, n, k, m * 1000 + n, "linear_forward_v2")


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


# (M, N, K): LeNet's first Linear at batch 16 (one 64 x 64 tile, K = 3136: 24 slices) and a
# 17-output Linear (N = 17, K = 6272: one output more than linear_forward_rows_v1 takes) -- split
# along K on 132 SMs
SPLIT_SHAPES = [(16, 40, 3136), (20, 17, 6272)]


@pytest.mark.parametrize("m,n,k", SPLIT_SHAPES)
def test_linear_split_k(cp, m, n, k):
    from fastconv.backends.cuda import config as cfg
    splits, _ = cfg.linear_splits(m, n, k, 132)
    assert splits > 1
    rng = np.random.default_rng(k)
    x, w, b, dy = (rng.standard_normal(s).astype(np.float32) for s in ((m, k), (n, k), (n,), (m, n)))
    for activation in ("tanh", None):
        with emu.trace() as t:
            y = ops.linear_forward(cp.asarray(x), cp.asarray(w), cp.asarray(b), activation=activation)
        if cp is emu.cupy:  # (the GPU cross-check runs this on CuPy: nothing to trace there)
            assert t.launch_names == ["linear_forward_v2", "linear_splitk_reduce_v1"]
            assert [r.grid[2] for r in t.launches[:1]] == [splits]
        assert_close(y.get(), ACTIVATIONS[activation](ref.linear_forward(x, w, b)), F32_TOL, "split forward")
    # backward-data of the transposed problem: dx[M, K] = dy[M, N] w[N, K] has K outputs per row, N terms
    dyt = rng.standard_normal((m, k)).astype(np.float32)
    wt = rng.standard_normal((k, n)).astype(np.float32)
    with emu.trace() as t:
        dx = ops.linear_backward_data(cp.asarray(dyt), cp.asarray(wt))
    want = np.einsum("mk,kn->mn", dyt.astype(np.float64), wt.astype(np.float64))
    assert t.launch_names == ["linear_backward_data_v2", "linear_splitk_reduce_v1"] or cp is not emu.cupy
    assert_close(dx.get(), want, F32_TOL, "split backward_data")


# (M, N, K) of linear_forward_rows_v1: a discriminator's one-logit head (6272 -> 1), LeNet's last
# Linear at batch 128 (256 -> 10), a few outputs over a reduction that is no multiple of the block,
# the most outputs it takes
ROWS_SHAPES = [(20, 1, 6272), (128, 10, 256), (130, 3, 4001), (5, 16, 2000)]


@pytest.mark.parametrize("m,n,k", ROWS_SHAPES)
def test_linear_forward_rows(cp, m, n, k):
    """A narrow output over a long reduction (whose tiled GEMM would split K) is one launch of
    linear_forward_rows_v1: every activation, with and without bias, against the float64 loops."""
    from fastconv.backends.cuda import config as cfg
    assert cfg.linear_splits(m, n, k, 132)[0] > 1
    forward_every_activation(cp, m, n, k, k, "linear_forward_rows_v1")


# (M batch rows, O outputs, N input features) of linear_backward_rows_v1: the heads above at batch 128,
# batch rows that are no multiple of its 16 rows per block and features that are none of its 128 threads,
# one row group
BACK_ROWS_SHAPES = [(128, 1, 6272), (128, 10, 256), (33, 16, 129), (70, 3, 300), (9, 5, 130)]


@pytest.mark.parametrize("m,o,n", BACK_ROWS_SHAPES)
def test_linear_backward_rows(cp, m, o, n):
    """ops.linear_backward of at most 16 outputs is one launch of linear_backward_rows_v1: dx equals
    linear_backward_data_v2's bit for bit (the same sums in the same order), dw and db
    linear_backward_weight_v1's up to the order of the row groups' partial sums (bit for bit with one
    group), with and without accumulate and an activation_output (every activation); all close to the
    float64 loops. Again without poisoning (the plan keeps its counters, which the last blocks leave
    zero), into NaN-filled outs: the same bits."""
    rng = np.random.default_rng(m + o + n)
    dy, x, w = (rng.standard_normal(s).astype(np.float32) for s in ((m, o), (m, n), (o, n)))
    prior_w, prior_b = rng.standard_normal((o, n)).astype(np.float32), rng.standard_normal(o).astype(np.float32)
    dy64, x64, w64 = (a.astype(np.float64) for a in (dy, x, w))
    for act, fn in ACTIVATIONS.items():
        slope = 0.1 if act == "leaky_relu" else 0.0
        y = fn(x64).astype(np.float32) if act else None   # x taken as the activation's outputs
        for add in (False, True):
            outs = [(cp.asarray(prior_w), cp.asarray(prior_b)) if add else (None, None) for _ in range(2)]
            kw = dict(activation=act, negative_slope=0.1, activation_output=None if y is None else cp.asarray(y))
            with emu.trace() as t:
                dx, dw, db = ops.linear_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), out=outs[0],
                                                 accumulate=add, **kw)
            assert t.launch_names == ["linear_backward_rows_v1"] or cp is not emu.cupy, t.launch_names
            dx2 = ops.linear_backward_data(cp.asarray(dy), cp.asarray(w), **kw)
            dw2, db2 = ops.linear_backward_weight(cp.asarray(dy), cp.asarray(x), out=outs[1], accumulate=add)
            for a, b in ((dx, dx2), (dw, dw2), (db, db2)):
                assert np.isfinite(a.get()).all()
                if a is dx or m <= 16:
                    np.testing.assert_array_equal(a.get(), b.get())
                else:
                    assert_close(a.get(), b.get().astype(np.float64), F32_TOL, "linear_backward_rows_v1 against two")
            want_dx = dy64 @ w64
            if act:
                want_dx = ref.activation_backward(act, want_dx, x64, slope) if act != "sigmoid" else \
                    want_dx * y * (1 - y)
            assert_close(dx.get(), want_dx, F32_TOL, f"linear_backward_rows_v1 dx {act}")
            assert_close(dw.get(), dy64.T @ x64 + (prior_w if add else 0), F32_TOL, "linear_backward_rows_v1 dw")
            assert_close(db.get(), dy64.sum(axis=0) + (prior_b if add else 0), F32_TOL, "linear_backward_rows_v1 db")
    first = [a.get() for a in ops.linear_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w))]
    with fastconv.using(poison=False):
        for _ in range(3):
            outs = (cp.full((o, n), np.nan, np.float32), cp.full(o, np.nan, np.float32))
            for a, b in zip(ops.linear_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), out=outs), first):
                np.testing.assert_array_equal(a.get(), b)


def test_linear_backward_one_pass_or_wider():
    """ops.linear_backward with one pass asked for, or more than 16 outputs, runs the two kernels (or
    one of them): the CPU composes the two ops the same way."""
    rng = np.random.default_rng(3)
    dy, x, w = (rng.standard_normal(s).astype(np.float32) for s in ((6, 17), (6, 9), (17, 9)))
    dx, dw, db = ops.linear_backward(dy, x, w)
    np.testing.assert_array_equal(dx, ops.linear_backward_data(dy, w))
    np.testing.assert_array_equal(dw, ops.linear_backward_weight(dy, x)[0])
    assert ops.linear_backward(dy, x, w, weight_grad=False)[1:] == (None, None)
    assert ops.linear_backward(dy, x, w, input_grad=False)[0] is None
    with pytest.raises(ValueError, match=r"x: got shape \(6, 9\), expected 8 features"):
        ops.linear_backward(dy, x, w[:, :8])


@pytest.mark.parametrize("input_grad,weight_grad,o", [(True, False, 3), (False, True, 3), (True, True, 17)])
def test_linear_backward_other_kernels(cp, input_grad, weight_grad, o):
    rng = np.random.default_rng(4)
    dy, x, w = (cp.asarray(rng.standard_normal(s).astype(np.float32)) for s in ((6, o), (6, 9), (o, 9)))
    with emu.trace() as t:
        ops.linear_backward(dy, x, w, input_grad=input_grad, weight_grad=weight_grad)
    assert t.launch_names == ["linear_backward_data_v2"] * input_grad + ["linear_backward_weight_v1"] * weight_grad


def test_rows_kernel_constants_match(cp):   # cp: the launcher module imports CuPy (here the stand-in)
    import re
    from fastconv.backends.cuda import linear, loader
    text = (loader.kernel_dir() / "linear.cu").read_text()
    defines = {k: int(v) for k, v in re.findall(r"^#define (LIN_(?:ROWS|BACK)_\w+) (\d+)", text, re.M)}
    assert [defines[k] for k in ("LIN_ROWS_N", "LIN_ROWS_THREADS", "LIN_BACK_THREADS", "LIN_BACK_ROWS")] == \
        [linear.ROWS_MAX_OUT, linear.ROWS_THREADS, linear.BACK_THREADS, linear.BACK_ROWS]


def test_linear_splits_tile_the_reduction():
    from fastconv.backends.cuda import config as cfg
    for m, n, k in [(128, 256, 3136), (128, 1, 6272), (1, 1, 8), (128, 3136, 256), (5000, 5000, 10**5), (2, 2, 0)]:
        splits, chunk = cfg.linear_splits(m, n, k, 132)
        assert 1 <= splits <= cfg.LINEAR_MAX_SPLITS and chunk % cfg.LINEAR_BK == 0 or splits == 1
        assert (splits - 1) * chunk < max(k, 1) <= splits * chunk
    assert cfg.linear_splits(128, 256, 3136, 132)[0] == 24   # LeNet fc1 at batch 128: 8 tiles
    assert cfg.linear_splits(128, 3136, 256, 132) == (1, 256)  # 98 tiles, a short reduction
