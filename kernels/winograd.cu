// winograd.cu - conv2d's backward-weight by Winograd's minimal filtering F(R x R, 4 x 4): for
// stride 1, dilation 1, one group and a square R x R filter (R = 3 or 5), the weight gradient
//     dw[k, c] = AT [ sum over tiles t of (G dy_t G^T)[k] (.) (BT x_t B)[c] ] A
// where tile t is a 4 x 4 block of output pixels of one image, dy_t its dy values (zeros past P, Q)
// and x_t the A x A patch of x (A = R + 3, zeros outside the image) that those pixels' windows read.
// Each tile then costs A^2 multiply-adds per (k, c) instead of 16 R^2 (lenet.conv2's 5 x 5: 64
// against 400; 3 x 3: 36 against 144). Three kernels and the v3 GEMM core between them:
//   1. _x: V[n, xi, c, t] = (BT x_t B)[xi]; 2. _dy: U[n, xi, k, t] = (G dy_t G^T)[xi];
//   3. (conv.cu) M[xi, k, c] = sum over n, t of U[n, xi, k, t] V[n, xi, c, t]: a backward-weight of
//      a 1x1 convolution in A^2 groups (U as its dy, V as its x), split along n, t as any;
//   4. _out: dw[k, c] = AT (sum of M's splits)[k, c] A.
// The transforms' points are 0, +-1, +-2, +-1/2 and infinity (Toom-Cook); the tables below are
// exact fractions, derived and checked in the tests (tests/winograd_tables.py).
//
// Kernel versions (R = 3 or 5 in the suffix)
//   conv2d_backward_weight_winograd_x_v1_r3, conv2d_backward_weight_winograd_x_v1_r5
//                            one thread per (n, c, tile): its A x A patch in registers, BT d B.
//   conv2d_backward_weight_winograd_dy_v1_r3, conv2d_backward_weight_winograd_dy_v1_r5
//                            one thread per (n, k, tile): its 4 x 4 tile, G d G^T.
//   conv2d_backward_weight_winograd_out_v1_r3, conv2d_backward_weight_winograd_out_v1_r5
//                            one thread per (k, c): the A^2 products summed over the splits in
//                            split order, then AT m A.
// Consecutive threads take consecutive tiles, so each xi's stores are coalesced; index math is
// 32-bit (the launcher checks every array against INT32_LIMIT).
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/winograd.cu
#include "common.cuh"

typedef unsigned int u32;

// F(3 x 3, 4 x 4): A = 6.
__constant__ float WINO3_AT[3][6] = {
    {1.f, 1.f, 1.f, 1.f, 1.f, 0.f},
    {0.f, 1.f, -1.f, 2.f, -2.f, 0.f},
    {0.f, 1.f, 1.f, 4.f, 4.f, 1.f},
};
__constant__ float WINO3_G[6][4] = {
    {1.f / 4, 0.f, 0.f, 0.f},
    {-1.f / 6, -1.f / 6, -1.f / 6, -1.f / 6},
    {-1.f / 6, 1.f / 6, -1.f / 6, 1.f / 6},
    {1.f / 24, 1.f / 12, 1.f / 6, 1.f / 3},
    {1.f / 24, -1.f / 12, 1.f / 6, -1.f / 3},
    {0.f, 0.f, 0.f, 1.f},
};
__constant__ float WINO3_BT[6][6] = {
    {4.f, 0.f, -5.f, 0.f, 1.f, 0.f},
    {0.f, -4.f, -4.f, 1.f, 1.f, 0.f},
    {0.f, 4.f, -4.f, -1.f, 1.f, 0.f},
    {0.f, -2.f, -1.f, 2.f, 1.f, 0.f},
    {0.f, 2.f, -1.f, -2.f, 1.f, 0.f},
    {0.f, 4.f, 0.f, -5.f, 0.f, 1.f},
};

