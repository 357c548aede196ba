// conv.cu - 2-D convolution, NCHW, fp32, weights K x C/G x R x S: forward, backward-data,
// backward-weight and the bias gradient. fp32 (FFMA) by default; TF32 tensor cores on request.
//
// Kernel versions
//   v1  direct, the plain reference: one thread per output element, plain loops over the
//       reduction. Slow; kept as a second GPU reference for the v3 core (conv_version = 1).
//       Entry points: conv2d_forward_v1, conv2d_backward_data_v1, conv2d_backward_weight_v1.
//   v3  the implicit-GEMM core (kernels/conv_gemm.cuh, index math in kernels/conv_index.cuh),
//       no im2col buffer, per group g:
//         forward          M = K/G   N = N*P*Q           reduction C/G*R*S   A = packed weights
//         backward-data    M = C/G   N = N*Ht*Wt a phase  reduction K/G*Ri*Sj  A = packed weights
//         backward-weight  M = K/G   N = C/G*R*S          reduction N*P*Q      A = dy
//       Strided backward-data is phase-decomposed: output rows h = h0 + t*sh (and columns) of one
//       residue form a sub-convolution with only the Ri x Sj taps that reach them, so no zero tap
//       is multiplied; the sh*sw phases run in one launch (grid z). ConvTranspose2d forward is
//       this pass. Per thread: offsets and validity masks decoded before the main loop, the
//       reduction index advanced by a carry iterator (no division in the loop), weights read as
//       16-byte cp.async from a packed copy [kk][M rounded up to 4] (conv2d_pack_*_v1; rounded to
//       tf32 there for the TF32 kernels), the gathered operand as 4-byte cp.async with zero-fill,
//       a STAGES-deep pipeline, 8x8 outputs per thread in warp tiles (fp32), and an epilogue
//       staged through shared memory that stores float4
//       where 4 outputs are contiguous and fuses bias and activation (none/ReLU/LeakyReLU/tanh).
//       Split-K (grid z) writes partial outputs to a workspace [splits][output] that
//       conv2d_splitk_reduce_v1 sums in split order (deterministic), then adds bias/activation.
//       Tiles (suffix _tBMxBN) and their __launch_bounds__: the CONV_V3_KERNELS lines below;
//       fastconv/backends/cuda/config.py conv_tile / conv_splits pick tile and splits.
//       Entry points: conv2d_forward_v3_t*, conv2d_backward_data_v3_t*, conv2d_backward_weight_v3_t*;
//       conv2d_pack_forward_v1, conv2d_pack_backward_data_v1, conv2d_splitk_reduce_v1.
//   v3 tf32  the same core (loaders, pipeline, epilogue) with the product done by mma.sync
//       m16n8k8 TF32 (operands rounded by cvt.rna.tf32, fp32 accumulation) on its own tiles
//       (CONV_V3_TF32_KERNELS below: warp tiles of up to 4 x 8 mma tiles fed by 128-bit
//       conflict-free fragment loads): conv2d_forward_v3_tf32_t*, conv2d_backward_data_v3_tf32_t*,
//       conv2d_backward_weight_v3_tf32_t*. Opt-in (tf32 setting).
//   smallc  small-channel kernels for C/G*R*S <= CONV_SMALLC (e.g. LeNet's conv1, C = 1, 5x5):
//       conv2d_forward_smallc_v1 (direct: one output pixel per thread, its C/G*R*S inputs in
//       registers, all K/G filters from shared memory) and conv2d_backward_data_smallc_v1 (one
//       input-gradient element per thread, only the taps of its phase, filters through the
//       read-only cache). Backward-weight of such
//       shapes (N = C/G*R*S <= 32) runs the v3 core with the t64x32 tile.
//   The conv bias gradient is in bias.cu.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v (tests/test_conv_build.py).
// Index types: every tensor and workspace slice is indexed with 32-bit ints (the launcher checks
// each size is <= 2^31 - 1 - 4096); split workspaces are offset in 64 bits.
#include "common.cuh"
#include "conv_index.cuh"
#include "conv_gemm.cuh"

#define CONV_SMALLC 32     // C/G*R*S limit of the small-channel kernels
#define CONV_SMALLC_KC 64  // filters staged in shared memory at a time by the small-channel kernels

