// batchnorm.cu - batch normalisation over axis 1 of x viewed as (N, C, HW) (HW = 1 for (N, C)), fp32
// data with double accumulators in the per-channel reductions.
//
// Kernel versions, each in three layouts (the Rows / Cols structs below):
//   f1  a block per (slice, channel), 1 float per access;
//   f4  the same, HW % 4 == 0: 16-byte loads and stores;
//   c32 HW == 1 (BatchNorm1d's (N, C), where a channel is a column): a block per (slice, 32
//       channels), lane = channel, the warps striding over the rows, so that a warp reads 128
//       contiguous bytes of a row (a block per channel read its N floats C apart, a sector each).
//   batchnorm_stats_v3_f1, batchnorm_stats_v3_f4, batchnorm_stats_v3_c32
//                               per (slice of batch rows, channel) block (reduce.cuh): double
//                               partial sums of d = x - x0 and of d^2, x0 the channel's first element
//                               (one pass over x; v2 read it twice, for the sum and then the squared
//                               deviations from the mean).
//   batchnorm_forward_train_v3_f1, batchnorm_forward_train_v3_f4, batchnorm_forward_train_v3_c32
//                               the same blocks: mean = x0 + S1/M and biased variance
//                               S2/M - (S1/M)^2 from the partials (M = N*HW; in double, where the
//                               shift keeps the cancellation to the ratio of (mean - x0)^2 to the
//                               variance times 2^-52); the slice-0 block writes mean/invstd and
//                               updates running_mean and running_var (unbiased) in place; each
//                               block normalises its rows:
//                               y = act((x - mean) * invstd * gamma + beta).
//   batchnorm_forward_eval_v2   grid-stride element-wise with the running statistics; the first
//                               C threads also write mean = running_mean, invstd.
//   batchnorm_backward_sums_v2_f1, batchnorm_backward_sums_v2_f4, batchnorm_backward_sums_v2_c32
//                               partial sum(dz) and sum(dz * xhat) per block.
//   batchnorm_backward_v2_f1, batchnorm_backward_v2_f4, batchnorm_backward_v2_c32
//                               the same blocks: the sums from the partials; the slice-0 block
//                               writes dgamma = sum(dz*xhat), dbeta = sum(dz) (each added to
//                               the array instead with add_dgamma / add_dbeta: store_or_add, the
//                               op's accumulate); each block writes
//                               dx = gamma*invstd*(dz - sum(dz)/M - xhat*sum(dz*xhat)/M) for its rows
//                               in training, gamma*invstd*dz in eval.
// act: the activation fused after the normalisation (common.cuh conv_act codes; 0 none). The
// backward passes then take dz = the activation's backward of dy at y = act(z), z recomputed from x
// by bn_affine, the forward's expression, so z and y are the forward's bit for bit and no pre-
// activation copy is kept (with act 0, dz = dy and beta is not read).
// Every (slice, channel) block of a launch computes a channel's statistics from the same partials
// in the same order, so all agree bit for bit and the results are deterministic (c32: the warps'
// sums added in warp order). The launcher picks the slices for about 4 blocks per SM
// (fastconv.backends.cuda.config.channel_splits); offsets are 32-bit (N*C*HW <= INT32_LIMIT,
// checked by the launcher).
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/batchnorm.cu
#include "common.cuh"
#include "reduce.cuh"

#define BN_SLICE_ARGS int N, int C, int HW, int chunk

// Where a thread's channel and elements are (the kernel bodies below are written once for both):
// Rows<V> (f1, f4): the block's channel blockIdx.y, its rows' V-vectors strided over the block
// (reduce.cuh for_channel_rows, U loads in flight), sums over the block, thread 0 writes them.
template <int V>
struct Rows {
    static constexpr int BUF = 64;  // doubles of block_sum2's scratch
    __device__ static int channel() { return blockIdx.y; }
    __device__ static bool lead() { return threadIdx.x == 0; }
    template <int U, typename Load, typename Use>
    __device__ static void each(int c, int C, int HW, int n0, int n1, Load load, Use use) {
        for_channel_rows<V, U>(c, C, HW, n0, n1, load, use);
    }
    __device__ static void sum2(double& a, double& b, double* buf) { block_sum2(a, b, buf); }
};

