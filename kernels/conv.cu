// conv.cu - 2-D convolution, NCHW, fp32, weights K x C/G x R x S: forward, backward-data,
// backward-weight and the bias gradient. Exact fp32 (FFMA only, no TF32).
//
// Kernel versions
//   v1  direct: one thread per output element, plain loops over the reduction. Slow; kept
//       as a second GPU reference for the tiled kernels: tests/gpu/test_gpu_ops.py runs v1 and
//       v2 (CONV_VERSION = 1 / 2); `fastconv check` runs the shipped v2 only.
//       Entry points: conv2d_forward_v1, conv2d_backward_data_v1, conv2d_backward_weight_v1.
//   v2  tiled implicit GEMM, no im2col buffer. A block computes a BM x BN tile of the GEMM
//       below with 256 threads, each holding a TM x TN register tile (two TM/2 x TN/2 quads
//       spread half a tile apart, so shared-memory reads are conflict-free float4/float2).
//       The A and B operand tiles (BM x BK and BK x BN) are gathered straight from the
//       tensors into registers, stored transposed in shared memory (rows padded by 4 floats
//       against bank conflicts) and double buffered: the global loads of tile t+1 are in
//       flight while tile t is multiplied, with one __syncthreads per BK step. Tails in every
//       GEMM dimension are zero-filled by the loaders, so any N, C, H, W, K, R, S, stride,
//       padding, dilation works; groups run on grid z. Index math is hoisted: each thread
//       decodes its fixed output columns once, and one reduction index per BK step.
//         forward          M = K/G (out channels)   N = N*P*Q   reduction C/G*R*S,  bias fused
//         backward-data    M = C/G (in channels)    N = N*H*W   reduction K/G*R*S   (gather
//                          form: the stride/dilation divisibility test is a residue compare,
//                          so no atomics and no divisions per element)
//         backward-weight  M = K/G                  N = C/G*R*S reduction N*P*Q, split-K on
//                          grid z: each split writes its partial tile to a workspace
//                          [splits][K][C/G*R*S] and conv2d_wgrad_reduce_v1 sums the splits in
//                          a fixed order (deterministic; no atomics). With one split the
//                          kernel writes dw directly.
//       Tile shapes (suffix _tBMxBN): 128x128 (TM=TN=8, BK=8), 64x64 (4x4, BK=16) and 32x128
//       (4x4, BK=16); fastconv/backends/cuda/config.py:conv_tile picks one from measurements.
//       Entry points: conv2d_forward_v2_t*, conv2d_backward_data_v2_t*,
//       conv2d_backward_weight_v2_t* (t128x128, t64x64, t32x128).
//       Measured on an H100 (benchmarks/gpu_table.py): about 0.45x cuDNN fp32 (geometric mean
//       over the benchmarks/shapes.py shapes x 3 passes); backward-data on strided convs is the weakest
//       (the gather form issues the zero taps too), lenet.conv1 backward-data (M = 1) worst.
//   conv2d_backward_bias_v1: one block per output channel, double accumulation.
//   conv2d_wgrad_reduce_v1:  sums the split-K partials of backward-weight.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/conv.cu
// Index types: offsets into tensors are 64-bit (i64); per-GEMM-dimension indices (N*P*Q,
// C/G*R*S, ...) are int, which the launcher checks are <= 2^31 - 1 - 4096 (room for the tile
// overshoot k0 + BK, n0 + BN; split-K keeps splits*chunk within the same bound).
// Tuning overrides: CONV_BK_T128 / CONV_BK_T64 / CONV_BK_T32 (BK of each tile) and
// CONV_MIN_BLOCKS, set by the loader (FASTCONV_CUDA_DEFINES="NAME=VALUE,..."); each loader
// below static_asserts that its thread map still covers its tile, so a bad BK fails to compile.
#include "common.cuh"

#ifndef CONV_BK_T128
#define CONV_BK_T128 8
#endif
#ifndef CONV_BK_T64
#define CONV_BK_T64 16
#endif
#ifndef CONV_BK_T32
#define CONV_BK_T32 16
#endif
#ifndef CONV_MIN_BLOCKS
#define CONV_MIN_BLOCKS 1  // __launch_bounds__ min blocks per SM for the v2 kernels
#endif

#define CONV_NT 256        // threads per v2 block (fixed: the loaders' thread maps assume it)
#define CONV_PAD 4         // floats of padding per shared-memory tile row
#define CONV_INVALID (-(1 << 30))  // coordinate of a column past the GEMM edge: never in range

// ---------------------------------------------------------------------------------------------
// v1: direct kernels

