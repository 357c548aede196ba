"""``fastconv check``: every GPU op and pass of each available kernel family against the CPU path.

Each op runs on random non-zero float32 data on the GPU (outputs poisoned with NaN first) and on
the same values in float64 on the CPU (the oracle); the table lists op, pass, family, shapes
tried, the largest relative L2 error and pass/fail against fastconv.testing's tolerances.
Rows of the numba family whose op has no numba kernel (fastconv.backend.op falls back to the
cupy family's) are labelled "numba->cupy". The conv rows judge the shipped v3 kernels; the v1
kernels are judged by tests/ops/test_<family>*.py.
Exit status 0 when everything passes, 1 on any failure, 2 when no GPU can be used.

The case functions here (``CASES``, ``run_case``) are shared with tests/gpu and the GPU
benchmark script, so the shipped check and the test suite judge the kernels the same way.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import ops, settings
from .backend import gpu_available
from .testing import F32_TOL, REDUCTION_TOL, rel_error

F64 = np.float64

# ---------------------------------------------------------------------------------------------
# shapes

def bench_conv_shapes() -> dict:
    """name -> (N, C, H, W, K, R, S, stride, pad, dilation, groups): the conv shapes of
    benchmarks/shapes.py (the one list of benchmark shapes; it needs a source checkout)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "shapes.py"
    if not path.is_file():
        raise FileNotFoundError(f"--bench-shapes: got no {path}, expected a source checkout of fastconv "
                                "(the benchmark shapes live in benchmarks/shapes.py)")
    spec = importlib.util.spec_from_file_location("fastconv_benchmark_shapes", path)
    shapes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shapes)
    return {name: tuple(s) + (1, 1) for name, s in shapes.CONV_SHAPES.items()}


def random_conv_spec(rng) -> tuple:
    """A random valid conv shape: odd sizes, strides beyond the kernel, padding, dilation, groups."""
    while True:
        g = int(rng.choice([1, 1, 1, 2, 3]))
        n = int(rng.integers(1, 5))
        c = g * int(rng.integers(1, 9))
        k = g * int(rng.integers(1, 40))
        r, s = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        h, w = int(rng.integers(1, 20)), int(rng.integers(1, 20))
        st = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        pd = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        dl = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        spec = (n, c, h, w, k, r, s, st, pd, dl, g)
        if _conv_ok(spec):
            return spec


def _conv_ok(spec) -> bool:
    n, c, h, w, k, r, s, st, pd, dl, g = spec
    st, pd, dl = _pair(st), _pair(pd), _pair(dl)
    return (ops.conv_out_size(h, r, st[0], pd[0], dl[0]) >= 1 and ops.conv_out_size(w, s, st[1], pd[1], dl[1]) >= 1)


def random_pool_spec(rng) -> tuple:
    """(N, C, H, W, kernel, stride, padding) with padding <= kernel/2 and a window that fits."""
    while True:
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        spec = (int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(rng.integers(1, 16)), int(rng.integers(1, 16)),
                (kh, kw), (int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                (int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))))
        if _pool_ok(spec):
            return spec


def _pool_ok(spec) -> bool:
    n, c, h, w, ks, st, pd = spec
    return all(2 * pd[i] <= ks[i] for i in range(2)) and ops.conv_out_size(h, ks[0], st[0], pd[0], 1) >= 1 \
        and ops.conv_out_size(w, ks[1], st[1], pd[1], 1) >= 1


def random_shape(rng, ndim=None) -> tuple:
    ndim = int(rng.integers(1, 5)) if ndim is None else ndim
    return tuple(int(rng.integers(1, 9)) for _ in range(ndim))


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# ---------------------------------------------------------------------------------------------
# cases: each returns [(op, pass, gpu_result, float64_reference, tolerance)]

def _cp():
    import cupy
    return cupy


def _data(rng, shape, low=None, high=None):
    if low is not None:
        return rng.uniform(low, high, size=shape).astype(np.float32)
    a = rng.standard_normal(shape).astype(np.float32)
    a[a == 0] = 0.5  # never test on zeros
    return a


def _g(a):
    return _cp().asarray(a)


