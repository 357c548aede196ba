"""Static buffers for a step run again and again (a CUDA graph's memory): the Arena that
fastconv.graph.StepGraph captures a step in, and the query the allocators ask (is an arena's step
running on this thread?). Launch plans (fastconv.plan) are not used inside a step: its allocations
go through the arena."""

from __future__ import annotations

import contextlib
import threading


class _ArenaState(threading.local):
    arena = None   # the Arena whose step is running on this thread (a class default: no AttributeError)


arena_state = _ArenaState()


class Arena:
    """Static buffers for a step run again and again (a CUDA graph's memory): inside
    ``with arena.step():`` the k-th allocation of the step returns the same array on every pass,
    allocated on the first pass and kept alive by the arena, so that after one pass a step
    allocates nothing and every launch sees the same pointers. The k-th allocation must ask for
    the same shape and dtype each pass (a step whose allocations change raises a ValueError)."""

    def __init__(self):
        self.buffers = []
        self._next = 0

    @contextlib.contextmanager
    def step(self):
        if arena_state.arena is not None:
            raise RuntimeError("Arena.step: got a step inside another arena's step, expected one at a time")
        self._next = 0
        arena_state.arena = self
        try:
            yield self
        finally:
            arena_state.arena = None

    def take(self, shape, dtype, make):
        """The buffer of this allocation: ``make()`` on the first pass, then the same array."""
        k = self._next
        self._next += 1
        if k == len(self.buffers):
            self.buffers.append(make())
        a = self.buffers[k]
        if a.shape != tuple(shape) or a.dtype != dtype:
            raise ValueError(f"arena: got allocation {k} of {tuple(shape)} {dtype}, expected {a.shape} {a.dtype} "
                             "as on the first pass (a captured step must allocate the same arrays every time)")
        return a


@contextlib.contextmanager
def outside_arena():
    """Within: this thread's allocations bypass the arena of a running step (an autotuner's trial
    calls, which must not take the step's static buffers)."""
    outer, arena_state.arena = arena_state.arena, None
    try:
        yield
    finally:
        arena_state.arena = outer


def current_arena():
    """The Arena whose step is running on this thread, else None."""
    return arena_state.arena
