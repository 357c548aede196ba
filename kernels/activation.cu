// activation.cu - element-wise activations and dropout, forward and backward, fp32.
//
// Kernel versions
//   v1  grid-stride loop, one element per step, any alignment: relu_forward_v1,
//       relu_backward_v1, leaky_relu_forward_v1, leaky_relu_backward_v1, sigmoid_forward_v1,
//       sigmoid_backward_v1, tanh_forward_v1, tanh_backward_v1, dropout_forward_v1,
//       dropout_backward_v1.
//   dropout_forward_v2: dropout_forward_v1 with its call counter on the device (see the kernel).
//   relu_*_v2, leaky_relu_*_v2, sigmoid_*_v2, tanh_*_v2: float4 grid-stride loop over n/4
//        vectors, two vectors in flight per thread (both loaded before either is stored), the
//        n%4 tail done by the first threads; the launcher uses v2 only when every pointer is
//        16-byte aligned.
// Every kernel here indexes in 32 bits (the launcher checks n <= INT32_LIMIT).
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

// ---- the activations: one functor each (forward f(x), backward g(dy, y)) --------------------

// relu is leaky relu with slope 0 (x * 0 would turn -inf into NaN, so relu keeps its own select).
struct Relu {
    __device__ __forceinline__ float f(float x) const { return x > 0.f ? x : 0.f; }
    __device__ __forceinline__ float g(float dy, float y) const { return y > 0.f ? dy : 0.f; }
};
struct LeakyRelu {
    float slope;
    __device__ __forceinline__ float f(float x) const { return x > 0.f ? x : x * slope; }
    __device__ __forceinline__ float g(float dy, float y) const { return y > 0.f ? dy : dy * slope; }
};
// Stable for large |x|: exp of a non-positive argument only.
struct Sigmoid {
    __device__ __forceinline__ float f(float x) const {
        const float e = expf(-fabsf(x));
        return x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
    }
    __device__ __forceinline__ float g(float dy, float y) const { return dy * y * (1.f - y); }
};
struct Tanh {
    __device__ __forceinline__ float f(float x) const { return tanhf(x); }
    __device__ __forceinline__ float g(float dy, float y) const { return dy * (1.f - y * y); }
};

template <class Op> __device__ __forceinline__ float4 f4(const Op& op, float4 v) {
    return make_float4(op.f(v.x), op.f(v.y), op.f(v.z), op.f(v.w));
}
template <class Op> __device__ __forceinline__ float4 g4(const Op& op, float4 d, float4 v) {
    return make_float4(op.g(d.x, v.x), op.g(d.y, v.y), op.g(d.z, v.z), op.g(d.w, v.w));
}

template <class Op> __device__ __forceinline__ void forward_v1(const float* __restrict__ x, float* __restrict__ y,
                                                               int n, Op op) {
    GRID_STRIDE32(i, n) y[i] = op.f(x[i]);
}
template <class Op> __device__ __forceinline__ void backward_v1(const float* __restrict__ dy, const float* __restrict__ y,
                                                                float* __restrict__ dx, int n, Op op) {
    GRID_STRIDE32(i, n) dx[i] = op.g(dy[i], y[i]);
}

// Vectors i and i + G (G = threads in the grid) per step: two 16-byte loads in flight per array.
template <class Op> __device__ __forceinline__ void forward_v2(const float* __restrict__ x, float* __restrict__ y,
                                                               int n, Op op) {
    const unsigned n4 = (unsigned)n >> 2, G = gridDim.x * blockDim.x;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += 2 * G) {
        const bool two = i + G < n4;
        const float4 a = x4[i];
        const float4 b = two ? x4[i + G] : a;
        y4[i] = f4(op, a);
        if (two) y4[i + G] = f4(op, b);
    }
    const unsigned t = 4 * n4 + blockIdx.x * blockDim.x + threadIdx.x;
    if (t < (unsigned)n) y[t] = op.f(x[t]);
}
template <class Op> __device__ __forceinline__ void backward_v2(const float* __restrict__ dy, const float* __restrict__ y,
                                                                float* __restrict__ dx, int n, Op op) {
    const unsigned n4 = (unsigned)n >> 2, G = gridDim.x * blockDim.x;
    const float4* d4 = reinterpret_cast<const float4*>(dy);
    const float4* y4 = reinterpret_cast<const float4*>(y);
    float4* o4 = reinterpret_cast<float4*>(dx);
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += 2 * G) {
        const bool two = i + G < n4;
        const float4 da = d4[i], ya = y4[i];
        const float4 db = two ? d4[i + G] : da, yb = two ? y4[i + G] : ya;
        o4[i] = g4(op, da, ya);
        if (two) o4[i + G] = g4(op, db, yb);
    }
    const unsigned t = 4 * n4 + blockIdx.x * blockDim.x + threadIdx.x;
    if (t < (unsigned)n) dx[t] = op.g(dy[t], y[t]);
}

