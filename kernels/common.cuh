// common.cuh - helpers shared by the fastconv kernels (index types, grid-stride loops, block reductions).
//
// The loader (fastconv/backends/cuda/loader.py) pastes this file in place of the
// `#include "common.cuh"` line before handing the source to NVRTC, so CuPy's compile cache
// always sees the full text; tests/test_cuda_static.py compiles that same text with nvcc.
// Only device code and built-in types: NVRTC has no host headers.
#pragma once

typedef long long i64;

// NVRTC has no <math.h>: infinity and NaN from their bit patterns.
#define FC_INF __int_as_float(0x7f800000)
#define FC_NAN __int_as_float(0x7fc00000)

// for (i64 i = global thread index; i < n; i += threads in the grid): every element-wise kernel's
// loop, so a grid of any size (capped by the launcher to a few waves) covers n in 64-bit indices.
#define GRID_STRIDE(i, n) \
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// Sum of a double over the block; every thread gets the result. `buf` holds >= 32 doubles.
// All threads of the block must call it (it has __syncthreads inside).
__device__ __forceinline__ double block_sum(double v, double* buf) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    __syncthreads();  // buf may still be read by a previous call
    if (lane == 0) buf[warp] = v;
    __syncthreads();
    double t = 0.0;
    for (int i = 0; i < nwarps; ++i) t += buf[i];
    return t;
}

// Two sums at once (batchnorm backward needs sum(dy) and sum(dy * xhat)).
__device__ __forceinline__ void block_sum2(double& a, double& b, double* buf) {
    for (int o = 16; o > 0; o >>= 1) {
        a += __shfl_xor_sync(0xffffffffu, a, o);
        b += __shfl_xor_sync(0xffffffffu, b, o);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) { buf[warp] = a; buf[32 + warp] = b; }
    __syncthreads();
    double ta = 0.0, tb = 0.0;
    for (int i = 0; i < nwarps; ++i) { ta += buf[i]; tb += buf[32 + i]; }
    a = ta; b = tb;
}
