"""The backward-data ops' ``activation_output``: dx through the backward of the activation whose
outputs were x, in the pass that computes dx. conv2d_backward_data on every backend
(tests/backends.py) and every CUDA C path (the small-channel kernel's stores, the v3 GEMM's
epilogue with one phase and four, its split-K reduce, Winograd's output transform, the TF32 vec
kernels, the v1 reference kernel and a one-slice reduce), linear_backward_data unsplit and split,
against the float64 loops (tests/oracle.py) and the activation's derivative at its input z (the
kernels see only its output y = act(z)). On fastconv.emu the launches show where it went: no
activation kernel of its own. Then the errors, and a Sequential and a GAN step that hand an
activation's backward to the layer after it (Module.takes_input_activation)."""

import numpy as np
import pytest

import fastconv
import oracle as ref
from checks import TF32_L2, raises, randn
from fastconv import emu, ops
from fastconv.testing import F32_TOL, assert_close

ACTIVATION_KERNELS = {"relu_backward_v1", "relu_backward_v2", "leaky_relu_backward_v1", "leaky_relu_backward_v2",
                      "tanh_backward_v1", "tanh_backward_v2"}

# name: x (N, C, H, W), w (K, C/G, R, S), stride, padding, dilation, groups, settings, the emu kernel
# that shows the path
CASES = {
    "smallc": ((2, 1, 10, 10), (8, 1, 4, 4), 2, 1, 1, 1, {}, "conv2d_backward_data_smallc_v2"),
    "smallc-vec": ((2, 1, 9, 8), (8, 1, 2, 2), 1, 0, 1, 1, {}, "conv2d_backward_data_smallc_v2"),
    "smallc-odd-width": ((2, 2, 9, 7), (6, 1, 3, 3), 2, 0, 1, 2, {}, "conv2d_backward_data_smallc_v2"),
    "gemm-phases": ((2, 6, 10, 10), (8, 6, 4, 4), 2, 1, 1, 1, {}, "conv2d_backward_data_v3_t"),
    "gemm-stride1": ((2, 6, 7, 9), (8, 6, 2, 3), 1, 0, 1, 1, {}, "conv2d_backward_data_v3_t"),
    "gemm-split3": ((2, 6, 10, 10), (8, 6, 4, 4), 2, 1, 1, 1, {"conv_splits": 3}, "conv2d_splitk_reduce"),
    "winograd": ((2, 8, 6, 6), (8, 8, 3, 3), 1, 1, 1, 1, {}, "conv2d_winograd_output_v2_r3"),
    "tf32": ((2, 6, 10, 10), (8, 6, 4, 4), 2, 1, 1, 1, {"tf32": True}, "conv2d_backward_data_v3_tf32_t"),
    "v1": ((2, 6, 10, 10), (8, 6, 4, 4), 2, 1, 1, 1, {"conv_version": 1}, "conv2d_splitk_reduce_v1"),
}


def _activated(rng, shape, act, slope):
    """(z, y = act(z) as float32): an activation's input and the outputs the op is given."""
    z = randn(rng, shape, np.float32)
    return z, ref.activation(act, z, slope).astype(np.float32)


@pytest.mark.parametrize("act,slope", ref.FUSED)
@pytest.mark.parametrize("case", list(CASES))
def test_conv2d_backward_data_activation_output(backend, rng, case, act, slope):
    x_shape, w_shape, stride, padding, dil, groups, settings, kernel = CASES[case]
    if backend.kernels != "cupy" and ("conv_version" in settings or "conv_splits" in settings):
        pytest.skip("conv_version and conv_splits select the CUDA C family's conv paths")
    hyper = dict(stride=stride, padding=padding, dilation=dil, groups=groups)
    p, q = (ref.out_size(x_shape[2 + i], w_shape[2 + i], stride, padding, dil) for i in range(2))
    dy, w = randn(rng, (x_shape[0], w_shape[0], p, q), np.float32), randn(rng, w_shape, np.float32)
    z, y = _activated(rng, x_shape, act, slope)
    want = ref.activation_backward(act, ref.conv2d_backward_data(dy, w, x_shape, **hyper), z, slope)
    tol = TF32_L2 if settings.get("tf32") and backend.xp is not np else F32_TOL
    with fastconv.using(**settings), emu.trace() as t:
        dx = ops.conv2d_backward_data(backend.asarray(dy), backend.asarray(w), x_shape, **hyper, activation=act,
                                      negative_slope=slope, activation_output=backend.asarray(y),
                                      kernels=backend.kernels)
    assert_close(dx, want, tol, f"conv2d_backward_data {case} through {act}")
    if backend.name == "emu":
        names = t.launch_names
        assert any(n.startswith(kernel) for n in names), names
        assert not ACTIVATION_KERNELS & set(names), names


