// conv_gemm.cuh - the fp32 implicit-GEMM core of kernels/conv.cu (forward, backward-data phases,
// backward-weight): tile shapes, the multistage cp.async main loop, the operand loaders and the
// shared-memory-staged epilogue. Needs common.cuh (cp.async wrappers) and conv_index.cuh first.
//
// Block tile BM x BN of C = A (BM x Kred) * B (Kred x BN), BK reduction rows per stage.
// Warps: WR x WC, each a WM x WN warp tile; lanes LR x LC in a warp; every thread holds 8 x 8
// outputs as 2 x 2 quads of 4 x 4, half a warp tile apart, so each k row costs the thread two
// float4 shared loads of A and two of B for 64 FFMA, and a warp's loads hit distinct banks
// (A: LR distinct float4 broadcast over LC lanes; B: LC distinct float4 = one 128-byte row).
// Shared operand tiles are k-major: As[BK][BM + 8], Bs[BK][BN + 8] (the +8 floats keep rows
// 16-byte aligned and put row t, column g of a TF32 fragment load on bank 8t + g).
// TF32 (TF32 = true, BK = 8 tiles): the same warp tile as m16n8k8 mma.sync: 2 x 8 tiles of 16 x 8
// per warp, lane (g = lane/4, t = lane%4) holding per tile rows g, g+8 and columns 2t, 2t+1;
// operands rounded with cvt.rna.tf32 as they leave shared memory.
#pragma once

#define CONV_PAD 8  // floats; 8 keeps the TF32 fragment loads (rows t, columns g) on distinct banks

template <int BM_, int BN_, int BK_, int WR_, int WC_, int LR_, int STAGES_, int MINB_>
struct ConvTile {
    static constexpr int BM = BM_, BN = BN_, BK = BK_, WR = WR_, WC = WC_, LR = LR_, LC = 32 / LR_;
    static constexpr int STAGES = STAGES_, MINB = MINB_;
    static constexpr int NT = WR * WC * 32;
    static constexpr int WM = BM / WR, WN = BN / WC;
    static constexpr int AS = BM + CONV_PAD, BS = BN + CONV_PAD;
    static constexpr int STAGE = BK * (AS + BS);                 // floats per pipeline stage
    static constexpr int EPI = (BM / 2) * (BN + CONV_PAD);       // floats of one staged half of C
    static constexpr int SMEM = STAGES * STAGE > EPI ? STAGES * STAGE : EPI;
    static_assert(WM == 8 * LR && WN == 8 * LC, "a thread holds 8x8 outputs: WM = 8*LR, WN = 8*LC");
    static_assert(NT % BK == 0 && BN % (NT / BK) == 0, "gather loader: NT/BK threads per k row must tile BN");
    static_assert(BN % 4 == 0 && NT % (BN / 4) == 0, "epilogue: a pass of NT threads covers whole float4 rows");
    static_assert(STAGES >= 3, "the pipeline keeps >= 2 stages in flight");
};

// Thread position in the block tile: first row/column of its quads.
template <class T>
struct ThreadPos {
    int row0, col0;  // quad (a, b) element (i, j) is C[row0 + a*WM/2 + i][col0 + b*WN/2 + j]
    __device__ __forceinline__ ThreadPos() {
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        const int wr = warp / T::WC, wc = warp - wr * T::WC;   // constants: shifts
        const int lr = lane / T::LC, lc = lane - lr * T::LC;
        row0 = wr * T::WM + lr * 4;
        col0 = wc * T::WN + lc * 4;
    }
};

