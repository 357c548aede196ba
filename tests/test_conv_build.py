"""The conv kernels as built for the GPU, checked without one: kernels/conv.cu and conv_tf32.cu (as
the loader hands them to NVRTC) compiled with nvcc for sm_80 and sm_90 with ``-Xptxas -v``:

- ptxas budget per kernel: zero spill bytes for every conv kernel, and each v3 tile within the
  registers its __launch_bounds__ allows (65536 / (threads x min blocks), at most 255);
- SASS (nvdisasm, from the nvidia-cuda-nvdisasm wheel or PATH) of each v3 kernel's main loop (the
  loop holding most of the kernel's FFMA): LDGSTS (cp.async) and LDS.128 present, 16-byte LDGSTS
  for the packed weights of forward and backward-data, no integer-division sequence (IMAD.HI,
  MUFU.RCP, I2F/F2I, a CALL other than sm_80's loop exit), FFMA at least 60 % of the loop's
  instructions (55 % for the BK = 4 tiles) and per k row exactly 4 LDS.128 (8 x 8 outputs per
  thread: two float4 of A and two of B);
- TF32 kernels: the warp tile's HMMA (mma.sync m16n8k8) per k step, LDGSTS, ldmatrix (LDSM) for
  the gathered fragments and 64-bit loads for packed weights in the main loop, one cvt.rna per
  gathered fragment element, no register moves feeding the mma, no division, a bound on
  instructions per HMMA (tests/conv_sass.py prints the table);
- small-channel kernels: within the registers of their __launch_bounds__, and in the main loop no
  division, FFMA at least 45 % of the instructions, 16-byte shared loads where a thread's 8 filters
  (forward weights, backward-weight dy) are contiguous;
- the tile tables of fastconv/backends/cuda/config.py equal the CONV_V3_KERNELS lines of conv.cu
  and the CONV_V3_TF32_KERNELS lines of conv_tf32.cu, and its SMALLC* constants the CONV_SMALLC* defines;

Skipped when nvcc (or, for the SASS checks, nvdisasm) is missing."""

import re
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from conv_sass import inner_loops, main_loop
from cuda_build import build_cubin, find_tool, sass_functions
from fastconv.backends.cuda import config as cfg
from fastconv.backends.cuda import smallc_config as scfg
from fastconv.backends.cuda import loader

NVCC = shutil.which("nvcc")
ARCHS = ("sm_80", "sm_90")
PASSES = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight")
V3 = [f"{p}_v3_{t}" for p in PASSES for t in cfg.CONV_TILES]
SMALLC = ["conv2d_forward_smallc_v2", "conv2d_backward_data_smallc_v2", "conv2d_backward_weight_smallc_v1"]
TF32 = [f"{p}_v3_tf32_{t}" for p in PASSES for t in cfg.TF32_TILES]
VEC = [f"{p}_v3_tf32_vec_{t}" for p in PASSES for t in cfg.TF32_TILES]
FILES = ("conv.cu", "conv_tf32.cu")  # the fp32 tiles, small-channel and helper kernels; the TF32 tiles


@pytest.fixture(scope="module")
def builds():
    if NVCC is None:
        pytest.skip("nvcc is not on PATH")
    jobs = [(f, a) for a in ARCHS for f in FILES]
    with ThreadPoolExecutor(len(jobs)) as pool:  # nvcc runs as a subprocess: the builds overlap
        done = dict(zip(jobs, pool.map(lambda j: build_cubin(*j), jobs)))
    # per arch: the cubins of both files, and one register / spill report of all their kernels
    return {a: ([done[f, a][0] for f in FILES], {k: v for f in FILES for k, v in done[f, a][1].items()})
            for a in ARCHS}


def _launch_bounds(kernel):
    """(threads, min blocks) of a kernel's __launch_bounds__ in conv.cu."""
    text = (loader.kernel_dir() / "conv.cu").read_text()
    m = re.search(r"__launch_bounds__\((\d+), (\d+)\) " + kernel + r"\(", text)
    return int(m.group(1)), int(m.group(2))


