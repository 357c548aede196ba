"""Fixtures of the CPU execution tier: the CUDA C family through fastconv.emu (no GPU needed)."""

import shutil
from pathlib import Path

import pytest

import fastconv.emu as emu

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    if shutil.which("g++") is None:
        skip = pytest.mark.skip(reason="g++ is not on PATH: fastconv.emu compiles the CUDA C kernels with it")
        for item in items:
            if str(HERE) in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="module")
def cp():
    """The CuPy stand-in, with the CUDA C launchers imported against it and output poisoning on."""
    with emu.activate() as stand_in:
        from fastconv.backends import cuda
        cuda.POISON = True
        yield stand_in
