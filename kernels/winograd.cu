// winograd.cu - conv2d by Winograd's minimal filtering on 4 x 4 tiles, for stride 1, dilation 1, one
// group and a square R x R filter (R = 3 or 5): A = R + 3 points, so a tile costs A^2 multiply-adds
// per (channel pair) instead of 16 R^2 (5 x 5: 64 against 400; 3 x 3: 36 against 144).
//   forward        y_t = AT [ sum over c of (G w G^T)[k, c] (.) (BT x_t B)[c] ] A  (F(4, R)),
//                  x_t the A x A patch of x that output tile t's windows read (zeros outside);
//   backward-data  the forward of dy with the filter flipped and transposed, padding R - 1 - pad;
//   backward-weight dw[k, c] = AT [ sum over n, t of (G dy_t G^T)[k] (.) (BT x_t B)[c] ] A  (F(R, 4)),
//                  dy_t the 4 x 4 tile t of dy (zeros past P, Q).
// The sums are the v3 GEMM core's (conv.cu), fp32: forward and backward-data as a 1x1 forward in A^2
// groups (input V[n, xi, c, t], weights U[xi, c, k] written in the GEMM's packed layout, so no pack
// launch; output Y[n, xi, k, t]), backward-weight as a 1x1 backward-weight in A^2 groups (dy
// U[n, xi, k, t], x V[n, xi, c, t]), split along their reduction as any (the split-K reduce adds the
// splits of backward-weight's products M[xi, k, c] before its output transform). The transforms'
// points are 0, +-1, +-2, +-1/2 and infinity (Toom-Cook): A - 1 finite points p_j and
// 1 / prod_{l != j} (p_j - p_l) give AT[i][j] = p_j^i and G[j][k] = p_j^k / prod (the
// infinity column / row is the unit vector at the last index), BT is tabled; every power of these
// points is 0 or a power of 2, so AT and G are exact products. The tables are winograd_tables.cuh.
//
// Kernel versions (suffix _r3 / _r5: R)
//   conv2d_winograd_input_v3_r*   one thread per slot (n, channel, tile): its A x A patch, BT d B -> V
//                                 (the v1 form again: on an H200 it took 7.3 us of resnet.c4's forward
//                                 and 14.4 of lenet.conv2's backward-data where v2, A threads per slot
//                                 through shared memory, took 12.2 and 22.1).
//   conv2d_winograd_filter_v2_r*  one thread per (k, c): G w G^T -> U, packed as the forward GEMM's
//                                 weights (conv_index.cuh packed_forward_at: group xi, reduction
//                                 index c, output channel k); flip: of the flipped filter with k and
//                                 c swapped (backward-data's weights). Blocks of WINO_FT_M output
//                                 channels x WINO_FT_KK reduction indices, output channels fastest
//                                 (coalesced stores in both orientations), the block's filters
//                                 staged in shared memory by contiguous row loads.
//   conv2d_winograd_output_v2_r*  A threads per slot (n, k, tile): AT Y_t A, + bias, activation, the
//                                 tile's in-range pixels written.
//   conv2d_winograd_wgrad_dy_v3_r*      one thread per slot (n, k, tile): its 4 x 4 dy tile, G d G^T -> U
//                                 (the v1 form again: lenet.conv2 10.2 us against v2's 13.5, H200).
//   conv2d_winograd_wgrad_output_v2_r*  one thread per (k, c, output row r): row r of AT m A ->
//                                 dw[k, c, r] (or added to it), m the products M[xi, k, c] (their
//                                 splits already summed).
// Consecutive threads take consecutive tiles (or channels), so each xi's stores are coalesced; index
// math is 32-bit (the launcher checks every array against INT32_LIMIT).
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/winograd.cu
#include "common.cuh"
#include "conv_index.cuh"
#include "winograd_tables.cuh"

typedef unsigned int u32;

constexpr int WINO_M = 4;  // tile side (config.WINOGRAD_TILE)
// The filter transform's block: WINO_FT_M output channels x WINO_FT_KK reduction indices of the
// products' GEMM, one thread each (config.WINOGRAD_FILTER_BLOCK).
constexpr int WINO_FT_M = 32, WINO_FT_KK = 8;