def _budget(kernel):
    tile = kernel.rsplit("_", 1)[1]
    if kernel in V3 or kernel in TF32 or kernel in VEC:
        _, _, _, nt, minb = cfg.tile_spec(tile, kernel not in V3)
        return min(255, 65536 // (nt * minb))
    if kernel in SMALLC:
        nt, minb = _launch_bounds(kernel)
        return min(255, 65536 // (nt * minb))
    return 255


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kernel", [k for f in FILES for k in cfg.KERNELS[f]])
def test_ptxas_budget(builds, arch, kernel):
    regs, stores, loads = builds[arch][1][kernel]
    assert stores == 0 and loads == 0, f"{kernel} ({arch}): {stores} B spill stores, {loads} B spill loads"
    assert regs <= _budget(kernel), f"{kernel} ({arch}): {regs} registers, budget {_budget(kernel)}"


def _sass_functions(cubin):
    nvdisasm = find_tool("nvdisasm")
    if nvdisasm is None:
        pytest.skip("nvdisasm not found (pip install nvidia-cuda-nvdisasm)")
    return sass_functions(cubin, nvdisasm)


@pytest.fixture(scope="module")
def sass(builds):
    return {a: {k: v for cubin in builds[a][0] for k, v in _sass_functions(cubin).items()} for a in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kernel", V3)
def test_main_loop_sass(sass, arch, kernel):
    ops = main_loop(sass[arch][kernel])
    counts = Counter(op.split(".")[0] for op in ops)
    assert counts["FFMA"] >= 512 * (1 if "t64x32" not in kernel and "t32x128" not in kernel else 0.5), counts
    assert counts["LDGSTS"] > 0, f"{kernel} ({arch}): no cp.async (LDGSTS) in the main loop: {counts}"
    assert "LDS.128" in ops, f"{kernel} ({arch}): no 128-bit shared loads in the main loop"
    if "backward_weight" not in kernel:  # packed weights: 16-byte cp.async
        assert any(op.startswith("LDGSTS") and op.endswith(".128") for op in ops), sorted(set(ops))
    _no_division(kernel, arch, ops)
    bm, bn, bk, nt, _ = cfg.CONV_TILES[kernel.rsplit("_", 1)[1]]
    share = 0.6 if bk >= 8 else 0.55  # BK 4: loads weigh more
    assert counts["FFMA"] >= share * len(ops), f"{kernel} ({arch}): FFMA {counts['FFMA']} of {len(ops)}"
    assert bm * bn == 64 * nt, f"{kernel}: {bm}x{bn} over {nt} threads is not 8x8 outputs per thread"
    assert ops.count("LDS.128") == 4 * bk, f"{kernel} ({arch}): {ops.count('LDS.128')} LDS.128, expected 4 per k row"


def _no_division(kernel, arch, ops):
    bad = [op for op in ops if op.startswith(("IMAD.HI", "MUFU.RCP", "I2F", "F2I"))]
    # a CALL is a division subroutine unless it is sm_80's loop exit (a predicated CALL to the
    # code after the loop, then BRA)
    bad += [op for op, nxt in zip(ops, ops[1:] + [""]) if op.startswith("CALL") and nxt != "BRA"]
    assert not bad, f"{kernel} ({arch}): division-like instructions in the main loop: {bad}"


# Instructions per HMMA in the TF32 main loop, at most (sm_90; forward and backward-data, then
# backward-weight). Measured (tests/conv_sass.py): t128x128 5.75-5.84, 8.22 (32 HMMA per loop),
# t128x64 6.19-6.28, 10.62 (32, BK 16), t64x128 8.75-9.06, 13.88 (16), t64x64 9.06-9.44, 14.44 (16);
# the rest is the cvt.rna pair (FSETP, IADD) per gathered fragment element, one shared load
# per 2-8 elements and the gather loaders' per-column work: forward and backward-data one AND-NOT
# of the column's bounds bitmask and an address (GatherMasked), backward-weight two compares and an
# address. Before the bitmasks (two compares): 6.34-6.44; 6.94-7.09; 10.19-10.50; 10.25-11.00.
# Before the loader rework: 8.7-8.8, 10.5; 10.5-10.6, 13.8; 14.6-14.9, 17.6; 15.5-16.0, 18.8.
# The vec kernels (16-byte gathers), third and fourth: forward and backward-data, whose B is 4 channels
# per copy of a channels-last copy already rounded to tf32 (no cvt.rna): t128x128 3.75-3.91, t128x64
# 4.25-4.38, t64x128 6.00-6.50, t64x64 6.19-6.75 (with the cvt.rna pairs: 4.78-4.94, 5.28-5.41,
# 7.06-7.56, 7.25-7.81); backward-weight, whose A (dy) is 4 pixels per copy and B (x, channels-last,
# rounded) 4 channels per copy: 5.62, 7.00, 9.25, 9.62 (with x 4 bytes per copy: 7.69, 9.19, 13.44, 13.12).
# t128x64w2 (two warps of 64x64, 64 HMMA per loop): 5.00-5.08, 8.08; vec 3.19-3.20, 4.97. t32x128 (warp
# tiles 32x32, 16 HMMA per BK-16 loop): 12.44, 19.12; vec 6.62-6.88, 10.81.
# Packed A from k quads by one ldmatrix per mma tile (PackedQuadA) instead of two 64-bit loads, forward
# and backward-data: t128x128 5.62-5.72, vec 3.62-3.72; t128x64 6.09, vec 4.09-4.19; t64x128 8.88-9.12,
# vec 5.88-6.31; t64x64 9.19, vec 6.19-6.38; t128x64w2 4.83-4.89, vec 3.02; t32x128 11.62-12.50, vec 6.50-6.69.
# Then the vec forward and backward-data loading a stage's first fragments before the next stage's
# copies (gemm_mainloop EARLY): t128x128 3.62-3.66, t128x64 4.09-4.16, t64x128 5.88, t64x64 5.94-6.06,
# t128x64w2 2.97-2.98, t32x128 6.50-6.62. The vec backward-weight with dy from its channels-last copy
# (PackedA, k-major, no cvt.rna), 5.53-10.75 before: t128x128 4.06, t128x64 4.66, t64x128 6.88, t64x64
# 7.06, t128x64w2 3.88, t32x128 8.25. Then t64x128 at BK 16 (was 8): 4-byte forward and backward-data
# 6.78-6.97, backward-weight 11.69; vec 4.03-4.09, 4.88. Then packed A k-major again (two 64-bit loads
# per A tile: the k quads ran t128x64 at half the speed on an H200), forward and backward-data:
# t128x128 5.75-5.84, vec 3.81-3.88; t128x64 6.28-6.44, vec 4.28-4.34; t64x128 6.97-7.12, vec 4.25-4.31;
# t64x64 8.94-9.75, vec 6.25-6.38; t128x64w2 5.00-5.05, vec 3.14-3.16; t32x128 12.25-12.44, vec 6.50-6.81.
TF32_MAX_PER_HMMA = {"t128x128": (6.0, 8.5, 4.0, 4.3), "t128x64": (6.5, 11, 4.5, 4.9),
                     "t64x128": (7.2, 12.0, 4.4, 5.2), "t64x64": (9.8, 14.75, 6.4, 7.4),
                     "t128x64w2": (5.1, 8.4, 3.3, 4.1), "t32x128": (12.75, 19.5, 6.9, 8.6)}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kernel", TF32 + VEC)
def test_tf32_main_loop_sass(sass, arch, kernel):
    """TF32 kernels: the warp tile's HMMA (m16n8k8) per k step in the main loop, fed by cp.async,
    k-major A fragments (packed weights; the vec backward-weight's dy copy) by two 64-bit shared loads
    per A tile, gathered ones by ldmatrix (one per A tile, one per two B tiles) but the vec
    backward-weight's B (k-major, 32-bit loads), one cvt.rna per gathered
    fragment element (B only where A is packed weights; none in the vec kernels), no division; on sm_90 at most
    one register move per HMMA (the loaders' own) and at most TF32_MAX_PER_HMMA instructions per
    HMMA. The vec kernels issue only 16-byte cp.async, as many per stage as their A and B tiles have
    16-byte cells per thread, and need no cvt.rna (their gathered operands are channels-last copies
    rounded by nchw_to_nhwc_v1). The vec
    forward and backward-data load a stage's first fragments before they issue the next stage's
    copies, the others after."""
    tile = kernel.rsplit("_", 1)[1]
    bm, bn, bk, nt, _ = cfg.TF32_TILES[tile]
    wr, wc = _tf32_warps()[tile]
    wgrad = "backward_weight" in kernel
    ops = main_loop(sass[arch][kernel], "HMMA")
    counts = Counter(op.split(".")[0] for op in ops)
    per_warp = bm * bn // (nt // 32) // 128  # m16n8 tiles per warp
    assert counts["HMMA"] == per_warp * bk // 8, f"{kernel} ({arch}): {counts}"
    # a cvt.rna (FSETP + IADD) per fragment element of a gathered operand: packed weights are tf32 already,
    # and so are the vec kernels' channels-last copies
    # (the vec backward-weight's dy is a channels-last copy too, read k-major: A by 64-bit pairs, B by
    # 32-bit loads)
    b_elems, a_elems = 2 * (bn // wc // 8) * bk // 8 * (kernel not in VEC), 4 * (bm // wr // 16) * bk // 8
    assert counts["FSETP"] == b_elems + wgrad * a_elems * (kernel not in VEC), f"{kernel} ({arch}): {counts['FSETP']} cvt.rna"
    assert counts["LDGSTS"] > 0, f"{kernel} ({arch}): no cp.async (LDGSTS) in the main loop: {counts}"
    kmajor_b = wgrad and kernel in VEC          # x read k-major by 32-bit loads
    kmajor_a = not wgrad or kernel in VEC       # packed weights, or the dy copy: 64-bit pairs
    ldsm = ((bm // wr // 16) * (not kmajor_a) + (bn // wc // 16) * (not kmajor_b)) * bk // 8
    assert counts["LDSM"] == ldsm, f"{kernel} ({arch}): {counts['LDSM']} ldmatrix, {ldsm} fragment loads a stage"
    pairs = sum(op.startswith("LDS.64") for op in ops)
    assert pairs == 2 * (bm // wr // 16) * bk // 8 * kmajor_a, f"{kernel} ({arch}): {pairs} 64-bit shared loads"
    _no_division(kernel, arch, ops)
    if arch == "sm_90":  # fragments loaded into other registers than the mma's cost 4 moves per HMMA
        moves = [op for op in ops if op.startswith(("MOV", "IMAD.MOV"))]
        assert len(moves) <= counts["HMMA"], f"{kernel}: {len(moves)} register moves in the main loop"
        most = TF32_MAX_PER_HMMA[tile][(2 if kernel in VEC else 0) + wgrad]
        assert len(ops) <= most * counts["HMMA"], f"{kernel}: {len(ops)} for {counts['HMMA']} HMMA, at most {most} each"
    # the vec forward and backward-data load a stage's first fragments before they issue the next
    # stage's copies (gemm_mainloop's EARLY); the rest issue the copies first
    first = lambda name: next(i for i, op in enumerate(ops) if op.startswith(name))  # noqa: E731
    early = kernel in VEC and not wgrad
    first_load = min(first("LDSM") if ldsm else len(ops), first("LDS.64") if kmajor_a else len(ops))
    assert kmajor_b or (first_load < first("LDGSTS")) == early, f"{kernel} ({arch}): EARLY {early}, ops {ops[:40]}"
    if kernel in VEC:
        copies = [op for op in ops if op.startswith("LDGSTS")]
        assert all(op.endswith(".128") for op in copies), f"{kernel} ({arch}): {copies}"
        assert len(copies) == bk * (bm + bn) // 4 // nt, f"{kernel} ({arch}): {len(copies)} cp.async a stage"


def test_tf32_early_define_turns_the_order_back():
    """FASTCONV_CUDA_DEFINES=TF32_EARLY=0, the knob a GPU run times the two orders with: the vec forward
    and backward-data then issue a stage's copies before they load its first fragments, like the rest."""
    if NVCC is None:
        pytest.skip("nvcc is not on PATH")
    cubin, _ = build_cubin("conv_tf32.cu", "sm_90", {"TF32_EARLY": 0})
    funcs = _sass_functions(cubin)
    for kernel in (k for k in VEC if "backward_weight" not in k):
        ops = main_loop(funcs[kernel], "HMMA")
        first = [next(i for i, op in enumerate(ops) if op.startswith(name)) for name in ("LDGSTS", "LDSM")]
        assert first[0] < first[1], f"{kernel}: copies not first with TF32_EARLY=0: {ops[:40]}"


def _tf32_lines():
    """{tile: (BM, BN, BK, warp rows, warp columns, stages, min blocks)} of the CONV_V3_TF32_KERNELS
    lines of conv_tf32.cu."""
    text = (loader.kernel_dir() / "conv_tf32.cu").read_text()
    rows = re.findall(r"^CONV_V3_TF32_KERNELS\((\w+), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+)\)", text, re.M)
    return {name: tuple(map(int, fields)) for name, *fields in rows}


def _tf32_warps():
    """{tile: (warp rows, warp columns)} of the CONV_V3_TF32_KERNELS lines of conv_tf32.cu."""
    return {name: line[3:5] for name, line in _tf32_lines().items()}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kernel", SMALLC)
def test_small_channel_main_loop_sass(sass, arch, kernel):
    """The small-channel kernels' tap or pixel loop: FFMA-dense, no division; forward and
    backward-weight read a thread's 8 filters (weights, dy) as two 16-byte shared loads. Backward-data
    has one unrolled tap loop per taps-a-row count: the densest is checked, and all for division."""
    if "backward_data" in kernel:
        loops = [ops for ops in inner_loops(sass[arch][kernel]) if "FFMA" in ops]
        for ops in loops:
            _no_division(kernel, arch, ops)
        ops = max(loops, key=lambda o: sum(op == "FFMA" for op in o) / len(o))
    else:
        ops = main_loop(sass[arch][kernel])
    counts = Counter(op.split(".")[0] for op in ops)
    assert counts["FFMA"] >= 0.45 * len(ops), f"{kernel} ({arch}): FFMA {counts['FFMA']} of {len(ops)}: {counts}"
    if "backward_data" not in kernel:
        assert ops.count("LDS.128") >= 2, f"{kernel} ({arch}): no 16-byte shared loads: {sorted(set(ops))}"
    _no_division(kernel, arch, ops)


def test_small_channel_constants_match_the_kernels():
    text = (loader.kernel_dir() / "conv.cu").read_text()
    defines = {k: int(v) for k, v in re.findall(r"^#define CONV_(SMALLC\w*) (\d+)", text, re.M)}
    mirrored = ("SMALLC", "SMALLC_KT", "SMALLC_FWD_SMEM", "SMALLC_BWD_SMEM", "SMALLC_BWD_WS", "SMALLC_WGRAD_SMEM",
                "SMALLC_WGRAD_PITCH")
    assert {k: defines.get(k) for k in mirrored} == {k: getattr(scfg, k) for k in mirrored}
    assert _launch_bounds("conv2d_backward_weight_smallc_v1")[0] == scfg.SMALLC_WGRAD_THREADS


def test_tile_table_matches_the_kernels():
    text = (loader.kernel_dir() / "conv.cu").read_text()
    rows = re.findall(r"^CONV_V3_KERNELS\((\w+), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+)\)", text, re.M)
    table = {name: (int(bm), int(bn), int(bk), 32 * int(wr) * int(wc), int(minb))
             for name, bm, bn, bk, wr, wc, _, _, minb in rows}
    assert table == cfg.CONV_TILES
    lines = _tf32_lines()
    assert {name: (bm, bn, bk, 32 * wr * wc, minb) for name, (bm, bn, bk, wr, wc, _, minb) in lines.items()} \
        == cfg.TF32_TILES
    index = (loader.kernel_dir() / "conv_index.cuh").read_text()
    assert int(re.search(r"^#define GATHER_MASK_TAPS (\d+)", index, re.M).group(1)) == cfg.GATHER_MASK_TAPS
    pack = {k: int(v) for k, v in re.findall(r"^#define PACK_(TILE|ROWS) (\d+)", text, re.M)}
    assert (pack["TILE"], 32 * pack["ROWS"]) == (cfg.PACK_TILE, cfg.PACK_BLOCK)
    for name, (bm, bn, *_) in cfg.TF32_TILES.items():  # conv_grid serves both tables by name
        assert cfg.conv_grid(bm + 1, bn + 1, name, 1) == (2, 2, 1)
        assert cfg.CONV_TILES.get(name, (bm, bn))[:2] == (bm, bn)
