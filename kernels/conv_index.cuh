// conv_index.cuh - the index math of the implicit-GEMM conv kernels, as __host__ __device__
// functions so that tests/test_conv_index.py compiles them with g++ and checks every address
// against a naive im2col on the host. No CUDA built-ins here (only what g++ can compile with
// __host__/__device__/__forceinline__ defined empty).
//
// The GEMM view of the three passes (per group g; "tap" = one (r, s) of the filter):
//   forward          C[k][n=(img,p,q)]     = sum_{kk=(c,r,s)} Wf[kk][k] * X(kk, n)
//   backward-data    C[c][n=(img,t,u)]     = sum_{kk=(k,i,j)} Wd[kk][c] * DY(kk, n), one GEMM per
//                    output phase (h % sh, w % sw): h = h0 + t*sh, w = w0 + u*sw, and only the taps
//                    r = r0 + i*rstep, s = s0 + j*sstep that reach that phase (no zero taps).
//   backward-weight  C[k][n=(c,r,s)]       = sum_{kk=(img,p,q)} DY[img][k][p][q] * X(c, r, s; img, p, q)
// The gathered operand of forward and backward-data is one "im2col" form: element (a, i, j) x
// (img, t, u) of a tensor T[img][a][Th][Tw] at row t*hs + hb + i*hd and column u*ws + wb + j*wd, zero
// outside [0, Th) x [0, Tw). Forward: T = x, (hs, hb, hd) = (sh, -ph, dh). Backward-data phase:
// T = dy, (hs, hb, hd) = (1, pbase, -pstep): p = t + pbase - i*pstep.
#pragma once

#ifndef FC_HD
#define FC_HD __host__ __device__ __forceinline__
#endif

// Digits (a, i, j) of n = (a*ni + i)*nj + j, j < nj, i < ni.
FC_HD void digits3(int n, int ni, int nj, int& a, int& i, int& j) {
    const int nij = ni * nj;
    a = n / nij;
    const int rem = n - a * nij;
    i = rem / nj;
    j = rem - i * nj;
}

// Element (g, kk, m) of the forward pass's packed weights wp[G][Cg*R*S][Kp]: per group, one row of
// Kp = K/G rounded up to 4 output channels m per reduction index kk = (c, r, s), so the v3 forward's
// A loader reads 4 consecutive m as one 16-byte copy. conv2d_pack_forward_v1 writes this layout from
// w, Winograd's filter transform (winograd.cu) writes its U into it directly. I: the index type.
template <class I>
FC_HD I packed_forward_at(I g, I kk, I m, I crs, I Kp) {
    return (g * crs + kk) * Kp + m;
}

// Mixed-radix counter over (a, i, j) with j fastest (j < nj, i < ni), advanced by a fixed step
// without division: the step is split once into (da, di, dj) digits and each advance carries at
// most one unit per digit. kk is the flat index a*ni*nj + i*nj + j.
struct TapIter {
    int a, i, j, kk;
    int da, di, dj, ni, nj;
    FC_HD void init(int kk0, int step, int ni_, int nj_) {
        ni = ni_; nj = nj_;
        kk = kk0;
        digits3(kk0, ni_, nj_, a, i, j);
        digits3(step, ni_, nj_, da, di, dj);
    }
    FC_HD void next() {
        kk += da * ni * nj + di * nj + dj;
        j += dj;
        int ci = 0;
        if (j >= nj) { j -= nj; ci = 1; }
        i += di + ci;
        int ca = 0;
        if (i >= ni) { i -= ni; ca = 1; }
        a += da + ca;
    }
};

