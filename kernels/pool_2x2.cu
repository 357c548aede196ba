// pool_2x2.cu - the fast paths of 2-D max, average and fused ReLU + max pooling for 2x2 windows,
// stride 2, no padding (LeNet's pools), NCHW, fp32, forward and backward; kernels/pool.cu serves
// every other window. The launcher (cuda/pool.py) takes the first of config.POOL_2X2_ORDER that fits
// a call; the pool_variant setting forces one.
//
// Kernel versions
//   max_pool2d_forward_v3_*, max_pool2d_backward_v3_*, avg_pool2d_forward_v3_*, avg_pool2d_backward_v3_*
//                           the 2x2 / stride 2 / no padding fast path (LeNet's pools): the window
//                           loops are compile-time, one thread per V = 1 (_v3_2x2, W even: 8-byte
//                           loads) or V = 2 (_v3_2x2w, W % 4 == 0: 16-byte loads) horizontally
//                           adjacent outputs; backward writes each input pixel once (windows do
//                           not overlap), zeroing the last row when H is odd. The argmax is the
//                           same int32 plane index as the general kernels'.
//   max_pool2d_backward_v3_2x2v4x2, avg_pool2d_backward_v3_2x2v4x2, relu_max_pool2d_backward_v2_2x2v4x2
//                           backward of the same windows at V = 4 (W % 8 == 0): 16-byte dy (and
//                           argmax) loads, its 2 x 8 dx floats per item written as four 16-byte
//                           stores that pair with the neighbour lane's so that each store
//                           instruction writes whole 32-byte sectors; the loads of two items per
//                           thread are in flight before it stores either (one item at a time, the
//                           former _2x2v4, ran 0.88-0.89 of the device copy on an H200, this 0.89-0.90).
//   max_pool2d_backward_v3_2x2r, avg_pool2d_backward_v3_2x2r, relu_max_pool2d_backward_v2_2x2r
//                           the same windows' backward by dx rows (W % 4 == 0): a thread per 4
//                           floats of a dx row, one 16-byte store, a warp's stores 512 contiguous
//                           bytes; two items per thread in flight.
//   relu_max_pool2d_forward_v2_*, relu_max_pool2d_backward_v2_*
//                           the fused op's fast path (_v2_2x2, _v2_2x2w, _v2_2x2v4x2, _v2_2x2r as
//                           above), its uint8 window index as pool.cu's relu_max_pool2d_*_v1.
// Index math is 32-bit (unsigned): the launcher checks N*C*H*W and N*C*P*Q <= INT32_LIMIT.
// Bandwidth-bound: forward reads x once and writes y (+ argmax), backward reads dy (+ argmax) and
// writes dx once.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/pool_2x2.cu (tests/test_bandwidth_static.py)
#include "common.cuh"
#include "pool.cuh"

// ---- 2x2 / stride 2 / no padding ------------------------------------------------------------
// A thread owns V adjacent outputs (p, V*j .. V*j + V-1) of one plane, i.e. the 2 x 2V input block
// at rows 2p, 2p+1 and columns 2Vj .. 2Vj + 2V-1, read and written as one 8V-byte vector per row.

// Vector loads and stores of 1, 2 or 4 consecutive elements (the overload picks the width from
// the array's size); the pointers are 4, 8 or 16-byte aligned as the launcher checks.
__device__ __forceinline__ void load(const float* p, float (&v)[1]) { v[0] = *p; }
__device__ __forceinline__ void load(const float* p, float (&v)[2]) {
    const float2 r = *reinterpret_cast<const float2*>(p);
    v[0] = r.x; v[1] = r.y;
}
__device__ __forceinline__ void load(const float* p, float (&v)[4]) {
    const float4 r = *reinterpret_cast<const float4*>(p);
    v[0] = r.x; v[1] = r.y; v[2] = r.z; v[3] = r.w;
}
__device__ __forceinline__ void load(const int* p, int (&v)[1]) { v[0] = *p; }
__device__ __forceinline__ void load(const int* p, int (&v)[2]) {
    const int2 r = *reinterpret_cast<const int2*>(p);
    v[0] = r.x; v[1] = r.y;
}
__device__ __forceinline__ void store(float* p, const float (&v)[1]) { *p = v[0]; }
__device__ __forceinline__ void store(float* p, const float (&v)[2]) {
    *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
}
__device__ __forceinline__ void store(float* p, const float (&v)[4]) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void store(int* p, const int (&v)[1]) { *p = v[0]; }
__device__ __forceinline__ void store(int* p, const int (&v)[2]) { *reinterpret_cast<int2*>(p) = make_int2(v[0], v[1]); }
__device__ __forceinline__ void load(const int* p, int (&v)[4]) {
    const int4 r = *reinterpret_cast<const int4*>(p);
    v[0] = r.x; v[1] = r.y; v[2] = r.z; v[3] = r.w;
}
__device__ __forceinline__ void load(const unsigned char* p, int (&v)[1]) { v[0] = *p; }
__device__ __forceinline__ void load(const unsigned char* p, int (&v)[2]) {
    const uchar2 r = *reinterpret_cast<const uchar2*>(p);
    v[0] = r.x; v[1] = r.y;
}
__device__ __forceinline__ void load(const unsigned char* p, int (&v)[4]) {
    const uchar4 r = *reinterpret_cast<const uchar4*>(p);
    v[0] = r.x; v[1] = r.y; v[2] = r.z; v[3] = r.w;
}
__device__ __forceinline__ void store(unsigned char* p, const int (&v)[1]) { *p = (unsigned char)v[0]; }
__device__ __forceinline__ void store(unsigned char* p, const int (&v)[2]) {
    *reinterpret_cast<uchar2*>(p) = make_uchar2((unsigned char)v[0], (unsigned char)v[1]);
}

