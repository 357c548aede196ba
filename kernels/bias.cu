// bias.cu - per-channel bias added in place, for the ops whose kernels have no bias epilogue
// (the transposed convolution, which runs conv2d's backward-data kernels).
//
// Kernel versions
//   bias_add_v1  y[i] += b[(i / inner) % c] over the n elements of a (N, C, inner...) array, in
//                place, grid-stride. Traffic: (2 * n + c) * 4 B.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/bias.cu
#include "common.cuh"

// Work: n adds (+ one 64-bit division and modulo per element); moves (2 * n + c) * 4 B.
extern "C" __global__ void bias_add_v1(float* __restrict__ y, const float* __restrict__ b, i64 n, int c, i64 inner) {
    GRID_STRIDE(i, n) y[i] += b[(i / inner) % c];
}