// Cols (c32, HW == 1): channel blockIdx.y * 32 + lane, rows n0 + warp, n0 + warp + warps, ... (U per
// trip, loaded before use), each channel's sums over the warps through shared memory in warp order;
// warp 0 writes them. A lane past C loads nothing and adds zeros.
struct Cols {
    static constexpr int BUF = 2 * 8 * 32;  // [2][warps <= 8][32]
    __device__ static int channel() { return blockIdx.y * 32 + (threadIdx.x & 31); }
    __device__ static bool lead() { return threadIdx.x < 32; }
    template <int U, typename Load, typename Use>
    __device__ static void each(int c, int C, int, int n0, int n1, Load load, Use use) {
        if (c >= C) return;
        const int nw = blockDim.x >> 5;
        for (int n = n0 + (threadIdx.x >> 5); n < n1; n += U * nw) {
            unsigned off[U];
            decltype(load(0u)) t[U];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                off[u] = (unsigned)min(n + u * nw, n1 - 1) * C + c;   // in range: issued together
                t[u] = load(off[u]);
            }
#pragma unroll
            for (int u = 0; u < U; ++u)
                if (n + u * nw < n1) use(off[u], t[u]);
        }
    }
    __device__ static void sum2(double& a, double& b, double* buf) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
        buf[warp * 32 + lane] = a;
        buf[(8 + warp) * 32 + lane] = b;
        __syncthreads();
        if (warp == 0)
            for (int w = 1; w < nw; ++w) {
                a += buf[w * 32 + lane];
                b += buf[(8 + w) * 32 + lane];
            }
    }
};

// z = (x - mean) * invstd * gamma + beta: the forward's value before the activation, recomputed by
// the fused backward passes from the same expression.
__device__ __forceinline__ float bn_affine(float x, float m, float is, float gm, float bt) {
    return (x - m) * is * gm + bt;
}

// dz: dy through the activation's backward at y = act(z) (dy itself for act 0).
__device__ __forceinline__ float bn_act_grad(float dy, float x, float m, float is, float gm, float bt, int act,
                                             float slope) {
    return act ? conv_act_grad(dy, conv_act(bn_affine(x, m, is, gm, bt), act, slope), act, slope) : dy;
}

// dy and x at the same offset j (the backward passes read both).
template <int V>
struct DyX {
    Vec<V> dy, x;
};

template <int V>
__device__ __forceinline__ DyX<V> load_dy_x(const float* __restrict__ dy, const float* __restrict__ x, unsigned j) {
    return {load_vec<V>(dy + j), load_vec<V>(x + j)};
}

// The shift of channel c's one-pass sums: its first element (any value of the channel keeps
// (mean - shift)^2 within a few variances but for outliers).
__device__ __forceinline__ double bn_shift(const float* __restrict__ x, int c, int HW) {
    return (double)x[(unsigned)c * (unsigned)HW];
}

// Work: 3 double FLOPs per element; moves (rows in the slice)*HW*4 B in, 16 B out per block.
template <class L, int V>
__device__ __forceinline__ void bn_stats(const float* __restrict__ x, double* __restrict__ psum,
                                         double* __restrict__ psq, BN_SLICE_ARGS) {
    __shared__ double buf[L::BUF];
    const int c = L::channel();
    const double shift = c < C ? bn_shift(x, c, HW) : 0.0;
    int n0, n1;
    slice_rows(N, chunk, n0, n1);
    double s1 = 0.0, s2 = 0.0;
    L::template each<4>(
        c, C, HW, n0, n1, [&](unsigned j) { return load_vec<V>(x + j); },
        [&](unsigned, const Vec<V>& t) {
#pragma unroll
            for (int e = 0; e < V; ++e) {
                const double d = (double)t.e[e] - shift;
                s1 += d;
                s2 += d * d;
            }
        });
    L::sum2(s1, s2, buf);
    if (L::lead() && c < C) {
        psum[c * gridDim.x + blockIdx.x] = s1;
        psq[c * gridDim.x + blockIdx.x] = s2;
    }
}

