// builtin_kernels.cu - CUDA built-ins the fastconv kernels may use, each written to an output
// that tests/emu/test_emu_builtins.py compares with what CUDA documents (run on the CPU layer).
#include "common.cuh"

// Per lane (one block of 64 threads, two warps): the four shuffles at widths 32 / 8 / 16, the
// vote functions and __activemask. out is [64][8] ints.
extern "C" __global__ void warp_ops(int* __restrict__ out) {
    const int t = threadIdx.x, lane = t & 31;
    int* o = out + t * 8;
    o[0] = __shfl_sync(0xffffffffu, t * 10, 5);              // lane 5 of the warp
    o[1] = __shfl_sync(0xffffffffu, t * 10, lane + 3, 8);     // (lane + 3) % 8 within the 8-lane segment
    o[2] = __shfl_up_sync(0xffffffffu, t, 3, 16);             // lane - 3, own value below the segment start
    o[3] = __shfl_down_sync(0xffffffffu, t, 5);                // lane + 5, own value past lane 31
    o[4] = __shfl_xor_sync(0xffffffffu, t, 6);
    o[5] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
    o[6] = __any_sync(0xffffffffu, t == 40) * 2 + __all_sync(0xffffffffu, t < 64);
    o[7] = (int)__activemask();
}

// Block-wide: __syncthreads_count/and/or, atomics on shared and global memory, a double shuffle.
extern "C" __global__ void block_ops(const float* __restrict__ x, float* __restrict__ fsum, int* __restrict__ iout,
                                     double* __restrict__ dout) {
    __shared__ int counter;
    __shared__ float fs;
    const int t = threadIdx.x;
    if (t == 0) { counter = 0; fs = 0.f; }
    __syncthreads();
    atomicAdd(&counter, t);
    atomicAdd(&fs, x[t]);
    atomicMax(iout + 4, t * 7 % 50);
    atomicAdd(fsum, x[t]);
    const int n = __syncthreads_count(t % 4 == 0);
    const int all = __syncthreads_and(t >= 0), any = __syncthreads_or(t == 99);
    if (t == 0) {
        iout[0] = counter;
        iout[1] = n;
        iout[2] = all * 2 + any;
        fsum[1] = fs;
    }
    double v = x[t];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((t & 31) == 0) dout[t >> 5] = v;
}

// Dynamic shared memory sized by the launch: reverses n floats of one block through it.
extern "C" __global__ void dynamic_reverse(const float* __restrict__ x, float* __restrict__ y, int n) {
    extern __shared__ float dyn[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) dyn[i] = x[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = dyn[n - 1 - i];
}

// 2-d and 3-d thread and block indices.
extern "C" __global__ void indices(int* __restrict__ out) {
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int nt = blockDim.x * blockDim.y * blockDim.z;
    out[b * nt + t] = b * 1000 + t;
}
