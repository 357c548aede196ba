"""The bandwidth kernels (kernels/pool.cu, pool_2x2.cu, activation.cu, batchnorm.cu, bias.cu) on the CPU layer
(fastconv.emu) through their real launchers, against the float64 oracle of tests/oracle.py.

Outputs are NaN-poisoned before each launch (the ``poison`` setting) and every device access is
bounds- and alignment-checked. Each case asserts which kernel ran (``emu.trace``), so a dispatch
change cannot silently skip the fast path under test. The max-pool argmax must equal the CPU
path's (and the oracle's) exactly, NaN inputs included; the multi-block reductions must give the
same bits with the threads of every block run in two different shuffled orders.
"""

import contextlib
import importlib
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
import oracle as ref
from fastconv import configure, ops
from fastconv.testing import F32_TOL, REDUCTION_TOL, assert_close

import fastconv.emu as emu

FEW = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in:
        yield stand_in


@pytest.fixture(autouse=True)
def poisoned():
    configure(poison=True)  # tests/conftest.py restores the settings after each test


def _ran(t, *names):
    """The named kernels ran (the stand-in's trace; on a real GPU, in the cross-check, the trace
    sees no launches and each launch is compared with the CPU layer instead)."""
    if sys.modules.get("cupy") is not emu.cupy:
        return
    got = t.launch_names
    for name in names:
        assert name in got, f"expected kernel {name} to run, got {got}"


def _cfg():
    return importlib.import_module("fastconv.backends.cuda.config")  # the one the stand-in's launchers use


def _drop_reduction_plans():
    """A launch plan keeps the slice count it was built with, and these tests change MIN_SLICE_ELEMS
    (no plan key holds it): the per-channel reductions must take the full path after a change."""
    for fn in (ops.conv2d_backward_bias, ops.batchnorm_forward, ops.batchnorm_backward):
        fn.plans.clear()


@pytest.fixture(autouse=True)
def _fresh_reduction_plans():
    _drop_reduction_plans()
    yield
    _drop_reduction_plans()


@contextlib.contextmanager
def _min_slice(elems):
    """Reductions split into slices of at least ``elems`` elements (several blocks per channel even
    on tiny shapes)."""
    cfg = _cfg()
    old, cfg.MIN_SLICE_ELEMS = cfg.MIN_SLICE_ELEMS, elems
    _drop_reduction_plans()
    try:
        yield
    finally:
        cfg.MIN_SLICE_ELEMS = old
        _drop_reduction_plans()


def every_bandwidth_kernel(cp, rng):
    """One small case per kernel of pool.cu, pool_2x2.cu, batchnorm.cu and bias.cu, against the oracle (run by
    tests/emu/test_emu_ops.py's coverage and shuffled-thread-order tests too)."""
    for case in POOL_CASES[:6]:  # the 2x2 kernels (every default width) and a general window
        _pool_all(cp, rng, *case.values)
        test_relu_max_pool2d_matches_the_cpu_path(cp, rng, *case.values)
    for shape in ((3, 5, 4, 4), (40, 2, 1, 3)):
        for min_slice in (16, 1 << 30):
            with _min_slice(min_slice):
                _bn_all(cp, rng, shape, True)
                dy = rng.standard_normal(shape).astype(np.float32)
                assert_close(ops.conv2d_backward_bias(cp.asarray(dy)), ref.conv2d_backward_bias(dy), REDUCTION_TOL,
                             "conv2d_backward_bias")


# ---- pooling --------------------------------------------------------------------------------

# (N, C, H, W), kernel, stride, padding, the max/avg forward and backward kernel suffixes that must run
POOL_CASES = [
    pytest.param((2, 3, 8, 8), 2, 2, 0, "v3_2x2w", "v3_2x2v4x2", id="2x2-w8"),
    pytest.param((1, 2, 7, 16), 2, 2, 0, "v3_2x2w", "v3_2x2v4x2", id="2x2-w8-oddH"),
    pytest.param((1, 2, 7, 12), 2, 2, 0, "v3_2x2w", "v3_2x2w", id="2x2-w4-oddH"),
    pytest.param((2, 2, 6, 14), 2, 2, 0, "v3_2x2", "v3_2x2", id="2x2-w2"),
    pytest.param((1, 3, 5, 6), 2, 2, 0, "v3_2x2", "v3_2x2", id="2x2-w2-oddH"),
    pytest.param((2, 2, 6, 7), 2, 2, 0, "v2", "v2", id="2x2-oddW"),
    pytest.param((2, 3, 7, 9), 3, 2, 1, "v2", "v2", id="3x3-s2-p1"),
    pytest.param((1, 2, 9, 7), (3, 2), (2, 1), (1, 1), "v2", "v2", id="3x2-overlap"),
    pytest.param((1, 2, 8, 7), 2, 3, 1, "v2", "v2", id="stride-gt-kernel"),
]