// Work: 3 FLOPs per element (FMA form); moves 2*(rows in the slice)*HW*4 B per block (x in, y out).
template <class L, int V>
__device__ __forceinline__ void bn_forward_train(
    const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
    const double* __restrict__ psum, const double* __restrict__ psq, float* __restrict__ running_mean,
    float* __restrict__ running_var, float* __restrict__ y, float* __restrict__ mean_out,
    float* __restrict__ invstd_out, BN_SLICE_ARGS, float momentum, float eps, int act, float slope) {
    const int c = L::channel();
    if (c >= C) return;
    const double count = (double)N * HW;
    const double m1 = sum_partials(psum, c, gridDim.x) / count;  // the mean of x - shift
    const double mean = bn_shift(x, c, HW) + m1;
    const double var = fmax(sum_partials(psq, c, gridDim.x) / count - m1 * m1, 0.0);
    const double invstd = 1.0 / sqrt(var + (double)eps);
    if (blockIdx.x == 0 && L::lead()) {
        mean_out[c] = (float)mean;
        invstd_out[c] = (float)invstd;
        const double mom = momentum;
        running_mean[c] = (float)((1.0 - mom) * running_mean[c] + mom * mean);
        running_var[c] = (float)((1.0 - mom) * running_var[c] + mom * var * count / (count - 1.0));
    }
    const float m = (float)mean, is = (float)invstd, gm = gamma[c], bt = beta[c];
    int n0, n1;
    slice_rows(N, chunk, n0, n1);
    L::template each<4>(
        c, C, HW, n0, n1, [&](unsigned j) { return load_vec<V>(x + j); },
        [&](unsigned j, Vec<V> t) {
#pragma unroll
            for (int e = 0; e < V; ++e) t.e[e] = conv_act(bn_affine(t.e[e], m, is, gm, bt), act, slope);
            store_vec(y + j, t);
        });
}

// Work: about 6 FLOPs per element; moves 2*(rows in the slice)*HW*4 B in (dy, x), 16 B out per block.
template <class L, int V>
__device__ __forceinline__ void bn_backward_sums(const float* __restrict__ dy, const float* __restrict__ x,
                                                 const float* __restrict__ gamma, const float* __restrict__ beta,
                                                 const float* __restrict__ mean, const float* __restrict__ invstd,
                                                 double* __restrict__ part, BN_SLICE_ARGS, int act, float slope) {
    __shared__ double buf[L::BUF];
    const int c = L::channel();
    const bool in = c < C, a = act && in;
    const float m = in ? mean[c] : 0.f, is = in ? invstd[c] : 0.f, gm = a ? gamma[c] : 0.f, bt = a ? beta[c] : 0.f;
    int n0, n1;
    slice_rows(N, chunk, n0, n1);
    double sdy = 0.0, sdyx = 0.0;
    L::template each<2>(
        c, C, HW, n0, n1, [&](unsigned j) { return load_dy_x<V>(dy, x, j); },
        [&](unsigned, const DyX<V>& t) {
#pragma unroll
            for (int e = 0; e < V; ++e) {
                const float dz = bn_act_grad(t.dy.e[e], t.x.e[e], m, is, gm, bt, act, slope);
                sdy += dz;
                sdyx += (double)dz * (double)((t.x.e[e] - m) * is);
            }
        });
    L::sum2(sdy, sdyx, buf);
    if (L::lead() && in) {
        const int at = c * gridDim.x + blockIdx.x;
        part[at] = sdy;
        part[C * gridDim.x + at] = sdyx;
    }
}

// Work: about 5 FLOPs per element; moves 3*(rows in the slice)*HW*4 B per block (dy, x in; dx out).
template <class L, int V>
__device__ __forceinline__ void bn_backward(const float* __restrict__ dy, const float* __restrict__ x,
                                            const float* __restrict__ gamma, const float* __restrict__ mean,
                                            const float* __restrict__ invstd, const double* __restrict__ part,
                                            float* __restrict__ dx, float* __restrict__ dgamma,
                                            float* __restrict__ dbeta, BN_SLICE_ARGS, int training,
                                            const float* __restrict__ beta, int act, float slope, int add_dgamma,
                                            int add_dbeta) {
    const int c = L::channel(), S = gridDim.x;
    if (c >= C) return;
    const double sdy = sum_partials(part, c, S), sdyx = sum_partials(part + C * S, c, S);
    if (blockIdx.x == 0 && L::lead()) {
        store_or_add(dgamma + c, (float)sdyx, add_dgamma);
        store_or_add(dbeta + c, (float)sdy, add_dbeta);
    }
    const double count = (double)N * HW;
    const float m = mean[c], is = invstd[c], gm = gamma[c], bt = act ? beta[c] : 0.f, scale = gm * is;
    const float a = training ? (float)(sdy / count) : 0.f;
    const float b = training ? (float)(sdyx / count) : 0.f;
    int n0, n1;
    slice_rows(N, chunk, n0, n1);
    L::template each<2>(
        c, C, HW, n0, n1, [&](unsigned j) { return load_dy_x<V>(dy, x, j); },
        [&](unsigned j, const DyX<V>& t) {
            Vec<V> r;
#pragma unroll
            for (int e = 0; e < V; ++e)
                r.e[e] = scale * (bn_act_grad(t.dy.e[e], t.x.e[e], m, is, gm, bt, act, slope) - a
                                  - ((t.x.e[e] - m) * is) * b);
            store_vec(dx + j, r);
        });
}

