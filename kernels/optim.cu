// optim.cu - fused in-place optimizer updates (PyTorch semantics), fp32, grid-stride.
//
// Kernel versions
//   sgd_update_v1   g += wd*p; if momentum: v = momentum*v + g, step = nesterov ? g + momentum*v : v
//                   else step = g; p -= lr*step.  Traffic: (3 + 2) * n * 4 B with momentum.
//   adam_update_v1  g += wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
//                   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps) with bc = 1 - beta^step computed
//                   on the host in double. Traffic: (4 + 3) * n * 4 B.
//   adam_update_v2  adam_update_v1 with the step count on the device (a CUDA graph replays it):
//                   count[0] is the count before this update; every block uses count[0] + 1 for
//                   the bias corrections (computed in double from double betas, as the host does
//                   for v1), and the last block to finish (count[1] counts finished blocks) stores
//                   count[0] + 1 and resets count[1] to 0.
//   sgd_update_multi_v1  sgd_update_v1 over many tensors in one launch: tensor t = blockIdx.y
//                   takes (param, grad, velocity, n) from row t of a table of 64-bit ints
//                   (addresses and count); blockIdx.x grid-strides over its elements.
//   adam_update_multi_v2  adam_update_v2 over many tensors in one launch: tensor t = blockIdx.y
//                   takes (param, grad, m, v, counter, n) from row t of a table of 64-bit ints.
//   accumulate_v1   acc += x (gradient sums of a parameter used twice in a step). Traffic: 3 * n * 4 B.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/optim.cu
#include "common.cuh"

// Work: 4 FLOPs per element (6 with momentum, 8 with Nesterov); moves (2 + 1) * n * 4 B, or
// (3 + 2) * n * 4 B with momentum (p, g, v read; p, v written).
extern "C" __global__ void sgd_update_v1(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ v,
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

// Work: about 15 FLOPs + 1 sqrtf per element; moves (4 + 3) * n * 4 B (p, g, m, v read;
// p, m, v written).
extern "C" __global__ void adam_update_v1(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                          float* __restrict__ v, i64 n, float lr, float beta1, float beta2,
                                          float eps, float wd, float bc1, float bc2) {
    GRID_STRIDE(i, n) {
        const float pi = p[i];
        const float gi = g[i] + wd * pi;
        const float mi = beta1 * m[i] + (1.f - beta1) * gi;
        const float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    }
}

// Work: as adam_update_v1, + 2 double pow per thread; moves (4 + 3) * n * 4 B + 8 B.
extern "C" __global__ void adam_update_v2(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                          float* __restrict__ v, i64 n, float lr, double beta1, double beta2,
                                          float eps, float wd, int* __restrict__ count) {
    const int step = count[0] + 1;  // read before this block counts itself finished
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
    __syncthreads();  // every thread of the block has read count[0]
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd((unsigned*)&count[1], 1u) == gridDim.x - 1) {  // the last block: all others have read
            count[0] = step;
            count[1] = 0;
        }
    }
}

// Work: as sgd_update_v1 for each tensor; moves its bytes + 32 B per tensor (the table row).
extern "C" __global__ void sgd_update_multi_v1(const i64* __restrict__ table, float lr, float momentum, float wd,
                                               int nesterov, int has_v) {
    const i64* row = table + 4 * (i64)blockIdx.y;
    float* p = (float*)row[0];
    const float* g = (const float*)row[1];
    float* v = (float*)row[2];
    const i64 n = row[3];
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
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

// Work: as adam_update_v2 for each tensor; moves its bytes + 48 B per tensor (the table row).
extern "C" __global__ void adam_update_multi_v2(const i64* __restrict__ table, float lr, double beta1, double beta2,
                                                float eps, float wd) {
    const i64* row = table + 6 * (i64)blockIdx.y;
    float* p = (float*)row[0];
    const float* g = (const float*)row[1];
    float* m = (float*)row[2];
    float* v = (float*)row[3];
    int* count = (int*)row[4];
    const i64 n = row[5];
    const int step = count[0] + 1;  // read before this block counts itself finished
    const float bc1 = (float)(1.0 - pow(beta1, (double)step)), bc2 = (float)(1.0 - pow(beta2, (double)step));
    const float b1 = (float)beta1, b2 = (float)beta2;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const float pi = p[i];
        const float gi = g[i] + wd * pi;
        const float mi = b1 * m[i] + (1.f - b1) * gi;
        const float vi = b2 * v[i] + (1.f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    }
    __syncthreads();  // every thread of the block has read count[0]
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd((unsigned*)&count[1], 1u) == gridDim.x - 1) {  // this tensor's last block
            count[0] = step;
            count[1] = 0;
        }
    }
}

// Work: n FLOPs; moves 3 * n * 4 B (acc, x in; acc out).
extern "C" __global__ void accumulate_v1(float* __restrict__ acc, const float* __restrict__ x, i64 n) {
    GRID_STRIDE(i, n) acc[i] += x[i];
}
