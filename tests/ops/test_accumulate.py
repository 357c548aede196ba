"""``accumulate=True`` on every parameter-gradient op (conv2d and conv_transpose2d backward-weight,
the conv bias gradient, linear backward-weight, batchnorm backward, embedding backward) and on the
projection discriminator's two terms (class_projection_forward, embedding_forward): the result is
added into ``out`` by the op's own last kernel on the GPU. On every backend (tests/backends.py)
and every CUDA C path (small-channel, v3 GEMM unsplit and split, Winograd, TF32 vec, the v1
reference kernel, each confirmed by its launches on fastconv.emu):

- the op returns ``out`` itself and writes nothing around it (a view into a guarded buffer, also
  at an offset that is not 16-byte aligned);
- out holds, bit for bit, the fp32 sum of its prior values and the op's result without
  accumulate (what a separate add made before), every value finite; a second call (a launch
  plan's replay) adds again;
- that sum is prior + the float64 oracle within the op's tolerance;
- a bad ``accumulate`` is a one-line error naming it.
"""

import numpy as np
import pytest

import fastconv
import oracle as ref
from checks import TF32_L2, out_view, raises, randn
from fastconv import emu, ops
from fastconv.testing import F32_TOL, REDUCTION_TOL, assert_close


def _prior(backend, rng, shape, offset):
    """(out, untouched, prior): a view ``offset`` floats into a guarded buffer (checks.out_view)
    holding random prior values, and those values on the host."""
    out, untouched = out_view(backend, shape, offset=offset)
    prior = randn(rng, shape, np.float32)
    out[...] = backend.asarray(prior)
    return out, untouched, prior


def _added(backend, result, out, untouched, prior, alone, want, tol, key):
    """``result`` is out, out == prior + alone in fp32 (bit for bit, finite), close to prior + want,
    nothing around it written; returns out's values."""
    assert result is out, f"{key}: returned {type(result).__name__}, expected the out array itself"
    got = np.array(backend.get(out))   # a copy on the CPU too
    assert np.isfinite(got).all(), f"{key}: non-finite values"
    np.testing.assert_array_equal(got, prior + backend.get(alone), err_msg=f"{key}: not prior + the op's result")
    ref.record(f"accumulate {key}", assert_close(got, prior.astype(np.float64) + want, tol, key))
    assert untouched(), f"{key}: wrote outside out"
    return got


def _launched(backend, call):
    """call()'s result and, on fastconv.emu, the names of the kernels it launched (else None)."""
    if backend.name != "emu":
        return call(), None
    with emu.trace() as t:
        result = call()
    return result, t.launch_names


# name: x shape, w shape, stride, padding, groups, settings, the emu kernel that shows the path
CONV_CASES = {
    "smallc": ((3, 1, 12, 12), (8, 1, 5, 5), 1, 2, 1, {}, "conv2d_backward_weight_smallc_v1"),
    "smallc-split3": ((3, 1, 12, 12), (8, 1, 5, 5), 1, 2, 1, {"conv_splits": 3}, "conv2d_backward_weight_smallc_v1"),
    "gemm": ((2, 8, 10, 10), (16, 8, 3, 3), 2, 1, 1, {}, "conv2d_backward_weight_v3_t"),
    "gemm-unsplit": ((2, 8, 10, 10), (16, 8, 3, 3), 2, 1, 1, {"conv_splits": 1}, "conv2d_backward_weight_v3_t"),
    "gemm-split3": ((2, 8, 10, 10), (16, 8, 3, 3), 2, 1, 1, {"conv_splits": 3}, "conv2d_splitk_reduce"),
    "groups2": ((2, 8, 7, 7), (6, 4, 3, 3), 1, 1, 2, {}, "conv2d_backward_weight_v3_t"),
    "winograd": ((2, 8, 9, 9), (8, 8, 3, 3), 1, 1, 1, {}, "conv2d_winograd_wgrad_output_v2_r3"),
    "tf32-vec": ((2, 8, 10, 10), (16, 8, 3, 3), 2, 1, 1, {"tf32": True}, "conv2d_backward_weight_v3_tf32_vec_t"),
    "tf32-vec-split3": ((2, 8, 10, 10), (16, 8, 3, 3), 2, 1, 1, {"tf32": True, "conv_splits": 3},
                        "conv2d_backward_weight_v3_tf32_vec_t"),
    "v1": ((2, 3, 7, 6), (4, 3, 3, 3), 1, 1, 1, {"conv_version": 1}, "conv2d_backward_weight_v1"),
}


