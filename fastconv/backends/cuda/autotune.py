"""Conv passes that pick their kernels by timing them: the ``autotune`` setting (as PyTorch's
``torch.backends.cudnn.benchmark``).

The launch heuristic (config.conv_tile, config.conv_splits, the Winograd and small-channel rules) was
tuned on one card for the benchmark shapes; with ``autotune`` on, the first call of a conv pass with a
given key times the candidates on the card at hand and remembers the fastest. The key is the pass,
its arguments (an array by shape, strides and 16-byte alignment, the others by value), the tf32,
tf32_vector_gather and poison settings and the device. That call and every later one with the key
run the pick (its conv_tile and conv_splits settings), which a launch plan (fastconv.plan) then
replays at no further host cost.

Candidates (candidates()): the heuristic's choice first; then every tile of the pass's precision
(TF32_TILES or CONV_TILES) split the heuristic's way, unsplit, and into the counts that fill 1 to
WAVES whole waves of the card (wave_splits), each count once; then Winograd (fp32, also with tf32
on: the more accurate, as cuDNN may pick) where it serves the shape and the heuristic does not
take it already. A candidate that fails (the launchers' ValueError for a grid or workspace limit,
out of memory, a launch the card refuses) is skipped and listed with why. Each is timed
kernel-only: CALLS calls captured as a CUDA graph on a stream of its own, the median of REPS
replays over CALLS, so host time is left out. Another candidate replaces the heuristic's only when
it is at least MIN_GAIN faster.

Trial calls record nothing into a launch plan and take no arena buffer, and their outputs are
dropped (a given ``out`` is written, then written again by the real call; one to be added into,
``accumulate``, is copied and the trials add into the copy).
Not tuned: a call while the current stream captures a CUDA graph (it runs the heuristic's choice, and
its launch plan is not kept, so a later call tunes), calls under a forced conv_tile, conv_splits or
winograd_tile setting, and conv_version 1. The Numba family does not tune.

Like config.py, the module imports without CuPy (benchmarks/conv_sweep.py takes its split counts and
GEMM sizes); the timing and the wrapper use the CuPy that the launchers were imported with.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from dataclasses import dataclass, field

import numpy as np

from ... import settings
from ...arena import outside_arena
from ...graph import CallGraph, event_ms
from ...argcheck import conv_out_size
from ...plan import clear_all
from ...plan_record import not_recording, provisional
from . import config as cfg
from . import winograd_config as wcfg

CALLS = 5          # calls per captured graph
REPS = 3           # replays timed per candidate (the median is taken)
WAVES = 3          # wave_splits: split counts that fill 1..WAVES whole waves
MIN_GAIN = 0.02    # a candidate replaces the heuristic's choice when at least this much faster
PASSES = settings.CONV_PASSES


@dataclass
class Tuned:
    """What tuning one key found: the settings to run it under ({} = the heuristic's choice) and every
    candidate's figure, (settings, kernel ms or None, why it was refused or "")."""
    pick: dict
    trials: list = field(default_factory=list)


_tuned: dict = {}
_lock = threading.Lock()   # one tuning at a time: trials change the process-wide settings


def results() -> dict:
    """{key: Tuned} of every key tuned in this process (a copy)."""
    return dict(_tuned)


def clear() -> None:
    """Forget every pick, and every launch plan (which replays picks): the next call of each key
    tunes again."""
    _tuned.clear()
    clear_all()


def wave_splits(blocks: int, wave: int, waves: int = WAVES) -> list[int]:
    """Split counts >= 2 that fill 1..``waves`` whole waves of ``wave`` blocks as nearly as they can
    without passing them: floor(k * wave / blocks) for a grid of ``blocks`` unsplit blocks (a power of
    two of splits can leave a last wave mostly empty: 576 blocks on a 264-block wave)."""
    return sorted({k * wave // blocks for k in range(1, waves + 1)} - {0, 1})


def gemm_dims(what: str, n, c, h, w, k, r, s, stride, padding, dilation, groups):
    """(m, n, reduction, z, output elements) of one pass's implicit GEMM on the v3 core, as its
    launcher (conv.py) sets it up: z = groups, times the stride phases for backward-data."""
    p = conv_out_size(h, r, stride[0], padding[0], dilation[0])
    q = conv_out_size(w, s, stride[1], padding[1], dilation[1])
    kg, cg = k // groups, c // groups
    if what == "forward":
        return kg, n * p * q, cg * r * s, groups, n * k * p * q
    if what == "backward_data":
        taps = cfg.phase_max_taps(r, stride[0], dilation[0]) * cfg.phase_max_taps(s, stride[1], dilation[1])
        return (cg, n * cfg.cdiv(h, stride[0]) * cfg.cdiv(w, stride[1]), kg * taps, groups * stride[0] * stride[1],
                n * c * h * w)
    return kg, cg * r * s, n * p * q, groups, k * cg * r * s


def geometry(what: str, args: tuple):
    """(N, C, H, W, K, R, S, stride, padding, dilation, groups) of a conv launcher's arguments:
    forward (x, w, b, stride, padding, dilation, groups, ...), backward-data (dy, w, x_shape, ...),
    backward-weight (dy, x, w_shape, ...)."""
    x_shape = args[0].shape if what == "forward" else args[2] if what == "backward_data" else args[1].shape
    w_shape = args[2] if what == "backward_weight" else args[1].shape
    stride, padding, dilation, groups = args[3:7]
    (n, c, h, w), (k, _, r, s) = x_shape, w_shape
    return n, c, h, w, k, r, s, tuple(stride), tuple(padding), tuple(dilation), groups


def candidates(what: str, geom, tf32: bool, sms: int) -> list[dict]:
    """The settings of every candidate of one pass (see the module): {} first (the heuristic)."""
    n, c, h, w, k, r, s, stride, padding, dilation, groups = geom
    m, cols, red, z, elems = gemm_dims(what, n, c, h, w, k, r, s, stride, padding, dilation, groups)
    wgrad, phased = what == "backward_weight", what == "backward_data" and stride != (1, 1)
    out, seen = [{}], set()
    for tile in cfg.TF32_TILES if tf32 else cfg.CONV_TILES:
        try:
            gx, gy, _ = cfg.conv_grid(m, cols, tile, z)
        except ValueError:       # more row tiles than a grid holds: the launcher would refuse it too
            continue
        blocks, wave = gx * gy * z, sms * cfg.tile_spec(tile, tf32)[4]
        for force in [None, 1] + wave_splits(blocks, wave):
            try:
                splits = cfg.conv_splits(m, cols, red, tile, z, sms, force, wgrad=wgrad, tf32=tf32, phased=phased,
                                         out_elems=elems)[0]
            except ValueError:   # e.g. more than 65535 grid slices
                continue
            if (tile, splits) not in seen:   # a forced count as the launcher rounds it
                seen.add((tile, splits))
                out.append({"conv_tile": tile, "conv_splits": None if force is None else splits})
    if (wcfg.winograd(r, s, stride, dilation, groups)
            and not wcfg.use_winograd(None, tf32, what, r, s, stride, dilation, groups, c // groups)):
        out.append({"conv_tile": cfg.WINOGRAD})
    return out


def kernel_ms(fn, calls: int = CALLS, reps: int = REPS) -> float:
    """GPU milliseconds per call of ``fn``: ``calls`` calls as a fastconv.graph.CallGraph (its first
    calls, outside the capture, compile, allocate and raise a refusal), replayed once, then the
    median of ``reps`` replays timed by events, divided by ``calls``."""
    cp = sys.modules["cupy"]
    graph = CallGraph(cp, fn, calls)
    with graph.stream:
        graph.replay()
        return float(np.median([event_ms(cp, graph.replay) for _ in range(reps)])) / calls


def _key(what, args, kw):
    cp = sys.modules["cupy"]

    def part(a):
        return (a.shape, a.strides, a.data.ptr & 15) if isinstance(a, cp.ndarray) else a
    cur = settings.current()
    return (what, cur.tf32, cur.tf32_vector_gather, cur.poison, cp.cuda.runtime.getDevice(),
            *map(part, args), *((name, part(v)) for name, v in sorted(kw.items())))


def _tune(what, launcher, args, kw) -> Tuned:
    """Time every candidate of one call and pick. The heuristic's errors are the caller's, except
    running out of memory (CALLS outputs alive at once): then tuning stops and the call keeps the
    heuristic's choice; any other candidate that fails (a refusal, memory, a launch the card
    refuses) is listed with why and skipped."""
    from .conv import gemm_tf32
    from .launch import num_sms
    geom = geometry(what, args)
    cands = candidates(what, geom, gemm_tf32(what, geom[5], geom[6]), num_sms())
    sys.modules["cupy"].cuda.get_current_stream().synchronize()   # inputs ready before the trial stream reads
    tuned = Tuned({})
    with not_recording(), outside_arena():
        if kw.get("accumulate"):   # trials add into a copy: the call's out keeps its values for the call
            kw = dict(kw, out=kw["out"].copy())
        for cand in cands:
            try:
                with settings.using(**cand):
                    tuned.trials.append((cand, kernel_ms(lambda: launcher(*args, **kw)), ""))
            except Exception as e:   # another candidate's failure (a launch the card refuses) is not the call's
                if not cand and not isinstance(e, MemoryError):
                    raise
                tuned.trials.append((cand, None, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"))
                if not cand:
                    return tuned
    base = tuned.trials[0][1]
    best = min((t for t in tuned.trials if t[1] is not None), key=lambda t: t[1])
    if best[1] <= base * (1 - MIN_GAIN):
        tuned.pick = best[0]
    return tuned


def tuned(what: str):
    """Decorate the cupy family's launcher of conv pass ``what`` (one of PASSES) with autotuning."""
    if what not in PASSES:
        raise ValueError(f"what: got {what!r}, expected one of {PASSES}")

    def wrap(launcher):
        @functools.wraps(launcher)
        def call(*args, **kw):
            cur = settings.current()
            if (not cur.autotune or cur.conv_version != 3 or cur.conv_tile is not None or cur.conv_splits is not None
                    or cur.winograd_tile is not None):
                return launcher(*args, **kw)
            key = _key(what, args, kw)
            found = _tuned.get(key)
            if found is None:
                if sys.modules["cupy"].cuda.get_current_stream().is_capturing():
                    provisional()
                    return launcher(*args, **kw)
                with _lock:
                    found = _tuned.get(key) or _tuned.setdefault(key, _tune(what, launcher, args, kw))
            with settings.using(**found.pick) if found.pick else contextlib.nullcontext():
                return launcher(*args, **kw)
        return call
    return wrap
