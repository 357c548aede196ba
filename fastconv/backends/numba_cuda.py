"""The "numba" GPU kernel family: launchers for the @numba.cuda.jit kernels in numba_kernels.py.

Backend functions take CuPy arrays (validated by fastconv.ops) and return new CuPy arrays; ops
this module does not define come from fastconv.backends.cuda (see fastconv.backend.op). Under the
CUDA simulator (NUMBA_ENABLE_CUDASIM=1, used by CI) the same functions take NumPy arrays and run
the same kernel bodies on the CPU; the ``launch_*`` layer below, which takes preallocated outputs,
is what the simulator tests call.

How a kernel is launched, and why (read from numba-cuda 0.30.4's dispatcher.py and
cudadrv/driver.py, measured by benchmarks/bench_numba_launch.py):

- ``kernel[grid, block](*args)`` costs tens of microseconds: it builds or looks up a launch
  configuration, types every argument, and for each array argument goes through the CUDA Array
  Interface (``wrap_arg(...).to_device``: parse the interface dict, build a device-array view,
  and with CUDA_ARRAY_INTERFACE_SYNC on synchronize the producer's stream), then explodes each
  array into 5 + 2*ndim kernel parameters (meminfo, parent, size, itemsize, data, shape,
  strides) and hands them to ``cuda.core.launch`` with a fresh LaunchConfig.
- ``dispatcher.overloads[sig].launch(args, grid, block, stream)`` skips the typing and the
  configuration lookup but still does per-argument wrapping and the cuda.core launch.
- What this module does: every kernel body indexes its arrays flat, so it is compiled once
  (on first use, with an explicit signature) with ``CPointer(float32)`` / ``CPointer(int32)``
  parameters instead of array structs: one 8-byte parameter per array. The compiled kernel's
  CUfunction is taken from the overload once (``_codelibrary.get_cufunc()`` → CUkernel →
  ``cuKernelGetFunction``); each launch then packs pointers and scalars into a preallocated
  parameter buffer with one ``struct.pack_into`` call and calls the driver's ``cuLaunchKernel``
  through ctypes on CuPy's current stream. No array wrapping, no interface parsing, no stream
  synchronisation, no host-device copies, no Python objects created per launch beyond the
  argument tuple. NUMBA_CUDA_ARRAY_INTERFACE_SYNC is still defaulted to 0 here so that any other
  numba launch in the process does not synchronise on CuPy arrays either.
- Measured on an H100 (benchmarks/bench_numba_launch.py, median us per empty-kernel launch):
  naive 44.6, eager signature + cached configuration 37.8, overload.launch with pointer
  parameters 13.2, this path 7.2, CuPy RawKernel 5.0.
- Under the simulator there are no CUfunctions: the same Python kernel bodies are launched with
  ``cuda.jit(body)[grid, block](*flat_arrays)`` and index 1-d arrays instead of pointers.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_CUDA_ARRAY_INTERFACE_SYNC", "0")

import ctypes  # noqa: E402
import math  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

from . import cuda_config as _cfg  # noqa: E402
from . import numba_kernels as K  # noqa: E402

try:
    from numba.cuda.core import config as _numba_config
except ImportError:  # older numba-cuda keeps the flag in numba's own config
    from numba.core import config as _numba_config

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)

_F32 = np.dtype(np.float32)
_I32 = np.dtype(np.int32)
_INT32_MAX = 2**31 - 1

# ---------------------------------------------------------------------------------------------
# kernel table: name -> parameter kinds ("f" float32*, "i" int32*, "n" int32, "x" float32)

_GEOM = "n" * 16  # n, c, h, w, k, r, s, p, q, sh, sw, ph, pw, dh, dw, groups
_POOL = "n" * 11  # planes, h, w, p, q, kh, kw, sh, sw, ph, pw
_PARAMS = {
    "empty_v1": "fn",
    "conv2d_forward_v1": "ffff" + "n" + _GEOM,
    "conv2d_backward_data_v1": "fff" + _GEOM,
    "conv2d_backward_weight_v1": "fff" + _GEOM + "nn",
    "sum_splits_v1": "ffnn",
    "conv2d_backward_bias_v1": "ffnnn",
    "relu_forward_v1": "ffn",
    "relu_backward_v1": "fffn",
    "leaky_relu_forward_v1": "ffnx",
    "leaky_relu_backward_v1": "fffnx",
    "max_pool2d_forward_v1": "fif" + _POOL,
    "max_pool2d_backward_v1": "ffi" + _POOL,
    "avg_pool2d_forward_v1": "ff" + _POOL + "n",
    "avg_pool2d_backward_v1": "ff" + _POOL + "n",
}
_STRUCT_CODE = {"f": "Q", "i": "Q", "n": "i", "x": "f"}


def _libcuda():
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    lib = ctypes.CDLL(name)
    lib.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3
    lib.cuLaunchKernel.restype = ctypes.c_int
    lib.cuKernelGetFunction.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    lib.cuKernelGetFunction.restype = ctypes.c_int
    lib.cuGetErrorName.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    lib.cuGetErrorName.restype = ctypes.c_int
    return lib


_driver = None


def _cuda_error(code: int) -> str:
    name = ctypes.c_char_p()
    if _driver.cuGetErrorName(code, ctypes.byref(name)) == 0 and name.value:
        return f"{name.value.decode()} ({code})"
    return f"CUresult {code}"


class _GpuKernel:
    """One kernel compiled for one device: its CUfunction and a reusable parameter buffer."""

    def __init__(self, name: str, device_id: int):
        global _driver
        if _driver is None:
            _driver = _libcuda()
        kinds = _PARAMS[name]
        t = cuda.types
        argtypes = [{"f": t.CPointer(t.float32), "i": t.CPointer(t.int32), "n": t.int32,
                     "x": t.float32}[k] for k in kinds]
        sig = t.void(*argtypes)
        with cuda.gpus[device_id]:
            dispatcher = cuda.jit(sig)(getattr(K, name))
            (overload,) = dispatcher.overloads.values()
            overload.bind()
            kernel_handle = int(overload._codelibrary.get_cufunc().handle)
            fn = ctypes.c_void_p()
            err = _driver.cuKernelGetFunction(ctypes.byref(fn), ctypes.c_void_p(kernel_handle))
            if err:
                raise RuntimeError(f"numba kernel {name}: cuKernelGetFunction failed with {_cuda_error(err)}")
        # numba's device scope may leave no context current on exit; CuPy's setDevice makes the
        # device's primary context (the one numba loaded the module into) current again
        _cupy().cuda.runtime.setDevice(device_id)
        self.name = name
        self.dispatcher = dispatcher  # keeps the loaded module alive
        self.fn = fn.value
        # "@" = native sizes and alignment, the layout the kernel's parameters have
        self.format = "@" + "".join(_STRUCT_CODE[k] for k in kinds)
        size = struct.calcsize(self.format)
        self.buffer = (ctypes.c_uint64 * ((size + 7) // 8))()
        base = ctypes.addressof(self.buffer)
        offsets = [struct.calcsize("@" + "".join(_STRUCT_CODE[k] for k in kinds[:i]) + _STRUCT_CODE[kinds[i]])
                   - struct.calcsize("@" + _STRUCT_CODE[kinds[i]]) for i in range(len(kinds))]
        self.params = (ctypes.c_void_p * len(kinds))(*[base + o for o in offsets])
        self.lock = threading.Lock()

    def launch(self, grid, block, stream: int, values):
        with self.lock:
            try:
                struct.pack_into(self.format, self.buffer, 0, *values)
            except struct.error as e:  # an int parameter outside int32 (the launchers check sizes first)
                raise ValueError(f"numba kernel {self.name}: got parameters {values!r}, expected each int to fit "
                                 f"a 32-bit int ({e})") from None
            err = _driver.cuLaunchKernel(self.fn, grid[0], grid[1], grid[2], block[0], block[1], block[2],
                                         0, stream, self.params, None)
        if err:
            raise RuntimeError(f"numba kernel {self.name}: cuLaunchKernel(grid {grid}, block {block}) failed "
                               f"with {_cuda_error(err)}")


_gpu_kernels: dict[tuple[str, int], _GpuKernel] = {}
_sim_kernels: dict[str, object] = {}


_cp = None
_cuda_family = None


def _cupy():
    global _cp
    if _cp is None:
        import cupy
        _cp = cupy
    return _cp


def _cuda():
    """fastconv.backends.cuda (imported on first use: it needs CuPy, the simulator path does not)."""
    global _cuda_family
    if _cuda_family is None:
        from . import cuda
        _cuda_family = cuda
    return _cuda_family


def _pointer(a) -> int:
    data = getattr(a, "data", None)
    ptr = getattr(data, "ptr", None)
    if ptr is not None:
        return ptr
    iface = getattr(a, "__cuda_array_interface__", None)
    if iface is None:
        raise TypeError(f"got {type(a).__name__}, expected a cupy.ndarray (or another CUDA array) on the GPU")
    return iface["data"][0]


def launch(name: str, grid, block, args, stream=None):
    """Launch kernel ``name`` of numba_kernels with ``args`` (arrays in the order of _PARAMS).

    Arrays must already be checked (dtype, C-contiguous); grid and block are 3-tuples. On the GPU
    ``stream`` is a raw CUstream (default: CuPy's current stream); the simulator ignores it.
    """
    kinds = _PARAMS[name]
    if SIMULATOR:
        kernel = _sim_kernels.get(name)
        if kernel is None:
            kernel = _sim_kernels[name] = cuda.jit(getattr(K, name))
        flat = [a.reshape(-1) if k in "fi" else a for k, a in zip(kinds, args)]
        kernel[grid, block](*flat)
        return
    cp = _cupy()
    dev = cp.cuda.runtime.getDevice()
    kernel = _gpu_kernels.get((name, dev))
    if kernel is None:
        kernel = _gpu_kernels[(name, dev)] = _GpuKernel(name, dev)
    if stream is None:
        stream = cp.cuda.get_current_stream().ptr
    values = [_pointer(a) if k in "fi" else a for k, a in zip(kinds, args)]
    kernel.launch(grid, block, stream, values)


# ---------------------------------------------------------------------------------------------
# argument checks and allocation


def _check(a, name: str, dtype=_F32):
    if a.dtype != dtype:
        raise TypeError(f"{name}: got dtype {a.dtype}, expected {dtype} for the numba kernels")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: got a non-contiguous array of shape {tuple(a.shape)}, expected a "
                         "C-contiguous one for the numba kernels")
    if a.size > _INT32_MAX:
        raise ValueError(f"{name}: got {a.size} elements, expected at most {_INT32_MAX} for the numba kernels")
    return a


def _check_out(a, name: str, shape, dtype=_F32):
    _check(a, name, dtype)
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name}: got shape {tuple(a.shape)}, expected {tuple(shape)}")
    return a


def _empty(shape, like, dtype=_F32, what: str = "numba kernel output"):
    """A new output array: numpy under the simulator (``like`` a numpy array), else allocated on the
    current GPU through the cupy family's allocator, so that ``fastconv.backends.cuda.POISON`` (set by
    ``fastconv check`` and the GPU tests) fills it with NaN / -1 before the kernel runs and an out-of-
    memory error is a GPUOutOfMemoryError naming the bytes asked for. Sizes the kernels' int32
    parameters cannot hold are refused before anything is allocated."""
    size = math.prod(shape)
    if size > _INT32_MAX:
        raise ValueError(f"{what}: got {size} elements (shape {tuple(shape)}), expected at most {_INT32_MAX} for "
                         "the numba kernels (32-bit sizes); split the batch")
    if isinstance(like, np.ndarray):
        return np.empty(shape, dtype)
    return _cuda()._alloc(shape, dtype, what)


def _in(a, name: str, dtype=_F32):
    """An input of a backend function, checked as the cupy family checks it
    (fastconv.backends.cuda._arg: a cupy array of ``dtype`` on the current GPU; a non-contiguous
    array is copied to a C-contiguous one), so both families treat the same call alike. Under the
    simulator numpy arrays get the same dtype check and contiguous copy."""
    if SIMULATOR and isinstance(a, np.ndarray):
        if a.dtype != dtype:
            raise TypeError(f"{name}: got dtype {a.dtype}, expected {np.dtype(dtype)} for the numba kernels")
        return np.ascontiguousarray(a)
    return _cuda()._arg(a, name, dtype)


def _blocks(n: int, threads: int) -> int:
    """1-d grid for a grid-stride loop over n items (a cap keeps the grid a few waves deep)."""
    return max(1, min((n + threads - 1) // threads, 65535))


def _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    n, c, h, w = x_shape
    k, _, r, s = w_shape
    p = (h + 2 * padding[0] - dilation[0] * (r - 1) - 1) // stride[0] + 1
    q = (w + 2 * padding[1] - dilation[1] * (s - 1) - 1) // stride[1] + 1
    return (n, c, h, w, k, r, s, p, q, stride[0], stride[1], padding[0], padding[1],
            dilation[0], dilation[1], groups)


def _gemm_grid(name: str, cols: int, rows: int, z: int):
    """Grid of a conv GEMM: x over columns, y over row tiles, z = groups (x splits); a ValueError
    naming the pass when y or z passes CUDA's 65535 (instead of a launch failure)."""
    return _cfg.check_grid(name, ((cols + K.BN - 1) // K.BN, (rows + K.BM - 1) // K.BM, z))


# ---------------------------------------------------------------------------------------------
# launch layer: preallocated outputs, numpy arrays under the simulator, cupy arrays on the GPU


def launch_empty(y, stream=None):
    """The empty kernel (one pointer and one int parameter), for measuring launch cost."""
    launch("empty_v1", (1, 1, 1), (32, 1, 1), (y, 0), stream)


def launch_conv2d_forward(y, x, w, b, stride, padding, dilation, groups, stream=None):
    _check(x, "x"), _check(w, "w")
    geo = _conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    n, _, _, _, k, _, _, p, q = geo[:9]
    _check_out(y, "y", (n, k, p, q))
    if b is not None:
        _check_out(b, "b", (k,))
    grid = _gemm_grid("conv2d_forward", n * p * q, k // groups, groups)
    launch("conv2d_forward_v1", grid, K.GEMM_BLOCK, (y, x, w, w if b is None else b, int(b is not None)) + geo,
           stream)
    return y


def launch_conv2d_backward_data(dx, dy, w, stride, padding, dilation, groups, stream=None):
    _check(dy, "dy"), _check(w, "w")
    geo = _conv_geometry(dx.shape, w.shape, stride, padding, dilation, groups)
    n, c, h, wd, k, _, _, p, q = geo[:9]
    _check_out(dx, "dx", dx.shape)
    _check_out(dy, "dy", (n, k, p, q))
    grid = _gemm_grid("conv2d_backward_data", n * h * wd, c // groups, groups)
    launch("conv2d_backward_data_v1", grid, K.GEMM_BLOCK, (dx, dy, w) + geo, stream)
    return dx


def backward_weight_splits(dy_shape, w_shape, groups, target_blocks: int = 264) -> int:
    """How many slices the N*P*Q reduction of the weight gradient is cut into: enough blocks to
    fill the card (about 2 per SM of an H100/H200), each slice at least 8 BK-steps long, and
    groups*splits within the 65535 blocks grid z allows."""
    n, k, p, q = dy_shape
    _, cg, r, s = w_shape
    base = ((cg * r * s + K.BN - 1) // K.BN) * ((k // groups + K.BM - 1) // K.BM) * groups
    kred = n * p * q
    return max(1, min((target_blocks + base - 1) // base, kred // (8 * K.BK), _cfg.MAX_GRID_YZ // groups))


def launch_conv2d_backward_weight(dw, dy, x, stride, padding, dilation, groups, splits=None, workspace=None,
                                  stream=None):
    """dw from dy and x. The reduction is cut into ``splits`` slices (default: see
    backward_weight_splits) whose partial sums go to ``workspace`` (splits*|dw| floats, allocated
    when None) and are then added in a fixed order, so the result is deterministic."""
    _check(dy, "dy"), _check(x, "x")
    geo = _conv_geometry(x.shape, dw.shape, stride, padding, dilation, groups)
    n, _, _, _, k, r, s, p, q = geo[:9]
    _check_out(dw, "dw", dw.shape)
    _check_out(dy, "dy", (n, k, p, q))
    kred = n * p * q
    if splits is None:
        splits = backward_weight_splits(dy.shape, dw.shape, groups)
    if not (isinstance(splits, int) and splits >= 1):
        raise ValueError(f"splits: got {splits!r}, expected a positive int")
    chunk = -(-kred // splits)
    chunk = -(-chunk // K.BK) * K.BK
    splits = -(-kred // chunk)
    cg = dw.shape[1]
    grid = _gemm_grid("conv2d_backward_weight", cg * r * s, k // groups, groups * splits)
    out = dw
    if splits > 1:
        if workspace is None:
            workspace = _empty((splits * dw.size,), dw, what="conv2d_backward_weight split workspace")
        _check_out(workspace, "workspace", (splits * dw.size,))
        out = workspace
    launch("conv2d_backward_weight_v1", grid, K.GEMM_BLOCK, (out, dy, x) + geo + (splits, chunk), stream)
    if splits > 1:
        launch("sum_splits_v1", (_blocks(dw.size, K.ELEMENTWISE_THREADS), 1, 1), (K.ELEMENTWISE_THREADS, 1, 1),
               (dw, workspace, dw.size, splits), stream)
    return dw


def launch_conv2d_backward_bias(db, dy, stream=None):
    _check(dy, "dy")
    n, k, p, q = dy.shape
    _check_out(db, "db", (k,))
    launch("conv2d_backward_bias_v1", (k, 1, 1), (K.REDUCE_THREADS, 1, 1), (db, dy, n, k, p * q), stream)
    return db


def _elementwise(name, out, inputs, scalars, stream):
    n = out.size
    for a, an in inputs:
        _check_out(a, an, out.shape)
    grid = (_blocks(n, K.ELEMENTWISE_THREADS), 1, 1)
    launch(name, grid, (K.ELEMENTWISE_THREADS, 1, 1), (out,) + tuple(a for a, _ in inputs) + (n,) + scalars,
           stream)
    return out


def launch_relu_forward(y, x, stream=None):
    _check(x, "x"), _check_out(y, "y", x.shape)
    return _elementwise("relu_forward_v1", y, [(x, "x")], (), stream)


def launch_relu_backward(dx, dy, y, stream=None):
    _check(dy, "dy"), _check_out(dx, "dx", dy.shape)
    return _elementwise("relu_backward_v1", dx, [(dy, "dy"), (y, "y")], (), stream)


def launch_leaky_relu_forward(y, x, slope, stream=None):
    _check(x, "x"), _check_out(y, "y", x.shape)
    return _elementwise("leaky_relu_forward_v1", y, [(x, "x")], (float(slope),), stream)


def launch_leaky_relu_backward(dx, dy, y, slope, stream=None):
    _check(dy, "dy"), _check_out(dx, "dx", dy.shape)
    return _elementwise("leaky_relu_backward_v1", dx, [(dy, "dy"), (y, "y")], (float(slope),), stream)


def _pool_geometry(x_shape, ks, stride, padding):
    n, c, h, w = x_shape
    p = (h + 2 * padding[0] - ks[0]) // stride[0] + 1
    q = (w + 2 * padding[1] - ks[1]) // stride[1] + 1
    return (n * c, h, w, p, q, ks[0], ks[1], stride[0], stride[1], padding[0], padding[1])


def launch_max_pool2d_forward(y, argmax, x, ks, stride, padding, stream=None):
    _check(x, "x")
    geo = _pool_geometry(x.shape, ks, stride, padding)
    shape = x.shape[:2] + geo[3:5]
    _check_out(y, "y", shape), _check_out(argmax, "argmax", shape, _I32)
    launch("max_pool2d_forward_v1", (_blocks(y.size, K.ELEMENTWISE_THREADS), 1, 1), (K.ELEMENTWISE_THREADS, 1, 1),
           (y, argmax, x) + geo, stream)
    return y, argmax


def launch_max_pool2d_backward(dx, dy, argmax, ks, stride, padding, stream=None):
    _check(dx, "dx")
    geo = _pool_geometry(dx.shape, ks, stride, padding)
    shape = dx.shape[:2] + geo[3:5]
    _check_out(dy, "dy", shape), _check_out(argmax, "argmax", shape, _I32)
    launch("max_pool2d_backward_v1", (_blocks(dx.size, K.ELEMENTWISE_THREADS), 1, 1),
           (K.ELEMENTWISE_THREADS, 1, 1), (dx, dy, argmax) + geo, stream)
    return dx


def launch_avg_pool2d_forward(y, x, ks, stride, padding, count_include_pad, stream=None):
    _check(x, "x")
    geo = _pool_geometry(x.shape, ks, stride, padding)
    _check_out(y, "y", x.shape[:2] + geo[3:5])
    launch("avg_pool2d_forward_v1", (_blocks(y.size, K.ELEMENTWISE_THREADS), 1, 1), (K.ELEMENTWISE_THREADS, 1, 1),
           (y, x) + geo + (int(bool(count_include_pad)),), stream)
    return y


def launch_avg_pool2d_backward(dx, dy, ks, stride, padding, count_include_pad, stream=None):
    _check(dx, "dx")
    geo = _pool_geometry(dx.shape, ks, stride, padding)
    _check_out(dy, "dy", dx.shape[:2] + geo[3:5])
    launch("avg_pool2d_backward_v1", (_blocks(dx.size, K.ELEMENTWISE_THREADS), 1, 1),
           (K.ELEMENTWISE_THREADS, 1, 1), (dx, dy) + geo + (int(bool(count_include_pad)),), stream)
    return dx


# ---------------------------------------------------------------------------------------------
# backend functions (signatures of notes/INTERFACES.md): check inputs as the cupy family does,
# allocate (poisoned when cuda.POISON is set), then launch on the current stream


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    x, w = _in(x, "x"), _in(w, "w")
    b = None if b is None else _in(b, "b")
    geo = _conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    y = _empty((geo[0], geo[4], geo[7], geo[8]), x, what="conv2d_forward output")
    return launch_conv2d_forward(y, x, w, b, stride, padding, dilation, groups)


def conv2d_backward_data(dy, w, x_shape, stride, padding, dilation, groups):
    dy, w = _in(dy, "dy"), _in(w, "w")
    dx = _empty(tuple(x_shape), dy, what="conv2d_backward_data output")
    return launch_conv2d_backward_data(dx, dy, w, stride, padding, dilation, groups)


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups):
    dy, x = _in(dy, "dy"), _in(x, "x")
    dw = _empty(tuple(w_shape), dy, what="conv2d_backward_weight output")
    return launch_conv2d_backward_weight(dw, dy, x, stride, padding, dilation, groups)


def conv2d_backward_bias(dy):
    dy = _in(dy, "dy")
    return launch_conv2d_backward_bias(_empty((dy.shape[1],), dy, what="conv2d_backward_bias output"), dy)


def relu_forward(x):
    x = _in(x, "x")
    return launch_relu_forward(_empty(x.shape, x, what="relu_forward output"), x)


def relu_backward(dy, y):
    dy, y = _in(dy, "dy"), _in(y, "y")
    return launch_relu_backward(_empty(dy.shape, dy, what="relu_backward output"), dy, y)


def leaky_relu_forward(x, slope):
    x = _in(x, "x")
    return launch_leaky_relu_forward(_empty(x.shape, x, what="leaky_relu_forward output"), x, slope)


def leaky_relu_backward(dy, y, slope):
    dy, y = _in(dy, "dy"), _in(y, "y")
    return launch_leaky_relu_backward(_empty(dy.shape, dy, what="leaky_relu_backward output"), dy, y, slope)


def max_pool2d_forward(x, ks, stride, padding):
    x = _in(x, "x")
    shape = x.shape[:2] + _pool_geometry(x.shape, ks, stride, padding)[3:5]
    return launch_max_pool2d_forward(_empty(shape, x, what="max_pool2d_forward output"),
                                     _empty(shape, x, _I32, "max_pool2d_forward argmax"), x, ks, stride, padding)


def max_pool2d_backward(dy, argmax, x_shape, ks, stride, padding):
    dy, argmax = _in(dy, "dy"), _in(argmax, "argmax", _I32)
    dx = _empty(tuple(x_shape), dy, what="max_pool2d_backward output")
    return launch_max_pool2d_backward(dx, dy, argmax, ks, stride, padding)


def avg_pool2d_forward(x, ks, stride, padding, count_include_pad):
    x = _in(x, "x")
    shape = x.shape[:2] + _pool_geometry(x.shape, ks, stride, padding)[3:5]
    return launch_avg_pool2d_forward(_empty(shape, x, what="avg_pool2d_forward output"), x, ks, stride, padding,
                                     count_include_pad)


def avg_pool2d_backward(dy, x_shape, ks, stride, padding, count_include_pad):
    dy = _in(dy, "dy")
    dx = _empty(tuple(x_shape), dy, what="avg_pool2d_backward output")
    return launch_avg_pool2d_backward(dx, dy, ks, stride, padding, count_include_pad)
