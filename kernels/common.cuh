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

// The same loop in 32-bit unsigned indices, for kernels whose launcher checks n <= INT32_LIMIT
// (2^31 - 1 - 4096): i + the grid's thread count stays below 2^32, so the step cannot wrap, and
// the index math after it (divisions by plane sizes included) is 32-bit.
#define GRID_STRIDE32(i, n) \
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned)(n); i += gridDim.x * blockDim.x)

// The conv epilogues' activation (config.ACTIVATIONS codes): 0 none, 1 ReLU, 2 LeakyReLU(slope), 3 tanh.
__device__ __forceinline__ float conv_act(float v, int act, float slope) {
    if (act == 1) return v > 0.f ? v : 0.f;
    if (act == 2) return v > 0.f ? v : v * slope;
    if (act == 3) return tanhf(v);
    return v;
}

// The store of an op that takes ``accumulate``: *p = v, or with `add` *p + v, the same fp32 sum a
// separate add of v into *p would make (a second gradient of a parameter in one step; the
// projection discriminator's class term added into the logits).
__device__ __forceinline__ void store_or_add(float* p, float v, int add) { *p = add ? *p + v : v; }

// The backward of conv_act from its output y (the activation kernels' rule: y > 0 <=> v > 0 for
// ReLU and a LeakyReLU slope in [0, 1); tanh' = 1 - y^2).
__device__ __forceinline__ float conv_act_grad(float dy, float y, int act, float slope) {
    if (act == 1) return y > 0.f ? dy : 0.f;
    if (act == 2) return y > 0.f ? dy : dy * slope;
    if (act == 3) return dy * (1.f - y * y);
    return dy;
}

// A block's thread 0 counts its block finished, after the writes that the last block will read
// (made by thread 0, or by every thread that then passed a __syncthreads): true in exactly one
// block, the last of ``total`` to count, which may then read those writes (__ldcg) and must set
// *count back to 0 (a counter on the device: a CUDA graph's replays use it again).
__device__ __forceinline__ bool counts_last(unsigned* count, unsigned total) {
    __threadfence();   // this block's writes are visible before it counts itself finished
    return atomicAdd(count, 1u) == total - 1u;
}

// A fused epilogue's operand b, by the launchers' mode (launch._epilogue; named has_bias in the
// kernels): EPI_NONE: none; EPI_BIAS: a bias, act(v + b[channel]); EPI_GRAD: b is an array of the
// output's shape holding the outputs y of the activation act, and the epilogue applies that
// activation's backward, conv_act_grad(v, b[i]) at the output's own index i: a backward-data pass
// whose input x was that activation's output returns the gradient w.r.t. the activation's input,
// with no pass of its own (the activation kernels' arithmetic, so the same floats).
#define EPI_NONE 0
#define EPI_BIAS 1
#define EPI_GRAD 2
__device__ __forceinline__ float conv_epilogue(float v, const float* b, int mode, unsigned channel, i64 i, int act,
                                               float slope) {
    if (mode == EPI_GRAD) return conv_act_grad(v, b[i], act, slope);
    return conv_act(mode == EPI_BIAS ? v + b[channel] : v, act, slope);
}

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

// ---------------------------------------------------------------------------------------------
// Inline-PTX wrappers (sm_80+): cp.async, ldmatrix, mma.sync TF32 m16n8k8, cvt.rna.tf32.f32.
// Kernels call these instead of writing asm, so that the CPU execution layer (fastconv.emu,
// which compiles with FASTCONV_EMU defined) can run them: its versions follow the fragment
// layouts of the PTX ISA exactly and are warp-collective where the instruction is
// (tests/emu/test_emu_ptx.py checks both against a plain matrix product and a layout oracle).
//
// cp_async_ca4/8/16, cp_async_cg16(dst_shared, src_global, src_bytes): copy 4/8/16 bytes
//   asynchronously, zero-filling the bytes past src_bytes (0 <= src_bytes <= size; 0 reads
//   nothing). .cg (L2 only) exists for 16 bytes only. Visible after cp_async_wait_group<N>()
//   (all but the N most recent committed groups complete) / cp_async_wait_all() and a barrier.
// ldmatrix_x1/x2/x4[_trans](regs, row): lane 8*j + r passes the 16-byte-aligned shared address
//   of row r of 8x8 b16 matrix j; lane l gets, per matrix j, regs[j] = elements (l/4, 2*(l%4))
//   and (l/4, 2*(l%4)+1) (low half first); _trans gives (2*(l%4), l/4) and (2*(l%4)+1, l/4).
//   Read as 32-bit words, a row holds 4 floats: lane l gets word l%4 of row l/4.
// mma_tf32_m16n8k8(d, a, b, c): D[16x8] = A[16x8] * B[8x8] + C, A row-major, B column-major,
//   with g = lane/4, t = lane%4: a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4];
//   b0 = B[t][g], b1 = B[t+4][g]; c/d0 = [g][2t], c/d1 = [g][2t+1], c/d2 = [g+8][2t],
//   c/d3 = [g+8][2t+1]. a and b hold tf32 bit patterns (see cvt_tf32).
// cvt_tf32(x): x rounded to tf32 (nearest, ties away from zero), as a 32-bit pattern (the mma
//   reads its upper 19 bits; the lower 13 are not cleared). tf32_value(x): the same rounding as a
//   float whose lower 13 bits are zero, i.e. exactly a tf32 (an mma operand without another cvt).
#ifdef FASTCONV_EMU
#define FC_CP_ASYNC(NAME, CACHE, BYTES)                                               \
    __device__ __forceinline__ void NAME(float* dst, const float* src, int src_bytes) { \
        fc::cp_async(dst, src, BYTES, src_bytes);                                     \
    }
