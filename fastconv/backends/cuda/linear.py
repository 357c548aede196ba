"""Linear layers on cuBLAS through CuPy's matmul (float32; TF32 only when the tf32 setting is on)."""

from __future__ import annotations

import cupy as cp
import numpy as np

from ... import settings
from .launch import _arg


def _matmul(a, b):
    """cp.matmul in float32 with TF32 tensor cores only when the tf32 setting asks for them (CuPy
    itself reads CUPY_TF32 once; the setting owns the choice here)."""
    from cupy._core import _routines_linalg as linalg
    want = linalg.COMPUTE_TYPE_TF32 if settings.current().tf32 else linalg.COMPUTE_TYPE_DEFAULT
    if linalg.get_compute_type(np.float32) != want:
        linalg.set_compute_type(np.float32, want)
    return cp.matmul(a, b)


def linear_forward(x, w, b):
    x = _arg(x, "x")
    w = _arg(w, "w")
    y = _matmul(x, w.T)
    if b is not None:
        y += _arg(b, "b")
    return y


def linear_backward_data(dy, w):
    return _matmul(_arg(dy, "dy"), _arg(w, "w"))


def linear_backward_weight(dy, x):
    dy = _arg(dy, "dy")
    return _matmul(dy.T, _arg(x, "x")), dy.sum(axis=0)
