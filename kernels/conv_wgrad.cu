// conv_wgrad.cu - direct fp32 backward-weight of 2-D convolution (NCHW, weights K x C/G x R x S):
// dw[k,c,r,s] = sum_{img,p,q} dy[img,k,p,q] * x[img, g*Cg + c, p*sh - ph + r*dh, q*sw - pw + s*dw].
//
// Kernel versions
//   conv2d_backward_weight_direct_v1  staged slices of the reduction, 8 filters x 8 channels per
//       thread at one tap; run with the conv_tile setting "wgrad_direct" (fastconv/backends/cuda/
//       wgrad_config.py WGRAD_DIRECT), next to conv.cu's GEMM kernels (conv2d_backward_weight_v3_t*).
//
// Why: the v3 core runs this pass as a GEMM (M = K/G, N = C/G*R*S, reduction N*P*Q) whose B
// operand is gathered from x element by element (an address, two bounds compares and a 4-byte
// cp.async per element), with loops of 12-50 k steps per block on lenet.conv2 and a 64-128 slice
// split whose partials (13-26 MB there) a second kernel reads back. This kernel stages instead
// each slice of the reduction (one image, tp output rows) once per block in shared memory: the
// x rows the slice reads for the block's channel octets (halo and zero padding staged as zeros,
// channel-last so a tap's 8 channels are two 16-byte loads) and the slice's dy rows of 64 filters
// ([pixel / 4][k][4]: a filter's 4 consecutive pixels one 16-byte load, the 64 filters of 4 pixels
// 1 KiB contiguous). Every tap (r, s) is then a fixed offset into the staged x and every pixel an
// entry of a per-slice table: no address or bounds work per element in the main loop, and a block
// sums many slices (long loops, one wave of blocks).
//
// Block: 64 filters (grid z = groups x ceil(K/G / 64)) x tgb (channel octet, tap) pairs (grid y =
// ceil(ceil(C/G / 8) * R*S / tgb): consecutive pairs, tap fastest, so a block's pairs span one or a
// few octets; wgrad_config.wgrad_direct_tile picks tgb, a multiple of 4 <= 32, for the fewest idle pairs).
// Thread (kg = tid % 8, pair = tid / 8), 8 * tgb threads (whole warps), holds filters kg + 8i
// (i < 8) x the 8 channels of its octet at its tap: 64 outputs. Lanes 8j..8j+7 share a pair, so a
// warp's x loads are 4 distinct float4 (consecutive taps, CP = 8 floats apart, or CP = 8*octets + 4
// when the block spans several: conflict-free) and its dy loads 8 consecutive float4
// (conflict-free, at offsets fixed per thread: no address work). Per 4 pixels: one 16-byte load of
// the pixel table, 8 of dy, 8 of x, 256 FFMA. Grid x = splits: block x sums slices
// x*per .. x*per + per - 1 (of N * row tiles), two stages of cp.async in flight (the next slice
// staged while this one is summed), and writes its partial dw to out[blockIdx.x] ([splits][K][C/G*R*S],
// summed by conv.cu's conv2d_splitk_reduce_v1 / _v2; dw itself when unsplit).
// fastconv/backends/cuda/wgrad_config.py mirrors the geometry (tests compare the defines).
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v (tests/test_conv_build.py).
#include "common.cuh"
#include "conv_index.cuh"

#define CONV_WGRAD_KB 64       // filters per block (8 per thread, kg + 8i)
#define CONV_WGRAD_CB 8        // channels of a thread (an octet), at one tap
#define CONV_WGRAD_PAIRS 32    // (octet, tap) pairs per block, at most (8 threads each)
#define CONV_WGRAD_STAGE 6136  // floats of one pipeline stage (x tile, pixel table, dy tile); two: 49,088 B
#define CONV_WGRAD_MINB 2      // blocks per SM of __launch_bounds__ (<= 128 registers)

