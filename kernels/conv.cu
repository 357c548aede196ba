// conv.cu - 2-D convolution, NCHW, fp32, weights K x C/G x R x S: forward, backward-data,
// backward-weight and the bias gradient. fp32 (FFMA) by default; TF32 tensor cores on request.
//
// Kernel versions
//   v1  direct, the plain reference: one thread per output element, plain loops over the
//       reduction. Slow; kept as a second GPU reference for the v3 core (conv_version = 1).
//       Entry points: conv2d_forward_v1, conv2d_backward_data_v1, conv2d_backward_weight_v1.
//   v3  the implicit-GEMM core (kernels/conv_gemm.cuh, loaders conv_loaders.cuh, epilogue conv_epilogue.cuh, index
//       math in conv_index.cuh),
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
//       conv2d_splitk_reduce_v1 (a few splits: a thread per 4 outputs) or _v2 (many: warps share the
//       splits of 32 outputs) sums (deterministic: the order depends on splits only), then adds bias/activation
//       (the TF32 vec backward-weight's sums it writes in dw's order: reduce_out_index).
//       Tiles (suffix _tBMxBN) and their __launch_bounds__: the CONV_V3_KERNELS lines below;
//       fastconv/backends/cuda/config.py conv_tile / conv_splits pick tile and splits.
//       Entry points: conv2d_forward_v3_t*, conv2d_backward_data_v3_t*, conv2d_backward_weight_v3_t*;
//       conv2d_pack_forward_v1, conv2d_pack_backward_data_v1, conv2d_splitk_reduce_v1,
//       conv2d_splitk_reduce_v2 (also the small-channel backward-weight's).
//   v3 tf32  the same core with the product on TF32 tensor cores: kernels/conv_tf32.cu (its own
//       module, so fp32 use never compiles it); it shares the pack kernels and split-K reduces here,
//       and its vec backward-weight gathers from the channels-last copies nchw_to_nhwc_v1 makes.
//   smallc  the small-channel kernels (C/G*R*S <= CONV_SMALLC): kernels/conv_smallc.cu.
//   The conv bias gradient is in bias.cu.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v (tests/test_conv_build.py).
// Index types: every tensor and workspace slice is indexed with 32-bit ints (the launcher checks
// each size is <= 2^31 - 1 - 4096); split workspaces are offset in 64 bits.
#include "common.cuh"
#include "conv_index.cuh"
#include "conv_gemm.cuh"
#include "conv_loaders.cuh"
#include "conv_epilogue.cuh"

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

#define PACK_TILE 32
#define PACK_ROWS 8   // warps per block (PACK_ROWS * 32 threads): each lane moves PACK_TILE / PACK_ROWS values each way

// wp[g][kk][Kp] = w[g*Kg + m][kk] (kk = (c,r,s) < Cg*R*S), zero for m >= Kg: the forward A
// operand (conv_index.cuh packed_forward_at), rows of 4 floats contiguous. Kp = Kg rounded up to 4.
// tf32: for the TF32 tiles, each value rounded to tf32 here (tf32_value), once, so the TF32 kernels
// feed A's fragments to the mma as they are.
// A transpose of each group's Kg x crs matrix through a 32 x 33 shared tile (the pad column keeps
// the column reads free of bank conflicts): blocks of 256 threads, a warp per row pass (lane along
// the row), grid (crs / 32, Kp / 32, G) rounded up; reads run along kk and writes along m, both
// coalesced. The launcher checks both sizes <= INT32_LIMIT.
// Work: no FLOPs; traffic (K*Cg*R*S + G*Cg*R*S*Kp) * 4 B.
extern "C" __global__ void conv2d_pack_forward_v1(const float* __restrict__ w, float* __restrict__ wp,
                                                  int Kg, int Kp, int crs, int G, int tf32) {
    __shared__ float tile[PACK_TILE][PACK_TILE + 1];
    const int kk0 = blockIdx.x * PACK_TILE, m0 = blockIdx.y * PACK_TILE, g = blockIdx.z;
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const int kk = kk0 + tx;
#pragma unroll
    for (int j = ty; j < PACK_TILE; j += PACK_ROWS) {
        const int m = m0 + j;
        tile[j][tx] = m < Kg && kk < crs ? w[(g * Kg + m) * crs + kk] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int j = ty; j < PACK_TILE; j += PACK_ROWS) {
        const int kk = kk0 + j, m = m0 + tx;
        if (kk < crs && m < Kp) {
            const float v = tile[tx][j];
            wp[packed_forward_at(g, kk, m, crs, Kp)] = tf32 ? tf32_value(v) : v;
        }
    }
}

