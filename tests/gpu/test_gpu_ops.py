"""What both GPU kernel families share beyond one op (marker ``gpu``): output poisoning reaches
every allocation, the launch-time argument checks, and whole training steps against the CPU
(float64) from the same weights. Each op family's GPU cases are in tests/ops/test_<family>*.py
(backends "cupy" and "numba", fastconv check's judgement)."""

import numpy as np
import pytest

import fastconv
from fastconv import check

pytestmark = pytest.mark.gpu

FAMILIES = ["cupy", "numba"]


@pytest.fixture(params=FAMILIES)
def family(request):
    if request.param not in check.families():
        pytest.skip(f"kernel family {request.param!r} cannot be imported here (numba-cuda missing or broken)")
    return request.param


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
