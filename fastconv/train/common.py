"""What the CNN and GAN trainers share: device choice, metrics log, progress bars, loss checks."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from .. import backend

CHECKPOINT_NAME = "checkpoint.safetensors"
METRICS_NAME = "metrics.jsonl"


@dataclass
class RunConfig:
    """Settings every training run shares (the common flags of ``fastconv train``)."""
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    seed: int = 0
    device: str = "auto"
    kernels: str | None = None
    resume: object = None
    dry_run: bool = False
    train_size: int | None = None
    log_every: int = 50
    progress: bool | None = None
    allow_lr_change: bool = False      # resume: train on with a --lr other than the checkpoint's
    graph: str | None = None           # "on" | "off" | None: on where the step can be captured (GPU)


class NonFiniteLossError(RuntimeError):
    """Training stopped because a loss became NaN or infinite; the last good checkpoint is kept."""


def say(msg: str) -> None:
    """One line for the user, printed so that it does not break a tqdm bar."""
    try:
        from tqdm import tqdm
        tqdm.write(msg, file=sys.stdout)
    except ImportError:
        print(msg, flush=True)
    sys.stdout.flush()


_fallback_said = False


def resolve_device(device: str, kernels: str | None = None) -> str:
    """"cpu" or "cuda" from --device auto|cpu|cuda; selects the GPU kernel family.

    "cuda" without a usable GPU raises (fastconv.backend.require_gpu); "auto" falls back to the
    CPU and says so once per process.
    """
    global _fallback_said
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: got {device!r}, expected 'auto', 'cpu' or 'cuda'")
    if kernels is not None:
        backend.set_kernel_family(kernels)
    backend.check_environment()  # a bad FASTCONV_KERNELS is an error on CPU runs too
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        backend.require_gpu("device")
        if not backend.gpu_available():
            raise RuntimeError("device: 'cuda' asked for, but CuPy cannot run a kernel on the GPU (driver or "
                               "toolkit mismatch?); expected a working CUDA device, or pass --device cpu")
        return "cuda"
    if backend.gpu_available():
        return "cuda"
    if not _fallback_said:
        say("device auto: no usable CUDA GPU (CuPy missing or no device), using the CPU (NumPy)")
        _fallback_said = True
    return "cpu"


def use_graph(graph, device: str, why_not: str | None = None) -> bool:
    """Whether a run replays its training step as one CUDA graph (fastconv.graph.StepGraph):
    ``--graph off`` never, ``on`` always (an error where it cannot), None (the default) on a GPU
    when the step can be captured. ``why_not`` says why this run's step cannot be (None: it can)."""
    if graph not in (None, "on", "off"):
        raise ValueError(f"graph: got {graph!r}, expected 'on' or 'off'")
    if graph == "on" and device != "cuda":
        raise ValueError("graph: got 'on' on the CPU, expected --device cuda (a CUDA graph needs a GPU) or --graph off")
    if graph == "on" and why_not is not None:
        raise ValueError(f"graph: got 'on', but {why_not}; expected --graph off")
    return graph != "off" and device == "cuda" and why_not is None


def xp_for(device: str):
    return backend.require_gpu() if device == "cuda" else np


def to_host_float(x) -> float:
    """A Python float from a 0-d numpy/cupy array (a device sync on the GPU)."""
    return float(x.get()) if hasattr(x, "get") else float(x)


def check_finite(value: float, what: str, where: str, checkpoint: str | None) -> None:
    if math.isfinite(value):
        return
    keep = (f"the last good checkpoint {checkpoint!r} is kept; resume from it with a smaller --lr and "
            "--allow-lr-change"
            if checkpoint and os.path.exists(checkpoint) else "no checkpoint had been written yet")
    raise NonFiniteLossError(f"{what} became {value} at {where}; training stopped, {keep}")


