// pool.cuh - what pool.cu (any window) and pool_2x2.cu (the 2x2 / stride-2 fast paths) share: the
// 32-bit flat-index split and the fused ReLU + max pooling's compact argmax code.
#pragma once

typedef unsigned int u32;

// (plane, row, column) of flat index i of an (planes, R, C) array, in 32-bit divisions.
__device__ __forceinline__ void split3(u32 i, u32 R, u32 C, u32& plane, int& r, int& c) {
    const u32 row = i / C;
    c = (int)(i - row * C);
    plane = row / R;
    r = (int)(row - plane * R);
}

// y = max-pool(relu(x)) in one pass over x; the argmax is the compact uint8 window index r*kw + s of
// the window's maximum when that maximum is > 0, else NO_GRAD (relu's gradient is 0 there, so no
// gradient flows); a NaN is its window's maximum (the first NaN in scan order), y = NaN and no
// gradient, as relu then max-pool do on the CPU path. Backward adds dy at the coded position.
#define NO_GRAD 255

// y and code of a window whose raw maximum is m at window index k.
__device__ __forceinline__ float relu_of_max(float m) { return m > 0.f || m != m ? m : 0.f; }
__device__ __forceinline__ int code_of_max(float m, int k) { return m > 0.f ? k : NO_GRAD; }
