// conv_epilogue.cuh - the v3 conv core's epilogue (kernels/conv_v3.cuh's pass bodies): the block's C
// tile staged through shared memory and stored with bias and activation fused. Needs common.cuh,
// conv_index.cuh and conv_gemm.cuh (the tile types) first.
#pragma once

// Writes the block's C tile: out[row_off(m) + col_off(n)] = act(C[m][n] + bias[m]) with row_off(m) = (mg0 + m) *
// rstride (has_bias EPI_GRAD: the backward of act at y = bias[that offset], conv_epilogue; only an unsplit out, whose
// offsets are y's). The tile goes through shared memory in two halves (the upper and lower half of every warp tile:
// fp32 quad rows a = 0, 1; TF32 mma rows by mma_row; rows epi_pitch apart, so the staging stores are free of bank
// conflicts), then each thread stores 4 consecutive columns: one float4 when its 4 column offsets are consecutive and
// 16-byte aligned (checked once per thread; out_aligned: out is 16-byte aligned), else 4 scalars. Columns whose col_off
// is < 0 and rows m >= Mg are skipped. col_of(n, j) fills the 4 offsets of columns n..n+3.
template <class T, class ColOff>
__device__ __forceinline__ void gemm_epilogue(float* smem, const typename T::Acc& acc, const ColOff& col_of, int m0,
                                              int n0, int Mg, int mg0, int rstride, float* out, bool out_aligned,
                                              const float* bias, int has_bias, int act, float slope) {
    constexpr int ES = epi_pitch(T::BN), CPR = T::BN / 4, RPP = T::NT / CPR;
    const int cg = threadIdx.x % CPR, rr = threadIdx.x / CPR;
    int co[4];
    col_of(n0 + cg * 4, co);
    const bool vec = co[0] >= 0 && co[1] == co[0] + 1 && co[2] == co[0] + 2 && co[3] == co[0] + 3 &&
                     (co[0] & 3) == 0 && (rstride & 3) == 0 && out_aligned;
    // half a holds rows [a*WM/2, (a+1)*WM/2) of every warp tile, staged at row wr*WM/2 + row % (WM/2)
#pragma unroll
    for (int a = 0; a < 2; ++a) {
        if constexpr (T::TF32) {  // lane: rows mma_row(mt, g + 8*hi), columns wn + 8*nt + 2t, + 1
            const MmaPos<T> mp;
            const int wbase = (mp.wm / T::WM) * (T::WM / 2);
#pragma unroll
            for (int mt = 0; mt < T::MT; ++mt)
#pragma unroll
                for (int hi = 0; hi < 2; ++hi) {
                    const int rw = mma_row(mt, mp.g + 8 * hi);
                    if (rw / (T::WM / 2) != a) continue;
                    float* srow = smem + (wbase + rw % (T::WM / 2)) * ES + mp.wn + 2 * mp.t;
#pragma unroll
                    for (int nt = 0; nt < T::NT8; ++nt) {
                        float2 v;
                        v.x = acc[mt][nt][2 * hi]; v.y = acc[mt][nt][2 * hi + 1];
                        *reinterpret_cast<float2*>(srow + 8 * nt) = v;
                    }
                }
        } else {
            const ThreadPos<T> tp;
            const int wr_row = (tp.row0 / T::WM) * (T::WM / 2) + (tp.row0 % T::WM);  // staged row of quad row a
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int b = 0; b < 2; ++b) {
                    float4 v;
                    v.x = acc[a * 4 + i][b * 4]; v.y = acc[a * 4 + i][b * 4 + 1];
                    v.z = acc[a * 4 + i][b * 4 + 2]; v.w = acc[a * 4 + i][b * 4 + 3];
                    *reinterpret_cast<float4*>(smem + (wr_row + i) * ES + tp.col0 + b * (T::WN / 2)) = v;
                }
        }
        __syncthreads();
        for (int sr = rr; sr < T::BM / 2; sr += RPP) {
            const int ml = (sr / (T::WM / 2)) * T::WM + a * (T::WM / 2) + sr % (T::WM / 2);
            const int m = m0 + ml;
            if (m >= Mg) continue;
            const float bv = has_bias == EPI_BIAS ? bias[mg0 + m] : 0.f;
            const float4 v = *reinterpret_cast<const float4*>(smem + sr * ES + cg * 4);
            float o[4] = {conv_act(v.x + bv, act, slope), conv_act(v.y + bv, act, slope),
                          conv_act(v.z + bv, act, slope), conv_act(v.w + bv, act, slope)};
            const long long roff = (mg0 + m) * (long long)rstride;
            if (has_bias == EPI_GRAD) {   // bias: the activation's outputs, at out's offsets
                const float vs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    o[j] = co[j] >= 0 ? conv_act_grad(vs[j], bias[roff + co[j]], act, slope) : 0.f;
            }
            float* row = out + roff;
            if (vec) {
                float4 w4; w4.x = o[0]; w4.y = o[1]; w4.z = o[2]; w4.w = o[3];
                *reinterpret_cast<float4*>(row + co[0]) = w4;
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (co[j] >= 0) row[co[j]] = o[j];
            }
        }
        __syncthreads();
    }
}