// A operand from packed weights Ap[kk][Mp] (Mp = rows padded to a multiple of 4, pad zeroed by
// the pack kernel): 16-byte cp.async of 4 consecutive rows m at one kk.
template <class T>
struct PackedA {
    static constexpr int VECS = T::BK * T::BM / 4, V = (VECS + T::NT - 1) / T::NT, RV = T::BM / 4;
    const float* ap;
    int Mp, kend, kbase;
    int off[V], row[V];
    bool live[V];
    __device__ __forceinline__ PackedA(const float* ap_, int Mp_, int m0, int kbeg, int kend_) {
        ap = ap_; Mp = Mp_; kend = kend_; kbase = kbeg;
#pragma unroll
        for (int v = 0; v < V; ++v) {
            const int idx = threadIdx.x + v * T::NT;
            row[v] = idx / RV;
            const int m = m0 + (idx - row[v] * RV) * 4;
            live[v] = idx < VECS && m < Mp;
            off[v] = (kbeg + row[v]) * Mp + m;
        }
    }
    __device__ __forceinline__ void issue(float* As) {
#pragma unroll
        for (int v = 0; v < V; ++v) {
            const int idx = threadIdx.x + v * T::NT;
            if (idx < VECS) {
                const bool ok = live[v] && kbase + row[v] < kend;
                cp_async_cg16(As + row[v] * T::AS + (idx - row[v] * RV) * 4, ok ? ap + off[v] : ap, ok ? 16 : 0);
            }
        }
    }
    __device__ __forceinline__ void next() {
        kbase += T::BK;
#pragma unroll
        for (int v = 0; v < V; ++v) off[v] += T::BK * Mp;
    }
};

// B operand gathered from T[img][a][Th][Tw] (Gather in conv_index.cuh): thread kk_off = tid / TPR
// loads row kk_off of each stage at columns n_off + j*TPR; per column the offset and first
// row/column are decoded once (gather_col), per k step only the iterator advances.
template <class T>
struct GatherB {
    static constexpr int TPR = T::NT / T::BK, L = T::BN / TPR;
    const float* src;
    Gather g;
    int kend;
    TapIter it;
    GatherCol col[L];
    __device__ __forceinline__ GatherB(const float* t, const Gather& g_, int n0, int ncols, int kbeg, int kend_) {
        src = t; g = g_; kend = kend_;
        const int kk_off = threadIdx.x / TPR, n_off = threadIdx.x - kk_off * TPR;
        it.init(kbeg + kk_off, T::BK, g.ni, g.nj);
#pragma unroll
        for (int j = 0; j < L; ++j) col[j] = gather_col(g, n0 + n_off + j * TPR, ncols);
    }
    __device__ __forceinline__ void issue(float* Bs) {
        const int kk_off = threadIdx.x / TPR, n_off = threadIdx.x - kk_off * TPR;
        float* dst = Bs + kk_off * T::BS + n_off;
        const bool kok = it.kk < kend;
#pragma unroll
        for (int j = 0; j < L; ++j) {
            bool ok;
            const int a = gather_addr(g, col[j], it, ok);
            ok = ok && kok;
            cp_async_ca4(dst + j * TPR, ok ? src + a : src, ok ? 4 : 0);
        }
    }
    __device__ __forceinline__ void next() { it.next(); }
};

// backward-weight A: A[m][kk=(img,pq)] = dy[img][k0g + m][pq]; kk fastest over threads.
template <class T>
struct WgradA {
    static constexpr int STEP = T::NT / T::BK, L = T::BM / STEP;
    static_assert(T::NT % T::BK == 0 && T::BM % STEP == 0, "WgradA: NT/BK must divide BM");
    const float* dy;
    int KPQ, kend;
    TapIter it;   // (img, 0, pq)
    int roff[L];
    __device__ __forceinline__ WgradA(const float* dy_, int K, int PQ, int k0g, int Mg, int m0, int kbeg, int kend_) {
        dy = dy_; KPQ = K * PQ; kend = kend_;
        const int kk_off = threadIdx.x % T::BK, m_off = threadIdx.x / T::BK;
        it.init(kbeg + kk_off, T::BK, 1, PQ);
#pragma unroll
        for (int j = 0; j < L; ++j) {
            const int m = m0 + m_off + j * STEP;
            roff[j] = m < Mg ? (k0g + m) * PQ : -1;
        }
    }
    __device__ __forceinline__ void issue(float* As) {
        const int kk_off = threadIdx.x % T::BK, m_off = threadIdx.x / T::BK;
        const bool kok = it.kk < kend;
        const int koff = it.a * KPQ + it.j;
#pragma unroll
        for (int j = 0; j < L; ++j) {
            const bool ok = kok && roff[j] >= 0;
            cp_async_ca4(As + kk_off * T::AS + m_off + j * STEP, ok ? dy + (roff[j] + koff) : dy, ok ? 4 : 0);
        }
    }
    __device__ __forceinline__ void next() { it.next(); }
};

