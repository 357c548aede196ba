"""conv2d's three passes by Winograd's minimal filtering on 4 x 4 tiles (kernels/winograd.cu,
conv_tile="winograd") on the CPU execution layer (fastconv.emu) through the real launchers, outputs
NaN-poisoned, against the float64 loop oracle of tests/oracle.py; and the kernel's tables (points,
inverse denominators, BT) against an exact Toom-Cook derivation in fractions (points 0, +-1, +-2,
+-1/2 and infinity), for both roles: F(4, R) (forward, backward-data) and F(R, 4) (backward-weight).

Tolerance: the transforms scale products by up to 21/4 (BT) and 16 (AT) before the sums cancel, so
Winograd's float32 error is some ten times the direct GEMM's; it is judged at REDUCTION_TOL (1e-4; a
float32 NumPy model of lenet.conv2's 5x5 backward-weight gives 1.5e-5, 3x3 on resnet.c4 3.9e-6)."""

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import fastconv
import oracle as ref
from fastconv import emu, ops
from fastconv.backends.cuda import config as cfg
from fastconv.backends.cuda import winograd_config as wcfg
from fastconv.settings import CONV_PASSES
from fastconv.testing import REDUCTION_TOL, assert_close

pytestmark = pytest.mark.skipif(__import__("shutil").which("g++") is None,
                                reason="fastconv.emu compiles the CUDA C kernels with g++")
KERNELS = Path(__file__).resolve().parents[2] / "kernels" / "winograd.cu"
TABLES = KERNELS.with_name("winograd_tables.cuh")
POINTS = [Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2), Fraction(-1, 2)]