// y[n,k,p,q] = b[k] + sum_{c,r,s} x[n, g*Cg+c, p*sh-ph+r*dh, q*sw-pw+s*dw] * w[k,c,r,s]
// Work: 2*N*K*P*Q*Cg*R*S FLOPs; reads x and w many times (cache-served), writes N*K*P*Q*4 B.
extern "C" __global__ void conv2d_forward_v1(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
    float* __restrict__ y, int N, int C, int H, int W, int K, int R, int S, int P, int Q,
    int sh, int sw, int ph, int pw, int dh, int dw, int G, int has_bias) {
    const i64 total = (i64)N * K * P * Q;
    const int Cg = C / G, Kg = K / G;
    GRID_STRIDE(i, total) {
        const int q = (int)(i % Q), p = (int)((i / Q) % P), k = (int)((i / ((i64)P * Q)) % K);
        const int n = (int)(i / ((i64)K * P * Q));
        const int g = k / Kg;
        float acc = has_bias ? b[k] : 0.f;
        for (int c = 0; c < Cg; ++c)
            for (int r = 0; r < R; ++r) {
                const int h = p * sh - ph + r * dh;
                if (h < 0 || h >= H) continue;
                for (int s = 0; s < S; ++s) {
                    const int ww = q * sw - pw + s * dw;
                    if (ww < 0 || ww >= W) continue;
                    acc = fmaf(x[(((i64)n * C + g * Cg + c) * H + h) * W + ww],
                               w[(((i64)k * Cg + c) * R + r) * S + s], acc);
                }
            }
        y[i] = acc;
    }
}

// dx[n,c,h,w] = sum over k in c's group, r, s with (h+ph-r*dh) = p*sh, 0<=p<P (same for w)
// of dy[n,k,p,q] * w[k, c-g*Cg, r, s]. Work: 2*N*C*H*W*Kg*R*S FLOPs (most skipped for stride>1);
// compulsory traffic (dy + w + dx) * 4 B, dy and w re-read per output (cache-served).
extern "C" __global__ void conv2d_backward_data_v1(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
    int N, int C, int H, int W, int K, int R, int S, int P, int Q,
    int sh, int sw, int ph, int pw, int dh, int dw, int G) {
    const i64 total = (i64)N * C * H * W;
    const int Cg = C / G, Kg = K / G;
    GRID_STRIDE(i, total) {
        const int ww = (int)(i % W), h = (int)((i / W) % H), c = (int)((i / ((i64)H * W)) % C);
        const int n = (int)(i / ((i64)C * H * W));
        const int g = c / Cg, cl = c - g * Cg;
        float acc = 0.f;
        for (int kl = 0; kl < Kg; ++kl) {
            const int k = g * Kg + kl;
            for (int r = 0; r < R; ++r) {
                const int th = h + ph - r * dh;
                if (th < 0 || th % sh) continue;
                const int p = th / sh;
                if (p >= P) continue;
                for (int s = 0; s < S; ++s) {
                    const int tw = ww + pw - s * dw;
                    if (tw < 0 || tw % sw) continue;
                    const int q = tw / sw;
                    if (q >= Q) continue;
                    acc = fmaf(dy[(((i64)n * K + k) * P + p) * Q + q],
                               w[(((i64)k * Cg + cl) * R + r) * S + s], acc);
                }
            }
        }
        dx[i] = acc;
    }
}

// dw[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] * x[n, g*Cg+c, p*sh-ph+r*dh, q*sw-pw+s*dw].
// Work: 2*K*Cg*R*S*N*P*Q FLOPs, one thread per weight (slow: long serial sums); compulsory
// traffic (dy + x + dw) * 4 B, dy and x re-read per weight (cache-served).
extern "C" __global__ void conv2d_backward_weight_v1(
    const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ dw_out,
    int N, int C, int H, int W, int K, int R, int S, int P, int Q,
    int sh, int sw, int ph, int pw, int dh, int dw, int G) {
    const int Cg = C / G, Kg = K / G;
    const i64 total = (i64)K * Cg * R * S;
    GRID_STRIDE(i, total) {
        const int s = (int)(i % S), r = (int)((i / S) % R), c = (int)((i / ((i64)R * S)) % Cg);
        const int k = (int)(i / ((i64)Cg * R * S));
        const int g = k / Kg;
        float acc = 0.f;
        for (int n = 0; n < N; ++n)
            for (int p = 0; p < P; ++p) {
                const int h = p * sh - ph + r * dh;
                if (h < 0 || h >= H) continue;
                for (int q = 0; q < Q; ++q) {
                    const int ww = q * sw - pw + s * dw;
                    if (ww < 0 || ww >= W) continue;
                    acc = fmaf(dy[(((i64)n * K + k) * P + p) * Q + q],
                               x[(((i64)n * C + g * Cg + c) * H + h) * W + ww], acc);
                }
            }
        dw_out[i] = acc;
    }
}

