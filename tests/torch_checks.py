"""PyTorch CPU as the second oracle of the op-family tests: float64 tensors holding exactly the
values of an array, and the comparison at relative L2 error <= 1e-5 (float32) / 1e-12 (float64).
Tests take the `torch` fixture of tests/ops/conftest.py, which skips them without PyTorch."""

import numpy as np

import oracle as ref
from checks import TOL
from fastconv.testing import assert_close


def T(a, grad=False):
    """A float64 torch tensor holding exactly the values of a (float32 or float64)."""
    import torch
    t = torch.tensor(np.asarray(a, dtype=np.float64))
    return t.requires_grad_(grad)


def check(out, want, dtype, key):
    """out (a fastconv result or oracle) against want (a torch tensor or array)."""
    want = want.detach().numpy() if hasattr(want, "detach") else want
    assert out.dtype == np.dtype(dtype)
    ref.record(f"cpu-vs-torch {key} {np.dtype(dtype).name}", assert_close(out, want, TOL[dtype], key))
