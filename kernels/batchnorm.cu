// batchnorm.cu - batch normalisation over axis 1 of x viewed as (N, C, HW) (HW = 1 for (N, C)), fp32
// data with double accumulators in the per-channel reductions.
//
// Kernel versions
//   batchnorm_forward_train_v1  one block per channel: two-pass mean and biased variance
//                               (sum, then sum of squared deviations), writes mean/invstd,
//                               updates running_mean/running_var in place (running_var gets the
//                               unbiased variance), then y = (x - mean) * invstd * gamma + beta.
//                               Traffic: 3 reads + 1 write of the channel, 2 FLOPs/elt/pass.
//   batchnorm_forward_eval_v1   grid-stride element-wise with the running statistics; the first
//                               C threads also write mean = running_mean, invstd.
//                               Traffic: 1 read + 1 write.
//   batchnorm_backward_v1       one block per channel: sum(dy) and sum(dy*xhat) in one pass, then
//                               dx = gamma*invstd*(dy - sum(dy)/M - xhat*sum(dy*xhat)/M) in
//                               training, dx = gamma*invstd*dy in eval; dgamma = sum(dy*xhat),
//                               dbeta = sum(dy). Traffic: 2 reads of (dy, x) + 1 write.
// One block per channel fills the GPU only when C is large; the layers here have C >= 64.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/batchnorm.cu
#include "common.cuh"

__device__ __forceinline__ i64 bn_index(i64 i, int c, int C, int HW) {
    const i64 n = i / HW;
    return (n * C + c) * HW + (i - n * HW);
}

// Work (M = N*HW per channel): about 8*M FLOPs per channel over three passes (sum, squared
// deviations, normalise); moves 4*M*4 B per channel (x read three times, y written).
extern "C" __global__ void batchnorm_forward_train_v1(
    const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
    float* __restrict__ running_mean, float* __restrict__ running_var, float* __restrict__ y,
    float* __restrict__ mean_out, float* __restrict__ invstd_out, int N, int C, int HW, float momentum,
    float eps) {
    __shared__ double buf[64];
    const int c = blockIdx.x;
    const i64 count = (i64)N * HW;
    double s = 0.0;
    for (i64 i = threadIdx.x; i < count; i += blockDim.x) s += x[bn_index(i, c, C, HW)];
    const double mean = block_sum(s, buf) / (double)count;
    double v = 0.0;
    for (i64 i = threadIdx.x; i < count; i += blockDim.x) {
        const double d = x[bn_index(i, c, C, HW)] - mean;
        v += d * d;
    }
    const double var = block_sum(v, buf) / (double)count;
    const double invstd = 1.0 / sqrt(var + (double)eps);
    if (threadIdx.x == 0) {
        mean_out[c] = (float)mean;
        invstd_out[c] = (float)invstd;
        const double mom = momentum;
        running_mean[c] = (float)((1.0 - mom) * running_mean[c] + mom * mean);
        running_var[c] = (float)((1.0 - mom) * running_var[c] + mom * var * count / (double)(count - 1));
    }
    const float m = (float)mean, is = (float)invstd, gm = gamma[c], bt = beta[c];
    for (i64 i = threadIdx.x; i < count; i += blockDim.x) {
        const i64 j = bn_index(i, c, C, HW);
        y[j] = (x[j] - m) * is * gm + bt;
    }
}

// Work: about 5 FLOPs + 1 sqrtf per element; moves 2*total*4 B (x in, y out) plus the
// per-channel vectors (cache-served).
extern "C" __global__ void batchnorm_forward_eval_v1(
    const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
    const float* __restrict__ running_mean, const float* __restrict__ running_var, float* __restrict__ y,
    float* __restrict__ mean_out, float* __restrict__ invstd_out, i64 total, int C, int HW, float eps) {
    GRID_STRIDE(i, total) {
        const int c = (int)((i / HW) % C);
        const float is = 1.0f / sqrtf(running_var[c] + eps);
        y[i] = (x[i] - running_mean[c]) * is * gamma[c] + beta[c];
        if (i < C) {
            mean_out[i] = running_mean[i];
            invstd_out[i] = 1.0f / sqrtf(running_var[i] + eps);
        }
    }
}

// Work (M = N*HW per channel): about 10*M FLOPs per channel over two passes; moves 5*M*4 B
// per channel (dy and x read twice, dx written).
extern "C" __global__ void batchnorm_backward_v1(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ gamma,
    const float* __restrict__ mean, const float* __restrict__ invstd, float* __restrict__ dx,
    float* __restrict__ dgamma, float* __restrict__ dbeta, int N, int C, int HW, int training) {
    __shared__ double buf[64];
    const int c = blockIdx.x;
    const i64 count = (i64)N * HW;
    const float m = mean[c], is = invstd[c];
    double sdy = 0.0, sdyx = 0.0;
    for (i64 i = threadIdx.x; i < count; i += blockDim.x) {
        const i64 j = bn_index(i, c, C, HW);
        const double d = dy[j];
        sdy += d;
        sdyx += d * (double)((x[j] - m) * is);
    }
    block_sum2(sdy, sdyx, buf);
    if (threadIdx.x == 0) {
        dgamma[c] = (float)sdyx;
        dbeta[c] = (float)sdy;
    }
    const float scale = gamma[c] * is;
    const float a = training ? (float)(sdy / (double)count) : 0.f;
    const float b = training ? (float)(sdyx / (double)count) : 0.f;
    for (i64 i = threadIdx.x; i < count; i += blockDim.x) {
        const i64 j = bn_index(i, c, C, HW);
        const float xh = (x[j] - m) * is;
        dx[j] = scale * (dy[j] - a - xh * b);
    }
}
