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
//       conv2d_splitk_reduce_v1 (a few splits: a thread per 4 outputs) or _v2 (many: warps share the
//       splits of 32 outputs) sums (deterministic: the order depends on splits only), then adds bias/activation
//       (the TF32 vec backward-weight's sums it writes in dw's order: reduce_out_index).
//       Tiles (suffix _tBMxBN) and their __launch_bounds__: the CONV_V3_KERNELS lines below;
//       fastconv/backends/cuda/config.py conv_tile / conv_splits pick tile and splits.
//       Entry points: conv2d_forward_v3_t*, conv2d_backward_data_v3_t*, conv2d_backward_weight_v3_t*;
//       conv2d_pack_forward_v1, conv2d_pack_backward_data_v1, conv2d_splitk_reduce_v1, _v2.
//   v3 tf32  the same core with the product on TF32 tensor cores: kernels/conv_tf32.cu (its own
//       module, so fp32 use never compiles it); it shares the pack kernels and split-K reduces here,
//       and its vec backward-weight gathers from the channels-last copies nchw_to_nhwc_v1 makes.
//   smallc  small-channel kernels for C/G*R*S <= CONV_SMALLC (e.g. LeNet's conv1, C = 1, 5x5), where
//       a GEMM tile would be mostly padding: direct kernels that stage a block's input rows (with
//       halo) and filters in shared memory and hold several outputs per thread in registers.
//       conv2d_forward_smallc_v2 (8 filters x 4 adjacent pixels per thread),
//       conv2d_backward_data_smallc_v2 (2 x 4 pixels of one phase per thread, the filters split
//       over the block's warps; only the taps of the phase), conv2d_backward_weight_smallc_v1 (slices
//       of (image, rows) per block, 16 filters x 4 taps per thread, partial dw per block summed by
//       conv2d_splitk_reduce_v2). All fp32, also under the tf32 setting (they are bound by memory
//       traffic). Tiles: fastconv/backends/cuda/smallc_config.py smallc_*.
//   The conv bias gradient is in bias.cu.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v (tests/test_conv_build.py).
// Index types: every tensor and workspace slice is indexed with 32-bit ints (the launcher checks
// each size is <= 2^31 - 1 - 4096); split workspaces are offset in 64 bits.
#include "common.cuh"
#include "conv_index.cuh"
#include "conv_gemm.cuh"

// The small-channel kernels' limits, mirrored by fastconv/backends/cuda/smallc_config.py (tests compare them).
#define CONV_SMALLC 32               // C/G*R*S limit
#define CONV_SMALLC_KT 8             // filters per thread (forward, backward-weight)
#define CONV_SMALLC_FWD_SMEM 2048    // floats of the forward's staged input tile
#define CONV_SMALLC_BWD_SMEM 4096    // floats of backward-data's staged dy chunk
#define CONV_SMALLC_BWD_WS 1024      // floats of backward-data's staged taps (rows padded to 4)
#define CONV_SMALLC_WGRAD_SMEM 8192  // floats of backward-weight's staged x and dy tiles (32 per thread after)
#define CONV_SMALLC_WGRAD_PITCH 36   // floats per pixel of backward-weight's dy tile (32 filters, 16-byte rows)
#define CONV_SMALLC_WIN 8            // backward-data: the most taps of a row served by a register window
#define CONV_SMALLC_BATCH 8          // loads in flight per thread while staging a tile
#define CONV_SMALLC_WGRAD_VB 4       // 16-byte loads in flight per thread staging backward-weight's dy

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

// ---------------------------------------------------------------------------------------------
// small-channel kernels (C/G*R*S <= CONV_SMALLC). Their tiles are chosen by
// fastconv/backends/cuda/smallc_config.py smallc_*_tile so that the staged tiles fit the shared arrays below.

// Row pitch of a staged tile: >= iw and = 1 (mod 4). A warp's quads (4 adjacent outputs, 4*stride
// floats apart along a row) then start in a different bank on each of 4 consecutive tile rows, so a
// warp covering up to 8 quads x 4 rows reads 32 distinct banks at stride 1.
__device__ __forceinline__ int smallc_pitch(int iw) { return iw + ((1 - iw) & 3); }