// Item i of NC*P*(Q/V) (plane nc, output row p, column group j): the flat offset of its input
// block's top-left pixel and that pixel's index in its plane (2p rows down, 2Vj columns across).
template <int V>
__device__ __forceinline__ void block2x2(u32 i, int H, int W, int P, int QV, u32& top, int& plane_top, int& p) {
    u32 nc;
    int j;
    split3(i, P, QV, nc, p, j);
    plane_top = 2 * p * W + 2 * V * j;
    top = nc * (u32)(H * W) + plane_top;
}

// Maximum m of a 2x2 window (a b / c d) and its index k in scan order (0..3): the first maximum
// wins, and the first NaN, as in the general kernel.
__device__ __forceinline__ void max4(float a, float b, float c, float d, float& m, int& k) {
    const float win[4] = {a, b, c, d};
    m = win[0];
    k = 0;
#pragma unroll
    for (int t = 1; t < 4; ++t)
        if (win[t] > m || (win[t] != win[t] && m == m)) { m = win[t]; k = t; }
}

// for each item i of NC*P*(Q/V): body(i, top, at) with block2x2's top and plane_top (at).
template <int V, class Body>
__device__ __forceinline__ void for_blocks2x2(int NC, int H, int W, int P, int Q, Body body) {
    const int QV = Q / V;
    GRID_STRIDE32(i, (u32)NC * P * QV) {
        u32 top;
        int at, p;
        block2x2<V>(i, H, W, P, QV, top, at, p);
        body(i, top, at);
    }
}

// The maxima m[o] of the thread's V windows and their indices k[o] in scan order (max4), read
// from the input block at top.
template <int V>
__device__ __forceinline__ void max_block2x2(const float* __restrict__ x, u32 top, int W, float (&m)[V], int (&k)[V]) {
    float a[2 * V], b[2 * V];
    load(x + top, a);
    load(x + top + W, b);
#pragma unroll
    for (int o = 0; o < V; ++o) max4(a[2 * o], a[2 * o + 1], b[2 * o], b[2 * o + 1], m[o], k[o]);
}

// The last input row of each plane when H is odd belongs to no window: the thread of the last
// output row also zeroes it (dx is written exactly once either way).
template <int V>
__device__ __forceinline__ void zero_tail_row(float* __restrict__ dx, u32 top, int at, int H, int W, int P) {
    if ((H & 1) && at / W == 2 * (P - 1)) {
        const float z[2 * V] = {};
        store(dx + top + 2 * W, z);
    }
}

// Writes the input block at top of dx: window o's pixel k (0..3 in scan order) gets d[o] where
// gets(o, k), else 0; and the tail row (zero_tail_row).
template <int V, class Gets>
__device__ __forceinline__ void put_block2x2(float* __restrict__ dx, u32 top, int at, int H, int W, int P,
                                             const float (&d)[V], Gets gets) {
    float a[2 * V], b[2 * V];
#pragma unroll
    for (int o = 0; o < V; ++o) {
        a[2 * o] = gets(o, 0) ? d[o] : 0.f;
        a[2 * o + 1] = gets(o, 1) ? d[o] : 0.f;
        b[2 * o] = gets(o, 2) ? d[o] : 0.f;
        b[2 * o + 1] = gets(o, 3) ? d[o] : 0.f;
    }
    store(dx + top, a);
    store(dx + top + W, b);
    zero_tail_row<V>(dx, top, at, H, W, P);
}

