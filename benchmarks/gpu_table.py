"""GPU ratio table: fastconv kernel families beside cuDNN (torch, fp32, TF32 off), per call and kernel-only.

Every fastconv result is validated against a float64 or PyTorch reference before it is timed
(relative L2 error; a mismatch is printed in the table and makes the exit status 1). Every row is
timed two ways on both sides (benchmarks/timing.py): per call (CUDA events around one Python call,
host overhead included) and kernel-only (a CUDA graph of 20 back-to-back calls, replayed; CuPy
stream capture for fastconv, torch.cuda.graphs for cuDNN/PyTorch). The targets are on kernel-only
times. Prints, for the benchmarks/shapes.py conv shapes x 3 passes (+ the bias gradient): both
times of each family and of cuDNN and cuDNN/fastconv-cupy; every conv tile forced (kernel-only);
the bandwidth rows of benchmarks/gpu_bandwidth.py (activations, 2x2 pooling, batchnorm, the bias
gradient on 256x64x56x56) in GB/s beside PyTorch and the device copy, and each pooling row again
with every kernel of the CUDA C family forced (pool_variant; family column "cupy:<variant>").
--bandwidth-only skips the conv rows. Writes everything to one JSON file stamped with card, driver
and commit (--json). Whole training steps and epochs are benchmarks/bench_step.py's.

    python benchmarks/gpu_table.py [--reps 30] [--warmup 5] [--skip-tiles] [--bandwidth-only] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpu_bandwidth  # noqa: E402
import timing  # noqa: E402
from shapes import BANDWIDTH_SHAPE, CONV_SHAPES, conv_operands  # noqa: E402

import fastconv  # noqa: E402
from fastconv import ops  # noqa: E402
from fastconv.testing import REDUCTION_TOL, rel_error  # noqa: E402

# fastconv (fp32) is validated against torch run in float64 on the GPU at REDUCTION_TOL, since the
# weight gradients sum up to 2e5 products. (cuDNN's own fp32 results are not the oracle: with
# benchmark=True it may pick FFT/Winograd algorithms that are off by ~1e-3.)


class Bench:
    """The clock, the two graph makers and the repetition counts of one run."""

    def __init__(self, cp, torch, reps, warmup):
        self.cp, self.torch, self.reps, self.warmup = cp, torch, reps, warmup
        self.clock = timing.EventClock(cp)

    def per_call(self, fn):
        return timing.median_ms(self.clock, fn, self.reps, self.warmup)

    def fastconv(self, fn):
        return timing.time_both(self.clock, lambda f: timing.CupyGraph(self.cp, f), fn, self.reps, self.warmup)

    def torch_side(self, fn):
        return timing.time_both(self.clock, lambda f: timing.TorchGraph(self.torch, f), fn, self.reps, self.warmup)


def _k(t):
    """Kernel-only ms of a Timing, else its per-call ms (marked by the caller)."""
    return t.kernel_ms if t.kernel_ms is not None else t.per_call_ms


def families():
    from fastconv.check import families as f
    return f()


def conv_rows(bench, fams, tiles_too):
    """(shape, pass, {family: (Timing, ok, err)}, cuDNN Timing, {tile: (kernel ms, ok)}) rows."""
    import torch.nn.functional as F
    torch, cp = bench.torch, bench.cp
    rows, bad = [], 0
    rng = np.random.default_rng(0)
    for name, shape in CONV_SHAPES.items():
        st, pd = shape[7:]
        x, wt, b, dy, tx, tw, tb, tdy = conv_operands(cp, torch, shape, rng)
        passes = {
            "forward": (lambda fam: ops.conv2d_forward(x, wt, b, st, pd, kernels=fam),
                        lambda: F.conv2d(tx, tw, tb, st, pd)),
            "backward_data": (lambda fam: ops.conv2d_backward_data(dy, wt, x.shape, st, pd, kernels=fam),
                              lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tdy, st, pd)),
            "backward_weight": (lambda fam: ops.conv2d_backward_weight(dy, x, wt.shape, st, pd, kernels=fam),
                                lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tdy, st, pd)),
            "backward_bias": (lambda fam: ops.conv2d_backward_bias(dy, kernels=fam), lambda: tdy.sum((0, 2, 3))),
        }
        dx_, dw_, db_, ddy = (torch.from_dlpack(a).double() for a in (x, wt, b, dy))
        refs = {"forward": lambda: F.conv2d(dx_, dw_, db_, st, pd),
                "backward_data": lambda: torch.nn.grad.conv2d_input(dx_.shape, dw_, ddy, st, pd),
                "backward_weight": lambda: torch.nn.grad.conv2d_weight(dx_, dw_.shape, ddy, st, pd),
                "backward_bias": lambda: ddy.sum((0, 2, 3))}
        from fastconv.backends.cuda import config as cuda_config
        for ps, (fc, tc) in passes.items():
            ref = cp.from_dlpack(refs[ps]())
            t_ref = bench.torch_side(tc)
            res = {}
            for fam in fams:
                err = rel_error(fc(fam), ref)
                ok = err <= REDUCTION_TOL
                bad += not ok
                res[fam] = (bench.fastconv(lambda: fc(fam)), ok, err)
            tiles = {}
            for tile in cuda_config.CONV_TILES if tiles_too and ps != "backward_bias" else ():
                with fastconv.using(conv_tile=tile):  # every tile forced, for tuning the heuristic
                    ok = rel_error(fc("cupy"), ref) <= REDUCTION_TOL
                    bad += not ok
                    tiles[tile] = (_k(bench.fastconv(lambda: fc("cupy"))), ok)
            rows.append((name, ps, res, t_ref, tiles))
    return rows, bad


def bandwidth_rows(bench, fams):
    """(case name, family, bytes, fastconv Timing, torch Timing, ok) rows, the copy first (on its
    row "fastconv" is cudaMemcpy D2D and "torch" a tensor clone), then the write-only fill (CuPy's
    fill and torch's fill_); after a pooling case's family rows, one per forced pool_variant of the
    cupy family (family "cupy:<variant>")."""
    torch, cp = bench.torch, bench.cp
    rng = np.random.default_rng(1)
    nbytes, memcpy, clone, check = gpu_bandwidth.copy_case(cp, torch, rng)
    ok = check()
    rows, bad = [("copy (ceiling)", "-", nbytes, bench.fastconv(memcpy), bench.torch_side(clone), ok)], int(not ok)
    nbytes, fill, torch_fill, check = gpu_bandwidth.fill_case(cp, torch)
    ok = check()
    rows.append(("fill (write-only)", "-", nbytes, bench.fastconv(fill), bench.torch_side(torch_fill), ok))
    bad += not ok
    for case in gpu_bandwidth.cases(cp, torch, rng):
        ref = cp.from_dlpack(case.reference() if case.reference else case.torch())
        t_torch = bench.torch_side(case.torch)
        for fam in fams:
            ok = rel_error(case.fastconv(fam), ref) <= REDUCTION_TOL
            bad += not ok
            rows.append((case.name, fam, case.nbytes, bench.fastconv(lambda: case.fastconv(fam)), t_torch, ok))
        for variant in case.variants if "cupy" in fams else ():
            with fastconv.using(pool_variant=variant):  # every pooling kernel forced, for the launcher's rule
                ok = rel_error(case.fastconv("cupy"), ref) <= REDUCTION_TOL
                bad += not ok
                rows.append((case.name, f"cupy:{variant}", case.nbytes, bench.fastconv(lambda: case.fastconv("cupy")),
                             t_torch, ok))
    return rows, bad


def _ms(t):
    return f"{t.per_call_ms:.4f}/" + (f"{t.kernel_ms:.4f}" if t.kernel_ms is not None else "-")


def print_conv(rows, results, fams):
    print(f"\n{'shape':<13}{'pass':<17}" + "".join(f"{'fc-' + f + ' ms':>22}" for f in fams)
          + f"{'cuDNN ms':>22}{'cuDNN/cupy':>12}  check    (ms: per call / kernel-only)")
    ratios = {"per_call": [], "kernel": []}
    numba = []  # numba family speed / cupy family speed (kernel-only) of the 18 conv rows
    for name, ps, res, t_ref, tiles in rows:
        cells = "".join(f"{_ms(res[f][0]):>22}" for f in fams)
        ratio_k = _k(t_ref) / _k(res["cupy"][0])
        ratio_c = t_ref.per_call_ms / res["cupy"][0].per_call_ms
        if ps != "backward_bias":  # the targets' 18 conv rows
            ratios["kernel"].append(ratio_k)
            ratios["per_call"].append(ratio_c)
            if "numba" in res:
                numba.append(_k(res["cupy"][0]) / _k(res["numba"][0]))
        status = "ok" if all(v[1] for v in res.values()) else \
            "MISMATCH " + " ".join(f"{f}:{v[2]:.1e}" for f, v in res.items() if not v[1])
        notes = " ".join(t.note for t in [t_ref] + [v[0] for v in res.values()] if t.note)
        print(f"{name:<13}{ps:<17}{cells}{_ms(t_ref):>22}{ratio_k:>12.3f}  {status} {notes}")
        results.add("conv", shape=name, pass_name=ps, cudnn=t_ref, ratio_kernel=ratio_k, ratio_per_call=ratio_c,
                    **{f"fastconv_{f}": res[f][0] for f in fams}, ok=all(v[1] for v in res.values()),
                    tiles={t: v[0] for t, v in tiles.items()})
    for kind, rs in ratios.items():
        gm = timing.geomean(rs)
        print(f"geometric mean cuDNN/fastconv-cupy over {len(rs)} conv rows, {kind}: {gm:.3f}"
              + (" (target >= 0.85)" if kind == "kernel" else ""))
        results.add("conv_geomean", kind=kind, rows=len(rs), value=gm)
    if numba:
        gm = timing.geomean(numba)
        print(f"geometric mean fastconv-numba speed / fastconv-cupy speed over {len(numba)} conv rows, kernel: "
              f"{gm:.3f} (target >= 0.6)")
        results.add("conv_geomean", kind="numba/cupy kernel", rows=len(numba), value=gm)
    if any(r[4] for r in rows):
        tnames = list(next(r[4] for r in rows if r[4]))
        print(f"\n{'tile forced (cupy), kernel-only':<32}" + "".join(f"{t + ' ms':>14}" for t in tnames))
        for name, ps, _, _, tiles in rows:
            if tiles:
                print(f"{name + ' ' + ps:<32}" + "".join(f"{tiles[t][0]:>14.4f}" + ("" if tiles[t][1] else "!")
                                                         for t in tnames))


def print_bandwidth(rows, results):
    copy = rows[0]
    copy_gbs = copy[2] / min(_k(copy[3]), _k(copy[4])) / 1e6  # the faster device copy is the ceiling
    print(f"\n{'op ' + 'x'.join(map(str, BANDWIDTH_SHAPE)):<30}{'family':<13}{'fc ms':>18}{'fc GB/s':>9}"
          f"{'torch ms':>18}{'torch GB/s':>11}{'fc/copy':>9}  check    (ms: per call / kernel-only; GB/s and "
          "fc/copy on kernel-only)")
    for name, fam, nbytes, t_fc, t_tc, ok in rows:
        gbs, tgbs = nbytes / _k(t_fc) / 1e6, nbytes / _k(t_tc) / 1e6
        notes = " ".join(t.note for t in (t_fc, t_tc) if t.note)
        print(f"{name:<30}{fam:<13}{_ms(t_fc):>18}{gbs:>9.0f}{_ms(t_tc):>18}{tgbs:>11.0f}{gbs / copy_gbs:>9.2f}  "
              f"{'ok' if ok else 'MISMATCH'} {notes}")
        results.add("bandwidth", op=name, family=fam, bytes=nbytes, fastconv=t_fc, torch=t_tc, gbs=gbs,
                    torch_gbs=tgbs, of_copy=gbs / copy_gbs, ok=ok)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--skip-tiles", action="store_true", help="skip timing every conv tile forced")
    ap.add_argument("--bandwidth-only", action="store_true", help="skip the conv rows")
    ap.add_argument("--json", default=str(Path(os.environ.get("OUT", ".")) / "gpu_table.json"),
                    help="results file, stamped with card, driver and commit (default $OUT/gpu_table.json)")
    args = ap.parse_args(argv)
    import cupy as cp
    import torch
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    card = timing.card_name(cp)
    fams = families()
    bench = Bench(cp, torch, args.reps, args.warmup)
    results = timing.stamp(card, cp.cuda.runtime.driverGetVersion(), Path(__file__).resolve().parents[1],
                           {"reps": args.reps, "warmup": args.warmup, "graph_calls": timing.CALLS, "families": fams,
                            "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "tf32": False})
    print(f"card: {card}; driver {results.driver}; commit {results.commit}; torch {torch.__version__} cuDNN "
          f"{torch.backends.cudnn.version()} (TF32 off); families: {', '.join(fams)}; median of {args.reps} after "
          f"{args.warmup} warm-up calls (kernel-only: graphs of {timing.CALLS} calls)")
    bad = 0
    if not args.bandwidth_only:
        rows, bad = conv_rows(bench, fams, not args.skip_tiles)
        print_conv(rows, results, fams)
    brow, bbad = bandwidth_rows(bench, fams)
    bad += bbad
    print_bandwidth(brow, results)
    results.add("summary", validation_failures=bad)
    print(f"\n{bad} validation failures; results in {results.write(args.json)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
