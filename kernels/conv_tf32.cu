// conv_tf32.cu - the TF32 tensor-core conv kernels: forward, backward-data (phases) and
// backward-weight of the v3 implicit-GEMM core (kernels/conv_v3.cuh, conv_gemm.cuh, conv_index.cuh)
// with the product done by mma.sync m16n8k8 TF32 (operands rounded by cvt.rna.tf32, fp32
// accumulation). Opt-in (the tf32 setting); a module of its own, so fp32 use never compiles it.
// The weights are packed (tf32-rounded) and split-K partials summed by kernels/conv.cu's
// conv2d_pack_*_v1 and conv2d_splitk_reduce_v1 / _v2.
//
// Kernel versions
//   v3 tf32  one tile per CONV_V3_TF32_KERNELS line below (warp tiles of up to 4 x 8 mma tiles fed
//       by conflict-free fragment loads; forward and backward-data test bounds by per-column
//       bitmasks, filters of up to GATHER_MASK_TAPS taps per dimension; tiles above 48 KiB take
//       dynamic shared memory): conv2d_forward_v3_tf32_t*, conv2d_backward_data_v3_tf32_t*,
//       conv2d_backward_weight_v3_tf32_t*.
//
// Build check: nvcc -arch=sm_90 -cubin -Xptxas -v (tests/test_conv_build.py).
#include "common.cuh"
#include "conv_index.cuh"
#include "conv_gemm.cuh"
#include "conv_v3.cuh"

// CONV_V3_TF32_KERNELS: suffix, BM, BN, BK, warps (rows x cols), stages, min blocks per SM; warp
// tiles 64x64 (t128x128, t128x128k16), else 64x32. Mirrored by config.py TF32_TILES (stages:
// TF32_STAGES).
CONV_V3_TF32_KERNELS(t128x128, 128, 128, 8, 2, 2, 4, 2)
CONV_V3_TF32_KERNELS(t128x64, 128, 64, 16, 2, 2, 3, 3)
CONV_V3_TF32_KERNELS(t64x128, 64, 128, 8, 1, 4, 4, 3)
CONV_V3_TF32_KERNELS(t64x64, 64, 64, 8, 1, 2, 4, 6)
// BK 16: one barrier and cp.async stage per two mma k steps (half the per-stage overhead of BK 8);
// t64x128k16: 3 stages, 39,936 B of static shared memory (under the 48 KB static limit);
CONV_V3_TF32_KERNELS(t64x128k16, 64, 128, 16, 1, 4, 3, 3)
// Deep k, dynamic shared memory (above 48 KiB): one barrier and cp.async stage per 64 mma of a
// warp. t128x128k16: 4 stages, 69,632 B, two blocks per SM; t128x64k32 and t64x128k32: 3 stages,
// 79,872 B, two blocks; t64x64k32: 3 stages, 55,296 B, three blocks. (BK 32 on t128x128 spills at
// 128 threads, and at 256 threads, 64x32 warp tiles, needs more instructions per mma than BK 16.)
CONV_V3_TF32_KERNELS(t128x128k16, 128, 128, 16, 2, 2, 4, 2)
CONV_V3_TF32_KERNELS(t128x64k32, 128, 64, 32, 2, 2, 3, 2)
CONV_V3_TF32_KERNELS(t64x128k32, 64, 128, 32, 1, 4, 3, 2)
CONV_V3_TF32_KERNELS(t64x64k32, 64, 64, 32, 1, 2, 3, 3)
