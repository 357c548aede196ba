"""The conv kernels as built for the GPU, checked without one: kernels/conv.cu, conv_smallc.cu and conv_tf32.cu (as
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
  and the CONV_V3_TF32_KERNELS lines of conv_tf32.cu, and its SMALLC* constants conv_smallc.cu's CONV_SMALLC*
  defines;

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
VEC = [f"conv2d_backward_weight_v3_tf32_vec_{t}" for t in cfg.TF32_TILES]  # 16-byte gathers: backward-weight only
FILES = ("conv.cu", "conv_smallc.cu", "conv_tf32.cu")  # fp32 tiles and helpers; small-channel; TF32 tiles


@pytest.fixture(scope="module")
def builds():
    if NVCC is None:
        pytest.skip("nvcc is not on PATH")
    jobs = [(f, a) for a in ARCHS for f in FILES]
    with ThreadPoolExecutor(len(jobs)) as pool:  # nvcc runs as a subprocess: the builds overlap
        done = dict(zip(jobs, pool.map(lambda j: build_cubin(*j), jobs)))
    # per arch: the cubins of the files, and one register / spill report of all their kernels
    return {a: ([done[f, a][0] for f in FILES], {k: v for f in FILES for k, v in done[f, a][1].items()})
            for a in ARCHS}


def _launch_bounds(kernel):
    """(threads, min blocks) of a kernel's __launch_bounds__ in conv.cu or conv_smallc.cu."""
    text = "".join((loader.kernel_dir() / f).read_text() for f in ("conv.cu", "conv_smallc.cu"))
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


# Instructions per HMMA in the TF32 main loop, at most (sm_90): forward and backward-data, backward-
# weight, the vec backward-weight. Measured (tests/conv_sass.py): t128x128 5.75-5.84, 8.22, 4.06; t128x64
# 6.28-6.44, 10.62, 4.66; t64x128 6.97-7.12, 11.69, 4.88; t64x64 8.94-9.75, 14.31, 7.06; t128x64w2
# 5.00-5.05, 8.08, 3.88; t32x128 12.25-12.44, 19.12, 8.25. Beside the HMMA a 4-byte loop holds the
# cvt.rna pair (FSETP, IADD) per gathered fragment element, one shared load per 2-8 elements and the
# gather loaders' per-column work: forward and backward-data one AND-NOT of the column's bounds bitmask
# and an address (GatherMasked), backward-weight two compares and an address. The vec backward-weight
# reads dy 4 channels and x 4 channels per copy from channels-last copies already rounded (no cvt.rna;
# with dy 4 bytes per copy 5.53-10.75, with x too 7.69-13.44). Forward and backward-data before the
# bitmasks (two compares): t128x128 6.34-6.44, t128x64 6.94-7.09, t64x128 10.19-10.50, t64x64 10.25-11.00.
TF32_MAX_PER_HMMA = {"t128x128": (6.0, 8.5, 4.3), "t128x64": (6.5, 11, 4.9), "t64x128": (7.2, 12.0, 5.2),
                     "t64x64": (9.8, 14.75, 7.4), "t128x64w2": (5.1, 8.4, 4.1), "t32x128": (12.75, 19.5, 8.6)}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kernel", TF32 + VEC)
def test_tf32_main_loop_sass(sass, arch, kernel):
    """TF32 kernels: the warp tile's HMMA (m16n8k8) per k step in the main loop, fed by cp.async,
    k-major A fragments (packed weights; the vec backward-weight's dy copy) by two 64-bit shared loads
    per A tile, gathered ones by ldmatrix (one per A tile, one per two B tiles) but the vec
    backward-weight's B (k-major, 32-bit loads), one cvt.rna per gathered fragment element (B only
    where A is packed weights), no division; on sm_90 at most one register move per HMMA (the
    loaders' own) and at most TF32_MAX_PER_HMMA instructions per HMMA; a stage's copies issued before
    its fragments are loaded. The vec backward-weight issues only 16-byte cp.async, as many per stage
    as its A and B tiles have 16-byte cells per thread, and needs no cvt.rna (its operands are
    channels-last copies rounded by nchw_to_nhwc_v1)."""
    tile = kernel.rsplit("_", 1)[1]
    bm, bn, bk, nt, _ = cfg.TF32_TILES[tile]
    wr, wc = _tf32_warps()[tile]
    wgrad = "backward_weight" in kernel
    ops = main_loop(sass[arch][kernel], "HMMA")
    counts = Counter(op.split(".")[0] for op in ops)
    per_warp = bm * bn // (nt // 32) // 128  # m16n8 tiles per warp
    assert counts["HMMA"] == per_warp * bk // 8, f"{kernel} ({arch}): {counts}"
    # a cvt.rna (FSETP + IADD) per fragment element of a gathered operand: packed weights are tf32 already,
    # and so are the vec backward-weight's channels-last copies (read k-major: A by 64-bit pairs, B by
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
        most = TF32_MAX_PER_HMMA[tile][2 if kernel in VEC else wgrad]
        assert len(ops) <= most * counts["HMMA"], f"{kernel}: {len(ops)} for {counts['HMMA']} HMMA, at most {most} each"
    # gemm_mainloop issues the next stage's copies, then loads the stage's fragments (checked on the
    # ldmatrix and 64-bit loads: ptxas puts some of the vec backward-weight's 32-bit B loads among the copies)
    first = lambda name: next(i for i, op in enumerate(ops) if op.startswith(name))  # noqa: E731
    first_load = min(first("LDSM") if ldsm else len(ops), first("LDS.64") if kmajor_a else len(ops))
    assert first("LDGSTS") < first_load, f"{kernel} ({arch}): fragments loaded before the copies: {ops[:40]}"
    if kernel in VEC:
        copies = [op for op in ops if op.startswith("LDGSTS")]
        assert all(op.endswith(".128") for op in copies), f"{kernel} ({arch}): {copies}"
        assert len(copies) == bk * (bm + bn) // 4 // nt, f"{kernel} ({arch}): {len(copies)} cp.async a stage"


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
    text = (loader.kernel_dir() / "conv_smallc.cu").read_text()
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
