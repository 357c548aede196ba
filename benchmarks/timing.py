"""How benchmarks/gpu_table.py times one op, per call and kernel-only, and stamps its results.

- per call: CUDA events around one Python call, median over ``reps`` calls after ``warmup``:
  host overhead (argument checks, allocation, launch) is inside the figure, as a user sees it.
- kernel-only: ``CALLS`` back-to-back calls captured into one CUDA graph (CuPy stream capture for
  fastconv, ``torch.cuda.graph`` for cuDNN/PyTorch), the graph replayed ``reps`` times after
  ``warmup`` replays, each replay timed with events; the figure is the median replay / CALLS. The
  host does nothing between the kernels, so only GPU time (kernels, and the gaps the GPU itself
  leaves between them) is measured, on both sides alike.

Every output produced during a capture is kept alive until its graph is dropped, so the memory
pool cannot hand a graph's buffers to anything else while replays write them.
The clocks are objects with ``time_ms(fn) -> float`` so that the capture and replay logic also runs
on the CPU layer (fastconv.emu, whose launches are synchronous) with a host clock, in tests.

``wall_times_s`` times runs of many calls by the host clock, for the throughput and launch-cost
benchmarks (bench_step.py, bench_numba_launch.py).
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fastconv.graph import CallGraph, event_ms

CALLS = 20  # calls per captured graph


def geomean(values) -> float:
    """Geometric mean of the positive, finite ``values`` (NaN when there are none)."""
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else float("nan")


class EventClock:
    """GPU time of ``fn`` on the current CuPy stream, by two CUDA events (fastconv.graph.event_ms)."""

    def __init__(self, cp):
        self.cp = cp

    def time_ms(self, fn) -> float:
        return event_ms(self.cp, fn)


class HostClock:
    """Wall time of ``fn`` (for the CPU layer, where a launch returns when its kernel is done)."""

    def time_ms(self, fn) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3


def median_ms(clock, fn, reps: int, warmup: int) -> float:
    """Median over ``reps`` timed calls of ``fn`` after ``warmup`` untimed ones."""
    if reps < 1 or warmup < 0:
        raise ValueError(f"reps, warmup: got {reps}, {warmup}; expected reps >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    return float(np.median([clock.time_ms(fn) for _ in range(reps)]))


def wall_times_s(fn, calls: int, reps: int, warmup: int, sync, sync_timed: bool = True) -> list[float]:
    """Wall seconds of each of ``reps`` runs of ``calls`` back-to-back ``fn()`` calls, after ``warmup``
    calls and a ``sync()``. Each run ends with a sync: inside the timed span when ``sync_timed``
    (the device's work counts), after it otherwise (only the host's cost of issuing the calls)."""
    for _ in range(warmup):
        fn()
    sync()
    per = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if sync_timed:
            sync()
        per.append(time.perf_counter() - t0)
        if not sync_timed:
            sync()
    return per


def CupyGraph(cp, fn, calls: int = CALLS) -> CallGraph:
    """``calls`` calls of ``fn`` captured on a fresh CuPy stream (fastconv.graph.CallGraph); EventClock
    times its ``replay()`` on that stream too (call within ``with graph.stream``)."""
    return CallGraph(cp, fn, calls)


class TorchGraph:
    """The same with ``torch.cuda.CUDAGraph`` (its private memory pool keeps the outputs)."""

    def __init__(self, torch, fn, calls: int = CALLS):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # torch asks for warm-up on a side stream before capture
                fn()
        torch.cuda.current_stream().wait_stream(side)
        self.graph, self.keep = torch.cuda.CUDAGraph(), []
        with torch.cuda.graph(self.graph):
            for _ in range(calls):
                self.keep.append(fn())
        self.stream = None

    def replay(self):
        self.graph.replay()


def kernel_ms(clock, graph, reps: int, warmup: int, calls: int = CALLS) -> float:
    """Median replay time of a captured graph of ``calls`` calls, divided by ``calls``."""
    if graph.stream is None:
        return median_ms(clock, graph.replay, reps, warmup) / calls
    with graph.stream:
        return median_ms(clock, graph.replay, reps, warmup) / calls


@dataclass
class Timing:
    """One side of a row: per-call and kernel-only milliseconds (None: not measured, with why)."""
    per_call_ms: float
    kernel_ms: float | None
    note: str = ""


def time_both(clock, make_graph, fn, reps: int, warmup: int) -> Timing:
    """Per call and kernel-only times of ``fn``; a capture that fails leaves kernel_ms None and
    its reason in ``note`` (the per-call figure still stands)."""
    per_call = median_ms(clock, fn, reps, warmup)
    try:
        graph = make_graph(fn)
    except Exception as e:  # e.g. a launch path that cannot be captured: report it, keep the row
        return Timing(per_call, None, f"no graph: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
    try:
        return Timing(per_call, kernel_ms(clock, graph, reps, warmup))
    finally:
        del graph


@dataclass
class Results:
    """Everything one run of gpu_table.py measured, stamped with card, driver and commit."""
    card: str
    driver: str
    commit: str
    date: str
    settings: dict
    rows: list = field(default_factory=list)

    def add(self, table: str, **row):
        self.rows.append({"table": table, **row})

    def write(self, path) -> Path:
        """Write the JSON file atomically (a temporary name, then a rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=_plain) + "\n")
        tmp.replace(path)
        return path


def _plain(v):
    if isinstance(v, Timing):
        return asdict(v)
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"results: got {type(v).__name__}, expected JSON-serialisable values")


def _run(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def card_name(cp) -> str:
    """The name of CuPy's current device (CUDA reports it as bytes)."""
    name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else name


def stamp(card: str, driver_api_version: int, repo: Path, settings: dict) -> Results:
    """The run's stamp: card name, driver (nvidia-smi's version, else the CUDA driver API's),
    commit (short hash, '+dirty' when the checkout has changes; 'unknown' outside git), UTC date."""
    smi = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]).splitlines()
    driver = smi[0] if smi else f"CUDA driver API {driver_api_version}"
    commit = _run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"]) or "unknown"
    if commit != "unknown" and _run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"]):
        commit += "+dirty"
    return Results(card, driver, commit, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), dict(settings))
