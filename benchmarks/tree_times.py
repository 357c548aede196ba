"""The same conv calls timed kernel-only across several trees of this repository in one GPU run: the
way to find which commit changed a kernel's speed (a bisect), or to A/B a change on one card, with every
figure from the same machine and call.

On a machine with git (no GPU needed), export the trees into a folder that travels with the checkout
(.trees is git-ignored; `STEPS="trees" bash scripts/gpu_run.sh` times every tree in it):

    python benchmarks/tree_times.py export 18b166b 52aa487 HEAD --into .trees

On the GPU machine, from the checkout:

    python benchmarks/tree_times.py time .trees/* [--rows resnet.c4 "dcgan.d2 forward"] [--tf32]
                                        [--set conv_tile=t128x64 conv_splits=2] [--reps 10] [--json FILE]

A tree is the commit's fastconv/, kernels/ and benchmarks/. Each tree runs in a process of its own with
that tree first on the path, so its own kernels, launchers and timing code run. The processes build their
calls side by side (compiling is most of a tree's time), then time them one at a time under a file lock,
each call a CUDA graph of 20 calls replayed --reps times (that tree's benchmarks/timing.py), the median.
Rows are benchmarks/shapes.py shapes x passes as of this script; --set takes settings (a value is
parsed as a Python literal where it is one, else kept as a string); a row a tree cannot run reports
its error. The table prints microseconds, rows x trees, in the order the trees were given.
With FASTCONV_DEVICE=emu it runs on the CPU execution layer instead (whether each tree's calls run;
the times are the CPU's), with --batch to keep the shapes small.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("fastconv", "kernels", "benchmarks")


def export(revs, into: Path, repo: Path = HERE.parent) -> list[Path]:
    """Each commit's fastconv/, kernels/ and benchmarks/ under into/<short hash>; returns the folders."""
    out = []
    for rev in revs:
        short = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", rev], check=True,
                               capture_output=True, text=True).stdout.strip()
        dest = into / short
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(repo), "archive", rev, *PARTS], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        out.append(dest)
    return out


def parse_settings(pairs) -> dict:
    """``["conv_tile=t128x64", "conv_splits=2"]`` -> {"conv_tile": "t128x64", "conv_splits": 2}."""
    out = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--set: got {pair!r}, expected NAME=VALUE")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text
    return out


def rows_of(patterns) -> list[tuple[str, str]]:
    """(shape name, pass) of every benchmarks/shapes.py row the ``patterns`` select (conv_sweep.row_order's
    selection: "shape pass" prefixes or globs; all rows when empty)."""
    sys.path.insert(0, str(HERE))
    from conv_sweep import row_order

    return [(name, ps) for name, ps, _ in row_order(patterns, ("fp32",))]


def table(results: list[dict], rows) -> str:
    """Rows x trees, microseconds (or the tree's error)."""
    width = max(9, *(len(r["tree"]) + 1 for r in results))
    lines = ["row".ljust(30) + "".join(r["tree"].rjust(width) for r in results)]
    for name, ps in rows:
        key = f"{name} {ps}"
        cells = []
        for r in results:
            v = r["us"].get(key)
            cells.append((f"{v:.1f}" if isinstance(v, float) else "-" if v is None else "error").rjust(width))
        lines.append(key.ljust(30) + "".join(cells))
    errors = [f"{r['tree']} {k}: {v}" for r in results for k, v in r["us"].items() if isinstance(v, str)]
    return "\n".join(lines + errors)


