"""Optimizer updates, in place on param and its state arrays."""

from __future__ import annotations

import numpy as np

from ..argcheck import ANY_NDIM, FLOAT_DTYPES, array, real, same_shape
from ..backend import array_module, op
from ..backends.cuda.config import INT32_MAX
from ..plan import planned


@planned
def sgd_update(param, grad, velocity, lr, momentum=0.0, weight_decay=0.0, nesterov=False, *, kernels=None):
    """PyTorch's SGD: g += wd*p; v = momentum*v + g; p -= lr * (g + momentum*v if nesterov else v).

    velocity may be None when momentum == 0. ``lr``: a number > 0, or a float32 array of shape (1,)
    beside param that the update reads (a CUDA graph of the step reads its current value).
    """
    xp = _check_update_arrays(param, grad, velocity, "velocity")
    if momentum and velocity is None:
        raise ValueError("velocity: got None, expected an array when momentum != 0")
    op("sgd_update", param, kernels=kernels)(param, grad, velocity, _lr(lr, xp),
                                             real(momentum, "momentum", 0.0, 1.0, hi_open=True),
                                             real(weight_decay, "weight_decay", 0.0), bool(nesterov))


def adam_update(param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, *,
                kernels=None):
    """PyTorch's Adam (L2 weight decay added to the gradient). ``step``: the step count of this
    update (an int >= 1), or int32 counters on param's device, shape (2,) or (rows, 2), each
    ``(count, 0)`` holding the count before the update (all equal: the parameters of one flat
    update), which the update advances in place (a CUDA graph can replay that one). Both forms
    take the launch-plan fast path; the int is a per-call value of the plan.
    ``lr`` as in sgd_update."""
    if isinstance(step, (int, np.integer)) and not isinstance(step, bool):
        if not 1 <= step <= INT32_MAX:   # the kernels take the step as an int32
            raise ValueError(f"step: got {step!r}, expected an int in [1, {INT32_MAX}]")
        _adam_stepped(param, grad, m, v, int(step), lr, beta1, beta2, eps, weight_decay, kernels=kernels)
    else:
        _adam_counted(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, kernels=kernels)


def _lr(lr, xp):
    """A real lr > 0 as a float, or a float32 array (1,) of param's array module as it is."""
    if isinstance(lr, xp.ndarray):
        if lr.shape != (1,) or lr.dtype != np.float32:
            raise ValueError(f"lr: got a {lr.dtype} array of shape {lr.shape}, expected a number > 0 or a float32 "
                             "array of shape (1,) beside param")
        return lr
    return real(lr, "lr", 0.0, lo_open=True)


def _check_counter(counter, xp, name):
    if not (isinstance(counter, xp.ndarray) and counter.ndim in (1, 2) and counter.shape[-1] == 2
            and counter.size and counter.dtype == np.int32 and counter.flags.c_contiguous):
        raise ValueError(f"{name}: got {getattr(counter, 'dtype', type(counter).__name__)} "
                         f"{getattr(counter, 'shape', counter)!r}, expected an int >= 1 or C-contiguous int32 "
                         "counters of shape (2,) or (rows, 2) beside param")


@planned(per_call={"step": int})
def _adam_stepped(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, *, kernels=None):
    _adam(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, kernels)


@planned
def _adam_counted(param, grad, m, v, counter, lr, beta1, beta2, eps, weight_decay, *, kernels=None):
    _check_counter(counter, array_module(param, names=["param"]), "step")
    _adam(param, grad, m, v, counter, lr, beta1, beta2, eps, weight_decay, kernels)


def _adam(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, kernels):
    xp = _check_update_arrays(param, grad, m, "m")
    _check_update_arrays(param, grad, v, "v")
    op("adam_update", param, kernels=kernels)(param, grad, m, v, step, _lr(lr, xp),
                                              real(beta1, "beta1", 0.0, 1.0, hi_open=True),
                                              real(beta2, "beta2", 0.0, 1.0, hi_open=True),
                                              real(eps, "eps", 0.0, lo_open=True),
                                              real(weight_decay, "weight_decay", 0.0))


@planned
def accumulate(acc, x, add=True, *, kernels=None):
    """acc += x in place, or acc[...] = x with add=False: a parameter's gradient written into its
    slice of the optimizer's flat gradient buffer, then summed over its other uses in a step."""
    same_shape(array(x, "x", ANY_NDIM), "x", array(acc, "acc", ANY_NDIM), "acc")
    if not acc.flags.c_contiguous:
        raise ValueError("acc: got a non-contiguous array, expected a C-contiguous one (updated in place)")
    op("accumulate", acc, kernels=kernels)(acc, x, bool(add))


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
