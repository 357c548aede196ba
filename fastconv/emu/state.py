"""What the CuPy stand-in counts and how it runs kernels: the settings and the trace.

``SETTINGS`` holds the process-wide switches (execute launches or only record them; run the
threads of a block in a shuffled, seeded order; land cp.async copies when issued). A
:class:`Trace` counts what a GPU program pays for on the host: kernel launches (with their
arguments), device allocations, host<->device copies and synchronisations; :func:`fastconv.emu.trace`
installs one for a ``with`` block.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    execute: bool = True      # False: launches are recorded, kernels do not run
    shuffle_seed: int = 0     # != 0: threads of a block run in a seeded random order between barriers
    early_copies: bool = False  # True: a cp.async lands when issued, not at the wait that completes it
    fill: bool = True         # False: new arrays are not filled with 0xFF (a GPU allocation writes no
    #                           host memory; benchmarks/bench_host.py times the host path without it)


@dataclass(frozen=True)
class LaunchRecord:
    """One kernel launch: the kernel's name, grid and block (3-tuples), dynamic shared-memory bytes
    and the arguments as given (device arrays and numpy scalars)."""
    name: str
    grid: tuple
    block: tuple
    shared_mem: int
    args: tuple

    @property
    def pointers(self) -> tuple:
        """The device address of each array argument (None for scalars), as a GPU would see them."""
        return tuple(a.data.ptr if hasattr(a, "data") and hasattr(a.data, "ptr") else None for a in self.args)


@dataclass(eq=False)  # traces nest: each is removed by identity, never by equal contents
class Trace:
    """Counters of one ``fastconv.emu.trace()`` block (allocations and copies in bytes too)."""
    launches: list = field(default_factory=list)
    allocations: int = 0
    allocated_bytes: int = 0
    downloads: int = 0          # device -> host copies (.get(), asnumpy, float(), .item(), ...)
    uploads: int = 0            # host -> device copies (asarray of a host array, .set())
    syncs: int = 0              # stream / device synchronisations

    @property
    def launch_names(self) -> list:
        return [r.name for r in self.launches]


SETTINGS = Settings()
TRACES: list = []            # the active traces (nested ``trace()`` blocks all count)


def count(what: str, n: int = 1) -> None:
    for t in TRACES:
        setattr(t, what, getattr(t, what) + n)


def record_launch(rec: LaunchRecord) -> None:
    for t in TRACES:
        t.launches.append(rec)
