"""Read and write the IDX format of MNIST, Fashion-MNIST, KMNIST and EMNIST, gzipped or raw.

An IDX file is a 4-byte magic number ``00 00 TT DD`` (TT the element type, DD the number of
dimensions), DD big-endian uint32 sizes, then the elements in C order, big-endian. Everything is
checked against the file length, so a truncated, padded or foreign file is an :class:`IdxError`
that names the file, never a silently wrong array.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib

import numpy as np

# element type byte -> big-endian dtype (the IDX definition's six types)
_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxError(ValueError):
    """A file that is not a well-formed IDX file (bad magic, wrong dimensions, wrong length)."""


def _read_bytes(path: str) -> bytes:
    """The IDX bytes of ``path``, gunzipped when it is a .gz. A gzip stream is inflated only as far
    as its IDX header says the file reaches (plus one byte, to see trailing data), so a file
    that inflates to gigabytes is an IdxError, not a MemoryError; a MemoryError names the file."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    expected = None
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as g:
            data = g.read(4)
            if len(data) == 4:
                data += g.read(4 * data[3])
            expected = _expected_length(data)
            chunks, size = [data], len(data)
            while expected is not None and size <= expected:
                chunk = g.read(min(expected + 1 - size, 1 << 26))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise IdxError(f"path: {path!r} is a damaged or truncated gzip file ({e}); "
                       "expected a complete .gz of an IDX file — download it again") from None
    except MemoryError:
        raise MemoryError(f"path {path!r}: not enough memory to inflate it ({expected} bytes by its IDX header)") \
            from None
    if expected is not None and size > expected:
        raise IdxError(f"path {path!r}: inflates to more than the {expected} bytes its IDX header gives (the file "
                       "has trailing bytes); expected exactly that length")
    return b"".join(chunks)


def _expected_length(head: bytes) -> int | None:
    """The file length an IDX header promises, or None when ``head`` is no complete IDX header."""
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in _TYPES or len(head) < 4 + 4 * head[3]:
        return None
    shape = np.frombuffer(head, dtype=">u4", count=head[3], offset=4)
    return 4 + 4 * head[3] + math.prod(int(d) for d in shape) * _TYPES[head[2]].itemsize


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file into a native-endian array of its shape."""
    if len(data) < 4:
        raise IdxError(f"{name}: got {len(data)} bytes, expected at least a 4-byte IDX header")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _TYPES:
        raise IdxError(f"{name}: magic number 0x{data[:4].hex()} is not an IDX magic number; expected "
                       f"0x0000TTDD with type TT in {{{', '.join(f'{c:02x}' for c in _TYPES)}}}")
    if ndim < 1:
        raise IdxError(f"{name}: header gives 0 dimensions, expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{name}: got {len(data)} bytes, expected a {header}-byte header for {ndim} dimensions "
                       "(the file is truncated)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _TYPES[code]
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no int64 wrap-around
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise IdxError(f"{name}: got {len(data)} bytes, expected {expected} for a {dtype.name} array of shape "
                       f"{shape} (the file {what})")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike, ndim: int | None = None, dims: tuple | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a native-endian array.

    ndim: the number of dimensions the caller expects (None: any).
    dims: expected sizes, one per dimension, None for "any" (e.g. ``(None, 28, 28)``).
    Raises IdxError naming the file for any mismatch, FileNotFoundError when it does not exist.
    """
    path = os.fspath(path)
    arr = parse_idx(_read_bytes(path), name=f"path {path!r}")
    if ndim is not None and arr.ndim != ndim:
        raise IdxError(f"path {path!r}: got a {arr.ndim}-d array of shape {arr.shape}, expected {ndim}-d")
    if dims is not None:
        if len(dims) != arr.ndim or any(d is not None and d != s for d, s in zip(dims, arr.shape)):
            want = "(" + ", ".join("*" if d is None else str(d) for d in dims) + ")"
            raise IdxError(f"path {path!r}: got shape {arr.shape}, expected {want}")
    return arr


def write_idx(path: str | os.PathLike, arr: np.ndarray, compress: bool | None = None) -> None:
    """Write ``arr`` as an IDX file; gzipped when ``compress`` is True or the name ends in .gz.

    The gzip header carries no time stamp, so equal arrays give byte-identical files.
    """
    path = os.fspath(path)
    arr = np.asarray(arr)
    key = arr.dtype.newbyteorder("=") if arr.dtype.byteorder not in ("=", "|") else arr.dtype
    code = _CODES.get(np.dtype(key))
    if code is None:
        raise TypeError(f"arr: got dtype {arr.dtype}, expected one of uint8, int8, int16, int32, float32, float64")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"arr: got {arr.ndim} dimensions, expected 1 to 255")
    body = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body += np.ascontiguousarray(arr, dtype=_TYPES[code]).tobytes()
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        body = gzip.compress(body, compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        f.write(body)
