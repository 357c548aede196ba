"""PTX of the numba kernels, compiled without a GPU (numba.cuda.compile_ptx through NVVM): the
conv main loop (the loop holding the kernel's bar.sync) has no integer division or remainder and no
64-bit multiply, reads its shared tiles with 16-byte loads and keeps the accumulators in registers
(no local memory); the small-channel conv kernels' innermost loops (the FMA loops and the staging
loops) have no integer division or remainder and no 64-bit multiply; the bandwidth kernels (pooling,
bias gradient, split sums, activations) have no division and no 64-bit multiply in any loop; the
Winograd transforms neither (and no table or tile left in constant or local memory), and the slot
transforms (input, output, dy) divide only before their one barrier.

Run as a script to print the counts: PYTHONPATH=$PWD python tests/test_numba_ptx.py
"""

import re
from pathlib import Path

import pytest

from fastconv.backends.cuda.config import KERNELS

PASSES = ("forward", "backward_data", "backward_weight")
CONV_KERNELS = tuple(f"conv2d_{op}{suffix}_v1" for suffix in ("_t64x64", "_t128", "_t32x128", "_t128x64", "_t64x128")
                     for op in PASSES)

# what the main loop may not hold: integer division / remainder (any width) and 64-bit multiplies
FORBIDDEN = {
    "div/rem": re.compile(r"^\s*(?:@%p\d+\s+)?(?:div|rem)\.[su](?:32|64)\b", re.M),
    "mul.lo.s64/mad.lo.s64": re.compile(r"^\s*(?:@%p\d+\s+)?(?:mul|mad)\.lo\.[su]64\b", re.M),
}
SMALLC_KERNELS = tuple(f"conv2d_{op}_smallc_v1" for op in PASSES)
BANDWIDTH_KERNELS = ("max_pool2d_forward_v1", "max_pool2d_backward_v1", "avg_pool2d_forward_v1",
                     "avg_pool2d_backward_v1", "max_pool2d_forward_v2_2x2", "max_pool2d_backward_v2_2x2",
                     "avg_pool2d_forward_v2_2x2", "avg_pool2d_backward_v2_2x2", "conv2d_backward_bias_v1",
                     "sum_splits_v1", "relu_forward_v2", "relu_backward_v2", "leaky_relu_forward_v2",
                     "leaky_relu_backward_v2")
WINOGRAD_KERNELS = KERNELS["winograd.cu"]  # the numba family's Winograd kernels carry the CUDA C names
SLOT_KERNELS = tuple(k for k in WINOGRAD_KERNELS if k.startswith("conv2d_winograd_output"))  # A threads a slot
WIDE = re.compile(r"^\s*(?:@%p\d+\s+)?(?:mul|mad)\.wide\.[su]32\b", re.M)


def kernel_ptx(name: str) -> str:
    """PTX (sm_80) of numba kernel ``name`` with the pointer signature the GPU launcher compiles."""
    from numba import cuda

    from fastconv.backends.numba import driver
    ptx, _ = cuda.compile_ptx(driver._body(name), driver.signature(name), cc=(8, 0))
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


def loops(ptx: str) -> str:
    """The lines inside any loop: from each label a later branch jumps back to, to that branch."""
    lines = ptx.splitlines()
    labels = {m.group(1): i for i, ln in enumerate(lines) if (m := re.match(r"^(\$L\w+):", ln))}
    inside = set()
    for i, ln in enumerate(lines):
        m = re.search(r"\bbra(?:\.uni)?\s+(\$L\w+);", ln)
        if m and labels.get(m.group(1), len(lines)) < i:
            inside.update(range(labels[m.group(1)], i + 1))
    return "\n".join(lines[i] for i in sorted(inside))


def inner_loops(ptx: str) -> list[str]:
    """The innermost loops, each from a label a later branch jumps back to, to that branch, holding
    no other such span (a block the compiler placed after the code it returns to also branches
    back; the spans it makes enclose the real loops, so they are not innermost)."""
    lines = ptx.splitlines()
    labels = {m.group(1): i for i, ln in enumerate(lines) if (m := re.match(r"^(\$L\w+):", ln))}
    spans = [(labels[m.group(1)], i) for i, ln in enumerate(lines)
             if (m := re.search(r"\bbra(?:\.uni)?\s+(\$L\w+);", ln)) and labels.get(m.group(1), len(lines)) < i]
    return ["\n".join(lines[a:b + 1]) for a, b in spans
            if not any(o != (a, b) and a <= o[0] and o[1] <= b for o in spans)]


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
    import numba

    from cuda_build import build_once
    package = Path(__file__).resolve().parents[1] / "fastconv"  # the kernels' code and tables
    inputs = "\0".join([numba.__version__] + [p.read_text() for p in sorted(package.rglob("*.py"))])
    cache = {}

    def get(name):
        if name not in cache:
            folder = build_once(f"numba-{name}", inputs, lambda f: (f / "out.ptx").write_text(kernel_ptx(name)))
            cache[name] = (folder / "out.ptx").read_text()
        return cache[name]
    return get