def _fused(kernel):
    """The fused relu_max_pool2d kernel's suffix where max_pool2d runs ``kernel`` (v3_* -> v2_*, v2 -> v1)."""
    return "v1" if kernel == "v2" else kernel.replace("v3", "v2")


def _pool_all(cp, rng, shape, ks, stride, pad, kernel, bwd):
    x = ((rng.permutation(int(np.prod(shape))) - 50) * 0.01).reshape(shape).astype(np.float32)  # no ties
    xd = cp.asarray(x)
    with emu.trace() as t:
        y, am = ops.max_pool2d_forward(xd, ks, stride, pad)
    _ran(t, f"max_pool2d_forward_{kernel}")
    want_y, want_arg = ref.max_pool2d_forward(x, ks, stride, pad)
    assert_close(y, want_y, F32_TOL, "max_pool2d_forward")
    am = cp.asnumpy(am)
    assert am.dtype == np.int32
    np.testing.assert_array_equal(am, want_arg)
    np.testing.assert_array_equal(am, ops.max_pool2d_forward(x, ks, stride, pad)[1])
    dy = rng.standard_normal(want_y.shape).astype(np.float32)
    with emu.trace() as t:
        dx = ops.max_pool2d_backward(cp.asarray(dy), cp.asarray(am), shape, ks, stride, pad)
    _ran(t, f"max_pool2d_backward_{bwd}")
    assert_close(dx, ref.max_pool2d_backward(dy, x, ks, stride, pad), F32_TOL, "max_pool2d_backward")
    for include in (True, False):
        with emu.trace() as t:
            y = ops.avg_pool2d_forward(xd + 0.5, ks, stride, pad, include)
            dx = ops.avg_pool2d_backward(cp.asarray(dy), shape, ks, stride, pad, include)
        _ran(t, f"avg_pool2d_forward_{kernel}", f"avg_pool2d_backward_{bwd}")
        assert_close(y, ref.avg_pool2d_forward(x + 0.5, ks, stride, pad, include), F32_TOL, "avg_pool2d_forward")
        assert_close(dx, ref.avg_pool2d_backward(dy, shape, ks, stride, pad, include), F32_TOL, "avg_pool2d_backward")


@pytest.mark.parametrize("shape,ks,stride,pad,kernel,bwd", POOL_CASES)
def test_pool(cp, rng, shape, ks, stride, pad, kernel, bwd):
    _pool_all(cp, rng, shape, ks, stride, pad, kernel, bwd)


def test_pool_2x2_unaligned_view_takes_the_8_byte_path(cp, rng):
    """A view starting 8 bytes into an allocation: W % 4 == 0 but not 16-byte aligned."""
    x = rng.standard_normal((1 * 2 * 4 * 8 + 2,)).astype(np.float32)
    xd = cp.asarray(x)[2:].reshape(1, 2, 4, 8)
    with emu.trace() as t:
        y, am = ops.max_pool2d_forward(xd, 2, 2, 0)
    _ran(t, "max_pool2d_forward_v3_2x2")
    want_y, want_arg = ref.max_pool2d_forward(x[2:].reshape(1, 2, 4, 8), 2, 2, 0)
    assert_close(y, want_y, F32_TOL, "max_pool2d_forward")
    np.testing.assert_array_equal(cp.asnumpy(am), want_arg)


@pytest.mark.parametrize("shape,ks,stride,pad", [((1, 2, 4, 8), 2, 2, 0), ((1, 2, 4, 6), 2, 2, 0),
                                                 ((1, 2, 5, 5), 3, 2, 1)])
