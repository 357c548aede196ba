"""Hypothesis-drawn shapes for the CPU conv and pooling passes against the float64 loop oracles.

Shapes are tiny so 200 examples per pass stay fast; they cover odd sizes, stride larger than the
kernel, padding, dilation, groups and 1-pixel outputs. Each test counts the examples it ran,
asserts there were at least 200, and the counts appear in the terminal summary.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import oracle as ref
from fastconv import ops
from fastconv.testing import assert_close

MIN_EXAMPLES = 200
SETTINGS = settings(max_examples=MIN_EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
TOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture(autouse=True)
def summary(request):
    ref.install_summary(request.config)


def _count(name):
    ref.EXAMPLES[name] = ref.EXAMPLES.get(name, 0) + 1


def _run(name, inner):
    ref.EXAMPLES[name] = 0
    inner()
    assert ref.EXAMPLES[name] >= MIN_EXAMPLES, f"{name}: only {ref.EXAMPLES[name]} hypothesis examples ran"


def _check(out, want, dtype, key):
    assert out.dtype == np.dtype(dtype)
    ref.record(f"cpu-vs-loops (hypothesis) {key} {np.dtype(dtype).name}", assert_close(out, want, TOL[dtype], key))


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 3))
    c, k = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    # the smallest input the (dilated) kernel fits in once padded, plus a drawn extra
    h = max(1, dilation[0] * (r - 1) + 1 - 2 * padding[0]) + draw(st.integers(0, 6))
    w = max(1, dilation[1] * (s - 1) + 1 - 2 * padding[1]) + draw(st.integers(0, 6))
    n = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return dict(x_shape=(n, c, h, w), w_shape=(k, c // groups, r, s), stride=stride, padding=padding,
                dilation=dilation, groups=groups, dtype=dtype, seed=seed)


def _conv_data(case):
    rng = np.random.default_rng(case["seed"])
    dt = case["dtype"]
    x = rng.standard_normal(case["x_shape"]).astype(dt)
    w = rng.standard_normal(case["w_shape"]).astype(dt)
    kw = {key: case[key] for key in ("stride", "padding", "dilation", "groups")}
    n, _, h, wd = case["x_shape"]
    k, _, r, s = case["w_shape"]
    p = ref.out_size(h, r, kw["stride"][0], kw["padding"][0], kw["dilation"][0])
    q = ref.out_size(wd, s, kw["stride"][1], kw["padding"][1], kw["dilation"][1])
    dy = rng.standard_normal((n, k, p, q)).astype(dt)
    return x, w, dy, kw


def test_conv2d_forward_hypothesis():
    @SETTINGS
    @given(conv_cases())
    def inner(case):
        _count("conv2d_forward")
        note(case)
        x, w, _, kw = _conv_data(case)
        b = np.random.default_rng(case["seed"] + 1).standard_normal(w.shape[0]).astype(case["dtype"])
        _check(ops.conv2d_forward(x, w, b, **kw), ref.conv2d_forward(x, w, b, **kw), case["dtype"], "conv2d_forward")

    _run("conv2d_forward", inner)


def test_conv2d_backward_data_hypothesis():
    @SETTINGS
    @given(conv_cases())
    def inner(case):
        _count("conv2d_backward_data")
        note(case)
        x, w, dy, kw = _conv_data(case)
        _check(ops.conv2d_backward_data(dy, w, x.shape, **kw), ref.conv2d_backward_data(dy, w, x.shape, **kw),
               case["dtype"], "conv2d_backward_data")

    _run("conv2d_backward_data", inner)


def test_conv2d_backward_weight_hypothesis():
    @SETTINGS
    @given(conv_cases())
    def inner(case):
        _count("conv2d_backward_weight")
        note(case)
        x, w, dy, kw = _conv_data(case)
        _check(ops.conv2d_backward_weight(dy, x, w.shape, **kw), ref.conv2d_backward_weight(dy, x, w.shape, **kw),
               case["dtype"], "conv2d_backward_weight")

    _run("conv2d_backward_weight", inner)


@st.composite
def pool_cases(draw):
    ks = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))  # often larger than the kernel
    padding = (draw(st.integers(0, ks[0] // 2)), draw(st.integers(0, ks[1] // 2)))
    h = max(1, ks[0] - 2 * padding[0]) + draw(st.integers(0, 7))
    w = max(1, ks[1] - 2 * padding[1]) + draw(st.integers(0, 7))
    x_shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    return dict(x_shape=x_shape, ks=ks, stride=stride, padding=padding,
                count_include_pad=draw(st.booleans()), dtype=draw(st.sampled_from([np.float32, np.float64])),
                seed=draw(st.integers(0, 2 ** 32 - 1)))


def _pool_data(case, distinct):
    rng = np.random.default_rng(case["seed"])
    shape = case["x_shape"]
    if distinct:  # values 0.01 apart: no ties inside a max-pool window
        size = int(np.prod(shape))
        x = ((rng.permutation(size) - size / 2) * 0.01).reshape(shape)
    else:
        x = rng.standard_normal(shape) + 0.5
    x = x.astype(case["dtype"])
    n, c, h, w = shape
    p = ref.out_size(h, case["ks"][0], case["stride"][0], case["padding"][0])
    q = ref.out_size(w, case["ks"][1], case["stride"][1], case["padding"][1])
    dy = rng.standard_normal((n, c, p, q)).astype(case["dtype"])
    return x, dy


def test_max_pool2d_forward_hypothesis():
    @SETTINGS
    @given(pool_cases())
    def inner(case):
        _count("max_pool2d_forward")
        note(case)
        x, _ = _pool_data(case, distinct=True)
        y, argmax = ops.max_pool2d_forward(x, case["ks"], case["stride"], case["padding"])
        want_y, want_arg = ref.max_pool2d_forward(x, case["ks"], case["stride"], case["padding"])
        _check(y, want_y, case["dtype"], "max_pool2d_forward")
        np.testing.assert_array_equal(argmax, want_arg)

    _run("max_pool2d_forward", inner)


def test_max_pool2d_backward_hypothesis():
    @SETTINGS
    @given(pool_cases())
    def inner(case):
        _count("max_pool2d_backward")
        note(case)
        x, dy = _pool_data(case, distinct=True)
        _, argmax = ops.max_pool2d_forward(x, case["ks"], case["stride"], case["padding"])
        _check(ops.max_pool2d_backward(dy, argmax, x.shape, case["ks"], case["stride"], case["padding"]),
               ref.max_pool2d_backward(dy, x, case["ks"], case["stride"], case["padding"]), case["dtype"],
               "max_pool2d_backward")

    _run("max_pool2d_backward", inner)


def test_avg_pool2d_forward_hypothesis():
    @SETTINGS
    @given(pool_cases())
    def inner(case):
        _count("avg_pool2d_forward")
        note(case)
        x, _ = _pool_data(case, distinct=False)
        args = (case["ks"], case["stride"], case["padding"], case["count_include_pad"])
        _check(ops.avg_pool2d_forward(x, *args), ref.avg_pool2d_forward(x, *args), case["dtype"],
               "avg_pool2d_forward")

    _run("avg_pool2d_forward", inner)


def test_avg_pool2d_backward_hypothesis():
    @SETTINGS
    @given(pool_cases())
    def inner(case):
        _count("avg_pool2d_backward")
        note(case)
        x, dy = _pool_data(case, distinct=False)
        args = (case["ks"], case["stride"], case["padding"], case["count_include_pad"])
        _check(ops.avg_pool2d_backward(dy, x.shape, *args), ref.avg_pool2d_backward(dy, x.shape, *args),
               case["dtype"], "avg_pool2d_backward")

    _run("avg_pool2d_backward", inner)
