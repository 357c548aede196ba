"""Device arrays of the CuPy stand-in: a numpy.ndarray subclass whose memory plays device memory.

What makes it behave like a CuPy array rather than a NumPy one:

- mixing it with a host (numpy) array in an operation raises TypeError, as CuPy does;
- reductions and scalar indexing give 0-d device arrays, not numpy scalars; the host sees a value
  only through ``.get()``, ``asnumpy``, ``float()``/``int()``/``bool()``/``.item()``, each counted
  as a device->host copy (and refused during graph capture, like a synchronous copy on a GPU);
- ``fill`` and assignment (``a[...] = b``) on a stream that captures a graph are captured (done by
  each launch of the graph, reading ``b`` then), as CuPy's kernels for them are on a GPU;
- ``.data.ptr`` and ``.device`` exist; arrays from the creation functions are 256-byte aligned
  like CuPy's pool, ``empty`` memory holds 0xFF bytes (NaN) so a forgotten write shows, and the
  bytes alive count against the memory pool's limit (``OutOfMemoryError`` past it).
"""

from __future__ import annotations

import weakref

import numpy as np

from . import state

ALIGN = 256
TOTAL_MEMORY = 80 * 2**30       # bytes the stand-in device reports (an 80 GB H100)


class OutOfMemoryError(MemoryError):
    """cupy.cuda.memory.OutOfMemoryError: an allocation passed the memory pool's limit."""

    def __init__(self, size, total, limit=0):
        self.size, self.total, self.limit = size, total, limit
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes, "
                         f"limit set to: {limit:,} bytes).")


class MemoryPool:
    """cupy.get_default_memory_pool(): bytes of live device arrays and an optional limit."""

    def __init__(self):
        self._used = 0
        self._limit = 0

    def used_bytes(self) -> int:
        return self._used

    def total_bytes(self) -> int:
        return self._used

    def free_bytes(self) -> int:
        return 0

    def free_all_blocks(self, stream=None) -> None:
        """Nothing is cached: freed arrays return their memory at once."""

    def set_limit(self, size=None, fraction=None) -> None:
        if fraction is not None:
            size = int(TOTAL_MEMORY * fraction)
        self._limit = int(size or 0)

    def get_limit(self) -> int:
        return self._limit

    def n_free_blocks(self) -> int:
        return 0


POOL = MemoryPool()
_capture_check = [lambda what: None]   # set by device.py: raises while a stream captures
_capturing = [lambda: None]            # set by device.py: the stream capturing now, or None


class _Deferred:
    """An array write captured into a graph (a fill, an assignment): done when the graph is launched
    (Graph.launch calls _execute), reading its source then, as a GPU kernel would."""

    def __init__(self, write, *args):
        self.write, self.args = write, args

    def _execute(self, rec):
        self.write(*self.args)


def _free(n: int) -> None:
    POOL._used -= n


def empty(shape, dtype=float, order="C"):
    """A new device array of 0xFF bytes (NaN for floats; left unfilled when ``SETTINGS.fill`` is off),
    256-byte aligned (float64 by default, as CuPy)."""
    if order not in ("C", None):
        raise ValueError(f"order: got {order!r}, expected 'C' (the stand-in allocates C-contiguous arrays)")
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if POOL._used + nbytes > (POOL._limit or TOTAL_MEMORY):
        raise OutOfMemoryError(nbytes, POOL._used, POOL._limit or TOTAL_MEMORY)
    buf = np.empty(nbytes + ALIGN, np.uint8)
    off = (-buf.ctypes.data) % ALIGN
    raw = buf[off:off + nbytes]
    if state.SETTINGS.fill:
        raw.fill(0xFF)
    POOL._used += nbytes
    weakref.finalize(buf, _free, nbytes)
    state.count("allocations")
    state.count("allocated_bytes", nbytes)
    return raw.view(dtype).reshape(shape).view(ndarray)


def _host_array_error(x):
    return TypeError(f"got a numpy.ndarray {x.shape} {x.dtype} (host memory) in an operation on device arrays; "
                     "expected device arrays only (move it with cupy.asarray), as CuPy requires")


def unwrap(x):
    """A device array as a plain numpy view; host arrays (other than 0-d) are refused."""
    if isinstance(x, ndarray):
        return x.view(np.ndarray)
    if isinstance(x, np.ndarray) and x.ndim > 0:
        raise _host_array_error(x)
    if isinstance(x, (list, tuple)):
        return type(x)(unwrap(v) for v in x)
    return x


def wrap(r):
    """A numpy result as a device value: arrays become device arrays, scalars 0-d device arrays."""
    if isinstance(r, tuple):
        return tuple(wrap(v) for v in r)
    if isinstance(r, ndarray):
        return r
    if isinstance(r, np.ndarray):
        return r.view(ndarray)
    if isinstance(r, np.generic):
        return np.asarray(r).view(ndarray)
    return r


class _MemoryPointer:
    def __init__(self, ptr: int):
        self.ptr = ptr
        self.device_id = 0

    @property
    def device(self):
        from .device import Device
        return Device(0)


