"""Each 2x2 pooling kernel of the CUDA C family (kernels/pool_2x2.cu, config.POOL_2X2) forced by the
pool_variant setting, on the CPU execution layer (fastconv.emu): outputs NaN-poisoned, max and
average backward against the float64 oracle of tests/oracle.py, the fused relu_max_pool2d against
the CPU path, on ragged shapes (item counts that leave lanes, warps and lane pairs of the V = 4
kernels partly past the end, rows of an odd number of items, odd H) and with the grid cut to one
block, so that every thread takes several grid-stride steps. Also: which kernel the launcher's
rule picks for an aligned and an unaligned view, and the one-line errors of a forced kernel that
does not fit."""

import contextlib
import importlib
import sys

import numpy as np
import pytest

import fastconv
import fastconv.emu as emu
import oracle as ref
from backends import NO_GXX
from fastconv import ops
from fastconv.backends.cuda.config import POOL_2X2, POOL_GENERAL
from fastconv.testing import F32_TOL, assert_close

pytestmark = NO_GXX

# (N, C, H, W): W % 8 == 0 (every variant fits), W % 8 == 4, odd H, a row of 7 (odd) V = 4 items,
# item counts that are not a multiple of the 32 lanes
SHAPES = [(2, 3, 6, 8), (1, 2, 7, 16), (3, 1, 5, 56), (1, 3, 4, 12), (2, 1, 3, 4), (1, 1, 2, 2)]
POOL_OPS = ("max_pool2d_backward", "avg_pool2d_backward", "relu_max_pool2d_backward")


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in, fastconv.using(poison=True):
        yield stand_in


@contextlib.contextmanager
def _one_block():
    """Element-wise grids of one block (every thread walks the grid-stride loop several times);
    the pool ops' launch plans, which keep their grid, are dropped on both sides."""
    cfg = importlib.import_module("fastconv.backends.cuda.config")  # the one the stand-in's launchers use
    fns = [getattr(ops, f"{op}_forward") for op in ("max_pool2d", "avg_pool2d", "relu_max_pool2d")]
    fns += [getattr(ops, name) for name in POOL_OPS]
    old, cfg.elementwise_blocks = cfg.elementwise_blocks, lambda *a, **k: 1
    for fn in fns:
        fn.plans.clear()
    try:
        yield
    finally:
        cfg.elementwise_blocks = old
        for fn in fns:
            fn.plans.clear()