// ---------------------------------------------------------------------------------------------
// v1: direct kernels

// y[n,k,p,q] = act(b[k] + sum_{c,r,s} x[n, g*Cg+c, p*sh-ph+r*dh, q*sw-pw+s*dw] * w[k,c,r,s])
// Work: 2*N*K*P*Q*Cg*R*S FLOPs; reads x and w many times (cache-served), writes N*K*P*Q*4 B.
extern "C" __global__ void conv2d_forward_v1(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
    float* __restrict__ y, int N, int C, int H, int W, int K, int R, int S, int P, int Q,
    int sh, int sw, int ph, int pw, int dh, int dw, int G, int has_bias, int act, float slope) {
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
        y[i] = conv_act(acc, act, slope);
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
// packing

// wp[g][kk][Kp] = w[g*Kg + m][kk] (kk = (c,r,s) < Cg*R*S), zero for m >= Kg: the forward A
// operand, rows of 4 floats contiguous. Kp = Kg rounded up to 4. tf32: each value rounded to tf32
// here (tf32_value), once, so the TF32 kernels feed it to the mma without a cvt per fragment.
// Work: no FLOPs; traffic (K*Cg*R*S + G*Cg*R*S*Kp) * 4 B.
extern "C" __global__ void conv2d_pack_forward_v1(const float* __restrict__ w, float* __restrict__ wp,
                                                  int Kg, int Kp, int crs, int G, int tf32) {
    const i64 total = (i64)G * crs * Kp;
    GRID_STRIDE(i, total) {
        const int m = (int)(i % Kp), kk = (int)((i / Kp) % crs), g = (int)(i / ((i64)Kp * crs));
        const float v = m < Kg ? w[((i64)g * Kg + m) * crs + kk] : 0.f;
        wp[i] = tf32 ? tf32_value(v) : v;
    }
}

// wp[phase][g][kk][Cp] = w[g*Kg + k][c][r0 + i*rstep][s0 + j*sstep] for kk = (k,i,j) < Kg*Ri*Sj of
// the phase (bwd_phase), zero past it and for c >= Cg: the backward-data A operand of every phase,
// each phase a slab of Kg*maxRi*maxSj rows; tf32 as in conv2d_pack_forward_v1. Work: no FLOPs;
// traffic about 2 * K*Cg*R*S * 4 B (the phases' taps partition the filter) plus the zero padding.
extern "C" __global__ void conv2d_pack_backward_data_v1(const float* __restrict__ w, float* __restrict__ wp,
                                                        int Kg, int Cg, int Cp, int H, int W, int R, int S,
                                                        int sh, int sw, int ph, int pw, int dh, int dw, int G,
                                                        int krs_max, int tf32) {
    const i64 total = (i64)sh * sw * G * krs_max * Cp;
    GRID_STRIDE(i, total) {
        const int c = (int)(i % Cp);
        const i64 row = i / Cp;
        const int kk = (int)(row % krs_max), g = (int)((row / krs_max) % G), phase = (int)(row / ((i64)krs_max * G));
        const Phase f = bwd_phase(phase, H, W, R, S, sh, sw, ph, pw, dh, dw);
        float v = 0.f;
        if (c < Cg && kk < Kg * f.Ri * f.Sj) {
            const int k = kk / (f.Ri * f.Sj), ij = kk - k * f.Ri * f.Sj, ii = ij / f.Sj, jj = ij - ii * f.Sj;
            const int r = f.r0 + ii * f.rstep, s = f.s0 + jj * f.sstep;
            v = w[(((i64)(g * Kg + k) * Cg + c) * R + r) * S + s];
        }
        wp[i] = tf32 ? tf32_value(v) : v;
    }
}

// ---------------------------------------------------------------------------------------------
// v3: the implicit-GEMM core. Grid: x = column tiles, y = row tiles, z = (phase,) group, split.
// out is the result (splits == 1: bias and activation fused) or the workspace [splits][result].

__device__ __forceinline__ int split_end(int kbeg, int chunk, int kred) { return min(kred, kbeg + chunk); }

// forward: 2*N*K*P*Q*Cg*R*S FLOPs; traffic (x + packed w + y) * 4 B compulsory, x re-read once
// per row tile (mostly from L2).
template <class T>
__device__ __forceinline__ void conv_fwd_v3(const float* __restrict__ x, const float* __restrict__ wp,
                                            const float* __restrict__ b, float* __restrict__ out, int N, int C,
                                            int H, int W, int K, int R, int S, int P, int Q, int sh, int sw,
                                            int ph, int pw, int dh, int dw, int G, int has_bias, int act, float slope,
                                            int splits, int chunk) {
    __shared__ __align__(16) float smem[T::SMEM];
    const int g = blockIdx.z / splits, z = blockIdx.z - g * splits;
    const int Cg = C / G, Kg = K / G, Kp = (Kg + 3) & ~3, PQ = P * Q, npq = N * PQ, crs = Cg * R * S;
    const int m0 = blockIdx.y * T::BM, n0 = blockIdx.x * T::BN;
    const int kbeg = z * chunk, kend = split_end(kbeg, chunk, crs);
    const int ktiles = kend > kbeg ? (kend - kbeg + T::BK - 1) / T::BK : 0;
    PackedA<T> la(wp + g * crs * Kp, Kp, m0, kbeg, kend);
    const Gather gg = {C, H, W, g * Cg, Cg, R, S, P, Q, sh, -ph, dh, sw, -pw, dw};
    GatherB<T> lb(x, gg, n0, npq, kbeg, kend, gg.ni, gg.nj);
    typename T::Acc acc;
    gemm_mainloop<T>(smem, la, lb, ktiles, acc);
    const int KPQ = K * PQ;
    auto col_of = [&](int n, int (&co)[4]) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int nj = n + j, img = nj / PQ;
            co[j] = nj < npq ? img * KPQ + (nj - img * PQ) : -1;
        }
    };
    const bool fused = splits == 1;
    const i64 zoff = (i64)z * N * KPQ;
    gemm_epilogue<T>(smem, acc, col_of, m0, n0, Kg, g * Kg, PQ, out + zoff, (zoff & 3) == 0, b, fused && has_bias,
                     fused ? act : 0, slope);
}

