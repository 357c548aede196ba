"""conv2d backward-weight by Winograd's F(R x R, 4 x 4) (kernels/winograd.cu, conv_tile="winograd") on
the CPU execution layer (fastconv.emu) through its real launcher, outputs NaN-poisoned, against the
float64 loop oracle of tests/oracle.py; and the kernel's transform tables against an exact Toom-Cook
derivation in fractions (points 0, +-1, +-2, +-1/2 and infinity).

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
from fastconv.testing import REDUCTION_TOL, assert_close

pytestmark = pytest.mark.skipif(__import__("shutil").which("g++") is None,
                                reason="fastconv.emu compiles the CUDA C kernels with g++")
KERNELS = Path(__file__).resolve().parents[2] / "kernels" / "winograd.cu"
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
    """The __constant__ table ``name`` of kernels/winograd.cu as a float64 array."""
    body = re.search(rf"__constant__ float {name}\[\d+\]\[\d+\] = \{{(.*?)\}};", KERNELS.read_text(), re.S).group(1)
    rows = re.findall(r"\{([^{}]*)\}", body)
    return np.array([[eval(v.replace(".f", ".")) for v in row.split(",") if v.strip()] for row in rows])


@pytest.mark.parametrize("r", cfg.WINOGRAD_TAPS)
def test_tables_are_the_exact_transforms(r):
    """Every table entry is the float32 rounding of the exact fraction, and the fractions satisfy
    the identity (checked inside toom_cook's solve, and here for the roles: R outputs, 4-tap tiles)."""
    at, g, bt = toom_cook(r, cfg.WINOGRAD_TILE)
    for name, exact in (("AT", at), ("G", g), ("BT", bt)):
        got = kernel_table(f"WINO{r}_{name}")
        want = np.array([[float(v) for v in row] for row in exact])
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=2 ** -23, atol=0, err_msg=f"WINO{r}_{name}")
    a = r + cfg.WINOGRAD_TILE - 1
    rng = np.random.default_rng(r)
    d, gg = rng.standard_normal(a), rng.standard_normal(cfg.WINOGRAD_TILE)
    y = np.array(at, float) @ ((np.array(g, float) @ gg) * (np.array(bt, float) @ d))
    np.testing.assert_allclose(y, [gg @ d[i:i + 4] for i in range(r)], rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def cp():
    with emu.activate() as stand_in:
        yield stand_in


def winograd_backward_weight_case(cp, case, splits=None, seed=0):
    """Backward-weight of case (N, C, H, W, K, R, padding) on the Winograd kernels (cp: the CPU layer's
    stand-in or CuPy), NaN-poisoned, against the oracle."""
    n, c, h, w, k, r, pad = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    p, q = h + 2 * pad - r + 1, w + 2 * pad - r + 1
    dy = rng.standard_normal((n, k, p, q)).astype(np.float32)
    with fastconv.using(poison=True, conv_tile=cfg.WINOGRAD, conv_splits=splits):
        out = cp.asnumpy(ops.conv2d_backward_weight(cp.asarray(dy), cp.asarray(x), (k, c, r, r), 1, pad, 1, 1))
    assert np.isfinite(out).all(), f"NaN left in dw {case}"
    assert_close(out, ref.conv2d_backward_weight(dy, x, (k, c, r, r), 1, pad), REDUCTION_TOL, f"winograd {case}")


def _check(cp, case, splits=None):
    """winograd_backward_weight_case on the CPU layer; returns the names of the kernels launched."""
    with emu.trace() as t:
        winograd_backward_weight_case(cp, case, splits)
    return t.launch_names


# N, C, H, W, K, R, padding: tiles cut at P, Q (14 -> 4 tiles, the last half empty), padding 0 / 1 / 2,
# odd sizes, an image narrower than a tile
CASES = [(2, 3, 14, 14, 5, 5, 2), (1, 4, 9, 7, 3, 5, 1), (3, 2, 6, 11, 4, 3, 1), (2, 5, 8, 8, 6, 3, 0),
         (1, 2, 3, 5, 2, 3, 1)]


@pytest.mark.parametrize("case", CASES)
def test_backward_weight_matches_the_oracle(cp, case):
    r = case[5]
    names = _check(cp, case)
    assert names[:2] == [f"conv2d_backward_weight_winograd_x_v1_r{r}", f"conv2d_backward_weight_winograd_dy_v1_r{r}"]
    assert names[-1] == f"conv2d_backward_weight_winograd_out_v1_r{r}" and names[2].startswith(
        "conv2d_backward_weight_v3_"), names
    assert not any("splitk_reduce" in nm for nm in names), names  # the output transform sums the splits


def test_products_split_along_images_and_tiles(cp):
    """A forced split of the products' GEMM: the output kernel sums its slices (3 of 4 x 16 tiles)."""
    with emu.trace() as t:
        _check(cp, (4, 3, 14, 14, 5, 5, 2), splits=3)
    out = [rec for rec in t.launches if rec.name.startswith("conv2d_backward_weight_winograd_out")]
    assert [int(rec.args[-1]) for rec in out] == [3]


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
    with fastconv.using(conv_tile=cfg.WINOGRAD), pytest.raises(ValueError, match="conv_tile: got 'winograd' for a "
                                                                                  "backward-weight of"):
        ops.conv2d_backward_weight(dy, x, (k, c // groups, r, s), stride, pad, dil, groups)
    with fastconv.using(conv_tile=cfg.WINOGRAD), pytest.raises(ValueError, match="conv_tile: got 'winograd'"):
        ops.conv2d_forward(x, cp.asarray(np.ones((k, c // groups, r, s), np.float32)), None, stride, pad, dil, groups)
