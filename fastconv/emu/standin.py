"""The module objects that stand in for ``cupy`` (and ``cupy.cuda`` and its submodules).

Only what is defined here exists: an attribute the stand-in does not offer raises an
AttributeError that says so, instead of quietly doing something else.
"""

from __future__ import annotations

import types

import numpy as np

from . import arrays, device

_DTYPE_NAMES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                "uint64", "bool_", "intp", "dtype", "newaxis", "inf", "nan", "pi", "e")


class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"{self.__name__}.{name} is not offered by the CPU stand-in for CuPy (fastconv.emu); "
                             "add it to fastconv/emu if the launchers need it")


def _module(name, doc, **attrs):
    m = _Module(name, doc)
    for k, v in attrs.items():
        setattr(m, k, v)
    return m


def _make():
    runtime = _module("cupy.cuda.runtime", "CUDA runtime calls of the stand-in device.",
                      getDeviceCount=device.getDeviceCount, getDevice=device.getDevice, memGetInfo=device.memGetInfo,
                      deviceSynchronize=device.deviceSynchronize, getDeviceProperties=device.getDeviceProperties,
                      runtimeGetVersion=device.runtimeGetVersion, driverGetVersion=device.driverGetVersion,
                      CUDARuntimeError=device.CUDARuntimeError)
    memory = _module("cupy.cuda.memory", "Device memory of the stand-in.", OutOfMemoryError=arrays.OutOfMemoryError,
                     MemoryPool=arrays.MemoryPool)
    compiler = _module("cupy.cuda.compiler", "Kernel compilation errors.", CompileException=device.CompileException)
    driver = _module("cupy.cuda.driver", "Driver errors.", CUDADriverError=device.CUDADriverError)
    graph = _module("cupy.cuda.graph", "CUDA graphs as recorded launches.", Graph=device.Graph)
    cuda = _module("cupy.cuda", "cupy.cuda of the stand-in.", Device=device.Device, Stream=device.Stream,
                   Event=device.Event, get_elapsed_time=device.get_elapsed_time,
                   get_current_stream=device.get_current_stream, runtime=runtime, memory=memory,
                   compiler=compiler, driver=driver, graph=graph, is_available=lambda: True,
                   MemoryPool=arrays.MemoryPool, OutOfMemoryError=arrays.OutOfMemoryError)
    cp = _module("cupy", "CPU stand-in for CuPy (fastconv.emu): CUDA C kernels compiled with g++ and run on the CPU.",
                 cuda=cuda, ndarray=arrays.ndarray, RawModule=device.RawModule, RawKernel=device.RawKernel,
                 get_default_memory_pool=lambda: arrays.POOL, get_default_pinned_memory_pool=lambda: arrays.POOL,
                 __version__="13.0.0+fastconv.emu")
    for name in ("asarray", "array", "asnumpy", "empty", "zeros", "ones", "full", "empty_like", "zeros_like",
                 "ones_like", "full_like", "ascontiguousarray"):
        setattr(cp, name, getattr(arrays, name))
    for name, fn in arrays.FORWARDED.items():
        setattr(cp, name, fn)
    for name in _DTYPE_NAMES:
        setattr(cp, name, getattr(np, name))
    return {m.__name__: m for m in (cp, cuda, runtime, memory, compiler, driver, graph)}


MODULES = _make()
cupy = MODULES["cupy"]