// backward-data, one phase per grid-z slice: 2*N*C*H*W*Kg*(R*S/(sh*sw)) FLOPs (only reaching
// taps); traffic (dy + packed w + dx) * 4 B compulsory.
template <class T>
__device__ __forceinline__ void conv_bwd_data_v3(const float* __restrict__ dy, const float* __restrict__ wp,
                                                 float* __restrict__ out, int N, int C, int H, int W, int K, int R,
                                                 int S, int P, int Q, int sh, int sw, int ph, int pw, int dh, int dw,
                                                 int G, int splits, int chunk, int krs_max) {
    __shared__ __align__(16) float smem[T::SMEM];
    const int zs = blockIdx.z % splits, gp = blockIdx.z / splits, g = gp % G, phase = gp / G;
    const Phase f = bwd_phase(phase, H, W, R, S, sh, sw, ph, pw, dh, dw);
    const int tu = f.Ht * f.Wt, ncols = N * tu;
    const int m0 = blockIdx.y * T::BM, n0 = blockIdx.x * T::BN;
    if (n0 >= ncols) return;  // uniform over the block: this phase has fewer columns than the grid
    const int Cg = C / G, Kg = K / G, Cp = (Cg + 3) & ~3, HW = H * W;
    const int kred = Kg * f.Ri * f.Sj;
    const int kbeg = zs * chunk, kend = split_end(kbeg, chunk, kred);
    const int ktiles = kend > kbeg ? (kend - kbeg + T::BK - 1) / T::BK : 0;
    PackedA<T> la(wp + (phase * G + g) * krs_max * Cp, Cp, m0, kbeg, kend);
    const Gather gg = {K, P, Q, g * Kg, Kg, f.Ri > 0 ? f.Ri : 1, f.Sj > 0 ? f.Sj : 1, f.Ht, f.Wt,
                       1, f.pbase, -f.pstep, 1, f.qbase, -f.qstep};
    GatherB<T> lb(dy, gg, n0, ncols, kbeg, kend, gg.ni, gg.nj);
    typename T::Acc acc;
    gemm_mainloop<T>(smem, la, lb, ktiles, acc);
    const int CHW = C * HW;
    auto col_of = [&](int n, int (&co)[4]) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int nj = n + j, img = nj / tu, rem = nj - img * tu, t = rem / f.Wt, u = rem - t * f.Wt;
            co[j] = nj < ncols ? img * CHW + (f.h0 + t * sh) * W + f.w0 + u * sw : -1;
        }
    };
    const i64 zoff = (i64)zs * N * CHW;
    gemm_epilogue<T>(smem, acc, col_of, m0, n0, Cg, g * Cg, HW, out + zoff, (zoff & 3) == 0, wp, 0, 0, 0.f);
}

