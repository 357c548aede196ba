"""Host cost of the GPU launch path per op, measured on the CPU with the CuPy stand-in.

    python benchmarks/bench_host.py [--calls 4000] [--chunk 50] [--ops relu_forward,...]

Runs each public op (``fastconv.ops.<op>``: the op layer's checks, dispatch, the cupy family's
launcher, allocation and launch) on device arrays of ``fastconv.emu`` in no-execute mode, where a
launch is recorded and its kernel not run, so the time measured is what Python spends on the
host per call. Rows use the LeNet layer shapes at batch ``--batch`` (default 1: the host path does
not depend on the batch). The stand-in's allocations are not filled with 0xFF here (``emu.SETTINGS.fill``
off): a GPU allocation writes no host memory, and filling fc1's 3.2 MB weight gradient on every
call evicted the host caches and slowed the Python that followed it.

Columns: ``launches`` per call; ``us/call`` the median over chunks of ``--chunk`` calls of the CPU time
per call; ``raw us`` the stand-in's own cost of those allocations and launches, timed by
allocating the same outputs and calling the recorded kernel functions directly with the recorded
arguments (the new outputs in place of the recorded ones); ``beyond raw`` the median over chunks
of us/call - raw us (a chunk of each, back to back), the part fastconv adds (the target: <= 10
us per op on a plan hit). The stand-in's raw launch (argument packing and checks) is not CuPy's, so compare
``beyond raw`` across commits, not ``us/call`` with a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

def _rows(cp, rng, N):
    """(row name, op name, positional args, keyword args) on device arrays; LeNet shapes at batch N."""
    def dev(*shape, dtype=np.float32, scale=1.0):
        return cp.asarray((rng.standard_normal(shape) * scale).astype(dtype))

    x1, w1, b1 = dev(N, 1, 28, 28), dev(32, 1, 5, 5), dev(32)
    x2, w2 = dev(N, 32, 14, 14), dev(64, 32, 5, 5)
    y2 = dev(N, 64, 14, 14)
    p_in, p_out = dev(N, 32, 28, 28), dev(N, 32, 14, 14)
    am = cp.asarray(rng.integers(0, 4, (N, 32, 14, 14)).astype(np.int32))
    h, wl, bl, dh = dev(N, 3136), dev(256, 3136), dev(256), dev(N, 256)
    logits = dev(N, 10)
    labels = cp.asarray(rng.integers(0, 10, N).astype(np.int32))
    t = cp.asarray(rng.random((N, 1)).astype(np.float32))
    dl = dev(N, 1)
    bn_x, gamma, beta = dev(N, 64, 7, 7), dev(64), dev(64)
    rm, rv = dev(64), cp.asarray(rng.random(64).astype(np.float32) + 0.5)
    prm, grd, vel, m, v = dev(256, 3136), dev(256, 3136), dev(256, 3136), dev(256, 3136), dev(256, 3136)
    counter = cp.asarray(np.array([3, 0], np.int32))
    mask = cp.asarray(rng.integers(0, 2, (N, 256)).astype(np.uint8))
    d256 = dev(N, 256)
    code = cp.asarray(rng.integers(0, 4, (N, 32, 14, 14)).astype(np.uint8))
    g7, g14, wg = dev(N, 128, 7, 7), dev(N, 64, 14, 14), dev(128, 64, 4, 4)   # a DCGAN stride-2 layer
    emb, cls, fh = dev(10, 50), cp.asarray(rng.integers(0, 10, N).astype(np.int32)), dev(N, 6272)
    loss0 = [cp.asarray(np.float32(rng.random())) for _ in range(3)]
    sums = cp.asarray(np.zeros(5))
    bn_mean, bn_invstd = dev(64), cp.asarray(rng.random(64).astype(np.float32) + 0.5)
    return [
        ("conv2d_forward conv1", "conv2d_forward", (x1, w1, b1, 1, 2), {}),
        ("conv2d_forward conv2", "conv2d_forward", (x2, w2, None, 1, 2), {}),
        ("conv2d_backward_data conv2", "conv2d_backward_data", (y2, w2, (N, 32, 14, 14), 1, 2), {}),
        ("conv2d_backward_weight conv2", "conv2d_backward_weight", (y2, x2, (64, 32, 5, 5), 1, 2), {}),
        ("conv2d_backward_bias conv2", "conv2d_backward_bias", (y2,), {}),
        ("conv2d_backward_weight conv2 out=", "conv2d_backward_weight", (y2, x2, (64, 32, 5, 5), 1, 2),
         {"out": dev(64, 32, 5, 5)}),
        ("relu_forward", "relu_forward", (p_in,), {}),
        ("relu_backward", "relu_backward", (p_in, dev(N, 32, 28, 28)), {}),
        ("leaky_relu_forward", "leaky_relu_forward", (p_in, 0.2), {}),
        ("max_pool2d_forward", "max_pool2d_forward", (p_in, 2), {}),
        ("max_pool2d_backward", "max_pool2d_backward", (p_out, am, (N, 32, 28, 28), 2), {}),
        ("batchnorm_forward train", "batchnorm_forward", (bn_x, gamma, beta, rm, rv, True), {}),
        ("dropout_forward", "dropout_forward", (d256, 0.5, 7), {}),
        ("dropout_backward", "dropout_backward", (d256, mask, 0.5), {}),
        ("linear_forward fc1 relu", "linear_forward", (h, wl, bl), {"activation": "relu"}),
        ("linear_backward_data fc1", "linear_backward_data", (dh, wl), {}),
        ("linear_backward_weight fc1", "linear_backward_weight", (dh, h), {}),
        ("linear_backward_weight fc1 out=", "linear_backward_weight", (dh, h), {"out": (dev(256, 3136), dev(256))}),
        ("softmax_cross_entropy", "softmax_cross_entropy", (logits, labels), {}),
        ("bce_with_logits", "bce_with_logits", (dl, t), {}),
        ("sgd_update fc1.w", "sgd_update", (prm, grd, vel, 0.05, 0.9), {}),
        ("accumulate fc1.w", "accumulate", (grd, vel), {}),
        ("adam_update fc1.w int step", "adam_update", (prm, grd, m, v, 3, 2e-4, 0.5), {}),
        ("adam_update fc1.w counter", "adam_update", (prm, grd, m, v, counter, 2e-4, 0.5), {}),
        # the other planned ops, on LeNet and DCGAN shapes
        ("conv2d_backward_data s2 dcgan", "conv2d_backward_data", (g7, wg, (N, 64, 14, 14), 2, 1), {}),
        ("conv_transpose2d_bwd_data dcgan", "conv_transpose2d_backward_data", (g14, wg, (N, 128, 7, 7), 2, 1), {}),
        ("conv_transpose2d_bwd_weight dcgan", "conv_transpose2d_backward_weight", (g14, g7, (128, 64, 4, 4), 2, 1),
         {}),
        ("leaky_relu_backward", "leaky_relu_backward", (p_in, dev(N, 32, 28, 28), 0.2), {}),
        ("sigmoid_forward", "sigmoid_forward", (p_in,), {}),
        ("sigmoid_backward", "sigmoid_backward", (p_in, dev(N, 32, 28, 28)), {}),
        ("tanh_forward", "tanh_forward", (p_in,), {}),
        ("tanh_backward", "tanh_backward", (p_in, dev(N, 32, 28, 28)), {}),
        ("avg_pool2d_forward", "avg_pool2d_forward", (p_in, 2), {}),
        ("avg_pool2d_backward", "avg_pool2d_backward", (p_out, (N, 32, 28, 28), 2), {}),
        ("relu_max_pool2d_forward", "relu_max_pool2d_forward", (p_in, 2), {}),
        ("relu_max_pool2d_backward", "relu_max_pool2d_backward", (p_out, code, (N, 32, 28, 28), 2), {}),
        ("batchnorm_forward eval", "batchnorm_forward", (bn_x, gamma, beta, rm, rv, False), {}),
        ("batchnorm_backward", "batchnorm_backward", (bn_x, dev(N, 64, 7, 7), gamma, bn_mean, bn_invstd), {}),
        ("bias_add", "bias_add", (dev(N, 64, 14, 14), dev(64)), {}),
        ("embedding_forward", "embedding_forward", (emb, cls), {}),
        ("embedding_backward", "embedding_backward", (dev(N, 50), cls, (10, 50)), {}),
        ("class_projection_forward", "class_projection_forward", (fh, dev(10, 6272), cls), {}),
        ("gan_stats", "gan_stats", (sums, *loss0, dl, dev(N, 1), dev(N, 1)), {}),
        # the backward passes that take an activation's backward, and the one-launch narrow Linear backward
        ("conv2d_backward_data s2 lrelu", "conv2d_backward_data", (g7, wg, (N, 64, 14, 14), 2, 1),
         {"activation": "leaky_relu", "negative_slope": 0.2, "activation_output": g14}),
        ("dropout_backward relu", "dropout_backward", (d256, mask, 0.5), {"activation": "relu", "activation_output": dh}),
        ("linear_backward fc2", "linear_backward", (logits, d256, dev(10, 256)), {}),
    ]


def _paired_us(fn, raw, calls, chunk):
    """Median CPU time per call of ``fn`` and of ``raw``, and median of their difference: the
    ``calls`` calls of each run in chunks of ``chunk``, a chunk of one right after a
    chunk of the other (in alternating order), so that the load of a shared machine, which
    changes from second to second, affects both sides of each difference alike (CPU time of this
    process, not wall time)."""
    for _ in range(min(200, calls)):
        fn()
        raw()
    us, raw_us, diff = [], [], []
    clock = time.process_time
    for i in range(max(1, calls // chunk)):
        first, second = (fn, raw) if i % 2 == 0 else (raw, fn)
        t0 = clock()
        for _ in range(chunk):
            first()
        t1 = clock()
        for _ in range(chunk):
            second()
        t2 = clock()
        a, b = ((t1 - t0), (t2 - t1)) if i % 2 == 0 else ((t2 - t1), (t1 - t0))
        us.append(a / chunk * 1e6)
        raw_us.append(b / chunk * 1e6)
        diff.append(us[-1] - raw_us[-1])
    return statistics.median(us), statistics.median(raw_us), statistics.median(diff)


def _raw_launches(cp, emu, fn, given=()):
    """A function doing only what one call of ``fn`` hands the stand-in: allocating its outputs
    (those not among the arrays ``given`` to it: an ``out=``) and launching its kernels with the
    recorded arguments, the new outputs in place of the recorded ones (what a hand-written CuPy
    program would pay); and the number of launches."""
    with emu.trace(execute=False) as t:
        out = fn()
    outs = [o for o in (out if isinstance(out, tuple) else (out,))
            if isinstance(o, cp.ndarray) and not any(o is g for g in given)]
    shapes = [(o.shape, o.dtype) for o in outs]
    launches = []
    for rec in t.launches:
        slots = [(pos, j) for pos, a in enumerate(rec.args) for j, o in enumerate(outs) if a is o]
        launches.append((_find_kernel(rec.name), rec.grid, rec.block, list(rec.args), slots))

    def raw():
        new = [cp.empty(shape, dtype) for shape, dtype in shapes]
        for kernel, grid, block, args, slots in launches:
            args = args.copy()
            for pos, j in slots:
                args[pos] = new[j]
            kernel(grid, block, tuple(args))
    return raw, len(launches)


def _find_kernel(name):
    from fastconv.backends.cuda import config, loader

    for filename, names in config.KERNELS.items():
        if name in names:
            return loader.function(filename, name)
    raise KeyError(name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=4000, help="timed calls of each op and of its raw launches "
                    "(default 4000)")
    ap.add_argument("--chunk", type=int, default=50, help="calls per timed chunk; medians are over chunks "
                    "(default 50)")
    ap.add_argument("--batch", type=int, default=1, help="batch size of the LeNet shapes (default 1)")
    ap.add_argument("--ops", default="", help="comma-separated row-name prefixes to run (default: all)")
    args = ap.parse_args(argv)

    from fastconv import emu, ops

    with emu.activate() as cp:
        rows = _rows(cp, np.random.default_rng(0), args.batch)
        want = [p for p in args.ops.split(",") if p]
        print(f"{'op':34s} {'launches':>8s} {'us/call':>8s} {'raw us':>8s} {'beyond raw':>10s}")
        # no-execute mode without a trace: a trace keeps every launch's arguments (and so every
        # output array) alive, and the growing memory would be timed too
        emu.SETTINGS.execute = emu.SETTINGS.fill = False
        try:
            for name, op_name, a, kw in rows:
                if want and not any(name.startswith(p) for p in want):
                    continue
                def call(op_name=op_name, a=a, kw=kw):
                    return getattr(ops, op_name)(*a, **kw)
                try:
                    call()  # compile/look up once
                except Exception as e:  # an op this commit lacks (the table is also run on older ones)
                    print(f"{name:34s} not run: {type(e).__name__}: {str(e).splitlines()[0][:60]}")
                    continue
                given = [g for v in kw.values() for g in (v if isinstance(v, tuple) else (v,))]
                raw, launches = _raw_launches(cp, emu, call, given)
                us, raw_us, beyond = _paired_us(call, raw, args.calls, args.chunk)
                print(f"{name:34s} {launches:8d} {us:8.1f} {raw_us:8.1f} {beyond:10.1f}", flush=True)
        finally:
            emu.SETTINGS.execute = emu.SETTINGS.fill = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
