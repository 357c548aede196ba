"""One tolerance helper shared by tests, benchmarks and ``fastconv check``.

Results are judged by relative L2 error against a float64 oracle: ||out - ref|| / ||ref||.
NaN or inf anywhere in the result never passes.
"""

from __future__ import annotations

import numpy as np

# float32 results against a float64 oracle; reductions over more than ~10^4 terms get REDUCTION_TOL
# because float32 summation error grows with the length of the sum.
F32_TOL = 1e-5
REDUCTION_TOL = 1e-4


def tf32_bound(terms: int) -> float:
    """Relative bound of a TF32 dot product of ``terms`` products, elementwise:
    |out - exact| <= tf32_bound(terms) * sum |a*b|. cvt.rna.tf32 (10 explicit mantissa bits, round
    to nearest) moves each operand by at most u = 2^-11 relatively, so each product by at most
    2u + u^2 < 1.001 * 2^-10; fp32 accumulation adds at most (terms - 1) * 2^-24."""
    return 1.001 * 2.0**-10 + max(terms - 1, 0) * 2.0**-24


def to_numpy(a):
    """A float64/integer numpy copy of a numpy or cupy array (or scalar)."""
    if hasattr(a, "get"):
        a = a.get()
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def rel_error(out, ref) -> float:
    """||out - ref|| / ||ref|| in float64; inf when out has NaN/inf or the shapes differ."""
    out, ref = to_numpy(out), to_numpy(ref)
    if out.shape != ref.shape or not np.all(np.isfinite(out)):
        return float("inf")
    denom = np.linalg.norm(ref.ravel())
    num = np.linalg.norm((out - ref).ravel())
    if denom == 0.0:
        return float(num)
    return float(num / denom)


def assert_close(out, ref, tol: float = F32_TOL, name: str = "result"):
    """Raise AssertionError naming the error level and the first mismatches when out is not close to ref."""
    o, r = to_numpy(out), to_numpy(ref)
    if o.shape != r.shape:
        raise AssertionError(f"{name}: shape {o.shape} != expected {r.shape}")
    err = rel_error(o, r)
    if not err <= tol:
        bad = ~np.isfinite(o) | (np.abs(o - r) > tol * (np.abs(r) + np.abs(r).mean() + 1e-30))
        idx = np.argwhere(bad)[:5]
        detail = ", ".join(f"{tuple(int(i) for i in ix)}: {o[tuple(ix)]!r} vs {r[tuple(ix)]!r}" for ix in idx)
        raise AssertionError(f"{name}: relative L2 error {err:.3e} > {tol:.1e}; first mismatches {detail}")
    return err


def poison(a):
    """Fill a float array with NaN (int arrays with -1) in place, so unwritten elements are caught."""
    a.fill(np.nan if a.dtype.kind == "f" else -1)
    return a
