// Host check of kernels/conv_index.cuh (built and run by tests/test_conv_index.py with g++):
// every (block, thread, k-step) address the v3 loaders form, through the same functions and thread
// maps, against a naive im2col; the backward-data phases against the plain tap condition; the
// TF32 fragment layout (mma_row, mma_slot) and its shared-memory banks (fragment loads, epilogue stores).
// argv: BN BK NT for each tile. Prints "ok <checks>" or the first mismatch, exit status 1.
#define __host__
#define __device__
#define __forceinline__ inline
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <vector>
#include "conv_index.cuh"

static long checks = 0;
#define EXPECT(cond, ...)                                      \
    do {                                                       \
        ++checks;                                              \
        if (!(cond)) {                                         \
            std::printf("mismatch: " __VA_ARGS__);             \
            std::printf("\n");                                 \
            std::exit(1);                                      \
        }                                                      \
    } while (0)

struct Conv { int N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G; };

static int out_size(int h, int r, int st, int pd, int d) { return (h + 2 * pd - d * (r - 1) - 1) / st + 1; }

// The offset a loader forms for column n at iterator it (gather_col once, gather_step per k step).
template <class Geo>
static int gather_offset(const Geo& g, int n, int ncols, const TapIter& it, bool& ok) {
    const typename Geo::Col c = gather_col(g, n, ncols);
    const auto s = gather_step(g, it, true);
    ok = gather_ok(g, c, s);
    EXPECT(!gather_ok(g, c, gather_step(g, it, false)), "kk %d n %d: inside at a step past the reduction", it.kk, n);
    return col_off(c) + s.off;
}

// The same through GatherMasked (the TF32 tiles' bounds as per-column bitmasks): the same validity
// and, where valid, the same offset.
static int gather_offset_masked(const Gather& g, int n, int ncols, const TapIter& it, bool& ok) {
    const int a = gather_offset(g, n, ncols, it, ok);
    bool mok;
    const int b = gather_offset(GatherMasked(g), n, ncols, it, mok);
    EXPECT(mok == ok && (!ok || a == b), "kk %d n %d: masked valid %d at %d, bounds valid %d at %d", it.kk, n, mok, b,
           ok, a);
    return a;
}

// Walk every block column tile, thread and k step of a gather loader with TPR threads per k row.
template <class Addr, class Naive>
static void walk(int ncols, int kred, int BN, int BK, int NT, bool kk_fastest, int ni, int nj, Addr addr, Naive naive) {
    const int TPR = kk_fastest ? NT / BK : NT / BK;  // threads per k row (both maps: NT / BK)
    for (int n0 = 0; n0 < ncols; n0 += BN)
        for (int tid = 0; tid < NT; ++tid) {
            const int kk_off = kk_fastest ? tid % BK : tid / TPR, n_off = kk_fastest ? tid / BK : tid % TPR;
            TapIter it;
            it.init(kk_off, BK, ni, nj);
            for (int step = 0; it.kk < kred; ++step) {
                EXPECT(it.kk == kk_off + step * BK, "iterator kk %d, expected %d", it.kk, kk_off + step * BK);
                for (int j = 0; j < BN / TPR; ++j) {
                    const int n = n0 + n_off + j * TPR;
                    bool ok, nok;
                    const int a = addr(it, n, ok);
                    const int b = naive(it.kk, n, nok);
                    EXPECT(ok == (nok && n < ncols), "kk %d n %d: valid %d, naive %d", it.kk, n, ok, nok);
                    if (ok) EXPECT(a == b, "kk %d n %d: address %d, naive %d", it.kk, n, a, b);
                }
                it.next();
            }
        }
}

static void check_forward(const Conv& c, int BN, int BK, int NT) {
    const int P = out_size(c.H, c.R, c.sh, c.ph, c.dh), Q = out_size(c.W, c.S, c.sw, c.pw, c.dw);
    const int Cg = c.C / c.G, ncols = c.N * P * Q, kred = Cg * c.R * c.S;
    for (int g = 0; g < c.G; ++g) {
        const Gather gg = forward_gather(c.C, c.H, c.W, c.R, c.S, P, Q, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw, g * Cg, Cg);
        auto addr = [&](const TapIter& it, int n, bool& ok) { return gather_offset_masked(gg, n, ncols, it, ok); };
        auto naive = [&](int kk, int n, bool& ok) {
            const int ch = kk / (c.R * c.S), r = kk / c.S % c.R, s = kk % c.S;
            const int img = n / (P * Q), p = n / Q % P, q = n % Q;
            const int h = p * c.sh - c.ph + r * c.dh, w = q * c.sw - c.pw + s * c.dw;
            ok = h >= 0 && h < c.H && w >= 0 && w < c.W;
            return ((img * c.C + g * Cg + ch) * c.H + h) * c.W + w;
        };
        walk(ncols, kred, BN, BK, NT, false, c.R, c.S, addr, naive);
    }
}