// The per-(slice, channel) entry points for V floats per access (f1, f4). forward_train's
// __launch_bounds__(256, 6) holds it at 40 registers (6 blocks of 256 threads per SM, no spills):
// the fused tanh beside 4 loads in flight took 48. Work and bytes of each:
// see bn_stats, bn_forward_train, bn_backward_sums, bn_backward above (per element: 1 to 6
// FLOPs, 4 B per array read or written).
#define BN_KERNELS(SUFFIX, L, V)                                                                           \
    extern "C" __global__ void batchnorm_stats_v3_##SUFFIX(const float* __restrict__ x, double* __restrict__ psum, \
                                                       double* __restrict__ psq, BN_SLICE_ARGS) {           \
        bn_stats<L, V>(x, psum, psq, N, C, HW, chunk);                                                         \
    }                                                                                                      \
    extern "C" __global__ void __launch_bounds__(256, 6) batchnorm_forward_train_v3_##SUFFIX(                \
        const float* __restrict__ x,                                                                        \
        const float* __restrict__ gamma, const float* __restrict__ beta, const double* __restrict__ psum,   \
        const double* __restrict__ psq, float* __restrict__ running_mean, float* __restrict__ running_var,  \
        float* __restrict__ y, float* __restrict__ mean_out, float* __restrict__ invstd_out, BN_SLICE_ARGS, \
        float momentum, float eps, int act, float slope) {                                                  \
        bn_forward_train<L, V>(x, gamma, beta, psum, psq, running_mean, running_var, y, mean_out, invstd_out,  \
                            N, C, HW, chunk, momentum, eps, act, slope);                                    \
    }                                                                                                      \
    extern "C" __global__ void batchnorm_backward_sums_v2_##SUFFIX(const float* __restrict__ dy,               \
        const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,      \
        const float* __restrict__ mean, const float* __restrict__ invstd, double* __restrict__ part,       \
        BN_SLICE_ARGS, int act, float slope) {                                                              \
        bn_backward_sums<L, V>(dy, x, gamma, beta, mean, invstd, part, N, C, HW, chunk, act, slope);           \
    }                                                                                                      \
    extern "C" __global__ void batchnorm_backward_v2_##SUFFIX(const float* __restrict__ dy,                    \
        const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ mean,      \
        const float* __restrict__ invstd, const double* __restrict__ part, float* __restrict__ dx,         \
        float* __restrict__ dgamma, float* __restrict__ dbeta, BN_SLICE_ARGS, int training,                \
        const float* __restrict__ beta, int act, float slope, int add_dgamma, int add_dbeta) {              \
        bn_backward<L, V>(dy, x, gamma, mean, invstd, part, dx, dgamma, dbeta, N, C, HW, chunk, training, beta, \
                       act, slope, add_dgamma, add_dbeta);                                                  \
    }
BN_KERNELS(f1, Rows<1>, 1)
BN_KERNELS(f4, Rows<4>, 4)
BN_KERNELS(c32, Cols, 1)

// Work: about 5 FLOPs + 1 sqrtf per element; moves 2*total*4 B (x in, y out) plus the
// per-channel vectors (cache-served).
extern "C" __global__ void batchnorm_forward_eval_v2(
    const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
    const float* __restrict__ running_mean, const float* __restrict__ running_var, float* __restrict__ y,
    float* __restrict__ mean_out, float* __restrict__ invstd_out, int total, int C, int HW, float eps, int act,
    float slope) {
    GRID_STRIDE32(i, total) {
        const int c = (int)((i / (unsigned)HW) % (unsigned)C);
        const float is = 1.0f / sqrtf(running_var[c] + eps);
        y[i] = conv_act(bn_affine(x[i], running_mean[c], is, gamma[c], beta[c]), act, slope);
        if (i < (unsigned)C) {
            mean_out[i] = running_mean[i];
            invstd_out[i] = 1.0f / sqrtf(running_var[i] + eps);
        }
    }
}
