"""conv_transpose2d_forward with its bias and a fused activation on every backend (tests/backends.py)
and every CUDA C backward-data path, against the float64 loops (tests/oracle.py) then the
activation: the small-channel kernel's stores, the v3 GEMM's epilogue (one phase and four), its
split-K reduce, Winograd's output transform, the TF32 vec kernels, the v1 reference kernel (then a
one-slice reduce), and output_padding reaching the stride (x extended by zeros, whose extra output
rows the taps still reach). On fastconv.emu the launches show where they went: no bias_add_v1 and
no activation kernel of its own."""

import numpy as np
import pytest

import fastconv
import oracle as ref
from checks import TF32_L2, raises, randn
from fastconv import emu, ops
from fastconv.testing import F32_TOL, assert_close

# name: x (N, C_in, H, W), w (C_in, C_out, R, S), stride, padding, output_padding, dilation, settings,
# the emu kernel that shows the path
CASES = {
    "smallc": ((2, 8, 5, 5), (8, 1, 4, 4), 2, 1, 0, 1, {}, "conv2d_backward_data_smallc_v2"),
    "gemm-phases": ((2, 8, 5, 5), (8, 6, 4, 4), 2, 1, 0, 1, {}, "conv2d_backward_data_v3_t"),
    "gemm-stride1": ((2, 8, 6, 6), (8, 6, 2, 3), 1, 0, 0, 1, {}, "conv2d_backward_data_v3_t"),
    "gemm-split3": ((2, 8, 5, 5), (8, 6, 4, 4), 2, 1, 0, 1, {"conv_splits": 3}, "conv2d_splitk_reduce"),
    "winograd": ((2, 8, 6, 6), (8, 8, 3, 3), 1, 1, 0, 1, {}, "conv2d_winograd_output_v2_r3"),
    "tf32": ((2, 8, 5, 5), (8, 6, 4, 4), 2, 1, 0, 1, {"tf32": True}, "conv2d_backward_data_v3_tf32_t"),
    "v1": ((2, 8, 5, 5), (8, 6, 4, 4), 2, 1, 0, 1, {"conv_version": 1}, "conv2d_splitk_reduce_v1"),
    "output-padding": ((2, 4, 5, 5), (4, 3, 3, 3), 1, 1, 1, 2, {}, "conv2d_backward_data_smallc_v2"),
}


@pytest.mark.parametrize("act,slope", ref.FUSED + [(None, 0.0)])
@pytest.mark.parametrize("case", list(CASES))
def test_conv_transpose2d_bias_and_activation(backend, rng, case, act, slope):
    x_shape, w_shape, stride, padding, opad, dil, settings, kernel = CASES[case]
    if backend.kernels != "cupy" and ("conv_version" in settings or "conv_splits" in settings):
        pytest.skip("conv_version and conv_splits select the CUDA C family's conv paths")
    x, w, b = randn(rng, x_shape, np.float32), randn(rng, w_shape, np.float32), randn(rng, (w_shape[1],), np.float32)
    hyper = dict(stride=stride, padding=padding, output_padding=opad, dilation=dil)
    z = ref.conv_transpose2d_forward(x, w, b, **hyper)
    want = z if act is None else ref.activation(act, z, slope)
    tol = TF32_L2 if settings.get("tf32") and backend.xp is not np else F32_TOL
    with fastconv.using(**settings), emu.trace() as t:
        y = ops.conv_transpose2d_forward(*(backend.asarray(a) for a in (x, w, b)), **hyper, activation=act,
                                         negative_slope=slope, kernels=backend.kernels)
    assert_close(y, want, tol, f"conv_transpose2d {case} + bias + {act}")
    if backend.name == "emu":
        names = t.launch_names
        assert any(n.startswith(kernel) for n in names), names
        assert not {"bias_add_v1", "relu_forward_v2", "leaky_relu_forward_v2", "tanh_forward_v2"} & set(names), names


def test_conv2d_backward_data_bias_checks():
    dy, w = np.ones((2, 3, 4, 4), np.float32), np.ones((3, 2, 1, 1), np.float32)
    with raises(ValueError, "b: got shape (3,), expected (2,) to match x_shape's channels"):
        ops.conv2d_backward_data(dy, w, (2, 2, 4, 4), b=np.ones(3, np.float32))
    with raises(ValueError, "activation: got 'gelu'"):
        ops.conv2d_backward_data(dy, w, (2, 2, 4, 4), activation="gelu")
    with raises(TypeError, "b: got dtype float64, expected float32"):
        ops.conv_transpose2d_forward(np.ones((2, 3, 4, 4), np.float32), np.ones((3, 2, 1, 1), np.float32),
                                     np.ones(2), activation="tanh")
