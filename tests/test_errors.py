"""Bad inputs raise TypeError/ValueError whose message names the argument, the value received and
what was expected (DESIGN.md, "Errors users will meet")."""

import re
import sys
import types

import numpy as np
import pytest

import fastconv.nn as nn
from fastconv import backend, ops, settings
from fastconv.optim import SGD, Adam


def arr(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


X = arr(2, 3, 8, 8)
W = arr(4, 3, 3, 3, seed=1)


def raises(exc, *parts):
    """pytest.raises matching every literal part of the message, in order."""
    return pytest.raises(exc, match=".*".join(re.escape(p) for p in parts))


# ---- shapes and dtypes ---------------------------------------------------------------------

@pytest.mark.parametrize("bad,name,shape", [
    (arr(3, 8, 8), "x", "(3, 8, 8) (3-d)"),
    (arr(1, 2, 3, 8, 8), "x", "(1, 2, 3, 8, 8) (5-d)"),
])
def test_conv_wrong_ndim(bad, name, shape):
    with raises(ValueError, f"{name}: got an array of shape {shape}", "expected 4-d"):
        ops.conv2d_forward(bad, W)


def test_conv_weight_wrong_ndim():
    with raises(ValueError, "w: got an array of shape (4, 3, 3)", "expected 4-d"):
        ops.conv2d_forward(X, arr(4, 3, 3))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.uint8, np.bool_])
def test_conv_wrong_dtype(dtype):
    with raises(TypeError, f"x: got dtype {np.dtype(dtype)}", "expected float32 or float64"):
        ops.conv2d_forward(X.astype(dtype), W)
    with raises(TypeError, f"w: got dtype {np.dtype(dtype)}", "expected float32 or float64"):
        ops.conv2d_forward(X, W.astype(dtype))


def test_mixed_float_dtypes():
    # the parameter sets the dtype: an input of another dtype is the one blamed
    with raises(TypeError, "x: got dtype float32", "expected float64 (the dtype of w)"):
        ops.conv2d_forward(X, W.astype(np.float64))
    with raises(TypeError, "b: got dtype float64", "expected float32"):
        ops.conv2d_forward(X, W, np.ones(4))


def test_not_an_array():
    with raises(TypeError, "x: got list", "expected"):
        ops.conv2d_forward(X.tolist(), W)


def test_channel_mismatch():
    with raises(ValueError, "w: got shape (4, 2, 3, 3)", "expected 3 input channels per group", "3 channels"):
        ops.conv2d_forward(X, arr(4, 2, 3, 3))


def test_groups_must_divide_channels():
    with raises(ValueError, "groups: got 2", "expected a divisor of the 3 input channels"):
        ops.conv2d_forward(X, arr(4, 1, 3, 3), groups=2)
    with raises(ValueError, "groups: got 2", "expected a divisor of the 3 output channels"):
        ops.conv2d_forward(arr(2, 4, 8, 8), arr(3, 2, 3, 3), groups=2)
    with raises(ValueError, "groups: got 0", "expected a positive int"):
        ops.conv2d_forward(X, W, groups=0)


def test_kernel_larger_than_padded_input():
    with raises(ValueError, "w: got a 7x7 kernel", "larger than the padded input 6x6", "expected a kernel that fits"):
        ops.conv2d_forward(arr(1, 3, 4, 4), arr(2, 3, 7, 7), padding=1)
    with raises(ValueError, "w: got a 3x3 kernel (dilation (4, 4))", "larger than the padded input 8x8"):
        ops.conv2d_forward(X, W, dilation=4)


@pytest.mark.parametrize("arg,value,bound", [("stride", 0, 1), ("stride", -1, 1), ("stride", (1, 0), 1),
                                              ("dilation", 0, 1), ("dilation", (-2, 1), 1), ("padding", -1, 0)])
def test_conv_hyper_parameters_out_of_range(arg, value, bound):
    with raises(ValueError, f"{arg}: got {value!r}", f"expected values >= {bound}"):
        ops.conv2d_forward(X, W, **{arg: value})


@pytest.mark.parametrize("value", [1.5, "2", (1, 2, 3), True])
def test_conv_hyper_parameters_wrong_type(value):
    with raises(TypeError, f"stride: got {value!r}", "expected an int or a pair of ints"):
        ops.conv2d_forward(X, W, stride=value)


