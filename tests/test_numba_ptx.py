"""PTX of the numba conv kernels, compiled without a GPU (numba.cuda.compile_ptx through NVVM):
the main loop (the loop holding the kernel's bar.sync) has no integer division or remainder and no
64-bit multiply; addresses are 32-bit index math widened once per load (mul.wide.s32).

Run as a script to print the counts: PYTHONPATH=$PWD python tests/test_numba_ptx.py
"""

import re

import pytest

CONV_KERNELS = tuple(f"conv2d_{op}{suffix}_v1" for suffix in ("", "_t128")
                     for op in ("forward", "backward_data", "backward_weight"))

# what the main loop may not hold: integer division / remainder (any width) and 64-bit multiplies
FORBIDDEN = {
    "div/rem": re.compile(r"^\s*(?:@%p\d+\s+)?(?:div|rem)\.[su](?:32|64)\b", re.M),
    "mul.lo.s64/mad.lo.s64": re.compile(r"^\s*(?:@%p\d+\s+)?(?:mul|mad)\.lo\.[su]64\b", re.M),
}
WIDE = re.compile(r"^\s*(?:@%p\d+\s+)?(?:mul|mad)\.wide\.[su]32\b", re.M)


def kernel_ptx(name: str) -> str:
    """PTX (sm_80) of numba kernel ``name`` with the pointer signature the GPU launcher compiles."""
    from numba import cuda
    from numba.cuda import types as t

    from fastconv.backends.numba import driver
    argtypes = [{"f": t.CPointer(t.float32), "i": t.CPointer(t.int32), "n": t.int32, "x": t.float32}[k]
                for k in driver._PARAMS[name]]
    ptx, _ = cuda.compile_ptx(driver._body(name), t.void(*argtypes), cc=(8, 0))
    return ptx


def main_loop(ptx: str) -> str:
    """The innermost loop around every bar.sync: from the label a backward branch after the last
    bar.sync jumps to (before the first bar.sync) to that branch."""
    lines = ptx.splitlines()
    bars = [i for i, ln in enumerate(lines) if "bar.sync" in ln]
    assert bars, "no bar.sync in the kernel"
    labels = {m.group(1): i for i, ln in enumerate(lines) if (m := re.match(r"^(\$L\w+):", ln))}
    best = None
    for i, ln in enumerate(lines[bars[-1]:], bars[-1]):
        m = re.search(r"\bbra(?:\.uni)?\s+(\$L\w+);", ln)
        if m and labels.get(m.group(1), len(lines)) < bars[0]:
            t = labels[m.group(1)]
            if best is None or t > best[0]:
                best = (t, i)
    assert best is not None, "no loop encloses the bar.sync"
    return "\n".join(lines[best[0]:best[1] + 1])


def counts(text: str) -> dict:
    out = {k: len(p.findall(text)) for k, p in FORBIDDEN.items()}
    out["mul.wide.s32"] = len(WIDE.findall(text))
    return out


@pytest.fixture(scope="module")
def ptx_of():
    pytest.importorskip("numba")
    pytest.importorskip("numba.cuda")
    try:
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as e:  # no libNVVM (no CUDA toolkit and no nvidia-cuda-nvcc wheel)
        pytest.skip(f"libNVVM not available: {e}")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = kernel_ptx(name)
        return cache[name]
    return get


@pytest.mark.parametrize("name", CONV_KERNELS)
def test_conv_main_loop_has_no_division_or_64bit_multiply(ptx_of, name):
    loop = main_loop(ptx_of(name))
    got = counts(loop)
    assert "fma.rn.f32" in loop, "main loop found without the tile FMAs"
    assert got["div/rem"] == 0 and got["mul.lo.s64/mad.lo.s64"] == 0, f"{name} main loop: {got}"


def test_main_loop_finder_sees_a_division():
    """The check can fail: a loop that divides, around a bar.sync, is found and counted."""
    ptx = "\n".join(["\tmov.u32 %r1, 0;", "$L__BB0_1:", "\tdiv.s32 %r2, %r1, %r3;", "\tbar.sync 0;",
                     "\tfma.rn.f32 %f1, %f2, %f3, %f1;", "\tmul.lo.s64 %rd1, %rd2, %rd3;", "\tbar.sync 0;",
                     "\t@%p1 bra $L__BB0_1;", "\tdiv.s32 %r4, %r1, %r3;", "\tret;"])
    assert counts(main_loop(ptx)) == {"div/rem": 1, "mul.lo.s64/mad.lo.s64": 1, "mul.wide.s32": 0}


if __name__ == "__main__":
    for kernel in CONV_KERNELS:
        code = kernel_ptx(kernel)
        print(f"{kernel}: whole kernel {counts(code)}; main loop {counts(main_loop(code))}")
