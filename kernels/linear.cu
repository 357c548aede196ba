// linear.cu - fully connected layers y = act(x w^T + b), w of shape (out, in), fp32, as tiled
// GEMMs (shared-memory tiles, a 4x4 register tile per thread); no cuBLAS, so a whole training
// step can be captured in one CUDA graph.
//
// Kernel versions
//   linear_forward_v2          y[M,N] = act(x[M,K] w[N,K]^T + b[N]); bias and activation fused
//                              into the epilogue (act: 0 none, 1 relu, 2 leaky relu with slope,
//                              3 sigmoid, 4 tanh; the formulas of activation.cu). Split-K: with
//                              gridDim.z > 1, block z sums k in [z*chunk, (z+1)*chunk) into the
//                              workspace y + z*M*N, and linear_splitk_reduce_v1 adds the slices
//                              in z order and applies bias and activation.
//   linear_backward_data_v2    dx[M,N] = dy[M,K] w[K,N]; split-K as the forward. With has_bias
//                              EPI_GRAD (common.cuh), dx through the backward of the activation
//                              act whose outputs y (M x N) were the Linear's input.
//   linear_backward_weight_v1  dw[M,N] = dy[K,M]^T x[K,N]; with has_db the blocks of the first
//                              column of tiles also sum their rows of dy^T (db[M] = sum over the
//                              batch of dy) from the shared-memory tiles they load anyway. (K is
//                              the batch here, short: never split.) add_dw, add_db: each added
//                              into rather than written (store_or_add; the op's accumulate).
//   linear_splitk_reduce_v1    out[i] = act(sum over z of ws[z*MN + i] + b[i % N]).
//   linear_forward_rows_v1     the forward for at most LIN_ROWS_N outputs whose tiled GEMM would be
//                              split (a long reduction, few tiles): a block per row, one launch.
//   linear_backward_rows_v1    the backward of at most LIN_ROWS_N outputs in one launch: dw, db and
//                              dx (with linear_backward_data_v2's EPI_GRAD) from one pass over x,
//                              a thread per input feature and LIN_BACK_ROWS batch rows per block;
//                              the row groups' dw and db partials summed in order by the last
//                              block of each column tile.
// One block computes a LIN_BM x LIN_BN tile of the output with LIN_THREADS threads, each a 4x4
// register tile, walking its k range in steps of LIN_BK through shared memory; out-of-range
// elements load as 0. Sums run in k order with fmaf (split-K: slice by slice, in z order), so
// results depend on the split count but not on the schedule. A GEMM whose M x N tiles are fewer
// than the SMs (LeNet's first Linear: 8 tiles over K = 3136; a discriminator's 1-output Linear:
// 2 tiles over K = 6272) is split along K so that the card is busy.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/linear.cu
#include "common.cuh"

#define LIN_BM 64
#define LIN_BN 64
#define LIN_BK 8
#define LIN_THREADS 256
#define LIN_ROWS_N 16          // linear_forward_rows_v1: the most outputs (linear.py ROWS_MAX_OUT)
#define LIN_ROWS_THREADS 256
#define LIN_BACK_THREADS 128   // linear_backward_rows_v1: a thread per input feature (linear.py BACK_THREADS) ...
#define LIN_BACK_ROWS 16       // ... its batch rows per block (grid y; linear.py BACK_ROWS) ...
#define LIN_BACK_BATCH 8       // ... and its rows of x loaded at once
static_assert(LIN_BM * LIN_BN == LIN_THREADS * 16, "each thread owns a 4x4 output tile");
static_assert(LIN_BM * LIN_BK == 2 * LIN_THREADS && LIN_BN * LIN_BK == 2 * LIN_THREADS,
              "each thread loads two elements of each shared tile");

// The activations of activation.cu's forward kernels, by number (the epilogue's `act`).
__device__ __forceinline__ float linear_act(float v, int act, float slope) {
    switch (act) {
        case 1: return v > 0.f ? v : 0.f;
        case 2: return v > 0.f ? v : v * slope;
        case 3: {
            const float e = expf(-fabsf(v));
            return v >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
        }
        case 4: return tanhf(v);
        default: return v;
    }
}

