"""Launch-configuration helpers of the cupy kernel family (pure Python, no GPU)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv.backends.cuda import config as cfg


def test_elementwise_blocks():
    assert cfg.elementwise_blocks(0, 132) == 1
    assert cfg.elementwise_blocks(1, 132) == 1
    assert cfg.elementwise_blocks(256, 132) == 1
    assert cfg.elementwise_blocks(257, 132) == 2
    assert cfg.elementwise_blocks(10**9, 132) == 32 * 132
    assert cfg.elementwise_blocks(1024, 132, per_thread=4) == 1
    assert cfg.elementwise_blocks(1025, 132, per_thread=4) == 2
    with pytest.raises(ValueError, match="n=-1"):
        cfg.elementwise_blocks(-1, 132)


def test_warp_rows_blocks():
    assert cfg.warp_rows_blocks(1) == 1
    assert cfg.warp_rows_blocks(8) == 1
    assert cfg.warp_rows_blocks(9) == 2
    assert cfg.warp_rows_blocks(128) == 16


def test_conv_tile_choice():
    assert cfg.conv_tile(32, 25, 132) == "t64x32"            # lenet.conv1 backward-weight: N = C*R*S = 25
    assert cfg.conv_tile(1, 100352, 132) == "t32x128"
    assert cfg.conv_tile(32, 100352, 132) == "t32x128"
    assert cfg.conv_tile(64, 200704, 132) == "t64x128"       # 64 rows: no 128-row tile; enough columns
    assert cfg.conv_tile(64, 2048, 132) == "t64x64"          # 16 wide tiles < 132 SMs
    assert cfg.conv_tile(256, 6272, 132) == "t128x64"        # resnet.c4 forward: 98 128x128 tiles < 132
    assert cfg.conv_tile(256, 100352, 132) == "t128x128"     # 1568 big tiles fill a wave
    assert cfg.conv_tile(256, 2048, 132) == "t64x64"         # dcgan.d3 forward: split-K fills the rest
    assert cfg.conv_tile(256, 2048, 132, z=64) == "t128x128"  # many groups/phases give every SM a block
    with pytest.raises(ValueError):
        cfg.conv_tile(0, 5, 132)


def test_conv_grid():
    assert cfg.conv_grid(256, 6272, "t64x64", 1) == (98, 4, 1)
    assert cfg.conv_grid(33, 129, "t128x128", 3) == (2, 1, 3)
    assert cfg.conv_grid(32, 25, "t64x32", 2) == (1, 1, 2)
    with pytest.raises(ValueError, match="65535"):
        cfg.conv_grid(64, 64, "t64x64", 70000)


@settings(max_examples=200, deadline=None)
@given(m=st.integers(1, 600), n=st.integers(1, 5000), red=st.integers(0, 10**6), z=st.integers(1, 64),
       sms=st.integers(1, 200), tf32=st.booleans())
def test_conv_splits_tile_the_reduction(m, n, red, z, sms, tf32):
    tile = cfg.conv_tile(m, n, sms, z, tf32)
    splits, chunk = cfg.conv_splits(m, n, red, tile, z, sms, tf32=tf32)
    assert 1 <= splits <= cfg.MAX_SPLITS
    assert z * splits <= cfg.MAX_GRID_YZ
    assert chunk % cfg.SPLIT_ALIGN == 0
    assert chunk % cfg.tile_spec(tile, tf32)[2] == 0  # whole BK tiles
    # slices [s*chunk, min(red, (s+1)*chunk)) are non-empty and cover [0, red) exactly
    assert (splits - 1) * chunk < max(red, 1) <= splits * chunk
    assert splits * chunk <= cfg.INT32_LIMIT + cfg.SPLIT_ALIGN
    if splits > 1:
        assert chunk >= cfg.MIN_SPLIT_CHUNK - cfg.SPLIT_ALIGN
        gx, gy, _ = cfg.conv_grid(m, n, tile, z)
        assert gx * gy * z < sms * cfg.tile_spec(tile, tf32)[4]  # only grids under a wave are split


def test_conv_splits_fill_the_gpu_for_design_shapes():
    # lenet.conv1 backward-weight: M=32, N=25, reduction 128*28*28
    splits, _ = cfg.conv_splits(32, 25, 128 * 784, "t64x32", 1, 132)
    assert splits == cfg.MAX_SPLITS
    # dcgan.d3 forward: M=256, N=2048 (32x8x8 outputs), reduction 128*4*4
    tile = cfg.conv_tile(256, 2048, 132)
    splits, _ = cfg.conv_splits(256, 2048, 128 * 16, tile, 1, 132)
    gx, gy, _ = cfg.conv_grid(256, 2048, tile, 1)
    assert gx * gy * splits >= 132 * cfg.CONV_TILES[tile][4] // 2
    # a grid of a full wave is not split
    assert cfg.conv_splits(256, 100352, 2304, "t128x128", 1, 132) == (1, 2304)


def test_tf32_tile_choice_and_splits():
    """TF32 picks from TF32_TILES (t64x64 for small m or n), splits in whole BK tiles of that table
    and counts a wave with its tiles' blocks per SM."""
    assert cfg.conv_tile(32, 25, 132, tf32=True) == "t64x64"          # lenet.conv1 backward-weight
    assert cfg.conv_tile(32, 25088, 132, tf32=True) == "t64x64"       # lenet.conv2 backward-data: m = 32
    assert cfg.conv_tile(64, 200704, 132, tf32=True) == "t64x128"     # resnet.c2 forward
    assert cfg.conv_tile(256, 6272, 132, tf32=True) == "t128x64"      # resnet.c4 forward
    assert cfg.conv_tile(256, 100352, 132, tf32=True) == "t128x128"
    assert cfg.tile_spec("t128x64", tf32=True) == cfg.TF32_TILES["t128x64"] != cfg.tile_spec("t128x64")
    splits, chunk = cfg.conv_splits(256, 2048, 1152, "t128x64", 1, 132, tf32=True)  # dcgan.d3-sized, BK 16
    assert (splits, chunk) == (7, 176)  # 64 blocks, wave 132 x 3: 7 slices of 11 BK tiles
    with pytest.raises(KeyError):
        cfg.tile_spec("t64x32", tf32=True)  # no TF32 tile of that name (the launcher names the setting)


