"""Cross-check on a GPU (marker ``gpu``): every launch the CUDA C launchers make runs on the GPU
and, with the same grid, block and a host copy of the same arguments, on the CPU layer
(fastconv.emu); integer outputs (argmax, dropout masks) must be equal and float outputs within
relative L2 error F32_TOL of the GPU's, for every kernel of fastconv.backends.cuda.config.KERNELS."""

import numpy as np
import pytest

import fastconv
from fastconv.backends.cuda.config import KERNELS
from fastconv.emu.build import Module
from fastconv.testing import F32_TOL, assert_close

pytestmark = pytest.mark.gpu


def test_every_launch_matches_the_cpu_layer(monkeypatch):
    import cupy as real_cp

    from fastconv.backends.cuda import launch, loader
    from test_emu_ops import run_every_op

    modules, checked = {}, []

    def crosschecked(filename, name, defines=None):
        gpu_fn = loader.function(filename, name, defines)
        used = loader._all_defines(defines)
        key = (filename, tuple(sorted(used.items())))
        if key not in modules:
            modules[key] = Module(loader.source(filename, used), loader.NVRTC_OPTIONS)
        kern = modules[key].kernel(name)

        def launch(grid, block, args, shared_mem=0):
            host, copies = [], {}
            for a in args:  # aliased arguments (sgd's param as velocity) stay aliased
                if isinstance(a, real_cp.ndarray):
                    a = copies.setdefault(id(a), a.get())
                host.append(a)
            gpu_fn(grid, block, args, shared_mem=shared_mem)
            real_cp.cuda.Device().synchronize()
            keep, ptrs = kern.pack(host, lambda h, n, c: (h.ctypes.data, h.ctypes.data, h.ctypes.data + h.nbytes))
            pad = lambda t: tuple(t) + (1,) * (3 - len(t))
            kern.run(pad(grid), pad(block), shared_mem, 0, ptrs)
            for a, h, pname in zip(args, host, kern.params):
                if not isinstance(a, real_cp.ndarray):
                    continue
                g = a.get()
                if g.dtype.kind == "f":
                    # a poisoned element a kernel leaves unwritten (workspace slack, an output the
                    # next launch fills) must stay NaN on both; every other element must agree
                    unwritten = np.isnan(h)
                    assert np.array_equal(unwritten, np.isnan(g)), f"{name} {pname}: NaN where the other has none"
                    assert_close(h[~unwritten], g[~unwritten], F32_TOL, f"{name} {pname}: CPU layer vs GPU")
                else:
                    assert np.array_equal(h, g), f"{name} {pname}: CPU layer differs from the GPU"
            checked.append(name)

        return launch

    monkeypatch.setattr(launch, "function", crosschecked)
    with fastconv.using(poison=True):
        run_every_op(real_cp, np.random.default_rng(11))
    listed = {n for names in KERNELS.values() for n in names}
    assert not sorted(listed - set(checked)), f"kernels not cross-checked: {sorted(listed - set(checked))}"
