"""Host-side cost of launching an empty kernel from Python, on the GPU machine.

    python benchmarks/bench_numba_launch.py [--launches 2000] [--repeats 9]

Rows (all launch the same do-nothing kernel with one float32 array/pointer and one int32):
  numba naive            @cuda.jit without signature, kernel[1, 32](cupy_array, 0)
                         (CUDA Array Interface sync as configured: the numba default is on)
  numba naive, no sync   the same with CUDA_ARRAY_INTERFACE_SYNC off
  numba eager, cached    explicit signature, configured kernel[1, 32] object reused
  numba overload.launch  _Kernel.launch with a CPointer signature (skips typing, keeps cuda.core launch)
  fastconv numba path    fastconv.backends.numba.launch_empty: pointer-signature kernel,
                         packed parameter buffer, cuLaunchKernel via ctypes on CuPy's stream
  cupy RawKernel         the same kernel in CUDA C through CuPy
Each row: median over repeats of (wall time of N launches / N), in microseconds, then one sync.
The empty kernel's device time (~2 us) is far below the host cost, so the queue never fills.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import timing  # noqa: E402


def _time(fn, launches: int, repeats: int, sync) -> float:
    """Median host microseconds per launch (the sync after each repeat is not timed)."""
    per = timing.wall_times_s(fn, launches, repeats, 50, sync, sync_timed=False)
    return statistics.median(t / launches * 1e6 for t in per)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--launches", type=int, default=2000, help="launches per repeat (default 2000)")
    ap.add_argument("--repeats", type=int, default=9, help="repeats, the median is reported (default 9)")
    args = ap.parse_args(argv)

    import cupy as cp
    import numpy as np
    from numba import cuda
    from numba.cuda.core import config as numba_config

    from fastconv.backends import numba as nb
    from fastconv.backends.numba import driver as K

    y = cp.full(32, 1.0, dtype=cp.float32)
    sync = cp.cuda.get_current_stream().synchronize
    rows = []

    naive = cuda.jit(K.empty_v1)
    sync_default = numba_config.CUDA_ARRAY_INTERFACE_SYNC
    rows.append((f"numba naive (interface sync={int(bool(sync_default))})",
                 _time(lambda: naive[1, 32](y, 0), args.launches, args.repeats, sync)))
    numba_config.CUDA_ARRAY_INTERFACE_SYNC = False
    rows.append(("numba naive, no sync", _time(lambda: naive[1, 32](y, 0), args.launches, args.repeats, sync)))

    eager = cuda.jit("void(float32[::1], int32)")(K.empty_v1)
    configured = eager[1, 32]
    rows.append(("numba eager, cached config", _time(lambda: configured(y, 0), args.launches, args.repeats, sync)))

    t = cuda.types
    sig = (t.CPointer(t.float32), t.int32)
    disp = cuda.jit(t.void(*sig))(K.empty_v1)
    overload = disp.overloads[sig]
    stream = cuda.external_stream(cp.cuda.get_current_stream().ptr) if cp.cuda.get_current_stream().ptr else 0
    from numba.cuda.cudadrv import driver as numba_driver
    core_stream = numba_driver._to_core_stream(stream)
    ptr = y.data.ptr
    rows.append(("numba overload.launch (CPointer)",
                 _time(lambda: overload.launch((ptr, 0), (1, 1, 1), (32, 1, 1), core_stream, 0),
                       args.launches, args.repeats, sync)))

    rows.append(("fastconv numba path (launch_empty)",
                 _time(lambda: nb.launch_empty(y), args.launches, args.repeats, sync)))
    n0 = np.int32(0)
    raw = cp.RawKernel('extern "C" __global__ void empty_v1(float* y, int n) {}', "empty_v1")
    rows.append(("cupy RawKernel", _time(lambda: raw((1,), (32,), (y, n0)), args.launches, args.repeats, sync)))

    name = timing.card_name(cp)
    print(f"launch cost of an empty kernel, {name}, median of {args.repeats} x {args.launches} launches")
    print(f"{'path':40s} | us/launch")
    print("-" * 40 + "-+-" + "-" * 9)
    for label, us in rows:
        print(f"{label:40s} | {us:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
