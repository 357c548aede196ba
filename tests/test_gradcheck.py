"""float64 central-difference gradient checks for every layer and loss in fastconv.nn.

For a layer f and a fixed random cotangent w, L(x, params) = sum(f(x) * w). The analytic
gradients come from one forward and ``backward(w)``; they are checked (1) along random directions
v, Chainer check_backward style: <grad, v> against (L(x + eps v) - L(x - eps v)) / 2 eps, and
(2) element by element on these tiny shapes. Buffers (BatchNorm running stats, the Dropout call
counter) are restored before every evaluation so that L is one fixed function.
ReLU/LeakyReLU inputs are drawn away from 0 and max-pool inputs without near-ties, so no
difference step crosses a kink.
"""

import inspect

import numpy as np
import pytest

import fastconv.nn as nn
from fastconv.testing import assert_close

EPS = 1e-6
DIRECTIONS = 3
FULL_TOL = 1e-6


def randn(rng, shape):
    return rng.standard_normal(shape)


def away_from_zero(rng, shape, gap=0.1):
    x = rng.standard_normal(shape)
    return x + np.sign(x) * gap


def distinct(rng, shape):
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * 0.01).reshape(shape)  # 0.01 apart: no near-ties


class Harness:
    """L(x) = sum(layer(x) * w) with the layer's buffers reset to a snapshot before each call."""

    def __init__(self, layer, x, rng):
        self.layer = layer.astype(np.float64)
        self.x = x
        self.buffers = {name: np.array(b, copy=True) for name, b in layer.named_buffers()}
        y = self.forward(x)
        self.w = randn(rng, y.shape)

    def _reset(self):
        for name, b in self.layer.named_buffers():
            b[...] = self.buffers[name]

    def forward(self, x):
        self._reset()
        return self.layer.forward(x)

    def loss(self, x):
        return float(np.sum(self.forward(x) * self.w))

    def analytic(self):
        self.layer.zero_grad()
        self.forward(self.x)
        dx = self.layer.backward(self.w)
        return dx, {name: p.grad.copy() for name, p in self.layer.named_parameters()}

    def numeric_along(self, target, v):
        """(L(. + eps v) - L(. - eps v)) / 2 eps, perturbing ``target`` (x or a parameter array) in place."""
        target += EPS * v
        up = self.loss(self.x)
        target -= 2 * EPS * v
        down = self.loss(self.x)
        target += EPS * v
        return (up - down) / (2 * EPS)

    def numeric_full(self, target):
        g = np.zeros_like(target)
        flat, gflat = target.reshape(-1), g.reshape(-1)
        assert np.shares_memory(flat, target)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + EPS
            up = self.loss(self.x)
            flat[i] = old - EPS
            down = self.loss(self.x)
            flat[i] = old
            gflat[i] = (up - down) / (2 * EPS)
        return g


def check_layer(layer, x, seed=0, full=True):
    rng = np.random.default_rng(seed)
    h = Harness(layer, x.astype(np.float64), rng)
    dx, grads = h.analytic()
    assert dx is not None and dx.shape == h.x.shape and dx.dtype == np.float64
    targets = [("input", h.x, dx)] + [(name, p.data, grads[name]) for name, p in h.layer.named_parameters()]
    for name, arr, grad in targets:
        assert grad.shape == arr.shape, f"{name}: gradient shape {grad.shape}, expected {arr.shape}"
        assert np.all(np.isfinite(grad)), f"{name}: non-finite gradient"
        for _ in range(DIRECTIONS):
            v = randn(rng, arr.shape)
            num = h.numeric_along(arr, v)
            ana = float(np.sum(grad * v))
            bound = 1e-6 * (np.linalg.norm(grad) * np.linalg.norm(v) + 1.0)
            assert abs(num - ana) <= bound, f"{name}: <grad, v> = {ana!r}, central difference {num!r}"
        if full:
            assert_close(grad, h.numeric_full(arr), FULL_TOL, f"{name} gradient (element by element)")
    # the parameters must be back where they started: the checks restore every perturbation
    return h


