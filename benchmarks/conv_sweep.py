"""Tile x split-K sweep of the cupy family's conv core on a GPU, to tune config.conv_tile and
config.conv_splits from measurements.

For every benchmarks/shapes.py conv shape x pass, fp32 and TF32, it times the launch heuristic's
choice ("auto": also the small-channel kernels where they apply) and every forced tile
(fastconv.using(conv_tile=...)) x split count (conv_splits=...), kernel-only: a CUDA graph of
--graph-calls back-to-back calls, replayed (benchmarks/timing.py). Each forced configuration is first
checked against the heuristic's output (relative L2 error <= 1e-4 for fp32, 2e-2 for TF32); a
configuration that fails is recorded and not timed. Prints per row the heuristic's time, the best
configuration and its time; writes every measurement to --json. Rows of shapes that the Winograd
kernels serve (3x3 / 5x5, stride 1: every pass) also time conv_tile "winograd" with its products' GEMM
split the launcher's way and WINOGRAD_SPLITS ways on the heuristic's products tile, and on every other
tile (the winograd_tile setting) split the launcher's way and PRODUCT_SPLITS ways.

    python benchmarks/conv_sweep.py [--reps 5] [--warmup 2] [--graph-calls 10] [--budget-s 120] [--json FILE]
                                    [--precisions fp32 tf32] [--rows lenet.conv1 "dcgan.d2 backward_data" "* tf32"]
                                    [--tiles winograd t64x64]

A row is named "shape pass precision" ("lenet.conv2 backward_weight fp32"); each --rows pattern selects
the rows it matches as a prefix or a shell pattern, and rows run in the order of the patterns (each
pattern's rows in shapes.py order), until --budget-s seconds have passed (the rest are listed as
skipped). picks() turns a sweep into the configuration to force per row, for conv_table.py --picks.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shapes import CONV_SHAPES, conv_arrays  # noqa: E402
from timing import CupyGraph, EventClock, kernel_ms  # noqa: E402

import fastconv  # noqa: E402
from fastconv import ops  # noqa: E402
from fastconv.backends.cuda import autotune, config as cfg, winograd_config as wcfg  # noqa: E402
from fastconv.testing import REDUCTION_TOL, rel_error  # noqa: E402

SPLITS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
WINOGRAD_SPLITS = (None, 1, 2, 4, 8, 16, 32, 64)
PRODUCT_SPLITS = (None, 4, 16)   # with a forced products tile (winograd_tile)
WAVE_SPLIT_WAVES = 3             # configs(): also the split counts that fill 1..3 whole waves (autotune.wave_splits)
TOL = {"fp32": REDUCTION_TOL, "tf32": 2e-2}
PASSES = autotune.PASSES
MIN_GAIN = 0.03  # picks(): a forced configuration replaces the heuristic's when at least this much faster


def row_order(patterns, precisions):
    """(shape name, pass, precision) of every row the ``patterns`` select (all rows when None), in the
    patterns' order, each row once."""
    rows = [(n, ps, prec) for n in CONV_SHAPES for ps in PASSES for prec in precisions]
    out = []
    for pat in patterns or ["*"]:
        out += [r for r in rows if r not in out and (" ".join(r).startswith(pat) or fnmatch.fnmatchcase(" ".join(r), pat))]
    return out


def settings_of(config):
    """The fastconv.using() settings of one swept configuration (a sweep record or configs() entry):
    conv_tile, conv_splits and, for Winograd with a forced products tile, winograd_tile."""
    tile, splits, *products = config
    out = {"conv_tile": None if tile == "auto" else tile, "conv_splits": None if splits == "auto" else splits}
    if products and products[0] not in (None, "auto"):
        out["winograd_tile"] = products[0]
    return out


def picks(sweep_rows, min_gain=MIN_GAIN):
    """{"shape pass precision": settings_of(fastest)} for every swept row whose fastest forced
    configuration beats the heuristic's by at least ``min_gain``."""
    out = {}
    for row in sweep_rows:
        timed = [c for c in row["configs"] if "ms" in c]
        auto = next((c["ms"] for c in timed if c["tile"] == "auto"), None)
        best = min(timed, key=lambda c: c["ms"], default=None)
        if auto and best and best["tile"] != "auto" and best["ms"] <= auto * (1 - min_gain):
            out[f"{row['row']} {row['precision']}"] = settings_of(
                (best["tile"], best["splits"]) + ((best["products"],) if "products" in best else ()))
    return out


def calls(cp, shape, rng):
    """The three passes of one shape as argument-less calls (operands: shapes.conv_arrays)."""
    x, wt, b, dy = conv_arrays(cp, shape, rng)
    st, pd = shape[7:]
    return {"forward": lambda: ops.conv2d_forward(x, wt, b, st, pd),
            "backward_data": lambda: ops.conv2d_backward_data(dy, wt, x.shape, st, pd),
            "backward_weight": lambda: ops.conv2d_backward_weight(dy, x, wt.shape, st, pd)}


def gemm_dims(shape, ps):
    """(m, n, reduction, z, output elements) of one pass's implicit GEMM (the v3 core's view)."""
    n, c, h, w, k, r, s, st, pd = shape
    return autotune.gemm_dims(ps, n, c, h, w, k, r, s, (st, st), (pd, pd), (1, 1), 1)


