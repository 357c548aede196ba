"""Simulator tests: run by tests/test_numba_sim.py in a child pytest with NUMBA_ENABLE_CUDASIM=1."""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    raise pytest.UsageError("tests/numba_sim needs NUMBA_ENABLE_CUDASIM=1 set before numba is imported; "
                            "run it through tests/test_numba_sim.py")


@pytest.fixture
def rng():
    import numpy as np
    return np.random.default_rng(1234)
