"""How many 128-byte lines and 32-byte sectors one warp's gathered-B copy reads, per benchmark row: the
memory side of a loader's thread map, counted on the CPU from the kernels' own index math
(benchmarks/gather_traffic.cpp, built with g++ against kernels/conv_index.cuh).

For every benchmarks/shapes.py conv row's forward and backward-data pass that runs the implicit GEMM
(not the small-channel kernels, nor with --fp32 Winograd), on the tile the launch heuristic picks (TF32
tiles, or --fp32), it
counts each 4-byte cp.async of a warp: R k rows x 32/R consecutive GEMM columns. GatherB, the kernels'
loader, takes R = 32*BK/threads consecutive k rows; the other columns are maps a loader could take
instead: one k row of 32 columns, two consecutive k rows of 16, the two k rows one mma.sync TF32 B
fragment pairs (k and k + 4) of 16, eight k rows of 4. A copy that touches L lines costs the L1 about L
wavefronts to fill shared memory (Nsight Compute counts the ones past the first as LDGSTS bank
conflicts); its sectors are what it moves from L2. Fewer of both for the same lanes is the better map.

    python benchmarks/gather_traffic.py [--fp32] [--rows resnet.c4 ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shapes import CONV_SHAPES  # noqa: E402

from fastconv.argcheck import conv_out_size  # noqa: E402
from fastconv.backends.cuda import config as cfg  # noqa: E402
from fastconv.backends.cuda import smallc_config as scfg  # noqa: E402
from fastconv.backends.cuda import winograd_config as wcfg  # noqa: E402
from fastconv.backends.cuda.autotune import gemm_dims  # noqa: E402
from fastconv.backends.cuda.loader import kernel_dir  # noqa: E402

HERE = Path(__file__).resolve().parent
PASSES = ("forward", "backward_data")
SMS = 132  # an H100's / H200's SMs: the tile the heuristic picks there
# (label, k rows per copy, their spacing); GatherB's own is the tile's (gatherb_rows)
MAPS = (("1x32", 1, 1), ("2x16", 2, 1), ("2x16 k,k+4", 2, 4), ("8x4", 8, 1))


def build(folder: Path) -> Path:
    """The gather_traffic executable, compiled into ``folder``."""
    exe = folder / "gather_traffic"
    subprocess.run([shutil.which("g++") or "g++", "-std=c++17", "-O2", "-I", str(kernel_dir()), "-o", str(exe),
                    str(HERE / "gather_traffic.cpp")], check=True, capture_output=True, text=True)
    return exe


def run(exe: Path, what: str, conv: tuple, bn: int, bk: int, rows: int, row_step: int) -> dict:
    """One pass's counts: conv = (N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G)."""
    out = subprocess.run([str(exe), what, *map(str, conv), str(bn), str(bk), str(rows), str(row_step)],
                         check=True, capture_output=True, text=True).stdout.split()
    copies, lanes, lines, sectors = map(int, out)
    return {"copies": copies, "lanes": lanes, "lines": lines, "sectors": sectors}


def gatherb_rows(bk: int, threads: int) -> int:
    """k rows per warp copy of GatherB (conv_loaders.cuh GatherTile): threads/BK threads per k row."""
    return 32 * bk // threads


def table(exe: Path, fp32: bool = False, rows=None) -> list[dict]:
    """Per row and pass: the heuristic's tile and each map's counts (GatherB's first)."""
    out = []
    for name, (n, c, h, w, k, r, s, st, pd) in CONV_SHAPES.items():
        if rows and not name.startswith(tuple(rows)):
            continue
        conv = (n, c, h, w, k, r, s, st, st, pd, pd, 1, 1, 1)
        for what in PASSES:
            p, q = conv_out_size(h, r, st, pd, 1), conv_out_size(w, s, st, pd, 1)
            smallc = (scfg.smallc_forward_tile(c, p, q, r, s, (st, st), (1, 1)) if what == "forward"
                      else scfg.smallc_backward_data_tile(k, h, w, r, s, (st, st), (1, 1)))
            if c * r * s <= scfg.SMALLC and smallc:   # the small-channel kernels (conv.py's rule): no gathered GEMM
                continue
            if fp32 and wcfg.use_winograd(None, False, what, r, s, (st, st), (1, 1), 1, c):
                continue                  # Winograd: its products' GEMM gathers a 1x1 convolution
            m, cols, red, z, _ = gemm_dims(what, n, c, h, w, k, r, s, (st, st), (pd, pd), (1, 1), 1)
            tile = cfg.conv_tile(m, cols, SMS, z, tf32=not fp32, red=red)
            _, bn, bk, threads, _ = cfg.tile_spec(tile, not fp32)
            maps = {"GatherB": (gatherb_rows(bk, threads), 1)} | {label: (rr, rs) for label, rr, rs in MAPS}
            out.append({"row": f"{name} {what}", "tile": tile, "maps": {
                label: dict(run(exe, what, conv, bn, bk, rr, rs), rows=rr)
                for label, (rr, rs) in maps.items() if bk % (rr * rs) == 0 and bn % (32 // rr) == 0}})
    return out


def print_table(rows: list[dict]) -> None:
    labels = ["GatherB"] + [label for label, _, _ in MAPS]
    print("gathered-B copies: 128-byte lines / 32-byte sectors per warp copy (GatherB: the kernels' map, its k rows"
          " per copy in brackets)")
    print(f"{'row':<28}{'tile':<16}" + "".join(f"{label:>14}" for label in labels))
    for r in rows:
        cells = []
        for label in labels:
            c = r["maps"].get(label)
            cells.append(f"{c['lines'] / c['copies']:>6.2f} /{c['sectors'] / c['copies']:>5.2f}" if c else f"{'-':>14}")
        g = r["maps"]["GatherB"]
        print(f"{r['row']:<28}{r['tile'] + ' [' + str(g['rows']) + ']':<16}" + "".join(cells))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32", action="store_true", help="the fp32 tiles' heuristic (default: TF32's)")
    ap.add_argument("--rows", nargs="+", default=None, metavar="PREFIX")
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args(argv)
    if args.rows and not any(name.startswith(tuple(args.rows)) for name in CONV_SHAPES):
        print(f"--rows: got {args.rows}, expected prefixes of {list(CONV_SHAPES)}", file=sys.stderr)
        return 2
    if shutil.which("g++") is None:
        print("gather_traffic: needs g++", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        rows = table(build(Path(tmp)), args.fp32, args.rows)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"fp32": args.fp32, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