// ---------------------------------------------------------------------------------------------
// v2: the tiled implicit-GEMM core

template <int L> struct Lds;  // L consecutive floats from 16/8-byte aligned shared memory
template <> struct Lds<4> {
    static __device__ __forceinline__ void ld(float* d, const float* s) {
        const float4 v = *reinterpret_cast<const float4*>(s);
        d[0] = v.x; d[1] = v.y; d[2] = v.z; d[3] = v.w;
    }
};
template <> struct Lds<2> {
    static __device__ __forceinline__ void ld(float* d, const float* s) {
        const float2 v = *reinterpret_cast<const float2*>(s);
        d[0] = v.x; d[1] = v.y;
    }
};

// Row i (< TM) of the thread's register tile within the block tile: two quads BM/2 apart.
template <int BM, int TM>
__device__ __forceinline__ int tile_row(int ty, int i) {
    return i < TM / 2 ? ty * (TM / 2) + i : BM / 2 + ty * (TM / 2) + (i - TM / 2);
}

// acc[TM][TN] = sum over the reduction range [k_begin, k_end) of A[m][kk] * B[kk][n] for the
// thread's rows/columns of the block tile. la/lb gather operand tiles (zero outside the GEMM):
//   la.load(k0) / lb.load(k0): global -> registers for reduction rows [k0, k0+BK)
//   la.store(As) / lb.store(Bs): registers -> shared tile As[BK][BM+PAD], Bs[BK][BN+PAD]
// k_begin/k_end are uniform over the block, so the early return cannot split a barrier.
template <int BM, int BN, int TM, int TN, int BK, class LA, class LB>
__device__ __forceinline__ void gemm_tiles(LA& la, LB& lb, int k_begin, int k_end, float (&acc)[TM][TN]) {
    static_assert((BM / TM) * (BN / TN) == CONV_NT, "tile shape must use CONV_NT threads");
    static_assert(CONV_NT % BK == 0, "BK must divide the thread count");
    __shared__ __align__(16) float As[2][BK][BM + CONV_PAD];
    __shared__ __align__(16) float Bs[2][BK][BN + CONV_PAD];
    constexpr int TX = BN / TN;
    const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;
    if (k_begin >= k_end) return;
    la.load(k_begin);
    lb.load(k_begin);
    la.store(As[0]);
    lb.store(Bs[0]);
    __syncthreads();
    int buf = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        const bool more = k0 + BK < k_end;
        if (more) {  // next tile's global loads overlap this tile's math
            la.load(k0 + BK);
            lb.load(k0 + BK);
        }
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a[TM], b[TN];
            Lds<TM / 2>::ld(a, &As[buf][kk][ty * (TM / 2)]);
            Lds<TM / 2>::ld(a + TM / 2, &As[buf][kk][BM / 2 + ty * (TM / 2)]);
            Lds<TN / 2>::ld(b, &Bs[buf][kk][tx * (TN / 2)]);
            Lds<TN / 2>::ld(b + TN / 2, &Bs[buf][kk][BN / 2 + tx * (TN / 2)]);
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (more) {  // buffer buf^1 was last read before the previous barrier: safe to overwrite
            la.store(As[buf ^ 1]);
            lb.store(Bs[buf ^ 1]);
        }
        __syncthreads();
        buf ^= 1;
    }
}

// The store() of every loader: its L registers v[] into row kk_off of a shared operand tile, at
// columns off, off + STRIDE, ... (STRIDE: the loader's STEP or LANES).
template <int L, int STRIDE, int WIDTH>
__device__ __forceinline__ void store_operand(float (*tile)[WIDTH], int kk_off, int off, const float (&v)[L]) {
#pragma unroll
    for (int j = 0; j < L; ++j) tile[kk_off][off + j * STRIDE] = v[j];
}