def test_conv2d_backward_activation_output_equals_two_passes(backend, rng):
    """conv2d_backward(input_activation=) gives the bytes of its backward-data pass followed by the
    activation's backward op (the same float arithmetic), and the same dw."""
    x_shape, w_shape = (2, 6, 10, 10), (8, 6, 4, 4)
    dy = backend.asarray(randn(rng, (2, 8, 5, 5), np.float32))
    w = backend.asarray(randn(rng, w_shape, np.float32))
    x = backend.asarray(_activated(rng, x_shape, "leaky_relu", 0.2)[1])
    kw = dict(stride=2, padding=1, kernels=backend.kernels)
    dx, dw = ops.conv2d_backward(dy, x, w, **kw, input_activation="leaky_relu", input_negative_slope=0.2)
    dx2, dw2 = ops.conv2d_backward(dy, x, w, **kw)
    assert np.array_equal(backend.get(dw), backend.get(dw2))
    dx2 = ops.leaky_relu_backward(dx2, x, 0.2, kernels=backend.kernels)
    assert np.isfinite(backend.get(dx)).all()
    assert np.array_equal(backend.get(dx), backend.get(dx2))


LINEAR_CASES = {"unsplit": (64, 48, 40), "split": (4, 10, 4096)}   # M, N (x's features), K (dy's columns)


@pytest.mark.parametrize("act,slope", ref.FUSED)
@pytest.mark.parametrize("case", list(LINEAR_CASES))
def test_linear_backward_data_activation_output(backend, rng, case, act, slope):
    m, n, k = LINEAR_CASES[case]
    dy, w = randn(rng, (m, k), np.float32), randn(rng, (k, n), np.float32)
    z, y = _activated(rng, (m, n), act, slope)
    want = ref.activation_backward(act, dy.astype(np.float64) @ w, z, slope)
    with emu.trace() as t:
        dx = ops.linear_backward_data(backend.asarray(dy), backend.asarray(w), activation=act, negative_slope=slope,
                                      activation_output=backend.asarray(y), kernels=backend.kernels)
    assert_close(dx, want, F32_TOL, f"linear_backward_data {case} through {act}")
    if backend.name == "emu":
        names = t.launch_names
        assert ("linear_splitk_reduce_v1" in names) == (case == "split"), names
        assert not ACTIVATION_KERNELS & set(names), names


def test_activation_output_checks():
    dy, w = np.ones((2, 3, 4, 4), np.float32), np.ones((3, 2, 1, 1), np.float32)
    y = np.ones((2, 2, 4, 4), np.float32)
    with raises(ValueError, "activation: got None with an activation_output"):
        ops.conv2d_backward_data(dy, w, (2, 2, 4, 4), activation_output=y)
    with raises(ValueError, "b: got a bias with an activation_output, expected None"):
        ops.conv2d_backward_data(dy, w, (2, 2, 4, 4), b=np.ones(2, np.float32), activation="relu", activation_output=y)
    with raises(ValueError, "activation_output: got shape (2, 2, 4, 5), expected (2, 2, 4, 4)"):
        ops.conv2d_backward_data(dy, w, (2, 2, 4, 4), activation="relu", activation_output=np.ones((2, 2, 4, 5),
                                                                                                   np.float32))
    with raises(TypeError, "activation_output: got dtype float64, expected float32"):
        ops.conv2d_backward_data(dy, w, (2, 2, 4, 4), activation="tanh", activation_output=y.astype(np.float64))
    with raises(ValueError, "activation: got 'gelu'"):
        ops.conv2d_backward(dy, y, w, input_activation="gelu")
    with raises(ValueError, "activation_output: got shape (2, 3), expected (2, 4)"):
        ops.linear_backward_data(np.ones((2, 5), np.float32), np.ones((5, 4), np.float32), activation="relu",
                                 activation_output=np.ones((2, 3), np.float32))
    with raises(ValueError, "activation: got None with an activation_output"):
        ops.linear_backward_data(np.ones((2, 5), np.float32), np.ones((5, 4), np.float32),
                                 activation_output=np.ones((2, 4), np.float32))
