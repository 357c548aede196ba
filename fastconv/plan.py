"""Launch plans: the host fast path of every GPU op, for both kernel families.

A public op of :mod:`fastconv.ops` decorated with :func:`planned` runs, on device arrays, as
follows. The first call with a given key goes the full way (the op layer's argument checks,
dispatch, the family's launcher with its own checks, int32 limits, grid sizes and tile choice)
while the families' launch modules report what they do (into fastconv.plan_record): every allocation
(``fastconv.backends.cuda.launch._alloc``, which both families use: NaN poisoning, out-of-memory
message) and every kernel launch (the function object, grid, block and arguments, reported by
``cuda.launch._launch`` and ``numba.driver.launch``). From that record a :class:`Plan` is built:
the allocations to repeat (shapes, dtypes) and the launches with their scalar arguments already
packed, each array argument a slot filled from the call's input arrays or the new allocations.
Later calls with the same key compute the key, allocate what they return and launch: no checks,
no ``np.prod``, no int32 boxing, no kernel look-up, no keyword parsing, and no allocation of
workspaces (a plan keeps them, per stream; see :class:`Plan`).

The key is everything the checks and the launch depend on: the op, the kernel family argument,
the array type (CuPy's or the CPU layer's stand-in: a process may use both), the settings in force
(poison, conv version and tile, family, tf32), the current device,
``FASTCONV_CUDA_DEFINES``, and per argument its type and value, or for a device array its shape,
dtype, strides, device and whether its address is 16-byte aligned (the vectorised kernels
choose on that); when a keyword argument is a tuple (``out=(dw, db)``), the items of every tuple
count as arguments. An ``out`` array is an input like any other: a plan writes into the call's.
A call that fails its checks stores nothing, so every error is raised on every call. Arguments the key cannot hold (unhashable values) take the full path every time. An
argument that changes on every call (dropout's seed) is declared ``per_call``: the key holds its
type and the plan fills its value in (see :func:`planned`); so is Adam's int step.

A call is planned only when its record explains it completely: every array a launch reads or
writes is an input (or a view starting at the same address) or an allocation of the call, and
the result is built from inputs and allocations. A launcher doing any other GPU work (a CuPy
elementwise call, cuBLAS) must not be decorated: its work would not be replayed. Numpy (CPU)
calls go straight to the op.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import sys
import threading
import weakref

import numpy as np

from .arena import arena_state
from .plan_record import Record, _local

CACHE_LIMIT = 512          # plans per op; the cache is emptied when full (shapes seldom vary that much)
WORKSPACE_BUDGET = 128 << 20  # bytes of workspaces all plans together keep between calls (see Plan)
_UNPLANNABLE = object()    # stored for keys whose record does not explain the call
_PER_CALL = object()       # marks a per-call argument in a key
_caches: list = []         # every planned op's plans
_TUPLE = object()          # marks where a tuple's items start in a flattened key (see _flat)


def clear_all() -> None:
    """Drop every op's plans (their next calls go the full way: after the conv autotuner forgets its
    picks, fastconv.backends.cuda.autotune.clear)."""
    for plans in _caches:
        plans.clear()


class Plan:
    """Allocations and launches of one op call; ``plan.run(*arrays)`` replays them on the call's
    device arrays (in key order) and returns the result. ``run`` is generated Python source, one
    statement per allocation and per launch with the scalar arguments bound as constants, so a
    hit costs the allocations, the launches and a function call.

    The workspaces (the allocations the call does not return, uninitialised ones) are allocated on
    the first replay and kept by the plan, one set per CUDA stream (launches on one stream run in
    order, so the next call cannot overwrite them while a kernel still reads them): a hit then
    allocates only what it returns. All plans together keep at most WORKSPACE_BUDGET bytes
    (released when a plan is dropped); past it a plan allocates its workspaces on every call, as
    it does under the poison setting, which wants every buffer refilled with NaN.

    A launch callable with a ``bind_launch(grid, block, args, positions)`` method (the numba
    family's kernels) is bound once: its scalar arguments are packed at build time and the bound
    launch takes the array arguments only."""
    __slots__ = ("settings", "allocs", "launches", "result", "n_inputs", "n_per_call", "kept", "run")

    def __init__(self, settings, allocs, launches, result, n_inputs, n_per_call=0, stream=None):
        self.settings = settings      # the Settings the plan was built under (part of its key)
        self.allocs = allocs          # [(alloc, call_args, raw, kept: bool)]
        self.launches = launches      # [(fn, grid, block, template args, [(position, slot)],
        #                                {position: (per-call value index, its kernel scalar type)})]
        self.result = result          # None, a slot, or a tuple of slots / None
        self.n_inputs = n_inputs
        self.n_per_call = n_per_call  # per-call values run() takes after the arrays
        self.kept = {}                # stream pointer -> the workspaces kept for launches on it
        self.run = self._compile(stream)

    def _compile(self, stream):
        env = {"stream": stream}
        params = [f"v{i}" for i in range(self.n_inputs)] + [f"p{k}" for k in range(self.n_per_call)]
        lines = [f"def run({''.join(v + ', ' for v in params)}):"]
        kept, makers = [], []
        for j, (alloc, call_args, raw, keep) in enumerate(self.allocs):
            v = f"v{self.n_inputs + j}"
            env[f"alloc{j}"], env[f"args{j}"], env[f"raw{j}"] = alloc, call_args, raw
            if keep:
                kept.append(v)
                makers.append((alloc, call_args))
            elif raw is None or self.settings.poison:
                lines.append(f"    {v} = alloc{j}(*args{j})")
            else:
                env[f"shape{j}"], env[f"dtype{j}"] = call_args[0], call_args[1]
                lines += ["    try:", f"        {v} = raw{j}(shape{j}, dtype{j})",
                          "    except Exception:", f"        {v} = alloc{j}(*args{j})  # raises its clear error"]
        if kept:
            env["workspaces"] = _Workspaces(self.kept, makers).get
            lines += [f"    {''.join(v + ', ' for v in kept)}= workspaces(stream().ptr)"]
        for i, (fn, grid, block, template, slots, per_call) in enumerate(self.launches):
            bind = getattr(fn, "bind_launch", None)
            if bind is not None and not per_call:  # scalars packed now; the bound launch takes the arrays
                env[f"fn{i}"] = bind(grid, block, template, [pos for pos, _ in slots])
                lines.append(f"    fn{i}({''.join(f'v{slot}, ' for _, slot in slots)})")
                continue
            env[f"fn{i}"], env[f"grid{i}"], env[f"block{i}"] = fn, grid, block
            slot_at = dict(slots)
            items = []
            for pos, value in enumerate(template):
                if pos in slot_at:
                    items.append(f"v{slot_at[pos]}")
                elif pos in per_call:
                    k, env[f"t{i}_{pos}"] = per_call[pos]
                    items.append(f"t{i}_{pos}(p{k})")
                else:
                    env[f"c{i}_{pos}"] = value
                    items.append(f"c{i}_{pos}")
            lines.append(f"    fn{i}(grid{i}, block{i}, ({''.join(x + ', ' for x in items)}))")
        res = self.result
        if res is None:
            lines.append("    return None")
        elif isinstance(res, int):
            lines.append(f"    return v{res}")
        else:
            lines.append(f"    return ({''.join(('None' if r is None else f'v{r}') + ', ' for r in res)})")
        exec(compile("\n".join(lines), "<fastconv launch plan>", "exec"), env)
        return env.pop("run")    # not left in its own globals: no cycle, the plan goes when dropped


class _Workspaces:
    """The workspaces one plan keeps, per stream; referenced by the plan's ``run`` alone, so that
    they (and their share of WORKSPACE_BUDGET) go when the plan goes."""
    __slots__ = ("by_stream", "makers", "__weakref__")

    def __init__(self, by_stream: dict, makers: list):
        self.by_stream = by_stream    # stream pointer -> tuple of arrays
        self.makers = makers          # [(alloc, its arguments)] per workspace

    def get(self, stream_ptr: int) -> tuple:
        ws = self.by_stream.get(stream_ptr)
        if ws is None:
            global _kept_bytes
            ws = tuple(alloc(*args) for alloc, args in self.makers)
            nbytes = sum(a.nbytes for a in ws)
            with _kept_lock:
                if _kept_bytes + nbytes <= WORKSPACE_BUDGET:
                    _kept_bytes += nbytes
                    self.by_stream[stream_ptr] = ws
                    weakref.finalize(self, _release, nbytes)
        return ws


_kept_bytes = 0                  # bytes of workspaces the live plans keep
_kept_lock = threading.Lock()


def _release(nbytes: int) -> None:
    """A plan keeping ``nbytes`` of workspaces was dropped."""
    global _kept_bytes
    with _kept_lock:
        _kept_bytes -= nbytes


def _slot_of(a, sources: list):
    """The index in ``sources`` of the array a is, or of the one array it views from its first
    byte; None if none or several."""
    i = _exact_slot(a, sources)
    if i is not None:
        return i
    ptr, nbytes = a.data.ptr, a.nbytes
    found = [i for i, s in enumerate(sources) if s.data.ptr == ptr and nbytes <= s.nbytes and a.dtype == s.dtype]
    return found[0] if len(found) == 1 else None


def _build(rec: Record, arrays: list, out, settings, cp, per_call: tuple = ()):
    """A Plan from the record of a call with device arrays ``arrays`` and per-call values
    ``per_call``, _UNPLANNABLE, or None when a per-call value is not found in exactly one scalar
    argument of the launches (another call, with another value, may tell)."""
    nd = cp.ndarray
    sources = list(arrays) + [a for _, _, a, _, _ in rec.allocs]
    launches, found = [], [0] * len(per_call)
    for fn, grid, block, args in rec.launches:
        template, slots, varying = list(args), [], {}
        for pos, a in enumerate(args):
            if isinstance(a, nd):
                slot = _slot_of(a, sources)
                if slot is None:
                    return _UNPLANNABLE
                slots.append((pos, slot))
                template[pos] = None       # filled per call; the plan keeps no array alive
            elif isinstance(a, (int, float, np.generic)) and not isinstance(a, (bool, np.bool_)):
                for k, value in enumerate(per_call):
                    if a == value:         # the kernel's scalar of this value: converted per call to a's type
                        varying[pos] = (k, type(a))
                        template[pos] = None
                        found[k] += 1
        launches.append((fn, grid, block, template, slots, varying))
    if rec.launches and any(n != 1 for n in found):
        return None
    if out is None:
        result = None
    elif isinstance(out, nd):
        result = _exact_slot(out, sources)
        if result is None:
            return _UNPLANNABLE
    elif isinstance(out, tuple):
        if not all(o is None or isinstance(o, nd) for o in out):
            return _UNPLANNABLE
        result = tuple(None if o is None else _exact_slot(o, sources) for o in out)
        if any(o is not None and r is None for o, r in zip(out, result)):
            return _UNPLANNABLE
    else:
        return _UNPLANNABLE
    returned = {result} if isinstance(result, int) else set(result or ())
    allocs = [(alloc, call_args, raw,
               reusable and not settings.poison and len(arrays) + j not in returned)
              for j, (alloc, call_args, a, raw, reusable) in enumerate(rec.allocs)]
    return Plan(settings, allocs, launches, result, len(arrays), len(per_call), cp.cuda.get_current_stream)


def _exact_slot(a, sources):
    """The slot of a result array: the very object (a view would change what the caller gets)."""
    for i, s in enumerate(sources):
        if a is s:
            return i
    return None


def planned(op=None, *, per_call: dict | None = None):
    """Decorate a public op ``op(*args, kernels=None, **kw)`` with the plan fast path (see the module).

    ``per_call``: {argument name: normalise}, arguments that change on every call (a dropout
    seed): the key holds their type, not their value, and a plan replays with the call's
    ``normalise(value)`` in the one kernel scalar argument that equalled it when the plan was built
    (converted to that argument's numpy type). ``normalise`` must be what the op hands its
    launcher, so that the value is found; a plan is built only when each is found exactly once."""
    if op is None:
        return functools.partial(planned, per_call=per_call)
    from . import settings as settings_mod
    from .backends.cuda.loader import defines_text

    plans: dict = {}
    _caches.append(plans)
    np_ndarray = np.ndarray
    local = _local
    split = _per_call_splitter(op, per_call) if per_call else None

    @functools.wraps(op)
    def call(*args, kernels=None, **kw):
        cp = sys.modules.get("cupy")
        if cp is None or local.rec is not None or arena_state.arena is not None:
            # no GPU, inside another op's planning call, or in an arena (its allocations go through it)
            return op(*args, kernels=kernels, **kw)
        nd = cp.ndarray
        s = settings_mod._current or settings_mod.current()
        last = _last_settings
        arrays = []
        # the settings by value (a frozen dataclass): a per-call settings scope still hits
        try:
            # nd: which CuPy (the real one or fastconv.emu's stand-in) made the arrays and will launch
            parts = [nd, kernels, last[1] if s is last[0] else _settings_id(s), defines_text(), None,
                     cp.cuda.runtime.getDevice()]
            values, per = args, ()
            if kw:
                parts[4] = tuple(kw)
                kv = tuple(kw.values())
                values = args + kv
            if split is not None:
                values, per = split(args, kw, values)
            if kw and tuple in map(type, kv):
                values = _flat(values)   # out=(dw, db): its arrays are slotted like the others
            for a in values:   # flat: an array's entry starts with its shape (a tuple), another's with its type
                t = type(a)
                if t is nd:
                    d = a.data
                    arrays.append(a)
                    parts += (a.shape, a.dtype, a.strides, d.device_id, d.ptr & 15)
                elif isinstance(a, np_ndarray):
                    return op(*args, kernels=kernels, **kw)  # the CPU path (or a mix the checks refuse)
                else:
                    parts += (t, a)
            key = tuple(parts)
            plan = plans.get(key)
        except Exception:      # an unhashable argument, an object that is no array: the full path says what
            return op(*args, kernels=kernels, **kw)
        if plan is not None and plan is not _UNPLANNABLE:
            return plan.run(*arrays, *per)
        if plan is _UNPLANNABLE:
            return op(*args, kernels=kernels, **kw)
        rec = local.rec = Record()
        try:
            out = op(*args, kernels=kernels, **kw)
        finally:
            local.rec = None
        if not rec.keep or len({a.data.ptr for a in arrays}) < len(arrays):
            return out   # provisional, or inputs sharing memory (a plan would tie their slots): plan another call
        built = _build(rec, arrays, out, s, cp, per)
        if built is not None:
            if len(plans) >= CACHE_LIMIT:
                plans.clear()
            plans[key] = built
        return out

    call.plans = plans
    return call


def _flat(values) -> list:
    """``values`` with each tuple replaced by (_TUPLE, its length) and its items, so that the device
    arrays in a tuple (an op's ``out=(dw, db)``) are keyed and slotted like array arguments; the
    marker keeps apart keys whose tuples nest differently."""
    flat = []
    for v in values:
        if type(v) is tuple:
            flat.append((_TUPLE, len(v)))
            flat.extend(v)
        else:
            flat.append(v)
    return flat


def _per_call_splitter(op, per_call: dict):
    """``split(args, kw, values) -> (values with each per-call argument replaced by
    (_PER_CALL, its type), the normalised per-call values)`` for ``op``'s signature."""
    params = list(inspect.signature(op).parameters)
    where = []
    for name, normalise in per_call.items():
        if name not in params:
            raise ValueError(f"per_call: got {name!r}, expected an argument of {op.__name__}{tuple(params)}")
        where.append((name, params.index(name), normalise))

    def split(args, kw, values):
        values, per = list(values), []
        for name, index, normalise in where:
            if index < len(args):
                v = args[index]
            elif name in kw:
                index = len(args) + list(kw).index(name)
                v = kw[name]
            else:
                continue       # left at its default: a constant of the key
            per.append(normalise(v))
            values[index] = (_PER_CALL, type(v))  # in the key: the type, not the value
        return values, tuple(per)
    return split


_settings_ids: dict = {}         # Settings (by value) -> a small int standing for it in plan keys
_new_settings_id = itertools.count().__next__   # atomic: two threads never draw one id
_last_settings = (None, None)    # (Settings object, its id): most calls see the same object again


def _settings_id(s) -> int:
    """A small int per distinct Settings value, so that a plan key hashes an int, not five fields."""
    global _last_settings
    last, sid = _last_settings
    if s is not last:
        sid = _settings_ids.setdefault(s, _new_settings_id())
        _last_settings = (s, sid)
    return sid
