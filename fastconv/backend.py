"""The one dispatch point: which backend module runs an op.

The backend comes from the array type (numpy -> ``fastconv.backends.cpu``, cupy -> a GPU kernel
family) and, on the GPU, from the selected kernel family:

- ``"cupy"`` (default): CUDA C kernels in ``kernels/*.cu``, launched through ``cupy.RawModule``
  (the package ``fastconv.backends.cuda``).
- ``"numba"``: ``@numba.cuda.jit`` kernels (the package ``fastconv.backends.numba``); ops that
  family does not write itself are taken from the ``"cupy"`` family.

The family is chosen per call (``kernels=`` on every op), else by the ``kernels`` setting
(:mod:`fastconv.settings`: ``fastconv.using``/``fastconv.configure``, which FASTCONV_KERNELS
initialises).
Every backend module defines the same op functions with the same signatures; arguments reach
them already validated by :mod:`fastconv.ops`.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

import numpy as np

from . import settings

if os.environ.get("FASTCONV_DEVICE", "").strip().lower() == "emu":  # CUDA C family on the CPU (fastconv.emu)
    from .emu import install

    install()
_modules: dict[str, ModuleType] = {}


def set_kernel_family(family: str | None) -> None:
    """Select the GPU kernel family for this process ("cupy" or "numba"); None restores the family
    FASTCONV_KERNELS names (else "cupy"). An alias of ``fastconv.configure(kernels=...)``."""
    if family is None:
        settings.configure(kernels=settings.from_environment().kernels)
    else:
        settings.configure(kernels=settings.check_family(family, "family"))


def kernel_family(kernels: str | None = None) -> str:
    """The family an op call will use: the ``kernels`` argument, else the setting."""
    if kernels is not None:
        return settings.check_family(kernels, "kernels")
    return settings.current().kernels


def check_environment() -> None:
    """Read and validate FASTCONV_KERNELS now (else it is read when a GPU op first runs)."""
    settings.current()


def cupy_module():
    """The cupy module if it is imported or importable, else None (never raises)."""
    cp = sys.modules.get("cupy")
    if cp is not None:
        return cp
    try:
        import cupy as cp  # noqa: F401
    except Exception:
        return None
    return cp


def is_cupy_array(a) -> bool:
    cp = sys.modules.get("cupy")
    return cp is not None and isinstance(a, cp.ndarray)


def array_module(*arrays, names=None):
    """numpy or cupy, from the arrays given (None entries are skipped).

    Raises TypeError when numpy and cupy arrays are mixed or an argument is not an array;
    ``names`` (one per array) names the arguments in the message.
    """
    kind = None
    first = None
    names = names or [f"argument {i}" for i in range(len(arrays))]
    for i, a in enumerate(arrays):
        if a is None:
            continue
        if is_cupy_array(a):  # first: the CPU stand-in's device arrays are numpy subclasses
            k = "cupy"
        elif isinstance(a, np.ndarray):
            k = "numpy"
        else:
            raise TypeError(f"{names[i]}: got {type(a).__name__}, expected a numpy.ndarray or cupy.ndarray")
        if kind is None:
            kind, first = k, i
        elif k != kind:
            raise TypeError(
                f"{names[i]}: got a {k} array while {names[first]} is a {kind} array (mixed devices), expected "
                "arrays on one device; move them with fastconv.to_device(x, 'cpu' | 'cuda')")
    if kind == "cupy":
        return sys.modules["cupy"]
    return np


def _load(name: str) -> ModuleType:
    mod = _modules.get(name)
    if mod is None:
        mod = importlib.import_module(f"fastconv.backends.{name}")
        _modules[name] = mod
    return mod


def backend_for(*arrays, kernels: str | None = None) -> ModuleType:
    """The backend module that runs an op on these arrays."""
    if array_module(*arrays) is np:
        return _load("cpu")
    family = kernel_family(kernels)
    return _load("cuda" if family == "cupy" else "numba")


def op(name: str, *arrays, kernels: str | None = None):
    """The function ``name`` of the backend for ``arrays``; the numba family falls back to cupy's."""
    mod = backend_for(*arrays, kernels=kernels)
    fn = getattr(mod, name, None)
    if fn is None and mod.__name__ == "fastconv.backends.numba":
        fn = getattr(_load("cuda"), name)
    if fn is None:
        raise AttributeError(f"backend {mod.__name__} has no op {name!r}")
    return fn


# ---------------------------------------------------------------------------------------------
# devices

def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device that can run a kernel."""
    cp = cupy_module()
    if cp is None:
        return False
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            return False
        cp.zeros(1, dtype=cp.float32).sum()  # a real launch: catches driver/toolkit mismatch
        return True
    except Exception:
        return False


def require_gpu(argname: str = "device"):
    """Return cupy, or raise a RuntimeError that says why no GPU can be used."""
    cp = cupy_module()
    if cp is None:
        raise RuntimeError(
            f"{argname}: 'cuda' asked for, but CuPy is not installed; expected "
            "`pip install 'fastconv[cuda12]'` or `'fastconv[cuda13]'` on a machine with an NVIDIA GPU")
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # driver missing, no device
        raise RuntimeError(f"{argname}: 'cuda' asked for, but CUDA reports no usable GPU ({e})") from None
    if n < 1:
        raise RuntimeError(f"{argname}: 'cuda' asked for, but CUDA reports 0 GPUs")
    return cp


def to_device(x, device: str):
    """Move an array to ``"cpu"`` (numpy) or ``"cuda"`` (cupy); returns x itself when already there."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: got {device!r}, expected 'cpu' or 'cuda'")
    if x is None:
        return None
    if device == "cpu":
        if is_cupy_array(x):
            return x.get()
        if isinstance(x, np.ndarray):
            return x
        return np.asarray(x)
    cp = require_gpu()
    if isinstance(x, cp.ndarray):
        return x
    return cp.asarray(x)


def device_of(x) -> str:
    return "cuda" if is_cupy_array(x) else "cpu"
