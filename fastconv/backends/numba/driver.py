"""How the numba family launches its kernels, and the checks and allocation every launcher shares.

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

import ctypes
import math
import struct
import sys
import threading

import numpy as np
from numba import cuda

from ...plan_record import note_launch
from ..cuda.config import cdiv


def empty_v1(y, n):
    """Does nothing: launched by benchmarks/bench_numba_launch.py and the GPU tests to measure the
    host-side cost of one launch through launch(). Work: 0 FLOPs, 0 bytes."""


try:
    from numba.cuda.core import config as _numba_config
except ImportError:  # older numba-cuda keeps the flag in numba's own config
    from numba.core import config as _numba_config


SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)


_F32 = np.dtype(np.float32)


_I32 = np.dtype(np.int32)


_INT32_MAX = 2**31 - 1


_GEOM = "n" * 16  # n, c, h, w, k, r, s, p, q, sh, sw, ph, pw, dh, dw, groups


_POOL = "n" * 11  # planes, h, w, p, q, kh, kw, sh, sw, ph, pw


_PARAMS = {
    "empty_v1": "fn",
    "conv2d_forward_t64x64_v1": "ffff" + "n" + _GEOM + "nn",  # + splits, chunk
    "conv2d_backward_data_t64x64_v1": "fff" + _GEOM + "n",  # + splits (phases decoded on the device)
    "conv2d_backward_weight_t64x64_v1": "fff" + _GEOM + "nn",
    "conv2d_forward_t128_v1": "ffff" + "n" + _GEOM + "nn",
    "conv2d_backward_data_t128_v1": "fff" + _GEOM + "n",
    "conv2d_backward_weight_t128_v1": "fff" + _GEOM + "nn",
    "conv2d_forward_t32x128_v1": "ffff" + "n" + _GEOM + "nn",
    "conv2d_backward_data_t32x128_v1": "fff" + _GEOM + "n",
    "conv2d_backward_weight_t32x128_v1": "fff" + _GEOM + "nn",
    "conv2d_forward_t128x64_v1": "ffff" + "n" + _GEOM + "nn",
    "conv2d_backward_data_t128x64_v1": "fff" + _GEOM + "n",
    "conv2d_backward_weight_t128x64_v1": "fff" + _GEOM + "nn",
    "conv2d_forward_t64x128_v1": "ffff" + "n" + _GEOM + "nn",
    "conv2d_backward_data_t64x128_v1": "fff" + _GEOM + "n",
    "conv2d_backward_weight_t64x128_v1": "fff" + _GEOM + "nn",
    "conv2d_forward_smallc_v1": "ffff" + "n" + _GEOM + "n" * 7,  # + tpr, tqq, ctiles, tiles, ir, iw, iwp
    "conv2d_backward_data_smallc_v1": "fff" + _GEOM + "n" * 14 + "n" * 8,  # + a phase, tpr, tqq, kc, ctiles, ...
    "conv2d_backward_weight_smallc_v1": "fff" + _GEOM + "n" * 10,  # + tp, per, rtiles, no, eg, npart, ir, iw, ...
    "sum_splits_v1": "ffnnn",   # + add
    "conv2d_backward_bias_v1": "ffnnnn",
    "relu_forward_v2": "ffnx",      # + slope (unused by relu)
    "relu_backward_v2": "fffnx",
    "leaky_relu_forward_v2": "ffnx",
    "leaky_relu_backward_v2": "fffnx",
    "tanh_forward_v2": "ffnx",      # + slope (unused)
    "tanh_backward_v2": "fffnx",
    "max_pool2d_forward_v1": "fif" + _POOL + "n",  # + planes per grid z-slice
    "max_pool2d_backward_v1": "ffi" + _POOL + "n",
    "avg_pool2d_forward_v1": "ff" + _POOL + "nn",  # + planes per z-slice, count_include_pad
    "avg_pool2d_backward_v1": "ff" + _POOL + "nn",
    "max_pool2d_forward_v2_2x2": "fif" + "n" * 5 + "n",  # planes, h, w, p, q + planes per z-slice
    "max_pool2d_backward_v2_2x2": "ffi" + "n" * 5 + "n",
    "avg_pool2d_forward_v2_2x2": "ff" + "n" * 5 + "n",
    "avg_pool2d_backward_v2_2x2": "ff" + "n" * 5 + "n",
    "conv2d_winograd_input_v3_r3": "ff" + "n" * 8,  # N, C, H, W, pad_h, pad_w, tile rows, tile columns
    "conv2d_winograd_filter_v2_r3": "ff" + "n" * 3,  # K, C, flip
    "conv2d_winograd_output_v2_r3": "fff" + "n" * 7,  # N, K, P, Q, tile rows, tile columns, has_bias
    "conv2d_winograd_wgrad_dy_v3_r3": "ff" + "n" * 6,  # N, K, P, Q, tile rows, tile columns
    "conv2d_winograd_wgrad_output_v2_r3": "ff" + "n" * 3,  # K, C, add
    "conv2d_winograd_input_v3_r5": "ff" + "n" * 8,
    "conv2d_winograd_filter_v2_r5": "ff" + "n" * 3,
    "conv2d_winograd_output_v2_r5": "fff" + "n" * 7,
    "conv2d_winograd_wgrad_dy_v3_r5": "ff" + "n" * 6,
    "conv2d_winograd_wgrad_output_v2_r5": "ff" + "n" * 3,
}


_STRUCT_CODE = {"f": "Q", "i": "Q", "n": "i", "x": "f"}


def signature(name: str):
    """The numba signature kernel ``name`` is compiled with on the GPU: ``float32*`` / ``int32*``
    pointers for its arrays, int32 and float32 scalars, in the order of _PARAMS."""
    t = cuda.types
    kind = {"f": t.CPointer(t.float32), "i": t.CPointer(t.int32), "n": t.int32, "x": t.float32}
    return t.void(*(kind[k] for k in _PARAMS[name]))


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
        with cuda.gpus[device_id]:
            dispatcher = cuda.jit(signature(name))(_body(name))
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
        self.dispatcher = dispatcher  # keeps the loaded module alive
        self._set_layout(name, fn.value)

    def _set_layout(self, name: str, fn: int):
        """The CUfunction ``fn`` and the parameter layout of kernel ``name`` (_PARAMS)."""
        kinds = _PARAMS[name]
        self.name = name
        self.fn = fn
        # "@" = native sizes and alignment, the layout the kernel's parameters have
        self.format = "@" + "".join(_STRUCT_CODE[k] for k in kinds)
        self.offsets = [struct.calcsize("@" + "".join(_STRUCT_CODE[k] for k in kinds[:i]) + _STRUCT_CODE[kinds[i]])
                        - struct.calcsize("@" + _STRUCT_CODE[kinds[i]]) for i in range(len(kinds))]
        self.buffer, self.params = self._parameter_buffer()
        self.lock = threading.Lock()
        self.kinds = kinds

    def _parameter_buffer(self):
        """(buffer, the kernelParams array of pointers into it) for cuLaunchKernel."""
        buffer = (ctypes.c_uint64 * ((struct.calcsize(self.format) + 7) // 8))()
        base = ctypes.addressof(buffer)
        return buffer, (ctypes.c_void_p * len(self.offsets))(*[base + o for o in self.offsets])

    def __call__(self, grid, block, args, stream=None):
        """Launch with ``args`` as launch() takes them on ``stream`` (a raw CUstream; default: CuPy's
        current stream)."""
        if stream is None:
            stream = _cupy().cuda.get_current_stream().ptr
        self.launch(grid, block, stream, [_pointer(a) if k in "fi" else a for k, a in zip(self.kinds, args)])

    def bind_launch(self, grid, block, args, positions):
        """A launch with the scalars of ``args`` (as launch() takes them) packed now, into a buffer
        of its own: ``bound(*arrays)`` writes the pointers of the arrays for ``positions`` (in that
        order) and launches on CuPy's current stream. fastconv.plan binds each recorded launch once,
        so that a plan hit packs no scalar."""
        buffer, params = self._parameter_buffer()
        self._pack(buffer, [0 if i in positions else a for i, a in enumerate(args)])
        words = [self.offsets[i] // 8 for i in positions]      # pointers are 8-byte aligned parameters
        g0, g1, g2 = grid
        b0, b1, b2 = block
        fn, launch, lock, stream = self.fn, _driver.cuLaunchKernel, threading.Lock(), _cupy().cuda.get_current_stream

        def bound(*arrays):
            s = stream().ptr
            with lock:
                for w, a in zip(words, arrays):
                    buffer[w] = a.data.ptr
                err = launch(fn, g0, g1, g2, b0, b1, b2, 0, s, params, None)
            if err:
                self._failed(err, grid, block)
        return bound

    def _pack(self, buffer, values):
        try:
            struct.pack_into(self.format, buffer, 0, *values)
        except struct.error as e:  # an int parameter outside int32 (the launchers check sizes first)
            raise ValueError(f"numba kernel {self.name}: got parameters {values!r}, expected each int to fit "
                             f"a 32-bit int ({e})") from None

    def launch(self, grid, block, stream: int, values):
        with self.lock:
            self._pack(self.buffer, values)
            err = _driver.cuLaunchKernel(self.fn, grid[0], grid[1], grid[2], block[0], block[1], block[2],
                                         0, stream, self.params, None)
        if err:
            self._failed(err, grid, block)

    def _failed(self, err: int, grid, block):
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
    """fastconv.backends.cuda.launch, the cupy family's allocator and input checks (imported on
    first use: it needs CuPy, the simulator path does not)."""
    global _cuda_family
    if _cuda_family is None:
        from ..cuda import launch as cupy_launch
        _cuda_family = cupy_launch
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


def _body(name: str):
    """The Python kernel body ``name`` (kernel bodies live in the op-family modules)."""
    import importlib
    for family in ("conv_kernels", "conv_smallc", "conv_smallc_wgrad", "conv", "winograd", "activation", "pool",
                   "driver"):
        fn = getattr(importlib.import_module(f"{__package__}.{family}"), name, None)
        if fn is not None:
            return fn
    raise ValueError(f"kernel: got {name!r}, expected one of {sorted(_PARAMS)}")


def launch(name: str, grid, block, args, stream=None):
    """Launch kernel ``name`` (a kernel body of this package) with ``args`` (arrays in the order of _PARAMS).

    Arrays must already be checked (dtype, C-contiguous); grid and block are 3-tuples. On the GPU
    ``stream`` is a raw CUstream (default: CuPy's current stream); the simulator ignores it.
    """
    if SIMULATOR:
        kernel = _sim_kernels.get(name)
        if kernel is None:
            kernel = _sim_kernels[name] = cuda.jit(_body(name))
        flat = [a.reshape(-1) if k in "fi" else a for k, a in zip(_PARAMS[name], args)]
        kernel[grid, block](*flat)
        return
    dev = _cupy().cuda.runtime.getDevice()
    kernel = _gpu_kernels.get((name, dev))
    if kernel is None:
        kernel = _gpu_kernels[(name, dev)] = _GpuKernel(name, dev)
    kernel(grid, block, args, stream)
    note_launch(kernel, grid, block, args)


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
    current GPU through the cupy family's allocator, so that the poison setting (on in
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


def _in(a, name: str, dtype=_F32, inplace: bool = False):
    """An input of a backend function, checked as the cupy family checks it
    (fastconv.backends.cuda.launch._arg: a cupy array of ``dtype`` on the current GPU; a non-contiguous
    array is copied to a C-contiguous one, or refused when ``inplace``: written in place), so both
    families treat the same call alike. Under the simulator numpy arrays get the same checks."""
    if SIMULATOR and isinstance(a, np.ndarray):
        if a.dtype != dtype:
            raise TypeError(f"{name}: got dtype {a.dtype}, expected {np.dtype(dtype)} for the numba kernels")
        if inplace and not a.flags.c_contiguous:
            raise ValueError(f"{name}: got a non-contiguous array, expected a C-contiguous one (written in place)")
        return np.ascontiguousarray(a)
    return _cuda()._arg(a, name, dtype, inplace)


def _blocks(n: int, threads: int) -> int:
    """1-d grid for a grid-stride loop over n items (a cap keeps the grid a few waves deep)."""
    return max(1, min(cdiv(n, threads), 65535))


def launch_empty(y, stream=None):
    """The empty kernel (one pointer and one int parameter), for measuring launch cost."""
    launch("empty_v1", (1, 1, 1), (32, 1, 1), (y, 0), stream)
