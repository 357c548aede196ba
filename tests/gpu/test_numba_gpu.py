"""The numba kernel family's own launch path on a real GPU (marker ``gpu``).

Op-by-op correctness of every family at the benchmark shapes is the op-family tests' job
(tests/ops/test_<family>*.py, backends "cupy" and "numba"); this file checks what only the numba
launcher does: launch cost of the empty kernel (reported, never asserted), launches on CuPy's current stream,
CUDA errors turned into exceptions, the pointer-parameter packing of every kernel (run at a
benchmark shape through the launch layer with poisoned outputs), and the deterministic
split-reduction weight gradient.
"""

import statistics
import time

import numpy as np
import pytest

from fastconv.testing import F32_TOL, REDUCTION_TOL, assert_close, poison

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy")
    pytest.importorskip("numba.cuda")
    return cupy


@pytest.fixture(scope="module")
def nb(cp):
    from fastconv.backends import numba as numba_family
    assert not numba_family.SIMULATOR, "run the GPU tests without NUMBA_ENABLE_CUDASIM"
    return numba_family


def _poisoned(cp, shape, dtype=np.float32):
    return poison(cp.empty(shape, dtype))


def test_empty_kernel_launch_cost(cp, nb, record_property):
    y = cp.full(32, 1.0, dtype=cp.float32)
    nb.launch_empty(y)  # compiles and loads once
    cp.cuda.get_current_stream().synchronize()
    per = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(1000):
            nb.launch_empty(y)
        per.append((time.perf_counter() - t0) / 1000 * 1e6)
        cp.cuda.get_current_stream().synchronize()
    us = statistics.median(per)
    record_property("numba_launch_us", us)
    print(f"\nnumba family: empty-kernel launch {us:.2f} us (median of 7 x 1000)")
    assert bool((y == 1.0).all())  # the probe writes nothing


def test_launches_on_current_stream(cp, nb):
    """Work queued on a non-default stream is ordered with the numba launch on that stream."""
    rng = np.random.default_rng(0)
    host = rng.standard_normal((64, 64, 56, 56)).astype(np.float32)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        x = cp.asarray(host)
        x *= 3.0  # queued on s before the launch; the kernel must see it
        y = nb.relu_forward(x)
    s.synchronize()
    assert_close(y, np.maximum(host.astype(np.float64) * 3.0, 0.0), F32_TOL, "relu on a side stream")


def test_cuda_error_becomes_exception(cp, nb):
    y = cp.zeros(4, dtype=cp.float32)
    with pytest.raises(RuntimeError, match=r"numba kernel empty_v1: cuLaunchKernel.*block \(2048, 1, 1\).*CUDA_ERROR"):
        nb.launch("empty_v1", (1, 1, 1), (2048, 1, 1), (y, 0))
    nb.launch_empty(y)  # the context is still usable
    cp.cuda.get_current_stream().synchronize()


