"""The inline-PTX wrappers of kernels/common.cuh: their CPU versions (fastconv.emu) against a plain
matrix product and the PTX ISA fragment layouts written out here, the same tests on a GPU when
there is one (marker ``gpu``: the layouts the CPU versions assume are the hardware's), and the GPU
versions compiled by nvcc for sm_80 and sm_90 (tests/emu/ptx_wrappers.cu calls every wrapper)."""

import shutil
import subprocess

import numpy as np
import pytest

from emu_helpers import HERE, module_source

NVCC = shutil.which("nvcc")


@pytest.fixture(scope="module", params=["emu", pytest.param("gpu", marks=pytest.mark.gpu)])
def ptx(request):
    """(cupy module, get_function) of ptx_wrappers.cu on the CPU layer or, with a GPU, on the GPU."""
    if request.param == "gpu":
        import cupy
        yield cupy, cupy.RawModule(code=module_source(HERE / "ptx_wrappers.cu"), options=("-std=c++17",)).get_function
        return
    cp = request.getfixturevalue("cp")
    yield cp, cp.RawModule(code=module_source(HERE / "ptx_wrappers.cu")).get_function


def tf32(x):
    """Round float32 to tf32 (10 mantissa bits), to nearest with ties away from zero."""
    u = np.asarray(x, np.float32).view(np.uint32)
    special = (u & 0x7F800000) == 0x7F800000
    r = np.where(special, u, (u + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).astype(np.uint32)
    return r


def test_cvt_tf32_rounds_to_nearest_ties_away(ptx, rng):
    cp, kern = ptx
    x = rng.standard_normal(200).astype(np.float32)
    ties = (np.array([1.0, -1.0, 3.5, -7.25], np.float32).view(np.uint32) | np.uint32(0x1000)).view(np.float32)
    below = (np.array([1.0, -2.0], np.float32).view(np.uint32) | np.uint32(0x0FFF)).view(np.float32)
    x = np.concatenate([x, ties, below, np.array([np.inf, -np.inf, 0.0, -0.0], np.float32)])
    out = cp.empty(x.size, np.uint32)
    kern("cvt_tf32_test")((1,), (256,), (cp.asarray(x), out, np.int32(x.size)))
    assert np.array_equal(out.get(), tf32(x))
    got = out.get()[200:206].view(np.float32)
    assert np.all(np.abs(got[:4]) > np.abs(ties)), "ties must round away from zero"
    assert np.all(np.abs(got[4:]) < np.abs(below)), "below half an ulp must round toward zero"


def test_mma_tf32_m16n8k8_is_a_matrix_product(ptx, rng):
    cp, kern = ptx
    a, b, c = (rng.standard_normal(s).astype(np.float32) for s in ((16, 8), (8, 8), (16, 8)))
    d = cp.empty((16, 8), np.float32)
    kern("mma_tf32_test")((1,), (32,), (cp.asarray(a), cp.asarray(b), cp.asarray(c), d))
    at, bt = (tf32(m).view(np.float32).astype(np.float64) for m in (a, b))
    want = at @ bt + c
    assert np.allclose(d.get(), want, rtol=1e-5, atol=1e-5), np.abs(d.get() - want).max()
    # the operands really are tf32: the full-precision product differs
    assert not np.allclose(d.get(), a.astype(np.float64) @ b + c, rtol=1e-7, atol=1e-7)


def _ldmatrix_oracle(data16, rows, count, trans):
    """Registers per lane: lane 8j + r addresses row r of matrix j (rows[lane] of the 32x8 b16
    tile); lane l gets (l/4, 2(l%4)), (l/4, 2(l%4)+1) of each matrix, transposed with .trans."""
    out = np.zeros((32, 4), np.uint32)
    for lane in range(32):
        for j in range(count):
            mat = np.stack([data16[rows[8 * j + r]] for r in range(8)])  # 8 x 8 b16
            if trans:
                lo, hi = mat[2 * (lane % 4), lane // 4], mat[2 * (lane % 4) + 1, lane // 4]
            else:
                lo, hi = mat[lane // 4, 2 * (lane % 4)], mat[lane // 4, 2 * (lane % 4) + 1]
            out[lane, j] = np.uint32(lo) | (np.uint32(hi) << np.uint32(16))
    return out


@pytest.mark.parametrize("count", [1, 2, 4])
@pytest.mark.parametrize("trans", [0, 1])
def test_ldmatrix_layout(ptx, count, trans):
    cp, kern = ptx
    data16 = np.arange(32 * 8, dtype=np.uint16).reshape(32, 8) * 3 + 7
    rows = np.random.default_rng(count + 10 * trans).permutation(32).astype(np.int32)
    out = cp.full((32, 4), 0xFFFFFFFF, np.uint32)
    kern("ldmatrix_test")((1,), (32,), (cp.asarray(data16.view(np.uint32).ravel()), cp.asarray(rows), out,
                                        np.int32(count), np.int32(trans)))
    assert np.array_equal(out.get(), _ldmatrix_oracle(data16, rows, count, trans))


def test_cp_async_copies_zero_fills_and_groups(ptx, rng):
    cp, kern = ptx
    src = rng.standard_normal(128).astype(np.float32) + 5
    sizes = rng.choice([0, 4, 8, 12, 16], 32).astype(np.int32)
    out1, out2 = cp.empty(96, np.float32), cp.empty(256, np.float32)
    kern("cp_async_test")((1,), (32,), (cp.asarray(src), cp.asarray(sizes), out1, out2))

    def copy(lane, nbytes):
        got = np.zeros(nbytes // 4, np.float32)
        n = min(int(sizes[lane]), nbytes) // 4
        got[:n] = src[lane * 4:lane * 4 + n]
        return got

    want1 = np.concatenate([np.concatenate([copy(l, 4) for l in range(32)]),
                            np.concatenate([copy(l, 8) for l in range(32)])])
    want2 = np.concatenate([copy(l, 16) for l in range(32)] * 2)
    assert np.array_equal(out1.get(), want1)
    assert np.array_equal(out2.get(), want2)


def test_cp_async_destination_is_unset_until_waited(cp):
    kern = cp.RawModule(code=module_source(HERE / "ptx_wrappers.cu")).get_function
    out = cp.zeros(2, np.float32)
    kern("cp_async_unwaited")((1,), (32,), (cp.asarray(np.arange(4, dtype=np.float32) + 1), out))
    first, second = out.get()
    assert np.isnan(first) and second == 1.0


def test_cp_async_lands_when_issued_with_early_copies(cp, rng):
    """emu.early_copies: the copy is in shared memory before the wait (the other end of a GPU's
    window), and copies, zero-fill and groups give the same results as landing at the wait."""
    from fastconv import emu
    kern = cp.RawModule(code=module_source(HERE / "ptx_wrappers.cu")).get_function
    out = cp.zeros(2, np.float32)
    with emu.early_copies():
        kern("cp_async_unwaited")((1,), (32,), (cp.asarray(np.arange(4, dtype=np.float32) + 1), out))
        assert out.get().tolist() == [1.0, 1.0]
        test_cp_async_copies_zero_fills_and_groups((cp, kern), rng)
    kern("cp_async_unwaited")((1,), (32,), (cp.asarray(np.arange(4, dtype=np.float32) + 1), out))
    assert np.isnan(out.get()[0])  # the setting is undone


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_gpu_versions_compile(tmp_path, arch):
    src = tmp_path / "ptx_wrappers.cu"
    src.write_text(module_source(HERE / "ptx_wrappers.cu"))
    proc = subprocess.run([NVCC, f"-arch={arch}", "-cubin", "-std=c++17", "-o", str(tmp_path / "k.cubin"), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr.lower(), proc.stderr
