"""Hypothesis-drawn conv2d shapes: every CPU pass against the float64 loop oracles (at least
MIN_EXAMPLES examples each, counted in the terminal summary), a few drawn cases on every backend,
and fastconv check's judgement of drawn cases on the GPU.

CPU shapes are tiny so 200 examples per pass stay fast; they cover odd sizes, stride larger than the
kernel, padding, dilation, groups and 1-pixel outputs."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracle as ref
from backends import CONV_VERSIONS, FEW, GPU, GPU_DRAWN, conv_kernels, judge, skip_unless_conv_versions_apply
from checks import check_drawn, run_drawn
from fastconv import check, ops, settings
from fastconv.testing import F32_TOL, assert_close
from ops.test_conv import conv_all_passes


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


# pass -> its call on fastconv.ops or on the oracle module, given (x, w, b, dy, hyper-parameters)
_PASSES = {
    "conv2d_forward": lambda m, x, w, b, dy, kw: m.conv2d_forward(x, w, b, **kw),
    "conv2d_backward_data": lambda m, x, w, b, dy, kw: m.conv2d_backward_data(dy, w, x.shape, **kw),
    "conv2d_backward_weight": lambda m, x, w, b, dy, kw: m.conv2d_backward_weight(dy, x, w.shape, **kw),
}


@pytest.mark.parametrize("name", list(_PASSES))
def test_conv2d_hypothesis(name):
    call = _PASSES[name]

    def check_case(case):
        x, w, dy, kw = _conv_data(case)
        b = np.random.default_rng(case["seed"] + 1).standard_normal(w.shape[0]).astype(case["dtype"])
        check_drawn(call(ops, x, w, b, dy, kw), call(ref, x, w, b, dy, kw), case["dtype"], name)

    run_drawn(name, conv_cases(), check_case)


# ---- every backend: a few drawn cases -------------------------------------------------------

@st.composite
def backend_conv_specs(draw):
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
@given(spec=backend_conv_specs(), version=st.sampled_from(CONV_VERSIONS))
def test_conv2d_drawn(backend, spec, version):
    with conv_kernels(version):
        conv_all_passes(backend, np.random.default_rng(5), *spec)


@FEW.__class__(parent=FEW, max_examples=20)
@given(spec=backend_conv_specs(), wide=st.sampled_from([1, 6]), act=st.sampled_from(ref.FUSED),
       splits=st.sampled_from([None, 2]))
def test_conv2d_backward_data_activation_output_drawn(backend, spec, wide, act, splits):
    """Drawn shapes through backward-data's activation_output, against the float64 oracle: the
    epilogue's EPI_GRAD on the CUDA C paths (``wide``: 6x the channels, past the small-channel
    kernels to the GEMM and Winograd; a split count of 2 for the GEMM's reduce)."""
    (n, c, h, wd), (k, cg, r, s), stride, pad, dil, g = spec
    x_shape, w_shape = (n, c * wide, h, wd), (k, cg * wide, r, s)
    rng = np.random.default_rng(6)
    hyper = dict(stride=stride, padding=pad, dilation=dil, groups=g)
    p, q = (ref.out_size(x_shape[2 + i], w_shape[2 + i], stride[i], pad[i], dil[i]) for i in range(2))
    dy, w = (rng.standard_normal(shape).astype(np.float32) for shape in ((x_shape[0], w_shape[0], p, q), w_shape))
    z = rng.standard_normal(x_shape).astype(np.float32)
    y = ref.activation(act[0], z, act[1]).astype(np.float32)
    want = ref.activation_backward(act[0], ref.conv2d_backward_data(dy, w, x_shape, **hyper), z, act[1])
    with settings.using(conv_splits=splits if backend.kernels == "cupy" else None):
        dx = ops.conv2d_backward_data(backend.asarray(dy), backend.asarray(w), x_shape, **hyper, activation=act[0],
                                      negative_slope=act[1], activation_output=backend.asarray(y),
                                      kernels=backend.kernels)
    assert_close(dx, want, F32_TOL, f"conv2d_backward_data {spec} through {act[0]}, splits {splits}")


# ---- GPU: fastconv check's judgement of drawn cases -------------------------------------------

pairs = st.tuples(st.integers(1, 3), st.integers(1, 3))


@st.composite
def gpu_conv_specs(draw):
    g = draw(st.sampled_from([1, 1, 2, 3]))
    n = draw(st.integers(1, 4))
    c = g * draw(st.integers(1, 8))
    k = g * draw(st.integers(1, 70))
    r, s = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    stride, dil = draw(pairs), draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    pad = draw(st.tuples(st.integers(0, 2), st.integers(0, 2)))
    spec = (n, c, h, w, k, r, s, stride, pad, dil, g)
    if not check._conv_ok(spec):
        spec = (n, c, h + 2 * r * dil[0], w + 2 * s * dil[1], k, r, s, stride, pad, dil, g)
    return spec


@pytest.mark.parametrize("backend", GPU, indirect=True)
@pytest.mark.parametrize("version", CONV_VERSIONS)
@GPU_DRAWN
@given(spec=gpu_conv_specs())
def test_conv2d_gpu_drawn(backend, version, spec):
    skip_unless_conv_versions_apply(backend, version)
    with conv_kernels(version):
        judge("conv2d", spec, backend.name)