// F(5 x 5, 4 x 4): A = 8.
__constant__ float WINO5_AT[5][8] = {
    {1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 0.f},
    {0.f, 1.f, -1.f, 2.f, -2.f, 1.f / 2, -1.f / 2, 0.f},
    {0.f, 1.f, 1.f, 4.f, 4.f, 1.f / 4, 1.f / 4, 0.f},
    {0.f, 1.f, -1.f, 8.f, -8.f, 1.f / 8, -1.f / 8, 0.f},
    {0.f, 1.f, 1.f, 16.f, 16.f, 1.f / 16, 1.f / 16, 1.f},
};
__constant__ float WINO5_G[8][4] = {
    {-1.f, 0.f, 0.f, 0.f},
    {-2.f / 9, -2.f / 9, -2.f / 9, -2.f / 9},
    {-2.f / 9, 2.f / 9, -2.f / 9, 2.f / 9},
    {1.f / 90, 1.f / 45, 2.f / 45, 4.f / 45},
    {1.f / 90, -1.f / 45, 2.f / 45, -4.f / 45},
    {32.f / 45, 16.f / 45, 8.f / 45, 4.f / 45},
    {32.f / 45, -16.f / 45, 8.f / 45, -4.f / 45},
    {0.f, 0.f, 0.f, 1.f},
};
__constant__ float WINO5_BT[8][8] = {
    {-1.f, 0.f, 21.f / 4, 0.f, -21.f / 4, 0.f, 1.f, 0.f},
    {0.f, 1.f, 1.f, -17.f / 4, -17.f / 4, 1.f, 1.f, 0.f},
    {0.f, -1.f, 1.f, 17.f / 4, -17.f / 4, -1.f, 1.f, 0.f},
    {0.f, 1.f / 2, 1.f / 4, -5.f / 2, -5.f / 4, 2.f, 1.f, 0.f},
    {0.f, -1.f / 2, 1.f / 4, 5.f / 2, -5.f / 4, -2.f, 1.f, 0.f},
    {0.f, 2.f, 4.f, -5.f / 2, -5.f, 1.f / 2, 1.f, 0.f},
    {0.f, -2.f, 4.f, 5.f / 2, -5.f, -1.f / 2, 1.f, 0.f},
    {0.f, -1.f, 0.f, 21.f / 4, 0.f, -21.f / 4, 0.f, 1.f},
};

constexpr int WINO_M = 4;  // output pixels per tile side

// The tables of F(R x R, 4 x 4) by R, and A = R + 3.
template <int R> struct Wino;
template <> struct Wino<3> {
    static constexpr int A = 6;
    __device__ static float at(int i, int j) { return WINO3_AT[i][j]; }
    __device__ static float g(int i, int j) { return WINO3_G[i][j]; }
    __device__ static float bt(int i, int j) { return WINO3_BT[i][j]; }
};
template <> struct Wino<5> {
    static constexpr int A = 8;
    __device__ static float at(int i, int j) { return WINO5_AT[i][j]; }
    __device__ static float g(int i, int j) { return WINO5_G[i][j]; }
    __device__ static float bt(int i, int j) { return WINO5_BT[i][j]; }
};

// out = L d L^T for an I x J block d and an O x I (and O x J) matrix L given as l(o, i): the 2-D
// transform of every stage (BT d B with L = BT; G d G^T with L = G; AT m A with L = AT).
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

// Thread i of planes * TP * TQ: its plane (n * channels + c), the tile's top-left output pixel
// (tile row tp, column tq) and the tile index t = tp * TQ + tq.
__device__ __forceinline__ void wino_tile(u32 i, int TP, int TQ, u32& plane, u32& t, int& p0, int& q0) {
    const u32 TT = (u32)(TP * TQ);
    plane = i / TT;
    t = i - plane * TT;
    const int tp = (int)t / TQ;
    p0 = tp * WINO_M;
    q0 = ((int)t - tp * TQ) * WINO_M;
}

// Store a tile's A x A values at out[xi * stride], xi = u * A + v.
template <int A>
__device__ __forceinline__ void store_xi(float* __restrict__ out, u32 stride, const float (&v)[A][A]) {
#pragma unroll
    for (int u = 0; u < A; ++u)
#pragma unroll
        for (int w = 0; w < A; ++w) out[(u32)(u * A + w) * stride] = v[u][w];
}

// V[n, xi, c, t] of each (n, c, tile t).
template <int R>
__device__ __forceinline__ void wino_x(const float* __restrict__ x, float* __restrict__ V, int N, int C, int H,
                                       int W, int pad_h, int pad_w, int TP, int TQ) {
    constexpr int A = Wino<R>::A;
    GRID_STRIDE32(i, (u32)N * C * TP * TQ) {
        u32 nc, t;
        int p0, q0;
        wino_tile(i, TP, TQ, nc, t, p0, q0);
        const float* plane = x + nc * (u32)(H * W);
        const int h0 = p0 - pad_h, w0 = q0 - pad_w;
        float d[A][A], v[A][A];
#pragma unroll
        for (int u = 0; u < A; ++u)
#pragma unroll
            for (int w = 0; w < A; ++w) {
                const int h = h0 + u, col = w0 + w;
                d[u][w] = (h >= 0 && h < H && col >= 0 && col < W) ? plane[h * W + col] : 0.f;
            }
        transform2d<A>(d, v, [](int o, int j) { return Wino<R>::bt(o, j); });
        const u32 n = nc / (u32)C, c = nc - n * (u32)C, TT = (u32)(TP * TQ);
        store_xi<A>(V + (n * (u32)(A * A * C) + c) * TT + t, (u32)C * TT, v);
    }
}

