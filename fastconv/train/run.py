"""One training run's output folder, shared by the CNN and GAN trainers.

A :class:`Run` owns, for the length of a run: the folder (created, or refused when it holds
another run's checkpoint and neither --resume nor --overwrite was given), an exclusive lock on
it (``fcntl.flock`` on ``.lock``, which holds the owner's PID), the metrics log, the checkpoint
(resume with the must-match checks; save only when every saved float is finite), results.json
and the plots. Leaving it with Ctrl-C turns the KeyboardInterrupt into :class:`Interrupted`,
whose one-line message says where the run stopped and which checkpoint to resume from.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import tempfile
import threading
import time

import numpy as np

from ..checkpoint import atomic_write, host_array, load_checkpoint, save_checkpoint
from .common import NonFiniteLossError, check_finite, say
from .images import plot_curves

CHECKPOINT_NAME = "checkpoint.safetensors"
METRICS_NAME = "metrics.jsonl"
RESULTS_NAME = "results.json"
LOCK_NAME = ".lock"


class Interrupted(Exception):
    """Ctrl-C during a run; the message says where it stopped and how to resume."""


class MetricsLog:
    """Append-only JSON-lines file, one object per record, flushed as written; opened at the first
    record (a run that fails before training leaves no file). An OSError names the path."""

    def __init__(self, path: str, append: bool):
        self.path, self.append, self._f = path, append, None

    def write(self, **record) -> None:
        record.setdefault("time", round(time.time(), 3))
        try:
            if self._f is None:
                self._f = open(self.path, "a" if self.append else "w", encoding="utf-8")
            self._f.write(json.dumps(record, sort_keys=True) + "\n")
            self._f.flush()
        except OSError as e:
            raise OSError(e.errno, e.strerror or str(e), self.path) from None

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


@contextlib.contextmanager
def _sigint_held():
    """A Ctrl-C inside the block is held and acted on when the block ends: a checkpoint's
    replacement and the record of its epoch happen together, so an interrupt message never names an
    epoch the file no longer holds. (A Python-level handler, not a signal mask: the OS may deliver
    SIGINT to any thread of the process, e.g. a BLAS worker, but Python runs handlers in the main
    thread.) Outside the main thread the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            if callable(previous):
                previous(signal.SIGINT, held[0])
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


def resume_path(resume, out: str) -> str | None:
    """--resume: None (fresh run), True/'' (the checkpoint in --out), or an explicit checkpoint path."""
    if resume is None or resume is False:
        return None
    if resume is True or resume == "":
        return os.path.join(out, CHECKPOINT_NAME)
    return os.fspath(resume)


def _listdir(path: str) -> list[str]:
    return os.listdir(path) if os.path.isdir(path) else []


def output_folder(cfg, model: str) -> str:
    """--out, or runs/<model>; a dry run without --out gets a new temporary folder, so a smoke test
    never touches a real run's outputs."""
    if cfg.out:
        return os.fspath(cfg.out)
    if cfg.dry_run:
        return tempfile.mkdtemp(prefix=f"fastconv-dry-run-{model}-")
    return os.path.join("runs", model)


