"""A training step as one CUDA graph: captured once, then replayed per batch with one launch (and
CallGraph, repeated calls of one function as a graph, with event_ms: timing GPU work alone).

``g = StepGraph(step)`` wraps ``step(*inputs) -> outputs`` (device arrays in, device arrays or
None out). The first call ``g(*batch)`` copies the batch into static input buffers, runs the step
eagerly inside a :class:`fastconv.arena.Arena` (this is a real training step; it also builds the
launch plans, compiles the kernels and allocates every activation, gradient, workspace and argmax
buffer once), then captures the same step on a capturing stream: with the arena every allocation
returns the buffer of the eager pass, so the capture allocates nothing and the graph's pointers
stay valid while the arena holds them. Every later call copies the batch into the static buffers
on that stream and launches the graph; the outputs are the arena's arrays, overwritten by the
next call (read them, e.g. the loss every ``--log-every`` steps, before that).

What a captured step must not do, since only kernel launches are captured: any CuPy elementwise,
reduction or ``astype`` call (their results would be computed once, at capture), cuBLAS,
host copies or synchronisation (a GPU ends the capture with an error; the CPU
stand-in refuses them), and scalars read on the host that change per step (dropout's counter,
Adam's step count): their values at capture are baked into the graph. Python-side state the
step changes is changed once more by the capture pass (``on_capture`` runs after it, to undo
that) and not by a replay (``on_replay`` runs after each, to redo it): e.g. the optimizer's
step count.
"""

from __future__ import annotations

from .backend import require_gpu
from .arena import Arena


class StepGraph:
    """``step`` captured as a CUDA graph after one eager pass (see the module docstring)."""

    def __init__(self, step, on_capture=None, on_replay=None):
        self.step = step
        self.on_capture = on_capture
        self.on_replay = on_replay
        self.arena = Arena()
        self.graph = None
        self.static = None
        self.outputs = None
        self.stream = None
        self.replays = 0

    def _copy_in(self, inputs):
        if len(inputs) != len(self.static):
            raise ValueError(f"inputs: got {len(inputs)} arrays, expected {len(self.static)} as in the first call")
        for i, (s, a) in enumerate(zip(self.static, inputs)):
            if tuple(a.shape) != s.shape or a.dtype != s.dtype:
                raise ValueError(f"inputs[{i}]: got {tuple(a.shape)} {a.dtype}, expected {s.shape} {s.dtype} as in "
                                 "the first call (a graph replays fixed shapes; run other batches eagerly)")
            s[...] = a

    def __call__(self, *inputs):
        cp = require_gpu()
        if self.graph is None:
            return self._first(cp, inputs)
        with self.stream:
            self._copy_in(inputs)
            self.graph.launch(self.stream)
        self.replays += 1
        if self.on_replay is not None:
            self.on_replay()
        return self.outputs

    def _first(self, cp, inputs):
        self.stream = cp.cuda.Stream()          # blocking: ordered after the default stream's work
        with self.stream:
            self.static = [cp.empty(a.shape, a.dtype) for a in inputs]
            self._copy_in(inputs)
            with self.arena.step():
                out = self.step(*self.static)
            self.stream.begin_capture()
            try:
                with self.arena.step():
                    self.outputs = self.step(*self.static)
            finally:
                graph = self.stream.end_capture()
            if self.arena._next != len(self.arena.buffers):
                raise RuntimeError(f"StepGraph: the captured pass allocated {self.arena._next} arrays, the eager "
                                   f"pass {len(self.arena.buffers)}; expected the same step twice")
            self.graph = graph
        if self.on_capture is not None:
            self.on_capture()
        return out


class CallGraph:
    """``calls`` calls of ``fn`` captured as a CUDA graph on a fresh stream, for timing them without the
    host (the autotune setting's trials, the benchmarks' kernel-only figures). The calls run once
    outside the capture first (kernel builds; their outputs then freed, so the memory pool holds
    blocks for all of them and the capture allocates without cudaMalloc); the captured calls'
    outputs are kept until the graph is dropped, so the pool cannot hand a graph's buffers to
    anything else while replays write them. ``replay()`` launches the graph on its stream."""

    def __init__(self, cp, fn, calls: int):
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.keep = []
        with self.stream:
            warm = [fn() for _ in range(calls)]
            del warm
            self.stream.synchronize()
            self.stream.begin_capture(getattr(cp.cuda.runtime, "streamCaptureModeRelaxed", None))
            try:
                for _ in range(calls):
                    self.keep.append(fn())
            finally:
                self.graph = self.stream.end_capture()

    def replay(self):
        self.graph.launch(self.stream)


def event_ms(cp, fn) -> float:
    """GPU milliseconds of the work ``fn`` puts on the current stream, between two CUDA events."""
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    fn()
    end.record()
    end.synchronize()
    return float(cp.cuda.get_elapsed_time(start, end))
