"""Helpers of the CPU execution tier (fastconv.emu): the test sources of tests/emu/."""

from pathlib import Path

from fastconv.backends.cuda import loader

HERE = Path(__file__).resolve().parent


def module_source(path: Path) -> str:
    """A .cu file of the tests folder with kernels/common.cuh pasted in, as the loader does."""
    common = (loader.kernel_dir() / "common.cuh").read_text().replace("#pragma once", "")
    return path.read_text().replace('#include "common.cuh"', common)