def test_conv_splits_of_an_empty_reduction():
    """A backward-data phase no filter tap reaches: one empty slice (the kernel writes zeros)."""
    assert cfg.conv_splits(8, 8, 0, "t64x64", 4, 132) == (1, cfg.SPLIT_ALIGN)


def test_phase_max_taps_and_activation_codes():
    assert [cfg.phase_max_taps(r, s, d) for r, s, d in [(4, 2, 1), (5, 2, 1), (3, 3, 2), (2, 3, 1), (3, 2, 2)]] == \
        [2, 3, 1, 1, 3]
    assert [cfg.activation_code(a) for a in (None, "relu", "leaky_relu", "tanh")] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="activation: got 'elu', expected one of None"):
        cfg.activation_code("elu")


def test_check_int32_keeps_a_margin():
    # the kernels add tile offsets (k0 + BK, n0 + BN) to these sizes in 32-bit ints
    assert cfg.INT32_LIMIT == 2**31 - 1 - 4096
    assert cfg.check_int32("x", cfg.INT32_LIMIT, "N*P*Q") == cfg.INT32_LIMIT
    with pytest.raises(ValueError, match=r"x: got N\*P\*Q = 2147479552, expected at most 2147479551"):
        cfg.check_int32("x", cfg.INT32_LIMIT + 1, "N*P*Q")
    with pytest.raises(ValueError, match=r"x: got N\*P\*Q = 2147483648"):
        cfg.check_int32("x", 2**31, "N*P*Q")


def test_check_grid():
    assert cfg.check_grid("k", (2**31 - 1, 65535, 65535)) == (2**31 - 1, 65535, 65535)
    for bad in [(1, 65536, 1), (1, 1, 65536), (2**31, 1, 1), (0, 1, 1)]:
        with pytest.raises(ValueError, match=r"k: got a launch grid of .* expected 1 <= x <= 2147483647 and "
                                             r"1 <= y, z <= 65535"):
            cfg.check_grid("k", bad)


