"""Helpers shared by the op tests (tests/ops/) and tests/test_errors.py: NumPy with poisoned
allocations, the output check against an oracle, random inputs that are never all zero, the
error-message matcher, and the driver of the hypothesis-drawn CPU passes (run_drawn)."""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings

import oracle as ref
from fastconv.testing import assert_close

TOL = {np.float32: 1e-5, np.float64: 1e-12}
# a TF32 result's relative L2 error, at most: twice a product's rounding (10-bit mantissas; the
# elementwise bounds are fastconv.testing.tf32_bound's, used by tests/ops/test_conv_tf32.py)
TF32_L2 = 2.0**-9
DTYPES = [np.float32, np.float64]


class _PoisonedNumpy:
    """numpy, except that fresh uninitialised arrays come back full of NaN (or -1 for ints)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float, **kw):
        a = np.empty(shape, dtype=dtype, **kw)
        a.fill(np.nan if a.dtype.kind == "f" else -1)
        return a

    @staticmethod
    def empty_like(proto, dtype=None, **kw):
        a = np.empty_like(proto, dtype=dtype, **kw)
        a.fill(np.nan if a.dtype.kind == "f" else -1)
        return a


def check(out, want, dtype, key, inputs=()):
    """Compare one op output with its oracle; also dtype, contiguity and no aliasing of inputs."""
    assert out.dtype == np.dtype(dtype), f"{key}: dtype {out.dtype}, expected {np.dtype(dtype)}"
    assert out.flags.c_contiguous, f"{key}: result is not C-contiguous"
    for a in inputs:
        assert not np.shares_memory(out, a), f"{key}: result is a view of an input"
    err = assert_close(out, want, TOL[dtype], key)
    ref.record(f"cpu-vs-loops {key} {np.dtype(dtype).name}", err)


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def distinct(rng, shape, dtype):
    """Values at least 0.01 apart, so a max-pool window never holds a tie."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * 0.01).reshape(shape).astype(dtype)


def away_from_zero(rng, shape, dtype, gap=0.05):
    x = rng.standard_normal(shape)
    return (x + np.sign(x) * gap).astype(dtype)


def arr(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


X = arr(2, 3, 8, 8)


W = arr(4, 3, 3, 3, seed=1)


GUARD = 7.0   # the values around an out view (out_view): an op writing outside its out changes them


def out_view(backend, shape, dtype=np.float32, offset=1):
    """(view, untouched): a NaN-filled C-contiguous view of ``shape`` on ``backend``
    (tests/backends.py) starting ``offset`` elements into a buffer of GUARD values, as a parameter's
    slice of an optimizer's flat gradient buffer (offset 1: not 16-byte aligned); ``untouched()``
    says whether the buffer around the view still holds GUARD."""
    size = int(np.prod(shape))
    buf = backend.asarray(np.full(offset + size + 3, GUARD, dtype))
    view = buf[offset:offset + size].reshape(shape)
    view.fill(np.nan)

    def untouched():
        host = backend.get(buf)
        return bool((host[:offset] == GUARD).all() and (host[offset + size:] == GUARD).all())
    return view, untouched


def check_out(result, out, untouched, want, tol, key):
    """``result`` is ``out`` itself, out holds ``want`` (within relative L2 error tol) and nothing
    around it was written."""
    assert result is out, f"{key}: returned {type(result).__name__}, expected the out array itself"
    ref.record(f"into out {key}", assert_close(out, want, tol, key))
    assert untouched(), f"{key}: wrote outside out"


def raises(exc, *parts):
    """pytest.raises matching every literal part of the message, in order."""
    return pytest.raises(exc, match=".*".join(re.escape(p) for p in parts))


# ---- hypothesis-drawn CPU cases (tests/ops/test_<family>_hypothesis.py) -----------------------

MIN_EXAMPLES = 200  # tiny shapes, so 200 examples per pass stay fast
DRAWN = settings(max_examples=MIN_EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def count_example(name):
    ref.EXAMPLES[name] = ref.EXAMPLES.get(name, 0) + 1


def run_drawn(name, cases, check_case):
    """``check_case(case)`` on at least MIN_EXAMPLES cases drawn from the strategy ``cases``, counted
    under ``name`` (a failing case is printed with hypothesis's note)."""
    @DRAWN
    @given(cases)
    def inner(case):
        count_example(name)
        note(case)
        check_case(case)

    run_counted(name, inner)


def run_counted(name, inner):
    """Run a @given function; assert it ran at least MIN_EXAMPLES examples (the counts appear in
    the terminal summary)."""
    ref.EXAMPLES[name] = 0
    inner()
    assert ref.EXAMPLES[name] >= MIN_EXAMPLES, f"{name}: only {ref.EXAMPLES[name]} hypothesis examples ran"


def check_drawn(out, want, dtype, key):
    assert out.dtype == np.dtype(dtype)
    ref.record(f"cpu-vs-loops (hypothesis) {key} {np.dtype(dtype).name}", assert_close(out, want, TOL[dtype], key))
