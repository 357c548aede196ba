// conv_v3.cuh - the v3 entry points of kernels/conv.cu (fp32 tiles) and kernels/conv_tf32.cu (TF32
// tiles): the pass bodies over a tile type and the macros that instantiate a tile's three
// kernels. Needs common.cuh, conv_index.cuh, conv_gemm.cuh, conv_loaders.cuh and conv_epilogue.cuh first.
#pragma once

// v3: the implicit-GEMM core. Grid: x = column tiles, y = row tiles, z = (phase,) group, split.
// out is the result (splits == 1: bias and activation fused) or the workspace [splits][result].

__device__ __forceinline__ int split_end(int kbeg, int chunk, int kred) { return min(kred, kbeg + chunk); }

// The tile's shared memory (pipeline stages, then the epilogue). Declared here, not in each pass
// body: ptxas then schedules the main loops shorter (sm_90, tests/conv_sass.py: fp32 t128x128 and
// t64x128 11-13 fewer instructions per loop, TF32 t128x64 forward 4).
template <class T>
__device__ __forceinline__ float* conv_smem() {
    __shared__ __align__(16) float smem[T::SMEM];
    return smem;
}

// forward: 2*N*K*P*Q*Cg*R*S FLOPs; traffic (x + packed w + y) * 4 B compulsory, x re-read once
// per row tile (mostly from L2).
template <class T>
__device__ __forceinline__ void conv_fwd_v3(const float* __restrict__ x, const float* __restrict__ wp,
                                            const float* __restrict__ b, float* __restrict__ out, int N, int C,
                                            int H, int W, int K, int R, int S, int P, int Q, int sh, int sw,
                                            int ph, int pw, int dh, int dw, int G, int has_bias, int act, float slope,
                                            int splits, int chunk) {
    float* smem = conv_smem<T>();
    const int g = blockIdx.z / splits, z = blockIdx.z - g * splits;
    const int Cg = C / G, Kg = K / G, Kp = (Kg + 3) & ~3, PQ = P * Q, npq = N * PQ, crs = Cg * R * S;
    const int m0 = blockIdx.y * T::BM, n0 = blockIdx.x * T::BN;
    const int kbeg = z * chunk, kend = split_end(kbeg, chunk, crs);
    const int ktiles = kend > kbeg ? (kend - kbeg + T::BK - 1) / T::BK : 0;
    PackedA<T> la(wp + g * crs * Kp, Kp, Kp, m0, kbeg, kend);
    const Gather gg = forward_gather(C, H, W, R, S, P, Q, sh, sw, ph, pw, dh, dw, g * Cg, Cg);
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
    gemm_epilogue<T>(smem, acc, col_of, m0, n0, Kg, g * Kg, PQ, out + zoff, (zoff & 3) == 0, b, fused ? has_bias : 0,
                     fused ? act : 0, slope);
}

// backward-data, one phase per grid-z slice: 2*N*C*H*W*Kg*(R*S/(sh*sw)) FLOPs (only reaching
// taps); traffic (dy + packed w + dx) * 4 B compulsory. Unsplit, the epilogue adds b[c] (has_bias)
// and the activation: ConvTranspose2d's bias and activation (split: the split-K reduce's).
template <class T>
__device__ __forceinline__ void conv_bwd_data_v3(const float* __restrict__ dy, const float* __restrict__ wp,
                                                 float* __restrict__ out, int N, int C, int H, int W, int K, int R,
                                                 int S, int P, int Q, int sh, int sw, int ph, int pw, int dh, int dw,
                                                 int G, int splits, int chunk, int krs_max,
                                                 const float* __restrict__ b, int has_bias, int act, float slope) {
    float* smem = conv_smem<T>();
    const int zs = blockIdx.z % splits, gp = blockIdx.z / splits, g = gp % G, phase = gp / G;
    const Phase f = bwd_phase(phase, H, W, R, S, sh, sw, ph, pw, dh, dw);
    const int tu = f.Ht * f.Wt, ncols = N * tu;
    const int m0 = blockIdx.y * T::BM, n0 = blockIdx.x * T::BN;
    if (n0 >= ncols) return;  // uniform over the block: this phase has fewer columns than the grid
    const int Cg = C / G, Kg = K / G, Cp = (Cg + 3) & ~3, HW = H * W;
    const int kred = Kg * f.Ri * f.Sj;
    const int kbeg = zs * chunk, kend = split_end(kbeg, chunk, kred);
    const int ktiles = kend > kbeg ? (kend - kbeg + T::BK - 1) / T::BK : 0;
    PackedA<T> la(wp + (phase * G + g) * krs_max * Cp, Cp, Cp, m0, kbeg, kend);
    const Gather gg = phase_gather(f, K, P, Q, g, Kg);
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
    const bool fused = splits == 1;   // else the split-K reduce adds bias and activation
    gemm_epilogue<T>(smem, acc, col_of, m0, n0, Cg, g * Cg, HW, out + zoff, (zoff & 3) == 0, b, fused ? has_bias : 0,
                     fused ? act : 0, slope);
}