def test_conv_backward_shape_checks():
    dy = arr(2, 4, 6, 6)
    with raises(ValueError, "dy: got shape (2, 4, 5, 6)", "expected (2, 4, 6, 6)"):
        ops.conv2d_backward_data(arr(2, 4, 5, 6), W, X.shape)
    with raises(ValueError, "dy: got shape (2, 5, 6, 6)", "expected (2, 4, 6, 6)"):
        ops.conv2d_backward_weight(arr(2, 5, 6, 6), X, W.shape)
    with raises(ValueError, "x_shape: got (2, 3, 8)", "expected 4 positive ints"):
        ops.conv2d_backward_data(dy, W, (2, 3, 8))
    with raises(ValueError, "w_shape: got (4, 3, 0, 3)", "expected 4 positive ints"):
        ops.conv2d_backward_weight(dy, X, (4, 3, 0, 3))


def test_conv_bias_shape():
    with raises(ValueError, "b: got shape (3,)", "expected (4,)"):
        ops.conv2d_forward(X, W, arr(3))


def test_conv_transpose_checks():
    x = arr(2, 4, 5, 5)
    with raises(ValueError, "w: got shape (3, 2, 3, 3)", "expected dim 0 = 4"):
        ops.conv_transpose2d_forward(x, arr(3, 2, 3, 3))
    with raises(ValueError, "output_padding: got (2, 2)", "expected values smaller than stride (2, 2)"):
        ops.conv_transpose2d_forward(x, arr(4, 2, 3, 3), stride=2, output_padding=2)
    with raises(ValueError, "groups: got 3", "expected a positive divisor of the 4 channels of x"):
        ops.conv_transpose2d_forward(x, arr(4, 2, 3, 3), groups=3)


# ---- pooling -------------------------------------------------------------------------------

def test_pool_errors():
    x = arr(1, 2, 4, 4)
    with raises(ValueError, "kernel_size: got (7, 7)", "larger than the padded input 6x6"):
        ops.max_pool2d_forward(x, 7, padding=1)
    with raises(ValueError, "kernel_size: got (5, 5)", "larger than the padded input 4x4"):
        ops.avg_pool2d_forward(x, 5)
    with raises(ValueError, "padding: got (2, 2)", "expected at most half the kernel size (3, 3)"):
        ops.max_pool2d_forward(x, 3, padding=2)
    with raises(ValueError, "stride: got 0", "expected values >= 1"):
        ops.avg_pool2d_forward(x, 2, stride=0)
    with raises(ValueError, "kernel_size: got 0", "expected values >= 1"):
        ops.max_pool2d_forward(x, 0)
    with raises(ValueError, "x: got an array of shape (2, 4, 4) (3-d)", "expected 4-d"):
        ops.max_pool2d_forward(x[0], 2)
    with raises(TypeError, "x: got dtype int64", "expected float32 or float64"):
        ops.avg_pool2d_forward(x.astype(np.int64), 2)
    y, argmax = ops.max_pool2d_forward(x, 2)
    with raises(TypeError, "argmax: got dtype int64", "expected int32"):
        ops.max_pool2d_backward(y, argmax.astype(np.int64), x.shape, 2)
    with raises(ValueError, "dy: got shape (1, 2, 3, 3)", "expected (1, 2, 2, 2)"):
        ops.avg_pool2d_backward(arr(1, 2, 3, 3), x.shape, 2)


# ---- the other ops -------------------------------------------------------------------------

def test_linear_errors():
    with raises(ValueError, "x: got shape (4, 5)", "expected 6 features"):
        ops.linear_forward(arr(4, 5), arr(3, 6))
    with raises(ValueError, "x: got an array of shape (4, 5, 1) (3-d)", "expected 2-d"):
        ops.linear_forward(arr(4, 5, 1), arr(3, 5))
    with raises(TypeError, "x: got dtype float16", "expected float32 or float64"):
        ops.linear_forward(arr(4, 5).astype(np.float16), arr(3, 5))


def test_activation_errors():
    with raises(ValueError, "negative_slope: got 1.5", "expected a number in [0, 1)"):
        ops.leaky_relu_forward(arr(3), 1.5)
    with raises(ValueError, "dy: got shape (3,)", "expected (4,)"):
        ops.relu_backward(arr(3), arr(4))
    with raises(TypeError, "x: got dtype int32", "expected float32 or float64"):
        ops.relu_forward(np.arange(4, dtype=np.int32))