// backward-weight: 2*K*Cg*R*S*N*P*Q FLOPs; traffic (dy + x) * 4 B compulsory plus
// splits * K*Cg*R*S * 4 B of partials when split.
template <class T>
__device__ __forceinline__ void conv_bwd_weight_v3(const float* __restrict__ dy, const float* __restrict__ x,
                                                   float* __restrict__ out, int N, int C, int H, int W, int K, int R,
                                                   int S, int P, int Q, int sh, int sw, int ph, int pw, int dh, int dw,
                                                   int G, int splits, int chunk) {
    __shared__ __align__(16) float smem[T::SMEM];
    const int g = blockIdx.z / splits, z = blockIdx.z - g * splits;
    const int Cg = C / G, Kg = K / G, crs = Cg * R * S, npq = N * P * Q;
    const int m0 = blockIdx.y * T::BM, n0 = blockIdx.x * T::BN;
    const int kbeg = z * chunk, kend = split_end(kbeg, chunk, npq);
    const int ktiles = kend > kbeg ? (kend - kbeg + T::BK - 1) / T::BK : 0;
    const WgradRows wr = {K * P * Q, P * Q, g * Kg};
    WgradA<T> la(dy, wr, m0, Kg, kbeg, kend, 1, P * Q);
    const WgradGeom wg = {C, H, W, g * Cg, R, S, sh, sw, ph, pw, dh, dw};
    WgradB<T> lb(x, wg, n0, crs, kbeg, kend, P, Q);
    typename T::Acc acc;
    gemm_mainloop<T>(smem, la, lb, ktiles, acc);
    auto col_of = [&](int n, int (&co)[4]) {
#pragma unroll
        for (int j = 0; j < 4; ++j) co[j] = n + j < crs ? n + j : -1;
    };
    const i64 zoff = (i64)z * K * crs;
    gemm_epilogue<T>(smem, acc, col_of, m0, n0, Kg, g * Kg, crs, out + zoff, (zoff & 3) == 0, dy, 0, 0, 0.f);
}

#define CONV_ARGS int N, int C, int H, int W, int K, int R, int S, int P, int Q, \
                  int sh, int sw, int ph, int pw, int dh, int dw, int G
#define CONV_PASS N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, G

// The v3 entry points of one tile. Work: forward 2*N*K*P*Q*Cg*R*S FLOPs, backward-data
// 2*N*C*H*W*Kg*R*S/(sh*sw) FLOPs (reaching taps only), backward-weight 2*K*Cg*R*S*N*P*Q FLOPs;
// compulsory traffic of each is its two operands and its result * 4 bytes (plus
// splits * result * 4 B of partials when split). Launch bounds: the tile's threads and min blocks
// per SM that allow <= 170 registers (255 for t128x128), which ptxas fits without spills.
#define CONV_V3_ENTRIES(SUFFIX, TILE)                                                              \
    extern "C" __global__ void __launch_bounds__(TILE::NT, TILE::MINB)                                     \
        conv2d_forward_##SUFFIX(const float* __restrict__ x, const float* __restrict__ wp,                 \
                                const float* __restrict__ b, float* __restrict__ out, CONV_ARGS,           \
                                int splits, int chunk, int has_bias, int act, float slope) {               \
        conv_fwd_v3<TILE>(x, wp, b, out, CONV_PASS, has_bias, act, slope, splits, chunk);            \
    }                                                                                                      \
    extern "C" __global__ void __launch_bounds__(TILE::NT, TILE::MINB)                                     \
        conv2d_backward_data_##SUFFIX(const float* __restrict__ dy, const float* __restrict__ wp,          \
                                      float* __restrict__ out, CONV_ARGS, int splits, int chunk,           \
                                      int krs_max) {                                                       \
        conv_bwd_data_v3<TILE>(dy, wp, out, CONV_PASS, splits, chunk, krs_max);                      \
    }                                                                                                      \
    extern "C" __global__ void __launch_bounds__(TILE::NT, TILE::MINB)                                     \
        conv2d_backward_weight_##SUFFIX(const float* __restrict__ dy, const float* __restrict__ x,         \
                                        float* __restrict__ out, CONV_ARGS, int splits, int chunk) {       \
        conv_bwd_weight_v3<TILE>(dy, x, out, CONV_PASS, splits, chunk);                              \
    }