static void check_backward_data(const Conv& c, int BN, int BK, int NT) {
    const int P = out_size(c.H, c.R, c.sh, c.ph, c.dh), Q = out_size(c.W, c.S, c.sw, c.pw, c.dw);
    const int Kg = c.K / c.G;
    std::vector<int> seen(c.H * c.W, 0);
    for (int phase = 0; phase < c.sh * c.sw; ++phase) {
        const Phase f = bwd_phase(phase, c.H, c.W, c.R, c.S, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw);
        EXPECT(f.Ri <= phase_max_taps(c.R, c.sh, c.dh) && f.Sj <= phase_max_taps(c.S, c.sw, c.dw), "phase taps");
        for (int t = 0; t < f.Ht; ++t)
            for (int u = 0; u < f.Wt; ++u) {
                const int h = f.h0 + t * c.sh, w = f.w0 + u * c.sw;
                EXPECT(h < c.H && w < c.W, "phase %d row %d col %d outside", phase, h, w);
                ++seen[h * c.W + w];
                // the phase's taps are exactly the taps r with (h + ph - r*dh) divisible by sh, each
                // at dy row p = t + pbase - i*pstep
                int want = 0;
                for (int r = 0; r < c.R; ++r) want += ((h + c.ph - r * c.dh) % c.sh + c.sh) % c.sh == 0;
                EXPECT(want == f.Ri, "h %d: %d taps, naive %d", h, f.Ri, want);
                for (int i = 0; i < f.Ri; ++i) {
                    const int r = f.r0 + i * f.rstep, num = h + c.ph - r * c.dh;
                    EXPECT(r < c.R && ((num % c.sh) + c.sh) % c.sh == 0, "h %d tap %d", h, r);
                    EXPECT(num == (t + f.pbase - i * f.pstep) * c.sh, "h %d tap %d: p", h, r);
                }
            }
        if (f.Ht == 0 || f.Wt == 0) continue;
        const int ncols = c.N * f.Ht * f.Wt, kred = Kg * f.Ri * f.Sj;
        for (int g = 0; g < c.G; ++g) {
            const Gather gg = phase_gather(f, c.K, P, Q, g, Kg);
            auto addr = [&](const TapIter& it, int n, bool& ok) { return gather_offset_masked(gg, n, ncols, it, ok); };
            auto naive = [&](int kk, int n, bool& ok) {
                const int k = kk / (f.Ri * f.Sj), i = kk / f.Sj % f.Ri, j = kk % f.Sj;
                const int img = n / (f.Ht * f.Wt), t = n / f.Wt % f.Ht, u = n % f.Wt;
                const int h = f.h0 + t * c.sh, w = f.w0 + u * c.sw, r = f.r0 + i * f.rstep, s = f.s0 + j * f.sstep;
                const int p = (h + c.ph - r * c.dh) / c.sh, q = (w + c.pw - s * c.dw) / c.sw;
                ok = h + c.ph - r * c.dh >= 0 && w + c.pw - s * c.dw >= 0 && p < P && q < Q;
                return ((img * c.K + g * Kg + k) * P + p) * Q + q;
            };
            walk(ncols, kred, BN, BK, NT, false, gg.ni, gg.nj, addr, naive);
        }
    }
    for (int e = 0; e < c.H * c.W; ++e) EXPECT(seen[e] == 1, "dx element %d covered %d times", e, seen[e]);
}