// The gathered operands, each a geometry G with gather_col(g, n, ncols) -> G::Col, decoded once per
// thread and GEMM column n (row n for WgradRows) before the main loop; gather_step(g, it, live) ->
// GatherStep, the part of every address at the reduction index of iterator it, formed once per k step
// for all of a thread's columns (live = false: the index is past the reduction, no element is
// inside); and gather_ok(g, col, step): whether the element lies inside the tensor (else it reads
// zero). The element's offset is col_off(col) + step.off, so a loader forms one base pointer per k
// step and one address per column. A column n >= ncols gets a value that fails every gather_ok
// (WgradRows: one whose products are never stored).
struct GatherCol {  // the column's offset at reduction index 0 and the row / column it adds
    int off, h, w;
};
struct GatherStep {  // the offset, row and column a k step adds to every column, and the bound of
    int off, h, w, wlim;  // the column test (0 when the step is not live: every test fails)
};
FC_HD int col_off(const GatherCol& c) { return c.off; }
FC_HD GatherCol gather_col_outside() {
    GatherCol c;
    c.off = 0; c.h = -(1 << 29); c.w = 0;
    return c;
}
// Inside a th x s.wlim plane at row c.h + s.h, column c.w + s.w (one unsigned compare per side).
FC_HD bool gather_inside(const GatherCol& c, const GatherStep& s, int th) {
    return (unsigned)(c.h + s.h) < (unsigned)th && (unsigned)(c.w + s.w) < (unsigned)s.wlim;
}

// Forward B and backward-data B (see the header comment): column n = (img, t, u).
struct Gather {
    typedef GatherCol Col;
    int Tc, Th, Tw;          // the tensor's channels (all groups), rows, columns
    int a0;                  // first channel of the group
    int na, ni, nj;          // reduction digits: channels of the group, taps along h, taps along w
    int nt, nu;              // output sub-grid rows/cols (P, Q for forward; Ht, Wt of a phase)
    int hs, hb, hd, ws, wb, wd;
};
FC_HD GatherCol gather_col(const Gather& g, int n, int ncols) {
    if (n >= ncols) return gather_col_outside();
    int img, t, u;
    digits3(n, g.nt, g.nu, img, t, u);
    GatherCol c;
    c.h = t * g.hs + g.hb;
    c.w = u * g.ws + g.wb;
    c.off = (img * g.Tc + g.a0) * g.Th * g.Tw + c.h * g.Tw + c.w;
    return c;
}
// Forward's B: x's Cg channels from channel c0 (a group's), (hs, hb, hd) = (sh, -ph, dh) and the same
// along w, output columns (img, p, q).
FC_HD Gather forward_gather(int C, int H, int W, int R, int S, int P, int Q, int sh, int sw, int ph, int pw, int dh,
                            int dw, int c0, int Cg) {
    return Gather{C, H, W, c0, Cg, R, S, P, Q, sh, -ph, dh, sw, -pw, dw};
}
FC_HD GatherStep gather_step(const Gather& g, const TapIter& it, bool live) {
    GatherStep s;
    s.h = it.i * g.hd; s.w = it.j * g.wd;
    s.off = it.a * g.Th * g.Tw + s.h * g.Tw + s.w;
    s.wlim = live ? g.Tw : 0;
    return s;
}
FC_HD bool gather_ok(const Gather& g, const GatherCol& c, const GatherStep& s) { return gather_inside(c, s, g.Th); }

// The same B with the bounds test as a bitmask (the TF32 tiles): bit 16 + i (i < GATHER_MASK_TAPS)
// of a column's mask is set when its tap row i lies inside the tensor, bit j when its tap column j
// does, both decoded once per column; a live step needs bits i and 16 + j of the iterator's tap
// (a step that is not live bit 31, never set), so the test is one AND-NOT and the column keeps two
// registers instead of three. Serves at most GATHER_MASK_TAPS taps per dimension (ni, nj: the
// launcher runs wider filters on the fp32 tiles).
#define GATHER_MASK_TAPS 15
struct GatherMaskCol {
    int off;
    unsigned mask;
};
struct GatherMaskStep {
    int off;
    unsigned need;
};
struct GatherMasked {
    typedef GatherMaskCol Col;
    Gather g;
    GatherMasked() = default;
    FC_HD GatherMasked(const Gather& g_) : g(g_) {}  // implicit: the launch code builds a Gather
};
FC_HD int col_off(const GatherMaskCol& c) { return c.off; }
// The bounds bitmask of a column whose tap (0, 0) lies at row h, column w.
FC_HD unsigned tap_mask(const Gather& g, int h, int w) {
    unsigned mask = 0;
    for (int i = 0; i < g.ni; ++i) mask |= (unsigned)((unsigned)(h + i * g.hd) < (unsigned)g.Th) << (16 + i);
    for (int j = 0; j < g.nj; ++j) mask |= (unsigned)((unsigned)(w + j * g.wd) < (unsigned)g.Tw) << j;
    return mask;
}
FC_HD GatherMaskCol gather_col(const GatherMasked& m, int n, int ncols) {
    GatherMaskCol c;
    c.off = 0; c.mask = 0;
    if (n >= ncols) return c;
    const GatherCol b = gather_col(m.g, n, ncols);
    c.off = b.off;
    c.mask = tap_mask(m.g, b.h, b.w);
    return c;
}
FC_HD GatherMaskStep gather_step(const GatherMasked& m, const TapIter& it, bool live) {
    GatherMaskStep s;
    s.off = gather_step(m.g, it, live).off;
    s.need = live ? (1u << (16 + it.i)) | (1u << it.j) : 1u << 31;
    return s;
}
FC_HD bool gather_ok(const GatherMasked&, const GatherMaskCol& c, const GatherMaskStep& s) {
    return (s.need & ~c.mask) == 0;
}