@pytest.mark.parametrize("red", [cfg.INT32_LIMIT, cfg.INT32_LIMIT - 100_000, 2**30 + 12345, 1_500_000_000])
def test_conv_splits_slice_ends_fit_int32(red):
    """The kernel computes a slice's end as s*chunk + chunk in an int: at most splits*chunk."""
    splits, chunk = cfg.conv_splits(64, 64, red, "t64x64", 1, 132)
    assert splits * chunk <= cfg.INT32_LIMIT + cfg.SPLIT_ALIGN
    assert (splits - 1) * chunk < red <= splits * chunk
    assert chunk % cfg.SPLIT_ALIGN == 0


def test_conv_out_size_matches_the_oracle():
    """The one output-size formula (fastconv.argcheck, used by ops and every backend)."""
    import oracle
    from fastconv.argcheck import conv_out_size
    for args in [(28, 5, 1, 2, 1), (14, 4, 2, 1, 1), (7, 3, 2, 1, 1), (9, 3, 3, 0, 2)]:
        assert conv_out_size(*args) == oracle.out_size(*args)


def test_kernel_registry_covers_every_tile_and_pass():
    names = set(cfg.KERNELS["conv.cu"])
    for t in cfg.CONV_TILES:
        for p in ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight"):
            assert f"{p}_v3_{t}" in names
    for bm, bn, bk, nt, minb in cfg.CONV_TILES.values():
        assert nt == bm * bn // 64 and nt % bk == 0 and bn % (nt // bk) == 0  # 8x8 outputs per thread


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


def test_cpu_import_does_not_need_cupy():
    import subprocess
    import sys
    code = ("import sys; sys.modules['cupy'] = None; import fastconv, fastconv.ops, fastconv.backends.cuda.config, "
            "fastconv.backends.cuda.loader; import numpy as np; "
            "print(fastconv.ops.relu_forward(np.array([-1.0, 2.0])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------------------------------------
# launcher and loader logic that needs no GPU, run against a stand-in ``cupy`` module

import sys  # noqa: E402
import types  # noqa: E402

import numpy as np  # noqa: E402


def _fake_cupy(device_count=1):
    """A stand-in for the parts of cupy that fastconv.backends.cuda and fastconv.backend touch."""
    cp = types.ModuleType("cupy")
    state = types.SimpleNamespace(device=0, built=[])

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
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
        for m, v in saved_attrs.items():
            if v is None:
                pkg.__dict__.pop(m, None)
            else:
                setattr(pkg, m, v)


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


def test_channel_splits_tile_the_rows():
    assert cfg.channel_splits(64, 128, 784, 132) == (9, 15)   # ~4 blocks per SM over 64 channels
    assert cfg.channel_splits(1024, 128, 784, 132) == (1, 128)  # channels alone fill the GPU
    assert cfg.channel_splits(4, 3, 10, 132) == (1, 3)         # too few elements to split
    with pytest.raises(ValueError, match="channel_splits: got channels=0"):
        cfg.channel_splits(0, 1, 1, 132)


@settings(max_examples=200, deadline=None)
@given(c=st.integers(1, 70000), rows=st.integers(1, 5000), hw=st.integers(1, 5000), sms=st.integers(1, 200))
def test_channel_splits_cover_every_row_once(c, rows, hw, sms):
    splits, chunk = cfg.channel_splits(c, rows, hw, sms)
    assert (splits - 1) * chunk < rows <= splits * chunk  # non-empty slices tiling [0, rows)
    assert splits == 1 or chunk * hw >= cfg.MIN_SLICE_ELEMS // 2


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


@pytest.mark.parametrize("count,message", [(RuntimeError("cudaErrorNoDevice"), "CUDA reports no usable GPU "
                                                                               r"\(cudaErrorNoDevice\)"),
                                           (0, "CUDA reports 0 GPUs")])
def test_require_gpu_with_cupy_but_no_device(count, message, monkeypatch):
    from fastconv import backend
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(device_count=count))
    with pytest.raises(RuntimeError, match=f"device: 'cuda' asked for, but {message}"):
        backend.require_gpu()
    assert backend.gpu_available() is False


