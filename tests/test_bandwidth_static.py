"""ptxas and SASS checks of the bandwidth kernels (kernels/pool.cu, pool_2x2.cu, activation.cu, batchnorm.cu,
bias.cu), no GPU needed: each file as the loader hands it to NVRTC, compiled by nvcc for sm_80 and
sm_90 with ``-Xptxas -v``, then disassembled by nvdisasm (the ``nvidia-cuda-nvdisasm`` wheel or
the CUDA toolkit's). Per kernel: no spills, registers within REGISTER_BUDGET, no call to the
64-bit integer division routines (``__cuda_sm20_div_u64`` and kin: the index math is 32-bit), and
the 16-/8-byte global loads and stores its vector path is written for. Skipped without nvcc or
nvdisasm."""

import re
import subprocess

import pytest

from cuda_build import build_cubin, find_tool, loops, sass_functions
from fastconv.backends.cuda.config import KERNELS

FILES = ("activation.cu", "batchnorm.cu", "bias.cu", "pool.cu", "pool_2x2.cu")
ARCHS = ("sm_80", "sm_90")
# 256-thread blocks at <= 40 registers keep 6 blocks (1536 threads, 75% occupancy) per SM; the
# largest measured is 40 (pool 2x2 backward, two outputs per thread; the V = 4 max-pool backward
# with two items in flight, held there by __launch_bounds__), most use 14-32
REGISTER_BUDGET = 40
DIV64 = re.compile(r"__cuda_sm\d+_(?:div|rem)_[us]64")

# kernel name pattern -> SASS opcodes it must contain (its vector loads / stores)
VECTOR_OPS = {
    r"^(relu|leaky_relu|sigmoid|tanh)_(forward|backward)_v2$": ("LDG.E.128", "STG.E.128"),
    r"^max_pool2d_forward_v3_2x2w$": ("LDG.E.128", "STG.E.64"),
    r"^max_pool2d_backward_v3_2x2w$": ("LDG.E.64", "STG.E.128"),
    r"^avg_pool2d_forward_v3_2x2w$": ("LDG.E.128", "STG.E.64"),
    r"^avg_pool2d_backward_v3_2x2w$": ("LDG.E.64", "STG.E.128"),
    r"^(max|avg)_pool2d_forward_v3_2x2$": ("LDG.E.64",),
    r"^(max|avg)_pool2d_backward_v3_2x2$": ("STG.E.64",),
    r"^(max|avg)_pool2d_backward_v3_2x2v4x2$": ("LDG.E.128", "STG.E.128", "SHFL.BFLY"),
    r"^relu_max_pool2d_backward_v2_2x2v4x2$": ("LDG.E.128", "LDG.E.CONSTANT", "STG.E.128", "SHFL.BFLY"),
    r"^(max|avg)_pool2d_backward_v3_2x2r$": ("LDG.E.64", "STG.E.128"),
    r"^relu_max_pool2d_backward_v2_2x2r$": ("LDG.E.64", "LDG.E.U16", "STG.E.128"),
    r"^relu_max_pool2d_forward_v2_2x2w$": ("LDG.E.128", "STG.E.64"),
    r"^relu_max_pool2d_backward_v2_2x2w$": ("LDG.E.64", "STG.E.128"),
    r"^relu_max_pool2d_forward_v2_2x2$": ("LDG.E.64",),
    r"^relu_max_pool2d_backward_v2_2x2$": ("STG.E.64",),
    r"^batchnorm_(stats_v3|backward_sums_v2)_f4$": ("LDG.E.128",),
    r"^batchnorm_(forward_train_v3|backward_v2)_f4$": ("LDG.E.128", "STG.E.128"),
    r"^conv2d_backward_bias_v3_f4$": ("LDG.E.128",),
}

# the V = 4 pool backward kernels pair lanes so that each store instruction writes whole 32-byte
# sectors, and the row-wise ones (2x2r) store 16 contiguous bytes per lane: every global store they
# issue is 16 bytes wide (NVVM splits plain float4 stores of selected values into 4-byte ones, hence
# their PTX store)
WIDE_STORES_ONLY = re.compile(r"^(max|avg)_pool2d_backward_v3_2x2(v4x2|r)$|^relu_max_pool2d_backward_v2_2x2(v4x2|r)$")
STG = re.compile(r"\bSTG\.[A-Z0-9.]+")