def test_launch_layer_every_kernel(cp, nb):
    """Each kernel once at a benchmark shape through launch_* with poisoned outputs, against the
    float64 NumPy twin (this exercises the packed parameter layout of every signature)."""
    from fastconv.backends import cpu
    rng = np.random.default_rng(1)
    g = cp.asarray
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    # dcgan.d2: 128,64,14,14 -> 128, 4x4, s2, p1; dcgan.d3 (its forward and backward-data grids are
    # under a wave: split-K); groups=2 with dilation on a smaller batch
    # lenet.conv1 (C = 1, 5x5: the small-channel kernels), then the same with C/G = 2, stride 2, dilation
    for (n, c, h, w, k, r, s), args in [((128, 1, 28, 28, 32, 5, 5), ((1, 1), (2, 2), (1, 1), 1)),
                                        ((32, 8, 15, 17, 40, 3, 3), ((2, 2), (1, 2), (1, 2), 4)),
                                        ((128, 64, 14, 14, 128, 4, 4), ((2, 2), (1, 1), (1, 1), 1)),
                                        ((128, 128, 7, 7, 256, 3, 3), ((2, 2), (1, 1), (1, 1), 1)),
                                        ((16, 64, 14, 14, 128, 3, 3), ((1, 2), (2, 1), (2, 1), 2))]:
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        wt = rng.standard_normal((k, c // args[3], r, s)).astype(np.float32)
        b = rng.standard_normal(k).astype(np.float32)
        ref = cpu.conv2d_forward(f64(x), f64(wt), f64(b), *args)
        y = nb.launch_conv2d_forward(_poisoned(cp, ref.shape), g(x), g(wt), g(b), *args)
        assert_close(y, ref, F32_TOL, "conv2d_forward")
        dy = rng.standard_normal(ref.shape).astype(np.float32)
        dx = nb.launch_conv2d_backward_data(_poisoned(cp, x.shape), g(dy), g(wt), *args)
        assert_close(dx, cpu.conv2d_backward_data(f64(dy), f64(wt), x.shape, *args), F32_TOL, "backward_data")
        ref_dw = cpu.conv2d_backward_weight(f64(dy), f64(x), wt.shape, *args)
        dw1 = nb.launch_conv2d_backward_weight(_poisoned(cp, wt.shape), g(dy), g(x), *args)
        assert_close(dw1, ref_dw, REDUCTION_TOL, "backward_weight")  # N*P*Q-long sums
        dw2 = nb.launch_conv2d_backward_weight(_poisoned(cp, wt.shape), g(dy), g(x), *args)
        assert bool((dw1 == dw2).all()), "split-reduction weight gradient is not deterministic"
        dw3 = nb.launch_conv2d_backward_weight(_poisoned(cp, wt.shape), g(dy), g(x), *args, splits=1)
        assert_close(dw3, ref_dw, REDUCTION_TOL, "backward_weight, one slice")
        db = nb.launch_conv2d_backward_bias(_poisoned(cp, (k,)), g(dy))
        assert_close(db, cpu.conv2d_backward_bias(f64(dy)), REDUCTION_TOL, "backward_bias")
    x = rng.standard_normal((64, 64, 56, 56)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = nb.launch_leaky_relu_forward(_poisoned(cp, x.shape), g(x), 0.2)
    ref_y = cpu.leaky_relu_forward(f64(x), 0.2)
    assert_close(y, ref_y, F32_TOL, "leaky_relu_forward")
    assert_close(nb.launch_leaky_relu_backward(_poisoned(cp, x.shape), g(dy), y, 0.2),
                 cpu.leaky_relu_backward(f64(dy), ref_y, 0.2), F32_TOL, "leaky_relu_backward")
    y = nb.launch_relu_forward(_poisoned(cp, x.shape), g(x))
    assert_close(nb.launch_relu_backward(_poisoned(cp, x.shape), g(dy), y),
                 cpu.relu_backward(f64(dy), cpu.relu_forward(f64(x))), F32_TOL, "relu_backward")
    for ks, st, pd in [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1))]:
        ref_y, ref_arg = cpu.max_pool2d_forward(f64(x), ks, st, pd)
        y, arg = nb.launch_max_pool2d_forward(_poisoned(cp, ref_y.shape), _poisoned(cp, ref_y.shape, np.int32),
                                              g(x), ks, st, pd)
        assert_close(y, ref_y, F32_TOL, "max_pool2d_forward")
        assert bool((arg == g(ref_arg)).all()), "max_pool2d argmax"
        dyp = rng.standard_normal(ref_y.shape).astype(np.float32)
        dx = nb.launch_max_pool2d_backward(_poisoned(cp, x.shape), g(dyp), arg, ks, st, pd)
        assert_close(dx, cpu.max_pool2d_backward(f64(dyp), ref_arg, x.shape, ks, st, pd), F32_TOL, "max_pool bwd")
        for cip in (True, False):
            ya = nb.launch_avg_pool2d_forward(_poisoned(cp, ref_y.shape), g(x), ks, st, pd, cip)
            assert_close(ya, cpu.avg_pool2d_forward(f64(x), ks, st, pd, cip), F32_TOL, "avg_pool forward")
            dx = nb.launch_avg_pool2d_backward(_poisoned(cp, x.shape), g(dyp), ks, st, pd, cip)
            assert_close(dx, cpu.avg_pool2d_backward(f64(dyp), x.shape, ks, st, pd, cip), F32_TOL, "avg_pool bwd")


def test_smallc_matches_the_gemm(cp, nb):
    """lenet.conv1 by the small-channel kernels (default) and by the implicit GEMM (tile forced):
    both against the float64 oracle, poisoned outputs."""
    from fastconv.backends import cpu
    from fastconv.backends.numba.tiles import TILE_64
    rng = np.random.default_rng(2)
    args = ((1, 1), (2, 2), (1, 1), 1)
    x = rng.standard_normal((128, 1, 28, 28)).astype(np.float32)
    wt = rng.standard_normal((32, 1, 5, 5)).astype(np.float32)
    dy = rng.standard_normal((128, 32, 28, 28)).astype(np.float32)
    f64, g = (lambda a: a.astype(np.float64)), cp.asarray
    ref = (cpu.conv2d_forward(f64(x), f64(wt), None, *args), cpu.conv2d_backward_data(f64(dy), f64(wt), x.shape, *args),
           cpu.conv2d_backward_weight(f64(dy), f64(x), wt.shape, *args))
    for force in ({}, {"tile": TILE_64}):
        assert_close(nb.launch_conv2d_forward(_poisoned(cp, dy.shape), g(x), g(wt), None, *args, **force), ref[0],
                     F32_TOL, f"forward {force}")
        assert_close(nb.launch_conv2d_backward_data(_poisoned(cp, x.shape), g(dy), g(wt), *args, **force), ref[1],
                     F32_TOL, f"backward_data {force}")
        assert_close(nb.launch_conv2d_backward_weight(_poisoned(cp, wt.shape), g(dy), g(x), *args, **force), ref[2],
                     REDUCTION_TOL, f"backward_weight {force}")


def test_gemm_kernels_keep_tiles_in_registers(cp, nb):
    """Registers and local memory of the conv kernels, reported; local memory would mean the
    register tile spilled (tests/test_numba_ptx.py checks the PTX; this checks the device's cubin)."""
    from fastconv.backends.numba import driver as nb_driver
    from fastconv.backends.numba.tiles import SMALLC_PASSES, TILES
    tiles = {f"conv2d_{op}{tile.suffix}_v1": tile for tile in TILES for op in SMALLC_PASSES}
    for name in list(tiles) + [f"conv2d_{op}_smallc_v1" for op in SMALLC_PASSES]:
        dev = cp.cuda.runtime.getDevice()
        kern = nb_driver._gpu_kernels.get((name, dev)) or nb_driver._GpuKernel(name, dev)
        (overload,) = kern.dispatcher.overloads.values()
        print(f"\n{name}: {overload.regs_per_thread} registers, {overload.local_mem_per_thread} B local/thread")
        assert overload.regs_per_thread > 0
        if name in tiles:  # the blocks per SM the split-K choice counts on (Tile.per_sm) fit its registers
            t = tiles[name]
            assert t.per_sm * t.threads * -(-overload.regs_per_thread // 8) * 8 <= 65536, (name, t.per_sm)
        assert overload.local_mem_per_thread == 0, f"{name}: {overload.local_mem_per_thread} B of local memory"


@pytest.mark.parametrize("r, pad", [(3, 1), (5, 2)])
def test_winograd_every_pass_matches_the_oracle(cp, nb, r, pad):
    """conv_tile="winograd" (fastconv/backends/numba/winograd.py) on the device: the three passes at a
    ragged shape (15 x 18 outputs: tiles cut at P and Q) against the float64 loop oracle at REDUCTION_TOL,
    every allocation NaN-poisoned; its kernels keep their tiles out of local memory."""
    import fastconv
    import oracle as ref
    from fastconv.backends.cuda import config as cfg
    from fastconv.backends.numba import driver as nb_driver
    rng = np.random.default_rng(r)
    n, c, h, w, k = 6, 20, 15, 18, 24
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c, r, r)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    dy = rng.standard_normal((n, k, h + 2 * pad - r + 1, w + 2 * pad - r + 1)).astype(np.float32)
    args, g = ((1, 1), (pad, pad), (1, 1), 1), cp.asarray
    with fastconv.using(poison=True, conv_tile=cfg.WINOGRAD):
        y = nb.conv2d_forward(g(x), g(wt), g(b), *args)
        dx = nb.conv2d_backward_data(g(dy), g(wt), x.shape, *args)
        dw = nb.conv2d_backward_weight(g(dy), g(x), wt.shape, *args)
    for name, got, want in (("forward", y, ref.conv2d_forward(x, wt, b, 1, pad)),
                            ("backward_data", dx, ref.conv2d_backward_data(dy, wt, x.shape, 1, pad)),
                            ("backward_weight", dw, ref.conv2d_backward_weight(dy, x, wt.shape, 1, pad))):
        got = cp.asnumpy(got)
        assert np.isfinite(got).all(), f"winograd {name} r={r}: NaN left in the output"
        assert_close(got, want, REDUCTION_TOL, f"winograd {name} r={r}")
    dev = cp.cuda.runtime.getDevice()
    for name in cfg.KERNELS["winograd.cu"]:
        if name.endswith(f"_r{r}"):
            (overload,) = nb_driver._gpu_kernels[(name, dev)].dispatcher.overloads.values()
            print(f"\n{name}: {overload.regs_per_thread} registers, {overload.local_mem_per_thread} B local/thread")
            assert overload.local_mem_per_thread == 0, f"{name}: {overload.local_mem_per_thread} B of local memory"
