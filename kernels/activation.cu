// activation.cu - element-wise activations and dropout, forward and backward, fp32.
//
// Kernel versions
//   v1  grid-stride loop, one element per step, any alignment: relu_forward_v1,
//       relu_backward_v1, leaky_relu_forward_v1, leaky_relu_backward_v1, sigmoid_forward_v1,
//       sigmoid_backward_v1, tanh_forward_v1, tanh_backward_v1, dropout_forward_v1,
//       dropout_backward_v1.
//   relu_*_v2, leaky_relu_*_v2: float4 grid-stride loop over n/4 vectors, the n%4 tail done
//        by the first threads; the launcher uses v2 only when every pointer is 16-byte aligned.
// Backward passes take the forward OUTPUT y (relu: y > 0 <=> x > 0; sigmoid' = y(1-y);
// tanh' = 1-y^2). Work of each: n elements, (2 or 3) * n * 4 B moved, O(1) FLOPs per element:
// bandwidth-bound, judged against the device's copy bandwidth.
//
// dropout: element i (flat index, uint32) is kept iff fmix32(i ^ fmix32(seed)) >= thr with
// thr = floor(p * 2^32) compared as 64-bit unsigned; the same hash as the CPU path, so the
// masks agree bit for bit. y = kept ? x * scale : 0 with scale = float(1 / (1 - p)) as on the
// CPU; the mask is stored as uint8.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v -I kernels kernels/activation.cu
#include "common.cuh"

// ---- relu / leaky relu -----------------------------------------------------------------------

__device__ __forceinline__ float lrelu(float x, float slope) { return x > 0.f ? x : x * slope; }
__device__ __forceinline__ float lrelu_grad(float dy, float y, float slope) { return y > 0.f ? dy : dy * slope; }

// relu is leaky relu with slope 0 (x * 0 would turn -inf into NaN, so relu keeps its own select).
__device__ __forceinline__ float relu1(float x) { return x > 0.f ? x : 0.f; }
__device__ __forceinline__ float relu_grad1(float dy, float y) { return y > 0.f ? dy : 0.f; }

// Work: n compares, no FLOPs; moves 2*n*4 B (x in, y out).
extern "C" __global__ void relu_forward_v1(const float* __restrict__ x, float* __restrict__ y, i64 n) {
    GRID_STRIDE(i, n) y[i] = relu1(x[i]);
}
// Work: n compares, no FLOPs; moves 3*n*4 B (dy, y in, dx out).
extern "C" __global__ void relu_backward_v1(const float* __restrict__ dy, const float* __restrict__ y,
                                            float* __restrict__ dx, i64 n) {
    GRID_STRIDE(i, n) dx[i] = relu_grad1(dy[i], y[i]);
}
// Work: n compares, up to n FLOPs (x * slope); moves 2*n*4 B.
extern "C" __global__ void leaky_relu_forward_v1(const float* __restrict__ x, float* __restrict__ y, i64 n,
                                                 float slope) {
    GRID_STRIDE(i, n) y[i] = lrelu(x[i], slope);
}
// Work: n compares, up to n FLOPs (dy * slope); moves 3*n*4 B.
extern "C" __global__ void leaky_relu_backward_v1(const float* __restrict__ dy, const float* __restrict__ y,
                                                  float* __restrict__ dx, i64 n, float slope) {
    GRID_STRIDE(i, n) dx[i] = lrelu_grad(dy[i], y[i], slope);
}

