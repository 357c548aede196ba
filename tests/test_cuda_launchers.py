"""The cupy family's launchers and loader without a GPU: argument and size checks before any
allocation, module builds per device and #defines, imports without CuPy, run against a stand-in
``cupy`` module."""

import subprocess
import sys
import types

import numpy as np
import pytest


def _fake_cupy(device_count=1):
    """A stand-in for the parts of cupy that fastconv.backends.cuda and fastconv.backend touch."""
    cp = types.ModuleType("cupy")
    state = types.SimpleNamespace(device=0, built=[], lookups=[])

    class ndarray:
        def __init__(self, shape, dtype=np.float32):
            self.shape, self.dtype = tuple(shape), np.dtype(dtype)
            self.ndim, self.size = len(self.shape), int(np.prod(self.shape, dtype=np.int64))
            self.flags = types.SimpleNamespace(c_contiguous=True)
            self.device = types.SimpleNamespace(id=state.device)

    class Device:
        def __init__(self, i=None):
            self.id = state.device if i is None else i

    class RawModule:
        def __init__(self, code, options=()):
            state.built.append((state.device, code))
            self.code = code

        def get_function(self, name):
            state.lookups.append((state.device, name))
            return name

    def get_device_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    def no_alloc(*a, **k):
        raise AssertionError("allocated before the size checks")

    cp.ndarray, cp.RawModule, cp.empty, cp.zeros = ndarray, RawModule, no_alloc, no_alloc
    cp.cuda = types.SimpleNamespace(
        Device=Device, runtime=types.SimpleNamespace(getDeviceCount=get_device_count),
        compiler=types.SimpleNamespace(CompileException=type("CompileException", (Exception,), {})),
        memory=types.SimpleNamespace(OutOfMemoryError=type("OutOfMemoryError", (Exception,), {})))
    cp.state = state
    return cp


def _restore(mapping, saved):
    """Puts saved's entries back into mapping; an entry saved as None was absent and is removed."""
    for k, v in saved.items():
        if v is None:
            mapping.pop(k, None)
        else:
            mapping[k] = v


@pytest.fixture
def fake_cupy(monkeypatch):
    """The cupy family's launch modules imported against the stand-in cupy, yielded as one namespace
    of all their names (private helpers included); the real modules come back after."""
    import importlib

    import fastconv.backends.cuda as pkg
    from fastconv.backends.cuda import loader as cuda_loader
    fake = _fake_cupy()
    names = ["cupy"] + [f"fastconv.backends.cuda.{m}" for m in pkg.OP_FAMILIES + pkg._SHARED]
    saved = {k: sys.modules.get(k) for k in names}
    saved_attrs = {m: pkg.__dict__.get(m) for m in pkg.OP_FAMILIES + pkg._SHARED}
    sys.modules["cupy"] = fake
    for k in names[1:]:
        sys.modules.pop(k, None)
    monkeypatch.setattr(cuda_loader, "_modules", {})
    try:
        merged = {}
        for k in names[1:]:
            merged.update(vars(importlib.import_module(k)))
        yield fake, types.SimpleNamespace(**merged)
    finally:
        _restore(sys.modules, saved)
        _restore(pkg.__dict__, saved_attrs)