// Loader for an A operand whose rows are contiguous along the reduction:
// A[m][kk] = a[row_off(m) + kk] (forward: the weights, row m = output channel).
// Thread map: kk fastest (kk_off = tid % BK), rows m_off + j*STEP.
template <int BM, int BK>
struct RowA {
    static constexpr int STEP = CONV_NT / BK, L = BM / STEP;
    static_assert(CONV_NT % BK == 0 && L > 0 && L * STEP == BM,
                  "RowA: BK must divide CONV_NT and CONV_NT/BK must divide BM (check the CONV_BK_* override)");
    const float* a;
    int kend, kk_off, m_off;
    i64 roff[L];
    float v[L];
    __device__ __forceinline__ RowA(const float* a_, int rows, i64 row_stride, int kend_, int m0) {
        a = a_; kend = kend_;
        kk_off = threadIdx.x % BK; m_off = threadIdx.x / BK;
#pragma unroll
        for (int j = 0; j < L; ++j) {
            const int m = m0 + m_off + j * STEP;
            roff[j] = m < rows ? (i64)m * row_stride : (i64)-1;
        }
    }
    __device__ __forceinline__ void load(int k0) {
        const int kk = k0 + kk_off;
#pragma unroll
        for (int j = 0; j < L; ++j) v[j] = (kk < kend && roff[j] >= 0) ? __ldg(a + roff[j] + kk) : 0.f;
    }
    __device__ __forceinline__ void store(float (*As)[BM + CONV_PAD]) { store_operand<L, STEP>(As, kk_off, m_off, v); }
};

// forward B: B[kk=(c,r,s)][n=(img,p,q)] = x[img, g*Cg+c, p*sh-ph+r*dh, q*sw-pw+s*dw].
// Thread map: n fastest (consecutive threads read consecutive output pixels: coalesced for
// stride 1); the thread's L columns are decoded once.
template <int BN, int BK>
struct FwdB {
    static constexpr int LANES = CONV_NT / BK, L = BN / LANES;
    static_assert(CONV_NT % BK == 0 && L > 0 && L * LANES == BN,
                  "FwdB: BK must divide CONV_NT and CONV_NT/BK must divide BN (check the CONV_BK_* override)");
    const float* x;
    int H, W, S, RS, kend, dh, dw, kk_off, n_off;
    i64 HW;
    i64 base[L];
    int h0[L], w0[L];
    float v[L];
    __device__ __forceinline__ FwdB(const float* x_, int C, int H_, int W_, int Cg, int R, int S_, int P, int Q,
                                    int sh, int sw, int ph, int pw, int dh_, int dw_, int g, int npq, int n0) {
        H = H_; W = W_; S = S_; RS = R * S_; kend = Cg * R * S_; dh = dh_; dw = dw_;
        HW = (i64)H_ * W_;
        x = x_ + (i64)g * Cg * HW;
        kk_off = threadIdx.x / LANES; n_off = threadIdx.x % LANES;
        const int PQ = P * Q;
#pragma unroll
        for (int j = 0; j < L; ++j) {
            const int n = n0 + n_off + j * LANES;
            if (n < npq) {
                const int img = n / PQ, pq = n - img * PQ, p = pq / Q, q = pq - p * Q;
                base[j] = (i64)img * C * HW;
                h0[j] = p * sh - ph;
                w0[j] = q * sw - pw;
            } else {
                base[j] = 0; h0[j] = CONV_INVALID; w0[j] = CONV_INVALID;
            }
        }
    }
    __device__ __forceinline__ void load(int k0) {
        const int kk = k0 + kk_off;
        if (kk < kend) {
            const int c = kk / RS, rs = kk - c * RS, r = rs / S, s = rs - r * S;
            const i64 coff = c * HW;
            const int hr = r * dh, ws = s * dw;
#pragma unroll
            for (int j = 0; j < L; ++j) {
                const int h = h0[j] + hr, w = w0[j] + ws;
                v[j] = ((unsigned)h < (unsigned)H && (unsigned)w < (unsigned)W)
                           ? __ldg(x + base[j] + coff + (i64)h * W + w) : 0.f;
            }
        } else {
#pragma unroll
            for (int j = 0; j < L; ++j) v[j] = 0.f;
        }
    }
    __device__ __forceinline__ void store(float (*Bs)[BN + CONV_PAD]) { store_operand<L, LANES>(Bs, kk_off, n_off, v); }
};

// backward-data A: A[m=c][kk=(k,rs)] = w[g*Kg+k, c, rs]  (rows not contiguous along kk).
template <int BM, int BK>
struct BwdDataA {
    static constexpr int STEP = CONV_NT / BK, L = BM / STEP;
    static_assert(CONV_NT % BK == 0 && L > 0 && L * STEP == BM,
                  "BwdDataA: BK must divide CONV_NT and CONV_NT/BK must divide BM (check the CONV_BK_* override)");
    const float* w;
    int RS, kend, kk_off, m_off;
    i64 CRS;
    int coff[L];
    float v[L];
    __device__ __forceinline__ BwdDataA(const float* w_, int Kg, int Cg, int RS_, int g, int m0) {
        RS = RS_; CRS = (i64)Cg * RS_; kend = Kg * RS_;
        w = w_ + (i64)g * Kg * CRS;
        kk_off = threadIdx.x % BK; m_off = threadIdx.x / BK;
#pragma unroll
        for (int j = 0; j < L; ++j) {
            const int c = m0 + m_off + j * STEP;
            coff[j] = c < Cg ? c * RS_ : -1;
        }
    }
    __device__ __forceinline__ void load(int k0) {
        const int kk = k0 + kk_off;
        if (kk < kend) {
            const int k = kk / RS, rs = kk - k * RS;
            const float* p = w + k * CRS + rs;
#pragma unroll
            for (int j = 0; j < L; ++j) v[j] = coff[j] >= 0 ? __ldg(p + coff[j]) : 0.f;
        } else {
#pragma unroll
            for (int j = 0; j < L; ++j) v[j] = 0.f;
        }
    }
    __device__ __forceinline__ void store(float (*As)[BM + CONV_PAD]) { store_operand<L, STEP>(As, kk_off, m_off, v); }
};