// out = L d L^T for an I x I block d and an O x I matrix L given as l(o, i), in one thread: the filter
// transform's G w G^T, the input transform's BT d B, the dy transform's G d G^T (the output transform
// spreads its AT Y A over A threads).
template <int O, int I, class L>
__device__ __forceinline__ void transform2d(const float (&d)[I][I], float (&out)[O][O], L l) {
    float e[O][I];
#pragma unroll
    for (int o = 0; o < O; ++o)
#pragma unroll
        for (int j = 0; j < I; ++j) {
            float acc = 0.f;
#pragma unroll
            for (int i = 0; i < I; ++i) acc = fmaf(l(o, i), d[i][j], acc);
            e[o][j] = acc;
        }
#pragma unroll
    for (int o = 0; o < O; ++o)
#pragma unroll
        for (int p = 0; p < O; ++p) {
            float acc = 0.f;
#pragma unroll
            for (int j = 0; j < I; ++j) acc = fmaf(e[o][j], l(p, j), acc);
            out[o][p] = acc;
        }
}

// The output transform: a block serves WINO_SLOTS consecutive slots (one (image, channel, tile)
// each), A * WINO_SLOTS threads, in two stages through shared memory
// T[o][j][slot] (o < O rows of L d, j < I columns of the slot's I x I block d):
//   stage 1, thread (column j = tid / WINO_SLOTS, slot = tid % WINO_SLOTS), j < I: loads column j of
//     its slot's block (I loads; the lanes' slots adjacent, so the loads are contiguous runs) and
//     writes column j of L d;
//   stage 2: every (o, p) of every slot = row o of T times row p of L, L's row picked once per thread.
// So a slot's A^2 loads or stores are spread over A threads: A times the threads of a thread per
// slot, each with A loads in flight instead of A^2 (the thread-per-slot output transform ran
// latency-bound: lenet.conv2's at 0.17 issued warps per scheduler and 6 of every 32 bytes it stored
// used; H200: 19.8 -> 15.1 us). The input and dy transforms lost this way (H200: 7.3 -> 12.2 us,
// 10.2 -> 13.5) and stay a thread per slot: a warp's slots store each xi contiguously anyway.
constexpr int WINO_SLOTS = 32;  // config.WINOGRAD_SLOTS

// Stage 1 for the thread's column: T[o][j][slot] = sum_i L(o, i) d[i], o < O.
template <int O, int I, class L>
__device__ __forceinline__ void slot_columns(float* __restrict__ T, int j, int slot, const float (&d)[I], L l) {
#pragma unroll
    for (int o = 0; o < O; ++o) {
        float acc = 0.f;
#pragma unroll
        for (int i = 0; i < I; ++i) acc = fmaf(l(o, i), d[i], acc);
        T[(o * I + j) * WINO_SLOTS + slot] = acc;
    }
}

// Row p (a run-time index < O) of L, once per thread: the unrolled tables fold, p selects.
template <int O, int I, class L>
__device__ __forceinline__ void slot_coef(int p, L l, float (&c)[I]) {
#pragma unroll
    for (int q = 0; q < O; ++q)
        if (q == p)
#pragma unroll
            for (int j = 0; j < I; ++j) c[j] = l(q, j);
}

// Stage 2's value (o, p) of a slot: row o of T times c = row p of L.
template <int I>
__device__ __forceinline__ float slot_row(const float* __restrict__ T, int o, int slot, const float (&c)[I]) {
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < I; ++j) acc = fmaf(T[(o * I + j) * WINO_SLOTS + slot], c[j], acc);
    return acc;
}

// Slot i of planes * TP * TQ: its plane (n * channels + c), tile index t = tp * TQ + tq and the
// tile's top-left pixel (p0, q0).
__device__ __forceinline__ void wino_tile(u32 i, int TP, int TQ, u32& plane, u32& t, int& p0, int& q0) {
    const u32 TT = (u32)(TP * TQ);
    plane = i / TT;
    t = i - plane * TT;
    const int tp = (int)t / TQ;
    p0 = tp * WINO_M;
    q0 = ((int)t - tp * TQ) * WINO_M;
}

