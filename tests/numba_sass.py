"""The numba conv GEMM kernels in SASS: numba's PTX (tests/test_numba_ptx.py kernel_ptx) assembled
by ptxas for sm_90 (registers and spills from ptxas -v), disassembled by nvdisasm, and each
kernel's main loop (the innermost loop around its BAR.SYNC: one BK step) profiled per step, a loop
nested in it counted BK times (the BK-step FMA loop where it is not unrolled). tests/test_numba_ptx.py checks these numbers; run as
a script it prints the table a tile or loader change is judged by:

    PYTHONPATH=$PWD python tests/numba_sass.py [--arch sm_90]

Columns: registers, spill bytes (stores + loads), the main loop's instructions, its FFMA, the
FFMA share of the loop, its shared loads (LDS), global loads (LDG) and local-memory ops (LDL/STL)."""

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_build import find_tool, loop_spans, opcodes, ptxas_report, sass_functions  # noqa: E402


def step_opcodes(lines):
    """The opcodes one BK step of a kernel's main loop executes: the innermost loop holding a
    BAR.SYNC, each loop nested in it repeated BK times."""
    from fastconv.backends.numba.tiles import BK
    spans = loop_spans(lines)
    bars = [i for i, line in enumerate(lines) if "BAR.SYNC" in line]
    a, b = min(((a, b) for a, b in spans if any(a <= i <= b for i in bars)), key=lambda s: s[1] - s[0])
    ops = opcodes(lines[a:b + 1])
    for c, d in spans:
        if a < c and d <= b:  # runs BK times per step (nested loops deeper than one level: none)
            ops += opcodes(lines[c:d + 1]) * (BK - 1)
    return ops


def profile(ptx, arch="sm_90"):
    """{'registers', 'spills', 'instructions', 'FFMA', 'share', 'LDS', 'LDG', 'local'} of the main
    loop (one BK step, step_opcodes) of the one kernel in PTX text ``ptx``, assembled for ``arch``;
    'spills' in bytes (stores + loads), 'local' the loop's LDL/STL."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        cubin = src.with_suffix(".cubin")
        p = subprocess.run([find_tool("ptxas") or "ptxas", f"-arch={arch}", "-v", "-o", str(cubin), str(src)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(p.stderr)
        (regs, st, ld), = ptxas_report(p.stderr).values()
        (lines, ), = [list(sass_functions(cubin, find_tool("nvdisasm")).values())]
    ops = step_opcodes(lines)
    c = Counter(o.split(".")[0] for o in ops)
    return {"registers": regs, "spills": st + ld, "instructions": len(ops), "FFMA": c["FFMA"],
            "share": c["FFMA"] / max(1, len(ops)), "LDS": c["LDS"], "LDG": c["LDG"], "local": c["LDL"] + c["STL"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="sm_90")
    args = ap.parse_args(argv)
    from test_numba_ptx import CONV_KERNELS, kernel_ptx
    print(f"{'kernel':44} regs spill  instr  FFMA  share  LDS  LDG  local")
    for name in CONV_KERNELS:
        r = profile(kernel_ptx(name), args.arch)
        print(f"{name:44} {r['registers']:4} {r['spills']:5} {r['instructions']:6} {r['FFMA']:5} "
              f"{r['share']:6.2f} {r['LDS']:4} {r['LDG']:4} {r['local']:6}")


if __name__ == "__main__":
    main()