// backward-data B: B[kk=(k,r,s)][n=(img,h,w)] = dy[img, g*Kg+k, p, q] where
// h + ph - r*dh = p*sh (0 <= p < P) and likewise for w; zero when no such p/q.
// With hh = h+ph = hq*sh + hm and rd = r*dh = rq*sh + rm: divisible iff hm == rm, p = hq - rq.
template <int BN, int BK>
struct BwdDataB {
    static constexpr int LANES = CONV_NT / BK, L = BN / LANES;
    static_assert(CONV_NT % BK == 0 && L > 0 && L * LANES == BN,
                  "BwdDataB: BK must divide CONV_NT and CONV_NT/BK must divide BN (check the CONV_BK_* override)");
    const float* dy;
    int P, Q, S, RS, kend, sh, sw, dh, dw, kk_off, n_off;
    i64 PQ;
    i64 base[L];
    int hq[L], hm[L], wq[L], wm[L];
    float v[L];
    __device__ __forceinline__ BwdDataB(const float* dy_, int K, int H, int W, int Kg, int R, int S_,
                                        int P_, int Q_, int sh_, int sw_, int ph, int pw, int dh_, int dw_,
                                        int g, int nhw, int n0) {
        P = P_; Q = Q_; S = S_; RS = R * S_; kend = Kg * R * S_; sh = sh_; sw = sw_; dh = dh_; dw = dw_;
        PQ = (i64)P_ * Q_;
        dy = dy_ + (i64)g * Kg * PQ;
        kk_off = threadIdx.x / LANES; n_off = threadIdx.x % LANES;
        const int HW = H * W;
#pragma unroll
        for (int j = 0; j < L; ++j) {
            const int n = n0 + n_off + j * LANES;
            if (n < nhw) {
                const int img = n / HW, hw = n - img * HW, h = hw / W, w = hw - h * W;
                base[j] = (i64)img * K * PQ;
                const int hh = h + ph, ww = w + pw;
                hq[j] = hh / sh_; hm[j] = hh - hq[j] * sh_;
                wq[j] = ww / sw_; wm[j] = ww - wq[j] * sw_;
            } else {
                base[j] = 0; hq[j] = 0; wq[j] = 0; hm[j] = -1; wm[j] = -1;
            }
        }
    }
    __device__ __forceinline__ void load(int k0) {
        const int kk = k0 + kk_off;
        if (kk < kend) {
            const int k = kk / RS, rs = kk - k * RS, r = rs / S, s = rs - r * S;
            const int rd = r * dh, sd = s * dw;
            const int rq = rd / sh, rm = rd - rq * sh, sq = sd / sw, sm = sd - sq * sw;
            const float* src = dy + k * PQ;
#pragma unroll
            for (int j = 0; j < L; ++j) {
                const int p = hq[j] - rq, q = wq[j] - sq;
                const bool ok = hm[j] == rm && wm[j] == sm && (unsigned)p < (unsigned)P && (unsigned)q < (unsigned)Q;
                v[j] = ok ? __ldg(src + base[j] + (i64)p * Q + q) : 0.f;
            }
        } else {
#pragma unroll
            for (int j = 0; j < L; ++j) v[j] = 0.f;
        }
    }
    __device__ __forceinline__ void store(float (*Bs)[BN + CONV_PAD]) { store_operand<L, LANES>(Bs, kk_off, n_off, v); }
};

