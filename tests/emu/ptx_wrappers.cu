// ptx_wrappers.cu - one kernel per inline-PTX wrapper of kernels/common.cuh, for the layout and
// arithmetic tests of tests/emu/test_emu_ptx.py (run on the CPU layer; compiled for sm_80 and
// sm_90 by nvcc in the same test file). One warp per block unless stated.
#include "common.cuh"

// D = A * B + C through one mma.sync: A 16x8 row-major, B 8x8 as B[k][n], C and D 16x8.
// Each lane gathers its fragments with the PTX ISA layout (g = lane / 4, t = lane % 4).
extern "C" __global__ void mma_tf32_test(const float* __restrict__ A, const float* __restrict__ B,
                                         const float* __restrict__ C, float* __restrict__ D) {
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    unsigned a[4], b[2];
    float c[4], d[4];
    a[0] = cvt_tf32(A[g * 8 + t]);
    a[1] = cvt_tf32(A[(g + 8) * 8 + t]);
    a[2] = cvt_tf32(A[g * 8 + t + 4]);
    a[3] = cvt_tf32(A[(g + 8) * 8 + t + 4]);
    b[0] = cvt_tf32(B[t * 8 + g]);
    b[1] = cvt_tf32(B[(t + 4) * 8 + g]);
    for (int i = 0; i < 4; ++i) c[i] = C[(g + (i >= 2 ? 8 : 0)) * 8 + 2 * t + (i & 1)];
    mma_tf32_m16n8k8(d, a, b, c);
    for (int i = 0; i < 4; ++i) D[(g + (i >= 2 ? 8 : 0)) * 8 + 2 * t + (i & 1)] = d[i];
}

// out[i] = the tf32 bit pattern of x[i].
extern "C" __global__ void cvt_tf32_test(const float* __restrict__ x, unsigned* __restrict__ out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = cvt_tf32(x[i]);
}

// 32 rows of 16 bytes (four 8x8 b16 matrices) staged in shared memory; lane l passes the address
// of row rows[l]; out[l * 4 + j] = register j of lane l for ldmatrix .x{count}[.trans].
extern "C" __global__ void ldmatrix_test(const unsigned* __restrict__ data, const int* __restrict__ rows,
                                         unsigned* __restrict__ out, int count, int trans) {
    __shared__ __align__(16) unsigned tile[32 * 4];
    const int lane = threadIdx.x;
    for (int i = 0; i < 4; ++i) tile[lane * 4 + i] = data[lane * 4 + i];
    __syncthreads();
    unsigned r[4] = {0u, 0u, 0u, 0u};
    const float* row = reinterpret_cast<const float*>(&tile[rows[lane] * 4]);
    if (count == 1) { if (trans) ldmatrix_x1_trans(r, row); else ldmatrix_x1(r, row); }
    if (count == 2) { if (trans) ldmatrix_x2_trans(r, row); else ldmatrix_x2(r, row); }
    if (count == 4) { if (trans) ldmatrix_x4_trans(r, row); else ldmatrix_x4(r, row); }
    for (int i = 0; i < 4; ++i) out[lane * 4 + i] = r[i];
}

// Each lane copies with every cp.async size from src (float offset lane * 4) to shared memory with
// src_bytes = sizes[lane] (clamped to the copy size), in two commit groups: group 0 holds the 4- and
// 8-byte copies, group 1 the 16-byte ones. out1 is read after wait_group<1> (group 0 complete),
// out2 after wait_all. Shared memory starts as NaN, so an incomplete copy shows.
extern "C" __global__ void cp_async_test(const float* __restrict__ src, const int* __restrict__ sizes,
                                         float* __restrict__ out1, float* __restrict__ out2) {
    __shared__ __align__(16) float s4[32], s8[64], s16a[128], s16b[128];
    const int lane = threadIdx.x, nb = sizes[lane];
    cp_async_ca4(&s4[lane], src + lane * 4, min(nb, 4));
    cp_async_ca8(&s8[lane * 2], src + lane * 4, min(nb, 8));
    cp_async_commit_group();
    cp_async_ca16(&s16a[lane * 4], src + lane * 4, min(nb, 16));
    cp_async_cg16(&s16b[lane * 4], src + lane * 4, min(nb, 16));
    cp_async_commit_group();
    cp_async_wait_group<1>();
    __syncthreads();
    out1[lane] = s4[lane];
    out1[32 + lane * 2] = s8[lane * 2];
    out1[33 + lane * 2] = s8[lane * 2 + 1];
    cp_async_wait_all();
    __syncthreads();
    for (int i = 0; i < 4; ++i) {
        out2[lane * 4 + i] = s16a[lane * 4 + i];
        out2[128 + lane * 4 + i] = s16b[lane * 4 + i];
    }
}

// Reads a 16-byte cp.async destination after commit but before any wait: on the CPU layer the
// copy is still pending there, so the read sees the shared-memory poison (a missing wait shows).
extern "C" __global__ void cp_async_unwaited(const float* __restrict__ src, float* __restrict__ out) {
    __shared__ __align__(16) float s[4];
    if (threadIdx.x == 0) {
        cp_async_ca16(s, src, 16);
        cp_async_commit_group();
        out[0] = s[0];
        cp_async_wait_all();
        out[1] = s[0];
    }
}
