"""Launch plans (fastconv.plan) on the CPU execution layer (fastconv.emu): a plan hit gives the
same outputs, bit for bit, as the full path it replays, issues the same launches, never reaches
the launcher, and every argument error is still raised after a hit. Outputs are NaN-poisoned
(the poison setting) so a launch the replay missed shows as NaN."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import fastconv
from fastconv import emu, ops, plan

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="fastconv.emu compiles the kernels with g++")


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in, fastconv.using(poison=True, kernels="cupy"):
        yield stand_in


def _dev(cp, rng, *shape, dtype=np.float32):
    if np.dtype(dtype).kind == "f":
        return cp.asarray(rng.standard_normal(shape).astype(dtype))
    return cp.asarray(rng.integers(0, 4, shape).astype(dtype))


def _cases(cp, rng):
    """(op name, args) of every planned op, small shapes, non-zero data."""
    d = lambda *s, **k: _dev(cp, rng, *s, **k)  # noqa: E731
    x, w, b = d(2, 3, 9, 9), d(4, 3, 3, 3), d(4)
    dy = d(2, 4, 5, 5)
    xt, wt = d(2, 4, 5, 5), d(4, 3, 3, 3)
    p = d(2, 3, 8, 8)
    am = cp.asarray(rng.integers(0, 4, (2, 3, 4, 4)).astype(np.int32))
    g, bt = d(3), d(3)
    rv = cp.asarray(rng.random(3).astype(np.float32) + 0.5)
    return [
        ("conv2d_forward", (x, w, b, 2, 1)),
        ("conv2d_backward_data", (dy, w, (2, 3, 9, 9), 2, 1)),
        ("conv2d_backward_weight", (dy, x, (4, 3, 3, 3), 2, 1)),
        ("conv2d_backward_bias", (dy,)),
        ("conv_transpose2d_backward_data", (d(2, 3, 11, 11), wt, (2, 4, 5, 5), 2, 0)),
        ("conv_transpose2d_backward_weight", (d(2, 3, 11, 11), xt, (4, 3, 3, 3), 2, 0)),
        ("relu_forward", (p,)), ("relu_backward", (p, d(2, 3, 8, 8))),
        ("leaky_relu_forward", (p, 0.2)), ("leaky_relu_backward", (p, d(2, 3, 8, 8), 0.2)),
        ("sigmoid_forward", (p,)), ("sigmoid_backward", (p, d(2, 3, 8, 8))),
        ("tanh_forward", (p,)), ("tanh_backward", (p, d(2, 3, 8, 8))),
        ("max_pool2d_forward", (p, 2)), ("max_pool2d_backward", (d(2, 3, 4, 4), am, (2, 3, 8, 8), 2)),
        ("avg_pool2d_forward", (p, 2)), ("avg_pool2d_backward", (d(2, 3, 4, 4), (2, 3, 8, 8), 2)),
        ("relu_max_pool2d_forward", (p, 2)),
        ("relu_max_pool2d_backward", (d(2, 3, 4, 4), cp.asarray(np.where(rng.random((2, 3, 4, 4)) < 0.2, 255,
                                                                          rng.integers(0, 4, (2, 3, 4, 4)))
                                                                 .astype(np.uint8)), (2, 3, 8, 8), 2)),
        ("batchnorm_forward", (p, g, bt, d(3), rv, True)),
        ("batchnorm_forward", (p, g, bt, d(3), rv, False)),
        ("batchnorm_backward", (d(2, 3, 8, 8), p, g, d(3), rv, True)),
        ("dropout_backward", (d(2, 3, 8, 8), cp.asarray((rng.random((2, 3, 8, 8)) > 0.5).astype(np.uint8)), 0.5)),
        ("softmax_cross_entropy", (d(6, 5), cp.asarray(rng.integers(0, 5, 6).astype(np.int32)))),
        ("bce_with_logits", (d(6, 1), cp.asarray(rng.random((6, 1)).astype(np.float32)))),
        ("linear_forward", (d(5, 7), d(3, 7), d(3))),
        ("linear_backward_data", (d(5, 3), d(3, 7))),
        ("linear_backward_weight", (d(5, 3), d(5, 7))),
        ("accumulate", (d(4, 6), d(4, 6))),
        ("bias_add", (d(2, 3, 4, 5), d(3))),
    ]


def _host(out):
    outs = out if isinstance(out, tuple) else (out,)
    return [None if o is None else o.get() for o in outs]


def _copy_inputs(cp, args):
    """Fresh copies of the array arguments (in-place ops update them)."""
    return tuple(cp.asarray(a.get()) if isinstance(a, cp.ndarray) else a for a in args)


def _plans(name):
    return getattr(ops, name).plans


def test_planned_ops_hit_equals_full_path(cp):
    rng = np.random.default_rng(0)
    for name, args in _cases(cp, rng):
        fn = getattr(ops, name)
        fn.plans.clear()
        a1 = _copy_inputs(cp, args)
        with emu.trace() as t_full:
            full = _host(fn(*a1))
        (entry,) = fn.plans.values()
        assert isinstance(entry, plan.Plan), f"{name}: the first call left no plan"
        a2 = _copy_inputs(cp, args)
        with emu.trace() as t_hit:
            hit = _host(fn(*a2))
        assert t_hit.launch_names == t_full.launch_names, name
        assert [r.grid for r in t_hit.launches] == [r.grid for r in t_full.launches], name
        assert t_hit.allocations == t_full.allocations, name
        for f, h in zip(full, hit):
            if f is None and h is None:       # in-place ops return nothing; their inputs are compared below
                continue
            assert f is not None and not np.isnan(f).any(), f"{name}: the full path left NaN"
            np.testing.assert_array_equal(h, f, err_msg=f"{name}: the plan hit differs from the full path")
        for x1, x2 in zip(a1, a2):  # in-place updates (batchnorm running stats) too
            if isinstance(x1, cp.ndarray):
                np.testing.assert_array_equal(x2.get(), x1.get(), err_msg=f"{name}: an in-place update differs")


def test_sgd_update_hit_equals_full_path(cp):
    rng = np.random.default_rng(1)
    p, g, v = (_dev(cp, rng, 7, 5) for _ in range(3))
    p2, g2, v2 = (cp.asarray(a.get()) for a in (p, g, v))
    ops.sgd_update.plans.clear()
    for _ in range(3):                        # a miss, then two hits
        ops.sgd_update(p, g, v, 0.1, 0.9)
    host_p, host_v = p2.get().astype(np.float64), v2.get().astype(np.float64)
    for _ in range(3):
        host_v = 0.9 * host_v + g2.get()
        host_p = host_p - 0.1 * host_v
    np.testing.assert_allclose(p.get(), host_p, rtol=1e-5)
    np.testing.assert_allclose(v.get(), host_v, rtol=1e-5)


def test_hit_skips_the_checks_and_the_launcher(cp, monkeypatch):
    from fastconv.ops import activation

    x = _dev(cp, np.random.default_rng(2), 4, 6)
    ops.relu_forward.plans.clear()
    ops.relu_forward(x)

    def refuse(*a, **k):
        raise AssertionError("a plan hit reached the op layer's checks or the launcher")
    monkeypatch.setattr(activation, "array", refuse)
    monkeypatch.setattr(activation, "op", refuse)
    np.testing.assert_array_equal(ops.relu_forward(x).get(), np.maximum(x.get(), 0))
    with pytest.raises(AssertionError, match="plan hit"):
        ops.relu_forward(x[:2])            # another shape: a miss takes the full path


def test_errors_after_a_hit(cp):
    rng = np.random.default_rng(3)
    x, w = _dev(cp, rng, 2, 3, 9, 9), _dev(cp, rng, 4, 3, 3, 3)
    ops.conv2d_forward(x, w, None, 1, 1)
    ops.conv2d_forward(x, w, None, 1, 1)        # a hit
    with pytest.raises(ValueError, match="padding"):
        ops.conv2d_forward(x, w, None, 1, -1)
    with pytest.raises(TypeError, match="w: got dtype float64"):
        ops.conv2d_forward(x, cp.asarray(w.get().astype(np.float64)), None, 1, 1)
    with pytest.raises(TypeError, match="mixed devices"):
        ops.conv2d_forward(x, w.get(), None, 1, 1)
    with pytest.raises(ValueError, match="groups"):
        ops.conv2d_forward(x, w, None, 1, 1, 1, 2)
    with pytest.raises(ValueError, match="negative_slope"):
        ops.leaky_relu_forward(x, 1.5)
    assert all((int, -1) not in k for k in ops.conv2d_forward.plans), "a failed call left a plan"
    want = ops.conv2d_forward(x, w, None, 1, 1).get()
    for _ in range(2):                         # keyword arguments: their own key, the same result
        np.testing.assert_array_equal(ops.conv2d_forward(x, w, padding=1).get(), want)


def test_key_covers_settings_and_layout(cp):
    rng = np.random.default_rng(4)
    x = _dev(cp, rng, 2, 3, 8, 8)
    ops.relu_forward.plans.clear()
    ops.relu_forward(x)
    with fastconv.using(poison=False):
        ops.relu_forward(x)
    assert len(ops.relu_forward.plans) == 2, "a settings change must build a new plan"
    xt = x.transpose(0, 1, 3, 2)              # non-contiguous: the launcher copies it, no plan replays that
    want = np.maximum(xt.get(), 0)
    for _ in range(2):
        np.testing.assert_array_equal(ops.relu_forward(xt).get(), want)
    off = cp.asarray(np.arange(2 * 3 * 8 * 8 + 1, dtype=np.float32) - 60)[1:]   # 4-byte aligned only
    want = np.maximum(off.get(), 0)
    for _ in range(2):
        np.testing.assert_array_equal(ops.relu_forward(off).get(), want)


def test_precision_argument_builds_its_own_plan(cp):
    """precision= on a conv op is part of the key: the tf32 call gets its own plan (TF32 kernels),
    and the default call after it still replays the fp32 plan."""
    rng = np.random.default_rng(7)
    x, w = _dev(cp, rng, 2, 8, 9, 9), _dev(cp, rng, 6, 8, 3, 3)   # C*R*S = 72: the v3 core, not small-channel
    ops.conv2d_forward.plans.clear()
    names = {}
    for precision in (None, "tf32", None, "tf32"):
        kw = {} if precision is None else {"precision": precision}
        with emu.trace() as t:
            y = ops.conv2d_forward(x, w, None, 1, 1, **kw).get()
        assert not np.isnan(y).any()
        names.setdefault(precision, (t.launch_names, y))
        assert t.launch_names == names[precision][0], precision
        np.testing.assert_array_equal(y, names[precision][1], err_msg=f"precision={precision}: hit != full path")
    assert len(ops.conv2d_forward.plans) == 2, "precision='tf32' must build a plan of its own"
    assert any("tf32" in n for n in names["tf32"][0]), names["tf32"][0]
    assert not any("tf32" in n for n in names[None][0]), names[None][0]
    assert not np.array_equal(names["tf32"][1], names[None][1]), "TF32 products should round differently"


def test_aliased_inputs_do_not_tie_a_plan(cp):
    rng = np.random.default_rng(6)
    a, b = _dev(cp, rng, 3, 4), _dev(cp, rng, 3, 4)
    ops.relu_backward.plans.clear()
    ops.relu_backward(a, a)                    # the same array twice: no plan from this call
    assert not ops.relu_backward.plans
    for _ in range(2):
        np.testing.assert_array_equal(ops.relu_backward(a, b).get(), a.get() * (b.get() > 0))
    np.testing.assert_array_equal(ops.relu_backward(b, b).get(), b.get() * (b.get() > 0))


def test_cpu_calls_are_not_planned():
    x = np.random.default_rng(5).standard_normal((3, 4)).astype(np.float32)
    ops.relu_forward.plans.clear()
    np.testing.assert_array_equal(ops.relu_forward(x), np.maximum(x, 0))
    assert not ops.relu_forward.plans


def _misses(fn, call, want):
    """``call()`` must take the full path (store a new plan) and give ``want`` (host array)."""
    before = set(fn.plans)
    out = call()
    assert set(fn.plans) - before, "a call differing in what the plan baked in hit an old plan"
    np.testing.assert_array_equal(out.get(), want)


def test_every_baked_in_difference_misses(cp, monkeypatch):
    """dtype, shape, strides, alignment, device, settings, #defines and hyper-parameters are all
    in the key: a call differing in one of them never replays a plan built without it."""
    rng = np.random.default_rng(8)
    x = _dev(cp, rng, 2, 3, 8, 8)
    ops.leaky_relu_forward.plans.clear()
    relu = lambda a, s=0.2: ops.leaky_relu_forward(a, s)  # noqa: E731
    oracle = lambda a, s=0.2: np.where(a > 0, a, np.float32(s) * a)  # noqa: E731
    for _ in range(2):
        relu(x)                                                           # a miss, then a hit
    _misses(ops.leaky_relu_forward, lambda: relu(x[:1]), oracle(x.get()[:1]))                   # shape
    _misses(ops.leaky_relu_forward, lambda: relu(x.transpose(0, 1, 3, 2)), oracle(x.get().transpose(0, 1, 3, 2)))
    flat = cp.asarray(np.arange(2 * 3 * 8 * 8 + 1, dtype=np.float32) - 60)[1:]
    _misses(ops.leaky_relu_forward, lambda: relu(flat.reshape(x.shape)), oracle(flat.get().reshape(x.shape)))
    _misses(ops.leaky_relu_forward, lambda: relu(x, 0.3), oracle(x.get(), 0.3))               # hyper-parameter
    _misses(ops.leaky_relu_forward, lambda: relu(x, np.float64(0.2)), oracle(x.get()))         # its type
    with fastconv.using(poison=False):                                                         # settings
        _misses(ops.leaky_relu_forward, lambda: relu(x), oracle(x.get()))
    monkeypatch.setenv("FASTCONV_CUDA_DEFINES", "FASTCONV_PLAN_TEST=1")                        # tuning #defines
    _misses(ops.leaky_relu_forward, lambda: relu(x), oracle(x.get()))
    monkeypatch.delenv("FASTCONV_CUDA_DEFINES")
    with monkeypatch.context() as m:                                                           # current device
        m.setattr(cp.cuda.runtime, "getDevice", lambda: 1)
        _misses(ops.leaky_relu_forward, lambda: relu(x), oracle(x.get()))
    other = cp.asarray(x.get())
    other.data.device_id = 1          # the array's device (the stand-in keeps .data per array, as CuPy)
    _misses(ops.leaky_relu_forward, lambda: relu(other), oracle(x.get()))
    with pytest.raises(TypeError, match="x: got dtype float64"):                              # dtype
        relu(cp.asarray(x.get().astype(np.float64)))


def test_the_key_names_the_array_type(cp):
    """One process may plan ops for the real CuPy and for the CPU layer's stand-in (the GPU cross-check
    runs both): every key starts with the array type, so a plan built for one never launches the
    other's arrays (the same shapes, device 0 and alignment otherwise made equal keys)."""
    ops.relu_forward.plans.clear()
    ops.relu_forward(_dev(cp, np.random.default_rng(1), 3, 5))
    assert [k[0] for k in ops.relu_forward.plans] == [cp.ndarray]


