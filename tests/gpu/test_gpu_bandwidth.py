"""The cupy family's bandwidth kernels on a GPU (marker ``gpu``), on shapes chosen to reach each of
them: the 2x2 pooling paths (16-byte, 8-byte, odd H, an unaligned view), the fused relu_max_pool2d,
batchnorm and the bias gradient with one and several slices per channel (bitwise repeatable), the
activations' v1/v2. Judged against the NumPy path in float64 (fastconv.check's cases), argmax and
codes exactly; outputs poisoned with NaN before each launch.
"""

import numpy as np
import pytest

import fastconv
from fastconv import check, ops
from fastconv.testing import F32_TOL, REDUCTION_TOL, assert_close

pytestmark = pytest.mark.gpu

POOL_SHAPES = [(2, 3, 8, 8), (1, 2, 7, 12), (2, 2, 6, 14), (1, 3, 5, 6), (2, 2, 6, 7), (4, 64, 28, 28)]


@pytest.fixture
def cp():
    import cupy
    with fastconv.using(poison=True, kernels="cupy"):
        yield cupy


@pytest.mark.parametrize("shape", POOL_SHAPES, ids=str)
@pytest.mark.parametrize("window", [(2, 2, 0), (3, 2, 1)])
def test_pools(cp, shape, window):
    bad = [r for r in check.run_case("pooling", shape + tuple((v, v) for v in window), "cupy",
                                     np.random.default_rng(0)) if not r[2] <= r[3]]
    assert not bad, bad


def test_pool_2x2_on_an_unaligned_view(cp):
    x = np.random.default_rng(1).standard_normal(2 * 3 * 4 * 8 + 2).astype(np.float32)
    xd = cp.asarray(x)[2:].reshape(2, 3, 4, 8)
    y, am = ops.max_pool2d_forward(xd, 2)
    y0, am0 = ops.max_pool2d_forward(x[2:].reshape(2, 3, 4, 8).astype(np.float64), 2)
    assert_close(y, y0, F32_TOL, "max_pool2d_forward")
    np.testing.assert_array_equal(cp.asnumpy(am), am0)


@pytest.mark.parametrize("shape", [(3, 5, 4, 4), (100, 2, 1, 3), (256, 64, 14, 14), (7, 6)], ids=str)
@pytest.mark.parametrize("min_slice", [16, None])
def test_reductions_repeat_bitwise(cp, shape, min_slice, monkeypatch):
    from fastconv.backends.cuda import config
    if min_slice:
        monkeypatch.setattr(config, "MIN_SLICE_ELEMS", min_slice)
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    g, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    runs = []
    for _ in range(2):
        rm, rv = cp.zeros(c, np.float32), cp.ones(c, np.float32)
        y, mean, invstd = ops.batchnorm_forward(cp.asarray(x), cp.asarray(g), cp.asarray(b), rm, rv, True, 0.1, 1e-5)
        grads = ops.batchnorm_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(g), mean, invstd, True)
        runs.append([cp.asnumpy(a) for a in (y, mean, invstd, rm, rv) + tuple(grads)])
        if len(shape) == 4:
            runs[-1].append(cp.asnumpy(ops.conv2d_backward_bias(cp.asarray(dy))))
    for a, b_ in zip(*runs):
        np.testing.assert_array_equal(a, b_)
    want = ops.batchnorm_forward(x.astype(np.float64), g.astype(np.float64), b.astype(np.float64), np.zeros(c),
                                 np.ones(c), True, 0.1, 1e-5)
    assert_close(runs[0][0], want[0], REDUCTION_TOL, "batchnorm_forward")
    if len(shape) == 4:
        assert_close(runs[0][-1], dy.astype(np.float64).sum((0, 2, 3)), REDUCTION_TOL, "conv2d_backward_bias")


@pytest.mark.parametrize("n,offset", [(4099, 0), (37, 1), (3, 0)])
def test_activations(cp, n, offset):
    bad = []
    for size in (n + offset,):
        res = check.run_case("activations", (size,), "cupy", np.random.default_rng(3))
        bad += [r for r in res if not r[2] <= r[3]]
    x = np.random.default_rng(4).standard_normal(n + offset).astype(np.float32)
    y = ops.tanh_forward(cp.asarray(x)[offset:])  # an unaligned view takes v1
    assert_close(y, np.tanh(x[offset:].astype(np.float64)), F32_TOL, "tanh_forward")
    assert not bad, bad
