// bias.cu - the conv bias gradient db[k] = sum over n, p, q of dy[n, k, p, q], fp32 in, double
// accumulation, deterministic; and a per-channel bias added in place, for the ops whose kernels
// have no bias epilogue (the transposed convolution, which runs conv2d's backward-data kernels).
//
// Kernel versions
//   conv2d_backward_bias_v3_f1, conv2d_backward_bias_v3_f4
//                            one block per (slice of batch rows, channel) (reduce.cuh): each
//                            block sums its rows of dy, 1 (f1) or 4 (f4: P*Q % 4 == 0, 16-byte
//                            loads) floats at a time; with one slice it writes db[k] itself
//                            (adds to it with add: store_or_add, the op's accumulate), otherwise a
//                            double partial per slice, and the channel's last block to finish
//                            (a counter per channel) sums the partials in slice order into db:
//                            one launch, and the bits do not depend on which block was last.
//   bias_add_v1              y[i] += b[(i / inner) % c] over the n elements of a (N, C, inner...)
//                            array, in place, grid-stride in 32-bit indices (the launcher checks
//                            n <= INT32_LIMIT). Traffic: (2 * n + c) * 4 B.
// The launcher picks the slice count so that about 4 blocks per SM run (fastconv.backends.cuda
// .config.channel_splits). Work: N*K*P*Q adds; moves N*K*P*Q*4 B in, K*4 B (+ K*S*8 B of
// partials, written and read once) out: bandwidth-bound, judged against the device copy.
// The counters (uint32, one per channel) are zero when the launch starts and the last blocks
// leave them zero (the launcher's workspace, zeroed when made and then kept: launch._alloc zero).
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/bias.cu
#include "common.cuh"
#include "reduce.cuh"

template <int V>
__device__ __forceinline__ void bias_grad(const float* __restrict__ dy, float* __restrict__ db, double* part,
                                          unsigned* count, int N, int K, int PQ, int chunk, int add) {
    __shared__ double buf[32];
    const int k = blockIdx.y;
    int n0, n1;
    slice_rows(N, chunk, n0, n1);
    double acc = 0.0;
    for_channel_rows<V, 4>(
        k, K, PQ, n0, n1, [&](unsigned j) { return load_vec<V>(dy + j); },
        [&](unsigned, const Vec<V>& t) {
            double s = (double)t.e[0];
#pragma unroll
            for (int e = 1; e < V; ++e) s += (double)t.e[e];
            acc += s;
        });
    acc = block_sum(acc, buf);
    if (threadIdx.x != 0) return;
    if (gridDim.x == 1) {
        store_or_add(db + k, (float)acc, add);
        return;
    }
    part[k * gridDim.x + blockIdx.x] = acc;
    if (counts_last(&count[k], gridDim.x)) {   // the channel's last block: every partial is written
        double t = 0.0;   // sum_partials' order, read past L1 (written by other blocks of this launch)
        for (int s = 0; s < (int)gridDim.x; ++s) t += __ldcg(part + k * gridDim.x + s);
        store_or_add(db + k, (float)t, add);
        count[k] = 0u;   // zero again for the next launch
    }
}

// Work: (rows in the slice)*P*Q adds per block (+ S per channel in its last block); moves that many
// *4 B in and 8 B (or 4 B) out (+ S*8 B read by the last block).
#define BIAS_KERNEL(V)                                                                                     \
    extern "C" __global__ void conv2d_backward_bias_v3_f##V(const float* __restrict__ dy,                \
        float* __restrict__ db, double* part, unsigned* count, int N, int K, int PQ, int chunk, int add) {\
        bias_grad<V>(dy, db, part, count, N, K, PQ, chunk, add);                                          \
    }
BIAS_KERNEL(1)
BIAS_KERNEL(4)

// Work: n adds (+ one 32-bit division and modulo per element); moves (2 * n + c) * 4 B.
extern "C" __global__ void bias_add_v1(float* __restrict__ y, const float* __restrict__ b, int n, int c, int inner) {
    GRID_STRIDE32(i, n) y[i] += b[(i / (unsigned)inner) % (unsigned)c];
}