class Run:
    """The output folder of one run (see the module docstring); use as a context manager.

    ``epoch`` (1-based, the epoch being trained) and ``step`` are kept current by the trainer
    for the messages of a stop.
    """

    def __init__(self, cfg, kind: str, model: str):
        self.cfg, self.kind = cfg, kind
        self._created = not cfg.out and cfg.dry_run  # a temporary folder is this run's own
        self.out = cfg.out = output_folder(cfg, model)
        self.checkpoint = os.path.join(self.out, CHECKPOINT_NAME)
        self.source = resume_path(cfg.resume, self.out)
        self.epoch = self.step = 0
        self.saved_epoch = None  # the epoch of the newest checkpoint this run wrote or resumed from
        self._lock_fd = None
        self.metrics = None

    # ---- the folder and its lock ----
    def __enter__(self):
        try:
            self._open()
        except BaseException:
            self._release(failed=True)
            raise
        return self

    def _open(self) -> None:
        self._created = self._created or not os.path.isdir(self.out)
        try:
            os.makedirs(self.out, exist_ok=True)
            self._lock_fd = fd = os.open(os.path.join(self.out, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ValueError(f"out: got {self.out!r}, which cannot be written ({e.strerror or e}); expected a "
                             "writable directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            self._lock_fd = None
            raise ValueError(f"out: {self.out!r} is in use by another fastconv run (PID {holder}); expected a folder "
                             "no other run writes to: wait for that run to end, or pass another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        continues = self.source is not None and os.path.exists(self.source) and os.path.exists(self.checkpoint) \
            and os.path.samefile(self.source, self.checkpoint)
        if os.path.exists(self.checkpoint) and not continues:
            if not self.cfg.overwrite:
                raise ValueError(f"out: {self.out!r} already holds a run's checkpoint; expected a folder without one: "
                                 "use --resume to continue that run, a new --out, or --overwrite to replace it")
            old = [CHECKPOINT_NAME, METRICS_NAME, RESULTS_NAME] + [
                os.path.join("samples", n) for n in _listdir(os.path.join(self.out, "samples")) if n.startswith("iter_")]
            for name in old:
                if os.path.exists(os.path.join(self.out, name)):
                    os.unlink(os.path.join(self.out, name))
            say(f"--overwrite: the previous run in {self.out} is replaced")
        self.metrics = MetricsLog(os.path.join(self.out, METRICS_NAME), append=self.source is not None)

    def __exit__(self, kind, exc, tb):
        self._release(failed=kind is not None)
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            raise Interrupted(self._interrupted()) from None
        return False

    def _release(self, failed: bool) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self._lock_fd is not None:
            if failed and self._created and os.listdir(self.out) == [LOCK_NAME]:
                os.unlink(os.path.join(self.out, LOCK_NAME))  # a run that failed at once leaves no folder
                os.rmdir(self.out)
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _interrupted(self) -> str:
        where = f"interrupted at epoch {self.epoch} step {self.step}" if self.epoch else "interrupted before training"
        if self.saved_epoch is not None and os.path.exists(self.checkpoint):
            return (f"{where}; the last checkpoint is {self.checkpoint} (epoch {self.saved_epoch}); resume with "
                    f"--resume --out {self.out}")
        return f"{where}; no checkpoint was written; start the run again"

    # ---- checkpoint ----
    def resume(self, keys, arrays=()):
        """(tensors, metadata) of the checkpoint to continue, checked to hold ``keys`` and ``arrays``."""
        tensors, meta = load_checkpoint(self.source, kind=self.kind, keys=keys, arrays=arrays)
        self.saved_epoch = meta["epoch"]
        return tensors, meta

    def check_same_run(self, meta: dict, arch: dict, must_match, train_images: int, data_sha256: str) -> None:
        """A resumed run must continue the checkpoint's: the same architecture, every setting in
        ``must_match`` (--epochs/--iterations may differ; --lr with --allow-lr-change) and the same
        training images (count and SHA-256). A mismatch names the flag and both values."""
        src, cfg = self.source, self.cfg
        if meta["arch"] != arch:
            raise ValueError(f"resume: checkpoint {src!r} has architecture {meta['arch']}, but the flags give {arch}; "
                             "expected the same model flags and data set")
        old_cfg = meta["config"]
        for key in must_match:
            old, new = old_cfg[key], getattr(cfg, key)
            if old == new or (key == "lr" and cfg.allow_lr_change):
                continue
            flag = "--" + key.replace("_", "-")
            hint = " (or add --allow-lr-change to train on with the new rate)" if key == "lr" else ""
            raise ValueError(f"{flag}: got {new!r}, but the checkpoint {src!r} was trained with {old!r}; expected "
                             f"the same value when resuming{hint} — only --epochs/--iterations may differ")
        if meta["train_images"] != train_images:
            raise ValueError(f"--train-size/--data-dir: got {train_images} training images, but the checkpoint "
                             f"{src!r} was trained on {meta['train_images']}; expected the same training set when "
                             "resuming")
        if meta["data_sha256"] != data_sha256:
            raise ValueError(f"--data-dir/--dataset: the training images and labels have SHA-256 "
                             f"{data_sha256[:16]}…, "
                             f"but the checkpoint {src!r} was trained on data with {meta['data_sha256'][:16]}…; "
                             "expected the same training set when resuming")
        if cfg.allow_lr_change and old_cfg["lr"] != cfg.lr:
            say(f"resume: --lr {cfg.lr} replaces the checkpoint's {old_cfg['lr']} (--allow-lr-change)")

    def check_loss(self, value: float, what: str) -> None:
        check_finite(value, what, f"epoch {self.epoch}, step {self.step}",
                     self.checkpoint if self.saved_epoch is not None else None)

    def save(self, tensors: dict, meta: dict) -> None:
        """Write the checkpoint, unless a saved float (parameter, optimizer state, BatchNorm
        statistic, ...) is NaN or infinite: then NonFiniteLossError, and the last good one stays."""
        arrays = {name: host_array(a) for name, a in tensors.items()}
        for name, a in arrays.items():
            if a.dtype.kind in "fc" and not np.isfinite(a).all():
                bad = int(a.size - np.count_nonzero(np.isfinite(a)))
                keep = (f"the last good checkpoint {self.checkpoint!r} (epoch {self.saved_epoch}) is kept; resume "
                        "from it with a smaller --lr and --allow-lr-change" if self.saved_epoch is not None
                        else "no checkpoint had been written yet")
                raise NonFiniteLossError(f"{name} has {bad} non-finite value(s) of {a.size} at epoch {self.epoch}, "
                                         f"step {self.step}; training stopped before saving them, {keep}")
        with _sigint_held():  # an interrupt must name the epoch the file holds
            save_checkpoint(self.checkpoint, arrays, meta)
            self.saved_epoch = meta["epoch"]

    # ---- outputs ----
    def log(self, **record) -> None:
        self.metrics.write(**record)

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def plot(self, name: str, series: dict, title: str, xlabel: str, ylabel: str = "") -> None:
        plot_curves(self.path(name), series, title=title, xlabel=xlabel, ylabel=ylabel)

    def finish(self, result: dict) -> dict:
        """Write ``result`` (plus the output folder) to results.json atomically and return it."""
        result = dict(result, out=self.out)
        atomic_write(self.path(RESULTS_NAME), (json.dumps(result, indent=1) + "\n").encode())
        return result
