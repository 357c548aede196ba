"""Winograd's tables and transforms as straight-line device code, for the numba family's Winograd
kernels (winograd.py): the points, inverse denominators and BT of kernels/winograd_tables.cuh, the
AT, G and BT built from them, device functions t(d, out) = L d L^T written out from a constant L, and the
slot transforms' two stages (columns of L d into shared memory, rows of L picked at run time)."""

from __future__ import annotations

import numpy as np
from numba import cuda, float32, uint32

from ..cuda.config import WINOGRAD_SLOTS as SLOTS  # slots per block of the slot transforms (WINO_SLOTS)
from ..cuda.config import WINOGRAD_TILE as M  # output tile side (WINO_M)

# The points, inverse denominators and BT of A = R + 3 (kernels/winograd_tables.cuh's WINO6_* and WINO8_*;
# tests/ops/test_conv_winograd.py checks these equal the .cu's, which it checks against the exact
# Toom-Cook fractions)
WINO6_P = (0.0, 1.0, -1.0, 2.0, -2.0)
WINO6_INV = (1 / 4, -1 / 6, -1 / 6, 1 / 24, 1 / 24)
WINO6_BT = ((4, 0, -5, 0, 1, 0),
            (0, -4, -4, 1, 1, 0),
            (0, 4, -4, -1, 1, 0),
            (0, -2, -1, 2, 1, 0),
            (0, 2, -1, -2, 1, 0),
            (0, 4, 0, -5, 0, 1))
WINO8_P = (0.0, 1.0, -1.0, 2.0, -2.0, 1 / 2, -1 / 2)
WINO8_INV = (-1.0, -2 / 9, -2 / 9, 1 / 90, 1 / 90, 32 / 45, 32 / 45)
WINO8_BT = ((-1, 0, 21 / 4, 0, -21 / 4, 0, 1, 0),
            (0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0),
            (0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0),
            (0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0),
            (0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0),
            (0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0),
            (0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0),
            (0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1))
TABLES = {6: (WINO6_P, WINO6_INV, WINO6_BT), 8: (WINO8_P, WINO8_INV, WINO8_BT)}


def matrices(r: int, outputs: int, taps: int):
    """(AT, G, BT) of F(outputs, taps) for A = r + 3 points, float32, built from TABLES as the CUDA
    C kernels build them (wino_at, wino_g: float32 products, exact for these points): AT[i][j] = p_j^i,
    G[j][k] = p_j^k * inv_j, the infinity column / row the unit vector at the last index."""
    a = r + M - 1
    p, inv, bt = (np.asarray(t, np.float32) for t in TABLES[a])
    at = np.array([[p[j] ** i if j < a - 1 else float(i == outputs - 1) for j in range(a)] for i in range(outputs)],
                  np.float32)
    g = np.array([[p[j] ** k * inv[j] if j < a - 1 else float(k == taps - 1) for k in range(taps)]
                  for j in range(a)], np.float32)
    return at, g, bt


def _dot(row, terms):
    """Source of sum_i row[i] * terms[i] for constants ``row``: zero terms dropped, units unmultiplied."""
    parts = [t if c == 1 else f"-{t}" if c == -1 else f"float32({float(c)!r}) * {t}"
             for c, t in zip(row, terms) if c != 0]
    return " + ".join(parts) or "float32(0.0)"


def _rows(lmat, o, out_row, indent="    "):
    """Source lines of row ``o`` of L d L^T (L = lmat, O x I) into out[out_row, :]."""
    o_n, i_n = lmat.shape
    lines = [f"{indent}e{o}_{j} = {_dot(lmat[o], [f'd[{i}, {j}]' for i in range(i_n)])}" for j in range(i_n)]
    return lines + [f"{indent}out[{out_row}, {p}] = {_dot(lmat[p], [f'e{o}_{j}' for j in range(i_n)])}"
                    for p in range(o_n)]


def _device(lines):
    """The device function ``t`` of the source ``lines``."""
    scope = {"float32": float32, "uint32": uint32}
    exec("\n".join(lines), scope)  # noqa: S102  (source built from the constant tables only)
    return cuda.jit(device=True, inline="always")(scope["t"])


def _transform(lmat):
    """Device function t(d, out): out = L d L^T for the O x I constant matrix ``lmat`` (a numpy
    array), d an I x I and out an O x O local array (BT d B, G d G^T, AT m A). Written out here as
    straight-line code from L's entries, zero terms dropped and unit factors unmultiplied (what the
    CUDA C kernels' unrolled loops fold to): NVVM leaves the A^3-step loops of A = 8 partly rolled,
    their arrays in local memory, so the unrolling is done before compiling."""
    return _device(["def t(d, out):"] + [ln for o in range(lmat.shape[0]) for ln in _rows(lmat, o, o)])


def _row_transform(lmat):
    """Device function t(d, row, out): out[0, :] = row ``row`` (a run-time index) of L d L^T, as
    _transform's straight-line code, one branch per row."""
    lines = ["def t(d, row, out):"]
    for o in range(lmat.shape[0]):
        lines += [f"    {'if' if o == 0 else 'elif'} row == {o}:"] + _rows(lmat, o, 0, "        ")
    return _device(lines)


# The slot transforms' stages (winograd.py): a block's shared T[o][j][slot] (O x I x SLOTS floats)
# holds column j of L d of each of its SLOTS slots (d a slot's I x I block).

def _columns(lmat):
    """Device function t(d, sh, at): sh[at + o * I * SLOTS] = (L d)[o] for o < O, d the I values of one
    column (a local array) and at = j * SLOTS + slot (stage 1: column j of L d into T[o][j][slot]).
    Straight-line from L's entries as _transform."""
    o_n, i_n = lmat.shape
    return _device(["def t(d, sh, at):"] + [
        f"    sh[uint32(at + {o * i_n * SLOTS})] = {_dot(lmat[o], [f'd[{i}]' for i in range(i_n)])}"
        for o in range(o_n)])


def _pick_row(lmat):
    """Device function t(p): row ``p`` (a run-time index < O) of L as a tuple of I float32 constants,
    one branch per row (stage 2 picks its row once per thread: registers, no table in memory)."""
    rows = ["(" + ", ".join(f"float32({float(c)!r})" for c in row) + ",)" for row in lmat]
    lines = ["def t(p):"]
    for o, row in enumerate(rows[:-1]):
        lines += [f"    if p == {o}:", f"        return {row}"]
    return _device(lines + [f"    return {rows[-1]}"])  # p == O - 1


def _row_dot(i_n: int):
    """Device function t(sh, at, c): sum over j < i_n of sh[at + j * SLOTS] * c[j] (stage 2: row o of T
    of one slot, at = o * i_n * SLOTS + slot, times a row c of L picked by _pick_row)."""
    terms = " + ".join(f"sh[uint32(at + {j * SLOTS})] * c[{j}]" for j in range(i_n))
    return _device(["def t(sh, at, c):", f"    return {terms}"])
