"""The main loops of the v3 conv kernels in SASS: kernels/conv_tf32.cu (and conv.cu) as the loader
hands them to NVRTC, compiled by nvcc to a cubin, disassembled by nvdisasm, and each kernel's main
loop (the loop that holds most of its HMMA, or FFMA for the fp32 tiles) split into what it spends
its instructions on.
tests/test_conv_build.py checks these loops; run as a script it prints the table that a loader or
tile change is judged by (instructions per HMMA / FFMA must not rise):

    PYTHONPATH=$PWD python tests/conv_sass.py [--arch sm_90] [--fp32]

Columns: instructions of the loop, its HMMA (FFMA), instructions per HMMA (per 16 FFMA for fp32,
the work of one thread's share of an m16n8k8 mma), then the loop's shared loads (LDS, LDSM), cvt.rna
pairs (FSETP: one per rounded fragment element), cp.async (LDGSTS), and the rest (address,
predicate and loop work)."""

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_build import build_cubin, find_tool, loop_spans, loops, opcodes, sass_functions  # noqa: E402

PASSES = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight")


def main_loop(lines, op="FFMA"):
    """The opcodes of the loop that holds the most ``op``."""
    best = []
    for ops in loops(lines):
        if sum(o.startswith(op) for o in ops) > sum(o.startswith(op) for o in best):
            best = ops
    return best


def inner_loops(lines):
    """The opcodes of every innermost loop (a backward branch whose range holds no other one)."""
    spans = loop_spans(lines)
    return [opcodes(lines[a:b + 1]) for a, b in spans
            if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in spans)]


def loop_profile(ops, op):
    """{'instructions', op, 'per', 'shared', 'cvt', 'cp.async', 'other'} of a main loop's opcodes;
    'per' is instructions per HMMA, or per 16 FFMA for op='FFMA'."""
    counts = Counter(o.split(".")[0] for o in ops)
    work = counts[op] / (16 if op == "FFMA" else 1)
    cvt = counts["FSETP"] if op == "HMMA" else 0
    shared = counts["LDS"] + counts["LDSM"]
    return {"instructions": len(ops), op: counts[op], "per": len(ops) / work if work else float("inf"),
            "shared": shared, "cvt": cvt, "cp.async": counts["LDGSTS"],
            "other": len(ops) - counts[op] - shared - 2 * cvt - counts["LDGSTS"]}


def kernels(fp32=False):
    """The v3 kernel names: every TF32 tile's three passes (4-byte gathers), then its vec backward-weight
    (16-byte gathers), and with fp32 every fp32 tile after them."""
    from fastconv.backends.cuda import config as cfg
    names = [f"{p}_v3_tf32_{t}" for t in cfg.TF32_TILES for p in PASSES]
    names += [f"conv2d_backward_weight_v3_tf32_vec_{t}" for t in cfg.TF32_TILES]
    if fp32:
        names += [f"{p}_v3_{t}" for t in cfg.CONV_TILES for p in PASSES]
    return names


def table(arch="sm_90", fp32=False):
    """Rows (kernel, registers, loop_profile) for kernels(fp32) built for arch."""
    nvdisasm = find_tool("nvdisasm")
    if nvdisasm is None:
        raise RuntimeError("nvdisasm not found (pip install nvidia-cuda-nvdisasm)")
    report, funcs = {}, {}
    for filename in ("conv_tf32.cu",) + (("conv.cu",) if fp32 else ()):
        cubin, more = build_cubin(filename, arch)
        report.update(more)
        funcs.update(sass_functions(cubin, nvdisasm))
    rows = []
    for name in kernels(fp32):
        op = "HMMA" if "_tf32_" in name else "FFMA"
        rows.append((name, report[name][0], loop_profile(main_loop(funcs[name], op), op)))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--fp32", action="store_true", help="the fp32 (FFMA) tiles too")
    args = ap.parse_args(argv)
    print(f"{'kernel':44} {'regs':>4} {'instr':>5} {'mma':>4} {'per':>6} {'lds':>4} {'cvt':>4} {'ldgsts':>6} "
          f"{'other':>5}")
    for name, regs, p in table(args.arch, args.fp32):
        op = "HMMA" if "HMMA" in p else "FFMA"
        print(f"{name:44} {regs:4d} {p['instructions']:5d} {p[op]:4d} {p['per']:6.2f} {p['shared']:4d} "
              f"{p['cvt']:4d} {p['cp.async']:6d} {p['other']:5d}")


if __name__ == "__main__":
    main()
