"""CUDA built-ins on the CPU layer (fastconv.emu) against CUDA's documented results: warp shuffles
with widths, votes, __activemask, __syncthreads_count/and/or, atomics, dynamic shared memory and
multi-dimensional indices (tests/emu/builtin_kernels.cu)."""

import numpy as np
import pytest

from emu_helpers import HERE, module_source
from fastconv.emu.build import LaunchError


@pytest.fixture(scope="module")
def kern(cp):
    return cp.RawModule(code=module_source(HERE / "builtin_kernels.cu")).get_function


def test_warp_shuffles_and_votes(cp, kern):
    out = cp.full((64, 8), -7, np.int32)
    kern("warp_ops")((1,), (64,), (out,))
    o = out.get()
    t = np.arange(64)
    lane, base = t % 32, t - t % 32
    assert np.array_equal(o[:, 0], (base + 5) * 10)
    assert np.array_equal(o[:, 1], (t - t % 8 + (lane + 3) % 8) * 10)
    assert np.array_equal(o[:, 2], np.where(lane % 16 >= 3, t - 3, t))
    assert np.array_equal(o[:, 3], np.where(lane + 5 <= 31, t + 5, t))
    assert np.array_equal(o[:, 4], base + (lane ^ 6))
    ballot = sum(1 << i for i in range(32) if i % 3 == 0)
    assert np.array_equal(o[:, 5].astype(np.uint32), np.full(64, ballot, np.uint32))
    assert np.array_equal(o[:, 6], np.where(t >= 32, 3, 1))
    assert np.array_equal(o[:, 7], np.full(64, -1))


def test_block_reductions_and_atomics(cp, kern, rng):
    x = rng.standard_normal(128).astype(np.float32)
    fsum, iout, dout = cp.zeros(2, np.float32), cp.zeros(5, np.int32), cp.zeros(4, np.float64)
    kern("block_ops")((1,), (128,), (cp.asarray(x), fsum, iout, dout))
    assert iout.get().tolist() == [sum(range(128)), 32, 3, 0, max(t * 7 % 50 for t in range(128))]
    assert fsum.get() == pytest.approx([x.sum(), x.sum()], rel=1e-5)
    assert np.allclose(dout.get(), x.astype(np.float64).reshape(4, 32).sum(axis=1))


def test_dynamic_shared_memory_is_sized_by_the_launch(cp, kern, rng):
    x = rng.standard_normal(300).astype(np.float32)
    y = cp.empty(300, np.float32)
    kern("dynamic_reverse")((1,), (64,), (cp.asarray(x), y, np.int32(300)), shared_mem=300 * 4)
    assert np.array_equal(y.get(), x[::-1])
    with pytest.raises(LaunchError, match=r"out-of-bounds access to dyn: element 299 of 299"):
        kern("dynamic_reverse")((1,), (64,), (cp.asarray(x), y, np.int32(300)), shared_mem=299 * 4)


def test_multi_dimensional_indices(cp, kern):
    out = cp.full(2 * 3 * 2 * 24, -1, np.int32)
    kern("indices")((2, 3, 2), (4, 3, 2), (out,))
    b, t = np.divmod(np.arange(out.size), 24)
    assert np.array_equal(out.get(), b * 1000 + t)
