"""Split-K summed inside the v3 GEMM launch by the last block of each output tile to finish (the
conv_splitk setting "last_block", kernels/conv_gemm.cuh splitk_last_block) against the separate
reduce launch ("reduce": conv2d_splitk_reduce_v1), on the CPU execution layer (fastconv.emu runs a
launch's blocks one after another, so the last block in launch order sums): the same bits in every
pass, fp32 and TF32 tiles, with bias and each activation, forced splits 2 to 5, ragged tiles (rows
past the GEMM's, columns past the last, float4 and scalar stores); outputs and workspaces
NaN-poisoned; fp32 also against the float64 oracle of tests/oracle.py at F32_TOL. The tile counters
are zero after every call, so a plan's later calls (which reuse them) give the same bits."""

import numpy as np
import pytest

import fastconv
import oracle as ref
from fastconv import emu, ops
from fastconv.backends.cuda import config as cfg
from fastconv.testing import F32_TOL, assert_close

pytestmark = pytest.mark.skipif(__import__("shutil").which("g++") is None,
                                reason="fastconv.emu compiles the CUDA C kernels with g++")
ACTIVATIONS = [None, "relu", "leaky_relu", "tanh"]
# N, C, H, W, K, R, S, stride, padding, dilation, groups; every reduction is 240 long, so a forced
# 2 to 5 splits is exactly that many slices of whole BK tiles (BK 4, 8 or 16)
CASES = {
    "forward": [(2, 15, 7, 6, 10, 4, 4, 1, (2, 1), 1, 1),     # P*Q = 40: float4; 10 of a tile's filter rows
                (1, 30, 6, 7, 10, 4, 4, 1, 1, 1, 2)],         # P*Q = 30: scalar stores; 2 groups
    "backward_data": [(2, 6, 6, 8, 15, 4, 4, 1, (2, 1), 1, 1),  # H*W = 48: float4
                      (1, 5, 8, 7, 60, 4, 4, 2, 1, 1, 1)],      # 4 phases of 2x2 taps: scalar stores
    "backward_weight": [(2, 6, 10, 12, 10, 3, 3, 1, 1, 1, 1),   # C*R*S = 54: scalar stores
                        (4, 8, 6, 10, 6, 3, 3, 1, 1, 1, 2)],    # C/G*R*S = 36: float4; 2 groups
}


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in:
        yield stand_in


def _operands(case, seed=0):
    """x, w, b, dy (numpy float32) of a case, and its (stride, padding, dilation, groups)."""
    n, c, h, w, k, r, s, *hyper = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c // hyper[3], r, s)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    dy = rng.standard_normal(ref.conv2d_forward(x, wt, None, *hyper).shape).astype(np.float32)
    return (x, wt, b, dy), tuple(hyper)


def _call(cp, what, arrays, hyper, activation=None, out=None):
    """One pass on the device arrays (x, w, b, dy); forward through its launcher (the fused activation)."""
    x, w, b, dy = arrays
    if what == "forward":
        from fastconv.argcheck import conv_hyper
        from fastconv.backends.cuda import conv as launchers
        return launchers.conv2d_forward(x, w, b, *conv_hyper(*hyper[:3]), hyper[3], activation=activation, slope=0.2)
    if what == "backward_data":
        return ops.conv2d_backward_data(dy, w, x.shape, *hyper)
    return ops.conv2d_backward_weight(dy, x, w.shape, *hyper, out=out)


def _oracle(what, operands, hyper, activation):
    x, w, b, dy = operands
    if what == "forward":
        y = ref.conv2d_forward(x, w, b, *hyper)
        acts = {None: y, "relu": np.maximum(y, 0), "leaky_relu": np.where(y > 0, y, 0.2 * y), "tanh": np.tanh(y)}
        return acts[activation]
    if what == "backward_data":
        return ref.conv2d_backward_data(dy, w, x.shape, *hyper)
    return ref.conv2d_backward_weight(dy, x, w.shape, *hyper)


def _both(cp, what, case, splits, tile, tf32, activation=None):
    """The pass under conv_splitk "reduce" and "last_block" (poisoned, ``splits`` forced): the two
    results, the GEMM launch of the "last_block" run and the kernel names of both runs."""
    operands, hyper = _operands(case)
    arrays = tuple(cp.asarray(a) for a in operands)
    got, names, gemm = {}, {}, None
    for mode in ("reduce", "last_block"):
        with fastconv.using(poison=True, conv_tile=tile, conv_splits=splits, tf32=tf32, conv_splitk=mode), \
                emu.trace() as t:
            got[mode] = cp.asnumpy(_call(cp, what, arrays, hyper, activation))
        names[mode] = t.launch_names
        gemm = next(rec for rec in t.launches if "_v3_" in rec.name)
    return got, gemm, names, operands, hyper