static void check_backward_weight(const Conv& c, int BN, int BK, int NT) {
    const int P = out_size(c.H, c.R, c.sh, c.ph, c.dh), Q = out_size(c.W, c.S, c.sw, c.pw, c.dw);
    const int Cg = c.C / c.G, crs = Cg * c.R * c.S, kred = c.N * P * Q;
    for (int g = 0; g < c.G; ++g) {
        const WgradGeom wg = {c.C, c.H, c.W, g * Cg, c.R, c.S, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw};
        auto addr = [&](const TapIter& it, int n, bool& ok) { return gather_offset(wg, n, crs, it, ok); };
        auto naive = [&](int kk, int n, bool& ok) {
            const int img = kk / (P * Q), p = kk / Q % P, q = kk % Q;
            const int ch = n / (c.R * c.S), r = n / c.S % c.R, s = n % c.S;
            const int h = p * c.sh - c.ph + r * c.dh, w = q * c.sw - c.pw + s * c.dw;
            ok = h >= 0 && h < c.H && w >= 0 && w < c.W;
            return ((img * c.C + g * Cg + ch) * c.H + h) * c.W + w;
        };
        walk(crs, kred, BN, BK, NT, true, P, Q, addr, naive);
        if (Cg % 4 != 0 || BK * BN < 4 * NT) continue;
        // the TF32 vec kernel's B: x[img][h][w][C], columns (r, s, c) with c fastest, 16-byte cells by
        // row_quad_cell, one iterator per distinct k row
        const WgradNhwc wn = {c.C, c.H, c.W, g * Cg, Cg, c.S, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw};
        for (int n0 = 0; n0 < crs; n0 += BN)
            for (int tid = 0; tid < NT; ++tid)
                for (int v = 0; v < BK * BN / (4 * NT); ++v) {
                    int kk, nq;
                    row_quad_cell(tid, v, NT, BK, kk, nq);
                    const GatherCol col = gather_col(wn, n0 + 4 * nq, crs);
                    TapIter it;
                    it.init(kk, BK, P, Q);
                    for (; it.kk < kred; it.next()) {
                        const GatherStep st = gather_step(wn, it, true);
                        const bool ok = gather_ok(wn, col, st);
                        EXPECT(!gather_ok(wn, col, gather_step(wn, it, false)), "x quad kk %d: inside past the end", it.kk);
                        for (int e = 0; e < 4; ++e) {
                            const int n = n0 + 4 * nq + e, img = it.kk / (P * Q), p = it.kk / Q % P, q = it.kk % Q;
                            const int rs = n / Cg, ch = n % Cg, r = rs / c.S, s = rs % c.S;
                            const int h = p * c.sh - c.ph + r * c.dh, w = q * c.sw - c.pw + s * c.dw;
                            const bool nok = n < crs && h >= 0 && h < c.H && w >= 0 && w < c.W;
                            EXPECT(ok == nok, "x quad kk %d n %d: valid %d, naive %d", it.kk, n, ok, nok);
                            if (ok) EXPECT(col.off + st.off + e == ((img * c.H + h) * c.W + w) * c.C + g * Cg + ch,
                                           "x quad kk %d n %d: address", it.kk, n);
                        }
                    }
                }
    }
}

// The TF32 fragment layout (mma_row, mma_slot) of a WM-row warp tile: (tile mt, row r) onto the
// warp rows one to one, rows g and g + 8 of a tile adjacent and 8-byte aligned (one float2), a
// tile's rows inside one epilogue half; with row pitch `pitch` (BM + CONV_PAD) the 64-bit k-major A
// loads of a half warp (lane g = l/4, k row t = l%4; PackedA's tiles) hit 32 distinct banks. Gathered fragments are
// read by ldmatrix from 8 consecutive 16-byte rows per matrix (B columns; A rows at mma_slot), which
// covers the 32 banks by construction.
static void check_mma_layout(int WM, int pitch) {
    std::vector<int> seen(WM, 0);
    for (int mt = 0; mt < WM / 16; ++mt)
        for (int r = 0; r < 16; ++r) {
            const int row = mma_row(mt, r);
            EXPECT(row >= 0 && row < WM, "mma_row(%d, %d) = %d outside %d rows", mt, r, row, WM);
            ++seen[row];
            EXPECT(row / (WM / 2) == mma_row(mt, 0) / (WM / 2), "tile %d split across epilogue halves", mt);
            if (r < 8)
                EXPECT(row % 2 == 0 && mma_row(mt, r + 8) == row + 1, "rows %d, %d of tile %d apart", r, r + 8, mt);
        }
    for (int row = 0; row < WM; ++row) EXPECT(seen[row] == 1, "warp row %d held %d times", row, seen[row]);
    // mma_slot: the rows of each ldmatrix matrix (rows r and r + 8 of a tile, r < 8) in 8 consecutive
    // slots, and linear over disjoint bits (a gather loader's column offsets are n_off's plus j's)
    for (int mt = 0; mt < WM / 16; ++mt)
        for (int r = 0; r < 16; ++r)
            EXPECT(mma_slot(mma_row(mt, r)) == 16 * mt + r, "mma_slot of tile %d row %d", mt, r);
    for (int step = 1; step <= 64; step *= 2)
        for (int x = 0; x < step; ++x)
            for (int j = 0; j * step < 2 * WM; ++j)
                EXPECT(mma_slot(x + j * step) == mma_slot(x) + mma_slot(j * step), "mma_slot(%d + %d*%d)", x, j, step);
    for (int w0 = 0; w0 + WM <= pitch; w0 += WM) {  // every warp's origin in the block tile
        for (int mt = 0; mt < WM / 16; ++mt)
            for (int half = 0; half < 2; ++half) {
                std::vector<int> bank(32, 0);
                for (int l = 16 * half; l < 16 * half + 16; ++l) {
                    const int word = (l % 4) * pitch + w0 + mma_row(mt, l / 4);
                    ++bank[word % 32];
                    ++bank[(word + 1) % 32];
                }
                for (int b = 0; b < 32; ++b) EXPECT(bank[b] == 1, "A loads, pitch %d: bank %d x%d", pitch, b, bank[b]);
            }
    }
}

