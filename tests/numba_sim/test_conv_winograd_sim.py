"""The numba family's Winograd conv (fastconv/backends/numba/winograd.py, conv_tile="winograd") under
the CUDA simulator through the family's launchers, against the float64 loop oracle of tests/oracle.py
at REDUCTION_TOL (the transforms scale products by up to 21/4 and 16 before the sums cancel; see
tests/ops/test_conv_winograd.py): every pass on a 3x3 case (padding 0, backward-data's 2; three images,
so a block's slots span images; tiles cut at P and Q) and a 5x5 case (padding 1, backward-data's 3; one
image narrower than two tiles), outputs and every intermediate array NaN-poisoned, the backward-weight
products forced into 2 slices (summed by sum_splits_v1 before the output transform); the slot
transforms (input, dy, output) alone against their tables on two blocks of slots, the last partial,
with shared memory NaN-poisoned (a missing barrier reads it); the filter transform's tiles of both
orientations on a filter of several blocks; refusals. Run by tests/test_numba_sim.py. Every simulated
thread is a Python thread: nearly all of a pass's time here is its products' GEMM, A^2 groups of at
least one block of 64 threads (the smallest tile, which winograd_config.winograd_tile picks for these few rows)
whatever the case's size, so the cases stay tiny.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from numba.cuda.simulator import kernelapi

import fastconv
from fastconv.backends import numba as nb
from fastconv.backends.cuda import config as cfg
from fastconv.backends.numba import conv as nb_conv
from fastconv.backends.numba import winograd, winograd_tables
from fastconv.testing import REDUCTION_TOL, assert_close
from sim_arrays import _empty, _rand

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the float64 oracle
import oracle as ref  # noqa: E402

assert nb.SIMULATOR

# N, C, H, W, K, R, padding
CASES = [pytest.param((3, 2, 7, 10, 2, 3, 0), id="3x3-p0-3images"),
         pytest.param((1, 2, 7, 6, 3, 5, 1), id="5x5-p1")]
PASSES = ("forward", "backward_data", "backward_weight")


@pytest.fixture
def poisoned(monkeypatch):
    """Every array the Winograd path allocates (transforms, products, split workspace) NaN-filled."""
    def nan_empty(shape, like, dtype=np.float32, what=""):
        return np.full(shape, np.nan, dtype)
    monkeypatch.setattr(winograd, "_empty", nan_empty)
    monkeypatch.setattr(nb_conv, "_empty", nan_empty)


class _NanNumpy:
    """numpy for the simulator's kernel API, whose empty() (its shared and local arrays) fills floats
    with NaN."""
    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype):
        return np.full(shape, np.nan, dtype) if np.dtype(dtype).kind == "f" else np.empty(shape, dtype)


@pytest.fixture
def nan_shared(monkeypatch):
    """The simulator's shared (and local) float arrays NaN-filled when a launch first allocates them."""
    monkeypatch.setattr(kernelapi, "np", _NanNumpy())


def run_pass(rng, what, case):
    """(output, float64 oracle) of pass ``what`` on the Winograd path (forward with bias)."""
    n, c, h, w, k, r, pad = case
    x, wt, b = _rand(rng, n, c, h, w), _rand(rng, k, c, r, r), _rand(rng, k)
    p, q = h + 2 * pad - r + 1, w + 2 * pad - r + 1
    dy = _rand(rng, n, k, p, q)
    args = ((1, 1), (pad, pad), (1, 1), 1)
    with fastconv.using(conv_tile=cfg.WINOGRAD):
        if what == "forward":
            return (nb.launch_conv2d_forward(_empty(n, k, p, q), x, wt, b, *args),
                    ref.conv2d_forward(x, wt, b, 1, pad))
        if what == "backward_data":
            return (nb.launch_conv2d_backward_data(_empty(n, c, h, w), dy, wt, *args),
                    ref.conv2d_backward_data(dy, wt, x.shape, 1, pad))
        return (nb.launch_conv2d_backward_weight(_empty(k, c, r, r), dy, x, *args),
                ref.conv2d_backward_weight(dy, x, wt.shape, 1, pad))


