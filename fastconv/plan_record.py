"""What an op call does on the GPU while fastconv.plan plans it: the launchers of both kernel
families report every allocation (``note_alloc``) and launch (``note_launch``) here, into the
:class:`Record` of the call being planned on this thread (none outside a planning call), from which
fastconv.plan builds the call's Plan. ``not_recording`` and ``provisional`` are for work inside a
planning call that the plan must not repeat (the conv autotuner's trial calls, a call it could not
tune)."""

from __future__ import annotations

import contextlib
import threading


class _ThreadState(threading.local):
    # class defaults: reading an attribute a thread never set costs no AttributeError (~1 us a call)
    rec = None     # the Record of the op call being planned on this thread


_local = _ThreadState()


class Record:
    """What one op call did on the GPU: allocations (alloc function, its arguments, the array, the
    unchecked allocator, whether a replay may reuse it) and launches (launch callable
    ``fn(grid, block, args)``, grid, block, args); ``keep`` False: build no plan from this call."""
    __slots__ = ("allocs", "launches", "keep")

    def __init__(self):
        self.allocs = []
        self.launches = []
        self.keep = True


def note_alloc(alloc, call_args: tuple, array, raw=None, reusable: bool = False) -> None:
    """Called by the allocator after ``array = alloc(*call_args)``; records it when planning.
    ``raw(shape, dtype)`` (call_args[0], call_args[1]) makes the same array without checks or
    poisoning: a plan built with the poison setting off uses it, and calls ``alloc`` (for its
    error message) only when it fails. ``reusable``: the array's contents on allocation do not
    matter (an uninitialised buffer), or its kernels leave it as it was made (zeros: a last-block
    counter), so a plan may hand a workspace the call does not return the same array again on its
    next call."""
    rec = _local.rec
    if rec is not None:
        rec.allocs.append((alloc, call_args, array, raw, reusable))


def note_launch(fn, grid: tuple, block: tuple, args: tuple) -> None:
    """Called by a family's launch function after ``fn(grid, block, args)``; records it when planning."""
    rec = _local.rec
    if rec is not None:
        rec.launches.append((fn, grid, block, args))


@contextlib.contextmanager
def not_recording():
    """Within: this thread's allocations and launches are not recorded into the op call being
    planned (the trial calls of fastconv.backends.cuda.autotune)."""
    outer, _local.rec = _local.rec, None
    try:
        yield
    finally:
        _local.rec = outer


def provisional() -> None:
    """The op call being planned on this thread (if any) makes no plan: a later call with its key
    goes the full way again (a conv pass that could not be autotuned during a graph capture)."""
    if _local.rec is not None:
        _local.rec.keep = False
