"""Helpers of the CPU execution tier (fastconv.emu): kernel selection, test sources, data."""

from pathlib import Path

import numpy as np

import fastconv
from fastconv.backends.cuda import loader
from fastconv.backends.cuda.config import CONV_TILES

HERE = Path(__file__).resolve().parent
CONV_VERSIONS = ["v1"] + [f"v3_{t}" for t in CONV_TILES] + ["v3"]


def conv_kernels(version: str):
    """Select the conv kernels: "v1", "v3" (the launcher's paths and tile choice) or "v3_<tile>"."""
    return fastconv.using(conv_version=int(version[1]), conv_tile=version[3:] or None)


def module_source(path: Path) -> str:
    """A .cu file of the tests folder with kernels/common.cuh pasted in, as the loader does."""
    common = (loader.kernel_dir() / "common.cuh").read_text().replace("#pragma once", "")
    return path.read_text().replace('#include "common.cuh"', common)


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)