// Work: 3 compares per output, no FLOPs; moves 4*4 B in + (4 + 4) B out per output.
template <int V>
__device__ __forceinline__ void max2x2_fwd(const float* __restrict__ x, float* __restrict__ y, int* __restrict__ am,
                                           int NC, int H, int W, int P, int Q) {
    for_blocks2x2<V>(NC, H, W, P, Q, [&](u32 i, u32 top, int at) {
        float best[V];
        int k[V], arg[V];
        max_block2x2(x, top, W, best, k);
#pragma unroll
        for (int o = 0; o < V; ++o) arg[o] = at + (k[o] >> 1) * W + 2 * o + (k[o] & 1);
        store(y + i * V, best);
        store(am + i * V, arg);
    });
}

// Whether pixel k (0..3 in scan order) of window o of the input block whose top-left pixel has plane
// index at is the window's argmax a (the int32 plane index of max_pool2d_forward).
__device__ __forceinline__ bool is_argmax(int a, int at, int o, int k, int W) {
    return a == at + 2 * o + (k >> 1) * W + (k & 1);
}

// Backward of a max over 2x2 windows: window o's pixel k gets dy where gets(code[o], at, o, k) says
// it was the maximum (code: max-pool's int32 argmax, or the fused op's uint8 window index; a template
// pointer type, as the CPU layer passes its own pointer class).
template <int V, class CodePtr, class Gets>
__device__ __forceinline__ void masked2x2_bwd(const float* __restrict__ dy, CodePtr code, float* __restrict__ dx,
                                              int NC, int H, int W, int P, int Q, Gets gets) {
    for_blocks2x2<V>(NC, H, W, P, Q, [&](u32 i, u32 top, int at) {
        float d[V];
        int c[V];
        load(dy + i * V, d);
        load(code + i * V, c);
        put_block2x2(dx, top, at, H, W, P, d, [&](int o, int k) { return gets(c[o], at, o, k); });
    });
}

// Work: no FLOPs; moves (4 + 4) B in + 4*4 B out per output.
template <int V>
__device__ __forceinline__ void max2x2_bwd(const float* __restrict__ dy, const int* __restrict__ am,
                                           float* __restrict__ dx, int NC, int H, int W, int P, int Q) {
    masked2x2_bwd<V>(dy, am, dx, NC, H, W, P, Q,
                     [&](int a, int at, int o, int k) { return is_argmax(a, at, o, k, W); });
}

// Work: 3 adds + 1 multiply per output (FLOPs); moves 4*4 B in + 4 B out per output. Summed in
// the window's row-major order and scaled by 0.25 (exact), as the CPU path divides by 4.
template <int V>
__device__ __forceinline__ void avg2x2_fwd(const float* __restrict__ x, float* __restrict__ y, int NC, int H, int W,
                                           int P, int Q) {
    for_blocks2x2<V>(NC, H, W, P, Q, [&](u32 i, u32 top, int) {
        float a[2 * V], b[2 * V], out[V];
        load(x + top, a);
        load(x + top + W, b);
#pragma unroll
        for (int o = 0; o < V; ++o) out[o] = (((a[2 * o] + a[2 * o + 1]) + b[2 * o]) + b[2 * o + 1]) * 0.25f;
        store(y + i * V, out);
    });
}

// Work: 1 multiply per output (FLOPs); moves 4 B in + 4*4 B out per output.
template <int V>
__device__ __forceinline__ void avg2x2_bwd(const float* __restrict__ dy, float* __restrict__ dx, int NC, int H, int W,
                                           int P, int Q) {
    for_blocks2x2<V>(NC, H, W, P, Q, [&](u32 i, u32 top, int at) {
        float d[V];
        load(dy + i * V, d);
#pragma unroll
        for (int o = 0; o < V; ++o) d[o] *= 0.25f;
        put_block2x2(dx, top, at, H, W, P, d, [](int, int) { return true; });
    });
}