def test_max_pool_nan_argmax_matches_cpu(cp, rng, shape, ks, stride, pad):
    """A NaN is its window's maximum and the first NaN in scan order is the argmax, on both paths."""
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, 1, 1] = x[0, 0, 1, 0] = x[0, 1, 0, 3] = np.nan
    y, am = ops.max_pool2d_forward(cp.asarray(x), ks, stride, pad)
    y_cpu, am_cpu = ops.max_pool2d_forward(x, ks, stride, pad)
    np.testing.assert_array_equal(cp.asnumpy(am), am_cpu)
    np.testing.assert_array_equal(np.isnan(cp.asnumpy(y)), np.isnan(y_cpu))
    assert np.isnan(y_cpu).any()
    ok = ~np.isnan(y_cpu)
    np.testing.assert_array_equal(cp.asnumpy(y)[ok], y_cpu[ok])


@FEW
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 13),
       window=st.sampled_from([(2, 2, 0), (3, 2, 1), (2, 1, 0)]))
def test_pool_hypothesis(cp, n, c, h, w, window):
    ks, stride, pad = window
    if h + 2 * pad < ks or w + 2 * pad < ks:
        return
    fast = (ks, stride, pad) == (2, 2, 0) and w % 2 == 0
    kernel = ("v3_2x2w" if w % 4 == 0 else "v3_2x2") if fast else "v2"
    bwd = "v3_2x2v4x2" if fast and w % 8 == 0 else kernel
    _pool_all(cp, np.random.default_rng(h * 100 + w), (n, c, h, w), ks, stride, pad, kernel, bwd)


@pytest.mark.parametrize("shape,ks,stride,pad,kernel,bwd", [c.values for c in POOL_CASES])
def test_relu_max_pool2d_matches_the_cpu_path(cp, rng, shape, ks, stride, pad, kernel, bwd):
    """The fused op: y and the uint8 argmax equal the CPU path's, dx within F32_TOL of it (the
    oracle comparison of the CPU path is in tests/ops/test_pool.py); NaN included."""
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, 1, 1] = np.nan
    with emu.trace() as t:
        y, code = ops.relu_max_pool2d_forward(cp.asarray(x), ks, stride, pad)
    _ran(t, f"relu_max_pool2d_forward_{_fused(kernel)}")
    y_cpu, code_cpu = ops.relu_max_pool2d_forward(x, ks, stride, pad)
    np.testing.assert_array_equal(cp.asnumpy(y), y_cpu)
    np.testing.assert_array_equal(cp.asnumpy(code), code_cpu)
    assert (code_cpu == 255).any() and (code_cpu != 255).any()
    dy = rng.standard_normal(y_cpu.shape).astype(np.float32)
    with emu.trace() as t:
        dx = ops.relu_max_pool2d_backward(cp.asarray(dy), code, shape, ks, stride, pad)
    _ran(t, f"relu_max_pool2d_backward_{_fused(bwd)}")
    assert_close(dx, ops.relu_max_pool2d_backward(dy, code_cpu, shape, ks, stride, pad), F32_TOL,
                 "relu_max_pool2d_backward")


# ---- activations ----------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": ((), ref.relu),
    "leaky_relu": ((0.2,), lambda x: ref.leaky_relu(x, 0.2)),
    "sigmoid": ((), ref.sigmoid),
    "tanh": ((), lambda x: np.tanh(x.astype(np.float64))),
}


def _grad(name, dy, y):
    y = y.astype(np.float64)
    return {"relu": dy * (y > 0), "leaky_relu": np.where(y > 0, dy, 0.2 * dy), "sigmoid": dy * y * (1 - y),
            "tanh": dy * (1 - y * y)}[name]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("n,offset,version", [(4099, 0, "v2"), (8, 0, "v2"), (3, 0, "v2"), (37, 1, "v1")])
def test_activation(cp, rng, name, n, offset, version):
    extra, fwd = ACTIVATIONS[name]
    x = (rng.standard_normal(n + offset) * 3).astype(np.float32)
    dy = rng.standard_normal(n + offset).astype(np.float32)
    xd, dyd = cp.asarray(x)[offset:], cp.asarray(dy)[offset:]
    with emu.trace() as t:
        y = getattr(ops, f"{name}_forward")(xd, *extra)
    _ran(t, f"{name}_forward_{version}")
    assert_close(y, fwd(x[offset:]), F32_TOL, f"{name}_forward")
    y_host = cp.asnumpy(y)
    yd = cp.asarray(np.concatenate([y_host[:offset], y_host]))[offset:]  # same alignment as x
    with emu.trace() as t:
        dx = getattr(ops, f"{name}_backward")(dyd, yd, *extra)
    _ran(t, f"{name}_backward_{version}")
    assert_close(dx, _grad(name, dy[offset:], y_host), F32_TOL, f"{name}_backward")