# loops over channel rows (kernels/reduce.cuh for_channel_rows): 16-byte loads the main loop issues
# before the first instruction that uses a loaded value (the loads in flight per thread). ptxas
# sinks some of the batchnorm forward-pass loads toward their uses (1-4 ahead, by arch), so
# those are not listed.
LOADS_IN_FLIGHT = {"conv2d_backward_bias_v3_f4": 4, "batchnorm_backward_sums_v2_f4": 4, "batchnorm_backward_v2_f4": 4}
USES = re.compile(r"\b(DADD|DFMA|F2F|FADD|FMUL|FFMA|STG)\b")

NVCC, NVDISASM = find_tool("nvcc"), find_tool("nvdisasm")
pytestmark = pytest.mark.skipif(NVCC is None or NVDISASM is None,
                                reason="nvcc and nvdisasm (pip install nvidia-cuda-nvdisasm) are needed")


@pytest.fixture(scope="module", params=[(f, a) for f in FILES for a in ARCHS], ids=lambda fa: f"{fa[0]}-{fa[1]}")
def build(request):
    filename, arch = request.param
    cubin, report = build_cubin(filename, arch)
    return filename, arch, report, sass_functions(cubin, NVDISASM)


def test_registers_and_spills(build):
    filename, arch, report, _ = build
    assert set(KERNELS[filename]) <= set(report), sorted(set(KERNELS[filename]) - set(report))
    bad = {k: v for k, v in report.items() if v[0] > REGISTER_BUDGET or v[1] or v[2]}
    assert not bad, f"kernels/{filename} ({arch}): [registers, spill stores, spill loads] over budget: {bad}"


def test_no_64_bit_division(build):
    filename, arch, _, sass = build
    bad = {k: sorted(set(DIV64.findall("\n".join(lines)))) for k, lines in sass.items()
           if k in KERNELS[filename] and DIV64.search("\n".join(lines))}
    assert not bad, f"kernels/{filename} ({arch}): 64-bit integer division calls in {bad}"


def test_vector_loads_and_stores(build):
    filename, arch, _, sass = build
    checked = 0
    for kernel in KERNELS[filename]:
        for pattern, ops in VECTOR_OPS.items():
            if re.search(pattern, kernel):
                text = "\n".join(sass[kernel])
                missing = [op for op in ops if not re.search(re.escape(op) + r"\b", text)]
                assert not missing, f"kernels/{filename} ({arch}) {kernel}: no {missing} in its SASS"
                checked += 1
    assert checked or filename == "pool.cu", f"kernels/{filename}: no kernel matched VECTOR_OPS"  # any window: scalar


def test_pool_v4_kernels_store_16_bytes_at_a_time(build):
    filename, arch, _, sass = build
    kernels = [k for k in KERNELS[filename] if WIDE_STORES_ONLY.search(k)]
    assert kernels or filename != "pool_2x2.cu"
    for kernel in kernels:
        stores = STG.findall("\n".join(sass[kernel]))
        assert stores and set(stores) == {"STG.E.128"}, f"kernels/{filename} ({arch}) {kernel}: stores {stores}"


def test_reduction_loops_keep_loads_in_flight(build):
    filename, arch, _, sass = build
    for kernel, want in LOADS_IN_FLIGHT.items():
        if kernel not in KERNELS[filename]:
            continue
        (body,) = [b for b in loops(sass[kernel]) if any("LDG.E.128" in op for op in b)]
        first_use = next(i for i, op in enumerate(body) if USES.search(op))
        got = sum("LDG.E.128" in op for op in body[:first_use])
        assert got >= want, (f"kernels/{filename} ({arch}) {kernel}: {got} 16-byte loads before the first use in "
                             f"its main loop, expected >= {want}")


def test_sass_helpers_see_a_64_bit_division(tmp_path):
    """The checks can fail: a kernel with an i64 division shows the call the regex looks for."""
    src, cubin = tmp_path / "div.cu", tmp_path / "div.cubin"
    src.write_text('extern "C" __global__ void k(long long* a, long long d) { a[threadIdx.x] /= d; }\n')
    subprocess.run([NVCC, "-arch=sm_90", "-cubin", "-o", str(cubin), str(src)], check=True, capture_output=True)
    sass = sass_functions(cubin, NVDISASM)["k"]
    assert DIV64.search("\n".join(sass)), "\n".join(sass[:60])
