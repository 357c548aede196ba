// broken_kernels.cu - deliberately wrong kernels: each must be stopped or exposed by a check of
// the CPU execution layer (tests/emu/test_emu_checks.py), next to a correct twin where the
// mistake is subtle.
#include "common.cuh"

// Off by one: thread n-1 reads x[n].
extern "C" __global__ void shift_left_oob(const float* __restrict__ x, float* __restrict__ y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i + 1];
}

// Reverses each block's 64 elements through shared memory; `sync` = 0 drops the barrier between
// the shared-memory writes and the reads of other threads' elements.
extern "C" __global__ void reverse64(const float* __restrict__ x, float* __restrict__ y, int sync) {
    __shared__ float buf[64];
    const int t = threadIdx.x;
    buf[t] = x[blockIdx.x * 64 + t];
    if (sync) __syncthreads();
    y[blockIdx.x * 64 + t] = buf[63 - t];
}

// Sums shared memory that only half the threads wrote (reads uninitialised shared memory).
extern "C" __global__ void sum_half_written(const float* __restrict__ x, float* __restrict__ out) {
    __shared__ float buf[64];
    const int t = threadIdx.x;
    if (t < 32) buf[t] = x[t];
    __syncthreads();
    if (t == 0) {
        float s = 0.f;
        for (int i = 0; i < 64; ++i) s += buf[i];
        out[0] = s;
    }
}

// A float4 load from an address that is not 16-byte aligned (x + 1).
extern "C" __global__ void misaligned_float4(const float* __restrict__ x, float* __restrict__ y) {
    const float4 v = *reinterpret_cast<const float4*>(x + 1);
    y[0] = v.x + v.y + v.z + v.w;
}

// Only even lanes reach the warp shuffle (a divergent collective with a full mask).
extern "C" __global__ void divergent_shuffle(float* __restrict__ y) {
    float v = threadIdx.x;
    if (threadIdx.x % 2 == 0) v = __shfl_xor_sync(0xffffffffu, v, 1);
    y[threadIdx.x] = v;
}

// Thread 0 waits at a barrier the others never reach.
extern "C" __global__ void barrier_in_branch(float* __restrict__ y) {
    if (threadIdx.x == 0) __syncthreads();
    y[threadIdx.x] = 1.f;
}

// Writes one element past a shared array through a computed index.
extern "C" __global__ void shared_overflow(float* __restrict__ y) {
    __shared__ float a[32];
    __shared__ float b[32];
    float* p = a;
    p[threadIdx.x + 1] = 1.f;
    __syncthreads();
    y[threadIdx.x] = b[threadIdx.x];
}

// Integer division by a zero argument (SIGFPE on the CPU).
extern "C" __global__ void divide_by_zero(int* __restrict__ y, int d) { y[0] = 1000 / d; }

// Unbounded recursion: overflows the thread's stack.
__device__ int deep(int n) {
    volatile int pad[64];
    pad[n & 63] = n;
    return n == -1 ? 0 : deep(n + 1) + pad[0];
}
extern "C" __global__ void stack_overflow(int* __restrict__ y) { y[0] = deep(0); }

// An index past a thread's fixed-size local array (a register tile on the GPU).
extern "C" __global__ void local_array_oob(float* __restrict__ y, int k) {
    float acc[4] = {1.f, 2.f, 3.f, 4.f};
    y[0] = acc[k];
}