// The most lanes of a store phase of gemm_epilogue's staging that share a bank, at row pitch `pitch`
// (1 = conflict-free). TF32 (lc = 0): 8-byte stores by half warps, lane g = l/4, t = l%4 at row
// mma_row(mt, g + 8*hi) of the staged half, columns 8*nt + 2t. fp32: 16-byte stores by quarter warps,
// lc lanes per row, lane (l / lc, l % lc) at staged row 4*(l / lc) + i, columns 4*(l % lc) + b*WN/2.
static int epilogue_conflicts(int WM, int lc, int pitch) {
    int worst = 0;
    auto count = [&](std::vector<int>& bank, int word, int words) {
        for (int w = word; w < word + words; ++w) worst = std::max(worst, ++bank[w % 32]);
    };
    if (lc == 0) {
        for (int mt = 0; mt < WM / 16; ++mt)
            for (int hi = 0; hi < 2; ++hi)
                for (int nt = 0; nt < 4; ++nt)
                    for (int half = 0; half < 2; ++half) {
                        std::vector<int> bank(32, 0);
                        for (int l = 16 * half; l < 16 * half + 16; ++l)
                            count(bank, (mma_row(mt, l / 4 + 8 * hi) % (WM / 2)) * pitch + 8 * nt + 2 * (l % 4), 2);
                    }
        return worst;
    }
    for (int i = 0; i < 4; ++i)
        for (int q = 0; q < 4; ++q) {
            std::vector<int> bank(32, 0);
            for (int l = 8 * q; l < 8 * q + 8; ++l) count(bank, (4 * (l / lc) + i) * pitch + 4 * (l % lc), 4);
        }
    return worst;
}

