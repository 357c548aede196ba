// conv_smallc_taps.cuh - the tap loops of conv_smallc.cu's backward-data kernel
// (conv2d_backward_data_smallc_v2): a lane's 2 x 4 pixels summed over the phase's taps of one staged
// filter chunk, through register windows when a phase row has few taps. Included by conv_smallc.cu
// only, after conv_index.cuh (Phase).

// backward-data's taps of one staged filter chunk for a lane's 2 x 4 pixels (acc[rr][v]: phase row
// 2*lr + rr of the tile, column 4*qq + v): filters k = k0, k0 + kstep, ... < nk, every tap of the
// phase. ws holds the taps as [k][i][jj < sjp] with jj = Sj-1-j, rows padded with zeros to sjp (Sj
// rounded up to 4: one 16-byte broadcast per 4 taps). Output row 2*lr + rr at tap row i reads staged
// row 2*lr + rr + (Ri-1-i)*pstep, and pixel v at tap jj staged column 4*qq + v + jj*qstep.
// SJ > 0 (qstep == 1, SJ taps a row, fully unrolled): the SJ + 3 dy values of a staged row are loaded
// once (a register window) for its SJ taps; with pstep == 1 a staged row serves both output rows
// (Ri + 1 rows loaded per filter, not 2 * Ri). SJ == 0: any qstep and tap count, 4 loads per tap.
template <int SJ>
__device__ __forceinline__ void smallc_bwd_row(const float* __restrict__ ds, const float* __restrict__ ws, int row,
                                               int wrow, int Sj, int qstep, float (&a)[4]) {
    if (SJ > 0) {
        float win[SJ + 3], wt[SJ > 0 ? (SJ + 3) & ~3 : 4];
#pragma unroll
        for (int m = 0; m < SJ + 3; ++m) win[m] = ds[row + m];
#pragma unroll
        for (int m = 0; m < SJ; m += 4) {
            const float4 w4 = *reinterpret_cast<const float4*>(&ws[wrow + m]);
            wt[m] = w4.x; wt[m + 1] = w4.y; wt[m + 2] = w4.z; wt[m + 3] = w4.w;
        }
#pragma unroll
        for (int jj = 0; jj < SJ; ++jj)
#pragma unroll
            for (int v = 0; v < 4; ++v) a[v] = fmaf(win[v + jj], wt[jj], a[v]);
    } else {
        for (int jj = 0; jj < Sj; ++jj) {
            const float wv = ws[wrow + jj];
            const int col = row + jj * qstep;
#pragma unroll
            for (int v = 0; v < 4; ++v) a[v] = fmaf(ds[col + v], wv, a[v]);
        }
    }
}

template <int SJ>
__device__ __forceinline__ void smallc_bwd_taps(const float* __restrict__ ds, const float* __restrict__ ws,
                                                const Phase& f, int k0, int nk, int kstep, int plane, int IWP,
                                                int sjp, int lr, int qq, float (&acc)[2][4]) {
    for (int k = k0; k < nk; k += kstep) {
        const int kb = k * plane + 2 * lr * IWP + 4 * qq, kw = k * f.Ri * sjp;
        if (SJ > 0 && f.pstep == 1) {
            for (int rho = 0; rho <= f.Ri; ++rho) {  // staged row 2*lr + rho: tap row Ri-1-rho+rr of row rr
                float win[SJ + 3];
#pragma unroll
                for (int m = 0; m < SJ + 3; ++m) win[m] = ds[kb + rho * IWP + m];
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) {
                    const int i = f.Ri - 1 - rho + rr;
                    if ((unsigned)i >= (unsigned)f.Ri) continue;  // uniform
                    float wt[SJ > 0 ? (SJ + 3) & ~3 : 4];
#pragma unroll
                    for (int m = 0; m < SJ; m += 4) {
                        const float4 w4 = *reinterpret_cast<const float4*>(&ws[kw + i * sjp + m]);
                        wt[m] = w4.x; wt[m + 1] = w4.y; wt[m + 2] = w4.z; wt[m + 3] = w4.w;
                    }
#pragma unroll
                    for (int jj = 0; jj < SJ; ++jj)
#pragma unroll
                        for (int v = 0; v < 4; ++v) acc[rr][v] = fmaf(win[v + jj], wt[jj], acc[rr][v]);
                }
            }
        } else {
#pragma unroll
            for (int rr = 0; rr < 2; ++rr)
                for (int i = 0; i < f.Ri; ++i)
                    smallc_bwd_row<SJ>(ds, ws, kb + (rr + (f.Ri - 1 - i) * f.pstep) * IWP, kw + i * sjp, f.Sj, f.qstep,
                                       acc[rr]);
        }
    }
}