// A slot's A x A values to out[xi * stride], xi = u * A + v: for each xi a warp's slots (consecutive
// tiles t) store consecutive floats.
template <int A>
__device__ __forceinline__ void store_xi(float* __restrict__ out, u32 stride, const float (&v)[A][A]) {
#pragma unroll
    for (int u = 0; u < A; ++u)
#pragma unroll
        for (int w = 0; w < A; ++w) out[(u32)(u * A + w) * stride] = v[u][w];
}

// V[n, xi, c, t] of each (n, c, tile t) of an N x C x H x W input: BT x_t B, x_t the A x A patch whose
// top-left pixel is (4 tp - pad_h, 4 tq - pad_w), zeros outside. A thread per slot, grid-stride.
template <int R>
__device__ __forceinline__ void wino_input(const float* __restrict__ x, float* __restrict__ V, int N, int C, int H,
                                           int W, int pad_h, int pad_w, int TP, int TQ) {
    constexpr int A = Wino<R>::A;
    GRID_STRIDE32(i, (u32)N * C * TP * TQ) {
        u32 plane, t;
        int p0, q0;
        wino_tile(i, TP, TQ, plane, t, p0, q0);
        const float* src = x + plane * (u32)(H * W);
        const int h0 = p0 - pad_h, w0 = q0 - pad_w;
        float d[A][A], v[A][A];
#pragma unroll
        for (int u = 0; u < A; ++u)
#pragma unroll
            for (int w = 0; w < A; ++w) {
                const int h = h0 + u, col = w0 + w;
                d[u][w] = (h >= 0 && h < H && col >= 0 && col < W) ? src[h * W + col] : 0.f;
            }
        transform2d<A>(d, v, [](int o, int j) { return Wino<R>::bt(o, j); });
        const u32 n = plane / (u32)C, c = plane - n * (u32)C, TT = (u32)(TP * TQ);
        store_xi<A>(V + (n * (u32)(A * A * C) + c) * TT + t, (u32)C * TT, v);
    }
}

// U = G w[k, c] G^T of a K x C x R x R filter as the forward GEMM's packed weights in A^2 groups
// (packed_forward_at(xi, kk, m, KK, Mp)): m = k, kk = c, or with FLIP of w[k, c] rotated by 180
// degrees at m = c, kk = k (backward-data's weights); zero for M <= m < Mp (M rounded up to 4). The
// block's tile is WINO_FT_M m x WINO_FT_KK kk, thread m fastest. Its filters are first copied to
// shared memory (``tile``, WINO_FT_SMEM(R) floats): the tile's c range of one k is contiguous in w,
// so the block reads rows of ROW floats, R^2 loads per thread all in flight (unrolled); rows at an odd
// pitch, so both orientations' reads (lanes R^2 or WINO_FT_KK R^2 + 1 floats apart) are free of conflicts.
#define WINO_FT_SMEM(R) (WINO_FT_M * WINO_FT_KK * (R) * (R) + WINO_FT_M)
template <int R, bool FLIP>
__device__ __forceinline__ void wino_filter(const float* __restrict__ w, float* __restrict__ U, int K, int C,
                                            float* tile) {
    constexpr int A = Wino<R>::A, RR = R * R, THREADS = WINO_FT_M * WINO_FT_KK;
    constexpr int NK = FLIP ? WINO_FT_KK : WINO_FT_M, ROW = (FLIP ? WINO_FT_M : WINO_FT_KK) * RR, PITCH = ROW + 1;
    static_assert(NK * ROW == THREADS * RR && NK * PITCH <= WINO_FT_SMEM(R), "the staged tile");
    const int M = FLIP ? C : K, KK = FLIP ? K : C, Mp = (M + 3) & ~3;
    const int m0 = blockIdx.x * WINO_FT_M, kk0 = blockIdx.y * WINO_FT_KK;
    const int k0 = FLIP ? kk0 : m0, c0 = FLIP ? m0 : kk0;
    const int kn = min(NK, K - k0), have = min(ROW, (C - c0) * RR);  // the tile's k and row floats inside w
    const float* src = w + ((u32)k0 * (u32)C + (u32)c0) * RR;
#pragma unroll
    for (int j = 0; j < RR; ++j) {
        const int e = j * THREADS + (int)threadIdx.x, kl = e / ROW, rem = e - kl * ROW;
        if (kl < kn && rem < have) tile[kl * PITCH + rem] = src[(u32)kl * (u32)C * RR + rem];
    }
    __syncthreads();
    const int ml = threadIdx.x % WINO_FT_M, kkl = threadIdx.x / WINO_FT_M, m = m0 + ml, kk = kk0 + kkl;
    if (m >= Mp || kk >= KK) return;
    float u[A][A];
    if (m < M) {
        const float* f = tile + (FLIP ? kkl * PITCH + ml * RR : ml * PITCH + kkl * RR);
        float d[R][R];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int s = 0; s < R; ++s) d[r][s] = FLIP ? f[(R - 1 - r) * R + (R - 1 - s)] : f[r * R + s];
        transform2d<A>(d, u, [](int o, int j) { return wino_g<R, R>(o, j); });
    } else {
#pragma unroll
        for (int a = 0; a < A; ++a)
#pragma unroll
            for (int b = 0; b < A; ++b) u[a][b] = 0.f;
    }