@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_backward_weight_accumulates(backend, rng, case, offset):
    x_shape, w_shape, stride, padding, groups, settings, kernel = CONV_CASES[case]
    if backend.kernels != "cupy" and ("conv_version" in settings or "conv_splits" in settings):
        pytest.skip("conv_version and conv_splits select the CUDA C family's conv paths")
    x = randn(rng, x_shape, np.float32)
    dy_shape = (x_shape[0], w_shape[0]) + tuple(ref.out_size(h, r, stride, padding)
                                                for h, r in zip(x_shape[2:], w_shape[2:]))
    dy = randn(rng, dy_shape, np.float32)
    xd, dyd = backend.asarray(x), backend.asarray(dy)
    tf32 = settings.get("tf32", False)
    want = ref.conv2d_backward_weight(dy, x, w_shape, stride, padding, groups=groups)
    tol = TF32_L2 if tf32 and backend.xp is not np else REDUCTION_TOL
    with fastconv.using(**settings):
        def grad(**kw):
            return ops.conv2d_backward_weight(dyd, xd, w_shape, stride, padding, groups=groups,
                                              kernels=backend.kernels, **kw)
        alone = grad()
        out, untouched, prior = _prior(backend, rng, w_shape, offset)
        result, names = _launched(backend, lambda: grad(out=out, accumulate=True))
        once = _added(backend, result, out, untouched, prior, alone, want, tol, f"conv2d_backward_weight {case}")
        if names is not None:
            assert any(n.startswith(kernel) for n in names) and "accumulate_v2" not in names or case == "v1", names
        twice = grad(out=out, accumulate=True)     # the plan's replay
        np.testing.assert_array_equal(backend.get(twice), once + backend.get(alone))


def test_conv_transpose2d_backward_weight_accumulates(backend, rng):
    """ConvTranspose2d 4/2/1 (DCGAN's), through conv2d_backward_weight with the roles exchanged, and
    through conv_transpose2d_backward (both passes in one call)."""
    x, w_shape = randn(rng, (2, 6, 4, 4), np.float32), (6, 3, 4, 4)
    dy = randn(rng, (2, 3, 8, 8), np.float32)
    xd, dyd, kw = backend.asarray(x), backend.asarray(dy), {"kernels": backend.kernels}
    want = ref.conv2d_backward_weight(x, dy, w_shape, 2, 1)
    alone = ops.conv_transpose2d_backward_weight(dyd, xd, w_shape, 2, 1, **kw)
    out, untouched, prior = _prior(backend, rng, w_shape, 1)
    got = ops.conv_transpose2d_backward_weight(dyd, xd, w_shape, 2, 1, out=out, accumulate=True, **kw)
    once = _added(backend, got, out, untouched, prior, alone, want, REDUCTION_TOL, "conv_transpose2d_backward_weight")
    w = backend.asarray(randn(rng, w_shape, np.float32))
    dx, dw = ops.conv_transpose2d_backward(dyd, xd, w, 2, 1, out=out, accumulate=True, **kw)
    assert dw is out and dx.shape == x.shape
    np.testing.assert_array_equal(backend.get(out), once + backend.get(alone))


@pytest.mark.parametrize("n", [2, 64], ids=["one-slice", "slices"])
def test_conv2d_backward_bias_accumulates(backend, rng, n):
    """The bias gradient's one block per channel and several (adding in the channel's last block)."""
    dy = randn(rng, (n, 5, 16, 16), np.float32)
    dyd = backend.asarray(dy)
    alone = ops.conv2d_backward_bias(dyd, kernels=backend.kernels)
    out, untouched, prior = _prior(backend, rng, (5,), 1)
    got, names = _launched(backend, lambda: ops.conv2d_backward_bias(dyd, out=out, accumulate=True,
                                                                     kernels=backend.kernels))
    _added(backend, got, out, untouched, prior, alone, ref.conv2d_backward_bias(dy), REDUCTION_TOL,
           f"conv2d_backward_bias N={n}")
    if names is not None:
        assert len(names) == 1 and names[0].startswith("conv2d_backward_bias_v3_"), names


@pytest.mark.parametrize("flags", [(True, True), (True, False), (False, True)])
def test_linear_backward_weight_accumulates(backend, rng, flags):
    dy, x = randn(rng, (6, 5), np.float32), randn(rng, (6, 7), np.float32)
    dyd, xd = backend.asarray(dy), backend.asarray(x)
    dw_alone, db_alone = ops.linear_backward_weight(dyd, xd, kernels=backend.kernels)
    outs = [_prior(backend, rng, shape, 1) for shape in ((5, 7), (5,))]
    got = ops.linear_backward_weight(dyd, xd, out=(outs[0][0], outs[1][0]), accumulate=flags, kernels=backend.kernels)
    wants = (dy.astype(np.float64).T @ x, dy.astype(np.float64).sum(0))
    for add, (out, untouched, prior), g, alone, want, name in zip(flags, outs, got, (dw_alone, db_alone), wants,
                                                                   ("dw", "db")):
        if add:
            _added(backend, g, out, untouched, prior, alone, want, F32_TOL, f"linear_backward_weight {name}")
        else:
            assert g is out
            assert_close(g, want, F32_TOL, f"linear_backward_weight {name} written")


