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


@pytest.fixture(autouse=True)
def shared_arrays_made_once(monkeypatch):
    """The simulator runs each GPU thread as a Python thread and finds a block's shared array by the
    source line that asks for it, making it on the first call: a look-up, then an insert, which
    another thread can enter in between (more often on a busy machine, or when the array is made
    NaN-filled). Both threads then make an array and the block's threads write different ones. Here
    the look-up and the insert hold one lock (the simulator's own logic otherwise: the caller's line
    is the key, size 0 is the dynamic array)."""
    import sys
    import threading
    import traceback

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support
    lock, plain = threading.Lock(), kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # the dynamic array; an alignment the simulator refuses
            return plain(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = tuple(traceback.extract_stack(sys._getframe(1), limit=1)[-1])[0:2]
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = kernelapi.np.empty(shape, dtype)
        return res
    monkeypatch.setattr(kernelapi.FakeCUDAShared, "array", array)