// A block's operands and staged geometry. Stage layout (floats, from the stage's offset sb in sm):
// x tile [XR][XC][CP] (x row p0*sh - ph + row, column col - pw, channel cbase + ch for ch < NCH, the
// block's octets; CP >= NCH the pitch), the pixel table at TOFF (NP ints: where pixel pix's x
// starts, from sm), dy tile [NP / 4][64][4] at DOFF (filter kbase + k, pixel p0*Q + pix; zero past
// the slice). NP = tp*Q rounded up to 4.
struct WgradDirect {
    const float* x;
    const float* dy;
    int C, H, W, K, Q, PQ, sh, sw, ph, pw;
    int cbase, NCH, ncb;  // first channel of the block (all groups), its octets' channels, those inside the group
    int kbase, nkb;  // first filter of the block (all groups), filters of the 64 inside the group
    int XR, XC, CP, NP, TOFF, DOFF;
    // One slice (image img, output rows from p0, npix pixels) into the stage at sm + sb: x and dy by
    // cp.async, consecutive threads taking consecutive x columns (coalesced) and consecutive dy tile
    // elements (runs of 4 pixels of a filter), each a 4-byte copy with zero-fill, or with vec (P*Q
    // and tp*Q multiples of 4, dy 16-byte aligned: every run 16-byte aligned) one 16-byte copy per
    // run, zero-filled past npix; the pixel table by plain stores. Pixel (a, j) of the slice (row a, column j) starts at sb + (a*sh*XC + j*sw)*CP;
    // pixels npix..NP-1 (the last group of 4 past the slice) point at pixel 0, whose finite x their
    // zero dy multiplies.
    __device__ __forceinline__ void stage(float* sm, int sb, int img, int p0, int npix, int vec) const {
        float* st = sm + sb;
        const int xn = NCH * XR * XC, h0 = p0 * sh - ph;
        TapIter e;  // (ch, row, col)
        for (e.init(threadIdx.x, blockDim.x, XR, XC); e.kk < xn; e.next()) {
            const int h = h0 + e.i, w = e.j - pw;
            const bool ok = e.a < ncb && (unsigned)h < (unsigned)H && (unsigned)w < (unsigned)W;
            cp_async_ca4(st + (e.i * XC + e.j) * CP + e.a, ok ? x + ((img * C + cbase + e.a) * H + h) * W + w : x,
                         ok ? 4 : 0);
        }
        const int dn = CONV_WGRAD_KB * NP, d0 = (img * K + kbase) * PQ + p0 * Q;
        if (vec) {
            for (e.init(threadIdx.x, blockDim.x, 1, CONV_WGRAD_KB); e.kk < dn / 4; e.next()) {  // (pix / 4, 0, k)
                const int pix = 4 * e.a, left = e.j < nkb ? npix - pix : 0;
                cp_async_cg16(st + DOFF + 4 * e.kk, left > 0 ? dy + d0 + e.j * PQ + pix : dy, left >= 4 ? 16 : max(left, 0) * 4);
            }
        } else {
            for (e.init(threadIdx.x, blockDim.x, CONV_WGRAD_KB, 4); e.kk < dn; e.next()) {  // (pix / 4, k, pix % 4)
                const int pix = 4 * e.a + e.j;
                const bool ok = e.i < nkb && pix < npix;
                cp_async_ca4(st + DOFF + e.kk, ok ? dy + d0 + e.i * PQ + pix : dy, ok ? 4 : 0);
            }
        }
        int* tab = reinterpret_cast<int*>(st + TOFF);
        for (int pix = threadIdx.x; pix < NP; pix += blockDim.x) {
            const int a = pix / Q, j = pix - a * Q;
            tab[pix] = sb + (pix < npix ? (a * sh * XC + j * sw) * CP : 0);
        }
    }
};

// acc[i][c] += sum over the slice's npix pixels of dy[kg + 8i][pix] * x[ch c at the thread's tap of
// pix], from the stage at sm + sb: per 4 pixels one 16-byte load of the pixel table, 8 of dy (the
// thread's 8 filters x 4 pixels) and 2 of x per pixel (its 8 channels at its tap, tapoff past the
// pixel's start), 256 FFMA; no division, no bounds test.
__device__ __forceinline__ void wgrad_direct_pixels(const float* sm, int sb, const WgradDirect& d, int tapoff, int kg,
                                                    int npix, float (&acc)[8][8]) {
    const float* ds = sm + sb + d.DOFF + 4 * kg;
    const int* tab = reinterpret_cast<const int*>(sm + sb + d.TOFF);
    for (int pix = 0; pix < npix; pix += 4, ds += 4 * CONV_WGRAD_KB, tab += 4) {
        float4 dv[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) dv[i] = *reinterpret_cast<const float4*>(ds + 32 * i);
        const int4 t4 = *reinterpret_cast<const int4*>(tab);
        const int xo[4] = {t4.x + tapoff, t4.y + tapoff, t4.z + tapoff, t4.w + tapoff};
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const float4 x0 = *reinterpret_cast<const float4*>(sm + xo[u]);
            const float4 x1 = *reinterpret_cast<const float4*>(sm + xo[u] + 4);
            const float xv[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const float dk = u == 0 ? dv[i].x : u == 1 ? dv[i].y : u == 2 ? dv[i].z : dv[i].w;
#pragma unroll
                for (int c = 0; c < 8; ++c) acc[i][c] = fmaf(dk, xv[c], acc[i][c]);
            }
        }
    }
}

#define CONV_ARGS int N, int C, int H, int W, int K, int R, int S, int P, int Q, \
                  int sh, int sw, int ph, int pw, int dh, int dw, int G