def _z_order_sum(cp, gemm, splits, b, act):
    """act(((ws[0] + ws[1]) + ws[2]) ... + b) in float32 (numpy: one IEEE rounding per add) from the
    GEMM launch's workspace (splits, output size) as the launch left it: the sum both ways must give."""
    out = cp.asnumpy(gemm.args[-2]).ravel()
    ws = cp.asnumpy(next(a for a in gemm.args if getattr(a, "shape", None) == (splits, out.size)))
    s = ws[0].copy()
    for z in range(1, splits):
        s += ws[z]
    if b is not None:
        s = (s.reshape(gemm.args[-2].shape) + b[None, :, None, None]).ravel()
    if act == "relu":
        s = np.where(s > 0, s, np.float32(0))
    elif act == "leaky_relu":
        s = np.where(s > 0, s, s * np.float32(0.2))
    return s


@pytest.mark.parametrize("tf32", [False, True], ids=["fp32", "tf32"])
@pytest.mark.parametrize("what", list(CASES))
def test_last_block_sum_is_the_reduce_bit_for_bit(cp, what, tf32):
    tiles = list(cfg.TF32_TILES if tf32 else cfg.CONV_TILES)
    for ci, case in enumerate(CASES[what]):
        for i, splits in enumerate(range(2, 6)):
            tile, act = tiles[(i + 3 * ci) % len(tiles)], ACTIVATIONS[i] if what == "forward" else None
            got, gemm, names, operands, hyper = _both(cp, what, case, splits, tile, tf32, act)
            label = f"{what} {case} tile {tile} splits {splits} activation {act}"
            slices = gemm.grid[2] // (case[-1] * (hyper[0] ** 2 if what == "backward_data" else 1))
            assert slices == splits, f"{label}: grid {gemm.grid}"
            assert "conv2d_splitk_reduce_v1" in names["reduce"], names
            assert not any("splitk_reduce" in nm for nm in names["last_block"]), names
            assert gemm.args[-1] is not None and gemm.args[-2] is not None, label  # tile counters, result
            assert np.isfinite(got["last_block"]).all(), f"{label}: NaN left (an output not written)"
            np.testing.assert_array_equal(got["last_block"].view(np.uint32), got["reduce"].view(np.uint32),
                                          err_msg=label)
            if act != "tanh":  # numpy's float32 tanh need not round as the kernel's tanhf does
                want = _z_order_sum(cp, gemm, splits, operands[2] if what == "forward" else None, act)
                np.testing.assert_array_equal(got["last_block"].ravel().view(np.uint32), want.view(np.uint32),
                                              err_msg=f"{label}: not the z-order float32 sum of the slices")
            if not tf32:
                assert_close(got["last_block"], _oracle(what, operands, hyper, act), F32_TOL, label)


@pytest.mark.parametrize("what", ["forward", "backward_weight"])
def test_counters_are_zero_after_every_call_and_plans_reuse_them(cp, what):
    """Three calls of a planned op: the first records, the next two replay its plan, which keeps
    the workspace and the tile counters (one array, both replays) between calls; the counters are
    zero after each call and the three results are the same bits."""
    operands, hyper = _operands(CASES[what][1])   # 2 groups: 2 output tiles
    x, w, b, dy = (cp.asarray(a) for a in operands)
    call = {"forward": lambda: ops.conv2d_forward(x, w, b, *hyper),
            "backward_weight": lambda: ops.conv2d_backward_weight(dy, x, w.shape, *hyper)}[what]
    outs, counters = [], []
    with fastconv.using(conv_tile="t64x64", conv_splits=3):
        for _ in range(3):
            with emu.trace() as t:
                outs.append(cp.asnumpy(call()).view(np.uint32))
            gemm = next(rec for rec in t.launches if "_v3_" in rec.name)
            counters.append(gemm.args[-1])
            tiles = gemm.grid[0] * gemm.grid[1] * gemm.grid[2] // 3   # one counter per output tile
            assert counters[-1].dtype == np.uint32 and counters[-1].size == tiles > 1, (counters[-1].shape, gemm.grid)
            assert not cp.asnumpy(counters[-1]).any(), cp.asnumpy(counters[-1])
    assert counters[1] is counters[2]
    np.testing.assert_array_equal(outs[1], outs[0])
    np.testing.assert_array_equal(outs[2], outs[0])


def test_shuffled_threads(cp):
    """The last block's count, fence and sum with the block's threads in a seeded random order
    between barriers: a missing barrier would read a partial before it was written."""
    with emu.shuffled(11):
        for what in CASES:
            got = _both(cp, what, CASES[what][1], 3, "t128x64", False)[0]
            np.testing.assert_array_equal(got["last_block"].view(np.uint32), got["reduce"].view(np.uint32))


def test_unaligned_dw_is_summed_by_the_reduce(cp):
    """A given dw that is not 16-byte aligned (a view one float into its buffer) cannot take the
    last block's float4 stores: the reduce sums its split, to the same bits as an aligned dw's."""
    case = CASES["backward_weight"][1]
    operands, hyper = _operands(case)
    arrays = tuple(cp.asarray(a) for a in operands)
    w = arrays[1]
    buf = cp.empty(w.size + 1, np.float32)
    with fastconv.using(poison=True, conv_tile="t64x64", conv_splits=3), emu.trace() as t:
        got = cp.asnumpy(_call(cp, "backward_weight", arrays, hyper, out=buf[1:].reshape(w.shape)))
        want = cp.asnumpy(_call(cp, "backward_weight", arrays, hyper))
    assert t.launch_names.count("conv2d_splitk_reduce_v1") == 1, t.launch_names
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
