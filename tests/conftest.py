"""Shared fixtures. Tests marked ``gpu`` are skipped unless CuPy sees a usable CUDA GPU."""

import numpy as np
import pytest

from fastconv import settings
from fastconv.backend import gpu_available

_GPU = None


def _gpu():
    global _GPU
    if _GPU is None:
        _GPU = gpu_available()
    return _GPU


def pytest_collection_modifyitems(config, items):
    # the simulator children are the longest tests (minutes each): first, so that pytest -n spreads
    # the rest around them instead of starting them last
    items.sort(key=lambda item: item.fspath.basename != "test_numba_sim.py")
    if any("gpu" in item.keywords for item in items) and not _gpu():
        skip = pytest.mark.skip(reason="no usable CUDA GPU (CuPy missing or no device)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def restore_settings():
    """Each test starts from the settings in force before it (fastconv.configure in a test, or a
    monkeypatched FASTCONV_KERNELS read by settings.reset(), stays in that test)."""
    before = settings._current
    yield
    settings._current = before


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


collect_ignore = ["numba_sim"]  # simulator tests: run in a child process by test_numba_sim.py
