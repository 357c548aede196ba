// conv_index.cuh - the index math of the implicit-GEMM conv kernels, as __host__ __device__
// functions so that tests/test_conv_index.py compiles them with g++ and checks every address
// against a naive im2col on the host. No CUDA built-ins here (only what g++ can compile with
// __host__/__device__/__forceinline__ defined empty).
//
// The GEMM view of the three passes (per group g; "tap" = one (r, s) of the filter):
//   forward          C[k][n=(img,p,q)]     = sum_{kk=(c,r,s)} Wf[kk][k] * X(kk, n)
//   backward-data    C[c][n=(img,t,u)]     = sum_{kk=(k,i,j)} Wd[kk][c] * DY(kk, n), one GEMM per
//                    output phase (h % sh, w % sw): h = h0 + t*sh, w = w0 + u*sw, and only the taps
//                    r = r0 + i*rstep, s = s0 + j*sstep that reach that phase (no zero taps).
//   backward-weight  C[k][n=(c,r,s)]       = sum_{kk=(img,p,q)} DY[img][k][p][q] * X(c, r, s; img, p, q)
// The gathered operand of forward and backward-data is one "im2col" form: element (a, i, j) x
// (img, t, u) of a tensor T[img][a][Th][Tw] at row t*hs + hb + i*hd and column u*ws + wb + j*wd, zero
// outside [0, Th) x [0, Tw). Forward: T = x, (hs, hb, hd) = (sh, -ph, dh). Backward-data phase:
// T = dy, (hs, hb, hd) = (1, pbase, -pstep): p = t + pbase - i*pstep.
#pragma once

#ifndef FC_HD
#define FC_HD __host__ __device__ __forceinline__
#endif

// Mixed-radix counter over (a, i, j) with j fastest (j < nj, i < ni), advanced by a fixed step
// without division: the step is split once into (da, di, dj) digits and each advance carries at
// most one unit per digit. kk is the flat index a*ni*nj + i*nj + j.
struct TapIter {
    int a, i, j, kk;
    int da, di, dj, ni, nj;
    FC_HD void init(int kk0, int step, int ni_, int nj_) {
        ni = ni_; nj = nj_;
        const int nij = ni_ * nj_;
        kk = kk0;
        a = kk0 / nij; const int rem = kk0 - a * nij; i = rem / nj_; j = rem - i * nj_;
        da = step / nij; const int srem = step - da * nij; di = srem / nj_; dj = srem - di * nj_;
    }
    FC_HD void next() {
        kk += da * ni * nj + di * nj + dj;
        j += dj;
        int ci = 0;
        if (j >= nj) { j -= nj; ci = 1; }
        i += di + ci;
        int ca = 0;
        if (i >= ni) { i -= ni; ca = 1; }
        a += da + ca;
    }
};

// The gathered operand's geometry (see the header comment).
struct Gather {
    int Tc, Th, Tw;          // the tensor's channels (all groups), rows, columns
    int a0;                  // first channel of the group
    int na, ni, nj;          // reduction digits: channels of the group, taps along h, taps along w
    int nt, nu;              // output sub-grid rows/cols (P, Q for forward; Ht, Wt of a phase)
    int hs, hb, hd, ws, wb, wd;
};

// One backward-data output phase: rows h = h0 + t*sh (t < Ht) use the taps r = r0 + i*rstep
// (i < Ri) and read dy row p = t + pbase - i*pstep; the same along w. A phase with Ht or Wt == 0
// has no outputs; one with Ri or Sj == 0 has outputs that no tap reaches (they are zero).
struct Phase {
    int h0, Ht, r0, rstep, Ri, pbase, pstep;
    int w0, Wt, s0, sstep, Sj, qbase, qstep;
};

FC_HD int gcd_int(int a, int b) {
    while (b) { const int t = a % b; a = b; b = t; }
    return a;
}

// One dimension of a phase: rows phi, phi + st, ... of an extent n, filter taps R at dilation d,
// padding pd. Taps r reach row h when h + pd - r*d is a multiple of st.
FC_HD void phase_dim(int phi, int n, int R, int st, int pd, int d, int& h0, int& nt, int& r0, int& rstep,
                     int& nr, int& base, int& pstep) {
    h0 = phi;
    nt = phi < n ? (n - phi + st - 1) / st : 0;
    rstep = st / gcd_int(st, d);
    r0 = -1;
    for (int r = 0; r < R && r < rstep; ++r)
        if (((phi + pd - r * d) % st + st) % st == 0) { r0 = r; break; }
    if (r0 < 0) { r0 = 0; nr = 0; base = 0; pstep = 0; return; }
    nr = (R - r0 + rstep - 1) / rstep;
    const int num = phi + pd - r0 * d;  // a multiple of st (may be negative)
    base = num >= 0 ? num / st : -((-num) / st);
    pstep = rstep * d / st;
}

FC_HD Phase bwd_phase(int phase, int H, int W, int R, int S, int sh, int sw, int ph, int pw, int dh, int dw) {
    Phase f;
    const int phi_h = phase / sw, phi_w = phase - phi_h * sw;
    phase_dim(phi_h, H, R, sh, ph, dh, f.h0, f.Ht, f.r0, f.rstep, f.Ri, f.pbase, f.pstep);
    phase_dim(phi_w, W, S, sw, pw, dw, f.w0, f.Wt, f.s0, f.sstep, f.Sj, f.qbase, f.qstep);
    return f;
}

// The most taps any phase of one dimension has: ceil(R / rstep) (phases differ by at most one).
FC_HD int phase_max_taps(int R, int st, int d) {
    const int rstep = st / gcd_int(st, d);
    return (R + rstep - 1) / rstep;
}