#pragma unroll
    for (int a = 0; a < A; ++a)
#pragma unroll
        for (int b = 0; b < A; ++b)
            U[packed_forward_at<u32>(a * A + b, kk, m, KK, Mp)] = u[a][b];
}

// y[n, k] of each (n, k, tile t): AT Y_t A (Y[n, xi, k, t]) + bias[k], activated (has_bias EPI_GRAD:
// the backward of act at the activation output bias[pixel's index] instead), its pixels inside
// P x Q written. Stage 1: thread (j, slot) loads the products' column j of the slot (I = A, O = 4 rows of
// AT; warp 0 also puts each slot's y offset, pixels inside P x Q and bias in shared memory, so stage 2
// divides nothing); stage 2: thread f = tid + m * blockDim takes output (o, p) of slot s with p = f % 4
// (fixed per thread), s = f / 4 % WINO_SLOTS, o = f / (4 * WINO_SLOTS): a warp writes 8 slots' 4
// adjacent pixels of one output row, runs of 16 bytes per slot that adjacent tiles continue.
template <int R>
__device__ __forceinline__ void wino_output(const float* __restrict__ Y, float* __restrict__ y,
                                            const float* __restrict__ bias, int N, int K, int P, int Q, int TP,
                                            int TQ, int has_bias, int act, float slope) {
    constexpr int A = Wino<R>::A, O = WINO_M;
    __shared__ float T[O * A * WINO_SLOTS];
    __shared__ u32 s_off[WINO_SLOTS];   // a slot's y offset of its tile's top-left pixel
    __shared__ int s_lim[WINO_SLOTS];   // its rows | columns << 8 inside P x Q (0: no slot)
    __shared__ float s_bias[WINO_SLOTS];
    auto at = [](int o, int j) { return wino_at<R, O>(o, j); };
    const u32 TT = (u32)(TP * TQ), total = (u32)N * (u32)K * TT, first = blockIdx.x * WINO_SLOTS;
    {
        const int j = threadIdx.x / WINO_SLOTS, slot = threadIdx.x % WINO_SLOTS;
        const u32 i = first + slot;
        u32 nk = 0, t = 0;
        int p0 = 0, q0 = 0;
        if (i < total) wino_tile(i, TP, TQ, nk, t, p0, q0);
        const u32 n = nk / (u32)K, k = nk - n * (u32)K;
        float d[A];
#pragma unroll
        for (int u = 0; u < A; ++u) d[u] = 0.f;
        if (i < total) {
            const u32 stride = (u32)K * TT;
            const float* src = Y + (n * (u32)(A * A - 1) * (u32)K) * TT + i + (u32)j * stride;  // Y[n, j, k, t]
#pragma unroll
            for (int u = 0; u < A; ++u) d[u] = src[(u32)(u * A) * stride];
        }
        slot_columns<O>(T, j, slot, d, at);
        if (j == 0) {  // warp 0: the slot's geometry and bias, once for stage 2
            s_off[slot] = nk * (u32)(P * Q) + (u32)(p0 * Q + q0);
            s_lim[slot] = i < total ? min(O, P - p0) | min(O, Q - q0) << 8 : 0;
            s_bias[slot] = has_bias == EPI_BIAS && i < total ? bias[k] : 0.f;
        }
    }
    __syncthreads();
    const int p = threadIdx.x % O;
    float c[A];
    slot_coef<O>(p, at, c);
    for (int f = threadIdx.x; f < O * O * WINO_SLOTS; f += A * WINO_SLOTS) {
        const int slot = f / O % WINO_SLOTS, o = f / (O * WINO_SLOTS), lim = s_lim[slot];
        if (o < (lim & 255) && p < lim >> 8) {
            const u32 at_y = s_off[slot] + (u32)(o * Q + p);
            const float v = slot_row(T, o, slot, c);
            y[at_y] = has_bias == EPI_GRAD ? conv_act_grad(v, bias[at_y], act, slope)
                                           : conv_act(v + s_bias[slot], act, slope);
        }
    }
}