// The 2x2 entry points for V outputs per thread (SUFFIX 2x2: V = 1, 2x2w: V = 2; names *_v3_2x2, *_v3_2x2w). Work (per
// output): forward max 3 compares and 16 B in + 8 B out (y, argmax); backward max 8 B in + 16 B
// out; forward avg 4 FLOPs and 16 B in + 4 B out; backward avg 1 FLOP and 4 B in + 16 B out.
#define POOL_2X2_KERNELS(SUFFIX, V)                                                                       \
    extern "C" __global__ void max_pool2d_forward_v3_##SUFFIX(const float* __restrict__ x,             \
        float* __restrict__ y, int* __restrict__ argmax, int NC, int H, int W, int P, int Q) {           \
        max2x2_fwd<V>(x, y, argmax, NC, H, W, P, Q);                                                      \
    }                                                                                                     \
    extern "C" __global__ void max_pool2d_backward_v3_##SUFFIX(const float* __restrict__ dy,           \
        const int* __restrict__ argmax, float* __restrict__ dx, int NC, int H, int W, int P, int Q) {    \
        max2x2_bwd<V>(dy, argmax, dx, NC, H, W, P, Q);                                                    \
    }                                                                                                     \
    extern "C" __global__ void avg_pool2d_forward_v3_##SUFFIX(const float* __restrict__ x,             \
        float* __restrict__ y, int NC, int H, int W, int P, int Q) {                                      \
        avg2x2_fwd<V>(x, y, NC, H, W, P, Q);                                                              \
    }                                                                                                     \
    extern "C" __global__ void avg_pool2d_backward_v3_##SUFFIX(const float* __restrict__ dy,           \
        float* __restrict__ dx, int NC, int H, int W, int P, int Q) {                                     \
        avg2x2_bwd<V>(dy, dx, NC, H, W, P, Q);                                                            \
    }

POOL_2X2_KERNELS(2x2, 1)
POOL_2X2_KERNELS(2x2w, 2)

// ---- 2x2 backward at V = 4 and by dx rows (bodies: pool_2x2_wide.cuh) -------------------------
#include "pool_2x2_wide.cuh"

// The V = 4 backward entry points (SUFFIX 2x2v4x2: U = 2 items per thread). Work per output: max 8 B
// in + 16 B out, avg 1 FLOP and 4 B in + 16 B out. __launch_bounds__(256, 6): 6 blocks of 256
// threads (config.BLOCK) per SM, at most 40 registers (ptxas gives the U = 2 kernels 45-46
// otherwise, 5 blocks).
#define POOL_2X2V4_BACKWARD_KERNELS(SUFFIX, U)                                                                 \
    extern "C" __global__ void __launch_bounds__(256, 6) max_pool2d_backward_v3_##SUFFIX(                      \
        const float* __restrict__ dy, const int* __restrict__ argmax, float* __restrict__ dx, int NC, int H, int W, \
        int P, int Q) {                                                                                        \
        bwd_blocks2x2v4<U, true>(                                                                              \
            dx, NC, H, W, P, Q,                                                                                \
            [&](u32 i, float(&d)[4], int(&a)[4]) { load(dy + i * 4, d); load(argmax + i * 4, a); },            \
            [&](int a, int at, int o, int k) { return is_argmax(a, at, o, k, W); });                           \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(256, 6) avg_pool2d_backward_v3_##SUFFIX(                      \
        const float* __restrict__ dy, float* __restrict__ dx, int NC, int H, int W, int P, int Q) {            \
        bwd_blocks2x2v4<U, false>(                                                                             \
            dx, NC, H, W, P, Q,                                                                                \
            [&](u32 i, float(&d)[4], int(&)[4]) {                                                              \
                load(dy + i * 4, d);                                                                           \
                for (int o = 0; o < 4; ++o) d[o] *= 0.25f;                                                     \
            },                                                                                                 \
            [](int, int, int, int) { return true; });                                                          \
    }

POOL_2X2V4_BACKWARD_KERNELS(2x2v4x2, 2)

// The row-wise backward entry points (SUFFIX 2x2r: U = 2). Work per output: max 8 B in + 16 B out
// (dy and argmax read twice, once per dx row, the second from cache), avg 1 FLOP and 4 B in + 16 B
// out, relu_max 5 B in + 16 B out.
#define POOL_2X2R_BACKWARD_KERNELS(SUFFIX, U)                                                                  \
    extern "C" __global__ void max_pool2d_backward_v3_##SUFFIX(const float* __restrict__ dy,                  \
        const int* __restrict__ argmax, float* __restrict__ dx, int NC, int H, int W, int P, int Q) {          \
        bwd_rows2x2<U>(                                                                                        \
            dx, NC, H, W, P, Q, [&](u32 j, float(&d)[2], int(&a)[2]) { load(dy + j, d); load(argmax + j, a); },   \
            [](int a, int pixel, int) { return a == pixel; });                                                \
    }                                                                                                          \
    extern "C" __global__ void avg_pool2d_backward_v3_##SUFFIX(const float* __restrict__ dy,                  \
        float* __restrict__ dx, int NC, int H, int W, int P, int Q) {                                          \
        bwd_rows2x2<U>(                                                                                        \
            dx, NC, H, W, P, Q,                                                                                \
            [&](u32 j, float(&d)[2], int(&)[2]) {                                                              \
                load(dy + j, d);                                                                               \
                d[0] *= 0.25f;                                                                                 \
                d[1] *= 0.25f;                                                                                 \
            },                                                                                                 \
            [](int, int, int) { return true; });                                                               \
    }                                                                                                          \
    extern "C" __global__ void relu_max_pool2d_backward_v2_##SUFFIX(const float* __restrict__ dy,             \
        const unsigned char* __restrict__ code, float* __restrict__ dx, int NC, int H, int W, int P, int Q) {  \
        bwd_rows2x2<U>(                                                                                        \
            dx, NC, H, W, P, Q, [&](u32 j, float(&d)[2], int(&c)[2]) { load(dy + j, d); load(code + j, c); },     \
            [](int c, int, int k) { return c == k; });                                                         \
    }