def test_every_layer_has_a_gradient_check():
    """A layer added to fastconv.nn without a case here fails this test."""
    layers = {name for name in nn.__all__ if inspect.isclass(getattr(nn, name))
              and issubclass(getattr(nn, name), nn.Module) and name != "Module"}
    losses = {name for name in nn.__all__ if name.endswith("Loss")}
    covered = {type(m).__name__ for _, make, _ in LAYER_CASES for _, m in make().named_modules()}
    assert layers - covered == set()
    assert losses <= {"CrossEntropyLoss", "BCEWithLogitsLoss"}


def _rng(seed=1):
    return np.random.default_rng(seed)


# (id, layer factory, input factory)
LAYER_CASES = [
    ("conv", lambda: nn.Conv2d(2, 3, 3, rng=_rng()), lambda r: randn(r, (2, 2, 5, 4))),
    ("conv-stride-pad", lambda: nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), rng=_rng()),
     lambda r: randn(r, (2, 2, 6, 5))),
    ("conv-dilation", lambda: nn.Conv2d(2, 2, 2, dilation=(2, 3), padding=1, rng=_rng()),
     lambda r: randn(r, (1, 2, 6, 7))),
    ("conv-groups", lambda: nn.Conv2d(4, 6, 3, groups=2, stride=2, padding=1, rng=_rng()),
     lambda r: randn(r, (2, 4, 5, 5))),
    ("conv-depthwise-nobias", lambda: nn.Conv2d(3, 3, 3, groups=3, bias=False, rng=_rng()),
     lambda r: randn(r, (1, 3, 4, 4))),
    ("convT-4-2-1", lambda: nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1, rng=_rng()),
     lambda r: randn(r, (2, 3, 3, 3))),
    ("convT-outpad-groups", lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2,
                                                        rng=_rng()), lambda r: randn(r, (1, 4, 3, 2))),
    ("convT-dilation", lambda: nn.ConvTranspose2d(2, 3, 2, stride=(1, 2), dilation=2, rng=_rng()),
     lambda r: randn(r, (2, 2, 3, 3))),
    ("linear", lambda: nn.Linear(5, 4, rng=_rng()), lambda r: randn(r, (3, 5))),
    ("linear-nobias", lambda: nn.Linear(3, 2, bias=False, rng=_rng()), lambda r: randn(r, (4, 3))),
    ("relu", lambda: nn.ReLU(), lambda r: away_from_zero(r, (2, 3, 3, 2))),
    ("leaky-relu", lambda: nn.LeakyReLU(0.2), lambda r: away_from_zero(r, (2, 3, 3, 2))),
    ("tanh", lambda: nn.Tanh(), lambda r: randn(r, (2, 3, 4))),
    ("sigmoid", lambda: nn.Sigmoid(), lambda r: 2 * randn(r, (3, 5))),
    ("maxpool", lambda: nn.MaxPool2d(2), lambda r: distinct(r, (2, 2, 4, 5))),
    ("maxpool-overlap-pad", lambda: nn.MaxPool2d(3, 2, 1), lambda r: distinct(r, (2, 2, 5, 6))),
    ("maxpool-rect-overlap", lambda: nn.MaxPool2d((3, 2), (1, 2), (1, 0)), lambda r: distinct(r, (1, 2, 4, 5))),
    ("avgpool", lambda: nn.AvgPool2d(2), lambda r: randn(r, (2, 2, 4, 5))),
    ("avgpool-pad-include", lambda: nn.AvgPool2d(3, 2, 1), lambda r: randn(r, (2, 2, 5, 5))),
    ("avgpool-pad-exclude", lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), lambda r: randn(r, (2, 2, 5, 5))),
    ("batchnorm1d-train", lambda: nn.BatchNorm1d(3), lambda r: randn(r, (5, 3)) * 2 + 1),
    ("batchnorm2d-train", lambda: nn.BatchNorm2d(2), lambda r: randn(r, (3, 2, 3, 2)) * 2 + 1),
    ("batchnorm2d-eval", lambda: nn.BatchNorm2d(2).eval(), lambda r: randn(r, (3, 2, 3, 2)) * 2 + 1),
    ("dropout", lambda: nn.Dropout(0.4, seed=5), lambda r: randn(r, (3, 4, 2))),
    ("flatten", lambda: nn.Flatten(), lambda r: randn(r, (2, 3, 2, 2))),
    ("unflatten", lambda: nn.Unflatten((3, 2, 2)), lambda r: randn(r, (2, 12))),
    ("sequential-cnn", lambda: nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=False, rng=_rng(2)), nn.BatchNorm2d(3),
                                             nn.LeakyReLU(0.2), nn.MaxPool2d(2), nn.Flatten(),
                                             nn.Dropout(0.25, seed=3), nn.Linear(12, 2, rng=_rng(3))),
     lambda r: randn(r, (2, 1, 4, 4))),
    ("sequential-generator", lambda: nn.Sequential(nn.Linear(3, 8, bias=False, rng=_rng(4)), nn.BatchNorm1d(8), nn.ReLU(),
                                                   nn.Unflatten((2, 2, 2)),
                                                   nn.ConvTranspose2d(2, 1, 4, 2, 1, rng=_rng(5)), nn.Tanh()),
     lambda r: randn(r, (3, 3))),
]


