"""Optimizer updates, in place on param and its state arrays."""

from __future__ import annotations

import numpy as np

from ..argcheck import ANY_NDIM, FLOAT_DTYPES, array, real, same_shape
from ..backend import array_module, op
from ..plan import planned


@planned
def sgd_update(param, grad, velocity, lr, momentum=0.0, weight_decay=0.0, nesterov=False, *, kernels=None):
    """PyTorch's SGD: g += wd*p; v = momentum*v + g; p -= lr * (g + momentum*v if nesterov else v).

    velocity may be None when momentum == 0.
    """
    _check_update_arrays(param, grad, velocity, "velocity")
    if momentum and velocity is None:
        raise ValueError("velocity: got None, expected an array when momentum != 0")
    op("sgd_update", param, kernels=kernels)(param, grad, velocity, real(lr, "lr", 0.0, lo_open=True),
                                             real(momentum, "momentum", 0.0, 1.0, hi_open=True),
                                             real(weight_decay, "weight_decay", 0.0), bool(nesterov))


def sgd_update_multi(params, grads, velocities, lr, momentum=0.0, weight_decay=0.0, nesterov=False, *,
                     kernels=None):
    """sgd_update of every (params[i], grads[i], velocities[i]) with one set of hyper-parameters: one
    kernel launch on the GPU. ``velocities`` may be None when momentum == 0."""
    if not (isinstance(params, (list, tuple)) and isinstance(grads, (list, tuple)) and params):
        raise TypeError(f"params, grads: got {type(params).__name__}, {type(grads).__name__}, expected non-empty "
                        "lists of arrays")
    if momentum and velocities is None:
        raise ValueError("velocities: got None, expected a list of arrays when momentum != 0")
    if len(grads) != len(params) or (velocities is not None and len(velocities) != len(params)):
        raise ValueError(f"grads, velocities: got {len(grads)} and {None if velocities is None else len(velocities)} "
                         f"arrays, expected {len(params)} (one per param)")
    for i, p in enumerate(params):
        _check_update_arrays(p, grads[i], None if velocities is None else velocities[i], f"velocities[{i}]",
                             f"params[{i}]", f"grads[{i}]")
    array_module(*params, names=[f"params[{i}]" for i in range(len(params))])
    op("sgd_update_multi", params[0], kernels=kernels)(
        list(params), list(grads), None if velocities is None else list(velocities), real(lr, "lr", 0.0, lo_open=True),
        real(momentum, "momentum", 0.0, 1.0, hi_open=True), real(weight_decay, "weight_decay", 0.0), bool(nesterov))


def adam_update(param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, *,
                kernels=None):
    """PyTorch's Adam (L2 weight decay added to the gradient). ``step``: the step count of this
    update (an int >= 1), or an int32 counter array ``(count, 0)`` on param's device holding the
    count before it, which the update advances in place (a CUDA graph can replay that one; calls
    with a counter take the launch-plan fast path, calls with an int do not: it changes every call)."""
    if isinstance(step, (int, np.integer)) and not isinstance(step, bool):
        if step < 1:
            raise ValueError(f"step: got {step!r}, expected an int >= 1")
        _adam(param, grad, m, v, int(step), lr, beta1, beta2, eps, weight_decay, kernels)
    else:
        _adam_counted(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, kernels=kernels)


def adam_update_multi(params, grads, ms, vs, steps, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, *,
                      kernels=None):
    """adam_update of every (params[i], grads[i], ms[i], vs[i]) with its int32 step counter
    ``steps[i]`` (see adam_update) and one set of hyper-parameters: one kernel launch on the GPU."""
    lists = (params, grads, ms, vs, steps)
    if not (all(isinstance(a, (list, tuple)) for a in lists) and params):
        raise TypeError(f"params, grads, ms, vs, steps: got {', '.join(type(a).__name__ for a in lists)}, expected "
                        "non-empty lists")
    if any(len(a) != len(params) for a in lists):
        raise ValueError(f"grads, ms, vs, steps: got {[len(a) for a in lists[1:]]} items, expected {len(params)} "
                         "(one per param)")
    for i, p in enumerate(params):
        xp = _check_update_arrays(p, grads[i], ms[i], f"ms[{i}]", f"params[{i}]", f"grads[{i}]")
        _check_update_arrays(p, grads[i], vs[i], f"vs[{i}]", f"params[{i}]", f"grads[{i}]")
        _check_counter(steps[i], xp, f"steps[{i}]")
    array_module(*params, names=[f"params[{i}]" for i in range(len(params))])
    op("adam_update_multi", params[0], kernels=kernels)(
        list(params), list(grads), list(ms), list(vs), list(steps), real(lr, "lr", 0.0, lo_open=True),
        real(beta1, "beta1", 0.0, 1.0, hi_open=True), real(beta2, "beta2", 0.0, 1.0, hi_open=True),
        real(eps, "eps", 0.0, lo_open=True), real(weight_decay, "weight_decay", 0.0))


def _check_counter(counter, xp, name):
    if not (isinstance(counter, xp.ndarray) and counter.shape == (2,) and counter.dtype == np.int32
            and counter.flags.c_contiguous):
        raise ValueError(f"{name}: got {getattr(counter, 'dtype', type(counter).__name__)} "
                         f"{getattr(counter, 'shape', counter)!r}, expected an int >= 1 or a C-contiguous int32 "
                         "counter of shape (2,) beside param")


@planned
def _adam_counted(param, grad, m, v, counter, lr, beta1, beta2, eps, weight_decay, *, kernels=None):
    _check_counter(counter, array_module(param, names=["param"]), "step")
    _adam(param, grad, m, v, counter, lr, beta1, beta2, eps, weight_decay, kernels)


def _adam(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, kernels):
    _check_update_arrays(param, grad, m, "m")
    _check_update_arrays(param, grad, v, "v")
    op("adam_update", param, kernels=kernels)(param, grad, m, v, step, real(lr, "lr", 0.0, lo_open=True),
                                              real(beta1, "beta1", 0.0, 1.0, hi_open=True),
                                              real(beta2, "beta2", 0.0, 1.0, hi_open=True),
                                              real(eps, "eps", 0.0, lo_open=True),
                                              real(weight_decay, "weight_decay", 0.0))


@planned
def accumulate(acc, x, *, kernels=None):
    """acc += x in place (a parameter's gradient summed over its uses in a step)."""
    same_shape(array(x, "x", ANY_NDIM), "x", array(acc, "acc", ANY_NDIM), "acc")
    if not acc.flags.c_contiguous:
        raise ValueError("acc: got a non-contiguous array, expected a C-contiguous one (updated in place)")
    op("accumulate", acc, kernels=kernels)(acc, x)


def _check_update_arrays(param, grad, state, state_name, param_name="param", grad_name="grad"):
    xp = array_module(param, grad, state, names=[param_name, grad_name, state_name])
    for a, name in ((param, param_name), (grad, grad_name), (state, state_name)):
        if a is None:
            continue
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: got dtype {a.dtype}, expected float32 or float64")
        if a.shape != param.shape or a.dtype != param.dtype:
            raise ValueError(f"{name}: got {a.dtype} {tuple(a.shape)}, expected {param.dtype} {tuple(param.shape)} "
                             f"(the {param_name}'s)")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: got a non-contiguous array, expected a C-contiguous one (updated in place)")
    return xp