// The backward of linear_act from its output y, as activation.cu's backward kernels compute it.
__device__ __forceinline__ float linear_act_grad(float dy, float y, int act, float slope) {
    switch (act) {
        case 1: return y > 0.f ? dy : 0.f;
        case 2: return y > 0.f ? dy : dy * slope;
        case 3: return dy * y * (1.f - y);
        case 4: return dy * (1.f - y * y);
        default: return dy;
    }
}

// The epilogue of output i in column n (common.cuh's modes: EPI_BIAS adds bias[n]; EPI_GRAD applies
// the backward of act at y = bias[i], the outputs of the activation whose input gets this gradient).
__device__ __forceinline__ float linear_epilogue(float v, const float* bias, int mode, int n, i64 i, int act,
                                                 float slope) {
    if (mode == EPI_GRAD) return linear_act_grad(v, bias[i], act, slope);
    return linear_act(mode == EPI_BIAS ? v + bias[n] : v, act, slope);
}

// acc[i][j] = sum_k A(m0 + 4*ty + i, k) * B(k, n0 + 4*tx + j) over the whole K, where
// A(m, k) = TA ? a[k*M + m] : a[m*K + k] and B(k, n) = TB ? b[n*K + k] : b[k*N + n] (all
// C-contiguous). Loads are coalesced along the contiguous index. With rowsum != nullptr the
// threads tid < LIN_BM also sum A(m0 + tid, k) over K and store it to rowsum[m0 + tid] (add it
// there with rowsum_add: store_or_add).
// Only k in [kbeg, kend) is summed (a split-K slice; the whole K when unsplit).
template <bool TA, bool TB>
__device__ __forceinline__ void linear_tile(const float* __restrict__ a, const float* __restrict__ b, int M, int N,
                                            int K, int kbeg, int kend, float (&acc)[4][4],
                                            float* __restrict__ rowsum, int rowsum_add = 0) {
    __shared__ float As[LIN_BK][LIN_BM];
    __shared__ float Bs[LIN_BK][LIN_BN];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int m0 = blockIdx.y * LIN_BM, n0 = blockIdx.x * LIN_BN;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
    float rs = 0.f;
    for (int k0 = kbeg; k0 < kend; k0 += LIN_BK) {
#pragma unroll
        for (int l = 0; l < 2; ++l) {
            const int e = tid + l * LIN_THREADS;
            const int am = TA ? e % LIN_BM : e / LIN_BK, ak = TA ? e / LIN_BM : e % LIN_BK;
            const int gm = m0 + am, gk = k0 + ak;
            As[ak][am] = (gm < M && gk < kend) ? (TA ? a[(i64)gk * M + gm] : a[(i64)gm * K + gk]) : 0.f;
            const int bn = TB ? e / LIN_BK : e % LIN_BN, bk = TB ? e % LIN_BK : e / LIN_BN;
            const int gn = n0 + bn, gk2 = k0 + bk;
            Bs[bk][bn] = (gn < N && gk2 < kend) ? (TB ? b[(i64)gn * K + gk2] : b[(i64)gk2 * N + gn]) : 0.f;
        }
        __syncthreads();
        if (rowsum != nullptr && tid < LIN_BM) {
#pragma unroll
            for (int kk = 0; kk < LIN_BK; ++kk) rs += As[kk][tid];
        }
#pragma unroll
        for (int kk = 0; kk < LIN_BK; ++kk) {
            float ra[4], rb[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                ra[i] = As[kk][4 * ty + i];
                rb[i] = Bs[kk][4 * tx + i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
        }
        __syncthreads();
    }
    if (rowsum != nullptr && tid < LIN_BM && m0 + tid < M) store_or_add(rowsum + m0 + tid, rs, rowsum_add);
}

// c[m*N + n] = act(acc + bias[n]) for the thread's 4x4 tile (linear_epilogue by the mode has_bias;
// added to c with add: store_or_add).
__device__ __forceinline__ void linear_store(float* __restrict__ c, const float* __restrict__ bias, int has_bias,
                                             int M, int N, const float (&acc)[4][4], int act, float slope,
                                             int add = 0) {
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int m0 = blockIdx.y * LIN_BM + 4 * ty, n0 = blockIdx.x * LIN_BN + 4 * tx;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int n = n0 + j;
        if (n >= N) continue;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int m = m0 + i;
            const i64 at = (i64)m * N + n;
            if (m < M) store_or_add(c + at, linear_epilogue(acc[i][j], bias, has_bias, n, at, act, slope), add);
        }
    }
}

