// loss.cu - softmax cross-entropy and binary cross-entropy with logits, forward and backward in
// one launch each, mean reduction finished on the device (the loss stays a 0-d device array:
// no host round trip).
//
// Kernel versions
//   softmax_xent_rows_v1  one warp per row of the (N, K) logits: row max, sum of exp, writes
//                         dlogits = (softmax - onehot) / N and the row loss
//                         logsumexp - logit[label] (NaN when the label is outside [0, K), so a
//                         bad label shows up as a NaN loss instead of a wrong number).
//                         Traffic: 3 reads of the logits + 1 write, 2 exp per element.
//   bce_logits_v1         grid-stride over elements: loss max(z,0) - z*t + log1p(exp(-|z|)),
//                         dlogits = (sigmoid(z) - t) / n; per-block partial sums (double).
//   sum_scale_v1          one block: out[0] = scale * sum(in[0:n]) with double accumulation
//                         (turns row losses / block partials into the mean). A loss kernel
//                         launched as one block (the launcher's choice for small inputs: a
//                         GAN's logits, a classifier's batch) does this itself, the same sum in
//                         the same order, and sum_scale_v1 is not launched.
//   gan_stats_v1          one block: adds a GAN step's logged numbers to five double sums on the
//                         device (D loss real + fake, G loss, mean sigmoid of the real, fake and
//                         G-step logits), so a trainer reads them once per log line, not per step.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/loss.cu
#include "common.cuh"

// out[0] = scale * sum(in[0:n]) by one block: thread t adds in[t], in[t + blockDim], ... in double,
// then block_sum; the order depends on blockDim alone (deterministic). All threads must call it.
__device__ __forceinline__ void sum_scale_block(const float* __restrict__ in, float* __restrict__ out, i64 n,
                                                double scale, double* buf) {
    double acc = 0.0;
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) acc += in[i];
    acc = block_sum(acc, buf);
    if (threadIdx.x == 0) out[0] = (float)(acc * scale);
}

// One row z of K logits with label `label`, by one warp (its lane): d = (softmax - onehot) * inv_n,
// *row_loss = logsumexp - z[label] (NaN for a label outside [0, K)).
__device__ __forceinline__ void xent_row(const float* __restrict__ z, int label, float* __restrict__ d,
                                         float* __restrict__ row_loss, int K, float inv_n, int lane) {
    float mx = -FC_INF;
    for (int j = lane; j < K; j += 32) mx = fmaxf(mx, z[j]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float s = 0.f;
    for (int j = lane; j < K; j += 32) s += expf(z[j] - mx);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    const bool ok = label >= 0 && label < K;
    const float inv_s = 1.f / s;
    for (int j = lane; j < K; j += 32) d[j] = (expf(z[j] - mx) * inv_s - (j == label ? 1.f : 0.f)) * inv_n;
    if (lane == 0) *row_loss = ok ? (logf(s) + mx - z[label]) : FC_NAN;
}

// Work: 2*N*K expf and about 6*N*K FLOPs; moves 4*N*K*4 B (logits read three times, dlogits
// written) + N*(4 + 4) B (labels in, row losses out). Rows grid-stride over the warps; a launch of
// one block also writes loss[0] = scale * the sum of the row losses (sum_scale_v1's sum).
extern "C" __global__ void __launch_bounds__(1024) softmax_xent_rows_v1(   // 1024: the one-block launch
    const float* __restrict__ logits, const int* __restrict__ labels, float* __restrict__ dlogits,
    float* __restrict__ row_loss, int N, int K, float inv_n, float* __restrict__ loss, double scale) {
    __shared__ double buf[64];
    const int lane = threadIdx.x & 31;
    const i64 warps = ((i64)gridDim.x * blockDim.x) >> 5;
    for (i64 row = (blockIdx.x * (i64)blockDim.x + threadIdx.x) >> 5; row < N; row += warps)
        xent_row(logits + row * K, labels[row], dlogits + row * K, row_loss + row, K, inv_n, lane);
    if (gridDim.x == 1) {
        __syncthreads();   // every warp's row losses written
        sum_scale_block(row_loss, loss, N, scale, buf);
    }
}

// Work: 1 expf + 1 log1pf + about 10 FLOPs per element; moves 3*n*4 B (z, t in, dz out) +
// 4 B per block (partial sums).
extern "C" __global__ void bce_logits_v1(const float* __restrict__ z, const float* __restrict__ t,
                                         float* __restrict__ dz, float* __restrict__ partial, i64 n, float inv_n,
                                         float* __restrict__ loss, double scale) {
    __shared__ double buf[64];
    double acc = 0.0;
    GRID_STRIDE(i, n) {
        const float v = z[i], tt = t[i];
        const float e = expf(-fabsf(v));
        acc += (double)(fmaxf(v, 0.f) - v * tt + log1pf(e));
        const float sig = v >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
        dz[i] = (sig - tt) * inv_n;
    }
    acc = block_sum(acc, buf);
    if (threadIdx.x == 0) partial[blockIdx.x] = (float)acc;
    if (gridDim.x == 1) {   // one block: it finishes the mean as sum_scale_v1 would, from its partial
        __syncthreads();
        sum_scale_block(partial, loss, 1, scale, buf);
    }
}

// Work: n FLOPs (double adds) + 1 multiply, in one block; moves n*4 B in, 4 B out.
extern "C" __global__ void sum_scale_v1(const float* __restrict__ in, float* __restrict__ out, i64 n, double scale) {
    __shared__ double buf[64];
    sum_scale_block(in, out, n, scale, buf);
}

// Work: 3*n expf + about 15*n FLOPs in one block (n = the batch: the logits are (n, 1));
// moves 3*n*4 B + 3*4 B in, 5*8 B read and written. Sums in a fixed order: deterministic.
extern "C" __global__ void gan_stats_v1(const float* __restrict__ loss_real, const float* __restrict__ loss_fake,
                                        const float* __restrict__ loss_g, const float* __restrict__ logits_real,
                                        const float* __restrict__ logits_fake, const float* __restrict__ logits_g,
                                        double* __restrict__ sums, i64 n) {
    __shared__ double buf[64];
    double sr = 0.0, sf = 0.0, sg = 0.0;
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) {  // sigmoid(z) = 1 / (1 + exp(-z)), stable both ways
        const float zr = logits_real[i], zf = logits_fake[i], zg = logits_g[i];
        const float er = expf(-fabsf(zr)), ef = expf(-fabsf(zf)), eg = expf(-fabsf(zg));
        sr += zr >= 0.f ? 1.f / (1.f + er) : er / (1.f + er);
        sf += zf >= 0.f ? 1.f / (1.f + ef) : ef / (1.f + ef);
        sg += zg >= 0.f ? 1.f / (1.f + eg) : eg / (1.f + eg);
    }
    block_sum2(sr, sf, buf);
    sg = block_sum(sg, buf);
    if (threadIdx.x == 0) {
        const double inv_n = 1.0 / (double)n;
        sums[0] += (double)loss_real[0] + (double)loss_fake[0];
        sums[1] += (double)loss_g[0];
        sums[2] += sr * inv_n;
        sums[3] += sf * inv_n;
        sums[4] += sg * inv_n;
    }
}