def conv_case(spec, family, rng):
    n, c, h, w, k, r, s, st, pd, dl, g = spec
    x, wt, b = _data(rng, (n, c, h, w)), _data(rng, (k, c // g, r, s)), _data(rng, (k,))
    y_ref = ops.conv2d_forward(x.astype(F64), wt.astype(F64), b.astype(F64), st, pd, dl, g)
    dy = _data(rng, y_ref.shape)
    dx_ref = ops.conv2d_backward_data(dy.astype(F64), wt.astype(F64), x.shape, st, pd, dl, g)
    dw_ref = ops.conv2d_backward_weight(dy.astype(F64), x.astype(F64), wt.shape, st, pd, dl, g)
    db_ref = ops.conv2d_backward_bias(dy.astype(F64))
    kw = dict(kernels=family)
    y = ops.conv2d_forward(_g(x), _g(wt), _g(b), st, pd, dl, g, **kw)
    dx = ops.conv2d_backward_data(_g(dy), _g(wt), x.shape, st, pd, dl, g, **kw)
    dw = ops.conv2d_backward_weight(_g(dy), _g(x), wt.shape, st, pd, dl, g, **kw)
    db = ops.conv2d_backward_bias(_g(dy), **kw)
    # weight and bias gradients sum over N*P*Q terms (up to ~2e5 here): float32 summation error
    # grows with the length of the sum, hence REDUCTION_TOL.
    return [("conv2d", "forward", y, y_ref, F32_TOL), ("conv2d", "backward_data", dx, dx_ref, F32_TOL),
            ("conv2d", "backward_weight", dw, dw_ref, REDUCTION_TOL),
            ("conv2d", "backward_bias", db, db_ref, REDUCTION_TOL)]


def _unary_case(name, fwd, bwd, shape, family, rng, *extra):
    x = _data(rng, shape)
    y_ref = fwd(x.astype(F64), *extra)
    dy = _data(rng, shape)
    y32 = y_ref.astype(np.float32)
    dx_ref = bwd(dy.astype(F64), y32.astype(F64), *extra)
    y = fwd(_g(x), *extra, kernels=family)
    dx = bwd(_g(dy), _g(y32), *extra, kernels=family)
    return [(name, "forward", y, y_ref, F32_TOL), (name, "backward", dx, dx_ref, F32_TOL)]


def activation_cases(shape, family, rng):
    return (_unary_case("relu", ops.relu_forward, ops.relu_backward, shape, family, rng)
            + _unary_case("leaky_relu", ops.leaky_relu_forward, ops.leaky_relu_backward, shape, family, rng, 0.2)
            + _unary_case("sigmoid", ops.sigmoid_forward, ops.sigmoid_backward, shape, family, rng)
            + _unary_case("tanh", ops.tanh_forward, ops.tanh_backward, shape, family, rng))


def pool_case(spec, family, rng):
    n, c, h, w, ks, st, pd = spec
    x = _data(rng, (n, c, h, w))
    y_ref, am_ref = ops.max_pool2d_forward(x.astype(F64), ks, st, pd)
    dy = _data(rng, y_ref.shape)
    dx_ref = ops.max_pool2d_backward(dy.astype(F64), am_ref, x.shape, ks, st, pd)
    y, am = ops.max_pool2d_forward(_g(x), ks, st, pd, kernels=family)
    dx = ops.max_pool2d_backward(_g(dy), _g(am_ref), x.shape, ks, st, pd, kernels=family)
    am_err = 0.0 if np.array_equal(_cp().asnumpy(am), am_ref) else float("inf")
    out = [("max_pool2d", "forward", y, y_ref, F32_TOL),
           ("max_pool2d", "argmax", np.float64(am_err), np.float64(0.0), 0.0),
           ("max_pool2d", "backward", dx, dx_ref, F32_TOL)]
    if ks[0] * ks[1] < 255:  # the fused op's uint8 argmax
        y_ref, code_ref = ops.relu_max_pool2d_forward(x.astype(F64), ks, st, pd)
        dx_ref = ops.relu_max_pool2d_backward(dy.astype(F64), code_ref, x.shape, ks, st, pd)
        y, code = ops.relu_max_pool2d_forward(_g(x), ks, st, pd, kernels=family)
        dx = ops.relu_max_pool2d_backward(_g(dy), _g(code_ref), x.shape, ks, st, pd, kernels=family)
        code_err = 0.0 if np.array_equal(_cp().asnumpy(code), code_ref) else float("inf")
        out += [("relu_max_pool2d", "forward", y, y_ref, F32_TOL),
                ("relu_max_pool2d", "argmax", np.float64(code_err), np.float64(0.0), 0.0),
                ("relu_max_pool2d", "backward", dx, dx_ref, F32_TOL)]
    for cip in (True, False):
        a_ref = ops.avg_pool2d_forward(x.astype(F64), ks, st, pd, cip)
        da_ref = ops.avg_pool2d_backward(dy.astype(F64), x.shape, ks, st, pd, cip)
        a = ops.avg_pool2d_forward(_g(x), ks, st, pd, cip, kernels=family)
        da = ops.avg_pool2d_backward(_g(dy), x.shape, ks, st, pd, cip, kernels=family)
        tag = "incl_pad" if cip else "excl_pad"
        out += [("avg_pool2d", f"forward_{tag}", a, a_ref, F32_TOL),
                ("avg_pool2d", f"backward_{tag}", da, da_ref, F32_TOL)]
    return out


def linear_case(shape, family, rng):
    n, fin, fout = shape
    x, w, b = _data(rng, (n, fin)), _data(rng, (fout, fin)), _data(rng, (fout,))
    dy = _data(rng, (n, fout))
    y_ref = ops.linear_forward(x.astype(F64), w.astype(F64), b.astype(F64))
    dx_ref = ops.linear_backward_data(dy.astype(F64), w.astype(F64))
    dw_ref, db_ref = ops.linear_backward_weight(dy.astype(F64), x.astype(F64))
    y = ops.linear_forward(_g(x), _g(w), _g(b), kernels=family)
    dx, dw, db = ops.linear_backward(_g(dy), _g(x), _g(w), kernels=family)   # <= 16 outputs: one launch
    return [("linear", "forward", y, y_ref, F32_TOL), ("linear", "backward_data", dx, dx_ref, F32_TOL),
            ("linear", "backward_weight", dw, dw_ref, REDUCTION_TOL), ("linear", "backward_bias", db, db_ref,
                                                                       REDUCTION_TOL)]


def batchnorm_case(shape, family, rng):
    """shape (N, C) or (N, C, H, W); training and eval, forward (y, stats, running stats) and backward."""
    c = shape[1]
    x = _data(rng, shape) * 2 + 0.5
    gamma, beta = _data(rng, (c,)), _data(rng, (c,))
    rm, rv = _data(rng, (c,)), _data(rng, (c,), 0.5, 2.0)
    dy = _data(rng, shape)
    out = []
    for training in (True, False):
        rm64, rv64 = rm.astype(F64), rv.astype(F64)
        y_ref, m_ref, is_ref = ops.batchnorm_forward(x.astype(F64), gamma.astype(F64), beta.astype(F64), rm64, rv64,
                                                     training, 0.1, 1e-5)
        rm_g, rv_g = _g(rm), _g(rv)
        y, m, istd = ops.batchnorm_forward(_g(x), _g(gamma), _g(beta), rm_g, rv_g, training, 0.1, 1e-5,
                                           kernels=family)
        m32, is32 = m_ref.astype(np.float32), is_ref.astype(np.float32)
        dx_ref, dg_ref, dbt_ref = ops.batchnorm_backward(dy.astype(F64), x.astype(F64), gamma.astype(F64),
                                                         m32.astype(F64), is32.astype(F64), training)
        dx, dg, dbt = ops.batchnorm_backward(_g(dy), _g(x), _g(gamma), _g(m32), _g(is32), training, kernels=family)
        mode = "train" if training else "eval"
        # per-channel statistics and parameter gradients are reductions over N*H*W: REDUCTION_TOL;
        # the eval forward is element-wise (running statistics), so F32_TOL
        out += [("batchnorm", f"forward_{mode}", y, y_ref, REDUCTION_TOL if training else F32_TOL),
                ("batchnorm", f"mean_invstd_{mode}", _cat(m, istd), np.concatenate([m_ref, is_ref]), REDUCTION_TOL),
                ("batchnorm", f"running_stats_{mode}", _cat(rm_g, rv_g), np.concatenate([rm64, rv64]), REDUCTION_TOL),
                ("batchnorm", f"backward_{mode}", dx, dx_ref, REDUCTION_TOL),
                ("batchnorm", f"backward_params_{mode}", _cat(dg, dbt), np.concatenate([dg_ref, dbt_ref]),
                 REDUCTION_TOL)]
    return out


def _cat(a, b):
    return _cp().concatenate([a.ravel(), b.ravel()])


def dropout_case(shape, family, rng):
    x = _data(rng, shape)
    p, seed = float(rng.uniform(0.05, 0.9)), int(rng.integers(0, 2**32))
    y_ref, mask_ref = ops.dropout_forward(x.astype(F64), p, seed)
    dy = _data(rng, shape)
    dx_ref = ops.dropout_backward(dy.astype(F64), mask_ref, p)
    y, mask = ops.dropout_forward(_g(x), p, seed, kernels=family)
    dx = ops.dropout_backward(_g(dy), _g(mask_ref), p, kernels=family)
    same = np.array_equal(_cp().asnumpy(mask), mask_ref)
    return [("dropout", "mask", np.float64(0.0 if same else np.inf), np.float64(0.0), 0.0),
            ("dropout", "forward", y, y_ref, F32_TOL), ("dropout", "backward", dx, dx_ref, F32_TOL)]


def loss_cases(shape, family, rng):
    n, k = shape
    z = _data(rng, (n, k)) * 3
    labels = rng.integers(0, k, size=n)
    l_ref, d_ref = ops.softmax_cross_entropy(z.astype(F64), labels)
    loss, d = ops.softmax_cross_entropy(_g(z), _g(labels), kernels=family)
    t = _data(rng, (n, k), 0.0, 1.0)
    bl_ref, bd_ref = ops.bce_with_logits(z.astype(F64), t.astype(F64))
    bl, bd = ops.bce_with_logits(_g(z), _g(t), kernels=family)
    return [("softmax_xent", "loss", loss, l_ref, F32_TOL), ("softmax_xent", "backward", d, d_ref, F32_TOL),
            ("bce_logits", "loss", bl, bl_ref, F32_TOL), ("bce_logits", "backward", bd, bd_ref, F32_TOL)]


def optim_cases(shape, family, rng):
    out = []
    for momentum, nesterov, wd in ((0.0, False, 0.0), (0.9, False, 1e-4), (0.9, True, 1e-3)):
        p, g, v = _data(rng, shape), _data(rng, shape), _data(rng, shape)
        p64, v64 = p.astype(F64), v.astype(F64)
        ops.sgd_update(p64, g.astype(F64), v64 if momentum else None, 0.05, momentum, wd, nesterov)
        pg, vg = _g(p), _g(v)
        ops.sgd_update(pg, _g(g), vg if momentum else None, 0.05, momentum, wd, nesterov, kernels=family)
        tag = f"m{momentum}{'_nesterov' if nesterov else ''}"
        out.append(("sgd_update", tag, _cat(pg, vg), np.concatenate([p64.ravel(), v64.ravel()]), F32_TOL))
    p, g, m = _data(rng, shape), _data(rng, shape), _data(rng, shape)
    v = _data(rng, shape, 0.1, 1.0)
    p64, m64, v64 = p.astype(F64), m.astype(F64), v.astype(F64)
    ops.adam_update(p64, g.astype(F64), m64, v64, 3, 1e-2, 0.9, 0.999, 1e-8, 1e-4)
    pg, mg, vg = _g(p), _g(m), _g(v)
    ops.adam_update(pg, _g(g), mg, vg, 3, 1e-2, 0.9, 0.999, 1e-8, 1e-4, kernels=family)
    out.append(("adam_update", "step3", _cp().concatenate([pg.ravel(), mg.ravel(), vg.ravel()]),
                np.concatenate([p64.ravel(), m64.ravel(), v64.ravel()]), F32_TOL))
    return out


# op family name -> (case function, random spec drawer)
CASES = {
    "conv2d": (conv_case, random_conv_spec),
    "activations": (activation_cases, lambda rng: random_shape(rng)),
    "pooling": (pool_case, random_pool_spec),
    "linear": (linear_case, lambda rng: tuple(int(v) for v in rng.integers(1, 70, size=3))),
    "batchnorm": (batchnorm_case, lambda rng: (int(rng.integers(2, 9)), int(rng.integers(1, 9)))
                  + ((int(rng.integers(1, 7)), int(rng.integers(1, 7))) if rng.integers(2) else ())),
    "dropout": (dropout_case, lambda rng: random_shape(rng)),
    "losses": (loss_cases, lambda rng: (int(rng.integers(1, 70)), int(rng.integers(2, 70)))),
    "optim": (optim_cases, lambda rng: random_shape(rng)),
}


def run_case(group: str, spec, family: str, rng):
    """[(op, pass, rel_error, tol)] for one shape of one op group on one family."""
    with settings.using(poison=True):
        results = CASES[group][0](spec, family, rng)
    return [(op, ps, rel_error(out, ref), tol) for op, ps, out, ref, tol in results]


def backend_function(op: str, ps: str) -> str:
    """The backend function (fastconv.backends.* name) that a row (op, pass) of the table judges."""
    special = {"softmax_xent": "softmax_cross_entropy", "bce_logits": "bce_with_logits",
               "sgd_update": "sgd_update", "adam_update": "adam_update"}
    if op in special:
        return special[op]
    if op == "linear" and ps == "backward_bias":
        return "linear_backward_weight"  # returns (dw, db)
    if op in ("conv2d", "linear") and ps.startswith("backward_"):
        return f"{op}_{ps}"
    return f"{op}_backward" if ps.startswith("backward") else f"{op}_forward"


def family_label(family: str, op: str, ps: str) -> str:
    """The family column of a row: "numba->cupy" where the numba family has no kernel of its own
    for the op and fastconv.backend.op falls back to the cupy family's, so the table does not
    credit numba with kernels it does not have."""
    if family != "numba":
        return family
    import importlib
    nb = importlib.import_module("fastconv.backends.numba")
    return family if hasattr(nb, backend_function(op, ps)) else "numba->cupy"


def families() -> list[str]:
    """Kernel families that can run here ("cupy" always with a GPU; "numba" when it imports)."""
    fams = ["cupy"]
    try:
        import importlib
        importlib.import_module("fastconv.backends.numba")
        fams.append("numba")
    except Exception:
        pass
    return fams


# ---------------------------------------------------------------------------------------------
# main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="fastconv check", description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", type=int, default=4, help="random shapes per op group (default 4)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--kernels", choices=("cupy", "numba"), default=None,
                    help="check one kernel family only (default: every available one)")
    ap.add_argument("--bench-shapes", action="store_true", help="also run the conv shapes of benchmarks/shapes.py (source checkout)")
    args = ap.parse_args(argv)
    if not gpu_available():
        print("fastconv check: no usable CUDA GPU (CuPy missing, no device, or the driver cannot run a "
              "kernel); expected a machine with an NVIDIA GPU and cupy-cuda12x/13x installed", file=sys.stderr)
        return 2
    cp = _cp()
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    fams = [args.kernels] if args.kernels else families()
    print(f"fastconv check on {name}; families: {', '.join(fams)}; tolerances F32 {F32_TOL:g}, "
          f"reductions {REDUCTION_TOL:g}")
    rows: dict[tuple, list] = {}
    failures = []
    t0 = time.time()
    for fam in fams:
        rng = np.random.default_rng(args.seed)
        for group, (_, draw) in CASES.items():
            specs = [draw(rng) for _ in range(args.shapes)]
            if group == "conv2d" and args.bench_shapes:
                specs += list(bench_conv_shapes().values())
            for spec in specs:
                try:
                    res = run_case(group, spec, fam, rng)
                except Exception as e:  # a crash is a failure of every pass of this group
                    res = [(group, "error", float("inf"), 0.0)]
                    failures.append(f"{group} {fam} {spec}: {type(e).__name__}: {e}")
                for op, ps, err, tol in res:
                    label = fam if ps == "error" else family_label(fam, op, ps)
                    row = rows.setdefault((op, ps, label), [0, 0.0, True, tol])
                    row[0] += 1
                    row[1] = max(row[1], err)
                    ok = err <= tol
                    row[2] = row[2] and ok
                    if not ok:
                        failures.append(f"{op} {ps} {label} {spec}: rel error {err:.3e} > {tol:g}")
    print(f"{'op':<14}{'pass':<26}{'family':<13}{'shapes':>7}  {'max rel err':>12}  result")
    for (op, ps, fam), (count, err, ok, tol) in rows.items():
        print(f"{op:<14}{ps:<26}{fam:<13}{count:>7}  {err:>12.3e}  {'pass' if ok else 'FAIL'}")
    if any(fam == "numba->cupy" for _, _, fam in rows):
        print("family numba->cupy: ops the numba family has no kernel for; fastconv.backend.op runs the cupy "
              "family's kernel for them")
    for f in failures[:20]:
        print("  failure:", f)
    print(f"{len(rows)} op/pass/family rows, {len(failures)} failures, {time.time() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