// The k range of this block's split-K slice, and where its tile goes: ``out`` itself when the
// grid is not split, else slice z of the workspace ``out`` (bias and activation then wait for
// linear_splitk_reduce_v1).
__device__ __forceinline__ float* linear_slice(float* out, int M, int N, int K, int chunk, int& kbeg, int& kend) {
    kbeg = blockIdx.z * chunk;
    kend = min(K, kbeg + chunk);
    return gridDim.z == 1 ? out : out + (i64)blockIdx.z * M * N;
}

// Work: 2*M*N*K FLOPs; moves (M*K + N*K + N + M*N) * 4 B at best (each tile of x and w is read
// by N/LIN_BN and M/LIN_BM blocks through L2), plus splits * M*N * 4 B twice when split.
extern "C" __global__ void __launch_bounds__(LIN_THREADS) linear_forward_v2(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b, float* __restrict__ y,
    int M, int N, int K, int has_bias, int act, float slope, int chunk) {
    float acc[4][4];
    int kbeg, kend;
    float* out = linear_slice(y, M, N, K, chunk, kbeg, kend);
    linear_tile<false, true>(x, w, M, N, K, kbeg, kend, acc, nullptr);
    const bool split = gridDim.z > 1;
    linear_store(out, b, split ? 0 : has_bias, M, N, acc, split ? 0 : act, slope);
}

// y[m, n] = act(sum_k x[m, k] * w[n, k] + b[n]) for N <= LIN_ROWS_N outputs: one block per row m,
// its threads striding over k (coalesced), each holding N partial sums, then the warps' sums added
// in warp order through shared memory (deterministic). For a narrow output over a long reduction
// (a discriminator's 1-logit head, 6272 -> 1), where the tiled GEMM would split K and need a reduce.
// Work: 2*M*N*K FLOPs; moves (M*K + N*K (L2-served after the first blocks) + M*N) * 4 B.
extern "C" __global__ void __launch_bounds__(LIN_ROWS_THREADS) linear_forward_rows_v1(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b, float* __restrict__ y,
    int M, int N, int K, int has_bias, int act, float slope) {
    __shared__ float red[LIN_ROWS_THREADS / 32][LIN_ROWS_N];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float* __restrict__ xr = x + (i64)blockIdx.x * K;
    float acc[LIN_ROWS_N];
#pragma unroll
    for (int n = 0; n < LIN_ROWS_N; ++n) acc[n] = 0.f;
    for (int k = threadIdx.x; k < K; k += LIN_ROWS_THREADS) {
        const float v = xr[k];
#pragma unroll
        for (int n = 0; n < LIN_ROWS_N; ++n)
            if (n < N) acc[n] = fmaf(v, w[(i64)n * K + k], acc[n]);
    }
#pragma unroll
    for (int n = 0; n < LIN_ROWS_N; ++n) {
        for (int o = 16; o > 0; o >>= 1) acc[n] += __shfl_xor_sync(0xffffffffu, acc[n], o);
        if (lane == 0) red[warp][n] = acc[n];
    }
    __syncthreads();
    if (threadIdx.x < N) {
        float v = 0.f;
#pragma unroll
        for (int w2 = 0; w2 < LIN_ROWS_THREADS / 32; ++w2) v += red[w2][threadIdx.x];
        y[(i64)blockIdx.x * N + threadIdx.x] = linear_act(has_bias ? v + b[threadIdx.x] : v, act, slope);
    }
}