@pytest.mark.parametrize("name", CONV_KERNELS)
def test_conv_main_loop_has_no_division_or_64bit_multiply(ptx_of, name):
    loop = main_loop(ptx_of(name))
    got = counts(loop)
    assert "fma.rn.f32" in loop, "main loop found without the tile FMAs"
    assert got["div/rem"] == 0 and got["mul.lo.s64/mad.lo.s64"] == 0, f"{name} main loop: {got}"


@pytest.mark.parametrize("name", CONV_KERNELS)
def test_conv_tiles_use_vector_shared_loads_and_registers(ptx_of, name):
    """tile_fma reads every run of 4 rows / columns with one ld.shared.v4 (the shared tiles are
    16-byte aligned) and no scalar shared load, and nothing puts the accumulators in local memory."""
    ptx = ptx_of(name)
    loop = main_loop(ptx)
    assert len(re.findall(r"ld\.shared\.v4\.f32", loop)) >= 2, f"{name}: no 16-byte shared loads"
    assert not re.search(r"ld\.shared\.f32", loop), f"{name}: scalar shared loads in the main loop"
    assert ".local" not in ptx, f"{name}: uses local memory"


@pytest.mark.parametrize("name", [k for k in CONV_KERNELS if "backward_data" in k])
def test_backward_data_decodes_its_phase_before_the_main_loop(ptx_of, name):
    """One launch serves every stride phase: the block reads its phase from %ctaid.z and decodes it
    (tiles._phase_dim and the slice length divide) before the main loop, which holds no division
    (test above), and a block past its phase's columns branches to the kernel's return before the
    first barrier."""
    ptx = ptx_of(name)
    head = ptx[:ptx.index(main_loop(ptx))]
    assert "%ctaid.z" in head and counts(head)["div/rem"] > 0, f"{name}: no phase decode before the main loop"
    lines = ptx.splitlines()
    exits = {m.group(1) for i, ln in enumerate(lines[:-1])
             if (m := re.match(r"^(\$L\w+):", ln)) and lines[i + 1].strip() == "ret;"}
    first_bar = next(i for i, ln in enumerate(lines) if "bar.sync" in ln)
    assert any(m and m.group(1) in exits for m in (re.search(r"\bbra(?:\.uni)?\s+(\$L\w+);", ln)
                                                   for ln in lines[:first_bar])), f"{name}: no return before the first barrier"


# FFMA share of one BK step of the main loop in sm_90 SASS (tests/numba_sass.py prints the table;
# measured: 0.54-0.67 for the tiles of 128 and more threads, 0.46-0.61 for the 64-thread 32x128 and
# 64x64 ones, which stage 20 and 16 elements per 512 FFMA): the loaders' index work per staged
# element must not grow past these floors
MIN_FFMA_SHARE = {64: 0.40, 128: 0.48, 256: 0.48}