// v2: 16-byte vectors. n4 = n / 4 vectors, then elements [4*n4, n) one per thread.
// Work: n compares, no FLOPs; moves 2*n*4 B.
extern "C" __global__ void relu_forward_v2(const float* __restrict__ x, float* __restrict__ y, i64 n) {
    const i64 n4 = n >> 2;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    GRID_STRIDE(i, n4) {
        float4 v = x4[i];
        v.x = relu1(v.x); v.y = relu1(v.y); v.z = relu1(v.z); v.w = relu1(v.w);
        y4[i] = v;
    }
    const i64 t = 4 * n4 + blockIdx.x * (i64)blockDim.x + threadIdx.x;
    if (t < n) y[t] = relu1(x[t]);
}
// Work: n compares, no FLOPs; moves 3*n*4 B.
extern "C" __global__ void relu_backward_v2(const float* __restrict__ dy, const float* __restrict__ y,
                                            float* __restrict__ dx, i64 n) {
    const i64 n4 = n >> 2;
    const float4* d4 = reinterpret_cast<const float4*>(dy);
    const float4* y4 = reinterpret_cast<const float4*>(y);
    float4* o4 = reinterpret_cast<float4*>(dx);
    GRID_STRIDE(i, n4) {
        const float4 d = d4[i], v = y4[i];
        o4[i] = make_float4(relu_grad1(d.x, v.x), relu_grad1(d.y, v.y), relu_grad1(d.z, v.z), relu_grad1(d.w, v.w));
    }
    const i64 t = 4 * n4 + blockIdx.x * (i64)blockDim.x + threadIdx.x;
    if (t < n) dx[t] = relu_grad1(dy[t], y[t]);
}
// Work: n compares, up to n FLOPs; moves 2*n*4 B.
extern "C" __global__ void leaky_relu_forward_v2(const float* __restrict__ x, float* __restrict__ y, i64 n,
                                                 float slope) {
    const i64 n4 = n >> 2;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    GRID_STRIDE(i, n4) {
        float4 v = x4[i];
        v.x = lrelu(v.x, slope); v.y = lrelu(v.y, slope); v.z = lrelu(v.z, slope); v.w = lrelu(v.w, slope);
        y4[i] = v;
    }
    const i64 t = 4 * n4 + blockIdx.x * (i64)blockDim.x + threadIdx.x;
    if (t < n) y[t] = lrelu(x[t], slope);
}
// Work: n compares, up to n FLOPs; moves 3*n*4 B.
extern "C" __global__ void leaky_relu_backward_v2(const float* __restrict__ dy, const float* __restrict__ y,
                                                  float* __restrict__ dx, i64 n, float slope) {
    const i64 n4 = n >> 2;
    const float4* d4 = reinterpret_cast<const float4*>(dy);
    const float4* y4 = reinterpret_cast<const float4*>(y);
    float4* o4 = reinterpret_cast<float4*>(dx);
    GRID_STRIDE(i, n4) {
        const float4 d = d4[i], v = y4[i];
        o4[i] = make_float4(lrelu_grad(d.x, v.x, slope), lrelu_grad(d.y, v.y, slope),
                            lrelu_grad(d.z, v.z, slope), lrelu_grad(d.w, v.w, slope));
    }
    const i64 t = 4 * n4 + blockIdx.x * (i64)blockDim.x + threadIdx.x;
    if (t < n) dx[t] = lrelu_grad(dy[t], y[t], slope);
}

// ---- sigmoid / tanh --------------------------------------------------------------------------

// Stable for large |x|: exp of a non-positive argument only.
// Work: 1 expf + about 3 FLOPs per element; moves 2*n*4 B.
extern "C" __global__ void sigmoid_forward_v1(const float* __restrict__ x, float* __restrict__ y, i64 n) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        const float e = expf(-fabsf(v));
        y[i] = v >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
    }
}
// Work: 3 FLOPs per element; moves 3*n*4 B.
extern "C" __global__ void sigmoid_backward_v1(const float* __restrict__ dy, const float* __restrict__ y,
                                               float* __restrict__ dx, i64 n) {
    GRID_STRIDE(i, n) { const float v = y[i]; dx[i] = dy[i] * v * (1.f - v); }
}
// Work: 1 tanhf per element (about 20 FLOPs); moves 2*n*4 B.
extern "C" __global__ void tanh_forward_v1(const float* __restrict__ x, float* __restrict__ y, i64 n) {
    GRID_STRIDE(i, n) y[i] = tanhf(x[i]);
}
// Work: 3 FLOPs per element; moves 3*n*4 B.
extern "C" __global__ void tanh_backward_v1(const float* __restrict__ dy, const float* __restrict__ y,
                                            float* __restrict__ dx, i64 n) {
    GRID_STRIDE(i, n) { const float v = y[i]; dx[i] = dy[i] * (1.f - v * v); }
}

// ---- dropout ---------------------------------------------------------------------------------

__device__ __forceinline__ unsigned int fmix32(unsigned int h) {
    h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
    return h;
}

// Work: a 32-bit hash (integer ops) and 1 FLOP per element. Traffic: n * (4 + 4 + 1) B.
extern "C" __global__ void dropout_forward_v1(const float* __restrict__ x, float* __restrict__ y,
                                              unsigned char* __restrict__ mask, i64 n, unsigned int seed,
                                              unsigned long long thr, float scale) {
    const unsigned int hs = fmix32(seed);
    GRID_STRIDE(i, n) {
        const unsigned int h = fmix32((unsigned int)i ^ hs);
        const bool k = (unsigned long long)h >= thr;
        mask[i] = k ? 1 : 0;
        y[i] = k ? x[i] * scale : 0.f;
    }
}
// Work: 1 FLOP per element. Traffic: n * (4 + 1 + 4) B.
extern "C" __global__ void dropout_backward_v1(const float* __restrict__ dy, const unsigned char* __restrict__ mask,
                                               float* __restrict__ dx, i64 n, float scale) {
    GRID_STRIDE(i, n) dx[i] = mask[i] ? dy[i] * scale : 0.f;
}