// backward-weight: 2*K*Cg*R*S*N*P*Q FLOPs; traffic (dy + x) * 4 B compulsory plus
// splits * K*Cg*R*S * 4 B of partials when split. VEC (TF32 tiles, Kg and Cg multiples of 4): dy and
// x are their channels-last copies (tf32 values), dy read as the k-major A [N*P*Q][K] (4 channels per
// copy, PackedA), x 4 channels per copy with columns (r, s, c), channel fastest: out is dw as
// [K][R*S][Cg] (the launcher transposes it to dw's [K][Cg][R*S]).
template <class T, bool VEC = false>
__device__ __forceinline__ void conv_bwd_weight_v3(const float* __restrict__ dy, const float* __restrict__ x,
                                                   float* __restrict__ out, int N, int C, int H, int W, int K, int R,
                                                   int S, int P, int Q, int sh, int sw, int ph, int pw, int dh, int dw,
                                                   int G, int splits, int chunk) {
    float* smem = conv_smem<T>();
    const int g = blockIdx.z / splits, z = blockIdx.z - g * splits;
    const int Cg = C / G, Kg = K / G, crs = Cg * R * S, npq = N * P * Q;
    const int m0 = blockIdx.y * T::BM, n0 = blockIdx.x * T::BN;
    const int kbeg = z * chunk, kend = split_end(kbeg, chunk, npq);
    const int ktiles = kend > kbeg ? (kend - kbeg + T::BK - 1) / T::BK : 0;
    auto la = [&] {
        if constexpr (VEC)
            return PackedA<T>(dy + g * Kg, K, Kg, m0, kbeg, kend);
        else
            return WgradA<T>(dy, WgradRows{K * P * Q, P * Q, g * Kg}, m0, Kg, kbeg, kend, 1, P * Q);
    }();
    typename Pick<VEC, WgradNhwc, WgradGeom>::type wg;
    if constexpr (VEC)
        wg = {C, H, W, g * Cg, Cg, S, sh, sw, ph, pw, dh, dw};
    else
        wg = {C, H, W, g * Cg, R, S, sh, sw, ph, pw, dh, dw};
    typename Pick<VEC, GatherRowQuad<T>, WgradB<T>>::type lb(x, wg, n0, crs, kbeg, kend, P, Q);
    typename T::Acc acc;
    gemm_mainloop<T>(smem, la, lb, ktiles, acc);
    auto col_of = [&](int n, int (&co)[4]) {
#pragma unroll
        for (int j = 0; j < 4; ++j) co[j] = n + j < crs ? n + j : -1;
    };
    const i64 zoff = (i64)z * K * crs;
    gemm_epilogue<T>(smem, acc, col_of, m0, n0, Kg, g * Kg, crs, out + zoff, (zoff & 3) == 0, dy, 0, 0, 0.f);
}

