// pool_2x2_wide.cuh - the bodies of pool_2x2.cu's wide backward kernels, 16 dx bytes per store: the
// V = 4 blocks written by lane pairs (2x2v4x2) and the dx rows (2x2r). pool_2x2.cu includes it after its
// vector loads and stores (load, store overloads) and block helpers; its entry macros stay there.
#pragma once

// ---- 2x2 backward at V = 4 --------------------------------------------------------------------
// A thread owns 4 adjacent windows (item i of NC*P*(Q/4)): one 16-byte dy (and argmax) load, and
// 2 rows x 8 floats (2 x 32 B) of dx to write. As four 16-byte stores of its own, each store
// instruction of a warp would fill half of 32 sectors (32-byte stride across lanes). Instead the
// lanes pair up (lane, lane ^ 1) and write the even lane's block, then the odd lane's, each lane
// one half of it (half b = lane & 1: windows 2b and 2b + 1, 4 columns of each row): every store
// instruction writes 16 whole 32-byte sectors. The partners trade the two windows the other one
// writes, and its block's offsets, by __shfl_xor_sync; the loop is warp-uniform (blockDim.x is a
// multiple of 32), so a lane past the end still trades, and a half is stored only for a valid
// owner. U items per thread per step: all their loads are issued before the first store.

// One 16-byte store of (x, y, z, w) at p (16-byte aligned). Written as PTX on the GPU: from
// plain float4 stores NVVM splits some of put_half2x2's into four 4-byte ones (the values picked
// per lane by selects). No "memory" clobber: nothing in these kernels reads dx back.
__device__ __forceinline__ void store16(float* p, float x, float y, float z, float w) {
#ifdef FASTCONV_EMU
    *reinterpret_cast<float4*>(p) = make_float4(x, y, z, w);
#else
    asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "f"(x), "f"(y), "f"(z), "f"(w));
#endif
}

// One half of an owner's block: top-left pixel at flat offset top (at < 0: no owner), its windows
// 2b + t (t = 0, 1) with gradients d[t] and pixel masks m[t] (bit k: pixel k, 0..3 in scan order,
// gets d[t], the others 0). tail: the owner's block is in the last output row and H is odd, so the
// row under it (no window's) is zeroed too.
__device__ __forceinline__ void put_half2x2(float* __restrict__ dx, u32 top, int at, int tail, int b, int W,
                                            const float (&d)[2], const int (&m)[2]) {
    if (at < 0) return;
    const auto pick = [&](int t, int k) { return m[t] >> k & 1 ? d[t] : 0.f; };
    float* out = dx + top + 4 * b;
    store16(out, pick(0, 0), pick(0, 1), pick(1, 0), pick(1, 1));
    store16(out + W, pick(0, 2), pick(0, 3), pick(1, 2), pick(1, 3));
    if (tail) store16(out + 2 * W, 0.f, 0.f, 0.f, 0.f);
}

