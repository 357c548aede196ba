// reduce.cuh - per-channel reductions over (N, C, HW) tensors split across blocks, for the conv
// bias gradient (kernels/bias.cu) and batch normalisation (kernels/batchnorm.cu).
//
// Channel c of an (N, C, HW) tensor is N rows of HW contiguous elements, row n at (n*C + c)*HW.
// A reduction over it is split into S slices of `chunk` rows, one block per (slice, channel):
// blockIdx.x = slice, blockIdx.y = channel. Each block writes one double partial per slice;
// whoever needs the total sums a channel's S partials in slice order. Every step has a fixed
// order (threads' strides, block_sum's tree, slice order), so results are bitwise reproducible.
// Offsets are 32-bit: the launchers check N*C*HW <= INT32_LIMIT.
// Include after common.cuh (the loader pastes headers; it does not nest them).
#pragma once

// V consecutive floats of a channel row, loaded as one 16-byte access when V = 4.
template <int V>
struct Vec {
    float e[V];
};

template <int V>
__device__ __forceinline__ Vec<V> load_vec(const float* __restrict__ p) {
    Vec<V> r;
    if constexpr (V == 4) {
        const float4 t = *reinterpret_cast<const float4*>(p);
        r.e[0] = t.x; r.e[1] = t.y; r.e[2] = t.z; r.e[3] = t.w;
    } else {
        r.e[0] = *p;
    }
    return r;
}

template <int V>
__device__ __forceinline__ void store_vec(float* __restrict__ p, const Vec<V>& r) {
    if constexpr (V == 4) *reinterpret_cast<float4*>(p) = make_float4(r.e[0], r.e[1], r.e[2], r.e[3]);
    else *p = r.e[0];
}

// For the V-element vectors of channel c in rows [n0, n1) (V = 4 needs HW % 4 == 0 and a
// 16-byte-aligned base): t = load(offset), then use(offset, t). The block's threads stride over
// (row, vector) pairs with the row/column step precomputed (no division inside the loop). Each
// thread takes U vectors per iteration and loads all of them before using any, so that U loads
// are in flight per thread (one at a time left these kernels latency-bound); the uses run in the
// order a one-at-a-time loop would, so sums keep their bits. U = 4 for one array read, 2 for
// two (dy and x), within the 40-register budget of the bandwidth kernels.
template <int V, int U, typename Load, typename Use>
__device__ __forceinline__ void for_channel_rows(int c, int C, int HW, int n0, int n1, Load load, Use use) {
    const int per_row = HW / V;
    const int dn = blockDim.x / per_row, dv = blockDim.x - dn * per_row;
    int n = n0 + (int)threadIdx.x / per_row;
    int v = (int)threadIdx.x - ((int)threadIdx.x / per_row) * per_row;
    while (n < n1) {
        unsigned off[U];
        bool ok[U];
        decltype(load(0u)) t[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            ok[u] = n < n1;
            off[u] = ((unsigned)n * C + c) * (unsigned)HW + (unsigned)(v * V);
            t[u] = load(ok[u] ? off[u] : off[0]);  // unpredicated (off[0] is in range): issued together
            v += dv;
            n += dn;
            if (v >= per_row) { v -= per_row; ++n; }
        }
#pragma unroll
        for (int u = 0; u < U; ++u)
            if (ok[u]) use(off[u], t[u]);
    }
}

// Rows [n0, n1) of this block's slice.
__device__ __forceinline__ void slice_rows(int N, int chunk, int& n0, int& n1) {
    n0 = blockIdx.x * chunk;
    n1 = min(N, n0 + chunk);
}

// Sum of a channel's S partials, in slice order (every caller gets the same bits).
__device__ __forceinline__ double sum_partials(const double* __restrict__ part, int c, int S) {
    double t = 0.0;
    for (int s = 0; s < S; ++s) t += part[c * S + s];
    return t;
}