// s[ch][i][j] (pitch `pitch`, ch < nch, i < nr, j < nc) = src[base + ch*plane + (h0+i)*W + w0+j], zero
// outside the H x W plane (padding and halo are then plain reads). Consecutive threads take
// consecutive elements (coalesced), advanced by a carry iterator (no division); each thread issues
// CONV_SMALLC_BATCH independent loads before it stores them, so that many loads are in flight per SM
// (a load-store chain per element would leave the staging latency-bound). All threads of the block
// call it.
__device__ __forceinline__ void smallc_stage(float* __restrict__ s, const float* __restrict__ src, int base, int nch,
                                             int plane, int H, int W, int h0, int nr, int w0, int nc, int pitch) {
    const int total = nch * nr * nc;
    TapIter e;  // (ch, i, j)
    for (e.init(threadIdx.x, blockDim.x, nr, nc); e.kk < total;) {
        float v[CONV_SMALLC_BATCH];
        int so[CONV_SMALLC_BATCH];
#pragma unroll
        for (int u = 0; u < CONV_SMALLC_BATCH; ++u) {
            const int h = h0 + e.i, wc = w0 + e.j;
            const bool in = e.kk < total, ok = in && (unsigned)h < (unsigned)H && (unsigned)wc < (unsigned)W;
            v[u] = ok ? src[base + e.a * plane + h * W + wc] : 0.f;
            so[u] = in ? (e.a * nr + e.i) * pitch + e.j : -1;
            e.next();
        }
#pragma unroll
        for (int u = 0; u < CONV_SMALLC_BATCH; ++u)
            if (so[u] >= 0) s[so[u]] = v[u];
    }
}