// for each item i of NC*P*(Q/4), U per thread per step: fetch(i, d, a) loads its 4 windows'
// gradients d and argmax codes a; with MASKED, window o's pixel k gets d[o] where gets(a[o], at, o,
// k) (at: the block's top-left plane index), else every pixel does (average pooling); the pair of
// lanes writes both lanes' blocks (put_half2x2).
template <int U, bool MASKED, class Fetch, class Gets>
__device__ __forceinline__ void bwd_blocks2x2v4(float* __restrict__ dx, int NC, int H, int W, int P, int Q,
                                                Fetch fetch, Gets gets) {
    const u32 QV = (u32)Q / 4, n = (u32)NC * P * QV, stride = gridDim.x * blockDim.x, lane = threadIdx.x & 31;
    const int b = lane & 1;
    for (u32 base = blockIdx.x * blockDim.x + (threadIdx.x - lane); base < n; base += U * stride) {
        float d[U][4] = {};
        int a[U][4] = {};
#pragma unroll
        for (int u = 0; u < U; ++u)
            if (base + u * stride + lane < n) fetch(base + u * stride + lane, d[u], a[u]);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const u32 i = base + u * stride + lane;
            u32 top = 0;
            int at = -1, p = 0;
            if (i < n) block2x2<4>(i, H, W, P, QV, top, at, p);
            const int tail = (H & 1) && p == P - 1;
            int m[4] = {15, 15, 15, 15};
            if (MASKED)
#pragma unroll
                for (int o = 0; o < 4; ++o) {
                    m[o] = 0;
#pragma unroll
                    for (int k = 0; k < 4; ++k) m[o] |= gets(a[u][o], at, o, k) << k;
                }
            // half b of the even lane's block (d0, m0) and of the odd lane's (d1, m1): this lane's
            // windows 2b + t, and the partner's, which it sends (its windows 2(1 - b) + t)
            float d0[2], d1[2];
            int m0[2] = {15, 15}, m1[2] = {15, 15};
#pragma unroll
            for (int t = 0; t < 2; ++t) {
                const float own = b ? d[u][2 + t] : d[u][t];
                const float got = __shfl_xor_sync(0xffffffffu, b ? d[u][t] : d[u][2 + t], 1);
                d0[t] = b ? got : own;
                d1[t] = b ? own : got;
                if (MASKED) {
                    const int mown = b ? m[2 + t] : m[t];
                    const int mgot = __shfl_xor_sync(0xffffffffu, b ? m[t] : m[2 + t], 1);
                    m0[t] = b ? mgot : mown;
                    m1[t] = b ? mown : mgot;
                }
            }
            const u32 ptop = __shfl_xor_sync(0xffffffffu, top, 1);
            const int pat = __shfl_xor_sync(0xffffffffu, at, 1), ptail = __shfl_xor_sync(0xffffffffu, tail, 1);
            put_half2x2(dx, b ? ptop : top, b ? pat : at, b ? ptail : tail, b, W, d0, m0);
            put_half2x2(dx, b ? top : ptop, b ? at : pat, b ? tail : ptail, b, W, d1, m1);
        }
    }
}

// ---- 2x2 backward by dx rows: 2x2r ------------------------------------------------------------
// Item i of NC*H*(W/4) is dx[4i .. 4i + 3]: 4 columns of dx row h (plane nc) = 2 windows of output
// row h / 2, written by one 16-byte store, so a warp's store instruction writes 512 contiguous bytes
// (2x2v4x2's write 16 sectors 32 bytes apart). Its windows' dy (and argmax / code) are one 8-byte
// (int2 / uchar2) load, made by both dx rows of a window row (the second mostly from L1). Rows
// h >= 2P (H odd) are zero. U items per thread per step: all their loads before the first store.
template <int U, class Fetch, class Gets>
__device__ __forceinline__ void bwd_rows2x2(float* __restrict__ dx, int NC, int H, int W, int P, int Q, Fetch fetch,
                                            Gets gets) {
    const u32 W4 = (u32)W / 4, n = (u32)NC * H * W4, stride = gridDim.x * blockDim.x;
    for (u32 base = blockIdx.x * blockDim.x + threadIdx.x; base < n; base += U * stride) {
        float d[U][2] = {};
        int a[U][2] = {}, h[U] = {}, c4[U] = {};
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const u32 i = base + u * stride;
            if (i >= n) continue;
            u32 nc;
            split3(i, H, W4, nc, h[u], c4[u]);
            if (h[u] < 2 * P) fetch((nc * P + (h[u] >> 1)) * (u32)Q + 2 * c4[u], d[u], a[u]);
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const u32 i = base + u * stride;
            if (i >= n) continue;
            const int k0 = (h[u] & 1) * 2;  // the window index of the row's first pixel
            const auto pick = [&](int t, int s) {
                return h[u] < 2 * P && gets(a[u][t], h[u] * W + 4 * c4[u] + 2 * t + s, k0 + s) ? d[u][t] : 0.f;
            };
            store16(dx + 4 * i, pick(0, 0), pick(0, 1), pick(1, 0), pick(1, 1));
        }
    }
}