// backward-weight B: B[kk=(img,p,q)][n=(c,r,s)] (wgrad_col / wgrad_addr in conv_index.cuh);
// kk fastest over threads, so consecutive threads read consecutive q.
template <class T>
struct WgradB {
    static constexpr int STEP = T::NT / T::BK, L = T::BN / STEP;
    static_assert(T::NT % T::BK == 0 && T::BN % STEP == 0, "WgradB: NT/BK must divide BN");
    const float* x;
    WgradGeom g;
    int kend;
    TapIter it;   // (img, p, q)
    WgradCol col[L];
    __device__ __forceinline__ WgradB(const float* x_, const WgradGeom& g_, int P, int Q, int crs, int n0, int kbeg,
                                      int kend_) {
        x = x_; g = g_; kend = kend_;
        const int kk_off = threadIdx.x % T::BK, n_off = threadIdx.x / T::BK;
        it.init(kbeg + kk_off, T::BK, P, Q);
#pragma unroll
        for (int j = 0; j < L; ++j) col[j] = wgrad_col(g, n0 + n_off + j * STEP, crs);
    }
    __device__ __forceinline__ void issue(float* Bs) {
        const int kk_off = threadIdx.x % T::BK, n_off = threadIdx.x / T::BK;
        const bool kok = it.kk < kend;
#pragma unroll
        for (int j = 0; j < L; ++j) {
            bool ok;
            const int a = wgrad_addr(g, col[j], it, ok);
            ok = ok && kok;
            cp_async_ca4(Bs + kk_off * T::BS + n_off + j * STEP, ok ? x + a : x, ok ? 4 : 0);
        }
    }
    __device__ __forceinline__ void next() { it.next(); }
};