// The v3 entry points of one tile. Launch bounds: the tile's threads and min blocks per SM that allow
// <= 170 registers (255 for t128x128, t128x64w2 and the fp32 wide-k tile t64x128k16, whose 16
// gathered columns per thread need ~200), which ptxas fits without spills.
// Forward and backward-data, B gathered 4 bytes per copy from the NCHW tensor. Work: forward
// 2*N*K*P*Q*Cg*R*S FLOPs, backward-data 2*N*C*H*W*Kg*R*S/(sh*sw) FLOPs (reaching taps only);
// compulsory traffic of each is its two operands and its result * 4 bytes (plus splits * result * 4 B
// of partials when split) ...
#define CONV_V3_FWD_DGRAD_ENTRIES(SUFFIX, TILE)                                                            \
    extern "C" __global__ void __launch_bounds__(TILE::NT, TILE::MINB)                                     \
        conv2d_forward_##SUFFIX(const float* __restrict__ x, const float* __restrict__ wp,                 \
                                const float* __restrict__ b, float* __restrict__ out, CONV_ARGS,           \
                                int splits, int chunk, int has_bias, int act, float slope) {               \
        conv_fwd_v3<TILE>(x, wp, b, out, CONV_PASS, has_bias, act, slope, splits, chunk);                  \
    }                                                                                                      \
    extern "C" __global__ void __launch_bounds__(TILE::NT, TILE::MINB)                                     \
        conv2d_backward_data_##SUFFIX(const float* __restrict__ dy, const float* __restrict__ wp,          \
                                      float* __restrict__ out, CONV_ARGS, int splits, int chunk,           \
                                      int krs_max, const float* __restrict__ b, int has_bias, int act,     \
                                      float slope) {                                                       \
        conv_bwd_data_v3<TILE>(dy, wp, out, CONV_PASS, splits, chunk, krs_max, b, has_bias, act, slope);   \
    }
// ... and backward-weight. Work: 2*K*Cg*R*S*N*P*Q FLOPs; compulsory traffic (dy + x + dw) * 4 bytes
// (plus splits * dw * 4 B of partials when split); VEC (the TF32 vec kernel) the same, reading 16 bytes
// per copy from the channels-last copies of dy and x (nchw_to_nhwc_v1 moves 2 * their size * 4 B more).
#define CONV_V3_WGRAD_ENTRY(SUFFIX, TILE, VEC)                                                             \
    extern "C" __global__ void __launch_bounds__(TILE::NT, TILE::MINB)                                     \
        conv2d_backward_weight_##SUFFIX(const float* __restrict__ dy, const float* __restrict__ x,         \
                                        float* __restrict__ out, CONV_ARGS, int splits, int chunk) {       \
        conv_bwd_weight_v3<TILE, VEC>(dy, x, out, CONV_PASS, splits, chunk);                               \
    }
// The three v3 entry points of one tile, fp32 (FFMA), conv2d_<pass>_v3_<tile> ...
#define CONV_V3_KERNELS(SUFFIX, ...)                       \
    typedef ConvTile<__VA_ARGS__> Tile_##SUFFIX;           \
    CONV_V3_FWD_DGRAD_ENTRIES(v3_##SUFFIX, Tile_##SUFFIX)  \
    CONV_V3_WGRAD_ENTRY(v3_##SUFFIX, Tile_##SUFFIX, false)
// ... and TF32 (mma.sync m16n8k8), conv2d_<pass>_v3_tf32_<tile>, with backward-weight's 16-byte
// variant conv2d_backward_weight_v3_tf32_vec_<tile>.
#define CONV_V3_TF32_KERNELS(SUFFIX, ...)                             \
    typedef MmaTile<__VA_ARGS__> Tf32Tile_##SUFFIX;                   \
    CONV_V3_FWD_DGRAD_ENTRIES(v3_tf32_##SUFFIX, Tf32Tile_##SUFFIX)    \
    CONV_V3_WGRAD_ENTRY(v3_tf32_##SUFFIX, Tf32Tile_##SUFFIX, false)   \
    CONV_V3_WGRAD_ENTRY(v3_tf32_vec_##SUFFIX, Tf32Tile_##SUFFIX, true)