// The v1 and v2 entry points of one activation (NAME relu, leaky_relu, sigmoid, tanh; OP its
// functor built from the extra parameters ARGS). Work per element: relu a compare, leaky relu a
// compare + up to 1 FLOP, sigmoid 1 expf + about 3 FLOPs forward and 3 FLOPs backward, tanh 1
// tanhf (about 20 FLOPs) forward and 3 FLOPs backward; moves 2*n*4 B forward (x in, y out) and
// 3*n*4 B backward (dy, y in, dx out).
#define ACTIVATION_KERNELS(NAME, OP, ...)                                                                  \
    extern "C" __global__ void NAME##_forward_v1(const float* __restrict__ x, float* __restrict__ y,       \
                                                 int n __VA_ARGS__) {                                      \
        forward_v1(x, y, n, OP);                                                                           \
    }                                                                                                      \
    extern "C" __global__ void NAME##_forward_v2(const float* __restrict__ x, float* __restrict__ y,       \
                                                 int n __VA_ARGS__) {                                      \
        forward_v2(x, y, n, OP);                                                                           \
    }                                                                                                      \
    extern "C" __global__ void NAME##_backward_v1(const float* __restrict__ dy, const float* __restrict__ y, \
                                                  float* __restrict__ dx, int n __VA_ARGS__) {             \
        backward_v1(dy, y, dx, n, OP);                                                                     \
    }                                                                                                      \
    extern "C" __global__ void NAME##_backward_v2(const float* __restrict__ dy, const float* __restrict__ y, \
                                                  float* __restrict__ dx, int n __VA_ARGS__) {             \
        backward_v2(dy, y, dx, n, OP);                                                                     \
    }
ACTIVATION_KERNELS(relu, Relu())
ACTIVATION_KERNELS(leaky_relu, LeakyRelu{slope}, , float slope)
ACTIVATION_KERNELS(sigmoid, Sigmoid())
ACTIVATION_KERNELS(tanh, Tanh())

// ---- dropout ---------------------------------------------------------------------------------

__device__ __forceinline__ unsigned int fmix32(unsigned int h) {
    h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
    return h;
}

// The masked, scaled copy of x for the hash seed ``seed`` (see the header), grid-stride.
__device__ __forceinline__ void dropout_body(const float* __restrict__ x, float* __restrict__ y,
                                             unsigned char* __restrict__ mask, int n, unsigned int seed,
                                             unsigned long long thr, float scale) {
    const unsigned int hs = fmix32(seed);
    GRID_STRIDE32(i, n) {
        const unsigned int h = fmix32(i ^ hs);
        const bool k = (unsigned long long)h >= thr;
        mask[i] = k ? 1 : 0;
        y[i] = k ? x[i] * scale : 0.f;
    }
}

// Work: a 32-bit hash (integer ops) and 1 FLOP per element. Traffic: n * (4 + 4 + 1) B.
extern "C" __global__ void dropout_forward_v1(const float* __restrict__ x, float* __restrict__ y,
                                              unsigned char* __restrict__ mask, int n, unsigned int seed,
                                              unsigned long long thr, float scale) {
    dropout_body(x, y, mask, n, seed, thr, scale);
}

// dropout_forward_v1 with the seed seed + calls[0] (uint32 wrap-around), calls = (call count,
// finished blocks) on the device: the last block to finish advances calls[0] and resets calls[1],
// so a CUDA graph of a training step draws a new mask at every replay.
// Work: as dropout_forward_v1; moves its bytes + 8 B (calls).
extern "C" __global__ void dropout_forward_v2(const float* __restrict__ x, float* __restrict__ y,
                                              unsigned char* __restrict__ mask, int n, unsigned int seed,
                                              unsigned long long thr, float scale, unsigned int* __restrict__ calls) {
    const unsigned int c = calls[0];  // read before this block counts itself finished
    dropout_body(x, y, mask, n, seed + c, thr, scale);
    __syncthreads();
    if (threadIdx.x == 0 && counts_last(&calls[1], gridDim.x)) {  // the last block: all others have read
        calls[0] = c + 1u;
        calls[1] = 0u;
    }
}
// mode EPI_GRAD (common.cuh): then through the backward of the activation act whose outputs y were
// the dropout's input (the Dropout layer's input_activation), in the same pass.
// Work: 1 FLOP per element (+ act's backward). Traffic: n * (4 + 1 + 4) B (+ n * 4 B of y).
extern "C" __global__ void dropout_backward_v1(const float* __restrict__ dy, const unsigned char* __restrict__ mask,
                                               float* __restrict__ dx, int n, float scale, const float* __restrict__ y,
                                               int mode, int act, float slope) {
    GRID_STRIDE32(i, n) {
        const float v = mask[i] ? dy[i] * scale : 0.f;
        dx[i] = mode == EPI_GRAD ? conv_act_grad(v, y[i], act, slope) : v;
    }
}