class MetricsLog:
    """Append-only JSON-lines file, one object per record, flushed as written."""

    def __init__(self, path: str, append: bool):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._f = open(path, "a" if append else "w", encoding="utf-8")

    def write(self, **record) -> None:
        record.setdefault("time", round(time.time(), 3))
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _NoBar:
    """Stands in for a tqdm bar when tqdm is not installed."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        pass


def progress(total: int, desc: str, enabled: bool | None):
    """A tqdm bar counting images (so its rate is images/s); enabled None: only on a terminal."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="img", unit_scale=True, leave=False, dynamic_ncols=True,
                disable=(None if enabled is None else not enabled), file=sys.stderr)


def parse_int_list(text, name: str) -> list[int]:
    """'32,64' -> [32, 64]; '' -> []; each must be a positive int."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [t for t in str(text).replace(" ", "").split(",") if t]
    try:
        values = [int(t) for t in items]
    except ValueError:
        raise ValueError(f"{name}: got {text!r}, expected comma-separated positive ints like '32,64'") from None
    if any(v < 1 for v in values):
        raise ValueError(f"{name}: got {text!r}, expected positive ints")
    return values


def resume_path(resume, out: str) -> str | None:
    """--resume: None (fresh run), True/'' (the checkpoint in --out), or an explicit checkpoint path."""
    if resume is None or resume is False:
        return None
    if resume is True or resume == "":
        return os.path.join(out, CHECKPOINT_NAME)
    return os.fspath(resume)


def check_positive(value, name: str, kind=int):
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) if kind is int else \
        isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if not ok or not value > 0 or (kind is float and not math.isfinite(value)):
        raise ValueError(f"{name}: got {value!r}, expected a positive {'int' if kind is int else 'number'}")
    return value


def check_nonnegative(value, name: str):
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if not ok or not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{name}: got {value!r}, expected a finite number >= 0")
    return value


def require_extras() -> None:
    """Import safetensors (checkpoints) and Pillow (PNGs) now, so that a missing one is an error
    before any data is read or any step trained, not after the first epoch."""
    from ..checkpoint import _safetensors
    from .images import _pil
    _safetensors()
    _pil()


def _cannot_write(directory: str) -> str | None:
    """Why no file can be created in ``directory`` (created if missing), or None when one can."""
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


def writable_dir(path, name: str) -> str:
    """Create ``path`` if needed and check that a file can be written in it; else a ValueError naming ``name``."""
    path = os.fspath(path)
    why = _cannot_write(path)
    if why:
        raise ValueError(f"{name}: got {path!r}, which cannot be written ({why}); expected a writable directory")
    return path


def writable_file(path, name: str) -> str:
    """Check that file ``path`` can be written (its directory is created if needed); else a ValueError."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{name}: got {path!r}, which is a directory; expected a file path")
    why = _cannot_write(os.path.dirname(os.path.abspath(path)))
    if why:
        raise ValueError(f"{name}: got {path!r}, whose directory cannot be written ({why}); expected a file path "
                         "in a writable directory")
    return path


def check_resume_config(src: str, meta: dict, cfg, keys, train_images: int) -> None:
    """A resumed run must continue the checkpoint's run: every setting in ``keys`` that changes the
    result must equal the checkpoint's (--epochs/--iterations may differ: that is how a run is
    extended; --lr may differ with cfg.allow_lr_change). A mismatch names the flag and both values."""
    old_cfg = meta["config"]
    for key in keys:
        old, new = old_cfg[key], getattr(cfg, key)
        if old == new or (key == "lr" and getattr(cfg, "allow_lr_change", False)):
            continue
        flag = "--" + key.replace("_", "-")
        hint = " (or add --allow-lr-change to train on with the new rate)" if key == "lr" else ""
        raise ValueError(f"{flag}: got {new!r}, but the checkpoint {src!r} was trained with {old!r}; expected the "
                         f"same value when resuming{hint} — only --epochs/--iterations may differ")
    if meta["train_images"] != train_images:
        raise ValueError(f"--train-size/--data-dir: got {train_images} training images, but the checkpoint {src!r} "
                         f"was trained on {meta['train_images']}; expected the same training set when resuming")
    if getattr(cfg, "allow_lr_change", False) and old_cfg["lr"] != cfg.lr:
        say(f"resume: --lr {cfg.lr} replaces the checkpoint's {old_cfg['lr']} (--allow-lr-change)")