// wp[phase][g][kk][Cp] = w[g*Kg + k][c][r0 + i*rstep][s0 + j*sstep] for kk = (k,i,j) < Kg*Ri*Sj of
// the phase (bwd_phase), zero past it and for c >= Cg: the backward-data A operand of every phase,
// each phase a slab of krs_max >= Kg*maxRi*maxSj rows; tf32 as in conv2d_pack_forward_v1. Blocks of
// PACK_ROWS warps: each warp a row of wp (phase, g, kk decoded once), its lanes along c (consecutive
// writes; the reads stride R*S floats, served by L2). Grid (rows / PACK_ROWS rounded up). The launcher
// checks the sizes <= INT32_LIMIT. Work: no FLOPs; traffic about 2 * K*Cg*R*S * 4 B (the phases' taps partition
// the filter) plus the zero padding.
extern "C" __global__ void conv2d_pack_backward_data_v1(const float* __restrict__ w, float* __restrict__ wp,
                                                        int Kg, int Cg, int Cp, int H, int W, int R, int S,
                                                        int sh, int sw, int ph, int pw, int dh, int dw, int G,
                                                        int krs_max, int tf32) {
    const int row = blockIdx.x * PACK_ROWS + (threadIdx.x >> 5);
    if (row >= sh * sw * G * krs_max) return;
    const int kk = row % krs_max, g = (row / krs_max) % G, phase = row / (krs_max * G);
    const Phase f = bwd_phase(phase, H, W, R, S, sh, sw, ph, pw, dh, dw);
    const bool tap = kk < Kg * f.Ri * f.Sj;
    int src = 0;
    if (tap) {
        const int k = kk / (f.Ri * f.Sj), ij = kk - k * f.Ri * f.Sj;
        const int ii = ij / f.Sj, jj = ij - ii * f.Sj;
        src = (g * Kg + k) * Cg * R * S + (f.r0 + ii * f.rstep) * S + f.s0 + jj * f.sstep;
    }
    for (int c = threadIdx.x & 31; c < Cp; c += 32) {
        const float v = tap && c < Cg ? w[src + c * R * S] : 0.f;
        wp[row * Cp + c] = tf32 ? tf32_value(v) : v;
    }
}

// out[img][hw][c] = x[img][c][hw]: the channels-last copy of dy or x that the TF32 vec backward-weight
// gathers from; tf32: each value rounded to tf32 here (tf32_value), once, as the packs round the
// weights, so that kernel feeds both operands to the mma without a cvt per fragment. Unrounded, it
// also turns that kernel's (K, R*S, C/G) result into dw's (K, C/G, R*S).
// The pack's 32 x 33 shared tile per 32 pixels x 32 channels of an image: reads along hw, writes
// along c, both coalesced. Grid (N * (HW / 32), C / 32) rounded up (images in x: any batch fits),
// blocks of PACK_ROWS warps. The launcher checks N*C*HW <= INT32_LIMIT.
// Work: no FLOPs; traffic 2 * N*C*HW * 4 B.
extern "C" __global__ void nchw_to_nhwc_v1(const float* __restrict__ x, float* __restrict__ out, int C, int HW,
                                           int tf32) {
    __shared__ float tile[PACK_TILE][PACK_TILE + 1];
    const int tiles = (HW + PACK_TILE - 1) / PACK_TILE, img = blockIdx.x / tiles;
    const int hw0 = (blockIdx.x - img * tiles) * PACK_TILE, c0 = blockIdx.y * PACK_TILE, base = img * C * HW;
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
#pragma unroll
    for (int j = ty; j < PACK_TILE; j += PACK_ROWS) {
        const int c = c0 + j, hw = hw0 + tx;
        if (c < C && hw < HW) tile[j][tx] = x[base + c * HW + hw];
    }
    __syncthreads();
#pragma unroll
    for (int j = ty; j < PACK_TILE; j += PACK_ROWS) {
        const int hw = hw0 + j, c = c0 + tx;
        if (hw < HW && c < C) out[base + hw * C + c] = tf32 ? tf32_value(tile[tx][j]) : tile[tx][j];
    }
}

// ---------------------------------------------------------------------------------------------
// v3: the implicit-GEMM core (conv_v3.cuh), fp32 tiles; the TF32 tiles are in conv_tf32.cu.
#include "conv_v3.cuh"

// CONV_V3_KERNELS: suffix, BM, BN, BK, warps (rows x cols), lane rows, stages, min blocks per SM.
// Mirrored by fastconv/backends/cuda/config.py CONV_TILES (tests compare the two).
CONV_V3_KERNELS(t128x128, 128, 128, 8, 4, 2, 4, 3, 1)
CONV_V3_KERNELS(t128x64, 128, 64, 8, 4, 1, 4, 3, 3)
CONV_V3_KERNELS(t64x128, 64, 128, 8, 2, 2, 4, 3, 3)
CONV_V3_KERNELS(t64x64, 64, 64, 8, 2, 1, 4, 3, 6)
CONV_V3_KERNELS(t32x128, 32, 128, 4, 1, 2, 4, 4, 6)
CONV_V3_KERNELS(t64x32, 64, 32, 4, 1, 1, 8, 4, 12)
CONV_V3_KERNELS(t64x128k16, 64, 128, 16, 2, 2, 4, 3, 2)