// One stage of FFMA: per k row, two float4 of A and two of B from shared memory, 64 FFMA.
template <class T>
__device__ __forceinline__ void ffma_step(const float* As, const float* Bs, const ThreadPos<T>& tp,
                                          float (&acc)[8][8]) {
#pragma unroll
    for (int kk = 0; kk < T::BK; ++kk) {
        float a[8], b[8];
        const float4 a0 = *reinterpret_cast<const float4*>(As + kk * T::AS + tp.row0);
        const float4 a1 = *reinterpret_cast<const float4*>(As + kk * T::AS + tp.row0 + T::WM / 2);
        const float4 b0 = *reinterpret_cast<const float4*>(Bs + kk * T::BS + tp.col0);
        const float4 b1 = *reinterpret_cast<const float4*>(Bs + kk * T::BS + tp.col0 + T::WN / 2);
        a[0] = a0.x; a[1] = a0.y; a[2] = a0.z; a[3] = a0.w; a[4] = a1.x; a[5] = a1.y; a[6] = a1.z; a[7] = a1.w;
        b[0] = b0.x; b[1] = b0.y; b[2] = b0.z; b[3] = b0.w; b[4] = b1.x; b[5] = b1.y; b[6] = b1.z; b[7] = b1.w;
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
}

// Warp origin and (g, t) lane coordinates of the TF32 layout.
template <class T>
struct MmaPos {
    int wm, wn, g, t;
    __device__ __forceinline__ MmaPos() {
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        const int wr = warp / T::WC, wc = warp - wr * T::WC;
        wm = wr * T::WM; wn = wc * T::WN; g = lane >> 2; t = lane & 3;
    }
};

// One stage (k = 8) of TF32 mma.sync m16n8k8: acc[mt*4 + c][nt] is register c of the 16 x 8 tile
// (mt, nt) of the warp (WM/16 = 2 row tiles, WN/8 = 8 column tiles).
template <class T>
__device__ __forceinline__ void mma_step(const float* As, const float* Bs, float (&acc)[8][8]) {
    static_assert(T::WM == 32 && T::WN == 64, "TF32 warp tile: 2 x 8 mma tiles");
    const MmaPos<T> mp;
    unsigned a[2][4], b[8][2];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
        const float* p = As + mp.t * T::AS + mp.wm + mt * 16 + mp.g;
        a[mt][0] = cvt_tf32(p[0]);
        a[mt][1] = cvt_tf32(p[8]);
        a[mt][2] = cvt_tf32(p[4 * T::AS]);
        a[mt][3] = cvt_tf32(p[4 * T::AS + 8]);
    }
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
        const float* p = Bs + mp.t * T::BS + mp.wn + nt * 8 + mp.g;
        b[nt][0] = cvt_tf32(p[0]);
        b[nt][1] = cvt_tf32(p[4 * T::BS]);
    }
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            float c[4] = {acc[mt * 4][nt], acc[mt * 4 + 1][nt], acc[mt * 4 + 2][nt], acc[mt * 4 + 3][nt]};
            float d[4];
            mma_tf32_m16n8k8(d, a[mt], b[nt], c);
            acc[mt * 4][nt] = d[0]; acc[mt * 4 + 1][nt] = d[1]; acc[mt * 4 + 2][nt] = d[2]; acc[mt * 4 + 3][nt] = d[3];
        }
}

// acc = A[.., kbeg:kend] * B[kbeg:kend, ..] for the thread's 8x8 outputs. STAGES-1 k tiles are
// in flight while one is multiplied; stage indices are running counters (no modulo).
template <class T, bool TF32, class LA, class LB>
__device__ __forceinline__ void gemm_mainloop(float* smem, LA& la, LB& lb, int ktiles, float (&acc)[8][8]) {
    const ThreadPos<T> tp;
    static_assert(!TF32 || T::BK == 8, "TF32 tiles step k by the mma's 8");
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
#pragma unroll
    for (int s = 0; s < T::STAGES - 1; ++s) {
        if (s < ktiles) {
            la.issue(smem + s * T::STAGE);
            lb.issue(smem + s * T::STAGE + T::BK * T::AS);
            la.next();
            lb.next();
        }
        cp_async_commit_group();
    }
    int rs = 0, ws = T::STAGES - 1;
    for (int t = 0; t < ktiles; ++t) {
        cp_async_wait_group<T::STAGES - 2>();
        __syncthreads();  // stage rs is complete for all threads; stage ws was read at t-1 by all
        if (t + T::STAGES - 1 < ktiles) {
            la.issue(smem + ws * T::STAGE);
            lb.issue(smem + ws * T::STAGE + T::BK * T::AS);
            la.next();
            lb.next();
        }
        cp_async_commit_group();
        const float* As = smem + rs * T::STAGE;
        const float* Bs = As + T::BK * T::AS;
        if constexpr (TF32)
            mma_step<T>(As, Bs, acc);
        else
            ffma_step<T>(As, Bs, tp, acc);
        rs = rs == T::STAGES - 1 ? 0 : rs + 1;
        ws = ws == T::STAGES - 1 ? 0 : ws + 1;
    }
    cp_async_wait_all();
    __syncthreads();  // the epilogue reuses the pipeline's shared memory
}

// act: 0 none, 1 ReLU, 2 LeakyReLU(slope), 3 tanh
__device__ __forceinline__ float conv_act(float v, int act, float slope) {
    if (act == 1) return v > 0.f ? v : 0.f;
    if (act == 2) return v > 0.f ? v : v * slope;
    if (act == 3) return tanhf(v);
    return v;
}