// backward-weight B: column n = (c, r, s) of x and row kk = (img, p, q) (the iterator):
// x[img][c0g + c][p*sh - ph + r*dh][q*sw - pw + s*dw].
struct WgradGeom {
    typedef GatherCol Col;
    int C, H, W, c0g, R, S, sh, sw, ph, pw, dh, dw;
};
FC_HD GatherCol gather_col(const WgradGeom& g, int n, int crs) {
    if (n >= crs) return gather_col_outside();
    int ch, r, s;
    digits3(n, g.R, g.S, ch, r, s);
    GatherCol c;
    c.h = r * g.dh; c.w = s * g.dw;
    c.off = (g.c0g + ch) * g.H * g.W + c.h * g.W + c.w;
    return c;
}
FC_HD GatherStep gather_step(const WgradGeom& g, const TapIter& it, bool live) {
    GatherStep s;
    s.h = it.i * g.sh - g.ph; s.w = it.j * g.sw - g.pw;
    s.off = it.a * g.C * g.H * g.W + s.h * g.W + s.w;
    s.wlim = live ? g.W : 0;
    return s;
}
FC_HD bool gather_ok(const WgradGeom& g, const GatherCol& c, const GatherStep& s) { return gather_inside(c, s, g.H); }

// The same B gathered from a channels-last copy x[img][h][w][C] (the TF32 vec backward-weight, channels
// per group a multiple of 4): columns run n = (r, s, c), channel fastest, so 4 consecutive columns
// (n a multiple of 4) are 4 consecutive floats of one pixel, one 16-byte copy (GatherRowQuad). Same
// bounds as WgradGeom.
struct WgradNhwc {
    typedef GatherCol Col;
    int C, H, W, c0g, Cg, S, sh, sw, ph, pw, dh, dw;
};
FC_HD GatherCol gather_col(const WgradNhwc& g, int n, int crs) {
    if (n >= crs) return gather_col_outside();
    const int rs = n / g.Cg, ch = n - rs * g.Cg, r = rs / g.S, s = rs - r * g.S;
    GatherCol c;
    c.h = r * g.dh; c.w = s * g.dw;
    c.off = (c.h * g.W + c.w) * g.C + g.c0g + ch;
    return c;
}
FC_HD GatherStep gather_step(const WgradNhwc& g, const TapIter& it, bool live) {
    GatherStep s;
    s.h = it.i * g.sh - g.ph; s.w = it.j * g.sw - g.pw;
    s.off = ((it.a * g.H + s.h) * g.W + s.w) * g.C;
    s.wlim = live ? g.W : 0;
    return s;
}
FC_HD bool gather_ok(const WgradNhwc& g, const GatherCol& c, const GatherStep& s) { return gather_inside(c, s, g.H); }
// Its thread map (a BK x BN/4 grid of 16-byte cells, k-major: cell (kk, nq) holds columns 4nq..4nq+3
// of k row kk): units of 8 lanes, unit U = tid/8 + v*NT/8 for the thread's cells v < BK*BN/(4*NT),
// take 8 consecutive cells of one k row, kk = U % BK, nq = 8*(U / BK) + tid % 8: a quarter warp's
// 16-byte stores are one 128-byte row piece (all 32 banks), and its global reads 32 consecutive
// columns (channels of one tap). A thread's k rows repeat with period BK / gcd(BK, NT/8) cells.
FC_HD void row_quad_cell(int tid, int v, int NT, int BK, int& kk, int& nq) {
    const int unit = (tid >> 3) + v * (NT >> 3);
    kk = unit % BK;
    nq = 8 * (unit / BK) + (tid & 7);
}
// Cell v's shared offset past cell 0's in a k-major tile of row pitch bs (NT, BK powers of two): one k
// row and columns 4*NT/BK apart when NT/8 >= BK, else ki = 8*BK/NT k rows NT/8 apart, then 32 columns on.
FC_HD constexpr int row_quad_off(int v, int NT, int BK, int bs) {
    return 8 * BK > NT ? (v % (8 * BK / NT)) * (NT / 8) * bs + 32 * (v / (8 * BK / NT)) : v * 4 * NT / BK;
}