def test_batchnorm_errors():
    x = arr(4, 3, 2, 2)
    ones = np.ones(3, np.float32)
    with raises(ValueError, "gamma: got shape (2,)", "expected (3,)"):
        ops.batchnorm_forward(x, np.ones(2, np.float32), ones, ones, ones, True)
    with raises(ValueError, "x: got shape (1, 3)", "expected more than 1 value per channel"):
        ops.batchnorm_forward(arr(1, 3), ones, ones, ones, ones, True)
    with raises(ValueError, "x: got an array of shape (4, 3, 2) (3-d)", "expected 2 or 4-d"):
        ops.batchnorm_forward(arr(4, 3, 2), ones, ones, ones, ones, True)


def test_loss_errors():
    z = arr(4, 3)
    with raises(TypeError, "labels: got float32", "expected a 1-d integer array"):
        ops.softmax_cross_entropy(z, np.zeros(4, np.float32))
    with raises(ValueError, "labels: got values in [0, 3]", "expected [0, 3)"):
        ops.softmax_cross_entropy(z, np.array([0, 1, 2, 3]))
    with raises(ValueError, "labels: got 3 labels", "expected 4"):
        ops.softmax_cross_entropy(z, np.array([0, 1, 2]))
    with raises(ValueError, "targets: got shape (4, 2)", "expected (4, 3)"):
        ops.bce_with_logits(z, arr(4, 2))


def test_dropout_errors():
    for p in (1.0, -0.1, 2):
        with raises(ValueError, f"p: got {p!r}", "expected a probability in [0, 1)"):
            ops.dropout_forward(arr(5), p, 0)
    with raises(TypeError, "mask: got dtype bool", "expected uint8"):
        ops.dropout_backward(arr(5), np.ones(5, bool), 0.5)


def test_optimizer_update_errors():
    p = arr(3, 2)
    with raises(ValueError, "velocity: got None", "expected an array when momentum != 0"):
        ops.sgd_update(p, arr(3, 2), None, 0.1, momentum=0.9)
    with raises(ValueError, "grad: got float32 (2, 3)", "expected float32 (3, 2)"):
        ops.sgd_update(p, arr(2, 3), None, 0.1)
    with raises(ValueError, "step: got 0", "expected an int >= 1"):
        ops.adam_update(p, arr(3, 2), np.zeros_like(p), np.zeros_like(p), 0, 1e-3)
    with raises(ValueError, "grad: got a non-contiguous array", "expected a C-contiguous one"):
        ops.sgd_update(arr(2, 2), arr(2, 2).T, None, 0.1)


# ---- numpy and cupy arrays mixed (simulated without CuPy) ----------------------------------

class _FakeCupyArray:
    """Stands in for cupy.ndarray: the dispatch only looks at the type, shape, ndim and dtype."""

    def __init__(self, a):
        self._a = a
        self.shape, self.ndim, self.dtype, self.size = a.shape, a.ndim, a.dtype, a.size


@pytest.fixture
def fake_cupy(monkeypatch):
    mod = types.ModuleType("cupy")
    mod.ndarray = _FakeCupyArray
    monkeypatch.setitem(sys.modules, "cupy", mod)
    return mod


def test_fake_cupy_is_seen_as_cupy(fake_cupy):
    assert backend.is_cupy_array(_FakeCupyArray(X))
    assert backend.array_module(_FakeCupyArray(X)) is fake_cupy


def test_numpy_cupy_mix_in_conv(fake_cupy):
    with raises(TypeError, "w: got a cupy array while x is a numpy array", "mixed devices", "to_device"):
        ops.conv2d_forward(X, _FakeCupyArray(W))
    with raises(TypeError, "w: got a numpy array while x is a cupy array", "mixed devices"):
        ops.conv2d_forward(_FakeCupyArray(X), W)
    with raises(TypeError, "mixed devices"):
        ops.conv2d_forward(X, W, _FakeCupyArray(arr(4)))


def test_numpy_cupy_mix_in_other_ops(fake_cupy):
    with raises(TypeError, "mixed devices"):
        ops.linear_forward(arr(2, 3), _FakeCupyArray(arr(4, 3)))
    with raises(TypeError, "mixed devices"):
        ops.relu_backward(arr(3), _FakeCupyArray(arr(3)))
    with raises(TypeError, "mixed devices"):
        ops.sgd_update(arr(3), _FakeCupyArray(arr(3)), None, 0.1)


def test_numpy_cupy_mix_through_a_layer(fake_cupy):
    layer = nn.Conv2d(3, 4, 3, rng=np.random.default_rng(0))
    with raises(TypeError, "mixed devices"):
        layer.forward(_FakeCupyArray(X))


def test_cupy_float64_rejected(fake_cupy):
    with raises(TypeError, "x: got dtype float64 on the GPU", "expected float32"):
        ops.relu_forward(_FakeCupyArray(arr(3, dtype=np.float64)))


