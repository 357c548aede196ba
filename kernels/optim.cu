// optim.cu - fused in-place optimizer updates (PyTorch semantics), fp32, grid-stride.
//
// Kernel versions
//   sgd_update_v1   g += wd*p; if momentum: v = momentum*v + g, step = nesterov ? g + momentum*v : v
//                   else step = g; p -= lr*step.  Traffic: (3 + 2) * n * 4 B with momentum.
//   adam_update_v1  g += wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
//                   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps) with bc = 1 - beta^step computed
//                   on the host in double. Traffic: (4 + 3) * n * 4 B.
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