// dw[o, n] = sum_m dy[m, o] x[m, n] and db[o] = sum_m dy[m, o] (added into with add_dw / add_db:
// store_or_add), dx[m, n] = linear_epilogue(sum_o dy[m, o] w[o, n]) (mode EPI_GRAD: through the
// backward of act at y[m, n]) for O <= LIN_ROWS_N outputs, M batch rows, N input features. Block
// (x, y) takes input features x*LIN_BACK_THREADS.. (a thread each: its column of w and its dw sums
// in registers) and batch rows y*LIN_BACK_ROWS.., whose dy rows it stages in shared memory (zero
// past O, so every row is the same straight-line code: LIN_ROWS_N FMAs for dw and for dx;
// LIN_BACK_BATCH rows' x loaded at once): x is read once and dx written once, by blocks that each
// walk a few rows. dw sums the rows in order with fmaf, dx the outputs in order with fmaf (the
// floats of linear_backward_data_v2). With one row group the block writes dw (and, column tile 0,
// db) itself; with several it writes partials (pw [y][O][N], pb [y][O]) and the last block of its
// column tile to finish (count[x], left zero again: a launcher workspace made as zeros) sums them in
// row-group order: deterministic. Work 4*M*N*LIN_ROWS_N FLOPs issued; moves (2*M*N + M*O + 2*O*N) * 4
// B, + 2 * gridDim.y * (O*N + O) * 4 B of partials with several row groups.
extern "C" __global__ void __launch_bounds__(LIN_BACK_THREADS) linear_backward_rows_v1(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ dw,
    float* __restrict__ db, float* __restrict__ dx, int M, int N, int O, int add_dw, int add_db,
    const float* __restrict__ y, int mode, int act, float slope, float* pw, float* pb, unsigned* count) {
    __shared__ __align__(16) float ds[LIN_BACK_ROWS][LIN_ROWS_N];
    __shared__ bool last;
    const int n = blockIdx.x * LIN_BACK_THREADS + threadIdx.x, m0 = blockIdx.y * LIN_BACK_ROWS;
    const int rows = min(LIN_BACK_ROWS, M - m0), groups = gridDim.y;
    const bool col = n < N, sums_db = blockIdx.x == 0 && threadIdx.x < O;
    float acc[LIN_ROWS_N], wn[LIN_ROWS_N], bsum = 0.f;
#pragma unroll
    for (int o = 0; o < LIN_ROWS_N; ++o) {
        acc[o] = 0.f;
        wn[o] = col && o < O ? w[(i64)o * N + n] : 0.f;
    }
    for (int e = threadIdx.x; e < LIN_BACK_ROWS * LIN_ROWS_N; e += LIN_BACK_THREADS) {
        const int r = e / LIN_ROWS_N, o = e % LIN_ROWS_N;
        ds[r][o] = r < rows && o < O ? dy[(i64)(m0 + r) * O + o] : 0.f;
    }
    __syncthreads();
    if (sums_db)
        for (int r = 0; r < rows; ++r) bsum += ds[r][threadIdx.x];
    if (col)
        for (int r0 = 0; r0 < rows; r0 += LIN_BACK_BATCH) {
            float xv[LIN_BACK_BATCH];   // a batch of rows' x loads in flight together
#pragma unroll
            for (int u = 0; u < LIN_BACK_BATCH; ++u) xv[u] = r0 + u < rows ? x[(i64)(m0 + r0 + u) * N + n] : 0.f;
#pragma unroll
            for (int u = 0; u < LIN_BACK_BATCH; ++u) {
                const int r = r0 + u;
                if (r >= rows) break;   // uniform over the block
                float s = 0.f;
#pragma unroll
                for (int o = 0; o < LIN_ROWS_N; ++o) {
                    acc[o] = fmaf(ds[r][o], xv[u], acc[o]);
                    s = fmaf(ds[r][o], wn[o], s);
                }
                const i64 at = (i64)(m0 + r) * N + n;
                dx[at] = linear_epilogue(s, y, mode, n, at, act, slope);
            }
        }
    if (groups == 1) {
        if (sums_db) store_or_add(db + threadIdx.x, bsum, add_db);
        if (col)
#pragma unroll
            for (int o = 0; o < LIN_ROWS_N; ++o)
                if (o < O) store_or_add(dw + (i64)o * N + n, acc[o], add_dw);
        return;
    }
    if (sums_db) pb[blockIdx.y * O + threadIdx.x] = bsum;
    if (col)
#pragma unroll
        for (int o = 0; o < LIN_ROWS_N; ++o)
            if (o < O) pw[((i64)blockIdx.y * O + o) * N + n] = acc[o];
    __threadfence();   // every thread's partials visible before thread 0 counts the block finished
    __syncthreads();
    if (threadIdx.x == 0) last = counts_last(&count[blockIdx.x], groups);
    __syncthreads();
    if (!last) return;   // uniform: the column tile's last block sums every row group's partials
    if (sums_db) {
        float t = 0.f;
        for (int g = 0; g < groups; ++g) t += __ldcg(pb + g * O + threadIdx.x);
        store_or_add(db + threadIdx.x, t, add_db);
    }
    if (col)
        for (int o = 0; o < O; ++o) {
            float t = 0.f;
            for (int g = 0; g < groups; ++g) t += __ldcg(pw + ((i64)g * O + o) * N + n);
            store_or_add(dw + (i64)o * N + n, t, add_dw);
        }
    if (threadIdx.x == 0) count[blockIdx.x] = 0u;   // zero again for the next launch
}

