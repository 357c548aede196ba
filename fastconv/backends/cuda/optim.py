"""Launchers of kernels/optim.cu: SGD and Adam updates, in place."""

from __future__ import annotations

import cupy as cp
import numpy as np

from ...plan import current_arena
from . import config as cfg
from .launch import _arg, _eltwise_grid, _f32, _i32, _launch


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    param = _arg(param, "param", inplace=True)
    grad = _arg(grad, "grad")
    has_v = bool(momentum)
    v = _arg(velocity, "velocity", inplace=True) if has_v else param
    if param.size:
        _launch("optim.cu", "sgd_update_v1", _eltwise_grid(param.size), cfg.BLOCK,
                (param, grad, v, np.int64(param.size), _f32(lr), _f32(momentum), _f32(weight_decay),
                 _i32(bool(nesterov)), _i32(has_v)))


_tables: dict = {}   # pointer rows -> their device table; the same tensors reuse one upload
_pinned: set = set()  # rows a captured graph launches with: their table must outlive the graph
_TABLES_KEPT = 64


def _table(rows):
    """The device table of these pointer rows (uploaded once per distinct rows). Eager steps give
    new rows as gradients are reallocated, so the oldest unpinned tables are dropped past
    _TABLES_KEPT; a table used in an arena step (the passes before and during a capture) or while
    a stream captures is pinned and kept: its graph replays its address."""
    rows = tuple(rows)
    table = _tables.get(rows)
    if table is None:
        while len(_tables) - len(_pinned) >= _TABLES_KEPT:
            del _tables[next(r for r in _tables if r not in _pinned)]
        table = _tables[rows] = cp.asarray(np.array(rows, np.int64))
    if current_arena() is not None or cp.cuda.get_current_stream().is_capturing():
        _pinned.add(rows)
    return table, max(r[-1] for r in rows), len(rows)


def _multi_grid(name, largest, tensors):
    return (_eltwise_grid(largest)[0], cfg.check_grid(name, (1, tensors, 1))[1])


def sgd_update_multi(params, grads, velocities, lr, momentum, weight_decay, nesterov):
    """sgd_update of every (param, grad, velocity) in one launch (velocities None without momentum).

    The kernel reads the tensors' addresses from a device table, uploaded once per distinct set
    of addresses (a step in a fastconv.plan.Arena, and so a captured step, reuses one table)."""
    has_v = bool(momentum)
    rows = []
    for i, (p, g) in enumerate(zip(params, grads)):
        p = _arg(p, f"params[{i}]", inplace=True)
        g = _arg(g, f"grads[{i}]")
        v = _arg(velocities[i], f"velocities[{i}]", inplace=True) if has_v else p
        rows.append((p.data.ptr, g.data.ptr, v.data.ptr, p.size))
    table, largest, tensors = _table(rows)
    if largest:
        _launch("optim.cu", "sgd_update_multi_v1", _multi_grid("sgd_update_multi", largest, tensors), cfg.BLOCK,
                (table, _f32(lr), _f32(momentum), _f32(weight_decay), _i32(bool(nesterov)), _i32(has_v)))


def adam_update_multi(params, grads, ms, vs, counters, lr, beta1, beta2, eps, weight_decay):
    """adam_update of every tensor with its device counter, in one launch (as sgd_update_multi)."""
    rows = []
    for i, (p, g) in enumerate(zip(params, grads)):
        p = _arg(p, f"params[{i}]", inplace=True)
        g = _arg(g, f"grads[{i}]")
        m, v = _arg(ms[i], f"ms[{i}]", inplace=True), _arg(vs[i], f"vs[{i}]", inplace=True)
        c = _arg(counters[i], f"steps[{i}]", np.int32, inplace=True)
        rows.append((p.data.ptr, g.data.ptr, m.data.ptr, v.data.ptr, c.data.ptr, p.size))
    table, largest, tensors = _table(rows)
    if largest:
        _launch("optim.cu", "adam_update_multi_v2", _multi_grid("adam_update_multi", largest, tensors), cfg.BLOCK,
                (table, _f32(lr), np.float64(beta1), np.float64(beta2), _f32(eps), _f32(weight_decay)))


def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
    """``step``: the int step count, or a device int32 counter (count, 0) advanced by the kernel."""
    param = _arg(param, "param", inplace=True)
    grad = _arg(grad, "grad")
    m, v = _arg(m, "m", inplace=True), _arg(v, "v", inplace=True)
    if not isinstance(step, int):
        step = _arg(step, "step", np.int32, inplace=True)
        if param.size:
            _launch("optim.cu", "adam_update_v2", _eltwise_grid(param.size), cfg.BLOCK,
                    (param, grad, m, v, np.int64(param.size), _f32(lr), np.float64(beta1), np.float64(beta2),
                     _f32(eps), _f32(weight_decay), step))
        return
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    if param.size:
        _launch("optim.cu", "adam_update_v1", _eltwise_grid(param.size), cfg.BLOCK,
                (param, grad, m, v, np.int64(param.size), _f32(lr), _f32(beta1), _f32(beta2), _f32(eps),
                 _f32(weight_decay), _f32(bc1), _f32(bc2)))


def accumulate(acc, x):
    acc = _arg(acc, "acc", inplace=True)
    x = _arg(x, "x")
    if acc.size:
        _launch("optim.cu", "accumulate_v1", _eltwise_grid(acc.size), cfg.BLOCK, (acc, x, np.int64(acc.size)))