// U[n, xi, k, t] of each (n, k, tile t).
template <int R>
__device__ __forceinline__ void wino_dy(const float* __restrict__ dy, float* __restrict__ U, int N, int K, int P,
                                        int Q, int TP, int TQ) {
    constexpr int A = Wino<R>::A;
    GRID_STRIDE32(i, (u32)N * K * TP * TQ) {
        u32 nk, t;
        int p0, q0;
        wino_tile(i, TP, TQ, nk, t, p0, q0);
        const float* plane = dy + nk * (u32)(P * Q);
        float d[WINO_M][WINO_M], u[A][A];
#pragma unroll
        for (int a = 0; a < WINO_M; ++a)
#pragma unroll
            for (int b = 0; b < WINO_M; ++b) {
                const int p = p0 + a, q = q0 + b;
                d[a][b] = (p < P && q < Q) ? plane[p * Q + q] : 0.f;
            }
        transform2d<A>(d, u, [](int o, int j) { return Wino<R>::g(o, j); });
        const u32 n = nk / (u32)K, k = nk - n * (u32)K, TT = (u32)(TP * TQ);
        store_xi<A>(U + (n * (u32)(A * A * K) + k) * TT + t, (u32)K * TT, u);
    }
}

// dw[k, c] of each (k, c) from the products M[split, xi, k, c].
template <int R>
__device__ __forceinline__ void wino_out(const float* __restrict__ M, float* __restrict__ dw, int K, int C,
                                         int splits) {
    constexpr int A = Wino<R>::A;
    const u32 KC = (u32)(K * C);
    GRID_STRIDE32(i, KC) {
        float m[A][A], y[R][R];
#pragma unroll
        for (int u = 0; u < A; ++u)
#pragma unroll
            for (int v = 0; v < A; ++v) {
                float acc = 0.f;
                for (int s = 0; s < splits; ++s) acc += M[((u32)s * (A * A) + (u32)(u * A + v)) * KC + i];
                m[u][v] = acc;
            }
        transform2d<R>(m, y, [](int o, int j) { return Wino<R>::at(o, j); });
        float* out = dw + i * (u32)(R * R);
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int s = 0; s < R; ++s) out[r * R + s] = y[r][s];
    }
}

// Work: 2 A^3 FMAs per (n, c, tile); moves A^2 * 4 B in (rows of x, each read by the 2 or 3 tiles
// that overlap it, cache-served) and A^2 * 4 B out.
#define WINOGRAD_X_KERNEL(R)                                                                               \
    extern "C" __global__ void conv2d_backward_weight_winograd_x_v1_r##R(const float* __restrict__ x,     \
        float* __restrict__ V, int N, int C, int H, int W, int pad_h, int pad_w, int TP, int TQ) {        \
        wino_x<R>(x, V, N, C, H, W, pad_h, pad_w, TP, TQ);                                                \
    }
// Work: 2 (4 A^2 + A^3) FMAs per (n, k, tile) at most; moves 16 * 4 B in and A^2 * 4 B out.
#define WINOGRAD_DY_KERNEL(R)                                                                              \
    extern "C" __global__ void conv2d_backward_weight_winograd_dy_v1_r##R(const float* __restrict__ dy,   \
        float* __restrict__ U, int N, int K, int P, int Q, int TP, int TQ) {                              \
        wino_dy<R>(dy, U, N, K, P, Q, TP, TQ);                                                            \
    }
// Work: A^2 * splits adds and 2 (R A^2 + R^2 A) FMAs per (k, c); moves A^2 * splits * 4 B in and
// R^2 * 4 B out.
#define WINOGRAD_OUT_KERNEL(R)                                                                             \
    extern "C" __global__ void conv2d_backward_weight_winograd_out_v1_r##R(const float* __restrict__ M,   \
        float* __restrict__ dw, int K, int C, int splits) {                                               \
        wino_out<R>(M, dw, K, C, splits);                                                                 \
    }
WINOGRAD_X_KERNEL(3)
WINOGRAD_X_KERNEL(5)
WINOGRAD_DY_KERNEL(3)
WINOGRAD_DY_KERNEL(5)
WINOGRAD_OUT_KERNEL(3)
WINOGRAD_OUT_KERNEL(5)