#define FC_LDMATRIX(NAME, N, TRANS)                                         \
    __device__ __forceinline__ void NAME(unsigned* r, const float* row) {   \
        unsigned t[N];                                                      \
        fc::ldmatrix(t, N, sizeof(TRANS) > 1, row);                         \
        for (int i = 0; i < N; ++i) r[i] = t[i];                            \
    }
#else
__device__ __forceinline__ unsigned fc_smem_addr(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
#define FC_CP_ASYNC(NAME, CACHE, BYTES)                                                                    \
    __device__ __forceinline__ void NAME(float* dst, const float* src, int src_bytes) {                    \
        asm volatile("cp.async." CACHE ".shared.global [%0], [%1], " #BYTES ", %2;\n" ::"r"(fc_smem_addr(dst)), \
                     "l"(src), "r"(src_bytes));                                                            \
    }
#define FC_LDMATRIX_ASM(NAME, SHAPE, N, OUTS, ...)                                                      \
    __device__ __forceinline__ void NAME(unsigned* r, const float* row) {                              \
        asm volatile("ldmatrix.sync.aligned.m8n8." SHAPE ".shared.b16 " OUTS ", [%" #N "];\n"          \
                     : __VA_ARGS__ : "r"(fc_smem_addr(row)));                                          \
    }
#define FC_LDMATRIX_OUTS1 "{%0}", "=r"(r[0])
#define FC_LDMATRIX_OUTS2 "{%0, %1}", "=r"(r[0]), "=r"(r[1])
#define FC_LDMATRIX_OUTS4 "{%0, %1, %2, %3}", "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
#define FC_LDMATRIX_CALL(...) FC_LDMATRIX_ASM(__VA_ARGS__)
#define FC_LDMATRIX(NAME, N, TRANS) FC_LDMATRIX_CALL(NAME, "x" #N TRANS, N, FC_LDMATRIX_OUTS##N)
#endif
FC_CP_ASYNC(cp_async_ca4, "ca", 4)
FC_CP_ASYNC(cp_async_ca8, "ca", 8)
FC_CP_ASYNC(cp_async_ca16, "ca", 16)
FC_CP_ASYNC(cp_async_cg16, "cg", 16)
FC_LDMATRIX(ldmatrix_x1, 1, "")
FC_LDMATRIX(ldmatrix_x2, 2, "")
FC_LDMATRIX(ldmatrix_x4, 4, "")
FC_LDMATRIX(ldmatrix_x1_trans, 1, ".trans")
FC_LDMATRIX(ldmatrix_x2_trans, 2, ".trans")
FC_LDMATRIX(ldmatrix_x4_trans, 4, ".trans")
#undef FC_CP_ASYNC
#undef FC_LDMATRIX
#undef FC_LDMATRIX_ASM
#undef FC_LDMATRIX_CALL
#undef FC_LDMATRIX_OUTS1
#undef FC_LDMATRIX_OUTS2
#undef FC_LDMATRIX_OUTS4
#ifdef FASTCONV_EMU
__device__ __forceinline__ void cp_async_commit_group() { fc::cp_async_commit(); }
template <int N>
__device__ __forceinline__ void cp_async_wait_group() { fc::cp_async_wait(N); }
__device__ __forceinline__ void cp_async_wait_all() { fc::cp_async_wait(0); }
__device__ __forceinline__ void mma_tf32_m16n8k8(float* d, const unsigned* a, const unsigned* b, const float* c) {
    float dd[4];
    const unsigned aa[4] = {a[0], a[1], a[2], a[3]}, bb[2] = {b[0], b[1]};
    const float cc[4] = {c[0], c[1], c[2], c[3]};
    fc::mma_tf32_m16n8k8(dd, aa, bb, cc);
    for (int i = 0; i < 4; ++i) d[i] = dd[i];
}
__device__ __forceinline__ unsigned cvt_tf32(float x) { return fc::cvt_rna_tf32(x); }
#else
__device__ __forceinline__ void cp_async_commit_group() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait_group() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::); }
__device__ __forceinline__ void mma_tf32_m16n8k8(float* d, const unsigned* a, const unsigned* b, const float* c) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
                   "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}
__device__ __forceinline__ unsigned cvt_tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}
#endif
__device__ __forceinline__ float tf32_value(float x) { return __uint_as_float(cvt_tf32(x) & 0xffffe000u); }