def test_conv_settings_and_hyper_parameters_miss(cp):
    rng = np.random.default_rng(9)
    x, w = _dev(cp, rng, 2, 8, 9, 9), _dev(cp, rng, 6, 8, 3, 3)
    ops.conv2d_forward.plans.clear()
    cases = [({}, (1, 1)), ({}, (2, 1)), ({}, (1, 0)), ({}, (1, 1, 2)), ({"conv_version": 1}, (1, 1)),
             ({"conv_tile": "t64x64"}, (1, 1)), ({"tf32": True}, (1, 1))]
    for i, (changes, hyper) in enumerate(cases):
        with fastconv.using(**changes):
            want = None
            for _ in range(2):        # a miss, then a hit of the plan this case built
                with emu.trace() as t:
                    y = ops.conv2d_forward(x, w, None, *hyper).get()
                assert not np.isnan(y).any(), (changes, hyper)
                want = y if want is None else np.testing.assert_array_equal(y, want) or want
        assert len(ops.conv2d_forward.plans) == i + 1, f"{changes} {hyper}: expected a plan of its own"
        ref = ops.conv2d_forward(x.get().astype(np.float64), w.get().astype(np.float64), None, *hyper)
        tol = 2e-2 if changes.get("tf32") else 1e-4
        np.testing.assert_allclose(want, ref, rtol=tol, atol=tol, err_msg=f"{changes} {hyper}")
        if changes.get("conv_version") == 1:
            assert not any("v3" in n for n in t.launch_names), t.launch_names