@pytest.mark.parametrize("name", CONV_KERNELS)
def test_conv_main_loop_sass(ptx_of, name):
    """ptxas (sm_90) keeps every conv GEMM kernel free of spills and within the registers that let
    tile.per_sm blocks share an SM, its main loop touches no local memory and spends at least MIN_FFMA_SHARE of its instructions on FFMA (tm*tn*BK per step)."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cuda_build import find_tool
    from numba_sass import profile

    from fastconv.backends.numba.tiles import BK, TILES
    if not (find_tool("ptxas") and find_tool("nvdisasm")):
        pytest.skip("ptxas or nvdisasm not installed")
    tile = {f"conv2d_{op}{t.suffix}_v1": t for t in TILES for op in PASSES}[name]
    got = profile(ptx_of(name))
    assert got["spills"] == 0 and got["local"] == 0, f"{name}: {got}"
    # registers are allocated in 8s per thread; tile.per_sm blocks must fit the 64K of an SM
    assert tile.per_sm * tile.threads * -(-got["registers"] // 8) * 8 <= 65536, f"{name}: {got}"
    assert got["FFMA"] == tile.tm * tile.tn * BK, f"{name}: {got}"
    assert got["share"] >= MIN_FFMA_SHARE[tile.threads], f"{name}: {got}"


@pytest.mark.parametrize("name", SMALLC_KERNELS)
def test_smallc_inner_loops_have_no_division_or_64bit_multiply(ptx_of, name):
    """Every innermost loop (the register-tile FMA loops, the staging loops) does 32-bit index math
    without division, the FMA loops are there (8x4, 2x4 and 16x4 per thread; forward and
    backward-weight read their filters with 16-byte loads) and the register tiles stay out of local
    memory."""
    ptx = ptx_of(name)
    inner = inner_loops(ptx)
    fma_loop = max(inner, key=lambda loop: loop.count("fma.rn.f32"))
    op = name[7:-10]
    fmas = fma_loop.count("fma.rn.f32")
    assert fmas >= {"forward": 32, "backward_data": 8, "backward_weight": 64}[op], f"{name}: {fmas} FMAs"
    if op != "backward_data":  # the filters of a tap (a pixel) come in 16-byte shared loads
        assert len(re.findall(r"ld\.shared\.v4\.f32", fma_loop)) >= 2, f"{name}: no 16-byte shared loads"
    for loop in inner:
        got = counts(loop)
        assert got["div/rem"] == 0 and got["mul.lo.s64/mad.lo.s64"] == 0, f"{name} loop: {got}\n{loop}"
    assert ".local" not in ptx, f"{name}: uses local memory"


@pytest.mark.parametrize("name", BANDWIDTH_KERNELS)
def test_bandwidth_kernel_loops_have_no_division_or_64bit_multiply(ptx_of, name):
    got = counts(loops(ptx_of(name)))
    assert got["div/rem"] == 0 and got["mul.lo.s64/mad.lo.s64"] == 0, f"{name} loops: {got}"


@pytest.mark.parametrize("name", WINOGRAD_KERNELS)
def test_winograd_transforms_fold_their_tables(ptx_of, name):
    """The Winograd kernels' transforms are straight-line code: their matrices are folded into the
    arithmetic (no constant-memory loads), their tiles stay in registers (no local memory) and their
    loops (the filter transform's staging, any the compiler leaves rolled) neither divide nor multiply
    in 64 bits."""
    ptx = ptx_of(name)
    assert "ld.const" not in ptx and ".local" not in ptx, f"{name}: tables or tiles left in memory"
    assert re.search(r"\b(?:fma\.rn|mul|add|sub)(?:\.rn)?\.f32\b", ptx), f"{name}: no transform arithmetic"
    got = counts(loops(ptx))
    assert got["div/rem"] == 0 and got["mul.lo.s64/mad.lo.s64"] == 0, f"{name} loops: {got}"


@pytest.mark.parametrize("name", SLOT_KERNELS)
def test_winograd_slot_transforms_divide_only_before_the_barrier(ptx_of, name):
    """The output transform's two stages meet at its one barrier: stage 1 stores its columns of AT m
    to shared memory before it, stage 2 reads them after it, and stage 2 (its row of AT picked once,
    its slots stepped by adding) neither divides nor multiplies in 64 bits: each thread finds its
    slot once, in stage 1. (The input and dy transforms, a thread per slot, have no barrier.)"""
    before, bar, after = ptx_of(name).partition("bar.sync")
    assert bar and "bar.sync" not in after, f"{name}: expected one barrier"
    assert "st.shared.f32" in before and "ld.shared.f32" in after, f"{name}: no columns through shared memory"
    got = counts(after)
    assert got["div/rem"] == 0 and got["mul.lo.s64/mad.lo.s64"] == 0, f"{name} after the barrier: {got}"


def test_main_loop_finder_sees_a_division():
    """The check can fail: a loop that divides, around a bar.sync, is found and counted."""
    ptx = "\n".join(["\tmov.u32 %r1, 0;", "$L__BB0_1:", "\tdiv.s32 %r2, %r1, %r3;", "\tbar.sync 0;",
                     "\tfma.rn.f32 %f1, %f2, %f3, %f1;", "\tmul.lo.s64 %rd1, %rd2, %rd3;", "\tbar.sync 0;",
                     "\t@%p1 bra $L__BB0_1;", "\tdiv.s32 %r4, %r1, %r3;", "\tret;"])
    assert counts(main_loop(ptx)) == {"div/rem": 1, "mul.lo.s64/mad.lo.s64": 1, "mul.wide.s32": 0}
    # loops() takes both loops' lines (set-up before the first label and after the branch are out)
    nested = "\n".join(["\tdiv.s32 %r0, %r1, %r3;", "$L__BB0_1:", "$L__BB0_2:", "\tmul.lo.s64 %rd1, %rd2, %rd3;",
                        "\t@%p1 bra $L__BB0_2;", "\trem.u32 %r2, %r1, %r3;", "\t@%p2 bra.uni $L__BB0_1;",
                        "\tdiv.s32 %r4, %r1, %r3;"])
    assert counts(loops(nested)) == {"div/rem": 1, "mul.lo.s64/mad.lo.s64": 1, "mul.wide.s32": 0}
    # inner_loops() takes the inner loop only (the outer one holds the division)
    assert [counts(loop) for loop in inner_loops(nested)] == [{"div/rem": 0, "mul.lo.s64/mad.lo.s64": 1,
                                                                "mul.wide.s32": 0}]


if __name__ == "__main__":
    for kernel in CONV_KERNELS:
        code = kernel_ptx(kernel)
        print(f"{kernel}: whole kernel {counts(code)}; main loop {counts(main_loop(code))}, "
              f"ld.shared.v4 {len(re.findall(r'ld.shared.v4', main_loop(code)))}")
    for kernel in SMALLC_KERNELS:
        print(f"{kernel}: innermost loops {[counts(loop) for loop in inner_loops(kernel_ptx(kernel))]}")
    for kernel in BANDWIDTH_KERNELS + WINOGRAD_KERNELS:
        print(f"{kernel}: loops {counts(loops(kernel_ptx(kernel)))}")
