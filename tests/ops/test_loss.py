"""softmax_cross_entropy and bce_with_logits: the CPU path against tests/oracle.py, and bad
arguments (tolerances and poisoning: tests/ops/__init__.py), PyTorch CPU as a second oracle, and
both losses on every backend (tests/backends.py); bce_with_logits(negate=True) and gan_stats
(the GAN trainer's device-side statistics) on every backend against float64 loops."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import GPU, GPU_DRAWN, judge
from checks import arr, check, DTYPES, raises, randn
from fastconv import ops
from fastconv.testing import F32_TOL, assert_close
import oracle as ref
from torch_checks import T, check as check_torch


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_softmax_cross_entropy(scale, dtype, label_dtype, rng):
    z = (randn(rng, (7, 5), dtype) * scale).astype(dtype)
    labels = rng.integers(0, 5, 7).astype(label_dtype)
    loss, d = ops.softmax_cross_entropy(z, labels)
    want_loss, want_d = ref.softmax_cross_entropy(z, labels)
    assert loss.shape == () and loss.dtype == np.dtype(dtype)
    check(np.asarray(loss).reshape(1), np.array([want_loss]), dtype, "softmax_cross_entropy loss")
    check(d, want_d, dtype, "softmax_cross_entropy dlogits", (z,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,scale", [((8, 1), 1.0), ((4, 6), 3.0), ((2, 3, 4, 5), 1.0), ((9,), 200.0)])
def test_bce_with_logits(shape, scale, dtype, rng):
    z = (randn(rng, shape, dtype) * scale).astype(dtype)
    t = rng.random(shape).astype(dtype)
    loss, d = ops.bce_with_logits(z, t)
    want_loss, want_d = ref.bce_with_logits(z, t)
    assert loss.shape == () and loss.dtype == np.dtype(dtype)
    check(np.asarray(loss).reshape(1), np.array([want_loss]), dtype, "bce_with_logits loss")
    check(d, want_d, dtype, "bce_with_logits dlogits", (z, t))


# ---- bad arguments ---------------------------------------------------------------------------

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


# ---- against PyTorch CPU ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_losses_vs_torch(torch, scale, dtype, rng):
    F = torch.nn.functional
    z = (randn(rng, (9, 6), dtype) * scale).astype(dtype)
    labels = rng.integers(0, 6, 9)
    tz = T(z, True)
    tl = F.cross_entropy(tz, torch.tensor(labels))
    tl.backward()
    loss, d = ops.softmax_cross_entropy(z, labels)
    check_torch(np.reshape(loss, 1), tl.reshape(1), dtype, "softmax_cross_entropy loss")
    check_torch(d, tz.grad, dtype, "softmax_cross_entropy dlogits")
    t = rng.random(z.shape).astype(dtype)
    tz = T(z, True)
    tl = F.binary_cross_entropy_with_logits(tz, T(t))
    tl.backward()
    loss, d = ops.bce_with_logits(z, t)
    check_torch(np.reshape(loss, 1), tl.reshape(1), dtype, "bce_with_logits loss")
    check_torch(d, tz.grad, dtype, "bce_with_logits dlogits")


# ---- every backend: float32, outputs poisoned -------------------------------------------------

def softmax_cross_entropy_case(backend, rng, n, k):
    """Loss and dlogits of backend on (n, k) logits."""
    z = randn(rng, (n, k), np.float32) * 3
    labels = rng.integers(0, k, n)
    loss, d = ops.softmax_cross_entropy(backend.asarray(z), backend.asarray(labels))
    loss_ref, d_ref = ref.softmax_cross_entropy(z, labels)
    assert_close(loss, loss_ref, F32_TOL, "loss")
    assert_close(d, d_ref, F32_TOL, "dlogits")


@pytest.mark.parametrize("n,k", [(5, 10), (70, 3), (3, 100)])
def test_softmax_cross_entropy_backends(backend, rng, n, k):
    softmax_cross_entropy_case(backend, rng, n, k)


def bce_with_logits_case(backend, rng, shape):
    """Loss and dlogits of backend on logits of shape."""
    z, t = randn(rng, shape, np.float32) * 3, rng.random(shape).astype(np.float32)
    loss, d = ops.bce_with_logits(backend.asarray(z), backend.asarray(t))
    loss_ref, d_ref = ref.bce_with_logits(z, t)
    assert_close(loss, loss_ref, F32_TOL, "loss")
    assert_close(d, d_ref, F32_TOL, "dlogits")


@pytest.mark.parametrize("shape", [(7, 1), (300, 5)])
def test_bce_with_logits_backends(backend, rng, shape):
    bce_with_logits_case(backend, rng, shape)


# ---- GPU: fastconv check's judgement of drawn shapes ------------------------------------------


@pytest.mark.parametrize("backend", GPU, indirect=True)
@GPU_DRAWN
@given(shape=st.tuples(st.integers(1, 300), st.integers(2, 1100)))
def test_losses_gpu_drawn(backend, shape):
    judge("losses", shape, backend.name)


# ---- negated BCE (the minimax GAN generator loss) and the GAN statistics ---------------------

def test_bce_with_logits_negate(backend, rng):
    z = randn(rng, (6, 1), np.float32) * 3
    t = np.zeros_like(z)
    loss, d = ops.bce_with_logits(backend.asarray(z), backend.asarray(t), negate=True)
    loss_ref, d_ref = ref.bce_with_logits(z, t)
    assert_close(loss, -loss_ref, F32_TOL, "negated loss")
    assert_close(d, -d_ref, F32_TOL, "negated dlogits")


def _gan_stats_loops(sums, losses, logits):
    """The plain reference: sums + [l_real + l_fake, l_g, then per logits array the mean of
    1 / (1 + exp(-z)) in float64 loops]."""
    means = []
    for z in logits:
        total = 0.0
        for v in np.asarray(z, np.float64).ravel():
            total += 1.0 / (1.0 + math.exp(-v)) if v > -700 else 0.0
        means.append(total / z.size)
    return np.asarray(sums, np.float64) + np.array([losses[0] + losses[1], losses[2], *means])


def gan_stats_case(backend, rng, n):
    """Two accumulations of gan_stats on backend into non-zero sums, against the loops."""
    sums = np.array([0.5, -1.0, 2.0, 0.25, 3.0])
    got = backend.asarray(sums.copy())
    for k in range(2):
        losses = [np.asarray(v, np.float32) for v in rng.uniform(0.1, 3.0, 3)]
        logits = [(randn(rng, (n, 1), np.float32) * 4) for _ in range(3)]
        logits[0][0, 0] = 90.0 if n > 1 else logits[0][0, 0]   # saturated ends of the sigmoid
        logits[1][-1, 0] = -90.0 if n > 1 else logits[1][-1, 0]
        ops.gan_stats(got, *(backend.asarray(a) for a in losses + logits))
        sums = _gan_stats_loops(sums, [float(v) for v in losses], logits)
    assert_close(got, sums, F32_TOL, "gan_stats sums")


@pytest.mark.parametrize("n", [1, 64, 1500])
def test_gan_stats_backends(backend, rng, n):
    gan_stats_case(backend, rng, n)


def test_gan_stats_errors():
    s, z, l0 = np.zeros(5), arr(4, 1), np.asarray(np.float32(1.0))
    with raises(TypeError, "sums: got dtype float32", "expected float64"):
        ops.gan_stats(np.zeros(5, np.float32), l0, l0, l0, z, z, z)
    with raises(ValueError, "sums: got shape (4,)", "expected a C-contiguous (5,) array"):
        ops.gan_stats(np.zeros(4), l0, l0, l0, z, z, z)
    with raises(ValueError, "loss_g: got an array of shape (1,) (1-d), expected 0-d"):
        ops.gan_stats(s, l0, l0, np.ones(1, np.float32), z, z, z)
    with raises(ValueError, "logits_g: got shape (3, 1), expected (4, 1)"):
        ops.gan_stats(s, l0, l0, l0, z, z, arr(3, 1))
    with raises(TypeError, "negate: got 1, expected True or False"):
        ops.bce_with_logits(z, z, negate=1)
