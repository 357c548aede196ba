"""GPU ops of each kernel family against the NumPy twin run in float64 (marker ``gpu``).

The op cases are fastconv.check's (the same judge as ``fastconv check``): random non-zero
float32 data, outputs poisoned with NaN before each launch, relative L2 error <= F32_TOL, or
REDUCTION_TOL for long reductions (weight/bias gradients, batchnorm statistics), where float32
summation error grows with the number of terms. Shapes: hypothesis-drawn and benchmarks/shapes.py's.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import check
from fastconv.testing import F32_TOL

pytestmark = pytest.mark.gpu

FAMILIES = ["cupy", "numba"]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(params=FAMILIES)
def family(request):
    if request.param not in check.families():
        pytest.skip(f"kernel family {request.param!r} cannot be imported here (numba-cuda missing or broken)")
    return request.param


@pytest.fixture(params=["v2", "v2_t128x128", "v2_t64x64", "v2_t32x128", "v1"])
def conv_version(request, monkeypatch):
    """The cupy family's conv kernels: v2 with its own tile choice, v2 forced to each tile, v1."""
    with fastconv.using(conv_version=1 if request.param == "v1" else 2, conv_tile=request.param[3:] or None):
        yield request.param


def _judge(group, spec, family, seed=0):
    res = check.run_case(group, spec, family, np.random.default_rng(seed))
    bad = [f"{op} {ps}: {err:.3e} > {tol:g}" for op, ps, err, tol in res if not err <= tol]
    assert not bad, f"{group} {family} {spec}: " + "; ".join(bad)


pairs = st.tuples(st.integers(1, 3), st.integers(1, 3))


@st.composite
def conv_specs(draw):
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


@st.composite
def pool_specs(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pad = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h, w = draw(st.integers(kh, 16)), draw(st.integers(kw, 16))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 5)), h, w, (kh, kw), draw(pairs), pad)


shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)


@SETTINGS
@given(spec=conv_specs())
def test_conv2d(family, conv_version, spec):
    if family == "numba" and conv_version != "v2":
        pytest.skip("the conv_version/conv_tile settings select the cupy family's conv kernels only")
    _judge("conv2d", spec, family)


@pytest.mark.parametrize("name", list(check.bench_conv_shapes()))
def test_conv2d_benchmark_shapes(family, name):
    _judge("conv2d", check.bench_conv_shapes()[name], family)


@pytest.mark.parametrize("tile", ["t128x128", "t64x64", "t32x128"])
def test_conv2d_every_tile_on_a_large_shape(tile, monkeypatch):
    """Multi-tile reductions, split-K and many blocks on each tile shape (cupy family)."""
    with fastconv.using(conv_tile=tile):
        _judge("conv2d", (9, 24, 33, 31, 136, 3, 3, 1, 1, 1, 1), "cupy")
        _judge("conv2d", (4, 36, 17, 19, 260, 4, 3, (2, 1), (1, 2), (1, 2), 2), "cupy")


@SETTINGS
@given(shape=shapes)
def test_activations(family, shape):
    _judge("activations", shape, family)


def test_activations_large_unaligned(family):
    _judge("activations", (3, 1000003), family)  # float4 body plus a scalar tail


@SETTINGS
@given(spec=pool_specs())
def test_pooling(family, spec):
    _judge("pooling", spec, family)


def test_pooling_design_shape(family):
    _judge("pooling", (64, 64, 56, 56, (2, 2), (2, 2), (0, 0)), family)


@SETTINGS
@given(shape=st.tuples(st.integers(1, 130), st.integers(1, 300), st.integers(1, 130)))
def test_linear(family, shape):
    _judge("linear", shape, family)


@SETTINGS
@given(shape=st.one_of(st.tuples(st.integers(2, 130), st.integers(1, 70)),
                       st.tuples(st.integers(1, 9), st.integers(1, 20), st.integers(1, 15), st.integers(1, 15))))
def test_batchnorm(family, shape):
    # at least 4 values per channel: with 2, xhat = +-d/sqrt(d^2 + eps) and the training dx is
    # O(eps/var), a cancellation that no float32 kernel (nor the CPU path) resolves to 1e-4
    if np.prod(shape) // shape[1] < 4:
        shape = (4,) + tuple(shape[1:])
    _judge("batchnorm", shape, family)


def test_batchnorm_design_shapes(family):
    _judge("batchnorm", (128, 6272), family)
    _judge("batchnorm", (128, 64, 14, 14), family)


@SETTINGS
@given(shape=shapes)
def test_dropout(family, shape):
    _judge("dropout", shape, family)


@SETTINGS
@given(shape=st.tuples(st.integers(1, 300), st.integers(2, 1100)))
def test_losses(family, shape):
    _judge("losses", shape, family)


@SETTINGS
@given(shape=shapes)
def test_optim(family, shape):
    _judge("optim", shape, family)


def test_poison_catches_unwritten_output(monkeypatch):
    """The poisoning really reaches the outputs of both families: an allocation comes back all NaN
    (int32: -1), through the cupy allocator and through the numba family's _empty."""
    import cupy as cp

    from fastconv.backends.cuda import launch as cuda_launch
    with fastconv.using(poison=True):
        a = cuda_launch._alloc((5,), np.float32, "probe")
        assert bool(np.isnan(a.get()).all())
        if "numba" in check.families():
            from fastconv.backends.numba import driver as numba_launch
            like = cp.zeros(1, dtype=cp.float32)
            assert bool(np.isnan(numba_launch._empty((5,), like).get()).all())
            assert bool((numba_launch._empty((5,), like, np.int32).get() == -1).all())


