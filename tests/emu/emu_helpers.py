"""Helpers of the CPU execution tier (fastconv.emu): kernel selection, test sources, data."""

import contextlib
from pathlib import Path

import numpy as np

from fastconv.backends import cuda_loader

HERE = Path(__file__).resolve().parent
CONV_VERSIONS = ["v1", "v2_t128x128", "v2_t64x64", "v2_t32x128", "v2"]


@contextlib.contextmanager
def conv_kernels(version: str):
    """Select the conv kernels: "v1", "v2" (the launcher's tile choice) or "v2_<tile>"."""
    from fastconv.backends import cuda
    old = cuda.CONV_VERSION, cuda.CONV_TILE
    cuda.CONV_VERSION = 1 if version == "v1" else 2
    cuda.CONV_TILE = version[3:] or None
    try:
        yield
    finally:
        cuda.CONV_VERSION, cuda.CONV_TILE = old


def module_source(path: Path) -> str:
    """A .cu file of the tests folder with kernels/common.cuh pasted in, as the loader does."""
    common = (cuda_loader.kernel_dir() / "common.cuh").read_text().replace("#pragma once", "")
    return path.read_text().replace('#include "common.cuh"', common)


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)
