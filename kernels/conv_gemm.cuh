// conv_gemm.cuh - the implicit-GEMM core of kernels/conv.cu (forward, backward-data phases,
// backward-weight): tile shapes, the product of a stage (FFMA or mma.sync) and the multistage cp.async
// main loop (the operand loaders: conv_loaders.cuh; the shared-memory-staged epilogue:
// conv_epilogue.cuh). Needs common.cuh (cp.async wrappers) and conv_index.cuh first.
//
// Block tile BM x BN of C = A (BM x Kred) * B (Kred x BN), BK reduction rows per stage, WR x WC
// warps each owning a WM x WN warp tile. Shared operand tiles are k-major: As[BK][BM + 8],
// Bs[BK][BN + 8] (the +8 floats keep rows 16-byte aligned and put k row t of a TF32 fragment load
// on banks 8t + 0..7, so the four k rows of a quarter or half warp's loads never share a bank);
// a TF32 tile's gathered operands are k-quad-major instead, [BK/4][BM or BN][4] in the same space
// (aq_off, b_off): 16-byte rows of 4 k per column, as ldmatrix reads fragments; its packed A (weights,
// or the vec backward-weight's dy copy) and the vec backward-weight's x stay k-major (PackedA,
// GatherRowQuad). TF32 weights in k quads (one ldmatrix per A tile) ran resnet.c4's forward t128x64
// GEMM at half the speed of these k-major ones on an H200 (143 against 77 us, same grid and occupancy,
// twice the L2 traffic), so the packs keep k-major rows.
// fp32 (ConvTile): lanes LR x LC in a warp; every thread holds 8 x 8 outputs as 2 x 2 quads of
// 4 x 4, half a warp tile apart, so each k row costs the thread two float4 shared loads of A and
// two of B for 64 FFMA, and a warp's loads hit distinct banks (A: LR distinct float4 broadcast
// over LC lanes; B: LC distinct float4 = one 128-byte row).
// TF32 (MmaTile): the warp tile is WM/16 x WN/8 m16n8k8 mma.sync tiles (up to 4 x 8), every A
// fragment reused across the warp tile's WN/8 column tiles and every B fragment across its WM/16
// row tiles. Fragments come by ldmatrix from the k-quad-major tiles (from k-major ones by 64-bit and
// 32-bit shared loads), an mma tile's rows g and g + 8 being warp rows 2g and 2g + 1 (mma_row in
// conv_index.cuh, the epilogue's order; a k-quad A tile keeps its rows at mma_slot); packed weights
// and channels-last copies hold tf32 values already, any other element is rounded in the mma's
// registers once by cvt.rna.tf32 (per warp that reads it).
#pragma once

#define CONV_PAD 8  // floats; row pitch = 8 words mod 32: conflict-free fragment loads of both products

// What both products share: the block tile, warps, pipeline depth and shared memory (pipeline
// stages, reused by the epilogue for half of C at a time).
template <int BM_, int BN_, int BK_, int WR_, int WC_, int STAGES_, int MINB_>
struct TileGeom {
    static constexpr int BM = BM_, BN = BN_, BK = BK_, WR = WR_, WC = WC_;
    static constexpr int STAGES = STAGES_, MINB = MINB_;
    static constexpr int NT = WR * WC * 32;
    static constexpr int WM = BM / WR, WN = BN / WC;
    static constexpr int AS = BM + CONV_PAD, BS = BN + CONV_PAD;
    static constexpr int STAGE = BK * (AS + BS);                 // floats per pipeline stage
    static constexpr int EPI = (BM / 2) * epi_pitch(BN);         // floats of one staged half of C
    static constexpr int SMEM = STAGES * STAGE > EPI ? STAGES * STAGE : EPI;
    static_assert(BN % 4 == 0 && NT % (BN / 4) == 0, "epilogue: a pass of NT threads covers whole float4 rows");
    static_assert(STAGES >= 3, "the pipeline keeps >= 2 stages in flight");
    static_assert(SMEM * 4 <= 48 * 1024, "static shared memory: at most 48 KiB");
    // shared offset of A element (kk, m) (packed: a_off; gathered: ag_off, the same k-major layout
    // here, MmaTile's own) and of B element (kk, n)
    __host__ __device__ static constexpr int a_off(int kk, int m) { return kk * AS + m; }
    __host__ __device__ static constexpr int ag_off(int kk, int m) { return a_off(kk, m); }
    __host__ __device__ static constexpr int b_off(int kk, int n) { return kk * BS + n; }
    typedef Gather GatherGeo;  // the geometry of forward and backward-data B (GatherB)
};

