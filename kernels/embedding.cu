// embedding.cu - label embeddings of the class-conditional GAN (fastconv.nn.conditional): the
// rows of a (C, D) table picked by integer labels, their gradient summed by label, and the
// projection discriminator's class term, each one launch and no host work, so that a training
// step holding them can be captured as a CUDA graph.
//
// Kernel versions
//   embedding_forward_v1           grid-stride over out (N, P + D): out[n, :P] = prefix[n] (P may be
//                                  0), out[n, P:] = scale[n] * W[labels[n]] (scale 1 unless use_scale); a
//                                  label outside [0, C) gives a NaN row; add: added into out.
//   embedding_backward_v1          grid-stride over dW (C, D): dW[c, j] = sum over n with labels[n] == c,
//                                  in order of n, of scale[n] * dy[n, K - D + j] (the last D columns
//                                  of dy (N, K); scale 1 unless use_scale); deterministic, no atomics;
//                                  add: added into dW (store_or_add; the op's accumulate).
//   class_projection_forward_v1    one warp per row: out[n] = sum_j W[labels[n], j] * h[n, j] in
//                                  double; NaN for a label outside [0, C); add: added into out.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/embedding.cu
#include "common.cuh"

// Work: N*(P+D) copies (+ N*D multiplies); moves N*(P+D)*4 B out, N*P*4 + N*D*4 B in (table rows
// from cache) + N*4 B of labels.
extern "C" __global__ void embedding_forward_v1(const float* __restrict__ w, const int* __restrict__ labels,
                                                const float* __restrict__ prefix, const float* __restrict__ scale,
                                                float* __restrict__ out, i64 n, int C, int D, int P, int use_scale,
                                                int add) {
    const int cols = P + D;
    GRID_STRIDE(i, n * cols) {
        const i64 row = i / cols;
        const int col = (int)(i - row * cols);
        float v;
        if (col < P) {
            v = prefix[row * P + col];
        } else {
            const int label = labels[row];
            v = (label >= 0 && label < C) ? w[(i64)label * D + (col - P)] : FC_NAN;
            if (use_scale) v *= scale[row];
        }
        store_or_add(out + i, v, add);
    }
}

// Work: C*D*N label compares + (N*D) multiply-adds in all; moves C*D*4 B out and, per table
// column, the N labels and the matching rows of that dy column in.
extern "C" __global__ void embedding_backward_v1(const float* __restrict__ dy, const int* __restrict__ labels,
                                                 const float* __restrict__ scale, float* __restrict__ dw, int n,
                                                 int C, int D, int K, int use_scale, int add) {
    GRID_STRIDE(i, (i64)C * D) {
        const int c = (int)(i / D), j = (int)(i - (i64)c * D);
        float acc = 0.f;
        for (int r = 0; r < n; ++r) {
            if (labels[r] != c) continue;
            const float g = dy[(i64)r * K + (K - D) + j];
            acc += use_scale ? scale[r] * g : g;
        }
        store_or_add(dw + i, acc, add);
    }
}

// Work: 2*N*F FLOPs (double); moves N*F*4 B of h and the N table rows in, N*4 B out.
extern "C" __global__ void class_projection_forward_v1(const float* __restrict__ h, const float* __restrict__ w,
                                                       const int* __restrict__ labels, float* __restrict__ out,
                                                       int N, int C, int F, int add) {
    const i64 row = (blockIdx.x * (i64)blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (row >= N) return;  // whole warps leave together; no block barrier follows
    const int label = labels[row];
    const bool ok = label >= 0 && label < C;
    double acc = 0.0;
    if (ok)
        for (int j = lane; j < F; j += 32) acc += (double)w[(i64)label * F + j] * (double)h[row * F + j];
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) store_or_add(out + row, ok ? (float)acc : FC_NAN, add);
}
