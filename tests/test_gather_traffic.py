"""benchmarks/gather_traffic.py / .cpp: the lines and sectors a warp's gathered-B copy reads, counted from
kernels/conv_index.cuh's index math, against an independent count from the naive im2col (forward) and
the plain tap condition of each backward-data phase, for every copy shape; a 1x1 case by hand."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gather_traffic  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    return gather_traffic.build(tmp_path_factory.mktemp("gather_traffic"))


def out_size(h, r, st, pd, d):
    return (h + 2 * pd - d * (r - 1) - 1) // st + 1


def gemms(what, conv):
    """Per GEMM of the pass (per group; backward-data: per phase): (columns, reduction, address(kk, n) or
    None outside), from the definitions of the passes, not the kernels' index math."""
    n, c, h, w, k, r, s, sh, sw, ph, pw, dh, dw, groups = conv
    p, q = out_size(h, r, sh, ph, dh), out_size(w, s, sw, pw, dw)
    cg, kg = c // groups, k // groups
    for g in range(groups):
        if what == "forward":
            def addr(kk, col, g=g):
                ch, rr, ss = kk // (r * s), kk // s % r, kk % s
                img, pp, qq = col // (p * q), col // q % p, col % q
                y, x = pp * sh - ph + rr * dh, qq * sw - pw + ss * dw
                return ((img * c + g * cg + ch) * h + y) * w + x if 0 <= y < h and 0 <= x < w else None
            yield n * p * q, cg * r * s, addr
            continue
        for phase in range(sh * sw):
            hs = list(range(phase // sw, h, sh))       # the phase's rows and columns of dx
            ws = list(range(phase % sw, w, sw))
            if not hs or not ws:
                continue
            taps_r = [rr for rr in range(r) if (hs[0] + ph - rr * dh) % sh == 0]
            taps_s = [ss for ss in range(s) if (ws[0] + pw - ss * dw) % sw == 0]

            def addr(kk, col, g=g, hs=hs, ws=ws, taps_r=taps_r, taps_s=taps_s):
                ch, i, j = kk // (len(taps_r) * len(taps_s)), kk // len(taps_s) % len(taps_r), kk % len(taps_s)
                img, t, u = col // (len(hs) * len(ws)), col // len(ws) % len(hs), col % len(ws)
                ny, nx = hs[t] + ph - taps_r[i] * dh, ws[u] + pw - taps_s[j] * dw
                y, x = ny // sh, nx // sw
                inside = ny >= 0 and nx >= 0 and y < p and x < q
                return ((img * k + g * kg + ch) * p + y) * q + x if inside else None
            yield n * len(hs) * len(ws), kg * len(taps_r) * len(taps_s), addr


def naive_counts(what, conv, bn, bk, rows, row_step):
    cols_per = 32 // rows
    t = {"copies": 0, "lanes": 0, "lines": 0, "sectors": 0}
    for ncols, kred, addr in gemms(what, conv):
        for n0 in range(0, ncols, bn):
            for k0 in range(0, kred, bk):
                for grp in range(bk // rows):
                    first = grp // row_step * rows * row_step + grp % row_step
                    for c0 in range(0, bn, cols_per):
                        got = []
                        for lane in range(32):
                            kk, col = k0 + first + lane // cols_per * row_step, n0 + c0 + lane % cols_per
                            a = addr(kk, col) if kk < kred and col < ncols else None
                            if a is not None:
                                got.append(4 * a)
                        t["copies"] += 1
                        t["lanes"] += len(got)
                        t["lines"] += len({b >> 7 for b in got})
                        t["sectors"] += len({b >> 5 for b in got})
    return t


CASES = [  # (pass, N C H W K R S sh sw ph pw dh dw G)
    ("forward", (2, 3, 5, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1)),
    ("forward", (1, 4, 9, 8, 6, 3, 2, 2, 1, 1, 0, 1, 2, 2)),
    ("backward_data", (1, 4, 7, 6, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1)),
    ("backward_data", (2, 4, 9, 9, 4, 4, 4, 2, 2, 1, 1, 1, 1, 2)),
    ("backward_data", (1, 3, 7, 7, 2, 3, 3, 3, 3, 1, 1, 2, 2, 1)),
]


@pytest.mark.parametrize("what,conv", CASES)
@pytest.mark.parametrize("rows,row_step", [(1, 1), (2, 1), (2, 4), (4, 1), (8, 1)])
def test_counts_match_the_naive_gather(exe, what, conv, rows, row_step):
    bn, bk = 32, 16
    assert gather_traffic.run(exe, what, conv, bn, bk, rows, row_step) == naive_counts(what, conv, bn, bk, rows,
                                                                                        row_step)


def test_a_1x1_convolution_by_hand(exe):
    """1x1 over 8 channels of 8x8 planes (256 bytes each), 64 GEMM columns in two tiles of 32: a copy of
    one channel's 32 columns reads one aligned line (4 sectors), of 4 channels x 8 columns 4 lines."""
    conv = (1, 8, 8, 8, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1)
    one = gather_traffic.run(exe, "forward", conv, 32, 8, 1, 1)
    assert one == {"copies": 2 * 8, "lanes": 64 * 8, "lines": 16, "sectors": 64}
    four = gather_traffic.run(exe, "forward", conv, 32, 8, 4, 1)
    assert four == {"copies": 2 * 2 * 4, "lanes": 64 * 8, "lines": 64, "sectors": 64}


def test_gatherb_rows_follow_the_tile():
    assert gather_traffic.gatherb_rows(16, 128) == 4 and gather_traffic.gatherb_rows(8, 256) == 1


def test_cli_rows_error_is_one_line():
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, str(root / "benchmarks" / "gather_traffic.py"), "--rows", "vgg"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(root)))
    err = p.stderr.strip()
    assert p.returncode == 2 and err.startswith("--rows: got ['vgg'], expected prefixes of") and len(err.splitlines()) == 1
