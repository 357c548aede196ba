// pool.cu - 2-D max and average pooling, NCHW, fp32, forward and backward; any kernel size,
// stride and padding (padding <= half the window), overlapping windows included.
//
// Kernel versions
//   max_pool2d_forward_v2   one thread per output; stores the int32 argmax h*W + w (index into
//                           the x[n,c] plane, the ops' public format); the first maximum in
//                           row-major window order wins, NaN propagates (the first NaN is taken).
//   max_pool2d_backward_v2  gather form, one thread per INPUT pixel: it walks the windows that
//                           contain it and sums dy where the window's argmax is this pixel.
//                           Deterministic, no atomics, no zero-fill pass.
//   avg_pool2d_forward_v2   one thread per output; divisor kh*kw (count_include_pad, windows
//                           never pass the padded edge in floor mode) or the count of in-range
//                           elements (count_include_pad=0).
//   avg_pool2d_backward_v2  gather form, one thread per input pixel; each window's divisor is
//                           applied as a reciprocal (__frcp_rn), no float division per window.
//   relu_max_pool2d_forward_v1, relu_max_pool2d_backward_v1
//                           ReLU + max pooling fused, any window: y = max-pool(relu(x)) and a compact
//                           uint8 argmax (window index r*kw + s, 255 = no gradient: max <= 0 or NaN).
// The 2x2 / stride-2 / unpadded windows' fast paths are kernels/pool_2x2.cu.
// Index math is 32-bit (unsigned): the launcher checks N*C*H*W and N*C*P*Q <= INT32_LIMIT.
// Work: forward reads N*C*H*W*4 B (once per window overlap, cache-served) and writes the
// output (+ int32 argmax); backward reads dy (+argmax) and writes dx once. Bandwidth-bound.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/pool.cu (tests/test_bandwidth_static.py)
#include "common.cuh"
#include "pool.cuh"

// Range of output rows p whose window [p*s - pad, p*s - pad + k) contains row h: [lo, hi].
__device__ __forceinline__ void windows_of(int h, int k, int s, int pad, int P, int& lo, int& hi) {
    const int t = h + pad;                        // p*s <= t  and  p*s > t - k
    lo = t - k + 1 <= 0 ? 0 : (t - k + 1 + s - 1) / s;  // ceil((t-k+1)/s) for t-k+1 > 0
    hi = t / s;
    if (hi > P - 1) hi = P - 1;
}


// The maximum of output i's window (plane nc, row p, column q of NC*P*Q) over its in-range
// elements of x: its value and index, the plane index h*W + w (PLANE) or the window index
// r*kw + s; -1 when no element is in range. The first maximum in row-major window order wins, and
// the first NaN.
template <bool PLANE>
__device__ __forceinline__ void window_max(const float* __restrict__ x, u32 i, int H, int W, int P, int Q, int kh,
                                           int kw, int sh, int sw, int ph, int pw, float& best, int& bi) {
    u32 nc;
    int p, q;
    split3(i, P, Q, nc, p, q);
    const float* plane = x + nc * (u32)(H * W);
    const int h0 = p * sh - ph, w0 = q * sw - pw;
    best = -FC_INF;
    bi = -1;
    for (int r = 0; r < kh; ++r) {
        const int h = h0 + r;
        if (h < 0 || h >= H) continue;
        for (int s = 0; s < kw; ++s) {
            const int w = w0 + s;
            if (w < 0 || w >= W) continue;
            const float v = plane[h * W + w];
            if (bi < 0 || v > best || (v != v && best == best)) { best = v; bi = PLANE ? h * W + w : r * kw + s; }
        }
    }
}

// The gradient of input pixel i of NC*H*W (plane nc, row h, column w): starting from 0, add(acc,
// off, p*Q + q, h, w, p, q) for every window (p, q) that contains it, off = the plane's offset in
// NC*P*Q.
template <class Add>
__device__ __forceinline__ float sum_covering_windows(u32 i, int H, int W, int P, int Q, int kh, int kw, int sh,
                                                      int sw, int ph, int pw, Add add) {
    u32 nc;
    int h, w;
    split3(i, H, W, nc, h, w);
    int plo, phi, qlo, qhi;
    windows_of(h, kh, sh, ph, P, plo, phi);
    windows_of(w, kw, sw, pw, Q, qlo, qhi);
    const u32 off = nc * (u32)(P * Q);
    float acc = 0.f;
    for (int p = plo; p <= phi; ++p)
        for (int q = qlo; q <= qhi; ++q)
            add(acc, off, p * Q + q, h, w, p, q);
    return acc;
}

// Work: kh*kw compares per output, no FLOPs; moves N*C*H*W*4 B in (re-read per overlapping
// window, cache-served) + N*C*P*Q*(4 + 4) B out (y, argmax).
extern "C" __global__ void max_pool2d_forward_v2(const float* __restrict__ x, float* __restrict__ y,
                                                 int* __restrict__ argmax, int NC, int H, int W, int P, int Q,
                                                 int kh, int kw, int sh, int sw, int ph, int pw) {
    GRID_STRIDE32(i, (u32)NC * P * Q) {
        float best;
        int bi;
        window_max<true>(x, i, H, W, P, Q, kh, kw, sh, sw, ph, pw, best, bi);
        y[i] = best;
        argmax[i] = bi;
    }
}