# ---- layers, optimizers, devices -----------------------------------------------------------

def test_layer_constructor_errors():
    with raises(ValueError, "groups: got 2", "expected a divisor of in_channels=3"):
        nn.Conv2d(3, 4, 3, groups=2)
    with raises(ValueError, "stride: got 0", "expected values >= 1"):
        nn.Conv2d(3, 4, 3, stride=0)
    with raises(ValueError, "dilation: got -1", "expected values >= 1"):
        nn.Conv2d(3, 4, 3, dilation=-1)
    with raises(ValueError, "in_channels: got 0", "expected a positive int"):
        nn.Conv2d(0, 4, 3)
    with raises(ValueError, "p: got 1.0", "expected a probability in [0, 1)"):
        nn.Dropout(1.0)
    with raises(ValueError, "negative_slope: got -0.1", "expected a number in [0, 1)"):
        nn.LeakyReLU(-0.1)
    with raises(TypeError, "got int", "expected a fastconv.nn.Module"):
        nn.Sequential(nn.ReLU(), 3)


def test_layer_forward_errors():
    rng = np.random.default_rng(0)
    with raises(ValueError, "w: got shape (4, 3, 3, 3)", "expected 5 input channels per group", "x with 5 channels"):
        nn.Conv2d(3, 4, 3, rng=rng).forward(arr(2, 5, 8, 8))
    with raises(ValueError, "x: got shape (2, 7)", "expected 5 features"):
        nn.Linear(5, 2, rng=rng).forward(arr(2, 7))
    with raises(ValueError, "x: got shape (2, 3)", "expected a 4-d input for BatchNorm2d"):
        nn.BatchNorm2d(3).forward(arr(2, 3))
    with raises(ValueError, "x: got shape (2, 7)", "expected (N, 12)"):
        nn.Unflatten((3, 2, 2)).forward(arr(2, 7))
    with raises(TypeError, "x: got dtype float16", "expected float32 or float64"):
        nn.Conv2d(3, 4, 3, rng=rng).forward(X.astype(np.float16))
    # a float64 input to a float32 layer: the op names the input, whose dtype differs from the weight's
    with raises(TypeError, "x: got dtype float64", "expected float32 (the dtype of w)"):
        nn.Linear(5, 2, rng=rng).forward(arr(2, 5, dtype=np.float64))


def test_loss_backward_before_forward():
    with raises(RuntimeError, "CrossEntropyLoss.backward called before forward"):
        nn.CrossEntropyLoss().backward()


def test_optimizer_constructor_errors():
    params = nn.Linear(2, 2, rng=np.random.default_rng(0)).parameters()
    with raises(ValueError, "lr: got 0", "expected a number in (0, inf)"):
        SGD(params, 0)
    with raises(ValueError, "params: got an empty list", "expected the parameters"):
        SGD([], 0.1)
    with raises(ValueError, "nesterov: got True with momentum=0", "expected momentum > 0"):
        SGD(params, 0.1, nesterov=True)
    with raises(ValueError, "momentum: got 1.0", "expected a number in [0, 1)"):
        SGD(params, 0.1, momentum=1.0)
    with raises(ValueError, "betas[1]: got 1.0", "expected a number in [0, 1)"):
        Adam(params, betas=(0.9, 1.0))
    with raises(TypeError, "betas: got 0.9", "expected a pair"):
        Adam(params, betas=0.9)
    with raises(ValueError, "eps: got -1", "expected a number in (0, inf)"):
        Adam(params, eps=-1)
    with raises(ValueError, "weight_decay: got -0.1", "expected a number in [0, inf)"):
        SGD(params, 0.1, weight_decay=-0.1)
    with raises(TypeError, "lr: got 'a' (str)", "expected a real number"):
        SGD(params, "a")
    with raises(ValueError, "lr: got nan", "expected a number in (0, inf)"):
        Adam(params, lr=float("nan"))


def test_device_errors(monkeypatch):
    layer = nn.Linear(2, 2, rng=np.random.default_rng(0))
    with raises(ValueError, "device: got 'gpu'", "expected 'cpu' or 'cuda'"):
        layer.to("gpu")
    with raises(ValueError, "kernels: got 'triton'", "expected one of 'cupy', 'numba'"):
        layer.to("cpu", kernels="triton")
    with raises(ValueError, "family: got 'cuda'", "expected one of 'cupy', 'numba'"):
        backend.set_kernel_family("cuda")
    monkeypatch.setenv("FASTCONV_KERNELS", "bogus")
    settings.reset()  # the variable is read once, on first use after this
    with raises(ValueError, "FASTCONV_KERNELS: got 'bogus'", "expected one of"):
        backend.kernel_family()