def test_max_pool2d_nan_inputs(family, monkeypatch):
    """NaN inputs: y is NaN where a window holds one and argmax points at the first NaN in
    row-major window order (kernels/pool.cu, fastconv/backends/numba/pool.py and the CPU path agree)."""
    import cupy as cp

    from fastconv import ops
    from fastconv.testing import assert_close
    fastconv.configure(poison=True)  # tests/conftest.py restores the settings after each test
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, size=flat.size // 5, replace=False)] = np.nan
    flat[:2] = np.nan  # two NaNs in the first window
    for ks, sd, pd in [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 3), (1, 1), (1, 1))]:
        ref_y, ref_arg = ops.max_pool2d_forward(x.astype(np.float64), ks, sd, pd)
        y, arg = ops.max_pool2d_forward(cp.asarray(x), ks, sd, pd, kernels=family)
        np.testing.assert_array_equal(y.get(), ref_y.astype(np.float32))  # NaN where the CPU has NaN
        np.testing.assert_array_equal(arg.get(), ref_arg)
        dy = rng.standard_normal(ref_y.shape).astype(np.float32)
        dx = ops.max_pool2d_backward(cp.asarray(dy), arg, x.shape, ks, sd, pd, kernels=family)
        assert_close(dx, ops.max_pool2d_backward(dy.astype(np.float64), ref_arg, x.shape, ks, sd, pd), F32_TOL,
                     f"max_pool2d backward {ks} {sd} {pd}")


def test_errors(family, monkeypatch):
    """Both families check a call alike: dtype, non-contiguous inputs copied, out-of-memory naming
    the bytes, sizes the int32 kernel parameters cannot hold."""
    import cupy as cp

    from fastconv.backends import cuda
    from fastconv.backends.cuda import launch as cuda_launch
    mod = cuda
    if family == "numba":
        from fastconv.backends import numba as mod
    with pytest.raises(TypeError, match="x: got dtype float64 on the GPU"):
        mod.relu_forward(cp.ones(3))
    xs = (cp.arange(12, dtype=cp.float32).reshape(3, 4) - 3)[:, ::2]
    assert not xs.flags.c_contiguous
    y = mod.relu_forward(xs)  # copied to a contiguous array, then launched
    assert y.flags.c_contiguous and y.shape == (3, 2)
    assert y.get().tolist() == [[0, 0], [1, 3], [5, 7]]
    with pytest.raises(cuda.GPUOutOfMemoryError, match="bytes"):
        cuda_launch._alloc((1 << 50,), np.float32, "huge")
    if family == "numba":  # its outputs come from the same allocator (poisoning, out-of-memory message)
        calls, real = [], cuda_launch._alloc
        monkeypatch.setattr(cuda_launch, "_alloc", lambda shape, dtype, what, zero=False: calls.append(what)
                            or real(shape, dtype, what, zero))
        mod.relu_forward(xs)
        assert calls == ["relu_forward output"]
    # a 10 GB output whose sizes the kernels' 32-bit ints cannot hold: refused before it is allocated
    dy = cp.ones((1, 1, 2, 2), dtype=cp.float32)
    with pytest.raises(ValueError, match="2500000000"):
        mod.avg_pool2d_backward(dy, (1, 1, 50000, 50000), (2, 2), (2, 2), (0, 0), True)


# ---------------------------------------------------------------------------------------------
# whole training steps: GPU vs CPU (float64) from the same weights

def _step_compare(build, step, family):
    import cupy as cp

    from fastconv.testing import rel_error
    cpu = build(np.random.default_rng(7))
    gpu = build(np.random.default_rng(7))
    for m in cpu:
        m.astype(np.float64)
    for m in gpu:
        m.to("cuda", kernels=family)
    rng = np.random.default_rng(3)
    loss_c = step(cpu, rng, np, family)
    loss_g = step(gpu, np.random.default_rng(3), cp, family)
    assert abs(float(loss_g) - float(loss_c)) <= 1e-4 * max(1.0, abs(float(loss_c)))
    for mc, mg in zip(cpu, gpu):
        for (name, a), (_, b) in zip(mc.state_dict().items(), mg.state_dict().items()):
            err = rel_error(b, a)
            assert err <= 1e-4, f"{name}: relative error {err:.3e} after one step"


def test_lenet_step(family):
    from fastconv import nn, optim

    def build(rng):
        return [nn.Sequential(nn.Conv2d(1, 32, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(3136, 256, rng=rng), nn.ReLU(), nn.Linear(256, 10, rng=rng))]

    def step(models, rng, xp, family):
        (m,) = models
        x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, size=32)
        dt = np.float64 if xp is np else np.float32
        x, y = xp.asarray(x.astype(dt)), xp.asarray(y)
        opt = optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss(kernels=family if xp is not np else None)
        opt.zero_grad()
        loss = loss_fn.forward(m.forward(x), y)
        m.backward(loss_fn.backward())
        opt.step()
        return loss

    _step_compare(build, step, family)


def test_dcgan_step(family):
    from fastconv import nn, optim
    from fastconv.train.gan import build_dcgan

    def build(rng):
        return list(build_dcgan(nz=100, width=64, image_shape=(1, 28, 28), rng=rng))

    def step(models, rng, xp, family):
        G, D = models
        z = rng.standard_normal((32, 100)).astype(np.float32)
        dt = np.float64 if xp is np else np.float32
        z = xp.asarray(z.astype(dt))
        ones = xp.ones((32, 1), dtype=dt)
        optG = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        optD = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        loss_fn = nn.BCEWithLogitsLoss(kernels=family if xp is not np else None)
        optG.zero_grad()
        optD.zero_grad()
        loss = loss_fn.forward(D.forward(G.forward(z)), ones)
        G.backward(D.backward(loss_fn.backward()))
        optG.step()
        optD.step()
        return loss

    _step_compare(build, step, family)