class ndarray(np.ndarray):
    """cupy.ndarray of the stand-in (see the module docstring)."""

    __array_priority__ = 100.0

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        args = [unwrap(x) for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(unwrap(o) for o in out)
        r = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return wrap(r)

    def __getitem__(self, key):
        r = super().__getitem__(key if not isinstance(key, ndarray) else key.view(np.ndarray))
        return wrap(r)

    def __setitem__(self, key, value):
        """CuPy's assignment and fill are kernels on the current stream: while that stream captures
        a graph they are captured too (done by each launch of the graph), not done now."""
        write = np.ndarray.__setitem__
        key = key if not isinstance(key, ndarray) else key.view(np.ndarray)
        stream = _capturing[0]()
        if stream is None:
            return write(self, key, unwrap(value))
        stream._capture.append((_Deferred(write, self, key, unwrap(value)), None))

    def fill(self, value):
        stream = _capturing[0]()
        if stream is None:
            return super().fill(value)
        stream._capture.append((_Deferred(np.ndarray.fill, self, value), None))

    # ---- host views of device data: each one is a device->host copy --------------------------

    def _download(self, what: str):
        _capture_check[0](what)
        state.count("downloads")
        return self.view(np.ndarray)

    def get(self, stream=None, order="C", out=None, blocking=True):
        host = np.array(self._download("ndarray.get()"), order=order, copy=True)
        if out is not None:
            out[...] = host
            return out
        return host

    def set(self, arr, stream=None):
        _capture_check[0]("ndarray.set()")
        if isinstance(arr, ndarray):
            raise TypeError("ndarray.set: got a device array, expected a numpy array")
        state.count("uploads")
        self.view(np.ndarray)[...] = arr

    def item(self, *args):
        return self._download("ndarray.item()").item(*args)

    def tolist(self):
        return self._download("ndarray.tolist()").tolist()

    def __float__(self):
        return float(self._download("float(ndarray)"))

    def __int__(self):
        return int(self._download("int(ndarray)"))

    def __index__(self):
        return self._download("operator.index(ndarray)").__index__()

    def __bool__(self):
        return bool(self._download("bool(ndarray)"))

    def __array_function__(self, func, types, args, kwargs):
        return wrap(func(*unwrap(args), **{k: unwrap(v) for k, v in kwargs.items()}))

    @property
    def data(self):
        # kept in the instance: CuPy's ndarray.data is a plain attribute, numpy's ctypes.data costs
        # about 1 us, which host-overhead measurements (benchmarks/bench_host.py) would count
        d = self.__dict__
        mp = d.get("_memptr")
        if mp is None:
            mp = d["_memptr"] = _MemoryPointer(self.ctypes.data)
        return mp

    @property
    def device(self):
        from .device import Device
        return Device(0)

    def extent(self) -> tuple[int, int]:
        """[lo, hi) byte addresses the array's elements occupy (the bounds a kernel may touch)."""
        ptr = self.ctypes.data
        if self.size == 0:
            return ptr, ptr
        lo = ptr + sum((s - 1) * st for s, st in zip(self.shape, self.strides) if st < 0)
        hi = ptr + sum((s - 1) * st for s, st in zip(self.shape, self.strides) if st > 0) + self.itemsize
        return lo, hi


def asarray(a, dtype=None, order=None):
    """A device array: ``a`` itself (or an astype copy) when on the device, else an upload."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    _capture_check[0]("cupy.asarray(host data)")
    host = np.asarray(a, dtype=dtype)
    out = empty(host.shape, host.dtype)
    out.view(np.ndarray)[...] = host
    state.count("uploads")
    return out


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    r = asarray(a, dtype)
    if copy and r is a:
        r = r.copy()
    return r[(None,) * (ndmin - r.ndim)] if ndmin > r.ndim else r


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get(out=out)
    return np.asarray(a, order=order)


def zeros(shape, dtype=float, order="C"):
    a = empty(shape, dtype, order)
    a.view(np.ndarray).fill(0)
    return a


def ones(shape, dtype=float, order="C"):
    return full(shape, 1, dtype, order)


def full(shape, fill_value, dtype=None, order="C"):
    a = empty(shape, np.result_type(fill_value) if dtype is None else dtype, order)
    a.view(np.ndarray).fill(fill_value)
    return a


def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    return empty(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    return zeros(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    return ones(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    return full(a.shape if shape is None else shape, fill_value, a.dtype if dtype is None else dtype)


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"ascontiguousarray: got {type(a).__name__}, expected a device array")
    if a.flags.c_contiguous and (dtype is None or a.dtype == np.dtype(dtype)):
        return a
    out = empty(a.shape, a.dtype if dtype is None else dtype)
    out.view(np.ndarray)[...] = a.view(np.ndarray)
    return out


def _forward(name):
    fn = getattr(np, name)

    def f(*args, **kwargs):
        return wrap(fn(*unwrap(args), **{k: unwrap(v) for k, v in kwargs.items()}))

    f.__name__ = name
    f.__doc__ = f"cupy.{name} of the stand-in: numpy.{name} on device arrays (host arrays refused)."
    return f


# NumPy functions the stand-in offers under their CuPy names (element-wise math, reductions,
# shape functions); anything else raises AttributeError naming it.
FORWARDED = {n: _forward(n) for n in (
    "abs", "absolute", "add", "subtract", "multiply", "divide", "true_divide", "negative", "power", "square",
    "sqrt", "exp", "log", "log1p", "expm1", "tanh", "sign", "floor", "ceil", "maximum", "minimum", "clip",
    "where", "isfinite", "isnan", "isinf", "sum", "mean", "var", "std", "prod", "max", "min", "amax", "amin",
    "argmax", "argmin", "all", "any", "count_nonzero", "cumsum", "matmul", "dot", "einsum", "outer",
    "concatenate", "stack", "reshape", "ravel", "transpose", "expand_dims", "squeeze", "broadcast_to",
    "take", "repeat", "tile", "sort", "argsort", "unique", "flip", "pad", "allclose", "array_equal",
    "arange", "linspace", "eye", "round", "equal", "not_equal", "less", "greater", "logical_not",
) if hasattr(np, n)}
