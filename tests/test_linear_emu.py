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


def test_rows_kernel_constants_match(cp):   # cp: the launcher module imports CuPy (here the stand-in)
    import re
    from fastconv.backends.cuda import linear, loader
    text = (loader.kernel_dir() / "linear.cu").read_text()
    defines = dict(re.findall(r"^#define (LIN_ROWS_\w+) (\d+)", text, re.M))
    assert (int(defines["LIN_ROWS_N"]), int(defines["LIN_ROWS_THREADS"])) == (linear.ROWS_MAX_OUT, linear.ROWS_THREADS)


def test_linear_splits_tile_the_reduction():
    from fastconv.backends.cuda import config as cfg
    for m, n, k in [(128, 256, 3136), (128, 1, 6272), (1, 1, 8), (128, 3136, 256), (5000, 5000, 10**5), (2, 2, 0)]:
        splits, chunk = cfg.linear_splits(m, n, k, 132)
        assert 1 <= splits <= cfg.LINEAR_MAX_SPLITS and chunk % cfg.LINEAR_BK == 0 or splits == 1
        assert (splits - 1) * chunk < max(k, 1) <= splits * chunk
    assert cfg.linear_splits(128, 256, 3136, 132)[0] == 24   # LeNet fc1 at batch 128: 8 tiles
    assert cfg.linear_splits(128, 3136, 256, 132) == (1, 256)  # 98 tiles, a short reduction
