"""The ``cupy.cuda`` part of the stand-in: one device, streams, events, graph capture, compiled modules.

Kernel launches go through :class:`RawKernel`: the grid, block and shared-memory size are checked
against the limits of an H100 (what CUDA would refuse is refused), every argument is checked
against the C type of its parameter (a wrong numpy scalar width or a host array is an error here,
a silent wrong answer on a GPU), the launch is recorded in the active traces, and then run on the
CPU (fastconv.emu.build) unless ``SETTINGS.execute`` is off or a stream is capturing — captured
launches are kept in the graph that ``end_capture()`` returns and run by ``Graph.launch()``.
"""

from __future__ import annotations

import time

import numpy as np

from . import arrays, state
from .build import DTYPES, CompileError, Module

MAX_THREADS = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
STATIC_SMEM = 48 * 1024
MAX_SMEM = 227 * 1024
ATTRIBUTES = {"MultiProcessorCount": 132, "MaxThreadsPerBlock": MAX_THREADS, "WarpSize": 32,
              "MaxSharedMemoryPerBlock": STATIC_SMEM, "MaxSharedMemoryPerBlockOptin": MAX_SMEM,
              "ComputeCapabilityMajor": 9, "ComputeCapabilityMinor": 0, "MaxBlockDimX": 1024,
              "MaxBlockDimY": 1024, "MaxBlockDimZ": 64, "MaxGridDimX": MAX_GRID[0], "MaxGridDimY": 65535,
              "MaxGridDimZ": 65535, "L2CacheSize": 50 * 2**20, "MaxRegistersPerBlock": 65536}


class CUDARuntimeError(RuntimeError):
    """cupy.cuda.runtime.CUDARuntimeError."""


class CUDADriverError(RuntimeError):
    """cupy.cuda.driver.CUDADriverError: what a launch CUDA refuses raises."""


class CompileException(Exception):
    """cupy.cuda.compiler.CompileException: the kernel source does not compile (the g++ log)."""


class Device:
    """cupy.cuda.Device: the stand-in has one device, id 0."""

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise CUDARuntimeError(f"cudaErrorInvalidDevice: got device {self.id}, the stand-in has device 0 only")

    attributes = ATTRIBUTES
    compute_capability = "90"

    @property
    def mem_info(self):
        return memGetInfo()

    def synchronize(self):
        deviceSynchronize()

    def use(self):
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)


# ---- runtime ----------------------------------------------------------------------------------

def getDeviceCount() -> int:
    return 1


def getDevice() -> int:
    """The current device: the stand-in's one device."""
    return 0


def memGetInfo() -> tuple[int, int]:
    return arrays.TOTAL_MEMORY - arrays.POOL.used_bytes(), arrays.TOTAL_MEMORY


def deviceSynchronize() -> None:
    _refuse_in_capture("cudaDeviceSynchronize")
    state.count("syncs")


def getDeviceProperties(device: int) -> dict:
    Device(device)
    return {"name": b"fastconv emu (CUDA C on the CPU)", "totalGlobalMem": arrays.TOTAL_MEMORY,
            "multiProcessorCount": ATTRIBUTES["MultiProcessorCount"], "major": 9, "minor": 0,
            "sharedMemPerBlock": STATIC_SMEM, "sharedMemPerBlockOptin": MAX_SMEM, "warpSize": 32,
            "maxThreadsPerBlock": MAX_THREADS, "clockRate": 0, "memoryClockRate": 0, "memoryBusWidth": 0}


def runtimeGetVersion() -> int:
    return 13000


def driverGetVersion() -> int:
    return 13000


# ---- streams and graphs -------------------------------------------------------------------------

class Graph:
    """cupy.cuda.graph.Graph: the launches recorded by a capture; launch() runs them in order."""

    def __init__(self, launches):
        self.launches = list(launches)

    def launch(self, stream=None):
        for kern, rec in self.launches:
            kern._execute(rec)

    def upload(self, stream=None):
        return None


class Stream:
    """cupy.cuda.Stream; ``with stream:`` makes it current; begin/end_capture record a Graph."""

    _stack: list = []

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.ptr = 0 if null else id(self)
        self._capture = None

    def __enter__(self):
        Stream._stack.append(self)
        return self

    def __exit__(self, *exc):
        Stream._stack.pop()
        return False

    def use(self):
        Stream._stack[:] = [self]
        return self

    def synchronize(self):
        _refuse_in_capture("Stream.synchronize()")
        state.count("syncs")

    def begin_capture(self, mode=None):
        if _capturing() is not None:
            raise CUDARuntimeError("cudaErrorIllegalState: a stream is already capturing")
        self._capture = []

    def is_capturing(self) -> bool:
        return self._capture is not None

    def end_capture(self):
        if self._capture is None:
            raise CUDARuntimeError("cudaErrorIllegalState: end_capture() without begin_capture()")
        g, self._capture = Graph(self._capture), None
        return g

    @property
    def done(self):
        return True


Stream.null = Stream(null=True)