def _check_variant(cp, rng, shape, variant):
    """Every pass ``variant`` serves, forced, against the oracle (max, avg) or the CPU path (fused)."""
    n = int(np.prod(shape))
    x = ((rng.permutation(n) - n // 2) * 0.01).reshape(shape).astype(np.float32)  # no ties
    x[0, 0, :2, :2] -= 0.01 * n  # a window with no gradient for the fused op (max <= 0)
    want_y, want_arg = ref.max_pool2d_forward(x, 2, 2, 0)
    dy = rng.standard_normal(want_y.shape).astype(np.float32)
    y_cpu, code_cpu = ops.relu_max_pool2d_forward(x, 2, 2, 0)
    assert (code_cpu == 255).any() and ((code_cpu != 255).any() or code_cpu.size == 1)
    suffix = "" if variant == POOL_GENERAL else variant
    with fastconv.using(pool_variant=variant), emu.trace() as t:
        if "forward" in POOL_2X2.get(variant, (0, 0, 0, ("forward",)))[3]:
            y, am = ops.max_pool2d_forward(cp.asarray(x), 2, 2, 0)
            assert_close(y, want_y, F32_TOL, f"max_pool2d_forward {variant}")
            np.testing.assert_array_equal(cp.asnumpy(am), want_arg)
            assert_close(ops.avg_pool2d_forward(cp.asarray(x), 2, 2, 0), ref.avg_pool2d_forward(x, 2, 2, 0),
                         F32_TOL, f"avg_pool2d_forward {variant}")
            y, code = ops.relu_max_pool2d_forward(cp.asarray(x), 2, 2, 0)
            np.testing.assert_array_equal(cp.asnumpy(y), y_cpu)
            np.testing.assert_array_equal(cp.asnumpy(code), code_cpu)
        dx = ops.max_pool2d_backward(cp.asarray(dy), cp.asarray(want_arg.astype(np.int32)), shape, 2, 2, 0)
        assert_close(dx, ref.max_pool2d_backward(dy, x, 2, 2, 0), F32_TOL, f"max_pool2d_backward {variant}")
        dx = ops.avg_pool2d_backward(cp.asarray(dy), shape, 2, 2, 0)
        assert_close(dx, ref.avg_pool2d_backward(dy, shape, 2, 2, 0), F32_TOL, f"avg_pool2d_backward {variant}")
        dx = ops.relu_max_pool2d_backward(cp.asarray(dy), cp.asarray(code_cpu), shape, 2, 2, 0)
        assert_close(dx, ops.relu_max_pool2d_backward(dy.astype(np.float64), code_cpu, shape, 2, 2, 0), F32_TOL,
                     f"relu_max_pool2d_backward {variant}")
    want = {f"{op}_{'v2' if op.startswith('relu') else 'v3'}_{suffix}" if suffix else
            f"{op}_{'v1' if op.startswith('relu') else 'v2'}" for op in POOL_OPS}
    if sys.modules.get("cupy") is emu.cupy:  # on a GPU (tests/emu/test_emu_gpu_crosscheck.py) nothing is traced
        assert want <= set(t.launch_names), (want, t.launch_names)


def every_pool_2x2_variant(cp, rng):
    """Every 2x2 kernel and the general one forced on a shape all fit (tests/emu/test_emu_ops.py's
    coverage and shuffled-thread-order tests run it)."""
    for variant in (*POOL_2X2, POOL_GENERAL):
        _check_variant(cp, rng, SHAPES[0], variant)


@pytest.mark.parametrize("shape,variant", [pytest.param(s, v, id=f"{'x'.join(map(str, s))}-{v}") for s in SHAPES
                                           for v in (*POOL_2X2, POOL_GENERAL)
                                           if v == POOL_GENERAL or s[3] % POOL_2X2[v][1] == 0])
def test_pool_2x2_variant(cp, rng, shape, variant):
    _check_variant(cp, rng, shape, variant)


@pytest.mark.parametrize("variant", [v for v in POOL_2X2 if POOL_2X2[v][3] == ("backward",)])
@pytest.mark.parametrize("shape", [(2, 4, 10, 64), (2, 4, 11, 64)], ids=["evenH", "oddH"])
def test_pool_2x2_variant_grid_stride(cp, rng, variant, shape):
    """On 256 threads: 2x2v4x2's 320 items of 4 outputs, the second item of a step for a few
    threads; 2x2r's 1280-1408 dx row items, 2 per thread per step, a third step partly filled."""
    with _one_block():
        _check_variant(cp, rng, shape, variant)


def test_pool_2x2_dispatch_by_width_and_alignment(cp, rng):
    """W % 8 == 0 and 16-byte aligned: backward takes 2x2v4x2 and forward 2x2w; an 8-byte aligned view
    takes the 8-byte kernels (2x2) both ways."""
    shape = (1, 2, 4, 8)
    n = int(np.prod(shape))
    base = cp.asarray(rng.standard_normal(n + 2).astype(np.float32))
    dy = rng.standard_normal((1, 2, 2, 4)).astype(np.float32)
    dbase = cp.asarray(np.concatenate([np.zeros(2, np.float32), dy.reshape(-1)]))
    cases = ((base[:n], cp.asarray(dy), "v3_2x2w", "v3_2x2v4x2"), (base[2:], dbase[2:], "v3_2x2", "v3_2x2"))
    for x, d, fwd, bwd in cases:
        x, d = x.reshape(shape), d.reshape(dy.shape)
        with emu.trace() as t:
            ops.avg_pool2d_forward(x, 2, 2, 0)
            dx = ops.avg_pool2d_backward(d, shape, 2, 2, 0)
        assert t.launch_names == [f"avg_pool2d_forward_{fwd}", f"avg_pool2d_backward_{bwd}"], t.launch_names
        assert_close(dx, ref.avg_pool2d_backward(dy, shape, 2, 2, 0), F32_TOL, "avg_pool2d_backward")


def test_pool_variant_errors(cp, rng):
    x = cp.asarray(rng.standard_normal((1, 2, 4, 12)).astype(np.float32))
    dy = cp.asarray(rng.standard_normal((1, 2, 2, 6)).astype(np.float32))
    with pytest.raises(ValueError, match=r"pool_variant: got 'wide', expected None, 'general' or one of \["):
        fastconv.configure(pool_variant="wide")
    with fastconv.using(pool_variant="2x2v4x2"):
        with pytest.raises(ValueError, match=r"pool_variant: got '2x2v4x2' for avg_pool2d_forward .*W=12\), "
                                             r"expected 'general' or one that fits it: \['2x2', '2x2w'\]"):
            ops.avg_pool2d_forward(x, 2, 2, 0)
        with pytest.raises(ValueError, match=r"pool_variant: got '2x2v4x2' for avg_pool2d_backward .*W=12\), .*"
                                             r"\['2x2', '2x2w', '2x2r'\]"):
            ops.avg_pool2d_backward(dy, (1, 2, 4, 12), 2, 2, 0)
    with fastconv.using(pool_variant="2x2w"):
        with pytest.raises(ValueError, match=r"pool_variant: got '2x2w' for max_pool2d_forward \(kernel \(3, 3\).*"
                                             r"that fits it: \[\]"):
            ops.max_pool2d_forward(x, 3, 1, 1)