// backward-weight A: A[m][kk=(img, pq)] = dy[img][k0g + m][pq], the iterator (img, 0, pq); a row
// is its offset (k0g + m)*PQ. Rows past the group's read its last row instead of zero: they only
// feed output rows that are never stored, so every element of a live k step is inside.
struct WgradRows {
    typedef int Col;
    int KPQ, PQ, k0g;
};
FC_HD int col_off(int roff) { return roff; }
FC_HD int gather_col(const WgradRows& g, int m, int rows) { return (g.k0g + (m < rows ? m : rows - 1)) * g.PQ; }
FC_HD GatherStep gather_step(const WgradRows& g, const TapIter& it, bool live) {
    GatherStep s;
    s.off = it.a * g.KPQ + it.j; s.h = 0; s.w = 0;
    s.wlim = live;
    return s;
}
FC_HD bool gather_ok(const WgradRows&, int, const GatherStep& s) { return s.wlim != 0; }

// One backward-data output phase: rows h = h0 + t*sh (t < Ht) use the taps r = r0 + i*rstep
// (i < Ri) and read dy row p = t + pbase - i*pstep; the same along w. A phase with Ht or Wt == 0
// has no outputs; one with Ri or Sj == 0 has outputs that no tap reaches (they are zero).
struct Phase {
    int h0, Ht, r0, rstep, Ri, pbase, pstep;
    int w0, Wt, s0, sstep, Sj, qbase, qstep;
};

// gcd of positive ints by subtraction and shifts (binary gcd): no division, so a kernel's setup
// does not call the division slow path.
FC_HD int gcd_int(int a, int b) {
    int shift = 0;
    while (((a | b) & 1) == 0) { a >>= 1; b >>= 1; ++shift; }
    while ((a & 1) == 0) a >>= 1;
    while (b) {
        while ((b & 1) == 0) b >>= 1;
        if (a > b) { const int t = a; a = b; b = t; }
        b -= a;
    }
    return a << shift;
}

// One dimension of a phase: rows phi, phi + st, ... of an extent n, filter taps R at dilation d,
// padding pd. Taps r reach row h when h + pd - r*d is a multiple of st.
FC_HD void phase_dim(int phi, int n, int R, int st, int pd, int d, int& h0, int& nt, int& r0, int& rstep,
                     int& nr, int& base, int& pstep) {
    h0 = phi;
    nt = phi < n ? (n - phi + st - 1) / st : 0;
    rstep = st / gcd_int(st, d);
    r0 = -1;
    int res = (phi + pd) % st;          // (phi + pd - r*d) mod st, kept in [0, st) as r grows
    const int dm = d % st;
    for (int r = 0; r < R && r < rstep; ++r) {
        if (res == 0) { r0 = r; break; }
        res -= dm;
        if (res < 0) res += st;
    }
    if (r0 < 0) { r0 = 0; nr = 0; base = 0; pstep = 0; return; }
    nr = (R - r0 + rstep - 1) / rstep;
    const int num = phi + pd - r0 * d;  // a multiple of st (may be negative)
    base = num >= 0 ? num / st : -((-num) / st);
    pstep = rstep * d / st;
}