def test_dropout_mask_matches_the_oracle(cp, rng):
    x = rng.standard_normal((3, 37)).astype(np.float32)
    dy = rng.standard_normal((3, 37)).astype(np.float32)
    y, mask = ops.dropout_forward(cp.asarray(x), 0.3, 7)
    want = ref.dropout_mask(x.size, 0.3, 7).reshape(x.shape)
    np.testing.assert_array_equal(cp.asnumpy(mask), want)
    scale = np.float32(1 / (1 - 0.3))
    assert_close(y, np.where(want, x * scale, 0), F32_TOL, "dropout_forward")
    assert_close(ops.dropout_backward(cp.asarray(dy), mask, 0.3), np.where(want, dy * scale, 0), F32_TOL,
                 "dropout_backward")


# ---- batchnorm and the conv bias gradient: multi-block reductions -----------------------------

# (100, 2, 1, 3): a one-slice block walks 100 rows of 3 with 256 threads, so the row/column step of
# kernels/reduce.cuh (85 rows + 1 column per stride) wraps
BN_SHAPES = [(3, 5, 4, 4), (7, 3, 3, 3), (6, 7), (40, 70), (40, 2, 2, 2), (100, 2, 1, 3)]  # (40, 70): 3 c32 blocks


def _bn_all(cp, rng, shape, training):
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    g, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    rm, rv = rng.standard_normal(c).astype(np.float32), (rng.random(c) + 0.5).astype(np.float32)
    rmd, rvd = cp.asarray(rm), cp.asarray(rv)
    y, mean, invstd = ops.batchnorm_forward(cp.asarray(x), cp.asarray(g), cp.asarray(b), rmd, rvd, training, 0.1, 1e-5)
    want_y, want_rm, want_rv = ref.batchnorm_forward(x, g, b, rm, rv, training, 0.1, 1e-5)
    assert_close(y, want_y, REDUCTION_TOL, "batchnorm_forward")
    assert_close(rmd, want_rm, F32_TOL, "running_mean")
    assert_close(rvd, want_rv, F32_TOL, "running_var")
    grads = ops.batchnorm_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(g), mean, invstd, training)
    want = ref.batchnorm_backward(dy, x, g, training, rm, rv, 1e-5)
    for got, exp, what in zip(grads, want, ("dx", "dgamma", "dbeta")):
        assert_close(got, exp, REDUCTION_TOL, f"batchnorm_backward {what}")
    return [cp.asnumpy(a) for a in (y, mean, invstd) + tuple(grads)]


@pytest.mark.parametrize("min_slice", [16, 1 << 30])  # several slices even on these small shapes; one
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batchnorm(cp, rng, shape, training, min_slice, monkeypatch):
    monkeypatch.setattr(_cfg(), "MIN_SLICE_ELEMS", min_slice)
    with emu.trace() as t:
        _bn_all(cp, rng, shape, training)
    # (N, C): the c32 kernels, a block per 32 channels; else f4 when H*W % 4 == 0
    form = "c32" if len(shape) == 2 else "f4" if shape[2] * shape[3] % 4 == 0 else "f1"
    if training:  # one pass over x for the statistics, one to normalise
        _ran(t, f"batchnorm_stats_v3_{form}")
        _ran(t, f"batchnorm_forward_train_v3_{form}")
    _ran(t, f"batchnorm_backward_v2_{form}")
    splits = [r.grid[0] for r in t.launches if r.name.startswith("batchnorm_backward_v2")]
    elems = shape[0] * (32 if form == "c32" else int(np.prod(shape[2:])))   # of a block's rows
    assert (splits[0] > 1) == (min_slice == 16 and elems >= 32), t.launches


