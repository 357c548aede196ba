// pool.cu - 2-D max and average pooling, NCHW, fp32, forward and backward; any kernel size,
// stride and padding (padding <= half the window), overlapping windows included.
//
// Kernel versions
//   max_pool2d_forward_v1   one thread per output; stores the int32 argmax h*W + w (index into
//                           the x[n,c] plane); the first maximum in row-major window order wins,
//                           NaN propagates (a NaN element is taken as the maximum).
//   max_pool2d_backward_v1  gather form, one thread per INPUT pixel: it walks the windows that
//                           contain it and sums dy where the window's argmax is this pixel.
//                           Deterministic, no atomics, no zero-fill pass.
//   avg_pool2d_forward_v1   one thread per output; divisor kh*kw (count_include_pad, windows
//                           never pass the padded edge in floor mode) or the count of in-range
//                           elements (count_include_pad=0).
//   avg_pool2d_backward_v1  gather form, one thread per input pixel (same divisors).
// Work: forward reads N*C*H*W*4 B (once per window overlap, cache-served) and writes the
// output (+ int32 argmax); backward reads dy (+argmax) and writes dx once. Bandwidth-bound.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/pool.cu
#include "common.cuh"

// Range of output rows p whose window [p*s - pad, p*s - pad + k) contains row h: [lo, hi].
__device__ __forceinline__ void windows_of(int h, int k, int s, int pad, int P, int& lo, int& hi) {
    const int t = h + pad;                        // p*s <= t  and  p*s > t - k
    lo = t - k + 1 <= 0 ? 0 : (t - k + 1 + s - 1) / s;  // ceil((t-k+1)/s) for t-k+1 > 0
    hi = t / s;
    if (hi > P - 1) hi = P - 1;
}

// Work: kh*kw compares per output, no FLOPs; moves N*C*H*W*4 B in (re-read per overlapping
// window, cache-served) + N*C*P*Q*(4 + 4) B out (y, argmax).
extern "C" __global__ void max_pool2d_forward_v1(const float* __restrict__ x, float* __restrict__ y,
                                                 int* __restrict__ argmax, int NC, int H, int W, int P, int Q,
                                                 int kh, int kw, int sh, int sw, int ph, int pw) {
    const i64 total = (i64)NC * P * Q;
    GRID_STRIDE(i, total) {
        const int q = (int)(i % Q), p = (int)((i / Q) % P);
        const i64 nc = i / ((i64)P * Q);
        const float* plane = x + nc * H * W;
        const int h0 = p * sh - ph, w0 = q * sw - pw;
        float best = -FC_INF;
        int bi = -1;
        for (int r = 0; r < kh; ++r) {
            const int h = h0 + r;
            if (h < 0 || h >= H) continue;
            for (int s = 0; s < kw; ++s) {
                const int w = w0 + s;
                if (w < 0 || w >= W) continue;
                const float v = plane[h * W + w];
                if (bi < 0 || v > best || (v != v && best == best)) { best = v; bi = h * W + w; }
            }
        }
        y[i] = best;
        argmax[i] = bi;
    }
}

// Work: per input, one argmax compare per covering window and 1 FLOP per match; moves
// N*C*P*Q*(4 + 4) B in (dy, argmax; re-read per overlap, cache-served) + N*C*H*W*4 B out.
extern "C" __global__ void max_pool2d_backward_v1(const float* __restrict__ dy, const int* __restrict__ argmax,
                                                  float* __restrict__ dx, int NC, int H, int W, int P, int Q,
                                                  int kh, int kw, int sh, int sw, int ph, int pw) {
    const i64 total = (i64)NC * H * W;
    GRID_STRIDE(i, total) {
        const int w = (int)(i % W), h = (int)((i / W) % H);
        const i64 nc = i / ((i64)H * W);
        const int me = h * W + w;
        int plo, phi, qlo, qhi;
        windows_of(h, kh, sh, ph, P, plo, phi);
        windows_of(w, kw, sw, pw, Q, qlo, qhi);
        const i64 off = nc * P * Q;
        float acc = 0.f;
        for (int p = plo; p <= phi; ++p)
            for (int q = qlo; q <= qhi; ++q)
                if (argmax[off + p * Q + q] == me) acc += dy[off + p * Q + q];
        dx[i] = acc;
    }
}

// Divisor of window (p, q): with count_include_pad the whole window (it never crosses the
// padded edge), otherwise the in-range part.
__device__ __forceinline__ int avg_divisor(int p, int q, int H, int W, int kh, int kw, int sh, int sw, int ph,
                                           int pw, int include_pad) {
    if (include_pad) return kh * kw;
    const int h0 = p * sh - ph, w0 = q * sw - pw;
    const int hs = max(h0, 0), he = min(h0 + kh, H), ws = max(w0, 0), we = min(w0 + kw, W);
    return (he - hs) * (we - ws);
}

// Work: kh*kw adds + 1 divide per output (FLOPs); moves N*C*H*W*4 B in (re-read per overlap,
// cache-served) + N*C*P*Q*4 B out.
extern "C" __global__ void avg_pool2d_forward_v1(const float* __restrict__ x, float* __restrict__ y, int NC,
                                                 int H, int W, int P, int Q, int kh, int kw, int sh, int sw,
                                                 int ph, int pw, int include_pad) {
    const i64 total = (i64)NC * P * Q;
    GRID_STRIDE(i, total) {
        const int q = (int)(i % Q), p = (int)((i / Q) % P);
        const i64 nc = i / ((i64)P * Q);
        const float* plane = x + nc * H * W;
        const int h0 = p * sh - ph, w0 = q * sw - pw;
        const int hs = max(h0, 0), he = min(h0 + kh, H), ws = max(w0, 0), we = min(w0 + kw, W);
        float acc = 0.f;
        for (int h = hs; h < he; ++h)
            for (int w = ws; w < we; ++w) acc += plane[h * W + w];
        y[i] = acc / (float)avg_divisor(p, q, H, W, kh, kw, sh, sw, ph, pw, include_pad);
    }
}

// Work: per input, 1 divide + 1 add per covering window (FLOPs); moves N*C*P*Q*4 B in
// (re-read per overlap, cache-served) + N*C*H*W*4 B out.
extern "C" __global__ void avg_pool2d_backward_v1(const float* __restrict__ dy, float* __restrict__ dx, int NC,
                                                  int H, int W, int P, int Q, int kh, int kw, int sh, int sw,
                                                  int ph, int pw, int include_pad) {
    const i64 total = (i64)NC * H * W;
    GRID_STRIDE(i, total) {
        const int w = (int)(i % W), h = (int)((i / W) % H);
        const i64 nc = i / ((i64)H * W);
        int plo, phi, qlo, qhi;
        windows_of(h, kh, sh, ph, P, plo, phi);
        windows_of(w, kw, sw, pw, Q, qlo, qhi);
        const float* d = dy + nc * P * Q;
        float acc = 0.f;
        for (int p = plo; p <= phi; ++p)
            for (int q = qlo; q <= qhi; ++q)
                acc += d[p * Q + q] / (float)avg_divisor(p, q, H, W, kh, kw, sh, sw, ph, pw, include_pad);
        dx[i] = acc;
    }
}
