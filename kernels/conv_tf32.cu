// conv_tf32.cu - the TF32 tensor-core conv kernels: forward, backward-data (phases) and
// backward-weight of the v3 implicit-GEMM core (kernels/conv_v3.cuh, conv_gemm.cuh, conv_loaders.cuh,
// conv_epilogue.cuh, conv_index.cuh)
// with the product done by mma.sync m16n8k8 TF32 (operands rounded by cvt.rna.tf32, fp32
// accumulation). Opt-in (the tf32 setting); a module of its own, so fp32 use never compiles it.
// The weights are packed (tf32-rounded) and split-K partials summed by kernels/conv.cu's
// conv2d_pack_*_v1 and conv2d_splitk_reduce_v1 / _v2.
//
// Kernel versions
//   v3 tf32  one tile per CONV_V3_TF32_KERNELS line below (warp tiles of up to 4 x 8 mma tiles fed
//       by conflict-free fragment loads; forward and backward-data test bounds by per-column
//       bitmasks, filters of up to GATHER_MASK_TAPS taps per dimension): conv2d_forward_v3_tf32_t*,
//       conv2d_backward_data_v3_tf32_t*, conv2d_backward_weight_v3_tf32_t*; the gathered operand
//       4 bytes per cp.async from the NCHW tensor, rounded by cvt.rna in the mma's registers.
//   v3 tf32 vec  backward-weight only (the default where K/G and C/G are multiples of 4, the
//       tf32_vector_gather setting): both operands 16 bytes per cp.async from channels-last copies
//       (conv.cu's nchw_to_nhwc_v1, rounded to tf32 there, so no cvt.rna), dy as the k-major A (4
//       channels per copy, PackedA), x 4 channels per copy with its columns run (tap, channel) into a
//       k-major stage tile (GatherRowQuad): conv2d_backward_weight_v3_tf32_vec_t*.
//   The 16-byte forward and backward-data kernels (x or dy gathered 4 channels per copy from a
//   channels-last copy, weights packed channel-fastest) were removed: an H200 ran them slower than
//   the 4-byte ones on every benchmark row (e.g. resnet.c2 forward 256 against 176 us, lenet.conv2
//   backward-data 0.59 against 0.76 of cuDNN).
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v (tests/test_conv_build.py).
#include "common.cuh"
#include "conv_index.cuh"
#include "conv_gemm.cuh"
#include "conv_loaders.cuh"
#include "conv_epilogue.cuh"
#include "conv_v3.cuh"

// CONV_V3_TF32_KERNELS: suffix, BM, BN, BK, warps (rows x cols), stages, min blocks per SM; warp
// tiles 64x64 (t128x128, t128x64w2), 32x32 (t32x128), else 64x32. Mirrored by config.py TF32_TILES (tests compare).
// All but t128x128 and t64x64 take BK 16 (one barrier and cp.async stage per two mma k steps) at 3 stages
// (t128x64: 39,936 B of shared memory), within the 48 KiB of static shared memory as t128x128's BK 8 at 4
// stages is (BK 16 would not fit; t64x64's 4-byte backward-weight spills with it); at BK 16 a stage's fixed
// work (barrier, loaders' addresses) weighs half as much per HMMA (t64x128 took BK 16 for the removed
// 16-byte forward and backward-data). t128x64w2 is t128x64 on two warps of 64x64 (each A fragment serves 8
// mma, each B fragment 4: 0.42 shared loads per HMMA instead of 0.72), 4 blocks per SM (226-253 registers,
// sm_90, no spills). t32x128 (warp tiles 32x32) serves GEMMs of at most 32 rows, which the 64-row tiles
// would fill half with padding; 4 blocks per SM (107-128 registers, no spills).
CONV_V3_TF32_KERNELS(t128x128, 128, 128, 8, 2, 2, 4, 2)
CONV_V3_TF32_KERNELS(t128x64, 128, 64, 16, 2, 2, 3, 3)
CONV_V3_TF32_KERNELS(t64x128, 64, 128, 16, 1, 4, 3, 3)
CONV_V3_TF32_KERNELS(t64x64, 64, 64, 8, 1, 2, 4, 6)
CONV_V3_TF32_KERNELS(t128x64w2, 128, 64, 16, 2, 1, 3, 4)
CONV_V3_TF32_KERNELS(t32x128, 32, 128, 16, 1, 4, 3, 4)