// backward-weight A: A[m=k][kk=(img,pq)] = dy[img, g*Kg+m, pq]; kk is bounded by the split end.
template <int BM, int BK>
struct BwdWA {
    static constexpr int STEP = CONV_NT / BK, L = BM / STEP;
    static_assert(CONV_NT % BK == 0 && L > 0 && L * STEP == BM,
                  "BwdWA: BK must divide CONV_NT and CONV_NT/BK must divide BM (check the CONV_BK_* override)");
    const float* dy;
    int PQ, kend, kk_off, m_off;
    i64 KPQ;
    i64 roff[L];
    float v[L];
    __device__ __forceinline__ BwdWA(const float* dy_, int K, int Kg, int PQ_, int g, int m0, int kend_) {
        dy = dy_; PQ = PQ_; KPQ = (i64)K * PQ_; kend = kend_;
        kk_off = threadIdx.x % BK; m_off = threadIdx.x / BK;
#pragma unroll
        for (int j = 0; j < L; ++j) {
            const int m = m0 + m_off + j * STEP;
            roff[j] = m < Kg ? (i64)(g * Kg + m) * PQ_ : (i64)-1;
        }
    }
    __device__ __forceinline__ void load(int k0) {
        const int kk = k0 + kk_off;
        if (kk < kend) {
            const int img = kk / PQ, pq = kk - img * PQ;
            const float* src = dy + img * KPQ + pq;
#pragma unroll
            for (int j = 0; j < L; ++j) v[j] = roff[j] >= 0 ? __ldg(src + roff[j]) : 0.f;
        } else {
#pragma unroll
            for (int j = 0; j < L; ++j) v[j] = 0.f;
        }
    }
    __device__ __forceinline__ void store(float (*As)[BM + CONV_PAD]) { store_operand<L, STEP>(As, kk_off, m_off, v); }
};

// backward-weight B: B[kk=(img,p,q)][n=(c,r,s)] = x[img, g*Cg+c, p*sh-ph+r*dh, q*sw-pw+s*dw].
// Thread map: kk fastest (consecutive q read consecutive x for stride 1).
template <int BN, int BK>
struct BwdWB {
    static constexpr int STEP = CONV_NT / BK, L = BN / STEP;
    static_assert(CONV_NT % BK == 0 && L > 0 && L * STEP == BN,
                  "BwdWB: BK must divide CONV_NT and CONV_NT/BK must divide BN (check the CONV_BK_* override)");
    const float* x;
    int H, W, Q, PQ, sh, sw, ph, pw, kend, kk_off, n_off;
    i64 CHW;
    i64 coff[L];
    int rd[L], sd[L];
    float v[L];
    __device__ __forceinline__ BwdWB(const float* x_, int C, int H_, int W_, int Cg, int R, int S, int P, int Q_,
                                     int sh_, int sw_, int ph_, int pw_, int dh, int dw, int g, int n0, int kend_) {
        H = H_; W = W_; Q = Q_; PQ = P * Q_; sh = sh_; sw = sw_; ph = ph_; pw = pw_; kend = kend_;
        const i64 HW = (i64)H_ * W_;
        CHW = (i64)C * HW;
        x = x_ + (i64)g * Cg * HW;
        kk_off = threadIdx.x % BK; n_off = threadIdx.x / BK;
        const int RS = R * S, crs = Cg * RS;
#pragma unroll
        for (int j = 0; j < L; ++j) {
            const int n = n0 + n_off + j * STEP;
            if (n < crs) {
                const int c = n / RS, rs = n - c * RS, r = rs / S, s = rs - r * S;
                coff[j] = c * HW; rd[j] = r * dh; sd[j] = s * dw;
            } else {
                coff[j] = 0; rd[j] = CONV_INVALID; sd[j] = CONV_INVALID;
            }
        }
    }
    __device__ __forceinline__ void load(int k0) {
        const int kk = k0 + kk_off;
        if (kk < kend) {
            const int img = kk / PQ, pq = kk - img * PQ, p = pq / Q, q = pq - p * Q;
            const int h0 = p * sh - ph, w0 = q * sw - pw;
            const float* src = x + img * CHW;
#pragma unroll
            for (int j = 0; j < L; ++j) {
                const int h = h0 + rd[j], w = w0 + sd[j];
                v[j] = ((unsigned)h < (unsigned)H && (unsigned)w < (unsigned)W)
                           ? __ldg(src + coff[j] + (i64)h * W + w) : 0.f;
            }
        } else {
#pragma unroll
            for (int j = 0; j < L; ++j) v[j] = 0.f;
        }
    }
    __device__ __forceinline__ void store(float (*Bs)[BN + CONV_PAD]) { store_operand<L, STEP>(Bs, kk_off, n_off, v); }
};

// ---------------------------------------------------------------------------------------------
// v2 kernels. Grid: x = ceil(GEMM N / BN), y = ceil(GEMM M / BM), z = groups (x splits for
// backward-weight). Block: CONV_NT threads.