def toom_cook(m, r):
    """(AT, G, BT) of the correlation y[i] = sum_k g[k] d[i + k] (i < m, k < r) as
    y = AT ((G g) * (BT d)), A = m + r - 1 points (A - 1 of POINTS and infinity), in exact fractions:
    AT and G by Lagrange interpolation, BT solved from the identity it must satisfy."""
    a = m + r - 1
    pts = POINTS[:a - 1]
    at = [[p ** i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    g = []
    for j, p in enumerate(pts):
        den = np.prod([p - q for ell, q in enumerate(pts) if ell != j], dtype=object)
        g.append([p ** k / den for k in range(r)])
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    bt = [[None] * a for _ in range(a)]
    for col in range(a):  # sum_j AT[i][j] G[j][k] BT[j][col] = [col == i + k]: a square system per column
        rows = [([at[i][j] * g[j][k] for j in range(a)], Fraction(int(col == i + k))) for i in range(m) for k in range(r)]
        for j, v in enumerate(_solve(rows, a)):
            bt[j][col] = v
    return at, g, bt


def _solve(rows, n):
    """A solution of the consistent linear system ``rows`` ([(coefficients, rhs)]) in fractions."""
    rows = [list(c) + [b] for c, b in rows]
    piv = []
    for col in range(n):
        p = next((i for i in range(len(piv), len(rows)) if rows[i][col] != 0), None)
        if p is None:
            continue
        i0 = len(piv)
        rows[i0], rows[p] = rows[p], rows[i0]
        rows[i0] = [v / rows[i0][col] for v in rows[i0]]
        for i in range(len(rows)):
            if i != i0 and rows[i][col] != 0:
                rows[i] = [a - rows[i][col] * b for a, b in zip(rows[i], rows[i0])]
        piv.append(col)
    assert all(all(v == 0 for v in row) for row in rows[len(piv):]), "inconsistent system"
    x = [Fraction(0)] * n
    for i, col in enumerate(piv):
        x[col] = rows[i][n]
    return x


def kernel_table(name):
    """The constant table ``name`` of kernels/winograd_tables.cuh (1-d or 2-d) as a float64 array."""
    m = re.search(rf"const float {name}((?:\[\d+\])+) = \{{(.*?)\}};", TABLES.read_text(), re.S)
    value = lambda v: eval(v.replace(".f", "."))  # noqa: E731  (literals such as -21.f / 4)
    rows = re.findall(r"\{([^{}]*)\}", m.group(2))
    if m.group(1).count("[") == 1:
        return np.array([value(v) for v in m.group(2).split(",") if v.strip()])
    return np.array([[value(v) for v in row.split(",") if v.strip()] for row in rows])


def kernel_matrices(r, outputs, taps):
    """(AT, G, BT) of F(outputs, taps) as the kernel builds them from its tables (wino_at, wino_g)."""
    a = r + cfg.WINOGRAD_TILE - 1
    p, inv, bt = (kernel_table(f"WINO{a}_{t}") for t in ("P", "INV", "BT"))
    at = np.array([[p[j] ** i if j < a - 1 else float(i == outputs - 1) for j in range(a)] for i in range(outputs)])
    g = np.array([[p[j] ** k * inv[j] if j < a - 1 else float(k == taps - 1) for k in range(taps)] for j in range(a)])
    return at, g, bt


@pytest.mark.parametrize("r", cfg.WINOGRAD_TAPS)
def test_tables_are_the_exact_transforms(r):
    """The kernel's points, inverse denominators and BT are the float32 roundings of the exact
    fractions, and the AT and G it builds from them equal the exact ones of both roles: F(4, R)
    (forward: 4 outputs of an R-tap filter) and F(R, 4) (backward-weight: R taps from 4-pixel tiles)."""
    a = r + cfg.WINOGRAD_TILE - 1
    np.testing.assert_array_equal(kernel_table(f"WINO{a}_P"), [float(v) for v in POINTS[:a - 1]])
    for outputs, taps in ((cfg.WINOGRAD_TILE, r), (r, cfg.WINOGRAD_TILE)):
        exact = toom_cook(outputs, taps)
        for name, got, want in zip(("AT", "G", "BT"), kernel_matrices(r, outputs, taps), exact):
            want = np.array([[float(v) for v in row] for row in want])
            assert got.shape == want.shape, name
            np.testing.assert_allclose(got, want, rtol=2 ** -23, atol=0, err_msg=f"F({outputs}, {taps}) {name}")
        rng = np.random.default_rng(r)
        d, gg = rng.standard_normal(a), rng.standard_normal(taps)
        at, g, bt = (np.array(m, float) for m in exact)
        np.testing.assert_allclose(at @ ((g @ gg) * (bt @ d)), [gg @ d[i:i + taps] for i in range(outputs)],
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("r", cfg.WINOGRAD_TAPS)
def test_numba_tables_are_the_kernels(r):
    """The numba family's copy of the tables (fastconv/backends/numba/winograd_tables.py) equals the .cu's
    entry for entry (float32), and the AT, G and BT it builds from them equal the kernel's, both roles."""
    pytest.importorskip("numba.cuda")
    from fastconv.backends.numba import winograd_tables as nw
    a = r + cfg.WINOGRAD_TILE - 1
    for got, kind in zip(nw.TABLES[a], ("P", "INV", "BT")):
        np.testing.assert_array_equal(np.float32(got), np.float32(kernel_table(f"WINO{a}_{kind}")), err_msg=kind)
    for outputs, taps in ((cfg.WINOGRAD_TILE, r), (r, cfg.WINOGRAD_TILE)):
        for name, got, want in zip(("AT", "G", "BT"), nw.matrices(r, outputs, taps), kernel_matrices(r, outputs, taps)):
            np.testing.assert_array_equal(got, np.float32(want), err_msg=f"F({outputs}, {taps}) {name}")


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in:
        yield stand_in


def winograd_case(cp, what, case, splits=None, seed=0, activation=None, products=None):
    """Pass ``what`` of case (N, C, H, W, K, R, padding) on the Winograd kernels (cp: the CPU layer's
    stand-in or CuPy), NaN-poisoned, against the oracle (forward with bias and ``activation``;
    ``products``: the products' tile, the winograd_tile setting)."""
    n, c, h, w, k, r, pad = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c, r, r)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    p, q = h + 2 * pad - r + 1, w + 2 * pad - r + 1
    dy = rng.standard_normal((n, k, p, q)).astype(np.float32)
    with fastconv.using(poison=True, conv_tile=cfg.WINOGRAD, conv_splits=splits, winograd_tile=products):
        if what == "forward":  # the launcher: the ops interface has no fused activation
            from fastconv.backends.cuda import conv as launchers
            out = launchers.conv2d_forward(cp.asarray(x), cp.asarray(wt), cp.asarray(b), (1, 1), (pad, pad), (1, 1), 1,
                                           activation=activation)
            want = ref.conv2d_forward(x, wt, b, 1, pad)
            want = {None: want, "relu": np.maximum(want, 0), "tanh": np.tanh(want)}[activation]
        elif what == "backward_data":
            out = ops.conv2d_backward_data(cp.asarray(dy), cp.asarray(wt), x.shape, 1, pad, 1, 1)
            want = ref.conv2d_backward_data(dy, wt, x.shape, 1, pad)
        else:
            out = ops.conv2d_backward_weight(cp.asarray(dy), cp.asarray(x), wt.shape, 1, pad, 1, 1)
            want = ref.conv2d_backward_weight(dy, x, wt.shape, 1, pad)
    out = cp.asnumpy(out)
    assert np.isfinite(out).all(), f"{what}: NaN left in the output {case}"
    assert_close(out, want, REDUCTION_TOL, f"winograd {what} {case}")


def _check(cp, what, case, **kw):
    """winograd_case on the CPU layer; returns the names of the kernels launched."""
    with emu.trace() as t:
        winograd_case(cp, what, case, **kw)
    return t.launch_names


# N, C, H, W, K, R, padding: tiles cut at P, Q (14 -> 4 tiles, the last half empty), padding 0 / 1 / 2,
# odd sizes, an image narrower than a tile
CASES = [(2, 3, 14, 14, 5, 5, 2), (1, 4, 9, 7, 3, 5, 1), (3, 2, 6, 11, 4, 3, 1), (2, 5, 8, 8, 6, 3, 0),
         (1, 2, 3, 5, 2, 3, 1)]


PASSES = CONV_PASSES


@pytest.mark.parametrize("what", PASSES)
@pytest.mark.parametrize("case", CASES)
def test_every_pass_matches_the_oracle(cp, what, case):
    r = case[5]
    names = _check(cp, what, case)
    if what == "backward_weight":
        assert names[:2] == [f"conv2d_winograd_input_v3_r{r}", f"conv2d_winograd_wgrad_dy_v3_r{r}"], names
        assert names[2].startswith("conv2d_backward_weight_v3_"), names
        assert names[-1] == f"conv2d_winograd_wgrad_output_v2_r{r}", names
    else:  # the filter transform writes the GEMM's packed weights: no pack launch
        assert names[:2] == [f"conv2d_winograd_input_v3_r{r}", f"conv2d_winograd_filter_v2_r{r}"], names
        assert names[2].startswith("conv2d_forward_v3_t") and names[-1] == f"conv2d_winograd_output_v2_r{r}", names
    assert "conv2d_pack_forward_v1" not in names, names


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_forward_fuses_bias_and_activation(cp, activation):
    _check(cp, "forward", CASES[1], activation=activation)


@pytest.mark.parametrize("what", PASSES)
def test_products_split_along_their_reduction(cp, what):
    """A forced 3-way split of the products' GEMM (backward-weight: 4 images x 16 tiles; forward
    and backward-data: over 24 channels): the split-K reduce sums the splits before the output
    transform (backward-weight's: into the products its output transform then reads)."""
    case = (4, 24, 14, 14, 24, 5, 2)
    with emu.trace() as t:
        _check(cp, what, case, splits=3)
    names = t.launch_names
    reduce = [rec for rec in t.launches if rec.name.startswith("conv2d_splitk_reduce")]
    assert len(reduce) == 1 and int(reduce[0].args[4]) > 1, names  # (ws, out, bias, size, splits, ...)
    if what == "backward_weight":  # 64 images x tiles in 3 slices (24 + 24 + 16); 24 channels: 16 + 8
        assert int(reduce[0].args[4]) == 3
    last = t.launches[-1]
    assert names.index(reduce[0].name) == len(names) - 2, names
    assert last.args[0] is reduce[0].args[1], "the output transform reads what the reduce summed"


def test_filter_block_and_slots_are_the_kernels():
    """config.WINOGRAD_FILTER_BLOCK, the launcher's grid of the filter transform, is the kernel's tile;
    config.WINOGRAD_SLOTS, the slot transforms' slots per block, the kernels' WINO_SLOTS."""
    m = re.search(r"constexpr int WINO_FT_M = (\d+), WINO_FT_KK = (\d+);", KERNELS.read_text())
    assert m and tuple(map(int, m.groups())) == cfg.WINOGRAD_FILTER_BLOCK
    m = re.search(r"constexpr int WINO_SLOTS = (\d+);", KERNELS.read_text())
    assert m and int(m.group(1)) == cfg.WINOGRAD_SLOTS


def _exact(r, outputs, taps):
    """(AT, G) of F(outputs, taps) in float64 from the exact fractions."""
    return [np.array([[float(v) for v in row] for row in m]) for m in toom_cook(outputs, taps)[:2]]


@pytest.mark.parametrize("r", cfg.WINOGRAD_TAPS)
@pytest.mark.parametrize("what", ["forward", "backward_data"])
def test_filter_transform_writes_the_packed_weights(cp, r, what):
    """conv2d_winograd_filter_v2 with K = 37, C = 19 filters (forward: 37 -> 40 output channels
    packed, two blocks of them; backward-data: the filter flipped, k and c swapped, 19 -> 20),
    threads in shuffled order, into a NaN-filled array: every element is G w G^T (exact G, float64)
    at the forward GEMM's packed index, the padding zero, exactly what conv2d_pack_forward_v1 makes of
    the transform laid out (A^2 * M, KK)."""
    from fastconv.backends.cuda import conv as launchers
    k, c, a = 37, 19, r + cfg.WINOGRAD_TILE - 1
    rng = np.random.default_rng(r)
    wt = rng.standard_normal((k, c, r, r)).astype(np.float32)
    x = cp.asarray(rng.standard_normal((1, k if what == "backward_data" else c, 4, 4)).astype(np.float32))
    with fastconv.using(poison=True, conv_tile=cfg.WINOGRAD), emu.shuffled(7), emu.trace() as t:
        if what == "forward":
            ops.conv2d_forward(x, cp.asarray(wt), None, 1, r // 2, 1, 1)
        else:
            ops.conv2d_backward_data(x, cp.asarray(wt), (1, c, 4, 4), 1, r // 2, 1, 1)
    rec = next(rec for rec in t.launches if rec.name == f"conv2d_winograd_filter_v2_r{r}")
    got = cp.asnumpy(rec.args[1])
    taps = wt[:, :, ::-1, ::-1].transpose(1, 0, 2, 3) if what == "backward_data" else wt  # (M, KK, R, R)
    m_, kk = taps.shape[:2]
    g = _exact(r, cfg.WINOGRAD_TILE, r)[1]
    u = np.einsum("ia,mkab,jb->ijmk", g, taps.astype(np.float64), g).reshape(a * a, m_, kk)
    want = np.zeros((a * a, kk, -(-m_ // 4) * 4))
    want[:, :, :m_] = u.transpose(0, 2, 1)
    assert got.shape == want.shape and not np.isnan(got).any(), (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert (got[:, :, m_:] == 0).all(), "the packed padding"
    packed = launchers._pack_forward(cp.asarray(u.reshape(a * a * m_, kk, 1, 1).astype(np.float32)), a * a, False)
    np.testing.assert_array_equal(cp.asnumpy(packed), np.float32(want), err_msg="the pack kernel's layout")


@pytest.mark.parametrize("r", cfg.WINOGRAD_TAPS)
def test_wgrad_output_transform_adds_the_summed_splits(cp, r):
    """Backward-weight with K = 37, C = 19 and its products split 3 ways: the split-K reduce's output
    is the sum of the three slices, and conv2d_winograd_wgrad_output_v2 (a thread per (k, c, row))
    writes AT m A of it (exact AT, float64) into the NaN-filled dw, every (k, c) and row."""
    k, c, a = 37, 19, r + cfg.WINOGRAD_TILE - 1
    rng = np.random.default_rng(r)
    x = cp.asarray(rng.standard_normal((3, c, 16, 16)).astype(np.float32))
    dy = cp.asarray(rng.standard_normal((3, k, 16, 16)).astype(np.float32))
    with fastconv.using(poison=True, conv_tile=cfg.WINOGRAD, conv_splits=3), emu.trace() as t:
        dw = cp.asnumpy(ops.conv2d_backward_weight(dy, x, (k, c, r, r), 1, r // 2, 1, 1))
    reduce, out = t.launches[-2:]
    assert reduce.name.startswith("conv2d_splitk_reduce") and out.name == f"conv2d_winograd_wgrad_output_v2_r{r}"
    parts, m = cp.asnumpy(reduce.args[0]).astype(np.float64), cp.asnumpy(out.args[0]).astype(np.float64)
    assert parts.shape[0] == 3 and out.args[0] is reduce.args[1], parts.shape
    np.testing.assert_allclose(m.ravel(), parts.sum(0), rtol=1e-6, atol=1e-6 * np.abs(m).max())
    at = _exact(r, r, cfg.WINOGRAD_TILE)[0]
    want, mag = (np.einsum("ia,abkc,jb->kcij", f(at), f(m.reshape(a, a, k, c)), f(at)) for f in (np.asarray, np.abs))
    err = np.abs(dw - want)  # fp32 sums of A^2 terms up to 16 times m, so judged against their magnitudes
    assert not np.isnan(dw).any() and (err <= 1e-6 * mag).all(), (err / mag).max()


@pytest.mark.parametrize("what", PASSES)
@pytest.mark.parametrize("tile", ["t64x32", "t128x128"])
def test_products_run_on_the_winograd_tile_setting(cp, what, tile):
    """winograd_tile forces the products' GEMM tile (the rest of the path unchanged), right at any tile."""
    names = _check(cp, what, CASES[1], products=tile)
    kernel = "conv2d_backward_weight_v3_" if what == "backward_weight" else "conv2d_forward_v3_"
    assert [nm for nm in names if nm.startswith(kernel)] == [kernel + tile], names


def test_products_tile_rule():
    """winograd_config.winograd_tile on the benchmark shapes' product GEMMs (132 SMs): by the rows, not by the
    phase rule (z > 1 is A^2 groups here); backward-weight as config.conv_tile past 32 channels."""
    a5, a3, sms = 64, 36, 132
    assert wcfg.winograd_tile(64, 128 * 16, sms, a5) == "t64x64"            # lenet.conv2 forward: K = 64
    assert wcfg.winograd_tile(32, 128 * 16, sms, a5) == "t32x128"           # lenet.conv2 backward-data: C = 32
    assert wcfg.winograd_tile(256, 32 * 16, sms, a3) == "t128x64"           # resnet.c4 forward / backward-data
    assert wcfg.winograd_tile(64, 32, sms, a5, wgrad=True) == "t64x32"      # lenet.conv2 backward-weight
    assert wcfg.winograd_tile(256, 256, sms, a3, wgrad=True) == cfg.conv_tile(256, 256, sms, a3, False, True)


@pytest.mark.parametrize("case, why", [
    (((1, 4, 8, 8, 3, 3, 3, 2, 1, 1, 1)), "stride"),
    (((1, 4, 8, 8, 3, 4, 4, 1, 1, 1, 1)), "4x4 taps"),
    (((1, 4, 8, 8, 2, 3, 3, 1, 1, 1, 2)), "2 groups"),
    (((1, 4, 8, 8, 3, 3, 3, 1, 2, 2, 1)), "dilation"),
])
def test_refusals(cp, case, why):
    n, c, h, w, k, r, s, stride, pad, dil, groups = case
    p = (h + 2 * pad - dil * (r - 1) - 1) // stride + 1
    dy = cp.asarray(np.ones((n, k, p, (w + 2 * pad - dil * (s - 1) - 1) // stride + 1), np.float32))
    x = cp.asarray(np.ones((n, c, h, w), np.float32))
    wt = cp.asarray(np.ones((k, c // groups, r, s), np.float32))
    calls = (lambda: ops.conv2d_forward(x, wt, None, stride, pad, dil, groups),
             lambda: ops.conv2d_backward_data(dy, wt, x.shape, stride, pad, dil, groups),
             lambda: ops.conv2d_backward_weight(dy, x, wt.shape, stride, pad, dil, groups))
    for call in calls:
        with fastconv.using(conv_tile=cfg.WINOGRAD), pytest.raises(
                ValueError, match=f"conv_tile: got 'winograd' for a convolution of {r}x{s} taps"):
            call()


def test_default_takes_winograd_for_3x3_and_5x5_in_fp32_only(cp):
    """With conv_tile unset, fp32 3x3 and 5x5 stride-1 convolutions above the small-channel limit run
    by Winograd (winograd_config.WINOGRAD_PASSES); TF32, a forced tile and a small-channel shape do not."""
    rng = np.random.default_rng(5)

    def names(case, **settings):
        n, c, h, w, k, r, pad = case
        x = cp.asarray(rng.standard_normal((n, c, h, w)).astype(np.float32))
        wt = cp.asarray(rng.standard_normal((k, c, r, r)).astype(np.float32))
        with fastconv.using(**settings), emu.trace() as t:
            y = ops.conv2d_forward(x, wt, None, 1, pad, 1, 1)
            ops.conv2d_backward_data(y, wt, x.shape, 1, pad, 1, 1)
            ops.conv2d_backward_weight(y, x, wt.shape, 1, pad, 1, 1)
        return t.launch_names

    for r, pad in ((3, 1), (5, 2)):  # C*R*S = 45, 125 > SMALLC
        got = names((2, 5, 8, 8, 6, r, pad))
        assert got.count(f"conv2d_winograd_input_v3_r{r}") == 3, got
        assert f"conv2d_winograd_wgrad_output_v2_r{r}" in got, got
    for case, settings in (((2, 5, 8, 8, 6, 3, 1), {"tf32": True}),
                           ((2, 5, 8, 8, 6, 3, 1), {"conv_tile": "t64x64"}), ((2, 3, 8, 8, 6, 3, 1), {})):
        got = names(case, **settings)
        assert not any(nm.startswith("conv2d_winograd") for nm in got), (case, settings, got)
    assert wcfg.use_winograd(None, False, "backward_weight", 3, 3, (1, 1), (1, 1), 1, 4)
    assert not wcfg.use_winograd(None, False, "forward", 3, 3, (1, 1), (1, 2), 1, 64)  # dilation


@pytest.mark.parametrize("r", cfg.WINOGRAD_TAPS)
def test_slot_transforms_against_the_exact_matrices(cp, r):
    """The slot transforms: conv2d_winograd_input_v3 (V = BT d B) and wgrad_dy_v3 (U = G dy G^T), a
    thread per (image, channel, tile) slot, and output_v2 (y = AT Y A + b, A threads per slot, two
    stages through shared memory) on 9 x 9 images (3 x 3 tiles, the last ones cut at P and Q), 2 x 3
    and 2 x 5 planes (54 and 90 slots: the output's partial last blocks), threads in shuffled order,
    NaN-poisoned, against the exact matrices in float64, every slot."""
    n, c, k, hw, pad, tiles = 2, 3, 5, 9, r // 2, 3
    a = r + cfg.WINOGRAD_TILE - 1
    at, _, bt = (np.array([[float(v) for v in row] for row in m]) for m in toom_cook(cfg.WINOGRAD_TILE, r))
    g4 = np.array([[float(v) for v in row] for row in toom_cook(r, cfg.WINOGRAD_TILE)[1]])
    rng = np.random.default_rng(r)
    x, wt = rng.standard_normal((n, c, hw, hw)), rng.standard_normal((k, c, r, r))
    b, dy = rng.standard_normal(k), rng.standard_normal((n, k, hw, hw))
    f32 = lambda v: cp.asarray(v.astype(np.float32))  # noqa: E731
    with fastconv.using(poison=True, conv_tile=cfg.WINOGRAD), emu.shuffled(11), emu.trace() as t:
        y = cp.asnumpy(ops.conv2d_forward(f32(x), f32(wt), f32(b), 1, pad, 1, 1))
        ops.conv2d_backward_weight(f32(dy), f32(x), wt.shape, 1, pad, 1, 1)
    rec = {}
    for launch in t.launches:
        rec.setdefault(launch.name, launch)
    x, dy = (v.astype(np.float32).astype(np.float64) for v in (x, dy))
    want_v = np.einsum("ui,ncpqij,vj->nuvcpq", bt, ref.winograd_patches(x, a, pad, tiles, tiles), bt).reshape(
        n, a * a * c, tiles, tiles)
    got_v = cp.asnumpy(rec[f"conv2d_winograd_input_v3_r{r}"].args[1])
    np.testing.assert_allclose(got_v, want_v, rtol=1e-5, atol=1e-5 * np.abs(want_v).max())
    prod = cp.asnumpy(rec[f"conv2d_winograd_output_v2_r{r}"].args[0]).astype(np.float64)
    out = np.einsum("au,nuvkpq,bv->nkpaqb", at, prod.reshape(n, a, a, k, tiles, tiles), at)
    want_y = out.reshape(n, k, 4 * tiles, 4 * tiles)[:, :, :hw, :hw] + b.astype(np.float32)[:, None, None]
    assert not np.isnan(y).any()
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5 * np.abs(want_y).max())
    want_u = np.einsum("ui,nkpqij,vj->nuvkpq", g4, ref.winograd_patches(dy, 4, 0, tiles, tiles), g4).reshape(
        n, a * a * k, tiles, tiles)
    got_u = cp.asnumpy(rec[f"conv2d_winograd_wgrad_dy_v3_r{r}"].args[1])
    np.testing.assert_allclose(got_u, want_u, rtol=1e-5, atol=1e-5 * np.abs(want_u).max())