// Writes the block's C tile: out[row_off(m) + col_off(n)] = act(C[m][n] + bias[m]) with
// row_off(m) = (mg0 + m) * rstride. The tile goes through shared memory in two halves (quad rows
// a = 0, 1), then each thread stores 4 consecutive columns: one float4 when its 4 column offsets
// are consecutive and 16-byte aligned (checked once per thread; out_aligned: out is 16-byte
// aligned), else 4 scalars. Columns whose
// col_off is < 0 and rows m >= Mg are skipped. col_of(n, j) fills the 4 offsets of columns n..n+3.
template <class T, bool TF32, class ColOff>
__device__ __forceinline__ void gemm_epilogue(float* smem, const float (&acc)[8][8], const ColOff& col_of, int m0,
                                              int n0, int Mg, int mg0, int rstride, float* out, bool out_aligned,
                                              const float* bias, int has_bias, int act, float slope) {
    const ThreadPos<T> tp;
    constexpr int ES = T::BN + CONV_PAD, CPR = T::BN / 4, RPP = T::NT / CPR;
    const int cg = threadIdx.x % CPR, rr = threadIdx.x / CPR;
    int co[4];
    col_of(n0 + cg * 4, co);
    const bool vec = co[0] >= 0 && co[1] == co[0] + 1 && co[2] == co[0] + 2 && co[3] == co[0] + 3 &&
                     (co[0] & 3) == 0 && (rstride & 3) == 0 && out_aligned;
    const int wr_row = (tp.row0 / T::WM) * (T::WM / 2) + (tp.row0 % T::WM);  // staged row of quad row a
#pragma unroll
    for (int a = 0; a < 2; ++a) {
        if constexpr (TF32) {  // half a = mma row tile a: rows g and g + 8, columns 2t, 2t + 1
            const MmaPos<T> mp;
            const int srow = (mp.wm / T::WM) * (T::WM / 2) + mp.g;
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    float2 v;
                    v.x = acc[a * 4 + 2 * h][nt]; v.y = acc[a * 4 + 2 * h + 1][nt];
                    *reinterpret_cast<float2*>(smem + (srow + 8 * h) * ES + mp.wn + nt * 8 + 2 * mp.t) = v;
                }
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int b = 0; b < 2; ++b) {
                    float4 v;
                    v.x = acc[a * 4 + i][b * 4]; v.y = acc[a * 4 + i][b * 4 + 1];
                    v.z = acc[a * 4 + i][b * 4 + 2]; v.w = acc[a * 4 + i][b * 4 + 3];
                    *reinterpret_cast<float4*>(smem + (wr_row + i) * ES + tp.col0 + b * (T::WN / 2)) = v;
                }
        }
        __syncthreads();
        for (int sr = rr; sr < T::BM / 2; sr += RPP) {
            const int ml = (sr / (T::WM / 2)) * T::WM + a * (T::WM / 2) + sr % (T::WM / 2);
            const int m = m0 + ml;
            if (m >= Mg) continue;
            const float bv = has_bias ? bias[mg0 + m] : 0.f;
            const float4 v = *reinterpret_cast<const float4*>(smem + sr * ES + cg * 4);
            float o[4] = {conv_act(v.x + bv, act, slope), conv_act(v.y + bv, act, slope),
                          conv_act(v.z + bv, act, slope), conv_act(v.w + bv, act, slope)};
            float* row = out + (mg0 + m) * (long long)rstride;
            if (vec) {
                float4 w4; w4.x = o[0]; w4.y = o[1]; w4.z = o[2]; w4.w = o[3];
                *reinterpret_cast<float4*>(row + co[0]) = w4;
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (co[j] >= 0) row[co[j]] = o[j];
            }
        }
        __syncthreads();
    }
}
