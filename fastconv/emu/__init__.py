"""fastconv.emu: the CUDA C kernels (kernels/*.cu) and their launchers, run on the CPU.

Select it with ``FASTCONV_DEVICE=emu`` (``import fastconv`` then puts a stand-in for CuPy in
``sys.modules["cupy"]``) or the CLI's ``--device emu``: the unchanged CUDA C family (module
compilation, launches, device arrays, streams, graph capture) runs on a machine without a GPU,
slowly, for correctness. In tests, ``with fastconv.emu.activate():`` does the same for a block and
undoes it afterwards.

Design (why it is built this way):

- **Same source, C++ compiler.** A kernel file, exactly as the loader hands it to NVRTC, is
  preprocessed, lightly rewritten and compiled by g++ against ``runtime.h`` (CUDA built-ins with
  CPU meaning). Nothing is a second implementation of an op: the arithmetic is the .cu text.
  ``-O1`` because build time dominates CI: on a loaded 2-core CPU conv.cu (all tiles and passes)
  builds in 4.9 s at -O1, 8.1 s at -O2 (no faster to run), 2.5 s at -O0 (3-7x slower to run);
  libraries are cached by the SHA-256 of source, options, flags and headers, so a warm run
  compiles nothing.
- **Threads are fibers.** The threads of a block are ucontext fibers run cooperatively, each to
  its next barrier or warp collective: ``__syncthreads`` is a real barrier, warp shuffles, votes,
  ``ldmatrix`` and ``mma.sync`` are warp rendezvous points (a warp whose lanes meet at one runs on to
  the block's next barrier before the other warps do, so warps do not move in step), and shared
  memory is simply one arena per block (blocks run one after another). Cheaper and more
  deterministic than OS threads.
- **Checks a GPU does not make.** Pointer parameters and pointer variables of the kernels become
  ``fc_ptr<T>``, which carries the bounds of the array it came from: an out-of-bounds or misaligned
  access stops the launch naming kernel, block, thread and element. Shared memory starts as 0xFF
  bytes (NaN) with a guard zone after each variable; a block's threads can run in a shuffled
  seeded order between barriers (:func:`shuffled`), so a missing ``__syncthreads`` changes the
  result; a ``cp.async`` lands at the wait that completes it, or with :func:`early_copies` when it
  is issued (the two ends of a GPU's window: a read before the wait, a refill before the readers'
  barrier, change the result); scalar arguments must have the exact numpy type of their C
  parameter; host arrays in device operations, synchronising calls during graph capture and
  launches CUDA would refuse are errors.
- **Counting for host-overhead work.** :func:`trace` counts launches (with arguments),
  allocations, host<->device copies and synchronisations; ``trace(execute=False)`` records
  launches without running them.
"""

from __future__ import annotations

import contextlib
import os
import sys

from . import state
from .standin import MODULES, cupy
from .state import SETTINGS, LaunchRecord, Trace

__all__ = ["activate", "install", "shuffled", "early_copies", "trace", "cupy", "Trace", "LaunchRecord", "SETTINGS"]

_PREFIX = "fastconv.backends"


def install() -> None:
    """Make ``import cupy`` give the stand-in for the rest of the process (FASTCONV_DEVICE=emu)."""
    sys.modules.update(MODULES)


def _swap_backends(saved: dict) -> dict:
    """Drop the imported backend modules (they hold the cupy they were imported with) and put
    ``saved`` back; returns what was dropped."""
    dropped = {k: m for k, m in sys.modules.items() if k == _PREFIX or k.startswith(_PREFIX + ".")}
    for k in dropped:
        del sys.modules[k]
    for k, m in saved.items():
        sys.modules[k] = m
        parent, _, child = k.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, m)
    return dropped


@contextlib.contextmanager
def activate():
    """Run the CUDA C family on the CPU inside the block: ``cupy`` is the stand-in and the backend
    modules are imported afresh against it; the previous modules come back afterwards."""
    from .. import backend

    before = {k: sys.modules.get(k) for k in MODULES}
    cache = dict(backend._modules)
    backend._modules.clear()
    saved = _swap_backends({})
    install()
    try:
        yield cupy
    finally:
        for k, m in before.items():
            if m is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = m
        _swap_backends(saved)
        backend._modules.clear()
        backend._modules.update(cache)


@contextlib.contextmanager
def trace(execute: bool = True):
    """Count launches, allocations, copies and syncs in the block; with execute=False launches are
    recorded but not run (their outputs keep whatever the memory held)."""
    t = Trace()
    prev = SETTINGS.execute
    SETTINGS.execute = execute
    state.TRACES.append(t)
    try:
        yield t
    finally:
        state.TRACES.remove(t)
        SETTINGS.execute = prev


@contextlib.contextmanager
def shuffled(seed: int):
    """Run the threads of every block in a seeded random order between barriers (seed != 0)."""
    if not isinstance(seed, int) or seed == 0:
        raise ValueError(f"seed: got {seed!r}, expected a non-zero int")
    prev = SETTINGS.shuffle_seed
    SETTINGS.shuffle_seed = seed
    try:
        yield
    finally:
        SETTINGS.shuffle_seed = prev


@contextlib.contextmanager
def early_copies():
    """Land every cp.async when it is issued instead of at the wait that completes it: the two ends
    of the window in which a GPU may land it. The default end shows a read before its wait; this one
    shows a copy into a buffer that another thread may still read (a missing barrier before a stage
    or chunk is refilled)."""
    prev = SETTINGS.early_copies
    SETTINGS.early_copies = True
    try:
        yield
    finally:
        SETTINGS.early_copies = prev


def selected() -> bool:
    """True when FASTCONV_DEVICE asks for the emulator."""
    return os.environ.get("FASTCONV_DEVICE", "").strip().lower() == "emu"