@pytest.mark.parametrize("what", PASSES)
@pytest.mark.parametrize("case", CASES)
def test_every_pass_matches_the_oracle(rng, poisoned, monkeypatch, what, case):
    """The pass's three Winograd kernels run around the GEMM, on the CUDA C family's products tile
    (config.winograd_tile: t32x128 for these few rows; backward-weight's t64x32 as t64x64 here);
    backward-weight's products are forced into 2 slices where their reduction (N x tiles) is long
    enough (the 3x3 case: 3 x 2 x 2 = 12), which sum_splits_v1 adds before the output transform."""
    launched, slices = [], []
    launch, conv_launch, gemm = winograd.launch, nb_conv.launch, winograd.backward_weight_gemm
    monkeypatch.setattr(winograd, "launch", lambda name, *a: launched.append(name) or launch(name, *a))
    monkeypatch.setattr(nb_conv, "launch", lambda name, *a: launched.append(name) or conv_launch(name, *a))

    def two_slices(dw, dy, x, geo, splits, workspace, stream, tile):
        parts, got = gemm(dw, dy, x, geo, 2, workspace, stream, tile)
        slices.append((parts.size // dw.size, got))
        return parts, got
    monkeypatch.setattr(winograd, "backward_weight_gemm", two_slices)
    out, want = run_pass(rng, what, case)
    assert np.isfinite(out).all(), f"{what}: NaN left in the output"
    assert_close(out, want, REDUCTION_TOL, f"winograd {what}")
    n, _, h, w, _, r, pad = case
    long = n * -(-(h + 2 * pad - r + 1) // 4) * -(-(w + 2 * pad - r + 1) // 4) > 8
    kinds = ((["input_v3", "wgrad_dy_v3"] + ["sum_splits_v1"] * long + ["wgrad_output_v2"])
             if what == "backward_weight" else ["input_v3", "filter_v2", "output_v2"])
    gemm_names = ("conv2d_forward", "conv2d_backward")
    assert [nm for nm in launched if not nm.startswith(gemm_names)] == [
        nm if nm.startswith("sum") else f"conv2d_winograd_{nm}_r{r}" for nm in kinds], launched
    assert [nm for nm in launched if nm.startswith(gemm_names)] == [
        "conv2d_backward_weight_t64x64_v1" if what == "backward_weight" else "conv2d_forward_t32x128_v1"], launched
    if what == "backward_weight":
        assert slices == [(2, 2) if long else (1, 1)], slices


@pytest.mark.parametrize("r", [3, 5])
def test_slot_transforms_match_their_tables(rng, poisoned, nan_shared, r):
    """conv2d_winograd_input_v3, wgrad_dy_v3 (a thread per slot) and output_v2 alone on 36 slots (1 image
    x 3 channels x 3 x 4 tiles: the output's full block and partial one of 4 slots, the others' one
    partial block; P = 9, Q = 13 cut the last tiles), into
    NaN-filled outputs with NaN-filled shared memory: every element is its slot's L d L^T (float64, the
    family's tables), each pixel of y written once inside P x Q."""
    n, c, pad = 1, 3, (r - 1) // 2
    p, q = 9, 13
    a, tp, tq = r + winograd.M - 1, -(-p // winograd.M), -(-q // winograd.M)
    at, g, bt = (m.astype(np.float64) for m in winograd_tables.matrices(r, winograd.M, r))
    g_dy = winograd_tables.matrices(r, r, winograd.M)[1].astype(np.float64)
    x, dy, prod, b = _rand(rng, n, c, p, q), _rand(rng, n, c, p, q), _rand(rng, n, a * a * c, tp, tq), _rand(rng, c)

    def xi_major(t):  # (N, C, TP, TQ, A, A) -> (N, A^2 * C, TP, TQ) at [n, xi * C + c, tp, tq]
        return t.reshape(n, c, tp, tq, a * a).transpose(0, 4, 1, 2, 3).reshape(n, a * a * c, tp, tq)

    v = winograd._input(x, (pad, pad), tp, tq, r, "x", None)
    want_v = xi_major(np.einsum("ui,ncpqij,vj->ncpquv", bt, ref.winograd_patches(x, a, pad, tp, tq), bt))
    u = np.full((n, a * a * c, tp, tq), np.nan, np.float32)
    winograd.launch(f"conv2d_winograd_wgrad_dy_v3_r{r}", *winograd._patch_launch(n * c * tp * tq),
                    (dy, u, n, c, p, q, tp, tq))
    want_u = xi_major(np.einsum("ui,ncpqij,vj->ncpquv", g_dy, ref.winograd_patches(dy, winograd.M, 0, tp, tq), g_dy))
    y = np.full((n, c, p, q), np.nan, np.float32)
    winograd.launch(f"conv2d_winograd_output_v2_r{r}", *winograd._slot_launch(n * c * tp * tq, r),
                    (prod, y, b, n, c, p, q, tp, tq, 1))
    m = prod.astype(np.float64).reshape(n, a, a, c, tp, tq)
    full = np.einsum("oi,nijcst,pj->ncsotp", at, m, at).reshape(n, c, tp * winograd.M, tq * winograd.M)
    want_y = full[:, :, :p, :q] + b[:, None, None]
    for what, got, want in (("input_v3", v, want_v), ("wgrad_dy_v3", u, want_u), ("output_v2", y, want_y)):
        assert not np.isnan(got).any(), f"{what}_r{r}: NaN left in the output"
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=f"{what}_r{r}")


@pytest.mark.parametrize("flip", [False, True], ids=["forward", "backward_data"])
def test_filter_transform_tiles(rng, flip):
    """conv2d_winograd_filter_v2_r3 on a K = 33, C = 9 filter (blocks of 32 reduction indices x 8
    output channels: 2 x 2 blocks flipped, 1 x 5 not, the last ones partial) into a NaN-filled U:
    every element is G w G^T (float64, the family's G) at U[xi, k, c], flipped: of w rotated by
    180 degrees at U[xi, c, k]."""
    k, c, r = 33, 9, 3
    a = r + winograd.M - 1
    wt = _rand(rng, k, c, r, r)
    u = np.full((a * a * k, c, 1, 1), np.nan, np.float32)
    winograd.launch("conv2d_winograd_filter_v2_r3",
              (-(-(k if flip else c) // winograd.FT_KK), -(-(c if flip else k) // winograd.FT_M), 1),
              (winograd.FT_KK * winograd.FT_M, 1, 1), (wt, u, k, c, int(flip)))
    g = winograd_tables.matrices(r, winograd.M, r)[1].astype(np.float64)
    taps = wt[:, :, ::-1, ::-1].transpose(1, 0, 2, 3) if flip else wt
    want = np.einsum("ia,mkab,jb->ijmk", g, taps.astype(np.float64), g).reshape(u.shape)
    assert not np.isnan(u).any()
    np.testing.assert_allclose(u, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("w_shape, stride, dilation, groups", [
    ((3, 4, 3, 3), (2, 2), (1, 1), 1), ((3, 4, 4, 4), (1, 1), (1, 1), 1), ((4, 2, 3, 3), (1, 1), (1, 1), 2),
    ((3, 4, 3, 3), (1, 1), (2, 2), 1), ((3, 4, 5, 3), (1, 1), (1, 1), 1)], ids=["stride", "4x4", "groups", "dilation",
                                                                                  "5x3"])
def test_refusals(w_shape, stride, dilation, groups):
    """Every pass refuses a shape the Winograd tables do not serve in config.use_winograd's one line,
    before it launches anything."""
    k, _, r, s = w_shape
    x = np.ones((1, 4, 9, 9), np.float32)
    wt = np.ones(w_shape, np.float32)
    p = (9 + 2 - dilation[0] * (r - 1) - 1) // stride[0] + 1
    q = (9 + 2 - dilation[1] * (s - 1) - 1) // stride[1] + 1
    dy = np.ones((1, k, p, q), np.float32)
    args = (stride, (1, 1), dilation, groups)
    calls = (lambda: nb.launch_conv2d_forward(_empty(1, k, p, q), x, wt, None, *args),
             lambda: nb.launch_conv2d_backward_data(_empty(*x.shape), dy, wt, *args),
             lambda: nb.launch_conv2d_backward_weight(_empty(*w_shape), dy, x, *args))
    for call in calls:
        with fastconv.using(conv_tile=cfg.WINOGRAD), pytest.raises(
                ValueError, match=f"conv_tile: got 'winograd' for a convolution of {r}x{s} taps"):
            call()
