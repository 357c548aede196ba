"""Where an op test runs: the `backend` parametrization of the op-family tests (tests/ops/).

    "cpu"    the NumPy path (float32 and float64)
    "emu"    the CUDA C ("cupy") family on the CPU execution layer fastconv.emu (needs g++)
    "cupy"   the CUDA C family on a GPU (marked gpu)
    "numba"  the Numba CUDA family on a GPU (marked gpu)

A test that takes the `backend` fixture (tests/ops/conftest.py) runs on all four; a test that
must run on some only says so with ``@pytest.mark.parametrize("backend", GPU, indirect=True)``.
The device backends run with their outputs NaN-poisoned (the ``poison`` setting). FEW and
GPU_DRAWN are the hypothesis settings of drawn cases on every backend and on the GPU."""

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

NO_GXX = pytest.mark.skipif(shutil.which("g++") is None,
                            reason="fastconv.emu compiles the CUDA C kernels with g++, which is not on PATH")
GPU = [pytest.param("cupy", marks=pytest.mark.gpu), pytest.param("numba", marks=pytest.mark.gpu)]
DEVICES = [pytest.param("emu", marks=NO_GXX), *GPU]
ALL = ["cpu", *DEVICES]

# a few drawn cases on every backend (fixed, so a CPU run repeats); drawn GPU cases: each runs
# fastconv check's judgement (judge below), so a few dozen per test
FEW = settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
GPU_DRAWN = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
SHAPES = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)  # any array of 1-4 dims


class Backend:
    """One backend: its name, its array module (numpy, the CuPy stand-in or CuPy), the kernel
    family its device ops run (None on the CPU) and the float dtypes it takes."""

    def __init__(self, name: str, xp, kernels: str | None = None):
        self.name, self.xp, self.kernels = name, xp, kernels
        self.dtypes = (np.float32, np.float64) if xp is np else (np.float32,)

    def asarray(self, a):
        """A copy of a host array on this backend (a copy on the CPU too: ops update some in place)."""
        return np.array(a) if self.xp is np else self.xp.asarray(a)

    def get(self, a) -> np.ndarray:
        """A backend array on the host."""
        return np.asarray(a) if self.xp is np else self.xp.asnumpy(a)

    def __repr__(self):
        return f"Backend({self.name!r})"


def judge(group: str, spec, family: str, seed: int = 0):
    """fastconv check's judgement of one GPU case (fastconv.check.run_case): every pass of the
    op group against the NumPy path in float64, outputs poisoned, at F32_TOL or REDUCTION_TOL."""
    from fastconv import check
    res = check.run_case(group, spec, family, np.random.default_rng(seed))
    bad = [f"{op} {ps}: {err:.3e} > {tol:g}" for op, ps, err, tol in res if not err <= tol]
    assert not bad, f"{group} {family} {spec}: " + "; ".join(bad)


def conv_kernels(version: str):
    """Select the CUDA C family's conv kernels: "v1", "v3" (the launcher's paths and tile choice)
    or "v3_<tile>" (v3 forced to one tile of CONV_TILES)."""
    import fastconv
    return fastconv.using(conv_version=int(version[1]), conv_tile=version[3:] or None)


def _conv_versions():
    from fastconv.backends.cuda.config import CONV_TILES
    return ["v1"] + [f"v3_{t}" for t in CONV_TILES] + ["v3"]


CONV_VERSIONS = _conv_versions()


def skip_unless_conv_versions_apply(backend, version: str):
    """conv_version/conv_tile select the CUDA C family's kernels: elsewhere only "v3" runs."""
    if backend.kernels != "cupy" and version != "v3":
        pytest.skip("the conv_version/conv_tile settings select the CUDA C family's conv kernels only")
