"""Checkpoints: safetensors files written atomically and read back without pickle.

A checkpoint holds named arrays (weights, buffers, optimizer state, ...) and one JSON document
of metadata (kind, epoch, step, configuration, the numpy Generator state, ...), stored as the
safetensors ``__metadata__`` entry ``"fastconv"``. A SHA-256 over that metadata text and every
array's name, dtype, shape and bytes is stored beside it, so a damaged or edited file (an
array, or a value such as ``epoch`` in the metadata) is caught on load instead of resuming from
wrong weights or a wrong position. ``load_checkpoint(..., keys=...)`` also checks that the
metadata holds what the caller reads, so a foreign file is a clear error, not a KeyError.

Writing goes to a temporary file in the destination directory, is fsync'ed, then renamed over
the old checkpoint with ``os.replace``: a crash at any moment leaves either the old or the new
checkpoint, never a half-written one. A temporary file left behind by a process killed between
the write and the rename (``.<name>.<random>.tmp``) is removed by the next save to that path.
The file gets the mode a new file gets under the umask (not mkstemp's 0600), and an OSError
(a full disk included) names the path being written.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile

import numpy as np

FORMAT = "fastconv-checkpoint-2"  # 2: the SHA-256 covers the metadata too


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

def _digest(tensors: dict[str, np.ndarray], meta_text: str) -> str:
    h = hashlib.sha256()
    h.update(f"meta|{len(meta_text.encode())}|".encode())
    h.update(meta_text.encode())
    for name in sorted(tensors):
        a = host_array(tensors[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def host_array(a) -> np.ndarray:
    """A C-contiguous numpy array from a numpy or cupy array (a device copy for cupy)."""
    if hasattr(a, "get"):  # cupy
        a = a.get()
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray would make 0-d 1-d)


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError:
        from .extras import install_hint
        raise RuntimeError(f"checkpoints need the safetensors package; expected `{install_hint('safetensors')}`") \
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
        arrays[name] = host_array(a)
    doc = dict(meta, format=FORMAT)
    text = json.dumps(doc, sort_keys=True)
    atomic_write(path, save(arrays, metadata={"fastconv": text, "sha256": _digest(arrays, text)}))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (temporary file, fsync, rename, fsync of the directory).

    The file's mode is 0666 less the umask, as for any new file. An OSError names ``path``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        _remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o666 & ~_umask())
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        if e.filename == path:
            raise
        raise OSError(e.errno, e.strerror or str(e), path) from None
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


def _temp_prefix(path: str) -> str:
    return "." + os.path.basename(path) + "."


def _remove_stale_temps(path: str) -> None:
    """Delete ``.<name>.*.tmp`` files that a killed writer left next to ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(path)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _lookup(meta: dict, dotted: str):
    """meta["a"]["b"] for "a.b"; raises KeyError(dotted) when a level is missing or not a dict."""
    v = meta
    for part in dotted.split("."):
        if not isinstance(v, dict) or part not in v:
            raise KeyError(dotted)
        v = v[part]
    return v


_TYPE_NAMES = {int: "an int", float: "a number", str: "a string", list: "a list", dict: "an object"}


def _has_type(v, kind) -> bool:
    if kind is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if kind is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, kind)


def require_keys(meta: dict, keys, path) -> None:
    """CheckpointError naming ``path`` and the key unless every dotted key in ``keys`` is in ``meta``.

    ``keys`` is a sequence of dotted keys, or a dict of dotted key -> type (int, float, str, list,
    dict, or None for any) that the value must also have; a list's items must be ints when the key
    is listed with type list (architecture sizes).
    """
    types = keys if isinstance(keys, dict) else dict.fromkeys(keys)
    for key, kind in types.items():
        try:
            v = _lookup(meta, key)
        except KeyError:
            raise CheckpointError(f"checkpoint: {os.fspath(path)!r} has no metadata key {key!r}; expected the keys "
                                  f"{', '.join(types)} of a checkpoint written by fastconv train") from None
        if kind is None:
            continue
        ok = _has_type(v, kind) and (kind is not list or all(_has_type(e, int) for e in v))
        if not ok:
            want = _TYPE_NAMES[kind] + (" of ints" if kind is list else "")
            raise CheckpointError(f"checkpoint: {os.fspath(path)!r} has metadata {key!r} = {str(v)[:60]!r} "
                                  f"({type(v).__name__}); expected {want}, as fastconv train writes it")


def load_checkpoint(path: str | os.PathLike, kind: str | None = None, keys=(), arrays=()) \
        -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint: (name -> numpy array, metadata dict). Raises CheckpointError when it is damaged.

    kind: when given, the metadata's "kind" must equal it (e.g. "cnn", "gan").
    keys: metadata entries the caller will read ("arch.nz" for meta["arch"]["nz"]); a missing one is
        a CheckpointError naming the file and the key.
    arrays: array names the caller will read; a missing one is a CheckpointError likewise.
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
    if not isinstance(meta, dict):
        raise bad(f"metadata is a {type(meta).__name__}, expected a JSON object")
    if meta.get("format") != FORMAT:
        raise bad(f"format {meta.get('format')!r}, expected {FORMAT!r}"
                  + (" (an older fastconv wrote it; its SHA-256 did not cover the metadata)"
                     if meta.get("format") == "fastconv-checkpoint-1" else ""))
    if _digest(tensors, file_meta["fastconv"]) != digest:
        raise bad("the SHA-256 of its metadata and arrays does not match the one stored when it was written")
    if kind is not None:
        if "kind" not in meta:
            raise CheckpointError(f"checkpoint: {path!r} has no metadata key 'kind'; expected a {kind!r} checkpoint "
                                  "written by fastconv train")
        if meta["kind"] != kind:
            raise CheckpointError(f"checkpoint: {path!r} holds a {meta['kind']!r} model, expected a {kind!r} one")
    require_keys(meta, keys, path)
    for name in arrays:
        if name not in tensors:
            raise CheckpointError(f"checkpoint: {path!r} has no array {name!r}; expected the arrays "
                                  f"{', '.join(arrays)} of a checkpoint written by fastconv train")
    return tensors, meta


def split_prefix(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries named ``prefix + name``, keyed by ``name`` (e.g. "model." -> a state_dict)."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def with_prefix(d: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in d.items()}