// forward: 2*N*K*P*Q*Cg*R*S FLOPs; compulsory traffic (x + w + y) * 4 B, x re-read once per
// M tile (ceil(K/G / BM) times, mostly from L2).
template <int BM, int BN, int TM, int TN, int BK>
__device__ __forceinline__ void conv_fwd_v2(const float* __restrict__ x, const float* __restrict__ w,
                                            const float* __restrict__ b, float* __restrict__ y, int N, int C,
                                            int H, int W, int K, int R, int S, int P, int Q, int sh, int sw,
                                            int ph, int pw, int dh, int dw, int G, int has_bias) {
    const int g = blockIdx.z, Cg = C / G, Kg = K / G, PQ = P * Q, npq = N * PQ;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    RowA<BM, BK> la(w + (i64)g * Kg * Cg * R * S, Kg, (i64)Cg * R * S, Cg * R * S, m0);
    FwdB<BN, BK> lb(x, C, H, W, Cg, R, S, P, Q, sh, sw, ph, pw, dh, dw, g, npq, n0);
    float acc[TM][TN];
    gemm_tiles<BM, BN, TM, TN, BK>(la, lb, 0, Cg * R * S, acc);
    const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
    i64 obase[TN];
#pragma unroll
    for (int j = 0; j < TN; ++j) {
        const int n = n0 + tile_row<BN, TN>(tx, j);
        if (n < npq) {
            const int img = n / PQ;
            obase[j] = (i64)img * K * PQ + (n - img * PQ);
        } else {
            obase[j] = -1;
        }
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tile_row<BM, TM>(ty, i);
        if (m >= Kg) continue;
        const int k = g * Kg + m;
        const float bias = has_bias ? b[k] : 0.f;
        const i64 koff = (i64)k * PQ;
#pragma unroll
        for (int j = 0; j < TN; ++j)
            if (obase[j] >= 0) y[obase[j] + koff] = acc[i][j] + bias;
    }
}

// backward-data: 2*N*C*H*W*Kg*R*S FLOPs issued (a fraction 1/(sh*sw) of them on non-zero
// operands); traffic (dy + w + dx) * 4 B compulsory.
template <int BM, int BN, int TM, int TN, int BK>
__device__ __forceinline__ void conv_bwd_data_v2(const float* __restrict__ dy, const float* __restrict__ w,
                                                 float* __restrict__ dx, int N, int C, int H, int W, int K,
                                                 int R, int S, int P, int Q, int sh, int sw, int ph, int pw,
                                                 int dh, int dw, int G) {
    const int g = blockIdx.z, Cg = C / G, Kg = K / G, HW = H * W, nhw = N * HW;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    BwdDataA<BM, BK> la(w, Kg, Cg, R * S, g, m0);
    BwdDataB<BN, BK> lb(dy, K, H, W, Kg, R, S, P, Q, sh, sw, ph, pw, dh, dw, g, nhw, n0);
    float acc[TM][TN];
    gemm_tiles<BM, BN, TM, TN, BK>(la, lb, 0, Kg * R * S, acc);
    const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
    i64 obase[TN];
#pragma unroll
    for (int j = 0; j < TN; ++j) {
        const int n = n0 + tile_row<BN, TN>(tx, j);
        if (n < nhw) {
            const int img = n / HW;
            obase[j] = (i64)img * C * HW + (n - img * HW);
        } else {
            obase[j] = -1;
        }
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tile_row<BM, TM>(ty, i);
        if (m >= Cg) continue;
        const i64 coff = (i64)(g * Cg + m) * HW;
#pragma unroll
        for (int j = 0; j < TN; ++j)
            if (obase[j] >= 0) dx[obase[j] + coff] = acc[i][j];
    }
}

// backward-weight: 2*K*Cg*R*S*N*P*Q FLOPs; traffic (dy + x) * 4 B compulsory plus
// splits * K*Cg*R*S * 4 B of partials written (and read back by the reduce) when splits > 1.
// out is dw (splits == 1) or the workspace [splits][K][Cg*R*S]; grid z = G * splits.
template <int BM, int BN, int TM, int TN, int BK>
__device__ __forceinline__ void conv_bwd_weight_v2(const float* __restrict__ dy, const float* __restrict__ x,
                                                   float* __restrict__ out, int N, int C, int H, int W, int K,
                                                   int R, int S, int P, int Q, int sh, int sw, int ph, int pw,
                                                   int dh, int dw, int G, int splits, int chunk) {
    const int g = blockIdx.z / splits, z = blockIdx.z - g * splits;
    const int Cg = C / G, Kg = K / G, crs = Cg * R * S, npq = N * P * Q;
    const int kbeg = z * chunk, kend = min(npq, kbeg + chunk);  // chunk is a multiple of BK
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    BwdWA<BM, BK> la(dy, K, Kg, P * Q, g, m0, kend);
    BwdWB<BN, BK> lb(x, C, H, W, Cg, R, S, P, Q, sh, sw, ph, pw, dh, dw, g, n0, kend);
    float acc[TM][TN];
    gemm_tiles<BM, BN, TM, TN, BK>(la, lb, kbeg, kend, acc);
    const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
    float* o = out + (i64)z * K * crs;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tile_row<BM, TM>(ty, i);
        if (m >= Kg) continue;
        const i64 roff = (i64)(g * Kg + m) * crs;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int n = n0 + tile_row<BN, TN>(tx, j);
            if (n < crs) o[roff + n] = acc[i][j];
        }
    }
}