@pytest.mark.parametrize("first", ["typical", "outlier"])
def test_batchnorm_one_pass_variance_of_an_offset_channel(cp, rng, first, monkeypatch):
    """Statistics in one pass (sums of x - x0 and its square, x0 the channel's first element) on
    channels whose mean is 10^6 standard deviations from 0: mean and invstd within 1e-6 of the
    float64 two-pass oracle, also when x0 is 300 deviations off. Unshifted sums (E[x^2] - E[x]^2 in
    double) lose about 2^-52 * 10^12 of the variance here: 2e-4."""
    monkeypatch.setattr(_cfg(), "MIN_SLICE_ELEMS", 16)  # several slices: the partials merged too
    x = (1e4 + 0.01 * rng.standard_normal((8, 3, 4, 4))).astype(np.float32)
    if first == "outlier":
        x[0, :, 0, 0] = 1e4 + 3.0
    c = x.shape[1]
    g, b = np.ones(c, np.float32), np.zeros(c, np.float32)
    _, mean, invstd = ops.batchnorm_forward(cp.asarray(x), cp.asarray(g), cp.asarray(b), cp.zeros(c, np.float32),
                                            cp.ones(c, np.float32), True, 0.1, 0.0 + 1e-12)
    x64 = x.astype(np.float64)
    want_mean = x64.mean(axis=(0, 2, 3))
    want_invstd = 1 / np.sqrt(((x64 - want_mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3)) + 1e-12)
    assert_close(mean, want_mean, 2e-7, "mean")  # float32 rounding of 1e4: 6e-8
    assert_close(invstd, want_invstd, 1e-6, "invstd")


def test_batchnorm_and_bias_are_deterministic(cp, monkeypatch):
    """Several slices per channel, two shuffled thread orders: the same bits."""
    monkeypatch.setattr(_cfg(), "MIN_SLICE_ELEMS", 16)
    assert _cfg().channel_splits(3, 24, 8, 132)[0] > 1
    runs = []
    for seed in (1, 2):
        with emu.shuffled(seed):
            out = _bn_all(cp, np.random.default_rng(0), (24, 3, 2, 4), True)
            out += _bn_all(cp, np.random.default_rng(0), (24, 40), True)     # the c32 kernels: warps' sums
            dy = np.random.default_rng(1).standard_normal((24, 3, 2, 4)).astype(np.float32)
            out.append(cp.asnumpy(ops.conv2d_backward_bias(cp.asarray(dy))))
        runs.append(out)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape,kernel", [((5, 4, 3, 4), "f4"), ((9, 3, 5, 3), "f1"), ((2, 7, 1, 1), "f1"),
                                          ((200, 1, 2, 6), "f4"), ((100, 2, 1, 3), "f1")])
@pytest.mark.parametrize("min_slice", [16, 1 << 30])
def test_conv2d_backward_bias(cp, rng, shape, kernel, min_slice, monkeypatch):
    monkeypatch.setattr(_cfg(), "MIN_SLICE_ELEMS", min_slice)
    dy = rng.standard_normal(shape).astype(np.float32) + 0.25
    with emu.trace() as t:
        db = ops.conv2d_backward_bias(cp.asarray(dy))
    _ran(t, f"conv2d_backward_bias_v3_{kernel}")
    if sys.modules.get("cupy") is emu.cupy:
        assert len(t.launches) == 1, t.launch_names   # split or not: the channel's last block sums
        assert (t.launches[0].grid[0] > 1) == (min_slice == 16 and shape[0] > 2), t.launches[0].grid
    assert_close(db, ref.conv2d_backward_bias(dy), REDUCTION_TOL, "conv2d_backward_bias")
    # again without poisoning, so that the plan keeps its counters (which the last blocks leave zero)
    # and hands them to the next calls, into a new db and into a given out
    with fastconv.using(poison=False):
        for _ in range(3):
            np.testing.assert_array_equal(cp.asnumpy(ops.conv2d_backward_bias(cp.asarray(dy))), cp.asnumpy(db))
        out = cp.full(shape[1], np.nan, np.float32)
        np.testing.assert_array_equal(cp.asnumpy(ops.conv2d_backward_bias(cp.asarray(dy), out=out)),
                                      cp.asnumpy(db))


@FEW
@given(n=st.integers(1, 40), c=st.integers(1, 4), hw=st.sampled_from([(1, 1), (2, 2), (3, 5), (4, 4)]))
def test_reductions_hypothesis(cp, n, c, hw):
    with _min_slice(8):
        rng = np.random.default_rng(n * 10 + c)
        shape = (n + 3, c) + hw  # at least 3 samples: with 2, batchnorm dx is 0 up to rounding
        _bn_all(cp, rng, shape, True)
        dy = rng.standard_normal(shape).astype(np.float32) + 0.25
        assert_close(ops.conv2d_backward_bias(cp.asarray(dy)), ref.conv2d_backward_bias(dy), REDUCTION_TOL,
                     "conv2d_backward_bias")