def test_int32_arguments_raise_value_errors(fake_cupy):
    _, cuda = fake_cupy
    assert cuda._i32s("x", "N C", (3, 4)) == (np.int32(3), np.int32(4))
    with pytest.raises(ValueError, match=r"x: got C = 2147483648, expected at most 2147483647"):
        cuda._i32s("x", "N C", (3, 2**31))
    with pytest.raises(ValueError, match=r"x: got N\*C\*H\*W = 48000000000"):
        cuda._pool_ints("x", 3 * 10**9, 4, 4, 2, 2, (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match=r"x: got N\*C\*P\*Q = 2200000000"):
        cuda._pool_ints("x", 2 * 10**8, 3, 3, 11, 1, (1, 1), (1, 1), (4, 0))
    with pytest.raises(ValueError, match=r"dy: got N\*C\*H\*W = 2500000000"):
        cuda._pool_ints("dy", 1, 50000, 50000, 25000, 25000, (2, 2), (2, 2), (0, 0))


def test_pool_launchers_check_plane_size_before_allocating(fake_cupy):
    """every pool launcher refuses N*C*H*W past INT32_LIMIT (its kernels index in 32 bits) before
    any GPU memory is asked for (the stand-in cupy fails any allocation)."""
    fake, cuda = fake_cupy
    big = (1, 1, 50000, 50000)
    dy = fake.ndarray((1, 1, 2, 2))
    am = fake.ndarray((1, 1, 2, 2), np.int32)
    pool = ((2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match=r"x: got N\*C\*H\*W = 2500000000"):
        cuda.max_pool2d_forward(fake.ndarray(big), *pool)
    with pytest.raises(ValueError, match=r"x: got N\*C\*H\*W = 2500000000"):
        cuda.avg_pool2d_forward(fake.ndarray(big), *pool, True)
    with pytest.raises(ValueError, match=r"dy: got N\*C\*H\*W = 2500000000"):
        cuda.avg_pool2d_backward(dy, big, *pool, True)
    with pytest.raises(ValueError, match=r"dy: got N\*C\*H\*W = 2500000000"):
        cuda.max_pool2d_backward(dy, am, big, *pool)
    with pytest.raises(ValueError, match=r"dy: got N\*C\*H\*W = 2500000000"):
        cuda.conv2d_backward_data(fake.ndarray((1, 1, 2, 2)), fake.ndarray((1, 1, 1, 1)), big, (1, 1), (0, 0),
                                  (1, 1), 1)


def test_bandwidth_launchers_check_int32_sizes_before_allocating(fake_cupy):
    """The 32-bit-indexed bias, batchnorm, activation and dropout launchers refuse a tensor past
    INT32_LIMIT elements with the argument named, before any GPU memory is asked for."""
    fake, cuda = fake_cupy
    big = fake.ndarray((2, 2**20, 32, 32))  # 2^31 elements
    vec = fake.ndarray((2**20,))
    with pytest.raises(ValueError, match=r"dy: got N\*C\*H\*W = 2147483648, expected at most 2147479551"):
        cuda.conv2d_backward_bias(big)
    with pytest.raises(ValueError, match=r"x: got N\*C\*H\*W = 2147483648"):
        cuda.batchnorm_forward(big, vec, vec, vec, vec, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match=r"x: got N\*C\*H\*W = 2147483648"):
        cuda.batchnorm_backward(big, big, vec, vec, vec, True)
    with pytest.raises(ValueError, match=r"x: got size = 2147483648"):
        cuda.relu_forward(big)
    with pytest.raises(ValueError, match=r"dy: got size = 2147483648"):
        cuda.tanh_backward(big, big)
    with pytest.raises(ValueError, match=r"x: got size = 2147483648"):
        cuda.dropout_forward(big, 0.5, 1)


def test_loader_finds_sources_and_inlines_headers():
    from fastconv.backends.cuda import loader as cuda_loader
    src = cuda_loader.source("conv.cu", {"CONV_SMALLC_KC": 16})
    assert src.startswith("#define CONV_SMALLC_KC 16\n")
    assert not any(line.startswith("#include") for line in src.splitlines())
    assert "block_sum" in src and "struct TapIter" in src and "gemm_mainloop" in src and "#pragma once" not in src
    with pytest.raises(ValueError, match="kernel file"):
        cuda_loader.source("nope.cu")
    with pytest.raises(ValueError, match="kernel: got 'conv2d_forward_v9'"):
        cuda_loader.function("conv.cu", "conv2d_forward_v9")


def test_loader_builds_once_per_device_and_defines(fake_cupy, monkeypatch):
    from fastconv.backends.cuda import loader as cuda_loader
    fake, _ = fake_cupy
    monkeypatch.delenv("FASTCONV_CUDA_DEFINES", raising=False)
    built = fake.state.built
    cuda_loader.function("pool.cu", "max_pool2d_forward_v2")
    cuda_loader.function("pool.cu", "avg_pool2d_forward_v2")
    assert len(built) == 1 and built[0][0] == 0
    fake.state.device = 1
    cuda_loader.function("pool.cu", "max_pool2d_forward_v2")
    assert len(built) == 2 and built[1][0] == 1
    fake.state.device = 0
    cuda_loader.function("pool.cu", "max_pool2d_forward_v2")
    assert len(built) == 2  # device 0's module is reused
    assert fake.state.lookups.count((0, "max_pool2d_forward_v2")) == 1  # and its function, looked up once
    monkeypatch.setenv("FASTCONV_CUDA_DEFINES", "CONV_SMALLC_KC=32, FASTCONV_TUNE=2")
    cuda_loader.function("conv.cu", "conv2d_forward_v3_t64x64")
    assert len(built) == 3 and built[2][1].startswith("#define CONV_SMALLC_KC 32\n#define FASTCONV_TUNE 2\n")
    cuda_loader.function("conv.cu", "conv2d_forward_v3_t32x128")
    assert len(built) == 3
    cuda_loader.function("pool.cu", "max_pool2d_forward_v2")  # the hook applies to every module
    assert len(built) == 4 and built[3][1].startswith("#define CONV_SMALLC_KC 32\n")
    cuda_loader.function("conv.cu", "conv2d_forward_v3_t64x64", {"CONV_SMALLC_KC": 16})  # an argument wins
    assert len(built) == 5 and built[4][1].startswith("#define CONV_SMALLC_KC 16\n#define FASTCONV_TUNE 2\n")
    monkeypatch.delenv("FASTCONV_CUDA_DEFINES")
    cuda_loader.function("conv.cu", "conv2d_forward_v3_t64x64")
    assert len(built) == 6 and built[5][1].startswith("// conv.cu")


@pytest.mark.parametrize("raw", ["CONV_BK_T64", "CONV_BK_T64=eight", "conv_bk=8", "A=1,=2"])
def test_loader_rejects_bad_define_overrides(raw, monkeypatch):
    from fastconv.backends.cuda import loader as cuda_loader
    monkeypatch.setenv("FASTCONV_CUDA_DEFINES", raw)
    with pytest.raises(ValueError, match="FASTCONV_CUDA_DEFINES: got .* expected NAME=INTEGER items"):
        cuda_loader.env_defines()


def test_cpu_import_does_not_need_cupy():
    code = ("import sys; sys.modules['cupy'] = None; import fastconv, fastconv.ops, fastconv.backends.cuda.config, "
            "fastconv.backends.cuda.loader; import numpy as np; "
            "print(fastconv.ops.relu_forward(np.array([-1.0, 2.0])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("count,message", [(RuntimeError("cudaErrorNoDevice"), "CUDA reports no usable GPU "
                                                                               r"\(cudaErrorNoDevice\)"),
                                           (0, "CUDA reports 0 GPUs")])
def test_require_gpu_with_cupy_but_no_device(count, message, monkeypatch):
    from fastconv import backend
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(device_count=count))
    with pytest.raises(RuntimeError, match=f"device: 'cuda' asked for, but {message}"):
        backend.require_gpu()
    assert backend.gpu_available() is False
