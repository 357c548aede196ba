"""Checkpoints: safetensors files written atomically and read back without pickle.

A checkpoint holds named arrays (weights, buffers, optimizer state, ...) and one JSON document
of metadata (kind, epoch, step, configuration, the numpy Generator state, ...), stored as the
safetensors ``__metadata__`` entry ``"fastconv"``. A SHA-256 over every array's name, dtype,
shape and bytes is stored beside it, so a damaged file is caught on load instead of resuming
from wrong weights.

Writing goes to a temporary file in the destination directory, is fsync'ed, then renamed over
the old checkpoint with ``os.replace``: a crash at any moment leaves either the old or the new
checkpoint, never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile

import numpy as np

FORMAT = "fastconv-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt or of the wrong kind."""


# ---------------------------------------------------------------------------------------------
# numpy Generator state <-> JSON (big integers as decimal strings, arrays as lists)

def _encode(v):
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return {"__array__": str(v.dtype), "values": [str(int(e)) for e in v.ravel()], "shape": list(v.shape)}
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return {"__int__": str(int(v))}
    return v


def _decode(v):
    if isinstance(v, dict):
        if "__int__" in v:
            return int(v["__int__"])
        if "__array__" in v:
            return np.array([int(e) for e in v["values"]], dtype=v["__array__"]).reshape(v["shape"])
        return {k: _decode(x) for k, x in v.items()}
    return v


def rng_state(rng: np.random.Generator) -> dict:
    """A JSON-ready copy of a Generator's bit-generator state (exact; 128-bit integers survive)."""
    return _encode(rng.bit_generator.state)


def rng_from_state(state: dict) -> np.random.Generator:
    """A Generator in exactly the state :func:`rng_state` recorded."""
    try:
        st = _decode(state)
        bg = getattr(np.random, st["bit_generator"])()
        bg.state = st
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"rng state: got {str(state)[:120]!r}, expected a numpy bit-generator state ({e})") \
            from None
    return np.random.Generator(bg)


# ---------------------------------------------------------------------------------------------
# save / load

def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = _host(tensors[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _host(a) -> np.ndarray:
    if hasattr(a, "get"):  # cupy
        a = a.get()
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray would make 0-d 1-d)


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError:
        raise RuntimeError("checkpoints need the safetensors package; expected `pip install 'fastconv[train]'`") \
            from None
    return st


def save_checkpoint(path: str | os.PathLike, tensors: dict, meta: dict) -> None:
    """Write ``tensors`` (name -> numpy/cupy array) and ``meta`` (JSON-able dict) to ``path`` atomically."""
    save = _safetensors().save

    path = os.fspath(path)
    arrays = {}
    for name, a in tensors.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"tensors: got key {name!r}, expected non-empty strings")
        arrays[name] = _host(a)
    doc = dict(meta, format=FORMAT)
    blob = save(arrays, metadata={"fastconv": json.dumps(doc, sort_keys=True), "sha256": _digest(arrays)})
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def load_checkpoint(path: str | os.PathLike, kind: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint: (name -> numpy array, metadata dict). Raises CheckpointError when it is damaged.

    kind: when given, the metadata's "kind" must equal it (e.g. "cnn", "gan").
    """
    load = _safetensors().load
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint: {path!r} does not exist, expected a .safetensors file written by "
                              "fastconv train")
    with open(path, "rb") as f:
        blob = f.read()

    def bad(why):
        return CheckpointError(f"checkpoint: {path!r} is not a valid fastconv checkpoint ({why}); "
                               "expected a complete file written by fastconv train — it may be truncated or "
                               "corrupt; use an earlier checkpoint or retrain")

    if len(blob) < 8:
        raise bad(f"{len(blob)} bytes, too short for a safetensors header")
    (hlen,) = struct.unpack("<Q", blob[:8])
    if hlen > len(blob) - 8:
        raise bad(f"header length {hlen} runs past the end of the {len(blob)}-byte file")
    try:
        header = json.loads(blob[8:8 + hlen])
        file_meta = header.get("__metadata__") or {}
        meta = json.loads(file_meta["fastconv"])
        digest = file_meta["sha256"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise bad(f"unreadable header or metadata: {e}") from None
    try:
        tensors = load(blob)
    except Exception as e:  # safetensors raises its own error types for damaged data
        raise bad(f"safetensors could not read the arrays: {e}") from None
    if _digest(tensors) != digest:
        raise bad("the arrays' SHA-256 does not match the one stored when it was written")
    if meta.get("format") != FORMAT:
        raise bad(f"format {meta.get('format')!r}, expected {FORMAT!r}")
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"checkpoint: {path!r} holds a {meta.get('kind')!r} model, expected a {kind!r} one")
    return tensors, meta


def split_prefix(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries named ``prefix + name``, keyed by ``name`` (e.g. "model." -> a state_dict)."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def with_prefix(d: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in d.items()}