FC_HD Phase bwd_phase(int phase, int H, int W, int R, int S, int sh, int sw, int ph, int pw, int dh, int dw) {
    Phase f;
    const int phi_h = phase / sw, phi_w = phase - phi_h * sw;
    phase_dim(phi_h, H, R, sh, ph, dh, f.h0, f.Ht, f.r0, f.rstep, f.Ri, f.pbase, f.pstep);
    phase_dim(phi_w, W, S, sw, pw, dw, f.w0, f.Wt, f.s0, f.sstep, f.Sj, f.qbase, f.qstep);
    return f;
}

// Backward-data's B for phase f: dy (K channels, P x Q) of group g, its taps (Ri x Sj; at least 1 x 1, so
// that a phase no tap reaches has a valid iterator over its empty reduction) at dy rows t + pbase -
// i*pstep and the same along w, columns (img, t, u) of the phase's Ht x Wt outputs.
FC_HD Gather phase_gather(const Phase& f, int K, int P, int Q, int g, int Kg) {
    return Gather{K, P, Q, g * Kg, Kg, f.Ri > 0 ? f.Ri : 1, f.Sj > 0 ? f.Sj : 1, f.Ht, f.Wt,
                  1, f.pbase, -f.pstep, 1, f.qbase, -f.qstep};
}

// The most taps any phase of one dimension has: ceil(R / rstep) (phases differ by at most one).
FC_HD int phase_max_taps(int R, int st, int d) {
    const int rstep = st / gcd_int(st, d);
    return (R + rstep - 1) / rstep;
}

// The TF32 warp tile's fragment layout (kernels/conv_gemm.cuh MmaTile): the warp row of row r
// (0..15) of m16n8k8 A / C tile mt. Lane (g, t) holds rows g and g + 8 of every tile; placed at
// 16*mt + 2g and 16*mt + 2g + 1 they are one 8-byte store per row pair in the epilogue (columns stay
// in order: column c of tile nt is warp column 8*nt + c); A tiles keep them at mma_slot.
FC_HD int mma_row(int mt, int r) { return 16 * mt + 2 * (r & 7) + (r >> 3); }
// Row pitch (floats) of the staged epilogue half of a BN-column tile (kernels/conv_gemm.cuh
// gemm_epilogue): 16-byte rows 4 banks apart mod 32. TF32: lane (g, t) stores rows 2g + hi of an mma
// tile (mma_row) at columns 2t as one float2, so a half warp's 8-byte stores (g < 4) start at banks
// 8g + 2t, all 32 distinct. fp32: a quarter warp's 16-byte stores cover one row of 8 lanes' quads, or,
// with 4 lanes per row (LC = 4), two rows 4 apart: 16 banks apart. The stage pitch BN + CONV_PAD (8
// banks mod 32) put TF32 rows 2g and 2g + 4, and the LC = 4 rows, on the same banks (2-way conflicts).
FC_HD constexpr int epi_pitch(int bn) { return bn + 4; }
// Where a gathered TF32 A tile (k-quad-major rows of 4 k, read by ldmatrix) keeps warp row m: rows
// mma_row(mt, 0..7) and mma_row(mt, 8..15) of each tile in 8 consecutive slots apiece, so one
// ldmatrix matrix reads 8 consecutive 16-byte rows (all 32 banks). A permutation of the low 4 bits:
// mma_slot(x + y) = mma_slot(x) + mma_slot(y) when x and y share no bit.
FC_HD int mma_slot(int m) { return (m & ~15) | ((m & 1) << 3) | ((m >> 1) & 7); }

// A conv kernel's geometry arguments (after its arrays) and the same names passed on.
#define CONV_ARGS int N, int C, int H, int W, int K, int R, int S, int P, int Q, \
                  int sh, int sw, int ph, int pw, int dh, int dw, int G
#define CONV_PASS N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, G