class Event:
    """cupy.cuda.Event: record() notes the host clock (launches run synchronously here, so the time
    between two events is the CPU execution of the kernels launched between them)."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.time = None

    def record(self, stream=None):
        _refuse_in_capture("Event.record()")   # a captured event would time nothing here
        self.time = time.perf_counter()

    def synchronize(self):
        if self.time is None:
            raise CUDARuntimeError("cudaErrorInvalidResourceHandle: synchronize() on an event never recorded")

    @property
    def done(self):
        return self.time is not None


def get_elapsed_time(start: Event, end: Event) -> float:
    """Milliseconds from ``start`` to ``end`` (both recorded)."""
    if start.time is None or end.time is None:
        raise CUDARuntimeError("cudaErrorInvalidResourceHandle: get_elapsed_time() of an event never recorded")
    return (end.time - start.time) * 1e3


def get_current_stream(device_id=None):
    return Stream._stack[-1] if Stream._stack else Stream.null


def _capturing():
    s = get_current_stream()
    return s if s._capture is not None else None


def _refuse_in_capture(what: str) -> None:
    if _capturing() is not None:
        raise CUDARuntimeError(f"cudaErrorStreamCaptureUnsupported: {what} while the current stream is "
                               "capturing a CUDA graph (a synchronising call ends a capture on a GPU)")


arrays._capture_check[0] = _refuse_in_capture
arrays._capturing[0] = _capturing


# ---- modules and kernels ------------------------------------------------------------------------

class RawModule:
    """cupy.RawModule(code=..., options=...): compiled for the CPU at the first get_function."""

    def __init__(self, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, jitify=False):
        if code is None:
            if path is None:
                raise TypeError("RawModule: got neither code nor path, expected one of them")
            with open(path) as f:
                code = f.read()
        if name_expressions or jitify or enable_cooperative_groups:
            raise ValueError("RawModule: got name_expressions, jitify or enable_cooperative_groups, expected none "
                             "of them (the CPU stand-in fastconv.emu offers plain extern \"C\" kernels only)")
        self.code, self.options, self._module = code, tuple(options), None

    def _compiled(self) -> Module:
        if self._module is None:
            try:
                self._module = Module(self.code, self.options)
            except CompileError as e:
                raise CompileException(str(e)) from None
        return self._module

    def get_function(self, name: str):
        return RawKernel(self._compiled().kernel(name))


def _triple(v, name):
    t = (v,) if isinstance(v, (int, np.integer)) else tuple(v)
    if not 1 <= len(t) <= 3 or not all(isinstance(x, (int, np.integer)) for x in t):
        raise ValueError(f"{name}: got {v!r}, expected 1 to 3 ints")
    return tuple(int(x) for x in t) + (1,) * (3 - len(t))


class RawKernel:
    """A kernel of a RawModule: ``kernel(grid, block, args, shared_mem=0)``."""

    def __init__(self, kernel):
        self._kernel = kernel
        self.name = kernel.name
        self.max_dynamic_shared_size_bytes = STATIC_SMEM
        self.max_threads_per_block = MAX_THREADS

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, enable_cooperative_groups=False):
        grid, block = _triple(grid, "grid"), _triple(block, "block")
        if any(g < 1 or g > m for g, m in zip(grid, MAX_GRID)):
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: kernel {self.name}: grid {grid} outside 1..{MAX_GRID}")
        if any(b < 1 or b > m for b, m in zip(block, MAX_BLOCK)) or block[0] * block[1] * block[2] > MAX_THREADS:
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: kernel {self.name}: block {block}, expected each "
                                  f"dimension within {MAX_BLOCK} and at most {MAX_THREADS} threads")
        limit = min(MAX_SMEM, max(STATIC_SMEM, int(self.max_dynamic_shared_size_bytes)))
        if not 0 <= int(shared_mem) <= limit:
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: kernel {self.name}: shared_mem={shared_mem} bytes, "
                                  f"expected 0..{limit} (raise max_dynamic_shared_size_bytes up to {MAX_SMEM})")
        args = tuple(args)
        rec = state.LaunchRecord(self.name, grid, block, int(shared_mem), args)
        keep, ptrs = self._kernel.pack(args, self._pointer)  # checks the arguments even when not run;
        # `keep` holds the ctypes storage that ptrs points into until the launch returns
        state.record_launch(rec)
        capture = _capturing()
        if capture is not None:
            capture._capture.append((self, rec))
        elif state.SETTINGS.execute:
            self._run(grid, block, int(shared_mem), ptrs)

    def _execute(self, rec):
        keep, ptrs = self._kernel.pack(rec.args, self._pointer)
        if state.SETTINGS.execute:
            self._run(rec.grid, rec.block, rec.shared_mem, ptrs)

    def _run(self, grid, block, shared_mem, ptrs):
        """The launch, under the thread order and cp.async landing that SETTINGS asks for."""
        self._kernel.run(grid, block, shared_mem, state.SETTINGS.shuffle_seed, ptrs, state.SETTINGS.early_copies)

    def _pointer(self, a, pname, code):
        if a is None:
            return None, None, None
        if not isinstance(a, arrays.ndarray):
            raise TypeError(f"kernel {self.name} argument {pname}: got {type(a).__name__}, expected a device array "
                            "(cupy.ndarray) for a pointer parameter")
        if code != "v":
            want = np.dtype(DTYPES[code])
            if a.dtype != want:
                raise TypeError(f"kernel {self.name} argument {pname}: got a {a.dtype} array, expected {want} "
                                "(the element type of the pointer parameter)")
        lo, hi = a.extent()
        return a.ctypes.data, lo, hi