POOL_2X2R_BACKWARD_KERNELS(2x2r, 2)

// ---- ReLU + max pooling fused, 2x2 / stride 2 (the window index coding is pool.cuh's) ----------
// 2x2 / stride 2 fast path, V outputs per thread as above. Work: 3 compares per output; moves
// 16 B in + (4 + 1) B out per output.
template <int V>
__device__ __forceinline__ void relu_max2x2_fwd(const float* __restrict__ x, float* __restrict__ y,
                                                unsigned char* __restrict__ code, int NC, int H, int W, int P, int Q) {
    for_blocks2x2<V>(NC, H, W, P, Q, [&](u32 i, u32 top, int) {
        float m[V], out[V];
        int k[V], c[V];
        max_block2x2(x, top, W, m, k);
#pragma unroll
        for (int o = 0; o < V; ++o) {
            out[o] = relu_of_max(m[o]);
            c[o] = code_of_max(m[o], k[o]);
        }
        store(y + i * V, out);
        store(code + i * V, c);
    });
}

// Work: no FLOPs; moves (4 + 1) B in + 16 B out per output.
template <int V>
__device__ __forceinline__ void relu_max2x2_bwd(const float* __restrict__ dy, const unsigned char* __restrict__ code,
                                                float* __restrict__ dx, int NC, int H, int W, int P, int Q) {
    masked2x2_bwd<V>(dy, code, dx, NC, H, W, P, Q, [](int c, int, int, int k) { return c == k; });
}

// The fused 2x2 entry points (SUFFIX 2x2: V = 1, 2x2w: V = 2; names relu_max_pool2d_*_v2_2x2,
// relu_max_pool2d_*_v2_2x2w). Work per output: forward 3 compares, 16 B in + 5 B out; backward
// 5 B in + 16 B out, no FLOPs.
#define RELU_POOL_2X2_KERNELS(SUFFIX, V)                                                                   \
    extern "C" __global__ void relu_max_pool2d_forward_v2_##SUFFIX(const float* __restrict__ x,           \
        float* __restrict__ y, unsigned char* __restrict__ code, int NC, int H, int W, int P, int Q) {     \
        relu_max2x2_fwd<V>(x, y, code, NC, H, W, P, Q);                                                     \
    }                                                                                                      \
    extern "C" __global__ void relu_max_pool2d_backward_v2_##SUFFIX(const float* __restrict__ dy,         \
        const unsigned char* __restrict__ code, float* __restrict__ dx, int NC, int H, int W, int P, int Q) { \
        relu_max2x2_bwd<V>(dy, code, dx, NC, H, W, P, Q);                                                   \
    }

RELU_POOL_2X2_KERNELS(2x2, 1)
RELU_POOL_2X2_KERNELS(2x2w, 2)

// Its V = 4 backward (relu_max_pool2d_backward_v2_2x2v4x2; bwd_blocks2x2v4, launch bounds
// as above). Work per output: 5 B in + 16 B out, no FLOPs.
#define RELU_POOL_2X2V4_BACKWARD_KERNEL(SUFFIX, U)                                                             \
    extern "C" __global__ void __launch_bounds__(256, 6) relu_max_pool2d_backward_v2_##SUFFIX(                 \
        const float* __restrict__ dy, const unsigned char* __restrict__ code, float* __restrict__ dx, int NC, int H, \
        int W, int P, int Q) {                                                                                 \
        bwd_blocks2x2v4<U, true>(                                                                              \
            dx, NC, H, W, P, Q,                                                                                \
            [&](u32 i, float(&d)[4], int(&c)[4]) { load(dy + i * 4, d); load(code + i * 4, c); },              \
            [](int c, int, int, int k) { return c == k; });                                                    \
    }

RELU_POOL_2X2V4_BACKWARD_KERNEL(2x2v4x2, 2)