def test_workspaces_kept_per_stream(cp):
    """With poison off a hit allocates only what it returns (conv's packed weights and split-K
    workspace are kept by the plan), gives the full path's result while earlier results stay alive,
    and another stream gets workspaces of its own."""
    rng = np.random.default_rng(10)
    x, w = _dev(cp, rng, 1, 32, 14, 14), _dev(cp, rng, 64, 32, 5, 5)
    ops.conv2d_forward.plans.clear()
    with fastconv.using(poison=False):
        with emu.trace() as t_full:
            want = ops.conv2d_forward(x, w, None, 1, 2)
        assert t_full.allocations >= 2, "expected a conv with workspaces (packed weights, split-K)"
        outs = []
        for _ in range(3):
            with emu.trace() as t:
                outs.append(ops.conv2d_forward(x, w, None, 1, 2))
        assert t.allocations == 1, f"a hit allocated {t.allocations} arrays, expected only its output"
        for y in outs:
            np.testing.assert_array_equal(y.get(), want.get())
        (entry,) = ops.conv2d_forward.plans.values()
        with cp.cuda.Stream():
            y = ops.conv2d_forward(x, w, None, 1, 2)
        np.testing.assert_array_equal(y.get(), want.get())
        assert len(entry.kept) == 2, "a second stream must get workspaces of its own"
        kept = sum(a.nbytes for ws in entry.kept.values() for a in ws)
        assert plan._kept_bytes >= kept > 0
        before = plan._kept_bytes
        del entry
        ops.conv2d_forward.plans.clear()             # no gc.collect(): a dropped plan frees its workspaces at once
        assert plan._kept_bytes == before - kept