// U[n, xi, k, t] = (G dy_t G^T)[xi] of each (n, k, tile t) of an N x K x P x Q dy, dy_t its 4 x 4
// tile (zeros past P, Q).
template <int R>
__device__ __forceinline__ void wino_wgrad_dy(const float* __restrict__ dy, float* __restrict__ U, int N, int K,
                                              int P, int Q, int TP, int TQ) {
    constexpr int A = Wino<R>::A;
    GRID_STRIDE32(i, (u32)N * K * TP * TQ) {
        u32 plane, t;
        int p0, q0;
        wino_tile(i, TP, TQ, plane, t, p0, q0);
        const float* src = dy + plane * (u32)(P * Q);
        float d[WINO_M][WINO_M], u[A][A];
#pragma unroll
        for (int a = 0; a < WINO_M; ++a)
#pragma unroll
            for (int b = 0; b < WINO_M; ++b)
                d[a][b] = (p0 + a < P && q0 + b < Q) ? src[(p0 + a) * Q + q0 + b] : 0.f;
        transform2d<A>(d, u, [](int o, int j) { return wino_g<R, WINO_M>(o, j); });
        const u32 n = plane / (u32)K, k = plane - n * (u32)K, TT = (u32)(TP * TQ);
        store_xi<A>(U + (n * (u32)(A * A * K) + k) * TT + t, (u32)K * TT, u);
    }
}

// dw[k, c, r, :] of each (k, c, r): row r of AT m A, m = M[xi, k, c]. Thread i = (k C + c) R + r, so a
// warp's stores cover 32 R consecutive floats of dw and its loads 32 / R + 1 consecutive (k, c); the
// row is a run-time index, so each row's code is unrolled separately (the tables fold in every one).
// add: the rows are added into dw (store_or_add; the op's accumulate).
template <int R>
__device__ __forceinline__ void wino_wgrad_output(const float* __restrict__ M, float* __restrict__ dw, int K, int C,
                                                  int add) {
    constexpr int A = Wino<R>::A;
    const u32 KC = (u32)(K * C);
    GRID_STRIDE32(i, KC * R) {
        const u32 kc = i / R;
        const int r = (int)(i - kc * R);
        float m[A][A], y[R];
#pragma unroll
        for (int u = 0; u < A; ++u)
#pragma unroll
            for (int v = 0; v < A; ++v) m[u][v] = M[(u32)(u * A + v) * KC + kc];
#pragma unroll
        for (int rr = 0; rr < R; ++rr)
            if (rr == r) {
                float e[A];  // row rr of AT m
#pragma unroll
                for (int j = 0; j < A; ++j) {
                    float acc = 0.f;
#pragma unroll
                    for (int u = 0; u < A; ++u) acc = fmaf(wino_at<R, R>(rr, u), m[u][j], acc);
                    e[j] = acc;
                }
#pragma unroll
                for (int s = 0; s < R; ++s) {
                    float acc = 0.f;
#pragma unroll
                    for (int j = 0; j < A; ++j) acc = fmaf(e[j], wino_at<R, R>(s, j), acc);
                    y[s] = acc;
                }
            }
        float* out = dw + i * (u32)R;
#pragma unroll
        for (int s = 0; s < R; ++s) store_or_add(out + s, y[s], add);
    }
}