// y[img,k,p,q] = act(b[k] + sum_{c,r,s} x[img, g*Cg+c, p*sh-ph+r*dh, q*sw-pw+s*dw] * w[k,c,r,s]).
// Block: one image, a tile of tpr output rows x tqq quads (4 adjacent columns), KB = 8 * warps
// filters of group g (grid x = N * tiles, y = filter chunks, z = groups). The input rows the tile
// reads (with halo, zero padding staged as zeros) and its filters, as [c*R*S][KB], are staged in
// shared memory once. Warp w owns filters 8w..8w+7 of the chunk, lane l one quad: per tap 4 input
// loads (a different bank per lane: smallc_pitch) and two broadcast 16-byte weight loads feed 32
// FMAs in registers; no division in the loops. Stores: float4 per filter row when Q % 4 == 0 and y
// is 16-byte aligned (vec), else masked scalars; a warp writes whole output rows (coalesced).
// Work 2*N*K*P*Q*Cg*R*S FLOPs; traffic (x (+ its halo, per filter chunk) + w + y) * 4 B.
extern "C" __global__ void __launch_bounds__(128, 7) conv2d_forward_smallc_v2(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b, float* __restrict__ y,
    CONV_ARGS, int tpr, int tqq, int has_bias, int act, float slope, int vec) {
    __shared__ __align__(16) float xs[CONV_SMALLC_FWD_SMEM];
    __shared__ __align__(16) float ws[CONV_SMALLC * 32];
    const int nw = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, KB = nw * CONV_SMALLC_KT;
    const int g = blockIdx.z, Cg = C / G, Kg = K / G, crs = Cg * R * S, kb0 = blockIdx.y * KB;
    const int ctiles = (((Q + 3) >> 2) + tqq - 1) / tqq, tiles = (P + tpr - 1) / tpr * ctiles;
    const int img = blockIdx.x / tiles, t = blockIdx.x - img * tiles, tr = t / ctiles, tc = t - tr * ctiles;
    const int p0 = tr * tpr, q0 = tc * tqq * 4;
    const int IR = (tpr - 1) * sh + (R - 1) * dh + 1, IW = (4 * tqq - 1) * sw + (S - 1) * dw + 1;
    const int IWP = smallc_pitch(IW);
    smallc_stage(xs, x, (img * C + g * Cg) * H * W, Cg, H * W, H, W, p0 * sh - ph, IR, q0 * sw - pw, IW, IWP);
    for (int e = warp; e < crs; e += nw)  // lane = filter: conflict-free stores
        if (lane < KB) ws[e * KB + lane] = kb0 + lane < Kg ? w[(g * Kg + kb0 + lane) * crs + e] : 0.f;
    __syncthreads();
    const int lr = lane / tqq, qq = lane - lr * tqq, p = p0 + lr, q = q0 + 4 * qq, kq = kb0 + warp * 8;
    if (lr >= tpr || p >= P || q >= Q || kq >= Kg) return;  // past the only barrier
    float acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
    int wo = warp * 8;
    for (int c = 0; c < Cg; ++c)
        for (int r = 0; r < R; ++r) {
            const int xrow = (c * IR + lr * sh + r * dh) * IWP + 4 * qq * sw;
            for (int s = 0; s < S; ++s, wo += KB) {
                const int xo = xrow + s * dw;
                float xv[4];
#pragma unroll
                for (int j = 0; j < 4; ++j) xv[j] = xs[xo + j * sw];
                const float4 w0 = *reinterpret_cast<const float4*>(&ws[wo]);
                const float4 w1 = *reinterpret_cast<const float4*>(&ws[wo + 4]);
                const float wv[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
                for (int i = 0; i < 8; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(xv[j], wv[i], acc[i][j]);
            }
        }
    const int PQ = P * Q;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int k = g * Kg + kq + i;
        if (kq + i >= Kg) break;  // uniform over the warp
        const float bv = has_bias ? b[k] : 0.f;
        const int o = (img * K + k) * PQ + p * Q + q;
        float v[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = conv_act(acc[i][j] + bv, act, slope);
        if (vec) {
            float4 v4; v4.x = v[0]; v4.y = v[1]; v4.z = v[2]; v4.w = v[3];
            *reinterpret_cast<float4*>(&y[o]) = v4;
        } else {
#pragma unroll
            for (int j = 0; j < 4; ++j)
                if (q + j < Q) y[o + j] = v[j];
        }
    }
}

// backward-data's taps of one staged filter chunk for a lane's 2 x 4 pixels (acc[rr][v]: phase row
// 2*lr + rr of the tile, column 4*qq + v): filters k = k0, k0 + kstep, ... < nk, every tap of the
// phase. ws holds the taps as [k][i][jj < sjp] with jj = Sj-1-j, rows padded with zeros to sjp (Sj
// rounded up to 4: one 16-byte broadcast per 4 taps). Output row 2*lr + rr at tap row i reads staged
// row 2*lr + rr + (Ri-1-i)*pstep, and pixel v at tap jj staged column 4*qq + v + jj*qstep.
// SJ > 0 (qstep == 1, SJ taps a row, fully unrolled): the SJ + 3 dy values of a staged row are loaded
// once (a register window) for its SJ taps; with pstep == 1 a staged row serves both output rows
// (Ri + 1 rows loaded per filter, not 2 * Ri). SJ == 0: any qstep and tap count, 4 loads per tap.
template <int SJ>
__device__ __forceinline__ void smallc_bwd_row(const float* __restrict__ ds, const float* __restrict__ ws, int row,
                                               int wrow, int Sj, int qstep, float (&a)[4]) {
    if (SJ > 0) {
        float win[SJ + 3], wt[SJ > 0 ? (SJ + 3) & ~3 : 4];
#pragma unroll
        for (int m = 0; m < SJ + 3; ++m) win[m] = ds[row + m];
#pragma unroll
        for (int m = 0; m < SJ; m += 4) {
            const float4 w4 = *reinterpret_cast<const float4*>(&ws[wrow + m]);
            wt[m] = w4.x; wt[m + 1] = w4.y; wt[m + 2] = w4.z; wt[m + 3] = w4.w;
        }
#pragma unroll
        for (int jj = 0; jj < SJ; ++jj)
#pragma unroll
            for (int v = 0; v < 4; ++v) a[v] = fmaf(win[v + jj], wt[jj], a[v]);
    } else {
        for (int jj = 0; jj < Sj; ++jj) {
            const float wv = ws[wrow + jj];
            const int col = row + jj * qstep;
#pragma unroll
            for (int v = 0; v < 4; ++v) a[v] = fmaf(ds[col + v], wv, a[v]);
        }
    }
}

template <int SJ>
__device__ __forceinline__ void smallc_bwd_taps(const float* __restrict__ ds, const float* __restrict__ ws,
                                                const Phase& f, int k0, int nk, int kstep, int plane, int IWP,
                                                int sjp, int lr, int qq, float (&acc)[2][4]) {
    for (int k = k0; k < nk; k += kstep) {
        const int kb = k * plane + 2 * lr * IWP + 4 * qq, kw = k * f.Ri * sjp;
        if (SJ > 0 && f.pstep == 1) {
            for (int rho = 0; rho <= f.Ri; ++rho) {  // staged row 2*lr + rho: tap row Ri-1-rho+rr of row rr
                float win[SJ + 3];
#pragma unroll
                for (int m = 0; m < SJ + 3; ++m) win[m] = ds[kb + rho * IWP + m];
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) {
                    const int i = f.Ri - 1 - rho + rr;
                    if ((unsigned)i >= (unsigned)f.Ri) continue;  // uniform
                    float wt[SJ > 0 ? (SJ + 3) & ~3 : 4];
#pragma unroll
                    for (int m = 0; m < SJ; m += 4) {
                        const float4 w4 = *reinterpret_cast<const float4*>(&ws[kw + i * sjp + m]);
                        wt[m] = w4.x; wt[m + 1] = w4.y; wt[m + 2] = w4.z; wt[m + 3] = w4.w;
                    }
#pragma unroll
                    for (int jj = 0; jj < SJ; ++jj)
#pragma unroll
                        for (int v = 0; v < 4; ++v) acc[rr][v] = fmaf(win[v + jj], wt[jj], acc[rr][v]);
                }
            }
        } else {
#pragma unroll
            for (int rr = 0; rr < 2; ++rr)
                for (int i = 0; i < f.Ri; ++i)
                    smallc_bwd_row<SJ>(ds, ws, kb + (rr + (f.Ri - 1 - i) * f.pstep) * IWP, kw + i * sjp, f.Sj, f.qstep,
                                       acc[rr]);
        }
    }
}

// dx[img,c,h,w] = sum_{k in c's group} sum over the taps of (h, w)'s phase of dy[img,k,p,q] * w[k,c,r,s]
// (phase = (h % sh, w % sw): only the taps r = r0 + i*rstep, s = s0 + j*sstep that reach it, dy row
// p = t + pbase - i*pstep for h = h0 + t*sh; bwd_phase in conv_index.cuh). Block: one image, one
// channel c (grid y), one phase (grid z), a tile of tpr pairs of phase rows x tqq quads of phase
// columns (grid x = N * tiles of the largest phase). The dy rows of the tile (halo, zero outside dy)
// for kc filters at a time and the phase's taps of those filters for channel c are staged in shared
// memory; the block's warps split the filters (warp w takes k = w, w + warps, ...) and sum their 8
// partial outputs per lane in warp order through shared memory at the end (deterministic). Lane l
// computes 2 rows x 4 adjacent pixels: when qstep == 1 (every stride-1 conv and stride 2 without
// dilation) and a phase row has <= CONV_SMALLC_WIN taps, through register windows unrolled for that
// tap count (smallc_bwd_taps); otherwise 4 loads per tap. No division in the loops. The stores add
// b[c] (has_bias EPI_BIAS) and apply the activation act (conv_act): ConvTranspose2d's bias and
// activation; or (EPI_GRAD) the backward of act at y = b[dx's index] (conv_epilogue).
// Work 2*N*C*H*W*Kg*R*S/(sh*sw) FLOPs; traffic (dy (+ halo rows, per channel c) + w + dx) * 4 B.
extern "C" __global__ void __launch_bounds__(128, 6) conv2d_backward_data_smallc_v2(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, CONV_ARGS, int tpr, int tqq,
    int kc, int vec, const float* __restrict__ b, int has_bias, int act, float slope) {
    __shared__ __align__(16) float ds[CONV_SMALLC_BWD_SMEM];
    __shared__ __align__(16) float ws[CONV_SMALLC_BWD_WS];
    __shared__ float red[3 * 8 * 32];
    const int nw = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int c = blockIdx.y, Cg = C / G, Kg = K / G, g = c / Cg, cl = c - g * Cg, RS = R * S;
    const Phase f = bwd_phase(blockIdx.z, H, W, R, S, sh, sw, ph, pw, dh, dw);
    const int ctiles = ((((W + sw - 1) / sw + 3) >> 2) + tqq - 1) / tqq;
    const int tiles = (((H + sh - 1) / sh + 1) / 2 + tpr - 1) / tpr * ctiles;
    const int img = blockIdx.x / tiles, t = blockIdx.x - img * tiles, tr = t / ctiles, tc = t - tr * ctiles;
    const int t0 = tr * tpr * 2, u0 = tc * tqq * 4;
    if (t0 >= f.Ht || u0 >= f.Wt) return;  // uniform: this phase is smaller than the largest one
    const int lr = lane / tqq, qq = lane - lr * tqq, tt = t0 + 2 * lr, uu = u0 + 4 * qq;
    const bool live = lr < tpr && tt < f.Ht && uu < f.Wt;
    float acc[2][4];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[rr][v] = 0.f;
    if (f.Ri > 0 && f.Sj > 0) {  // else no tap reaches the phase: dx = 0
        const int IR = 2 * tpr + (f.Ri - 1) * f.pstep, IW = 4 * tqq + (f.Sj - 1) * f.qstep, IWP = smallc_pitch(IW);
        const int plane = IR * IWP, PQ = P * Q;
        const int window = f.qstep == 1 && f.Sj <= CONV_SMALLC_WIN ? f.Sj : 0;
        const int sjp = (f.Sj + 3) & ~3, taps = f.Ri * sjp;  // weight rows padded to 16 bytes (LDS.128)
        int wtap[4];  // the filter offset of the taps this lane stages, (i, jj) = (t / sjp, t % sjp) for
                      // t = lane + 32u < taps <= R * (S + 3) <= 128; -1: padding (zero)
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int t = lane + 32 * u, ti = t / sjp, tj = t - ti * sjp;
            wtap[u] = t < taps && tj < f.Sj ? (f.r0 + ti * f.rstep) * S + f.s0 + (f.Sj - 1 - tj) * f.sstep : -1;
        }
        for (int k0 = 0; k0 < Kg; k0 += kc) {
            const int nk = min(kc, Kg - k0);
            __syncthreads();  // the previous chunk is no longer read
            smallc_stage(ds, dy, (img * K + g * Kg + k0) * PQ, nk, PQ, P, Q, t0 + f.pbase - (f.Ri - 1) * f.pstep, IR,
                         u0 + f.qbase - (f.Sj - 1) * f.qstep, IW, IWP);
            for (int k = warp; k < nk; k += nw) {
                const int wk = ((g * Kg + k0 + k) * Cg + cl) * RS;
#pragma unroll
                for (int u = 0; u < 4; ++u)
                    if (lane + 32 * u < taps) ws[k * taps + lane + 32 * u] = wtap[u] >= 0 ? w[wk + wtap[u]] : 0.f;
            }
            __syncthreads();
            if (!live) continue;
            switch (window) {  // uniform: the phase's taps per row, unrolled
#define SMALLC_BWD_CASE(SJ) \
    case SJ: smallc_bwd_taps<SJ>(ds, ws, f, warp, nk, nw, plane, IWP, sjp, lr, qq, acc); break;
                SMALLC_BWD_CASE(1) SMALLC_BWD_CASE(2) SMALLC_BWD_CASE(3) SMALLC_BWD_CASE(4)
                SMALLC_BWD_CASE(5) SMALLC_BWD_CASE(6) SMALLC_BWD_CASE(7) SMALLC_BWD_CASE(8)
#undef SMALLC_BWD_CASE
                default: smallc_bwd_taps<0>(ds, ws, f, warp, nk, nw, plane, IWP, sjp, lr, qq, acc);
            }
        }
    }
    __syncthreads();  // every warp's partial sums are complete
    if (warp > 0)
#pragma unroll
        for (int a = 0; a < 8; ++a) red[((warp - 1) * 8 + a) * 32 + lane] = acc[a >> 2][a & 3];
    __syncthreads();
    if (warp > 0 || !live) return;
    for (int w2 = 1; w2 < nw; ++w2)
#pragma unroll
        for (int a = 0; a < 8; ++a) acc[a >> 2][a & 3] += red[((w2 - 1) * 8 + a) * 32 + lane];
    if (has_bias == EPI_GRAD) {   // the activation's outputs at dx's indices, read (and dx written) in range only
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            if (tt + rr >= f.Ht) break;
            const int o = (img * C + c) * H * W + (f.h0 + (tt + rr) * sh) * W + f.w0 + uu * sw;
#pragma unroll
            for (int v = 0; v < 4; ++v)
                if (uu + v < f.Wt) dx[o + v * sw] = conv_act_grad(acc[rr][v], b[o + v * sw], act, slope);
        }
        return;
    }
    const float bc = has_bias ? b[c] : 0.f;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        if (tt + rr >= f.Ht) break;
        const int o = (img * C + c) * H * W + (f.h0 + (tt + rr) * sh) * W + f.w0 + uu * sw;
        float y[4];