def test_check_exits_2_without_a_gpu():
    import subprocess
    code = ("import sys, runpy; sys.modules['cupy'] = None; sys.argv = ['fastconv.check']; "
            "runpy.run_module('fastconv.check', run_name='__main__', alter_sys=True)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "fastconv check: no usable CUDA GPU" in out.stderr and "expected a machine with an NVIDIA GPU" in out.stderr
    from fastconv.backend import gpu_available
    if not gpu_available():  # the plain command, where it cannot find a GPU either
        out = subprocess.run([sys.executable, "-m", "fastconv.check"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and "no usable CUDA GPU" in out.stderr, (out.returncode, out.stderr)


# every (op, pass) row fastconv.check's case functions produce
_CHECK_ROWS = (
    [("conv2d", p) for p in ("forward", "backward_data", "backward_weight", "backward_bias")]
    + [(a, p) for a in ("relu", "leaky_relu", "sigmoid", "tanh") for p in ("forward", "backward")]
    + [("max_pool2d", p) for p in ("forward", "argmax", "backward")]
    + [("avg_pool2d", f"{p}_{t}") for p in ("forward", "backward") for t in ("incl_pad", "excl_pad")]
    + [("relu_max_pool2d", p) for p in ("forward", "argmax", "backward")]
    + [("linear", p) for p in ("forward", "backward_data", "backward_weight", "backward_bias")]
    + [("batchnorm", f"{p}_{m}") for p in ("forward", "mean_invstd", "running_stats", "backward", "backward_params")
       for m in ("train", "eval")]
    + [("dropout", p) for p in ("mask", "forward", "backward")]
    + [("softmax_xent", "loss"), ("softmax_xent", "backward"), ("bce_logits", "loss"), ("bce_logits", "backward")]
    + [("sgd_update", "m0.0"), ("sgd_update", "m0.9_nesterov"), ("adam_update", "step3")])


def _defs(package_dir):
    """The top-level functions of every module of a backend package."""
    import ast
    return {f.name for path in package_dir.glob("*.py") for f in ast.parse(path.read_text()).body
            if isinstance(f, ast.FunctionDef)}


def test_check_rows_map_to_backend_functions():
    from pathlib import Path

    import fastconv.backends as pkg
    from fastconv import check
    cupy_ops = _defs(Path(pkg.__file__).parent / "cuda")
    expect = {("conv2d", "backward_bias"): "conv2d_backward_bias", ("max_pool2d", "argmax"): "max_pool2d_forward",
              ("avg_pool2d", "backward_excl_pad"): "avg_pool2d_backward",
              ("linear", "backward_bias"): "linear_backward_weight",
              ("batchnorm", "mean_invstd_eval"): "batchnorm_forward",
              ("batchnorm", "backward_params_train"): "batchnorm_backward", ("dropout", "mask"): "dropout_forward",
              ("softmax_xent", "loss"): "softmax_cross_entropy", ("bce_logits", "backward"): "bce_with_logits",
              ("sgd_update", "m0.9_nesterov"): "sgd_update", ("tanh", "backward"): "tanh_backward"}
    for op, ps in _CHECK_ROWS:
        fn = check.backend_function(op, ps)
        assert fn in cupy_ops, f"check row {op} {ps} -> {fn}, which fastconv.backends.cuda does not define"
        if (op, ps) in expect:
            assert fn == expect[(op, ps)], (op, ps, fn)


def test_check_labels_numba_fallback_rows(monkeypatch):
    """Rows whose op the numba family does not define are labelled numba->cupy (fastconv.backend.op
    runs the cupy kernel for them); the label follows the real numba package's definitions."""
    from pathlib import Path

    import fastconv.backends as pkg
    from fastconv import check
    numba_ops = _defs(Path(pkg.__file__).parent / "numba")
    stand_in = types.ModuleType("fastconv.backends.numba")
    for name in numba_ops:
        setattr(stand_in, name, lambda *a: None)
    monkeypatch.setitem(sys.modules, "fastconv.backends.numba", stand_in)
    labels = {(op, ps): check.family_label("numba", op, ps) for op, ps in _CHECK_ROWS}
    own = {k for k, v in labels.items() if v == "numba"}
    assert own == {(op, ps) for op, ps in _CHECK_ROWS if op in ("conv2d", "relu", "leaky_relu", "max_pool2d",
                                                                  "avg_pool2d")}
    assert all(v == "numba->cupy" for k, v in labels.items() if k not in own)
    assert check.family_label("cupy", "linear", "forward") == "cupy"
