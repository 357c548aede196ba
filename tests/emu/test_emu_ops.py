"""Every op x pass of the CUDA C family, run on the CPU by fastconv.emu through the real launchers
(fastconv.ops on device arrays of the CuPy stand-in), against the float64 oracle of tests/oracle.py.

Outputs are poisoned with NaN before each launch (fastconv.using(poison=True)) and the stand-in fills fresh
device memory with NaN, so an element a kernel forgets to write fails; every device pointer
access is bounds-checked. Relative L2 error <= F32_TOL, or REDUCTION_TOL where a float32 sum runs
over the batch (weight/bias gradients, batchnorm). Fixed shapes cover stride, padding, dilation,
groups, odd sizes, several tiles in every GEMM dimension and split-K; hypothesis draws a few more.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracle as ref
from emu_helpers import CONV_VERSIONS, conv_kernels, randn
from test_emu_bandwidth import every_bandwidth_kernel
import test_graph_emu as graph_cases
import test_linear_emu as linear_cases
import fastconv
from fastconv import ops
from fastconv.backends.cuda.config import KERNELS, TF32_TILES
from fastconv.testing import F32_TOL, REDUCTION_TOL, assert_close

import fastconv.emu as emu

FEW = settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

# (N, C, H, W), (K, C/G, R, S), stride, padding, dilation, groups
CONV_CASES = [
    pytest.param((2, 3, 7, 6), (5, 3, 3, 3), 1, 1, 1, 1, id="3x3-p1-odd"),
    pytest.param((1, 4, 9, 7), (6, 2, 3, 2), (2, 1), (1, 0), (1, 2), 2, id="s21-d12-g2"),
    pytest.param((2, 3, 6, 6), (3, 1, 3, 3), 2, (2, 1), (2, 1), 3, id="depthwise-s2"),
    pytest.param((2, 8, 16, 16), (140, 8, 1, 1), 1, 0, 1, 1, id="1x1-k140-splitk"),
]


def _conv_all_passes(cp, rng, x_shape, w_shape, stride, padding, dilation, groups, tol=None):
    """Every conv pass against the oracle (at F32_TOL / REDUCTION_TOL, or at ``tol`` for all)."""
    f32_tol, reduction_tol = tol or F32_TOL, tol or REDUCTION_TOL
    x, w, b = randn(rng, *x_shape), randn(rng, *w_shape), randn(rng, w_shape[0])
    args = (stride, padding, dilation, groups)
    y_ref = ref.conv2d_forward(x, w, b, *args)
    dy = randn(rng, *y_ref.shape)
    xd, wd, bd, dyd = cp.asarray(x), cp.asarray(w), cp.asarray(b), cp.asarray(dy)
    assert_close(ops.conv2d_forward(xd, wd, bd, *args), y_ref, f32_tol, "forward+bias")
    assert_close(ops.conv2d_forward(xd, wd, None, *args), ref.conv2d_forward(x, w, None, *args), f32_tol, "forward")
    assert_close(ops.conv2d_backward_data(dyd, wd, x.shape, *args), ref.conv2d_backward_data(dy, w, x.shape, *args),
                 f32_tol, "backward_data")
    assert_close(ops.conv2d_backward_weight(dyd, xd, w.shape, *args),
                 ref.conv2d_backward_weight(dy, x, w.shape, *args), reduction_tol, "backward_weight")
    assert_close(ops.conv2d_backward_bias(dyd), ref.conv2d_backward_bias(dy), reduction_tol, "backward_bias")


@pytest.mark.parametrize("version", CONV_VERSIONS)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", CONV_CASES)
def test_conv2d(cp, rng, version, x_shape, w_shape, stride, padding, dilation, groups):
    with conv_kernels(version):
        _conv_all_passes(cp, rng, x_shape, w_shape, stride, padding, dilation, groups)


@st.composite
def conv_specs(draw):
    g = draw(st.sampled_from([1, 2]))
    r, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h = draw(st.integers(dil[0] * (r - 1) + 1, 9))
    w = draw(st.integers(dil[1] * (s - 1) + 1, 9))
    x_shape = (draw(st.integers(1, 2)), g * draw(st.integers(1, 3)), h, w)
    w_shape = (g * draw(st.integers(1, 20)), x_shape[1] // g, r, s)
    return x_shape, w_shape, stride, pad, dil, g


@FEW
@given(spec=conv_specs(), version=st.sampled_from(CONV_VERSIONS))
def test_conv2d_drawn(cp, spec, version):
    with conv_kernels(version):
        _conv_all_passes(cp, np.random.default_rng(5), *spec)


POOL_CASES = [
    pytest.param((2, 3, 7, 8), (3, 2), (2, 2), (1, 1), id="k32-s2-p1-overlap"),
    pytest.param((1, 2, 6, 6), (2, 2), (2, 2), (0, 0), id="k2-s2"),
    pytest.param((1, 3, 9, 5), (3, 3), (1, 2), (1, 0), id="k3-s12-p10"),
]


def _pool_all_passes(cp, rng, x_shape, ks, stride, padding):
    x = randn(rng, *x_shape)
    xd = cp.asarray(x)
    y, am = ops.max_pool2d_forward(xd, ks, stride, padding)
    y_ref, am_ref = ref.max_pool2d_forward(x, ks, stride, padding)
    assert_close(y, y_ref, F32_TOL, "max forward")
    assert np.array_equal(am.get(), am_ref), "max_pool2d argmax differs from the oracle"
    dy = randn(rng, *y_ref.shape)
    dx = ops.max_pool2d_backward(cp.asarray(dy), am, x.shape, ks, stride, padding)
    assert_close(dx, ref.max_pool2d_backward(dy, x, ks, stride, padding), F32_TOL, "max backward")
    for inc in (True, False):
        assert_close(ops.avg_pool2d_forward(xd, ks, stride, padding, inc),
                     ref.avg_pool2d_forward(x, ks, stride, padding, inc), F32_TOL, f"avg forward pad={inc}")
        assert_close(ops.avg_pool2d_backward(cp.asarray(dy), x.shape, ks, stride, padding, inc),
                     ref.avg_pool2d_backward(dy, x.shape, ks, stride, padding, inc), F32_TOL, f"avg backward pad={inc}")


@pytest.mark.parametrize("x_shape,ks,stride,padding", POOL_CASES)
def test_pooling(cp, rng, x_shape, ks, stride, padding):
    _pool_all_passes(cp, rng, x_shape, ks, stride, padding)


@FEW
@given(kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
       extra=st.tuples(st.integers(0, 5), st.integers(0, 5)), nc=st.tuples(st.integers(1, 2), st.integers(1, 3)))
def test_pooling_drawn(cp, kh, kw, sh, sw, extra, nc):
    pad = (kh // 2, kw // 2)
    _pool_all_passes(cp, np.random.default_rng(6), (*nc, kh + extra[0], kw + extra[1]), (kh, kw), (sh, sw), pad)


@pytest.mark.parametrize("size,offset", [(1031, 0), (1031, 1), (8, 0), (3, 0)],
                         ids=["aligned-v2", "unaligned-v1", "small", "tail-only"])
def test_activations(cp, rng, size, offset):
    x = randn(rng, size + offset)
    dy = randn(rng, size + offset)
    xd, dyd = cp.asarray(x)[offset:], cp.asarray(dy)[offset:]
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


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5, 7), (2, 70, 3, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm(cp, rng, shape, training):
    x = randn(rng, *shape) * 2 + 0.5
    c = shape[1]
    gamma, beta = randn(rng, c), randn(rng, c)
    rm, rv = randn(rng, c) * 0.1, np.abs(randn(rng, c)) + 0.5
    rmd, rvd = cp.asarray(rm), cp.asarray(rv)
    y, mean, invstd = ops.batchnorm_forward(cp.asarray(x), cp.asarray(gamma), cp.asarray(beta), rmd, rvd,
                                            training, momentum=0.1, eps=1e-5)
    y_ref, rm_ref, rv_ref = ref.batchnorm_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5)
    assert_close(y, y_ref, REDUCTION_TOL, "forward")
    assert_close(rmd, rm_ref, REDUCTION_TOL, "running_mean")
    assert_close(rvd, rv_ref, REDUCTION_TOL, "running_var")
    dy = randn(rng, *shape)
    dx, dg, db = ops.batchnorm_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(gamma), mean, invstd, training)
    dx_ref, dg_ref, db_ref = ref.batchnorm_backward(dy, x, gamma, training, rm, rv, 1e-5)
    assert_close(dx, dx_ref, REDUCTION_TOL, "dx")
    assert_close(dg, dg_ref, REDUCTION_TOL, "dgamma")
    assert_close(db, db_ref, REDUCTION_TOL, "dbeta")


@pytest.mark.parametrize("size,p,seed", [(1000, 0.5, 7), (37, 0.1, 2**32 + 5), (300, 0.9, 0)])
def test_dropout_masks_equal_the_cpu(cp, rng, size, p, seed):
    x = randn(rng, size)
    y, mask = ops.dropout_forward(cp.asarray(x), p, seed)
    y_cpu, mask_cpu = ops.dropout_forward(x, p, seed)
    assert np.array_equal(mask.get(), mask_cpu), "dropout mask differs from the CPU's"
    assert np.array_equal(mask.get(), ref.dropout_mask(size, p, seed)), "dropout mask differs from the oracle"
    keep = ref.dropout_mask(size, p, seed).astype(np.float64)
    assert_close(y, x * keep / (1 - p), F32_TOL, "dropout forward")
    dy = randn(rng, size)
    assert_close(ops.dropout_backward(cp.asarray(dy), mask, p), dy * keep / (1 - p), F32_TOL, "dropout backward")


@pytest.mark.parametrize("n,k", [(5, 10), (70, 3), (3, 100)])
def test_softmax_cross_entropy(cp, rng, n, k):
    z = randn(rng, n, k) * 3
    labels = rng.integers(0, k, n)
    loss, d = ops.softmax_cross_entropy(cp.asarray(z), cp.asarray(labels))
    loss_ref, d_ref = ref.softmax_cross_entropy(z, labels)
    assert_close(loss, loss_ref, F32_TOL, "loss")
    assert_close(d, d_ref, F32_TOL, "dlogits")


@pytest.mark.parametrize("shape", [(7, 1), (300, 5)])
def test_bce_with_logits(cp, rng, shape):
    z, t = randn(rng, *shape) * 3, rng.random(shape).astype(np.float32)
    loss, d = ops.bce_with_logits(cp.asarray(z), cp.asarray(t))
    loss_ref, d_ref = ref.bce_with_logits(z, t)
    assert_close(loss, loss_ref, F32_TOL, "loss")
    assert_close(d, d_ref, F32_TOL, "dlogits")


@pytest.mark.parametrize("momentum,wd,nesterov", [(0.0, 0.0, False), (0.9, 1e-2, False), (0.9, 0.0, True)])
def test_sgd_update(cp, rng, momentum, wd, nesterov):
    p, g, v = randn(rng, 333), randn(rng, 333), randn(rng, 333)
    pd, vd = cp.asarray(p), cp.asarray(v)
    ops.sgd_update(pd, cp.asarray(g), vd if momentum else None, 0.1, momentum, wd, nesterov)
    p_ref, v_ref = ref.sgd_step(p, g, v, 0.1, momentum, wd, nesterov)
    assert_close(pd, p_ref, F32_TOL, "param")
    if momentum:
        assert_close(vd, v_ref, F32_TOL, "velocity")


def test_adam_update(cp, rng):
    p, g, m, v = randn(rng, 257), randn(rng, 257), randn(rng, 257) * 0.1, np.abs(randn(rng, 257)) * 0.1
    pd, md, vd = cp.asarray(p), cp.asarray(m), cp.asarray(v)
    ops.adam_update(pd, cp.asarray(g), md, vd, 3, 1e-2, 0.9, 0.999, 1e-8, 1e-2)
    p_ref, m_ref, v_ref = ref.adam_step(p, g, m, v, 3, 1e-2, 0.9, 0.999, 1e-8, 1e-2)
    assert_close(pd, p_ref, F32_TOL, "param")
    assert_close(md, m_ref, F32_TOL, "m")
    assert_close(vd, v_ref, F32_TOL, "v")


@FEW
@given(size=st.integers(1, 700), c=st.integers(1, 9), hw=st.integers(1, 12), p=st.floats(0.05, 0.95))
def test_elementwise_drawn(cp, size, c, hw, p):
    rng = np.random.default_rng(size)
    test_activations(cp, rng, size, size % 2)
    test_batchnorm(cp, rng, (4, c, 1, hw), True)  # N*H*W >= 4: with 2 samples dx is exactly 0 (all rounding)
    test_dropout_masks_equal_the_cpu(cp, rng, size, p, size * 7919)


def test_linear(cp, rng):
    x, w, b = randn(rng, 4, 7), randn(rng, 3, 7), randn(rng, 3)
    assert_close(ops.linear_forward(cp.asarray(x), cp.asarray(w), cp.asarray(b)), ref.linear_forward(x, w, b),
                 F32_TOL, "linear forward")


def run_every_op(cp, rng):
    """One small case of every op group and conv version: launches every kernel of the family."""
    for version in CONV_VERSIONS:
        with conv_kernels(version):
            _conv_all_passes(cp, rng, *CONV_CASES[3].values)
    for tile in TF32_TILES:  # TF32 (2^-9: twice the per-product rounding; bounds in tests/ops/test_conv_kernels.py)
        with fastconv.using(tf32=True, conv_tile=tile):
            _conv_all_passes(cp, rng, *CONV_CASES[3].values, tol=2.0**-9)
    _pool_all_passes(cp, rng, (1, 2, 5, 5), (2, 2), (2, 2), (1, 1))
    for size, offset in ((13, 0), (13, 1)):
        test_activations(cp, rng, size, offset)
    for training in (True, False):
        test_batchnorm(cp, rng, (3, 4, 2, 2), training)
    test_dropout_masks_equal_the_cpu(cp, rng, 50, 0.5, 1)
    test_softmax_cross_entropy(cp, rng, 3, 5)
    test_bce_with_logits(cp, rng, (4, 1))
    test_sgd_update(cp, rng, 0.9, 0.0, False)
    test_adam_update(cp, rng)
    every_bandwidth_kernel(cp, rng)  # the pool/batchnorm/bias fast paths and multi-block reductions
    with fastconv.using(tf32=False):
        linear_cases.test_linear_forward_kernel(cp, 9, 130, 65)
        linear_cases.test_linear_backward_kernels(cp, 9, 130, 65)
    graph_cases.test_capture_kernels_against_float64(cp)  # adam_update_v2, accumulate, bias_add
    _multi_updates(cp, rng)


def _multi_updates(cp, rng):
    """sgd_update_multi / adam_update_multi (one launch for all tensors) equal one update per tensor."""
    shapes = [(70,), (3, 9)]
    host = [[randn(rng, *s) for s in shapes] for _ in range(4)]
    one, multi = ([[cp.asarray(a) for a in arrays] for arrays in host] for _ in range(2))
    ops.sgd_update_multi(multi[0], multi[1], multi[2], 0.05, 0.9, 1e-3, True)
    for p, g, v in zip(one[0], one[1], one[2]):
        ops.sgd_update(p, g, v, 0.05, 0.9, 1e-3, True)
    counters = [cp.asarray(np.array([[2, 0]] * len(shapes), np.int32)) for _ in range(2)]
    v_one, v_multi = ([cp.abs(a) for a in arrays[3]] for arrays in (one, multi))
    ops.adam_update_multi(multi[0], multi[1], multi[2], v_multi, [counters[1][i] for i in range(len(shapes))],
                          1e-2, 0.5, 0.999)
    for i in range(len(shapes)):
        ops.adam_update(one[0][i], one[1][i], one[2][i], v_one[i], counters[0][i], 1e-2, 0.5, 0.999)
    for a, b in zip(multi[0] + multi[2] + v_multi + [counters[1]], one[0] + one[2] + v_one + [counters[0]]):
        assert not np.isnan(a.get()).any()
        np.testing.assert_array_equal(a.get(), b.get())


def test_every_op_in_shuffled_thread_order(cp, rng):
    """The kernels' barriers hold: with the threads of each block run in a seeded random order
    between barriers, every op still matches the oracle."""
    with emu.shuffled(seed=12345):
        run_every_op(cp, rng)


def test_every_kernel_is_launched(cp, rng):
    """run_every_op launches every kernel that fastconv.backends.cuda.config.KERNELS lists."""
    with emu.trace() as t:
        run_every_op(cp, rng)
    listed = {name for names in KERNELS.values() for name in names}
    missing = sorted(listed - set(t.launch_names))
    assert not missing, f"kernels never launched by the ops: {missing}"


def test_linear_stays_fp32_under_the_tf32_setting(cp, rng):
    """The tf32 setting reaches conv only: linear runs kernels/linear.cu in fp32 (no cuBLAS, so a
    step with TF32 convs is still captured whole), with fp32 accuracy where TF32 is off by ~2^-11."""
    x, w = randn(rng, 8, 64), randn(rng, 5, 64)
    exact = ref.linear_forward(x, w)
    with fastconv.using(tf32=True), emu.trace() as t:
        y = ops.linear_forward(cp.asarray(x), cp.asarray(w))
    assert t.launch_names == ["linear_forward_v1"]
    assert_close(y, exact, F32_TOL, "linear_forward under tf32=True")