#pragma unroll
        for (int v = 0; v < 4; ++v) y[v] = conv_act(acc[rr][v] + bc, act, slope);
        if (vec) {  // sw == 1 and W % 4 == 0: the quad is 4 aligned floats
            *reinterpret_cast<float4*>(&dx[o]) = make_float4(y[0], y[1], y[2], y[3]);
        } else {
#pragma unroll
            for (int v = 0; v < 4; ++v)
                if (uu + v < f.Wt) dx[o + v * sw] = y[v];
        }
    }
}

// dw[k,c,r,s] = sum_{img,p,q} dy[img,k,p,q] * x[img, g*Cg+c, p*sh-ph+r*dh, q*sw-pw+s*dw]: the long
// axis is the reduction over N*P*Q. A slice is (image, tp output rows); block x takes slices
// x*per .. x*per+per-1 (grid y = chunks of 32 filters, z = groups), stages each slice's x rows
// (halo, zero padding) as [c][row][pitch] and its dy as [pixel][32 filters + 4] (16-byte rows for
// LDS.128) in shared memory, and accumulates in registers: thread = (slot, part), a slot owning 16
// filters x 4 consecutive (c,r,s) taps (64 outputs; NO = ceil(KB/16) * ceil(Cg*R*S/4) slots), the
// 256/NO parts taking every part-th pixel of the slice (per pixel: 4 x loads at offsets fixed per
// thread, 4 LDS.128 of dy, 64 FMAs; the pixel advanced by a carry iterator, no division). At the
// end the parts are summed in part order through shared memory (two halves of 8 filters: the buffer
// holds 32 floats per thread) and the block writes its partial dw
// to out[blockIdx.x] ([splits][K][Cg*R*S], summed by conv2d_splitk_reduce_v2; dw itself when one
// block per chunk). 256 threads. Work 2*K*Cg*R*S*N*P*Q FLOPs; traffic (dy + x (+ halo rows) +
// splits * dw) * 4 B.
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_backward_weight_smallc_v1(
    const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ out, CONV_ARGS, int tp, int per,
    int vec) {
    __shared__ __align__(16) float sm[CONV_SMALLC_WGRAD_SMEM];
    const int nw = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = blockIdx.z, Cg = C / G, Kg = K / G, RS = R * S, crs = Cg * RS, kb0 = blockIdx.y * 32;
    const int nk = min(32, Kg - kb0), eg = (crs + 3) >> 2, NO = ((min(Kg, 32) + 15) >> 4) * eg;
    const int npart = blockDim.x / NO, slot = threadIdx.x % NO, part = threadIdx.x / NO;
    const int kt = slot / eg, e0 = 4 * (slot - kt * eg);
    const int IR = (tp - 1) * sh + (R - 1) * dh + 1, IW = (Q - 1) * sw + (S - 1) * dw + 1, IWP = smallc_pitch(IW);
    const int dso = (Cg * IR * IWP + 3) & ~3;  // the dy tile follows the x tile, 16-byte aligned
    int off[4];  // the x offset of each tap of the slot, relative to a pixel's (row 0, column 0)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int e = min(e0 + j, crs - 1), c = e / RS, rs = e - c * RS, r = rs / S, s = rs - r * S;
        off[j] = (c * IR + r * dh) * IWP + s * dw;
    }
    float acc[16][4];
