"""GPU conv table: fastconv's cupy-family conv kernels beside cuDNN (torch), per call and kernel-only,
fp32 (TF32 off on both sides) and TF32 (on on both sides).

For every benchmarks/shapes.py conv shape x pass (18 rows) it first validates fastconv against torch
in float64 on the GPU (fp32: relative L2 <= fastconv.testing.REDUCTION_TOL; TF32: elementwise within
fastconv.testing.tf32_bound(reduction length) x the same pass on |operands|); a failed row is
marked and makes the exit status 1. Then it times, as medians over --reps:

- per call: CUDA events around one Python call (launch and host overhead included);
- kernel-only: a CUDA graph of --graph-calls back-to-back calls (cupy stream capture for fastconv,
  torch.cuda.graph for cuDNN), replayed, divided by the calls;

both with benchmarks/timing.py, as benchmarks/gpu_table.py does.

cuDNN runs with torch.backends.cudnn.benchmark = True (its best algorithm per shape); the GPU kernels
of one cuDNN call are recorded per row and precision (torch.profiler; "cudnn kernels" in the JSON,
listed under the table), so a row shows which algorithm it is measured against (implicit GEMM,
FFT, Winograd). The table gives
ms per call and the ratio cuDNN time / fastconv time (> 1: fastconv faster), and the geometric means
over the 18 rows, with the lenet and dcgan rows' minimum for the fp32 kernel-only ratio.

With --picks SWEEP.json (benchmarks/conv_sweep.py's output), every row where the sweep found a forced
tile / split count faster than the heuristic's (conv_sweep.picks) is also validated and timed kernel-only
under that configuration, in the same run: the table adds "picked" ratios and the geometric means with
the picks, i.e. what a retuned heuristic would give.

Every row is also run with the autotune setting on (fastconv.backends.cuda.autotune: the first call
times the candidates on this card and keeps the fastest, as cuDNN's benchmark mode does), validated
and timed kernel-only in the same run: the "tuned" columns, the pick per row and the geometric means
with it.

The TF32 backward-weight rows are also validated and timed kernel-only with the tf32_vector_gather
setting off (4-byte gathers from the NCHW tensors instead of the default's 16-byte ones from
channels-last copies), in the same run: the "4-byte" column and geometric mean show what that gives
against the default. Forward and backward-data gather 4 bytes per copy either way: their column
repeats the default's ratio.

    python benchmarks/conv_table.py [--reps 30] [--warmup 5] [--graph-calls 20] [--json out.json] [--picks sweep.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timing  # noqa: E402
from shapes import CONV_SHAPES, conv_operands  # noqa: E402

import fastconv  # noqa: E402
from fastconv import ops  # noqa: E402
from fastconv.testing import REDUCTION_TOL, rel_error, tf32_bound  # noqa: E402


def problem(cp, torch, shape, rng):
    """Inputs of one shape and, per pass: fastconv call (precision), torch call, float64 reference,
    float64 reference on |operands| and reduction length."""
    import torch.nn.functional as F
    n, c, h, w, k, r, s, st, pd = shape
    x, wt, b, dy, tx, tw, tb, tdy = conv_operands(cp, torch, shape, rng)
    p, q = tdy.shape[2], tdy.shape[3]
    d = {name: torch.from_dlpack(a).double() for name, a in (("x", x), ("w", wt), ("b", b), ("dy", dy))}
    a = {name: t.abs() for name, t in d.items()}
    grad = torch.nn.grad
    return {
        "forward": (lambda prec: ops.conv2d_forward(x, wt, b, st, pd, precision=prec),
                    lambda: F.conv2d(tx, tw, tb, st, pd),
                    lambda: F.conv2d(d["x"], d["w"], d["b"], st, pd),
                    lambda: F.conv2d(a["x"], a["w"], None, st, pd), c * r * s),
        "backward_data": (lambda prec: ops.conv2d_backward_data(dy, wt, x.shape, st, pd, precision=prec),
                          lambda: grad.conv2d_input(tx.shape, tw, tdy, st, pd),
                          lambda: grad.conv2d_input(d["x"].shape, d["w"], d["dy"], st, pd),
                          lambda: grad.conv2d_input(a["x"].shape, a["w"], a["dy"], st, pd), k * r * s),
        "backward_weight": (lambda prec: ops.conv2d_backward_weight(dy, x, wt.shape, st, pd, precision=prec),
                            lambda: grad.conv2d_weight(tx, tw.shape, tdy, st, pd),
                            lambda: grad.conv2d_weight(d["x"], d["w"].shape, d["dy"], st, pd),
                            lambda: grad.conv2d_weight(a["x"], a["w"].shape, a["dy"], st, pd), n * p * q),
    }


def valid(cp, out, ref, mag, prec, terms):
    """(ok, error): fp32 relative L2 error, TF32 worst elementwise error / its bound."""
    if prec == "fp32":
        err = rel_error(out, ref)
        return err <= REDUCTION_TOL, err  # weight gradients sum 1e5 products
    o, r, m = cp.asarray(out, dtype=np.float64), cp.asarray(ref), cp.asarray(mag)
    if not bool(cp.isfinite(o).all()):
        return False, float("inf")
    ratio = float((cp.abs(o - r) / (tf32_bound(terms) * m + 1e-30)).max())
    return ratio <= 1.0, ratio


def kernel_names(events) -> list[str]:
    """Names of the GPU activities (kernels, memsets, copies) among torch.profiler ``events``, in
    their order."""
    from torch.autograd import DeviceType
    return [e.name for e in events if e.device_type == DeviceType.CUDA]


def cudnn_kernels(torch, fn) -> list[str]:
    """The GPU kernels one call of ``fn`` runs (after the timing: cuDNN's chosen algorithm)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return kernel_names(prof.events())


def run(args, picked=None):
    import cupy as cp
    import torch

    from fastconv.backends.cuda import autotune
    torch.backends.cudnn.benchmark = True
    clock = timing.EventClock(cp)

    def per_call(fn):
        return timing.median_ms(clock, fn, args.reps, args.warmup)

    def kernel_only(graph):
        return timing.kernel_ms(clock, graph, args.reps, args.warmup, args.graph_calls)

    rng = np.random.default_rng(0)
    rows, bad = [], 0
    for name, shape in CONV_SHAPES.items():
        for ps, (fc, tc, ref64, mag64, terms) in problem(cp, torch, shape, rng).items():
            ref, mag = cp.from_dlpack(ref64()), cp.from_dlpack(mag64())
            row = {"row": f"{name} {ps}"}
            for prec in ("fp32", "tf32"):
                torch.backends.cudnn.allow_tf32 = prec == "tf32"
                ok, err = valid(cp, fc(prec), ref, mag, prec, terms)
                bad += not ok
                row[f"{prec} error"] = err
                row[f"{prec} ok"] = ok
                if not ok:
                    continue
                call = (lambda f=fc, p=prec: f(p))
                row[f"{prec} call ms"] = per_call(call)
                row[f"{prec} kernel ms"] = kernel_only(timing.CupyGraph(cp, call, args.graph_calls))
                row[f"{prec} cudnn call ms"] = per_call(tc)
                row[f"{prec} cudnn kernel ms"] = kernel_only(timing.TorchGraph(torch, tc, args.graph_calls))
                row[f"{prec} cudnn kernels"] = cudnn_kernels(torch, tc)

                def variant(label, **changes):
                    """fastconv validated and timed kernel-only again under ``changes`` ("{prec} {label} ...")."""
                    nonlocal bad
                    with fastconv.using(**changes):
                        ok, row[f"{prec} {label} error"] = valid(cp, fc(prec), ref, mag, prec, terms)
                        bad += not ok
                        if ok:
                            row[f"{prec} {label} kernel ms"] = kernel_only(timing.CupyGraph(cp, call, args.graph_calls))
                if prec == "tf32" and ps == "backward_weight" and fastconv.settings.current().tf32_vector_gather:
                    variant("4-byte", tf32_vector_gather=False)   # the one pass the setting changes
                tuned = autotune.results()
                variant("tuned", autotune=True)
                row[f"{prec} tuned pick"] = [t.pick for k, t in autotune.results().items() if k not in tuned]
                pick = (picked or {}).get(f"{row['row']} {prec}")
                if pick:
                    row[f"{prec} picked"] = pick
                    variant("picked", **pick)
            rows.append(row)
    torch.backends.cudnn.allow_tf32 = False
    return rows, bad


def ratio(row, prec, kind, picked=False, gather=None, tuned=False):
    """cuDNN time / fastconv time; ``picked``: fastconv's with the row's picked configuration where it
    has a valid one; ``gather`` ("4-byte"): with the tf32_vector_gather setting off, where the row
    timed it; ``tuned``: with the autotune setting on."""
    t, c = row.get(f"{prec} {kind} ms"), row.get(f"{prec} cudnn {kind} ms")
    t = row.get(f"{prec} picked {kind} ms", t) if picked else t
    t = row.get(f"{prec} tuned {kind} ms") if tuned else t
    t = row.get(f"{prec} {gather} {kind} ms", t) if gather else t
    return c / t if t and c else float("nan")


def print_table(rows, device):
    print(f"conv, fastconv (cupy family) vs cuDNN, ms per call; ratio = cuDNN / fastconv; {device}")
    head = f"{'row':<28}" + "".join(f"{h:>11}" for h in ("fp32 call", "cudnn", "ratio", "fp32 kern", "cudnn",
                                                         "ratio", "tf32 kern", "cudnn", "ratio", "4-byte"))
    print(head)
    for r in rows:
        cells = []
        for prec, kind in (("fp32", "call"), ("fp32", "kernel"), ("tf32", "kernel")):
            if not r[f"{prec} ok"]:
                cells += [f"{'INVALID':>11}", f"{r[prec + ' error']:>11.2e}", f"{'':>11}"]
                continue
            cells += [f"{r[f'{prec} {kind} ms']:>11.4f}", f"{r[f'{prec} cudnn {kind} ms']:>11.4f}",
                      f"{ratio(r, prec, kind):>11.2f}"]
        # the default's ratio where the row did not time it
        cells.append(f"{ratio(r, 'tf32', 'kernel', gather='4-byte'):>11.2f}" if r["tf32 ok"] else f"{'-':>11}")
        print(f"{r['row']:<28}" + "".join(cells))
    fp32 = [ratio(r, "fp32", "kernel") for r in rows]
    small = [ratio(r, "fp32", "kernel") for r in rows if r["row"].startswith(("lenet", "dcgan"))]
    print(f"geometric mean cuDNN/fastconv over {len(rows)} rows: fp32 per call "
          f"{timing.geomean(ratio(r, 'fp32', 'call') for r in rows):.2f}, fp32 kernel-only {timing.geomean(fp32):.2f} "
          f"(target >= 0.85; lenet/dcgan minimum {min(small, default=float('nan')):.2f}, target >= 1.0), "
          f"TF32 kernel-only {timing.geomean(ratio(r, 'tf32', 'kernel') for r in rows):.2f} (target >= 1.0; "
          f"with 4-byte gathers: {timing.geomean(ratio(r, 'tf32', 'kernel', gather='4-byte') for r in rows):.2f})")
    print("with the autotune setting (kernel-only ratio, default -> tuned, the pick of each pass it ran):")
    for r in rows:
        for p in ("fp32", "tf32"):
            if f"{p} tuned pick" in r:
                print(f"  {r['row']:<28}{p}  {ratio(r, p, 'kernel'):.2f} -> {ratio(r, p, 'kernel', tuned=True):.2f}  "
                      f"{r[f'{p} tuned pick']}")
    tuned = {p: [ratio(r, p, "kernel", tuned=True) for r in rows] for p in ("fp32", "tf32")}
    small = [t for r, t in zip(rows, tuned["fp32"]) if r["row"].startswith(("lenet", "dcgan"))]
    print(f"geometric means tuned: fp32 kernel-only {timing.geomean(tuned['fp32']):.2f} (lenet/dcgan minimum "
          f"{min(small, default=float('nan')):.2f}), TF32 kernel-only {timing.geomean(tuned['tf32']):.2f}")
    if any(f"{p} picked" in r for r in rows for p in ("fp32", "tf32")):
        print("with the sweep's picks (kernel-only ratio, default -> picked, configuration):")
        for r in rows:
            for p in ("fp32", "tf32"):
                if f"{p} picked" in r:
                    got = f"{ratio(r, p, 'kernel', True):.2f}" if f"{p} picked kernel ms" in r else "INVALID"
                    print(f"  {r['row']:<28}{p}  {ratio(r, p, 'kernel'):.2f} -> {got}  {r[f'{p} picked']}")
        small = [ratio(r, "fp32", "kernel", True) for r in rows if r["row"].startswith(("lenet", "dcgan"))]
        print(f"geometric means with the picks: fp32 kernel-only "
              f"{timing.geomean(ratio(r, 'fp32', 'kernel', True) for r in rows):.2f} (lenet/dcgan minimum "
              f"{min(small, default=float('nan')):.2f}), TF32 kernel-only "
              f"{timing.geomean(ratio(r, 'tf32', 'kernel', True) for r in rows):.2f}")
    print("cuDNN's kernels per call (fp32 | tf32):")
    for r in rows:
        names = [", ".join(short(k) for k in r.get(f"{prec} cudnn kernels", [])) or "-" for prec in ("fp32", "tf32")]
        print(f"  {r['row']:<28}{names[0]} | {names[1]}")


def short(name: str, width: int = 90) -> str:
    """A kernel name without its template arguments / parameter list, at most ``width`` characters."""
    base = name.split("(")[0].split("<")[0].strip()
    return base if len(base) <= width else base[:width - 3] + "..."


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--graph-calls", type=int, default=20)
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--picks", default=None, metavar="SWEEP_JSON",
                    help="also time each row's fastest swept configuration (conv_sweep.py --json output)")
    args = ap.parse_args(argv)
    picked = None
    if args.picks:
        from conv_sweep import picks
        try:
            picked = picks(json.loads(Path(args.picks).read_text())["rows"])
        except (OSError, ValueError, KeyError) as e:
            print(f"conv_table: --picks {args.picks}: no sweep to pick from ({type(e).__name__}); default rows only",
                  file=sys.stderr)
    from fastconv.backend import gpu_available
    if not gpu_available():
        print("conv_table: no usable CUDA GPU (CuPy and a device are needed)", file=sys.stderr)
        return 2
    import cupy as cp
    device = timing.card_name(cp)
    with fastconv.using(kernels="cupy"):
        rows, bad = run(args, picked)
    print_table(rows, device)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "rows": rows}, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
