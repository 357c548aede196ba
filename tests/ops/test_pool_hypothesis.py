"""Hypothesis-drawn pooling shapes: every CPU pass against the float64 loop oracles (at least
MIN_EXAMPLES examples each, counted in the terminal summary; stride often larger than the kernel,
padding, 1-pixel outputs), a few drawn cases on every backend, and fastconv check's judgement of
drawn cases on the GPU."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracle as ref
from backends import FEW, GPU, GPU_DRAWN, judge
from checks import check_drawn, run_drawn
from fastconv import ops
from ops.test_pool import pool_all_passes


@st.composite
def cpu_pool_cases(draw):
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
    def check_case(case):
        x, _ = _pool_data(case, distinct=True)
        y, argmax = ops.max_pool2d_forward(x, case["ks"], case["stride"], case["padding"])
        want_y, want_arg = ref.max_pool2d_forward(x, case["ks"], case["stride"], case["padding"])
        check_drawn(y, want_y, case["dtype"], "max_pool2d_forward")
        np.testing.assert_array_equal(argmax, want_arg)

    run_drawn("max_pool2d_forward", cpu_pool_cases(), check_case)


def test_max_pool2d_backward_hypothesis():
    def check_case(case):
        x, dy = _pool_data(case, distinct=True)
        _, argmax = ops.max_pool2d_forward(x, case["ks"], case["stride"], case["padding"])
        check_drawn(ops.max_pool2d_backward(dy, argmax, x.shape, case["ks"], case["stride"], case["padding"]),
                    ref.max_pool2d_backward(dy, x, case["ks"], case["stride"], case["padding"]), case["dtype"],
                    "max_pool2d_backward")

    run_drawn("max_pool2d_backward", cpu_pool_cases(), check_case)


# pass -> its call on fastconv.ops or on the oracle module, given (x, dy, hyper-parameters)
_AVG_PASSES = {
    "avg_pool2d_forward": lambda m, x, dy, args: m.avg_pool2d_forward(x, *args),
    "avg_pool2d_backward": lambda m, x, dy, args: m.avg_pool2d_backward(dy, x.shape, *args),
}


@pytest.mark.parametrize("name", list(_AVG_PASSES))
def test_avg_pool2d_hypothesis(name):
    call = _AVG_PASSES[name]

    def check_case(case):
        x, dy = _pool_data(case, distinct=False)
        args = (case["ks"], case["stride"], case["padding"], case["count_include_pad"])
        check_drawn(call(ops, x, dy, args), call(ref, x, dy, args), case["dtype"], name)

    run_drawn(name, cpu_pool_cases(), check_case)


# ---- every backend: a few drawn cases -------------------------------------------------------

@FEW
@given(kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
       extra=st.tuples(st.integers(0, 5), st.integers(0, 5)), nc=st.tuples(st.integers(1, 2), st.integers(1, 3)))
def test_pooling_drawn(backend, kh, kw, sh, sw, extra, nc):
    pad = (kh // 2, kw // 2)
    pool_all_passes(backend, np.random.default_rng(6), (*nc, kh + extra[0], kw + extra[1]), (kh, kw), (sh, sw), pad)


# ---- GPU: fastconv check's judgement of drawn cases -------------------------------------------

@st.composite
def pool_specs(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pad = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h, w = draw(st.integers(kh, 16)), draw(st.integers(kw, 16))
    stride = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 5)), h, w, (kh, kw), stride, pad)


@pytest.mark.parametrize("backend", GPU, indirect=True)
@GPU_DRAWN
@given(spec=pool_specs())
def test_pooling_gpu_drawn(backend, spec):
    judge("pooling", spec, backend.name)
