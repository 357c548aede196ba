"""Progress while an epoch runs: a tqdm bar on a terminal, plain lines in logs and pipes."""

from __future__ import annotations

import sys
import time

from .common import say


class _NoBar:
    """Stands in for a bar when progress output is off."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        pass


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LineProgress(_NoBar):
    """A plain line at most every ``seconds`` s (CI, ``tee``, a log file): step, the last postfix
    (the running loss), images/s and the epoch's ETA.

    total and update() count images; ``per_step`` images make one step (the batch size, or
    batch_size * d_steps for a GAN iteration).
    """

    def __init__(self, total: int, desc: str, per_step: int, seconds: float):
        self.total, self.desc, self.per_step, self.seconds = total, desc, max(int(per_step), 1), seconds
        self.done, self.postfix = 0, {}
        self.t0 = self.last = time.monotonic()

    def update(self, n=1):
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.seconds and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            post = "".join(f", {k} {v}" for k, v in self.postfix.items())
            say(f"{self.desc}: step {self.done // self.per_step}/{-(-self.total // self.per_step)}{post}, "
                f"{rate:.0f} img/s, ETA {_clock((self.total - self.done) / rate)}")

    def set_postfix(self, **kw):
        self.postfix = kw


def progress(total: int, desc: str, enabled: bool | None, per_step: int = 1, seconds: float = 10.0):
    """Progress over ``total`` images: enabled True, or None with stdout on a terminal: a tqdm bar
    (images/s; plain lines when tqdm is not installed); None elsewhere: a plain line every
    ``seconds`` s; False: nothing."""
    if enabled is False:
        return _NoBar()
    if enabled or (enabled is None and sys.stdout.isatty()):
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=desc, unit="img", unit_scale=True, leave=False, dynamic_ncols=True,
                        file=sys.stderr)
    return LineProgress(total, desc, per_step, seconds)