def configs(prec, dims=None, num_sms=132, winograd=False):
    """(tile, splits) pairs: the heuristic first, then every forced tile x split count that is worth
    timing for a GEMM of ``dims`` (gemm_dims; SPLITS and, with dims, the tile's wave_splits, in
    increasing order): at most 4 waves of blocks, slices of >= 8 reduction
    elements, a split-K workspace of at most 1 GiB; with ``winograd`` then "winograd" x WINOGRAD_SPLITS,
    then (WINOGRAD, splits, products tile) for every other tile x PRODUCT_SPLITS."""
    tiles = cfg.TF32_TILES if prec == "tf32" else tuple(cfg.CONV_TILES)
    out = [(None, None)]
    for t in tiles:
        splits = SPLITS
        if dims is not None:
            m, n, red, z, elems = dims
            gx, gy, _ = cfg.conv_grid(m, n, t, z)
            blocks, wave = gx * gy * z, num_sms * cfg.tile_spec(t, prec == "tf32")[4]
            splits = sorted(set(SPLITS) | set(autotune.wave_splits(blocks, wave, WAVE_SPLIT_WAVES)))
        for s in splits:
            if dims is not None and s > 1:
                if blocks * s > 4 * wave or red < 8 * s or s * elems * 4 > 1 << 30:
                    continue
            out.append((t, s))
    if not winograd:
        return out
    return (out + [(cfg.WINOGRAD, s) for s in WINOGRAD_SPLITS]
            + [(cfg.WINOGRAD, s, t) for t in cfg.CONV_TILES for s in PRODUCT_SPLITS])


def time_config(cp, clock, fn, args):
    graph = CupyGraph(cp, fn, args.graph_calls)
    try:
        return kernel_ms(clock, graph, args.reps, args.warmup, args.graph_calls)
    finally:
        del graph


def sweep_row(cp, clock, fn, prec, args, dims=None, num_sms=132, winograd=False):
    """Every configuration of one row (configs(prec, dims, num_sms, winograd); with args.tiles only the
    heuristic's and those tiles'): list of dicts (tile, splits, error, and ms when the output was right;
    or why the launcher refused it)."""
    out = []
    only = getattr(args, "tiles", None)
    with fastconv.using(tf32=prec == "tf32"):
        want = cp.asnumpy(fn()).astype(np.float64)
        for config in configs(prec, dims, num_sms, winograd):
            tile, splits, *products = config
            if only and tile is not None and tile not in only:
                continue
            rec = {"tile": tile or "auto", "splits": splits or "auto"}
            rec.update({"products": products[0]} if products else {})
            try:
                with fastconv.using(**settings_of(config)):
                    got = cp.asnumpy(fn())
                    err = rel_error(got, want) if np.isfinite(got).all() else float("inf")
                    rec["error"] = err
                    if err <= TOL[prec]:
                        rec["ms"] = time_config(cp, clock, fn, args)
            except Exception as e:  # a configuration the launcher refuses (e.g. grid limits): record why
                rec["refused"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            out.append(rec)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--graph-calls", type=int, default=10)
    ap.add_argument("--budget-s", type=float, default=120.0, help="stop starting new rows after this long")
    ap.add_argument("--precisions", nargs="+", choices=("fp32", "tf32"), default=["fp32", "tf32"])
    ap.add_argument("--rows", nargs="+", default=None, metavar="PREFIX",
                    help="rows whose 'shape pass precision' name starts with or matches one of these, in this order")
    ap.add_argument("--tiles", nargs="+", default=None, metavar="TILE",
                    help="time only these forced tiles beside the heuristic ('winograd' among them to time it)")
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args(argv)
    from fastconv.backend import gpu_available
    if not gpu_available():
        print("conv_sweep: no usable CUDA GPU (CuPy and a device are needed)", file=sys.stderr)
        return 2
    import cupy as cp
    from fastconv.backends.cuda.launch import num_sms
    clock, rng, t0 = EventClock(cp), np.random.default_rng(0), time.perf_counter()
    rows, skipped = [], []

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": rows, "skipped": skipped}, indent=1))

    arrays = {}  # shape name -> its three calls, made when its first row runs
    with fastconv.using(kernels="cupy"):
        for name, ps, prec in row_order(args.rows, args.precisions):
            if time.perf_counter() - t0 > args.budget_s:
                skipped.append(f"{name} {ps} {prec}")
                continue
            if name not in arrays:
                arrays[name] = calls(cp, CONV_SHAPES[name], rng)
            shape, fn = CONV_SHAPES[name], arrays[name][ps]
            n, c, h, w, k, r, s, st, pd = shape
            wino = wcfg.winograd(r, s, (st, st), (1, 1), 1)
            res = sweep_row(cp, clock, fn, prec, args, gemm_dims(shape, ps), num_sms(), wino)
            rows.append({"row": f"{name} {ps}", "precision": prec, "configs": res})
            timed = [r for r in res if "ms" in r]
            auto = next((r["ms"] for r in res if r["tile"] == "auto" and "ms" in r), float("nan"))
            best = min(timed, key=lambda r: r["ms"]) if timed else None
            if best:
                print(f"{name + ' ' + ps:<28} {prec}  auto {auto:.4f} ms  best {best['ms']:.4f} ms "
                      f"({best['tile']}, splits {best['splits']}{', products ' + best['products'] if 'products' in best else ''})  auto/best {auto / best['ms']:.2f}",
                      flush=True)
            save()  # after every row: a run stopped by its timeout keeps what it measured
        save()
    if skipped:
        print(f"skipped after {args.budget_s:.0f} s: {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