// Work: 2 A^3 FMAs per (n, channel, tile); moves A^2 * 4 B in (rows each read by the 2 or 3 tiles
// that overlap them, cache-served) and A^2 * 4 B out. A thread per slot, grid-stride.
#define WINO_INPUT(R)                                                                                      \
    extern "C" __global__ void conv2d_winograd_input_v3_r##R(const float* __restrict__ x,                 \
        float* __restrict__ V, int N, int C, int H, int W, int pad_h, int pad_w, int TP, int TQ) {        \
        wino_input<R>(x, V, N, C, H, W, pad_h, pad_w, TP, TQ);                                            \
    }
// Work: 2 (A R^2 + A^2 R) FMAs per (k, c); moves R^2 * 4 B in and A^2 * 4 B out.
#define WINO_FILTER(R)                                                                                     \
    extern "C" __global__ void conv2d_winograd_filter_v2_r##R(const float* __restrict__ w,                \
        float* __restrict__ U, int K, int C, int flip) {                                                  \
        __shared__ float tile[WINO_FT_SMEM(R)];                                                           \
        if (flip)                                                                                         \
            wino_filter<R, true>(w, U, K, C, tile);                                                       \
        else                                                                                              \
            wino_filter<R, false>(w, U, K, C, tile);                                                      \
    }
// Work: 2 (4 A^2 + 16 A) FMAs per (n, k, tile); moves A^2 * 4 B in and 16 * 4 B out. Blocks of
// A * WINO_SLOTS threads, a block per WINO_SLOTS slots.
#define WINO_OUTPUT(R)                                                                                     \
    extern "C" __global__ void __launch_bounds__(Wino<R>::A * WINO_SLOTS) conv2d_winograd_output_v2_r##R( \
        const float* __restrict__ Y, float* __restrict__ y, const float* __restrict__ bias, int N, int K, \
        int P, int Q, int TP, int TQ, int has_bias, int act, float slope) {                               \
        wino_output<R>(Y, y, bias, N, K, P, Q, TP, TQ, has_bias, act, slope);                             \
    }
// Work: 2 (4 A^2 + 4 A^2) FMAs per (n, k, tile); moves 16 * 4 B in and A^2 * 4 B out. A thread per
// slot, grid-stride.
#define WINO_WGRAD_DY(R)                                                                                   \
    extern "C" __global__ void conv2d_winograd_wgrad_dy_v3_r##R(const float* __restrict__ dy,             \
        float* __restrict__ U, int N, int K, int P, int Q, int TP, int TQ) {                              \
        wino_wgrad_dy<R>(dy, U, N, K, P, Q, TP, TQ);                                                      \
    }
// Work: 2 (A^2 + R A) FMAs per (k, c, r); moves A^2 * 4 B in (each (k, c)'s read by its R rows,
// cache-served) and R * 4 B out (+ R * 4 B in with add).
#define WINO_WGRAD_OUTPUT(R)                                                                               \
    extern "C" __global__ void conv2d_winograd_wgrad_output_v2_r##R(const float* __restrict__ M,          \
        float* __restrict__ dw, int K, int C, int add) {                                                  \
        wino_wgrad_output<R>(M, dw, K, C, add);                                                           \
    }
#define WINO_KERNELS(R) WINO_INPUT(R) WINO_FILTER(R) WINO_OUTPUT(R) WINO_WGRAD_DY(R) WINO_WGRAD_OUTPUT(R)
WINO_KERNELS(3)
WINO_KERNELS(5)