def one_tree(job: dict) -> dict:
    """In a tree's own process (cwd = the tree): build every row's call, then time them under the lock."""
    import fcntl

    import numpy as np

    tree = Path.cwd()
    sys.path[:0] = [str(tree), str(tree / "benchmarks")]
    import fastconv  # first: with FASTCONV_DEVICE=emu it makes cupy the CPU execution layer's stand-in
    from fastconv import ops
    from fastconv.argcheck import conv_out_size

    init = getattr(fastconv, "__file__", None)   # None: a folder without __init__.py (a namespace)
    if init is None or not Path(init).resolve().is_relative_to(tree.resolve()):  # e.g. one found on PYTHONPATH
        raise RuntimeError(f"{tree.name}: fastconv imported from {init or 'a namespace package'}, not from the tree")

    import cupy as cp
    from timing import CupyGraph, EventClock, kernel_ms  # that tree's

    rng, graphs, us = np.random.default_rng(0), {}, {}
    for name, ps in job["rows"]:
        n, c, h, w, k, r, s, st, pd = job["shapes"][name]
        n = job["batch"] or n
        p, q = conv_out_size(h, r, st, pd, 1), conv_out_size(w, s, st, pd, 1)
        x = cp.asarray(rng.standard_normal((n, c, h, w), dtype=np.float32))
        wt = cp.asarray(rng.standard_normal((k, c, r, s), dtype=np.float32) * 0.1)
        dy = cp.asarray(rng.standard_normal((n, k, p, q), dtype=np.float32))
        call = {"forward": lambda: ops.conv2d_forward(x, wt, None, st, pd),
                "backward_data": lambda: ops.conv2d_backward_data(dy, wt, x.shape, st, pd),
                "backward_weight": lambda: ops.conv2d_backward_weight(dy, x, wt.shape, st, pd)}[ps]
        try:
            with fastconv.using(tf32=job["tf32"], **job["settings"]):
                graphs[f"{name} {ps}"] = CupyGraph(cp, call, job["calls"])
        except Exception as e:  # noqa: BLE001 - a setting, tile or op the tree lacks: reported, not fatal
            us[f"{name} {ps}"] = f"{type(e).__name__}: {str(e)[:100]}"
    cp.cuda.Device().synchronize()
    with open(job["lock"], "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # one tree on the GPU at a time
        clock = EventClock(cp)
        for key, graph in graphs.items():
            us[key] = kernel_ms(clock, graph, job["reps"], job["warmup"], job["calls"]) * 1e3
    return {"tree": tree.name, "us": us}


def time_trees(trees, rows, shapes, tf32=False, settings=None, reps=10, warmup=3, batch=None, calls=20) -> list[dict]:
    """Every tree's results (one_tree's), each tree in its own process, all started together."""
    with tempfile.TemporaryDirectory() as tmp:
        job = {"rows": rows, "shapes": shapes, "tf32": tf32, "settings": settings or {}, "reps": reps,
               "warmup": warmup, "batch": batch, "calls": calls, "lock": str(Path(tmp) / "gpu.lock")}
        procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_one", json.dumps(job)],
                                  cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for tree in trees]
        results = []
        for tree, proc in zip(trees, procs):
            out, err = proc.communicate()
            if proc.returncode != 0:
                last = err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"
                results.append({"tree": Path(tree).name, "us": {"(process)": last}})
            else:
                results.append(json.loads(out.strip().splitlines()[-1]))
        return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write each commit's tree under --into")
    ex.add_argument("revs", nargs="+")
    ex.add_argument("--into", required=True, type=Path)
    tm = sub.add_parser("time", help="time the rows in every tree (GPU)")
    tm.add_argument("trees", nargs="+", type=Path)
    tm.add_argument("--rows", nargs="*", default=[], metavar="PREFIX")
    tm.add_argument("--tf32", action="store_true")
    tm.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", dest="settings")
    tm.add_argument("--reps", type=int, default=10)
    tm.add_argument("--warmup", type=int, default=3)
    tm.add_argument("--batch", type=int, default=None, help="N of every shape instead of its own")
    tm.add_argument("--json", default=None, metavar="FILE")
    one = sub.add_parser("_one")
    one.add_argument("job")
    args = ap.parse_args(argv)
    if args.cmd == "_one":
        print(json.dumps(one_tree(json.loads(args.job))))
        return 0
    if args.cmd == "export":
        for tree in export(args.revs, args.into):
            print(tree)
        return 0
    sys.path.insert(0, str(HERE))
    from shapes import CONV_SHAPES

    missing = [str(t) for t in args.trees if not (t / "fastconv").is_dir()]
    if missing:
        print(f"trees: got {missing}, expected folders holding fastconv/ (tree_times.py export)", file=sys.stderr)
        return 2
    try:
        settings = parse_settings(args.settings)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    rows = rows_of(args.rows)
    if not rows:
        print(f"--rows: got {args.rows}, expected prefixes of rows like 'resnet.c4 forward'", file=sys.stderr)
        return 2
    results = time_trees(args.trees, rows, CONV_SHAPES, args.tf32, settings, args.reps, args.warmup, args.batch)
    print(f"kernel-only us (CUDA graphs of 20 calls, median of {args.reps}); tf32 {args.tf32}; settings {settings}")
    print(table(results, rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