#define CONV_ARGS int N, int C, int H, int W, int K, int R, int S, int P, int Q, \
                  int sh, int sw, int ph, int pw, int dh, int dw, int G
#define CONV_PASS N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, G

// The v2 entry points of one tile shape. Work (see conv_fwd_v2 / conv_bwd_data_v2 /
// conv_bwd_weight_v2): forward 2*N*K*P*Q*Cg*R*S FLOPs, backward-data 2*N*C*H*W*Kg*R*S FLOPs
// issued, backward-weight 2*K*Cg*R*S*N*P*Q FLOPs; compulsory traffic of each is its two operands
// and its result, * 4 B (backward-weight with splits > 1 also writes splits*K*Cg*R*S*4 B of
// partials, read back by conv2d_wgrad_reduce_v1).
#define CONV_V2_KERNELS(SUFFIX, BM, BN, TM, TN, BK)                                                   \
    extern "C" __global__ void __launch_bounds__(CONV_NT, CONV_MIN_BLOCKS) conv2d_forward_v2_##SUFFIX( \
        const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,         \
        float* __restrict__ y, CONV_ARGS, int has_bias) {                                               \
        conv_fwd_v2<BM, BN, TM, TN, BK>(x, w, b, y, CONV_PASS, has_bias);                                \
    }                                                                                                   \
    extern "C" __global__ void __launch_bounds__(CONV_NT, CONV_MIN_BLOCKS)                              \
        conv2d_backward_data_v2_##SUFFIX(const float* __restrict__ dy, const float* __restrict__ w,     \
                                         float* __restrict__ dx, CONV_ARGS) {                          \
        conv_bwd_data_v2<BM, BN, TM, TN, BK>(dy, w, dx, CONV_PASS);                                      \
    }                                                                                                   \
    extern "C" __global__ void __launch_bounds__(CONV_NT, CONV_MIN_BLOCKS)                              \
        conv2d_backward_weight_v2_##SUFFIX(const float* __restrict__ dy, const float* __restrict__ x,   \
                                           float* __restrict__ out, CONV_ARGS, int splits, int chunk) { \
        conv_bwd_weight_v2<BM, BN, TM, TN, BK>(dy, x, out, CONV_PASS, splits, chunk);                    \
    }

CONV_V2_KERNELS(t128x128, 128, 128, 8, 8, CONV_BK_T128)
CONV_V2_KERNELS(t64x64, 64, 64, 4, 4, CONV_BK_T64)
CONV_V2_KERNELS(t32x128, 32, 128, 4, 4, CONV_BK_T32)

// ---------------------------------------------------------------------------------------------
// helpers

// dw[i] = sum_z ws[z*total + i] in split order (deterministic). Work: splits*total FLOPs (adds);
// traffic (splits+1)*total*4 B.
extern "C" __global__ void conv2d_wgrad_reduce_v1(const float* __restrict__ ws, float* __restrict__ dw,
                                                  i64 total, int splits) {
    GRID_STRIDE(i, total) {
        float s = 0.f;
        for (int z = 0; z < splits; ++z) s += ws[z * total + i];
        dw[i] = s;
    }
}

// db[k] = sum_{n,pq} dy[n,k,pq]; grid K blocks. Work: N*K*P*Q FLOPs (double adds); traffic
// N*K*P*Q*4 B in, K*4 B out.
extern "C" __global__ void conv2d_backward_bias_v1(const float* __restrict__ dy, float* __restrict__ db,
                                                   int N, int K, int PQ) {
    __shared__ double buf[64];
    const int k = blockIdx.x;
    const i64 count = (i64)N * PQ;
    double acc = 0.0;
    for (i64 i = threadIdx.x; i < count; i += blockDim.x) {
        const i64 n = i / PQ, pq = i - n * PQ;
        acc += dy[(n * K + k) * PQ + pq];
    }
    acc = block_sum(acc, buf);
    if (threadIdx.x == 0) db[k] = (float)acc;
}
