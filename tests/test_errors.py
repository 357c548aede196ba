"""Bad inputs outside a single op raise TypeError/ValueError whose message names the argument, the
value received and what was expected: numpy and cupy arrays mixed, layers, optimizers, devices and
the kernel family setting. Each op's own argument errors are tested in tests/ops/test_<family>.py."""

import sys
import types

import numpy as np
import pytest

import fastconv.nn as nn
from fastconv import backend, ops, settings
from fastconv.optim import Adam, SGD
from checks import arr, raises, W, X


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