// Where both reduces write sum i: i itself, or with t_rows > 0 (the sums of a (M, t_rows, t_cols)
// array written as (M, t_cols, t_rows): the TF32 vec backward-weight's (K, R*S, C/G) into dw's
// (K, C/G, R*S), no transpose launch after) its transposed place.
__device__ __forceinline__ unsigned reduce_out_index(unsigned i, int t_rows, int t_cols) {
    if (!t_rows) return i;
    const unsigned plane = (unsigned)t_rows * t_cols, m = i / plane, rem = i - m * plane;
    const unsigned row = rem / (unsigned)t_cols, col = rem - row * (unsigned)t_cols;
    return m * plane + col * (unsigned)t_rows + row;
}

// out[i] = act(sum_z ws[z*total + i] + bias[(i / plane) % channels]) (or with has_bias EPI_GRAD
// the activation's backward at y = b[i]: conv_epilogue) for a few splits (< the
// launcher's REDUCE_WARP_SPLITS): a 32-bit grid-stride loop in which a thread sums the splits of 4
// consecutive outputs in z order with 16-byte loads and stores (vec = 1: total % 4 == 0; else one
// output per thread; transposed (t_rows > 0, reduce_out_index): 4-byte stores). The launcher checks
// total <= INT32_LIMIT. add: out += that (store_or_add; the backward-weight ops' accumulate), reading out too.
// Work: splits*total adds; traffic (splits + 1) * total * 4 B (+ total * 4 B read with add).
extern "C" __global__ void __launch_bounds__(256) conv2d_splitk_reduce_v1(
    const float* __restrict__ ws, float* __restrict__ out, const float* __restrict__ b, int total, int splits,
    int plane, int channels, int has_bias, int act, float slope, int vec, int t_rows, int t_cols, int add) {
    const int per = vec ? 4 : 1;
    GRID_STRIDE32(j, total / per) {
        float r[4] = {0.f, 0.f, 0.f, 0.f};   // indexed by unrolled loops only: registers
        if (vec) {
            float4 s = reinterpret_cast<const float4*>(ws)[j];
            for (int z = 1; z < splits; ++z) {
                const float4 v = reinterpret_cast<const float4*>(ws + (i64)z * total)[j];
                s.x += v.x; s.y += v.y; s.z += v.z; s.w += v.w;
            }
            r[0] = s.x; r[1] = s.y; r[2] = s.z; r[3] = s.w;
        } else {
            r[0] = ws[j];
            for (int z = 1; z < splits; ++z) r[0] += ws[(i64)z * total + j];
        }
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const unsigned i = j * per + e;
            if (e < per)
                r[e] = conv_epilogue(r[e], b, has_bias, (i / (unsigned)plane) % (unsigned)channels, i, act, slope);
        }
        if (vec && !t_rows) {
            float4* o = reinterpret_cast<float4*>(out) + j;
            if (add) {
                const float4 t = *o;
                r[0] += t.x; r[1] += t.y; r[2] += t.z; r[3] += t.w;   // store_or_add's sum, 16 bytes at a time
            }
            *o = make_float4(r[0], r[1], r[2], r[3]);
        } else {
#pragma unroll
            for (int e = 0; e < 4; ++e)
                if (e < per) store_or_add(out + reduce_out_index(j * per + e, t_rows, t_cols), r[e], add);
        }
    }
}

// out[i] = act(sum_z ws[z*total + i] + bias[(i / plane) % channels]) (conv_epilogue, as _v1). Block: 32 consecutive
// outputs (lanes) x min(32, splits) warps (grid x = ceil(total / 32)); warp w sums splits z = w, w + warps, ... (each
// load a coalesced 128-byte row), then warp 0 adds the warps' sums in warp order: deterministic (the order depends on
// splits only). Many splits over few outputs (the small-channel backward-weight: hundreds of slices x K*C*R*S) then
// keep splits/warps loads per thread, not one serial chain. Sum i goes to reduce_out_index(i, t_rows, t_cols), or is
// added there (add, as in _v1). Work: splits*total adds; traffic (splits + 1) * total * 4 B.
extern "C" __global__ void __launch_bounds__(1024) conv2d_splitk_reduce_v2(
    const float* __restrict__ ws, float* __restrict__ out, const float* __restrict__ b, i64 total, int splits,
    int plane, int channels, int has_bias, int act, float slope, int t_rows, int t_cols, int add) {
    __shared__ float part[32][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    const i64 i = blockIdx.x * (i64)32 + lane;
    float s = 0.f;
    if (i < total)
#pragma unroll 4
        for (int z = warp; z < splits; z += nw) s += ws[z * total + i];
    part[warp][lane] = s;
    __syncthreads();
    if (warp > 0 || i >= total) return;
    for (int w2 = 1; w2 < nw; ++w2) s += part[w2][lane];
    s = conv_epilogue(s, b, has_bias, ((unsigned)i / (unsigned)plane) % (unsigned)channels, i, act, slope);
    store_or_add(out + reduce_out_index((unsigned)i, t_rows, t_cols), s, add);   // total <= INT32_LIMIT
}