@pytest.mark.parametrize("x_shape", [(4, 3, 5, 5), (4, 3, 4, 4), (6, 5)], ids=["f1", "f4", "c32"])
def test_batchnorm_backward_accumulates(backend, rng, x_shape):
    """dgamma and dbeta added (the forms of kernels/batchnorm.cu), dx unchanged, with a fused ReLU."""
    x, dy = randn(rng, x_shape, np.float32), randn(rng, x_shape, np.float32)
    c = x_shape[1]
    gamma, beta = randn(rng, (c,), np.float32), randn(rng, (c,), np.float32)
    xd, dyd, gd, bd = (backend.asarray(a) for a in (x, dy, gamma, beta))
    kw = {"kernels": backend.kernels}
    _, mean, invstd = ops.batchnorm_forward(xd, gd, bd, backend.asarray(np.zeros(c, np.float32)),
                                            backend.asarray(np.ones(c, np.float32)), True, **kw)
    call = lambda **o: ops.batchnorm_backward(dyd, xd, gd, mean, invstd, True, beta=bd, activation="relu", **o, **kw)
    dx_alone, dg_alone, db_alone = call()
    outs = [_prior(backend, rng, (c,), 1) for _ in range(2)]
    dx, dg, db = call(out=(outs[0][0], outs[1][0]), accumulate=True)
    np.testing.assert_array_equal(backend.get(dx), backend.get(dx_alone))
    axes = (0,) if len(x_shape) == 2 else (0, 2, 3)
    z = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
    shape = (1, c) + (1,) * (len(x_shape) - 2)
    dz = np.where(z * gamma.reshape(shape) + beta.reshape(shape) > 0, dy, 0).astype(np.float64)
    for (out, untouched, prior), g, alone, want, name in zip(outs, (dg, db), (dg_alone, db_alone),
                                                             ((dz * z).sum(axes), dz.sum(axes)), ("dgamma", "dbeta")):
        _added(backend, g, out, untouched, prior, alone, want, REDUCTION_TOL, f"batchnorm_backward {name}")


def test_embedding_backward_accumulates(backend, rng):
    dy, scale = randn(rng, (6, 7), np.float32), randn(rng, (6,), np.float32)
    labels = np.array([0, 3, 3, 1, 0, 3], np.int32)
    dyd, ld, sd = backend.asarray(dy), backend.asarray(labels), backend.asarray(scale)
    alone = ops.embedding_backward(dyd, ld, (4, 5), scale=sd, kernels=backend.kernels)
    out, untouched, prior = _prior(backend, rng, (4, 5), 1)
    got = ops.embedding_backward(dyd, ld, (4, 5), scale=sd, out=out, accumulate=True, kernels=backend.kernels)
    want = np.zeros((4, 5))
    np.add.at(want, labels, scale[:, None].astype(np.float64) * dy[:, 2:])
    _added(backend, got, out, untouched, prior, alone, want, F32_TOL, "embedding_backward")


def test_projection_terms_accumulate(backend, rng):
    """The projection discriminator's two adds: class_projection_forward into the head's logits and
    embedding_forward (scale = dlogits) into the head's input gradient."""
    h, w = randn(rng, (6, 5), np.float32), randn(rng, (4, 5), np.float32)
    scale, labels = randn(rng, (6, 1), np.float32), np.array([0, 3, 3, 1, 0, 2], np.int32)
    hd, wd, sd, ld = (backend.asarray(a) for a in (h, w, scale, labels))
    kw = {"kernels": backend.kernels}
    cases = (("class_projection_forward", (6, 1), lambda **o: ops.class_projection_forward(hd, wd, ld, **o, **kw),
              (w[labels].astype(np.float64) * h).sum(1, keepdims=True)),
             ("embedding_forward", (6, 5), lambda **o: ops.embedding_forward(wd, ld, scale=sd, **o, **kw),
              scale.astype(np.float64) * w[labels]))
    for name, shape, call, want in cases:
        alone = call()
        out, untouched, prior = _prior(backend, rng, shape, 1)
        _added(backend, call(out=out, accumulate=True), out, untouched, prior, alone, want, F32_TOL, name)
        out, untouched = out_view(backend, shape, offset=1)
        got = call(out=out)
        assert got is out and untouched()
        np.testing.assert_array_equal(backend.get(got), backend.get(alone))


def test_bad_accumulate():
    dy, x = np.ones((2, 3, 4, 4), np.float32), np.ones((2, 2, 4, 4), np.float32)
    with raises(ValueError, "accumulate: got True with out None, expected False or an out array"):
        ops.conv2d_backward_weight(dy, x, (3, 2, 1, 1), accumulate=True)
    with raises(TypeError, "accumulate: got 'yes', expected a bool"):
        ops.conv2d_backward_bias(dy, out=np.zeros(3, np.float32), accumulate="yes")
    d2, x2 = np.ones((4, 3), np.float32), np.ones((4, 5), np.float32)
    with raises(ValueError, "accumulate[1]: got True with out[1] None"):
        ops.linear_backward_weight(d2, x2, out=(np.zeros((3, 5), np.float32), None), accumulate=(True, True))
    with raises(ValueError, "accumulate: got True with out[1] None"):
        ops.linear_backward_weight(d2, x2, out=(np.zeros((3, 5), np.float32), None), accumulate=True)
    with raises(TypeError, "accumulate: got (True,), expected a bool or a pair of bools"):
        ops.linear_backward_weight(d2, x2, out=(None, None), accumulate=(True,))
