"""What both GPU kernel families share beyond one op (marker ``gpu``): output poisoning reaches
every allocation, the launch-time argument checks, and whole training steps against the CPU
(float64) from the same weights. Each op family's GPU cases are in tests/ops/test_<family>*.py
(backends "cupy" and "numba", fastconv check's judgement)."""

import numpy as np
import pytest

import fastconv
from fastconv import check
from train_steps import dcgan_step, lenet_step, step_compare

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
# whole training steps: GPU vs CPU (float64) from the same weights (tests/train_steps.py)

def test_lenet_step(family):
    import cupy as cp

    from fastconv import nn

    def build(rng):
        return [nn.Sequential(nn.Conv2d(1, 32, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(3136, 256, rng=rng), nn.ReLU(), nn.Linear(256, 10, rng=rng))]

    step_compare(cp, build, lenet_step(32, family), family)


def test_dcgan_step(family):
    import cupy as cp

    from fastconv.train.gan import build_dcgan

    def build(rng):
        return list(build_dcgan(nz=100, width=64, image_shape=(1, 28, 28), rng=rng))

    step_compare(cp, build, dcgan_step(100, 32, family), family)
