"""Where the time of one conv call goes: every launch the cupy family's launcher makes for a
benchmarks/shapes.py row (shape x pass), each replayed alone as a CUDA graph of --graph-calls launches
(kernel-only, benchmarks/timing.py), listed with its grid and block, beside the whole call's
kernel-only time. For multi-kernel paths (Winograd's transforms, products and output transform; the
weight packing and split-K reduce around a GEMM) it shows which launch to work on.

    python benchmarks/kernel_times.py [--rows lenet.conv2 "resnet.c4 backward_weight"] [--tile winograd]
                                      [--tf32 [--gather4]] [--reps 5] [--warmup 2] [--graph-calls 10] [--json FILE]
                                      [--once]

--once runs each row's call once and times nothing: the run a profiler (ncu) looks at. --gather4 turns
the tf32_vector_gather setting off: TF32 backward-weight gathers 4 bytes per copy from the NCHW tensors,
no channels-last copies (forward and backward-data always do).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conv_sweep import calls  # noqa: E402
from shapes import CONV_SHAPES  # noqa: E402
from timing import CupyGraph, EventClock, kernel_ms  # noqa: E402

import fastconv  # noqa: E402
from fastconv import plan_record  # noqa: E402


def launches(call):
    """The launches (fn, grid, block, args) one ``call()`` makes, as fastconv.plan records them."""
    plan_record._local.rec = rec = plan_record.Record()
    try:
        call()
    finally:
        plan_record._local.rec = None
    return rec.launches


def kernel_name(fn) -> str:
    from fastconv.backends.cuda import loader
    return next((key[1] for key, f in loader._functions.items() if f is fn), "?")


def kernel_times(cp, clock, call, args):
    """[(kernel name, grid, block, kernel-only ms)] of every launch of ``call``, then ("total", ...) of
    the whole call, each a graph of args.graph_calls repeats."""
    def timed(fn):
        graph = CupyGraph(cp, fn, args.graph_calls)
        try:
            return kernel_ms(clock, graph, args.reps, args.warmup, args.graph_calls)
        finally:
            del graph
    out = [(kernel_name(fn), grid, block, timed(lambda fn=fn, g=grid, b=block, a=a: fn(g, b, a)))
           for fn, grid, block, a in launches(call)]
    return out + [("total", None, None, timed(call))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=["lenet.conv2", "resnet.c4"], metavar="PREFIX",
                    help="rows whose 'shape pass' name starts with one of these")
    ap.add_argument("--tile", default=None, help="the conv_tile setting (e.g. winograd); default the heuristic's")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--graph-calls", type=int, default=10)
    ap.add_argument("--tf32", action="store_true", help="the tf32 setting on")
    ap.add_argument("--gather4", action="store_true", help="the tf32_vector_gather setting off")
    ap.add_argument("--once", action="store_true", help="call each row once, time nothing (for a profiler)")
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args(argv)
    from fastconv.backend import gpu_available
    if not gpu_available():
        print("kernel_times: no usable CUDA GPU (CuPy and a device are needed)", file=sys.stderr)
        return 2
    import cupy as cp
    clock, rng, rows = EventClock(cp), np.random.default_rng(0), []
    narrow = {"tf32_vector_gather": False} if args.gather4 else {}
    with fastconv.using(kernels="cupy", conv_tile=args.tile, tf32=args.tf32, **narrow):
        for name, shape in CONV_SHAPES.items():
            for ps, call in calls(cp, shape, rng).items():
                if not f"{name} {ps}".startswith(tuple(args.rows)):
                    continue
                if args.once:
                    call()
                    cp.cuda.Device().synchronize()
                    continue
                res = kernel_times(cp, clock, call, args)
                rows.append({"row": f"{name} {ps}", "tile": args.tile, "launches": [
                    {"kernel": k, "grid": g, "block": b, "ms": ms} for k, g, b, ms in res]})
                print(f"{name} {ps} (conv_tile {args.tile}, tf32 {args.tf32}, 4-byte gathers {args.gather4}):")
                for k, g, b, ms in res:
                    print(f"  {k:<44}{str(g or ''):>18}{str(b or ''):>8}{ms * 1000:>10.1f} us")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