// tp: output rows per slice, tgb: (octet, tap) pairs per block (wgrad_config.wgrad_direct_tile: two stages
// fit CONV_WGRAD_STAGE each); per: slices per block; vec: dy staged by 16-byte copies (stage()).
// Block: 8 * tgb threads.
// Work 2*K*Cg*R*S*N*P*Q FLOPs; traffic (dy x grid y + x (+ halo rows) x ceil(K/G / 64) x about
// (1 + R*S / tgb) + splits * K*Cg*R*S) * 4 B.
extern "C" __global__ void __launch_bounds__(256, CONV_WGRAD_MINB) conv2d_backward_weight_direct_v1(
    const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ out, CONV_ARGS, int tp, int tgb,
    int per, int vec) {
    __shared__ __align__(16) float sm[2 * CONV_WGRAD_STAGE];
    const int Cg = C / G, Kg = K / G, RS = R * S, crs = Cg * RS;
    const int kchunks = (Kg + CONV_WGRAD_KB - 1) / CONV_WGRAD_KB, npair = (Cg + CONV_WGRAD_CB - 1) / CONV_WGRAD_CB * RS;
    const int g = blockIdx.z / kchunks, kb0 = (blockIdx.z - g * kchunks) * CONV_WGRAD_KB;
    const int e0 = blockIdx.y * tgb, o0 = e0 / RS, octs = (min(e0 + tgb, npair) - 1) / RS - o0 + 1;
    WgradDirect d;
    d.x = x; d.dy = dy;
    d.C = C; d.H = H; d.W = W; d.K = K; d.Q = Q; d.PQ = P * Q; d.sh = sh; d.sw = sw; d.ph = ph; d.pw = pw;
    d.cbase = g * Cg + o0 * CONV_WGRAD_CB; d.NCH = octs * CONV_WGRAD_CB; d.ncb = Cg - o0 * CONV_WGRAD_CB;
    d.kbase = g * Kg + kb0; d.nkb = min(CONV_WGRAD_KB, Kg - kb0);
    d.XR = (tp - 1) * sh + (R - 1) * dh + 1;
    d.XC = (Q - 1) * sw + (S - 1) * dw + 1;
    d.CP = octs == 1 ? CONV_WGRAD_CB : d.NCH + 4;  // + 4: consecutive taps' float4 in distinct banks
    d.NP = (tp * Q + 3) & ~3;
    d.TOFF = d.CP * d.XR * d.XC;
    d.DOFF = d.TOFF + d.NP;
    const int kg = threadIdx.x % 8, e = e0 + threadIdx.x / 8;
    const bool live = e < npair;
    const int o = live ? e / RS : o0, t = live ? e - o * RS : 0, r = t / S, s = t - r * S;
    const int tapoff = (r * dh * d.XC + s * dw) * d.CP + (o - o0) * CONV_WGRAD_CB;
    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int c = 0; c < 8; ++c) acc[i][c] = 0.f;
    const int rtiles = (P + tp - 1) / tp, sl0 = blockIdx.x * per, nloc = min(per, N * rtiles - sl0);
    int img = sl0 / rtiles, rt = sl0 - img * rtiles;  // the slice being summed
    int simg = img, srt = rt;                          // the next slice to stage
    auto stage_next = [&](int buf) {
        const int p0 = srt * tp;
        d.stage(sm, buf * CONV_WGRAD_STAGE, simg, p0, min(tp, P - p0) * Q, vec);
        if (++srt == rtiles) { srt = 0; ++simg; }
    };
    if (nloc > 0) stage_next(0);
    cp_async_commit_group();
    for (int n = 0; n < nloc; ++n) {
        if (n + 1 < nloc) stage_next((n + 1) & 1);
        cp_async_commit_group();
        cp_async_wait_group<1>();
        __syncthreads();  // slice n is staged for all threads
        const int p0 = rt * tp;
        if (live) wgrad_direct_pixels(sm, (n & 1) * CONV_WGRAD_STAGE, d, tapoff, kg, min(tp, P - p0) * Q, acc);
        __syncthreads();  // stage n & 1 is restaged at n + 1
        if (++rt == rtiles) { rt = 0; ++img; }
    }
    cp_async_wait_all();
    if (!live) return;
    float* op = out + (i64)blockIdx.x * K * crs;  // this block's split slice
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        if (kb0 + kg + 8 * i >= Kg) break;
#pragma unroll
        for (int c = 0; c < 8; ++c)
            if (o * CONV_WGRAD_CB + c < Cg) op[(d.kbase + kg + 8 * i) * crs + (o * CONV_WGRAD_CB + c) * RS + t] = acc[i][c];
    }
}