// The v3 entry points of one tile, fp32 (FFMA) ...
#define CONV_V3_KERNELS(SUFFIX, ...)              \
    typedef ConvTile<__VA_ARGS__> Tile_##SUFFIX; \
    CONV_V3_ENTRIES(v3_##SUFFIX, Tile_##SUFFIX)
// ... and TF32 (mma.sync m16n8k8), conv2d_<pass>_v3_tf32_<tile>.
#define CONV_V3_TF32_KERNELS(SUFFIX, ...)               \
    typedef MmaTile<__VA_ARGS__> Tf32Tile_##SUFFIX;    \
    CONV_V3_ENTRIES(v3_tf32_##SUFFIX, Tf32Tile_##SUFFIX)

// CONV_V3_KERNELS: suffix, BM, BN, BK, warps (rows x cols), lane rows, stages, min blocks per SM.
// Mirrored by fastconv/backends/cuda/config.py CONV_TILES (tests compare the two).
CONV_V3_KERNELS(t128x128, 128, 128, 8, 4, 2, 4, 3, 1)
CONV_V3_KERNELS(t128x64, 128, 64, 8, 4, 1, 4, 3, 3)
CONV_V3_KERNELS(t64x128, 64, 128, 8, 2, 2, 4, 3, 3)
CONV_V3_KERNELS(t64x64, 64, 64, 8, 2, 1, 4, 3, 6)
CONV_V3_KERNELS(t32x128, 32, 128, 4, 1, 2, 4, 4, 6)
CONV_V3_KERNELS(t64x32, 64, 32, 4, 1, 1, 8, 4, 12)
// CONV_V3_TF32_KERNELS: suffix, BM, BN, BK, warps (rows x cols), stages, min blocks per SM; warp
// tiles 64x64 (t128x128), 64x32, 32x64 and 32x64. Mirrored by config.py TF32_TILES.
CONV_V3_TF32_KERNELS(t128x128, 128, 128, 8, 2, 2, 4, 2)
CONV_V3_TF32_KERNELS(t128x64, 128, 64, 16, 2, 2, 3, 3)
CONV_V3_TF32_KERNELS(t64x128, 64, 128, 8, 2, 2, 4, 3)
CONV_V3_TF32_KERNELS(t64x64, 64, 64, 8, 2, 1, 4, 6)

// out[i] = act(sum_z ws[z*total + i] + bias[(i / plane) % channels]) in split order
// (deterministic). Work: splits*total adds; traffic (splits + 1) * total * 4 B.
extern "C" __global__ void conv2d_splitk_reduce_v1(const float* __restrict__ ws, float* __restrict__ out,
                                                   const float* __restrict__ b, i64 total, int splits, int plane,
                                                   int channels, int has_bias, int act, float slope) {
    GRID_STRIDE(i, total) {
        float s = 0.f;
        for (int z = 0; z < splits; ++z) s += ws[z * total + i];
        if (has_bias) s += b[(i / plane) % channels];
        out[i] = conv_act(s, act, slope);
    }
}

// ---------------------------------------------------------------------------------------------
// small-channel kernels (C/G*R*S <= CONV_SMALLC)

// y[img,k,p,q] = act(b[k] + sum_{e=(c,r,s)} x(e) * w[k][e]): one (img, p, q) per thread, its
// inputs in registers, the group's filters staged CONV_SMALLC_KC at a time in shared memory.
// Grid: x = ceil(N*P*Q / 256), z = groups; 256 threads. Work 2*N*K*P*Q*Cg*R*S FLOPs; traffic
// (x * R*S/(sh*sw) (cache-served) + w + y) * 4 B.
extern "C" __global__ void __launch_bounds__(256) conv2d_forward_smallc_v1(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b, float* __restrict__ y,
    CONV_ARGS, int has_bias, int act, float slope) {
    __shared__ float ws[CONV_SMALLC_KC * CONV_SMALLC];
    const int g = blockIdx.z, Cg = C / G, Kg = K / G, crs = Cg * R * S, PQ = P * Q, npq = N * PQ;
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    const bool live = n < npq;
    const int img = live ? n / PQ : 0, pq = live ? n - img * PQ : 0, p = pq / Q, q = pq - p * Q;
    float xv[CONV_SMALLC];
    TapIter e;  // (c, r, s)
    e.init(0, 1, R, S);
    const int HW = H * W;
    const float* xs = x + (img * C + g * Cg) * HW;
#pragma unroll
    for (int k = 0; k < CONV_SMALLC; ++k) {
        const int h = p * sh - ph + e.i * dh, ww = q * sw - pw + e.j * dw;
        const bool ok = live && k < crs && (unsigned)h < (unsigned)H && (unsigned)ww < (unsigned)W;
        xv[k] = ok ? xs[e.a * HW + h * W + ww] : 0.f;
        e.next();
    }
    for (int k0 = 0; k0 < Kg; k0 += CONV_SMALLC_KC) {
        const int kc = min(CONV_SMALLC_KC, Kg - k0);
        __syncthreads();  // the previous chunk's filters are no longer read
        for (int i = threadIdx.x; i < kc * crs; i += blockDim.x) ws[i] = w[(g * Kg + k0) * crs + i];
        __syncthreads();
        if (!live) continue;
        for (int k = 0; k < kc; ++k) {
            float acc = 0.f;
#pragma unroll
            for (int e2 = 0; e2 < CONV_SMALLC; ++e2)
                if (e2 < crs) acc = fmaf(xv[e2], ws[k * crs + e2], acc);
            const int kg = g * Kg + k0 + k;
            y[(img * K + kg) * PQ + pq] = conv_act(acc + (has_bias ? b[kg] : 0.f), act, slope);
        }
    }
}

// dx[img,c,h,w] = sum_{k in c's group} sum over the taps of (h, w)'s phase of dy * w: one dx element
// per thread, only the taps that reach it (no padded GEMM, no zero taps). Grid y = channel, so a
// warp reads the same filter taps (broadcast from the read-only cache). Work
// 2*N*C*H*W*Kg*R*S/(sh*sw) FLOPs; traffic (dy (cache-served) + w + dx) * 4 B.
extern "C" __global__ void __launch_bounds__(256) conv2d_backward_data_smallc_v1(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, CONV_ARGS) {
    const int c = blockIdx.y, Cg = C / G, Kg = K / G, g = c / Cg, cl = c - g * Cg, RS = R * S, HW = H * W;
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N * HW) return;
    const int img = n / HW, hw = n - img * HW, h = hw / W, wc = hw - h * W;
    const int th = h / sh, phi_h = h - th * sh, tw = wc / sw, phi_w = wc - tw * sw;
    int h0, nt, r0, rstep, Ri, pbase, pstep, w0, nu, s0, sstep, Sj, qbase, qstep;
    phase_dim(phi_h, H, R, sh, ph, dh, h0, nt, r0, rstep, Ri, pbase, pstep);
    phase_dim(phi_w, W, S, sw, pw, dw, w0, nu, s0, sstep, Sj, qbase, qstep);
    const int PQ = P * Q, CgRS = Cg * RS;
    const float* d = dy + (img * K + g * Kg) * PQ;
    const float* wk = w + (g * Kg * Cg + cl) * RS;
    float acc = 0.f;
    for (int k = 0; k < Kg; ++k, d += PQ, wk += CgRS)
        for (int i = 0; i < Ri; ++i) {
            const int p = th + pbase - i * pstep;
            if ((unsigned)p >= (unsigned)P) continue;
            const float* wr = wk + (r0 + i * rstep) * S + s0;
            for (int j = 0; j < Sj; ++j) {
                const int q = tw + qbase - j * qstep;
                if ((unsigned)q < (unsigned)Q) acc = fmaf(__ldg(d + p * Q + q), __ldg(wr + j * sstep), acc);
            }
        }
    dx[(img * C + c) * HW + hw] = acc;
}
