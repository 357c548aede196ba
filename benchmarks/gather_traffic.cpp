// gather_traffic.cpp - the global-memory footprint of a gathered-B copy instruction of the forward and
// backward-data implicit GEMMs, from the kernels' own index math (kernels/conv_index.cuh: forward_gather /
// phase_gather, gather_col / gather_step, bwd_phase). A warp's 4-byte cp.async covers R k rows x 32/R
// consecutive GEMM columns; the rows are k0, k0 + RS, .., k0 + (R-1)*RS (RS = 1: consecutive reduction
// indices, as GatherB's thread map takes them, R = 32*BK/threads; RS = 4, R = 2: the two k rows one
// mma.sync TF32 B fragment pairs). For every such copy of one pass (every column tile, k step and row
// group) it counts the distinct 128-byte lines and 32-byte sectors its lanes read, the tensor at a 128-byte
// aligned address: the L1 fills shared memory about one wavefront per line, and moves the sectors from L2.
// Built and run by benchmarks/gather_traffic.py.
// argv: pass (forward | backward_data) N C H W K R S sh sw ph pw dh dw G BN BK rows row_step
// prints: copies lanes lines sectors (warp copies issued, lanes that read, lines and sectors summed)
#define __host__
#define __device__
#define __forceinline__ inline
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "conv_index.cuh"

struct Totals {
    long copies = 0, lanes = 0, lines = 0, sectors = 0;
};

static int out_size(int h, int r, int st, int pd, int d) { return (h + 2 * pd - d * (r - 1) - 1) / st + 1; }

// The first k row of row group q of a stage: groups of R rows RS apart tile the BK rows.
static int group_row(int q, int R, int RS) { return (q / RS) * R * RS + q % RS; }

// Every copy of one GEMM's B (ncols columns, a reduction of kred) for BN-column tiles and BK-row stages.
static void count(const Gather& g, int ncols, int kred, int BN, int BK, int R, int RS, Totals& t) {
    const GatherMasked m(g);
    const int C = 32 / R;
    std::vector<long> lines, sectors;
    for (int n0 = 0; n0 < ncols; n0 += BN)
        for (int k0 = 0; k0 < kred; k0 += BK)
            for (int q = 0; q < BK / R; ++q)
                for (int c0 = 0; c0 < BN; c0 += C) {
                    lines.clear();
                    sectors.clear();
                    for (int lane = 0; lane < 32; ++lane) {
                        const int kk = k0 + group_row(q, R, RS) + (lane / C) * RS, n = n0 + c0 + lane % C;
                        if (kk >= kred || n >= ncols) continue;
                        TapIter it;
                        it.init(kk, BK, g.ni, g.nj);
                        const GatherMaskCol col = gather_col(m, n, ncols);
                        const GatherMaskStep s = gather_step(m, it, true);
                        if (!gather_ok(m, col, s)) continue;
                        const long byte = 4L * (col.off + s.off);
                        lines.push_back(byte >> 7);
                        sectors.push_back(byte >> 5);
                        ++t.lanes;
                    }
                    std::sort(lines.begin(), lines.end());
                    std::sort(sectors.begin(), sectors.end());
                    t.lines += std::unique(lines.begin(), lines.end()) - lines.begin();
                    t.sectors += std::unique(sectors.begin(), sectors.end()) - sectors.begin();
                    ++t.copies;
                }
}

int main(int argc, char** argv) {
    if (argc != 20) {
        std::fprintf(stderr, "usage: gather_traffic PASS N C H W K R S sh sw ph pw dh dw G BN BK rows row_step\n");
        return 2;
    }
    const bool forward = std::strcmp(argv[1], "forward") == 0;
    int v[18];
    for (int i = 0; i < 18; ++i) v[i] = std::atoi(argv[2 + i]);
    const int N = v[0], C = v[1], H = v[2], W = v[3], K = v[4], R = v[5], S = v[6], sh = v[7], sw = v[8], ph = v[9],
              pw = v[10], dh = v[11], dw = v[12], G = v[13], BN = v[14], BK = v[15], rows = v[16], rs = v[17];
    if (rows < 1 || 32 % rows || BN % (32 / rows) || BK % (rows * rs)) {
        std::fprintf(stderr, "gather_traffic: %d rows %d apart do not tile a %d x %d stage\n", rows, rs, BK, BN);
        return 2;
    }
    const int P = out_size(H, R, sh, ph, dh), Q = out_size(W, S, sw, pw, dw), Cg = C / G, Kg = K / G;
    Totals t;
    for (int g = 0; g < G; ++g) {
        if (forward) {
            count(forward_gather(C, H, W, R, S, P, Q, sh, sw, ph, pw, dh, dw, g * Cg, Cg), N * P * Q, Cg * R * S, BN, BK,
                  rows, rs, t);
            continue;
        }
        for (int phase = 0; phase < sh * sw; ++phase) {  // as conv_bwd_data_v3: one GEMM per phase
            const Phase f = bwd_phase(phase, H, W, R, S, sh, sw, ph, pw, dh, dw);
            if (f.Ht == 0 || f.Wt == 0) continue;
            count(phase_gather(f, K, P, Q, g, Kg), N * f.Ht * f.Wt, Kg * f.Ri * f.Sj, BN, BK, rows, rs, t);
        }
    }
    std::printf("%ld %ld %ld %ld\n", t.copies, t.lanes, t.lines, t.sectors);
    return 0;
}
