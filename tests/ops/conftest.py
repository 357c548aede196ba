"""The CPU backend's np.empty/np.empty_like return NaN-filled arrays in every op test, so an
element the backend forgets to write fails the comparison with the oracle; the `backend` fixture
runs a test on each backend of tests/backends.py."""

import importlib
import pkgutil

import numpy as np
import pytest

import fastconv
import fastconv.emu as emu
import oracle as ref
from backends import ALL, Backend
from checks import _PoisonedNumpy
from fastconv.backends import cpu

CPU_MODULES = [m.name for m in pkgutil.iter_modules(cpu.__path__)]


@pytest.fixture(autouse=True)
def poisoned_backend(monkeypatch, request):
    ref.install_summary(request.config)
    for name in CPU_MODULES:  # every op-family module of the CPU backend allocates through its own np
        monkeypatch.setattr(importlib.import_module(f"fastconv.backends.cpu.{name}"), "np", _PoisonedNumpy(),
                            raising=False)


@pytest.fixture(scope="module", params=ALL)
def backend(request):
    """A Backend; module-scoped, so a module's tests run grouped by backend and fastconv.emu is
    active only while the "emu" ones run (it replaces the cupy module the GPU ones import)."""
    name = request.param
    if name == "cpu":
        yield Backend("cpu", np)
        return
    if name == "emu":
        with emu.activate() as cp, fastconv.using(poison=True, kernels="cupy"):
            yield Backend("emu", cp, "cupy")
        return
    from fastconv import check
    if name not in check.families():
        pytest.skip(f"kernel family {name!r} cannot be imported here (numba-cuda missing or broken)")
    import cupy as cp
    with fastconv.using(poison=True, kernels=name):
        yield Backend(name, cp, name)


@pytest.fixture
def torch():
    """PyTorch CPU, the second oracle (the test is skipped when it is not installed)."""
    return pytest.importorskip("torch")
