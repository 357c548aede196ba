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

// Calls f(offset) for the V-element vectors of channel c in rows [n0, n1) (V = 4 needs HW % 4 == 0
// and a 16-byte-aligned base), the block's threads striding over (row, vector) pairs with the
// row/column step precomputed: no division inside the loop.
template <int V, typename F>
__device__ __forceinline__ void for_channel_rows(int c, int C, int HW, int n0, int n1, F f) {
    const int per_row = HW / V;
    const int dn = blockDim.x / per_row, dv = blockDim.x - dn * per_row;
    int n = n0 + (int)threadIdx.x / per_row;
    int v = (int)threadIdx.x - ((int)threadIdx.x / per_row) * per_row;
    while (n < n1) {
        f(((unsigned)n * C + c) * (unsigned)HW + (unsigned)(v * V));
        v += dv;
        n += dn;
        if (v >= per_row) { v -= per_row; ++n; }
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

__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ void store4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
