"""What the CNN and GAN trainers share: settings, device choice, messages, argument and loss checks."""

from __future__ import annotations

import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass

import numpy as np

from .. import backend

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
    progress: bool | None = None       # None: a bar on a terminal, plain lines elsewhere
    progress_seconds: float = 10.0     # plain progress lines: at most one every this many seconds
    allow_lr_change: bool = False      # resume: train on with a --lr other than the checkpoint's
    overwrite: bool = False            # a fresh run may replace the run whose checkpoint is in --out
    out: str | None = None             # None: runs/<model>, or a temporary folder for a dry run
    graph: str | None = None           # "on" | "off" | None: on where the step can be captured (GPU)


class NonFiniteLossError(RuntimeError):
    """Training stopped because a loss, or a value about to be saved, became NaN or infinite; the
    last good checkpoint is kept."""


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
    """"cpu" or "cuda" from --device auto|cpu|cuda|emu ("emu": "cuda" on fastconv.emu's CPU stand-in
    for CuPy); selects the GPU kernel family.

    "cuda" without a usable GPU raises (fastconv.backend.require_gpu); "auto" falls back to the
    CPU and says so once per process.
    """
    global _fallback_said
    if device not in ("auto", "cpu", "cuda", "emu"):
        raise ValueError(f"device: got {device!r}, expected 'auto', 'cpu', 'cuda' or 'emu'")
    if device == "emu":  # the CUDA C family on the CPU (fastconv.emu) stands in for the GPU
        from ..emu import install
        install()
        device = "cuda"
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


def check_common(cfg) -> None:
    """The RunConfig settings every trainer checks (the API's counterpart of the CLI's types)."""
    for name in ("batch_size", "log_every"):
        check_positive(getattr(cfg, name), name)
    check_positive(cfg.lr, "lr", float)
    check_nonnegative(cfg.progress_seconds, "progress_seconds")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, (int, np.integer)) or cfg.seed < 0:
        raise ValueError(f"seed: got {cfg.seed!r}, expected an int >= 0")
    if cfg.train_size is not None:
        check_positive(cfg.train_size, "train_size")


def first_n(cfg, arrays, available: int):
    """``arrays`` cut to --train-size items; more than ``available`` is an error, not a silent clamp."""
    if cfg.train_size is None:
        return arrays
    if cfg.train_size > available:
        raise ValueError(f"train_size: got {cfg.train_size}, but the training set has {available} images; expected "
                         f"at most {available}")
    return [a[:cfg.train_size] for a in arrays]


def config_json(cfg) -> dict:
    """The run's settings as saved in checkpoints (resume: the checkpoint path as a string)."""
    d = asdict(cfg)
    d["resume"] = None if d["resume"] in (None, False) else str(d["resume"])
    return d


class OutOfMemory(MemoryError):
    """Not enough memory for something the run needs; the message names it and its size."""


def allocating(what: str, make):
    """make(), with a MemoryError that names ``what`` was being allocated and the flags that size it."""
    try:
        return make()
    except OutOfMemory:
        raise
    except MemoryError as e:
        raise OutOfMemory(f"not enough memory for {what} ({e or 'no details'}); expected smaller sizes "
                          "(--channels, --hidden, --width, --g-hidden, --d-hidden, --train-size)") from None


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2 ** 30:,.1f} GiB"


def check_fits(nbytes: int, what: str) -> None:
    """MemoryError naming ``what`` and its size when ``nbytes`` exceed this machine's memory: a clear
    error up front, where an allocation might fail late or, with overcommit, not at all."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf: leave it to the allocation
        return
    if nbytes > total:
        raise OutOfMemory(f"{what} needs {_gib(nbytes)}, more than this machine's {_gib(total)} of memory")