// fp32 (FFMA) tile: LR lane rows per warp, 8 x 8 outputs per thread.
template <int BM_, int BN_, int BK_, int WR_, int WC_, int LR_, int STAGES_, int MINB_>
struct ConvTile : TileGeom<BM_, BN_, BK_, WR_, WC_, STAGES_, MINB_> {
    typedef TileGeom<BM_, BN_, BK_, WR_, WC_, STAGES_, MINB_> G;
    static constexpr bool TF32 = false;
    static constexpr int LR = LR_, LC = 32 / LR_;
    typedef float Acc[8][8];
    static_assert(G::WM == 8 * LR && G::WN == 8 * LC, "a thread holds 8x8 outputs: WM = 8*LR, WN = 8*LC");
};

// TF32 tile: MT x NT8 m16n8k8 tiles per warp; acc[mt][nt][c] is register c of tile (mt, nt).
template <int BM_, int BN_, int BK_, int WR_, int WC_, int STAGES_, int MINB_>
struct MmaTile : TileGeom<BM_, BN_, BK_, WR_, WC_, STAGES_, MINB_> {
    typedef TileGeom<BM_, BN_, BK_, WR_, WC_, STAGES_, MINB_> G;
    static constexpr bool TF32 = true;
    static constexpr int MT = G::WM / 16, NT8 = G::WN / 8;
    typedef float Acc[MT][NT8][4];
    // B as [BK/4][BN][4] (planes of 4*BS floats: BK*BS in all, as the k-major tile), a gathered A
    // as [BK/4][BM][4] with rows at mma_slot: ldmatrix rows
    __host__ __device__ static constexpr int b_off(int kk, int n) { return (kk >> 2) * 4 * G::BS + 4 * n + (kk & 3); }
    __host__ __device__ static constexpr int aq_off(int kk, int slot) {
        return (kk >> 2) * 4 * G::AS + 4 * slot + (kk & 3);
    }
    __host__ __device__ static constexpr int ag_off(int kk, int m) { return aq_off(kk, mma_slot(m)); }
    typedef GatherMasked GatherGeo;  // B's bounds as per-column bitmasks: one test per element
    static_assert(G::WM % 32 == 0 && G::WN % 8 == 0, "whole mma tiles; each epilogue half of a warp tile too");
    static_assert(G::BK % 8 == 0 && G::WN % 16 == 0, "mma.sync m16n8k8 steps k by 8; B tiles in ldmatrix.x4 pairs");
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

// TF32 mma.sync m16n8k8 on a stage, BK/8 k steps (gemm_mainloop), fragments loaded straight into
// the mma's registers by ldmatrix (rounded there by cvt.rna.tf32 unless already tf32 values), so no
// register moves feed the mma. A (k-quad rows, warp rows at mma_slot): one ldmatrix.x4 per tile, lane
// 8j + r addressing slot 16*mt + 8*(j%2) + r of k quad j/2: a0..a3 in order; A k-major (A_KMAJOR:
// PackedA's tile): per tile the float2 at warp row 16*mt + 2g (rows g, g + 8: mma_row) of k rows t
// and t + 4 as a0, a1 and a2, a3 (a half warp's 64-bit loads on banks 8t + 2g, + 1: all 32); rounded
// unless A_ROUNDED (tf32 already). B: one ldmatrix.x4 per two tiles nt, nt + 1, lane 8j + r addressing
// column 8*(nt + j/2) + r of k quad j%2: b0, b1 of both tiles in consecutive registers; B k-major
// (B_KMAJOR: GatherRowQuad's tile): lane (g, t) loads column 8*nt + g of k rows t and t + 4 (banks
// 8t + g: rows BS = 8 mod 32 apart); rounded unless B_ROUNDED (GatherRowQuad: tf32 values already).
template <class T, bool A_ROUNDED, bool A_KMAJOR, bool B_ROUNDED, bool B_KMAJOR>
struct MmaStep {
    const float* ap;  // the lane's fragment addresses in a stage, A's
    const float* bp;  // and B's
    __device__ __forceinline__ MmaStep(const float* As, const float* Bs) {
        const MmaPos<T> mp;
        const int lane = threadIdx.x & 31, j = lane >> 3, r = lane & 7;
        ap = A_KMAJOR ? As + mp.t * T::AS + mp.wm + 2 * mp.g : As + T::aq_off(4 * (j >> 1), mp.wm + 8 * (j & 1) + r);
        bp = B_KMAJOR ? Bs + mp.t * T::BS + mp.wn + mp.g : Bs + T::b_off(4 * (j & 1), mp.wn + 8 * (j >> 1) + r);
    }
    // the fragments of k step k8 (0, 8, .. BK - 8) of the stage
    __device__ __forceinline__ void load(int k8, unsigned (&a)[T::MT][4], unsigned (&b)[T::NT8][2]) const {
#pragma unroll
        for (int mt = 0; mt < T::MT; ++mt) {
            if (A_KMAJOR) {
#pragma unroll
                for (int kh = 0; kh < 2; ++kh) {
                    const float2 v = *reinterpret_cast<const float2*>(ap + (k8 + 4 * kh) * T::AS + 16 * mt);
                    a[mt][2 * kh] = __float_as_uint(v.x);
                    a[mt][2 * kh + 1] = __float_as_uint(v.y);
                }
            } else {
                ldmatrix_x4(a[mt], ap + T::aq_off(k8, 16 * mt));
            }
            if (!A_ROUNDED) {
#pragma unroll
                for (int e = 0; e < 4; ++e) a[mt][e] = cvt_tf32(__uint_as_float(a[mt][e]));
            }
        }
#pragma unroll
        for (int nt = 0; nt < T::NT8; nt += 2) {
            if (B_KMAJOR) {
#pragma unroll
                for (int e = 0; e < 4; ++e) b[nt + e / 2][e % 2] = __float_as_uint(bp[(k8 + 4 * (e % 2)) * T::BS + 8 * (nt + e / 2)]);
            } else {
                ldmatrix_x4(&b[nt][0], bp + T::b_off(k8, 8 * nt));
            }
            if (!B_ROUNDED) {
#pragma unroll
                for (int e = 0; e < 4; ++e) b[nt + e / 2][e % 2] = cvt_tf32(__uint_as_float(b[nt + e / 2][e % 2]));
            }
        }
    }
};

template <class T>
__device__ __forceinline__ void mma_tiles(const unsigned (&a)[T::MT][4], const unsigned (&b)[T::NT8][2],
                                          typename T::Acc& acc) {
#pragma unroll
    for (int mt = 0; mt < T::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < T::NT8; ++nt) mma_tf32_m16n8k8(acc[mt][nt], a[mt], b[nt], acc[mt][nt]);
}

template <int A, int B>
__device__ __forceinline__ void acc_zero(float (&acc)[A][B]) {
#pragma unroll
    for (int i = 0; i < A; ++i)
#pragma unroll
        for (int j = 0; j < B; ++j) acc[i][j] = 0.f;
}
template <int A, int B, int C>
__device__ __forceinline__ void acc_zero(float (&acc)[A][B][C]) {
#pragma unroll
    for (int i = 0; i < A; ++i) acc_zero(acc[i]);
}

// acc = A[.., kbeg:kend] * B[kbeg:kend, ..] for the thread's outputs. STAGES-1 k tiles are in
// flight while one is multiplied; stage indices are running counters (no modulo). Each step issues
// the next stage's copies, then multiplies stage rs.
template <class T, class LA, class LB>
__device__ __forceinline__ void issue_stage(float* S, LA& la, LB& lb, bool more) {
    if (more) {
        la.issue(S);
        lb.issue(S + T::BK * T::AS);
        la.next();
        lb.next();
    }
    cp_async_commit_group();
}

template <class T, class LA, class LB>
__device__ __forceinline__ void gemm_mainloop(float* smem, LA& la, LB& lb, int ktiles, typename T::Acc& acc) {
    using Step = MmaStep<T, LA::ROUNDED, LA::KMAJOR, LB::ROUNDED, LB::KMAJOR>;  // TF32 tiles
    acc_zero(acc);
#pragma unroll
    for (int s = 0; s < T::STAGES - 1; ++s) issue_stage<T>(smem + s * T::STAGE, la, lb, s < ktiles);
    int rs = 0, ws = T::STAGES - 1;
    for (int t = 0; t < ktiles; ++t) {
        cp_async_wait_group<T::STAGES - 2>();
        __syncthreads();  // stage rs is complete for all threads; stage ws was read at t-1 by all
        issue_stage<T>(smem + ws * T::STAGE, la, lb, t + T::STAGES - 1 < ktiles);
        const float* As = smem + rs * T::STAGE;
        const float* Bs = As + T::BK * T::AS;
        if constexpr (T::TF32) {
            const Step ms(As, Bs);
#pragma unroll
            for (int k8 = 0; k8 < T::BK; k8 += 8) {
                unsigned a[T::MT][4], b[T::NT8][2];
                ms.load(k8, a, b);
                mma_tiles<T>(a, b, acc);
            }
        } else {
            ffma_step<T>(As, Bs, ThreadPos<T>(), acc);
        }
        rs = rs == T::STAGES - 1 ? 0 : rs + 1;
        ws = ws == T::STAGES - 1 ? 0 : ws + 1;
    }
    cp_async_wait_all();
    __syncthreads();  // the epilogue reuses the pipeline's shared memory
}