// Work: 2*M*N*K FLOPs; moves (M*K + K*N + M*N) * 4 B at best.
extern "C" __global__ void __launch_bounds__(LIN_THREADS) linear_backward_data_v2(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, int M, int N, int K,
    const float* __restrict__ y, int has_bias, int act, float slope, int chunk) {
    float acc[4][4];
    int kbeg, kend;
    float* out = linear_slice(dx, M, N, K, chunk, kbeg, kend);
    linear_tile<false, false>(dy, w, M, N, K, kbeg, kend, acc, nullptr);
    const bool split = gridDim.z > 1;
    linear_store(out, y, split ? 0 : has_bias, M, N, acc, split ? 0 : act, slope);
}

// out[i] = act(sum_z ws[z*mn + i] + b[i % n]) (linear_epilogue) for i < mn, slices summed in z order; a 32-bit
// grid-stride loop (the launcher checks splits * mn <= INT32_LIMIT). Work: splits * mn adds; moves
// (splits + 1) * mn * 4 B.
extern "C" __global__ void __launch_bounds__(256) linear_splitk_reduce_v1(
    const float* __restrict__ ws, float* __restrict__ out, const float* __restrict__ b, int mn, int n, int splits,
    int has_bias, int act, float slope) {
    GRID_STRIDE32(i, mn) {
        float v = 0.f;
        for (int z = 0; z < splits; ++z) v += ws[(i64)z * mn + i];
        out[i] = linear_epilogue(v, b, has_bias, i % (unsigned)n, i, act, slope);
    }
}

// Work: 2*M*N*K FLOPs (+ M*K adds for db); moves (K*M + K*N + M*N + M) * 4 B at best.
extern "C" __global__ void __launch_bounds__(LIN_THREADS) linear_backward_weight_v1(
    const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ dw, float* __restrict__ db, int M,
    int N, int K, int has_db, int add_dw, int add_db) {
    float acc[4][4];
    linear_tile<true, false>(dy, x, M, N, K, 0, K, acc, (has_db && blockIdx.x == 0) ? db : nullptr, add_db);
    linear_store(dw, nullptr, 0, M, N, acc, 0, 0.f, add_dw);
}