int main(int argc, char** argv) {
    // N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G
    const Conv convs[] = {
        {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1},  {2, 4, 9, 8, 6, 3, 2, 2, 1, 1, 0, 1, 2, 2},
        {1, 6, 11, 10, 6, 3, 3, 2, 2, 2, 2, 2, 2, 6}, {3, 2, 5, 5, 4, 1, 1, 3, 3, 0, 0, 1, 1, 1},
        {2, 1, 12, 12, 8, 5, 5, 1, 1, 2, 2, 1, 1, 1}, {2, 4, 8, 8, 8, 4, 4, 2, 2, 1, 1, 1, 1, 1},
        {1, 5, 7, 7, 4, 3, 3, 3, 3, 1, 1, 2, 2, 1},   {1, 6, 5, 5, 6, 2, 2, 3, 3, 0, 0, 1, 1, 1},
        {1, 2, 9, 10, 3, 4, 5, 4, 3, 3, 2, 2, 3, 1},  {2, 2, 1, 1, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1},
        {1, 1, 16, 17, 2, 15, 15, 1, 1, 7, 6, 1, 1, 1},  // GATHER_MASK_TAPS taps: every bit of the masks
        // channels per group multiples of 4 (the vec backward-weight's channels-last x loader): groups,
        // mixed stride and dilation, stride 3 at dilation 2, GATHER_MASK_TAPS taps
        {2, 8, 9, 8, 8, 3, 2, 2, 1, 1, 0, 1, 2, 2},   {1, 12, 7, 7, 8, 3, 3, 3, 3, 1, 1, 2, 2, 1},
        {1, 4, 16, 17, 4, 15, 15, 1, 1, 7, 6, 1, 1, 1},  {2, 16, 9, 9, 8, 3, 3, 2, 2, 1, 1, 2, 2, 2},
    };
    // the vec backward-weight's x loader: row_quad_cell covers each 16-byte cell of a BK x BN stage
    // once, a quarter warp 8 consecutive cells of one k row, and row_quad_off is cell v's offset
    for (int NT = 64; NT <= 256; NT *= 2)
        for (int BK = 8; BK <= 32; BK *= 2)
            for (int BN = 64; BN <= 128; BN *= 2) {
                if (BK * BN < 4 * NT) continue;
                const int bs = BN + 8;
                std::vector<int> seen(BK * BN / 4, 0);
                for (int tid = 0; tid < NT; ++tid) {
                    int kk0, nq0;
                    row_quad_cell(tid, 0, NT, BK, kk0, nq0);
                    for (int v = 0; v < BK * BN / (4 * NT); ++v) {
                        int kk, nq, qk, qn;
                        row_quad_cell(tid, v, NT, BK, kk, nq);
                        row_quad_cell(tid & ~7, v, NT, BK, qk, qn);
                        EXPECT(kk < BK && nq < BN / 4, "row_quad_cell NT %d BK %d BN %d: (%d, %d)", NT, BK, BN, kk, nq);
                        EXPECT(qk == kk && nq == qn + (tid & 7), "row_quad_cell: quarter warp not one row piece");
                        EXPECT(kk * bs + 4 * nq == kk0 * bs + 4 * nq0 + row_quad_off(v, NT, BK, bs),
                               "row_quad_off NT %d BK %d BN %d cell %d", NT, BK, BN, v);
                        ++seen[kk * (BN / 4) + nq];
                    }
                }
                for (int e = 0; e < BK * BN / 4; ++e) EXPECT(seen[e] == 1, "row_quad_cell: cell %d taken %d times", e, seen[e]);
            }
    // TapIter against division for many steps and shapes
    for (int ni = 1; ni < 6; ++ni)
        for (int nj = 1; nj < 6; ++nj)
            for (int step = 1; step < 40; step += 3)
                for (int k0 = 0; k0 < 9; ++k0) {
                    TapIter it;
                    it.init(k0, step, ni, nj);
                    for (int n = 0; n < 30; ++n, it.next()) {
                        const int kk = k0 + n * step;
                        EXPECT(it.kk == kk && it.a == kk / (ni * nj) && it.i == kk / nj % ni && it.j == kk % nj,
                               "TapIter ni %d nj %d step %d at %d", ni, nj, step, kk);
                    }
                }
    for (int wm = 32; wm <= 64; wm += 32)
        for (int pitch = 64 + 8; pitch <= 128 + 8; pitch += 64) check_mma_layout(wm, pitch);
    check_mma_layout(32, 32 + 8);  // t32x128
    for (int bn = 32; bn <= 128; bn *= 2) {
        for (int wm = 32; wm <= 64; wm += 32) {  // TF32 warp tiles
            EXPECT(epilogue_conflicts(wm, 0, epi_pitch(bn)) == 1, "TF32 epilogue stores, BN %d: %d-way conflicts", bn,
                   epilogue_conflicts(wm, 0, epi_pitch(bn)));
            EXPECT(epilogue_conflicts(wm, 0, bn + 8) == 2, "the check sees the BN + 8 pitch's TF32 conflicts");
        }
        for (int lc = 4; lc <= 16; lc *= 2)  // fp32 lanes per row (t64x32: 4)
            EXPECT(epilogue_conflicts(8 * (32 / lc), lc, epi_pitch(bn)) == 1, "fp32 epilogue stores, BN %d, %d lanes a row",
                   bn, lc);
        EXPECT(epilogue_conflicts(64, 4, bn + 8) == 2, "the check sees the BN + 8 pitch's fp32 conflicts at 4 lanes a row");
    }
    for (int t = 1; t + 2 < argc; t += 3) {
        const int BN = std::atoi(argv[t]), BK = std::atoi(argv[t + 1]), NT = std::atoi(argv[t + 2]);
        for (const Conv& c : convs) {
            check_forward(c, BN, BK, NT);
            check_backward_data(c, BN, BK, NT);
            check_backward_weight(c, BN, BK, NT);
        }
    }
    std::printf("ok %ld\n", checks);
    return 0;
}
