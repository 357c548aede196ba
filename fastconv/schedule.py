"""Learning-rate schedules: the rate as a function of training progress t in epochs (fractional
within an epoch, so a schedule can be applied every step).

- ``constant``: base_lr.
- ``step``: base_lr * gamma ** floor(t / step_size) (PyTorch's StepLR when t is the epoch).
- ``cosine``: min_lr + (base_lr - min_lr) * (1 + cos(pi * t / total)) / 2, from base_lr at t = 0
  to min_lr at t = total (PyTorch's CosineAnnealingLR with T_max = total, eta_min = min_lr).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .argcheck import real

SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class LRSchedule:
    kind: str
    base_lr: float
    total: float = 1.0         # cosine: epochs from base_lr to min_lr
    step_size: float = 1.0     # step: epochs between decays
    gamma: float = 0.1         # step: decay factor
    min_lr: float = 0.0        # cosine: final rate

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule: got {self.kind!r}, expected one of {', '.join(map(repr, SCHEDULES))}")
        real(self.base_lr, "lr", 0.0, lo_open=True)
        real(self.total, "total", 0.0, lo_open=True, what="a number of epochs")
        real(self.step_size, "step_size", 0.0, lo_open=True, what="a number of epochs")
        real(self.gamma, "gamma", 0.0, 1.0, lo_open=True, what="a decay factor")
        real(self.min_lr, "min_lr", 0.0, self.base_lr, what="a rate between 0 and lr")

    def __call__(self, t: float) -> float:
        """The learning rate at progress t >= 0 epochs (cosine holds min_lr after t = total)."""
        t = real(t, "t", 0.0, what="a training progress in epochs")
        if self.kind == "step":
            return self.base_lr * self.gamma ** math.floor(t / self.step_size)
        if self.kind == "cosine":
            frac = min(t / self.total, 1.0)
            return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
        return self.base_lr
