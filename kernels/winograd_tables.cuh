// winograd_tables.cuh - the Toom-Cook tables of kernels/winograd.cu: for R = 3 and 5 taps (A = R + 3
// points: 0, +-1, +-2, +-1/2 and infinity) the points p_j, the inverse denominators
// 1 / prod_{l != j} (p_j - p_l) and BT, and from them AT of F(O, R) and G of F(., T) (winograd.cu's
// header comment holds the math). tests/ops/test_conv_winograd.py derives every table in exact
// fractions and checks them; fastconv/backends/numba/winograd_tables.py is the numba family's copy.
#pragma once

// The points, inverse denominators and BT of A = R + 3, as local constant tables: every index is a
// compile-time constant once the transforms' loops are unrolled, so the entries fold into the FMAs
// (zeros and ones drop out) instead of being loaded.
template <int R> struct Wino;
template <> struct Wino<3> {  // A = 6: points 0, 1, -1, 2, -2
    static constexpr int A = 6;
    __device__ static float p(int j) {
        const float WINO6_P[5] = {0.f, 1.f, -1.f, 2.f, -2.f};
        return WINO6_P[j];
    }
    __device__ static float inv(int j) {
        const float WINO6_INV[5] = {1.f / 4, -1.f / 6, -1.f / 6, 1.f / 24, 1.f / 24};
        return WINO6_INV[j];
    }
    __device__ static float bt(int i, int j) {
        const float WINO6_BT[6][6] = {
            {4.f, 0.f, -5.f, 0.f, 1.f, 0.f},
            {0.f, -4.f, -4.f, 1.f, 1.f, 0.f},
            {0.f, 4.f, -4.f, -1.f, 1.f, 0.f},
            {0.f, -2.f, -1.f, 2.f, 1.f, 0.f},
            {0.f, 2.f, -1.f, -2.f, 1.f, 0.f},
            {0.f, 4.f, 0.f, -5.f, 0.f, 1.f},
        };
        return WINO6_BT[i][j];
    }
};
template <> struct Wino<5> {  // A = 8: points 0, 1, -1, 2, -2, 1/2, -1/2
    static constexpr int A = 8;
    __device__ static float p(int j) {
        const float WINO8_P[7] = {0.f, 1.f, -1.f, 2.f, -2.f, 1.f / 2, -1.f / 2};
        return WINO8_P[j];
    }
    __device__ static float inv(int j) {
        const float WINO8_INV[7] = {-1.f, -2.f / 9, -2.f / 9, 1.f / 90, 1.f / 90, 32.f / 45, 32.f / 45};
        return WINO8_INV[j];
    }
    __device__ static float bt(int i, int j) {
        const float WINO8_BT[8][8] = {
            {-1.f, 0.f, 21.f / 4, 0.f, -21.f / 4, 0.f, 1.f, 0.f},
            {0.f, 1.f, 1.f, -17.f / 4, -17.f / 4, 1.f, 1.f, 0.f},
            {0.f, -1.f, 1.f, 17.f / 4, -17.f / 4, -1.f, 1.f, 0.f},
            {0.f, 1.f / 2, 1.f / 4, -5.f / 2, -5.f / 4, 2.f, 1.f, 0.f},
            {0.f, -1.f / 2, 1.f / 4, 5.f / 2, -5.f / 4, -2.f, 1.f, 0.f},
            {0.f, 2.f, 4.f, -5.f / 2, -5.f, 1.f / 2, 1.f, 0.f},
            {0.f, -2.f, 4.f, 5.f / 2, -5.f, -1.f / 2, 1.f, 0.f},
            {0.f, -1.f, 0.f, 21.f / 4, 0.f, -21.f / 4, 0.f, 1.f},
        };
        return WINO8_BT[i][j];
    }
};

__device__ __forceinline__ float ipow(float p, int e) {
    float v = 1.f;
#pragma unroll
    for (int i = 0; i < 8; ++i)
        if (i < e) v *= p;
    return v;
}

// AT of F(O, .) (O outputs): row i < O, column j < A.
template <int R, int O>
__device__ __forceinline__ float wino_at(int i, int j) {
    constexpr int A = Wino<R>::A;
    return j < A - 1 ? ipow(Wino<R>::p(j), i) : (i == O - 1 ? 1.f : 0.f);
}

// G of F(., T) (T taps): row j < A, column k < T.
template <int R, int T>
__device__ __forceinline__ float wino_g(int j, int k) {
    constexpr int A = Wino<R>::A;
    return j < A - 1 ? ipow(Wino<R>::p(j), k) * Wino<R>::inv(j) : (k == T - 1 ? 1.f : 0.f);
}