#pragma unroll
    for (int i = 0; i < 16; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
    const int rtiles = (P + tp - 1) / tp, nsl = N * rtiles, PQ = P * Q;
    int sl = blockIdx.x * per, img = sl / rtiles, rt = sl - img * rtiles;
    for (int n = 0; n < per && sl < nsl; ++n, ++sl) {
        const int p0 = rt * tp, npix = min(tp, P - p0) * Q;
        __syncthreads();  // the previous slice is no longer read
        smallc_stage(sm, x, (img * C + g * Cg) * H * W, Cg, H * W, H, W, p0 * sh - ph, IR, -pw, IW, IWP);
        // dy tile: lane = filter (conflict-free transposed stores), warps over pixels, batches of
        // independent loads (16-byte ones when the rows are 16-byte aligned: vec).
        const int dbase = (img * K + g * Kg + kb0 + lane) * PQ + p0 * Q, dst = dso + lane;
        const bool kin = lane < nk;
        if (vec) {
            for (int i0 = 4 * warp; i0 < npix; i0 += 4 * nw * CONV_SMALLC_WGRAD_VB) {
                float4 v[CONV_SMALLC_WGRAD_VB];
#pragma unroll
                for (int u = 0; u < CONV_SMALLC_WGRAD_VB; ++u) {
                    const int i = i0 + 4 * nw * u;
                    v[u].x = v[u].y = v[u].z = v[u].w = 0.f;
                    if (kin && i < npix) v[u] = *reinterpret_cast<const float4*>(&dy[dbase + i]);
                }
#pragma unroll
                for (int u = 0; u < CONV_SMALLC_WGRAD_VB; ++u) {
                    const int i = i0 + 4 * nw * u, o = dst + i * CONV_SMALLC_WGRAD_PITCH;
                    if (i < npix) {
                        sm[o] = v[u].x;
                        sm[o + CONV_SMALLC_WGRAD_PITCH] = v[u].y;
                        sm[o + 2 * CONV_SMALLC_WGRAD_PITCH] = v[u].z;
                        sm[o + 3 * CONV_SMALLC_WGRAD_PITCH] = v[u].w;
                    }
                }
            }
        } else {
            for (int i0 = warp; i0 < npix; i0 += nw * CONV_SMALLC_BATCH) {
                float v[CONV_SMALLC_BATCH];
#pragma unroll
                for (int u = 0; u < CONV_SMALLC_BATCH; ++u) {
                    const int i = i0 + nw * u;
                    v[u] = kin && i < npix ? dy[dbase + i] : 0.f;
                }
#pragma unroll
                for (int u = 0; u < CONV_SMALLC_BATCH; ++u)
                    if (i0 + nw * u < npix) sm[dst + (i0 + nw * u) * CONV_SMALLC_WGRAD_PITCH] = v[u];
            }
        }
        __syncthreads();
        if (part < npart) {
            TapIter px;  // pixel kk = (row a, column j) of the slice
            for (px.init(part, npart, 1, Q); px.kk < npix; px.next()) {
                const int xo = px.a * sh * IWP + px.j * sw, d = dso + px.kk * CONV_SMALLC_WGRAD_PITCH + kt * 16;
                float xv[4], dv[16];
#pragma unroll
                for (int j = 0; j < 4; ++j) xv[j] = sm[xo + off[j]];
#pragma unroll
                for (int i = 0; i < 16; i += 4) {
                    const float4 d4 = *reinterpret_cast<const float4*>(&sm[d + i]);
                    dv[i] = d4.x; dv[i + 1] = d4.y; dv[i + 2] = d4.z; dv[i + 3] = d4.w;
                }
#pragma unroll
                for (int i = 0; i < 16; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(dv[i], xv[j], acc[i][j]);
            }
        }
        if (++rt == rtiles) { rt = 0; ++img; }
    }
    const int e = lane;  // crs <= 32: lane = tap
    for (int half = 0; half < 2; ++half) {  // filters k with (k & 15) / 8 == half
        __syncthreads();  // the tiles (then the previous half) are no longer read
        if (part < npart)
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) sm[(i * 4 + j) * blockDim.x + threadIdx.x] = acc[8 * half + i][j];
        __syncthreads();
        if (e < crs)
            for (int k = warp; k < nk; k += nw) {
                if (((k >> 3) & 1) != half) continue;
                const int o = ((k & 7) * 4 + (e & 3)) * blockDim.x + (k >> 4) * eg + (e >> 2);
                float s = 0.f;
                for (int q2 = 0; q2 < npart; ++q2) s += sm[o + q2 * NO];
                out[(i64)blockIdx.x * K * crs + (g * Kg + kb0 + k) * crs + e] = s;
            }
    }
}