def test_cuda_without_cupy(monkeypatch):
    """With CuPy absent, asking for the GPU says so and how to install it."""
    monkeypatch.setattr(backend, "cupy_module", lambda: None)
    with raises(RuntimeError, "device: 'cuda' asked for, but CuPy is not installed", "pip install"):
        nn.Linear(2, 2, rng=np.random.default_rng(0)).to("cuda")


def test_empty_arrays_are_rejected():
    with raises(ValueError, "x: got an empty array of shape (0, 3, 5, 5)", "expected at least one element"):
        ops.conv2d_forward(np.zeros((0, 3, 5, 5), np.float32), W)
    with raises(ValueError, "logits: got an empty array of shape (0, 4)", "expected at least one element"):
        ops.softmax_cross_entropy(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    with raises(ValueError, "w: got an empty array", "expected at least one element"):
        ops.conv2d_forward(X, np.zeros((0, 3, 3, 3), np.float32))


def test_numbers_given_as_strings_name_the_argument():
    with raises(TypeError, "p: got 'x' (str)", "expected a real number"):
        nn.Dropout("x")
    with raises(TypeError, "p: got 'x' (str)", "expected a real number"):
        ops.dropout_forward(arr(3, 4), "x", 0)
    with raises(TypeError, "seed: got 1.5", "expected an int"):
        ops.dropout_forward(arr(3, 4), 0.5, 1.5)
    with raises(ValueError, "eps: got 0", "expected a number in (0, inf)"):
        nn.BatchNorm2d(3, eps=0)
    with raises(ValueError, "momentum: got 2", "expected a number in [0, 1]"):
        nn.BatchNorm1d(3, momentum=2)


def test_pool_layers_check_padding_at_construction():
    with raises(ValueError, "padding: got (3, 3)", "expected at most half the kernel size (2, 2)"):
        nn.MaxPool2d(2, padding=3)
    with raises(ValueError, "padding: got (2, 2)", "expected at most half the kernel size (3, 3)"):
        nn.AvgPool2d(3, padding=2)


@pytest.mark.parametrize("make", [
    lambda: nn.Conv2d(3, 4, 3, rng=np.random.default_rng(0)), lambda: nn.ConvTranspose2d(3, 4, 3),
    lambda: nn.Linear(3, 4), nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, lambda: nn.MaxPool2d(2),
    lambda: nn.AvgPool2d(2), lambda: nn.BatchNorm2d(3), nn.Flatten])
def test_backward_before_forward_is_a_clear_error(make):
    layer = make()
    with raises(RuntimeError, f"{type(layer).__name__}.backward: got no saved", "expected forward(x) to run first"):
        layer.backward(arr(2, 3, 4, 4))


def test_batchnorm_backward_checks_its_statistics():
    x, dy = arr(4, 3, 2, 2), arr(4, 3, 2, 2)
    g, m, s = arr(3), arr(3), np.abs(arr(3)) + 0.5
    with raises(ValueError, "gamma: got shape (4,)", "expected (3,)"):
        ops.batchnorm_backward(dy, x, arr(4), m, s)
    with raises(TypeError, "mean: got dtype float64", "expected float32"):
        ops.batchnorm_backward(dy, x, g, m.astype(np.float64), s)
    with raises(ValueError, "invstd: got an array of shape (3, 1)", "expected 1-d"):
        ops.batchnorm_backward(dy, x, g, m, s.reshape(3, 1))


def test_bad_kernel_family_environment_fails_on_cpu_runs_too(monkeypatch):
    from fastconv.train.common import resolve_device
    monkeypatch.setenv("FASTCONV_KERNELS", "bogus")
    settings.reset()
    with raises(ValueError, "FASTCONV_KERNELS: got 'bogus'", "expected one of 'cupy', 'numba'"):
        resolve_device("cpu")
    monkeypatch.setenv("FASTCONV_KERNELS", "numba")
    settings.reset()
    assert resolve_device("cpu") == "cpu"


def test_kernel_family_precedence(monkeypatch):
    monkeypatch.setenv("FASTCONV_KERNELS", "numba")
    settings.reset()
    assert backend.kernel_family() == "numba"
    backend.set_kernel_family("cupy")
    try:
        assert backend.kernel_family() == "cupy"
        assert backend.kernel_family("numba") == "numba"
    finally:
        backend.set_kernel_family(None)
    assert backend.kernel_family() == "numba"
