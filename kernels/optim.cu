// optim.cu - fused in-place optimizer updates (PyTorch semantics), fp32, grid-stride.
//
// Kernel versions
//   sgd_update_v1   g += wd*p; if momentum: v = momentum*v + g, step = nesterov ? g + momentum*v : v
//                   else step = g; p -= lr*step.  Traffic: (3 + 2) * n * 4 B with momentum.
//   sgd_update_v2   sgd_update_v1 with lr read from device memory (lr[0]): a schedule changes it
//                   with a 4-byte copy between replays of a CUDA graph of the step.
//   adam_update_v1  g += wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
//                   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps) with bc = 1 - beta^step, the int
//                   step an argument; each thread computes bc in double from double betas, so
//                   the host passes the step as it is (a launch plan fills it in per call).
//                   Traffic: (4 + 3) * n * 4 B.
//   adam_update_v2  adam_update_v1 with the step count on the device (a CUDA graph replays it):
//                   count holds `rows` int32 pairs (count, finished blocks), every count equal (the
//                   parameters a flat launch updates); every block uses count[0] + 1 as the step,
//                   and the last block to finish (count[1] counts finished blocks) stores
//                   count[0] + 1 in every row and resets count[1] to 0.
//   adam_update_v3  adam_update_v2 with lr read from device memory (as sgd_update_v2).
//   adam_update_v4  adam_update_v1 with lr read from device memory.
//   accumulate_v2   acc += x, or acc = x with add == 0: a parameter's gradient written into (or
//                   summed over its uses in a step into) its slice of the flat gradient buffer.
//                   Traffic: 3 * n * 4 B (2 * n * 4 B with add == 0).
// The optimizers (fastconv.optim) launch one update over the flat buffers that hold every
// parameter, gradient and state slot of a dtype, so one launch updates the whole model.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/optim.cu
#include "common.cuh"

// The SGD update of elements [0, n) (the header's formula), grid-stride.
__device__ __forceinline__ void sgd_body(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ v,
                                         i64 n, float lr, float momentum, float wd, int nesterov, int has_v) {
    GRID_STRIDE(i, n) {
        const float pi = p[i];
        float gi = g[i] + wd * pi;
        if (has_v) {
            const float vi = momentum * v[i] + gi;
            v[i] = vi;
            gi = nesterov ? gi + momentum * vi : vi;
        }
        p[i] = pi - lr * gi;
    }
}

// Work: 4 FLOPs per element (6 with momentum, 8 with Nesterov); moves (2 + 1) * n * 4 B, or
// (3 + 2) * n * 4 B with momentum (p, g, v read; p, v written).
extern "C" __global__ void sgd_update_v1(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ v,
                                         i64 n, float lr, float momentum, float wd, int nesterov, int has_v) {
    sgd_body(p, g, v, n, lr, momentum, wd, nesterov, has_v);
}

// Work: as sgd_update_v1; moves its bytes + 4 B (lr).
extern "C" __global__ void sgd_update_v2(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ v,
                                         i64 n, const float* __restrict__ lr, float momentum, float wd, int nesterov,
                                         int has_v) {
    sgd_body(p, g, v, n, lr[0], momentum, wd, nesterov, has_v);
}

// The Adam update of elements [0, n) at step `step` >= 1 (the header's formula), grid-stride.
__device__ __forceinline__ void adam_body(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                          float* __restrict__ v, i64 n, float lr, double beta1, double beta2,
                                          float eps, float wd, int step) {
    const float bc1 = (float)(1.0 - pow(beta1, (double)step)), bc2 = (float)(1.0 - pow(beta2, (double)step));
    const float b1 = (float)beta1, b2 = (float)beta2;
    GRID_STRIDE(i, n) {
        const float pi = p[i];
        const float gi = g[i] + wd * pi;
        const float mi = b1 * m[i] + (1.f - b1) * gi;
        const float vi = b2 * v[i] + (1.f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    }
}

// Work: about 15 FLOPs + 1 sqrtf per element and 2 double pow per thread; moves (4 + 3) * n * 4 B
// (p, g, m, v read; p, m, v written).
extern "C" __global__ void adam_update_v1(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                          float* __restrict__ v, i64 n, float lr, double beta1, double beta2,
                                          float eps, float wd, int step) {
    adam_body(p, g, m, v, n, lr, beta1, beta2, eps, wd, step);
}

// Work: as adam_update_v1; moves its bytes + 4 B (lr).
extern "C" __global__ void adam_update_v4(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                          float* __restrict__ v, i64 n, const float* __restrict__ lr, double beta1,
                                          double beta2, float eps, float wd, int step) {
    adam_body(p, g, m, v, n, lr[0], beta1, beta2, eps, wd, step);
}

// adam_update_v2/v3: the update at the device step count (see the header).
__device__ __forceinline__ void adam_counted(float* __restrict__ p, const float* __restrict__ g,
                                             float* __restrict__ m, float* __restrict__ v, i64 n, float lr,
                                             double beta1, double beta2, float eps, float wd, int* __restrict__ count,
                                             int rows) {
    const int step = count[0] + 1;  // read before this block counts itself finished
    adam_body(p, g, m, v, n, lr, beta1, beta2, eps, wd, step);
    __syncthreads();  // every thread of the block has read count[0]
    if (threadIdx.x == 0 && counts_last((unsigned*)&count[1], gridDim.x)) {  // the last block: all others have read
        for (int r = 0; r < rows; ++r) count[2 * r] = step;
        count[1] = 0;
    }
}

// Work: as adam_update_v1; moves its bytes + 8 * rows B (counters).
extern "C" __global__ void adam_update_v2(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                          float* __restrict__ v, i64 n, float lr, double beta1, double beta2,
                                          float eps, float wd, int* __restrict__ count, int rows) {
    adam_counted(p, g, m, v, n, lr, beta1, beta2, eps, wd, count, rows);
}

// Work: as adam_update_v2; moves its bytes + 4 B (lr).
extern "C" __global__ void adam_update_v3(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                          float* __restrict__ v, i64 n, const float* __restrict__ lr, double beta1,
                                          double beta2, float eps, float wd, int* __restrict__ count, int rows) {
    adam_counted(p, g, m, v, n, lr[0], beta1, beta2, eps, wd, count, rows);
}

// Work: n FLOPs (none with add == 0); moves 3 * n * 4 B (2 * n * 4 B with add == 0).
extern "C" __global__ void accumulate_v2(float* __restrict__ acc, const float* __restrict__ x, i64 n, int add) {
    if (add) {
        GRID_STRIDE(i, n) acc[i] += x[i];
    } else {
        GRID_STRIDE(i, n) acc[i] = x[i];
    }
}