def _perturb_params(layer, rng):
    """Give gamma/beta/bias non-trivial values: a layer initialised to ones/zeros hides mistakes."""
    for _, p in layer.named_parameters():
        p.data[...] = p.data + 0.3 * rng.standard_normal(p.data.shape)


@pytest.mark.parametrize("make,make_x", [c[1:] for c in LAYER_CASES], ids=[c[0] for c in LAYER_CASES])
def test_layer_gradients(make, make_x):
    rng = np.random.default_rng(7)
    layer = make().astype(np.float64)
    _perturb_params(layer, rng)
    for _, m in layer.named_modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) and not m.training:
            m.buffer("running_mean")[...] = rng.standard_normal(m.num_features)
            m.buffer("running_var")[...] = rng.random(m.num_features) + 0.5
    check_layer(layer, make_x(rng), seed=11)


def test_dropout_gradient_is_not_the_identity():
    """Guard for the dropout case above: with the counter reset it really drops elements."""
    layer = nn.Dropout(0.4, seed=5).astype(np.float64)
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    y = layer.forward(x)
    assert 0 < np.count_nonzero(y == 0) < y.size


# ---- losses --------------------------------------------------------------------------------

def _check_loss(loss_fn, z, target):
    loss = loss_fn.forward(z, target)
    assert loss.shape == ()
    g = loss_fn.backward().copy()
    rng = np.random.default_rng(3)

    def f(zz):
        return float(loss_fn.forward(zz, target))

    for _ in range(DIRECTIONS):
        v = rng.standard_normal(z.shape)
        num = (f(z + EPS * v) - f(z - EPS * v)) / (2 * EPS)
        assert abs(num - np.sum(g * v)) <= 1e-7 * (np.linalg.norm(g) * np.linalg.norm(v) + 1.0)
    full = np.zeros_like(z)
    for i in range(z.size):
        e = np.zeros(z.size)
        e[i] = EPS
        e = e.reshape(z.shape)
        full.reshape(-1)[i] = (f(z + e) - f(z - e)) / (2 * EPS)
    assert_close(g, full, FULL_TOL, "dlogits (element by element)")


def test_cross_entropy_gradient():
    rng = np.random.default_rng(0)
    _check_loss(nn.CrossEntropyLoss(), 2 * rng.standard_normal((4, 5)), rng.integers(0, 5, 4))


def test_bce_with_logits_gradient():
    rng = np.random.default_rng(1)
    _check_loss(nn.BCEWithLogitsLoss(), 2 * rng.standard_normal((3, 4)), rng.random((3, 4)))


def test_gradient_check_can_fail():
    """The harness must reject a wrong backward: a Linear whose input gradient is scaled by 1.01."""
    class Off(nn.Linear):
        def backward(self, dy, input_grad=True):
            return 1.01 * super().backward(dy, input_grad)

    with pytest.raises(AssertionError):
        check_layer(Off(3, 2, rng=_rng()), np.random.default_rng(0).standard_normal((2, 3)), full=False)