def test_workspace_budget(cp, monkeypatch):
    """Past WORKSPACE_BUDGET a plan allocates its workspaces on every call, and is still exact."""
    rng = np.random.default_rng(14)
    x, w = _dev(cp, rng, 1, 32, 14, 14), _dev(cp, rng, 64, 32, 5, 5)
    monkeypatch.setattr(plan, "WORKSPACE_BUDGET", plan._kept_bytes)
    ops.conv2d_forward.plans.clear()
    with fastconv.using(poison=False):
        with emu.trace() as t_full:
            want = ops.conv2d_forward(x, w, None, 1, 2).get()
        for _ in range(2):
            with emu.trace() as t:
                y = ops.conv2d_forward(x, w, None, 1, 2).get()
            assert t.allocations == t_full.allocations
            np.testing.assert_array_equal(y, want)
    (entry,) = ops.conv2d_forward.plans.values()
    assert not entry.kept


def test_numba_bound_launch_packs_as_launch(cp, monkeypatch):
    """A plan binds a numba-family launch once (scalars packed at build time); its replay hands
    cuLaunchKernel the same parameter bytes as the full path's launch(), with the call's pointers
    (a stand-in driver reads the parameters back)."""
    import ctypes

    from fastconv.backends.numba import driver

    read = {"f": ctypes.c_uint64, "n": ctypes.c_int32, "x": ctypes.c_float}
    seen = []

    class Driver:
        @staticmethod
        def cuLaunchKernel(fn, g0, g1, g2, b0, b1, b2, shared, stream, params, extra):
            kinds = driver._PARAMS["leaky_relu_backward_v2"]
            seen.append((fn, (g0, g1, g2), (b0, b1, b2), stream,
                         [read[k].from_address(params[i]).value for i, k in enumerate(kinds)]))
            return 0

    monkeypatch.setattr(driver, "_driver", Driver)
    monkeypatch.setattr(driver, "_cp", cp)
    kernel = driver._GpuKernel.__new__(driver._GpuKernel)
    kernel._set_layout("leaky_relu_backward_v2", 77)        # dy, y, dx, n, slope
    rng = np.random.default_rng(13)
    arrays = [_dev(cp, rng, 5) for _ in range(6)]
    slope = np.float32(0.2)
    grid, block = (3, 1, 1), (128, 1, 1)
    plan_ = plan.Plan(fastconv.settings.current(), [], [(kernel, grid, block, [None, None, None, np.int32(5), slope],
                                                         [(0, 0), (1, 1), (2, 2)], {})], None, 3)
    for a, b, c in (arrays[:3], arrays[3:]):
        kernel.launch(grid, block, 0, [a.data.ptr, b.data.ptr, c.data.ptr, np.int32(5), slope])
        kernel(grid, block, (a, b, c, np.int32(5), slope), 0)  # launch()'s path: arrays as arrays
        plan_.run(a, b, c)
        full, called, hit = seen[-3:]
        assert called == full and hit == full and full[-1][:3] == [a.data.ptr, b.data.ptr, c.data.ptr] and full[-1][3] == 5
        assert full[-1][4] == slope

