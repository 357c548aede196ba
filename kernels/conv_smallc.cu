// conv_smallc.cu - the small-channel conv kernels, for C/G*R*S <= CONV_SMALLC (e.g. LeNet's conv1,
// C = 1, 5x5), where a GEMM tile of conv.cu's v3 core would be mostly padding: direct kernels that
// stage a block's input rows (with halo) and filters in shared memory and hold several outputs per
// thread in registers.
//
// Kernel versions
//   conv2d_forward_smallc_v2         8 filters x 4 adjacent pixels per thread
//   conv2d_backward_data_smallc_v2   2 x 4 pixels of one phase per thread, the filters split over the
//                                    block's warps; only the taps of the phase
//   conv2d_backward_weight_smallc_v1 slices of (image, rows) per block, 16 filters x 4 taps per thread,
//                                    partial dw per block summed by conv.cu's conv2d_splitk_reduce_v2
// All fp32, also under the tf32 setting (they are bound by memory traffic). Tiles:
// fastconv/backends/cuda/smallc_config.py smallc_*; the launchers are conv.py's.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v (tests/test_conv_build.py).
// Index types: every tensor is indexed with 32-bit ints (the launcher checks each size is
// <= 2^31 - 1 - 4096).
#include "common.cuh"
#include "conv_index.cuh"

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

// backward-data's tap loops (register windows): conv_smallc_taps.cuh
#include "conv_smallc_taps.cuh"

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
