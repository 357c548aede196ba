"""The bandwidth rows of benchmarks/gpu_table.py: activations, 2x2 pooling, batchnorm and the conv
bias gradient on BANDWIDTH_SHAPE (several times the L2 of an H100/H200), each beside its PyTorch
peer, plus the device-to-device copy that is their ceiling and a write-only fill: pooling backward
writes 4/5 of its bytes, so the fill's share of the copy bounds what such a kernel can reach.

Each case names the bytes it must move at least (its inputs read once and outputs written once:
the compulsory traffic), so GB/s = those bytes / kernel-only time, and fc/copy compares it with the
copy's 2 * size bytes over its time. Batchnorm reads x (forward) or dy and x (backward) twice: once
for the statistics, once to normalise; its GB/s still counts the compulsory bytes, so its fc/copy
says how far it is from a one-pass ideal. The pool cases also name the pool_variant settings (the
CUDA C family's 2x2 kernels, config.POOL_2X2, and the general kernel) that gpu_table.py times
beside the launcher's pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from shapes import BANDWIDTH_SHAPE

from fastconv import ops
from fastconv.backends.cuda.config import POOL_2X2, POOL_GENERAL

F4 = 4  # bytes per float32


@dataclass
class Case:
    name: str                       # "<family>.<op>.<pass>" as in the benchmark groups
    nbytes: int                     # compulsory bytes moved
    fastconv: Callable              # fastconv call taking the kernel family; returns the checked array
    torch: Callable                 # the PyTorch peer's call (its result is the checked reference)
    reference: Callable | None = None  # a float64 reference when the peer's own fp32 is not used
    variants: tuple = ()            # pool_variant settings timed on the cupy family beside its pick


def pool_variants(pass_name: str) -> tuple:
    """The pool_variant settings that serve a pooling pass ("forward" or "backward"): every 2x2
    kernel of config.POOL_2X2 that has it, then the general kernel."""
    return tuple(v for v, spec in POOL_2X2.items() if pass_name in spec[3]) + (POOL_GENERAL,)


def bytes_of(op: str, shape=BANDWIDTH_SHAPE) -> int:
    """Compulsory bytes of a bandwidth op on an (N, C, H, W) input (2x2 pools: a quarter-size side;
    max-pool forward also writes the int32 argmax, backward reads it)."""
    n = int(np.prod(shape))
    q = n // 4
    table = {
        "copy": 2 * n * F4,
        "fill": n * F4,                             # y out only
        "forward": 2 * n * F4,                      # x in, y out
        "backward": 3 * n * F4,                     # dy, y in, dx out
        "max_pool2d.forward": n * F4 + q * (F4 + 4),
        "max_pool2d.backward": q * (F4 + 4) + n * F4,
        "avg_pool2d.forward": n * F4 + q * F4,
        "avg_pool2d.backward": q * F4 + n * F4,
        "batchnorm.forward": 2 * n * F4,            # x in, y out (per-channel vectors negligible)
        "batchnorm.backward": 3 * n * F4,           # dy, x in, dx out
        "conv2d_backward_bias": n * F4,             # dy in
    }
    if op not in table:
        raise ValueError(f"op: got {op!r}, expected one of {sorted(table)}")
    return table[op]


def cases(cp, torch, rng, shape=BANDWIDTH_SHAPE) -> list[Case]:
    """Every bandwidth case on device arrays of ``shape``."""
    import torch.nn.functional as F
    n, c, h, w = shape
    x = cp.asarray(rng.standard_normal(shape, dtype=np.float32))
    dy = cp.asarray(rng.standard_normal(shape, dtype=np.float32))
    dyq = cp.asarray(rng.standard_normal((n, c, h // 2, w // 2), dtype=np.float32))
    tx, tdy, tdyq = (torch.from_dlpack(a) for a in (x, dy, dyq))
    out = []
    acts = {"relu": ((), torch.relu, lambda g, y: torch.ops.aten.threshold_backward(g, y, 0.0)),
            "leaky_relu": ((0.2,), lambda t: F.leaky_relu(t, 0.2),
                           lambda g, y: torch.ops.aten.leaky_relu_backward(g, y, 0.2, True)),
            "sigmoid": ((), torch.sigmoid, torch.ops.aten.sigmoid_backward),
            "tanh": ((), torch.tanh, torch.ops.aten.tanh_backward)}
    for act, (extra, tf, tb) in acts.items():
        y = getattr(ops, f"{act}_forward")(x, *extra)
        ty = torch.from_dlpack(y)
        out.append(Case(f"activation.{act}.forward", bytes_of("forward", shape),
                        lambda fam, a=act, e=extra: getattr(ops, f"{a}_forward")(x, *e, kernels=fam),
                        lambda f=tf: f(tx)))
        out.append(Case(f"activation.{act}.backward", bytes_of("backward", shape),
                        lambda fam, a=act, e=extra, y=y: getattr(ops, f"{a}_backward")(dy, y, *e, kernels=fam),
                        lambda f=tb, ty=ty: f(tdy, ty)))
    _, am = ops.max_pool2d_forward(x, 2)
    _, tidx = F.max_pool2d(tx, 2, return_indices=True)
    fwd, bwd = pool_variants("forward"), pool_variants("backward")
    out += [
        Case("pool.max_pool2d.forward", bytes_of("max_pool2d.forward", shape),
             lambda fam: ops.max_pool2d_forward(x, 2, kernels=fam)[0], lambda: F.max_pool2d(tx, 2), variants=fwd),
        Case("pool.max_pool2d.backward", bytes_of("max_pool2d.backward", shape),
             lambda fam: ops.max_pool2d_backward(dyq, am, shape, 2, kernels=fam),
             lambda: torch.ops.aten.max_pool2d_with_indices_backward(tdyq, tx, [2, 2], [2, 2], [0, 0], [1, 1],
                                                                     False, tidx), variants=bwd),
        Case("pool.avg_pool2d.forward", bytes_of("avg_pool2d.forward", shape),
             lambda fam: ops.avg_pool2d_forward(x, 2, kernels=fam), lambda: F.avg_pool2d(tx, 2), variants=fwd),
        Case("pool.avg_pool2d.backward", bytes_of("avg_pool2d.backward", shape),
             lambda fam: ops.avg_pool2d_backward(dyq, shape, 2, kernels=fam),
             lambda: torch.ops.aten.avg_pool2d_backward(tdyq, tx, [2, 2], [2, 2], [0, 0], False, True, None),
             variants=bwd),
    ]
    gamma = cp.asarray(rng.standard_normal(c, dtype=np.float32))
    beta = cp.asarray(rng.standard_normal(c, dtype=np.float32))
    rm, rv = cp.zeros(c, np.float32), cp.ones(c, np.float32)
    trm, trv, tg, tb_ = (torch.from_dlpack(a).clone() for a in (rm, rv, gamma, beta))
    _, mean, invstd = ops.batchnorm_forward(x, gamma, beta, rm.copy(), rv.copy(), True, 0.1, 1e-5)
    tmean, tinv = torch.from_dlpack(mean), torch.from_dlpack(invstd)
    out += [
        # running statistics are updated in place on every call, on both sides alike
        Case("batchnorm.batchnorm.forward", bytes_of("batchnorm.forward", shape),
             lambda fam: ops.batchnorm_forward(x, gamma, beta, rm, rv, True, 0.1, 1e-5, kernels=fam)[0],
             lambda: F.batch_norm(tx, trm, trv, tg, tb_, True, 0.1, 1e-5)),
        Case("batchnorm.batchnorm.backward", bytes_of("batchnorm.backward", shape),
             lambda fam: ops.batchnorm_backward(dy, x, gamma, mean, invstd, True, kernels=fam)[0],
             lambda: torch.ops.aten.native_batch_norm_backward(tdy, tx, tg, None, None, tmean, tinv, True, 1e-5,
                                                               [True, True, True])[0]),
        Case("conv.conv2d.backward_bias", bytes_of("conv2d_backward_bias", shape),
             lambda fam: ops.conv2d_backward_bias(dy, kernels=fam), lambda: tdy.sum((0, 2, 3)),
             lambda: torch.from_dlpack(dy).double().sum((0, 2, 3))),
    ]
    return out


def copy_case(cp, torch, rng, shape=BANDWIDTH_SHAPE):
    """(bytes, cudaMemcpy D2D call, torch clone call, check) of the ceiling row."""
    x = cp.asarray(rng.standard_normal(shape, dtype=np.float32))
    xc = cp.empty_like(x)
    tx = torch.from_dlpack(x)

    def memcpy():
        cp.cuda.runtime.memcpyAsync(xc.data.ptr, x.data.ptr, x.nbytes, cp.cuda.runtime.memcpyDeviceToDevice,
                                    cp.cuda.get_current_stream().ptr)
        return xc

    return bytes_of("copy", shape), memcpy, lambda: tx.clone(), lambda: bool((memcpy() == x).all())


def fill_case(cp, torch, shape=BANDWIDTH_SHAPE):
    """(bytes, CuPy fill call, torch fill_ call, check) of the write-only row (a non-zero value, so
    no zero-fill shortcut of the memory system is measured)."""
    y = cp.empty(shape, np.float32)
    ty = torch.from_dlpack(cp.empty(shape, np.float32))

    def fill():
        y.fill(1.5)
        return y

    return bytes_of("fill", shape), fill, lambda: ty.fill_(1.5), lambda: bool((fill() == 1.5).all())