// Work: per input, one argmax compare per covering window and 1 FLOP per match; moves
// N*C*P*Q*(4 + 4) B in (dy, argmax; re-read per overlap, cache-served) + N*C*H*W*4 B out.
extern "C" __global__ void max_pool2d_backward_v2(const float* __restrict__ dy, const int* __restrict__ argmax,
                                                  float* __restrict__ dx, int NC, int H, int W, int P, int Q,
                                                  int kh, int kw, int sh, int sw, int ph, int pw) {
    const auto add = [&](float& acc, u32 off, int pq, int h, int w, int, int) {
        if (argmax[off + pq] == h * W + w) acc += dy[off + pq];
    };
    GRID_STRIDE32(i, (u32)NC * H * W) dx[i] = sum_covering_windows(i, H, W, P, Q, kh, kw, sh, sw, ph, pw, add);
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
extern "C" __global__ void avg_pool2d_forward_v2(const float* __restrict__ x, float* __restrict__ y, int NC,
                                                 int H, int W, int P, int Q, int kh, int kw, int sh, int sw,
                                                 int ph, int pw, int include_pad) {
    GRID_STRIDE32(i, (u32)NC * P * Q) {
        u32 nc;
        int p, q;
        split3(i, P, Q, nc, p, q);
        const float* plane = x + nc * (u32)(H * W);
        const int h0 = p * sh - ph, w0 = q * sw - pw;
        const int hs = max(h0, 0), he = min(h0 + kh, H), ws = max(w0, 0), we = min(w0 + kw, W);
        float acc = 0.f;
        for (int h = hs; h < he; ++h)
            for (int w = ws; w < we; ++w) acc += plane[h * W + w];
        y[i] = acc / (float)avg_divisor(p, q, H, W, kh, kw, sh, sw, ph, pw, include_pad);
    }
}

// Work: per input, 1 reciprocal + 1 FMA per covering window (FLOPs); moves N*C*P*Q*4 B in
// (re-read per overlap, cache-served) + N*C*H*W*4 B out.
extern "C" __global__ void avg_pool2d_backward_v2(const float* __restrict__ dy, float* __restrict__ dx, int NC,
                                                  int H, int W, int P, int Q, int kh, int kw, int sh, int sw,
                                                  int ph, int pw, int include_pad) {
    const float whole = __frcp_rn((float)(kh * kw));
    const auto add = [&](float& acc, u32 off, int pq, int, int, int p, int q) {
        const float inv = include_pad ? whole : __frcp_rn((float)avg_divisor(p, q, H, W, kh, kw, sh, sw, ph, pw, 0));
        acc = fmaf((dy + off)[pq], inv, acc);
    };
    GRID_STRIDE32(i, (u32)NC * H * W) dx[i] = sum_covering_windows(i, H, W, P, Q, kh, kw, sh, sw, ph, pw, add);
}

// ---- ReLU + max pooling fused: relu_max_pool2d ------------------------------------------------
// The general kernels (any window); the window index coding is pool.cuh's.

// Work: kh*kw compares per output, no FLOPs; moves N*C*H*W*4 B in (re-read per overlap,
// cache-served) + N*C*P*Q*(4 + 1) B out (y, code).
extern "C" __global__ void relu_max_pool2d_forward_v1(const float* __restrict__ x, float* __restrict__ y,
                                                      unsigned char* __restrict__ code, int NC, int H, int W, int P,
                                                      int Q, int kh, int kw, int sh, int sw, int ph, int pw) {
    GRID_STRIDE32(i, (u32)NC * P * Q) {
        float best;
        int bk;
        window_max<false>(x, i, H, W, P, Q, kh, kw, sh, sw, ph, pw, best, bk);
        y[i] = relu_of_max(best);
        code[i] = (unsigned char)code_of_max(best, bk);
    }
}

// Work: per input, one code compare per covering window and 1 FLOP per match; moves
// N*C*P*Q*(4 + 1) B in (re-read per overlap, cache-served) + N*C*H*W*4 B out.
extern "C" __global__ void relu_max_pool2d_backward_v1(const float* __restrict__ dy,
                                                       const unsigned char* __restrict__ code,
                                                       float* __restrict__ dx, int NC, int H, int W, int P, int Q,
                                                       int kh, int kw, int sh, int sw, int ph, int pw) {
    const auto add = [&](float& acc, u32 off, int pq, int h, int w, int p, int q) {  // code: index in window
        if (code[off + pq] == (h - (p * sh - ph)) * kw + (w - (q * sw - pw))) acc += dy[off + pq];
    };
    GRID_STRIDE32(i, (u32)NC * H * W) dx[i] = sum_covering_windows(i, H, W, P, Q, kh, kw, sh, sw, ph, pw, add);
}
