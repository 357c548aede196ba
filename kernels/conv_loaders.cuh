// conv_loaders.cuh - the operand loaders of the v3 conv core (kernels/conv_gemm.cuh's main loop): each
// copies its operand's share of one k tile into a pipeline stage by cp.async, the thread's addresses
// decoded once before the main loop and advanced per tile without division (conv_index.cuh's
// geometries and iterators). Each declares ROUNDED (a TF32 operand that holds tf32 values already) and
// KMAJOR (its stage layout as MmaStep reads it). Needs common.cuh, conv_index.cuh and conv_gemm.cuh first.
#pragma once

// A operand from a k-major matrix Ap[kk][stride] of which the first `cols` columns are the GEMM's rows
// (cols a multiple of 4): the fp32 tiles' packed weights (stride = cols = Mp, rows padded to a
// multiple of 4 and the pad zeroed by the pack kernel), and a TF32 vec backward-weight's dy from its
// channels-last copy (stride K, cols K/G, rounded to tf32 by nchw_to_nhwc_v1). 16-byte cp.async of 4
// consecutive rows m at one kk. Thread tid loads column group tid % RV of k rows tid / RV + v*RS
// (v < V) of each k tile: one pointer, one shared offset and one count of the k rows left, all
// advanced per tile, so a vector costs an address, a compare and the cp.async. k-major at a_off
// (KMAJOR: on a TF32 tile MmaStep reads its fragments as 64-bit pairs, rows 2g and 2g + 1 being an
// mma tile's rows g and g + 8, mma_row).
template <class T>
struct PackedA {
    static constexpr bool ROUNDED = true, KMAJOR = true;  // on a TF32 tile: tf32 values (the copy's)
    static constexpr int RV = T::BM / 4, RS = T::NT / RV, V = (T::BK + RS - 1) / RS;
    static_assert(T::NT % RV == 0, "packed A: a pass of NT threads covers whole k rows");
    const float* p;  // the thread's first vector in the current k tile
    int stride;
    int kleft;       // k rows of the reduction left from the thread's first row (<= 0: none; 0 past cols)
    int row, dst;    // the thread's first k row in a tile, its shared offset in a stage
    __device__ __forceinline__ PackedA(const float* ap, int stride_, int cols, int m0, int kbeg, int kend) {
        stride = stride_;
        row = threadIdx.x / RV;
        const int mq = threadIdx.x - row * RV, m = m0 + mq * 4;
        p = ap + (kbeg + row) * stride + m;
        kleft = m < cols ? kend - kbeg - row : 0;
        dst = T::a_off(row, mq * 4);
    }
    __device__ __forceinline__ void issue(float* As) const {
#pragma unroll
        for (int v = 0; v < V; ++v) {
            if (T::BK % RS != 0 && row + v * RS >= T::BK) break;  // only a tile with RS > BK: the last rows
            cp_async_cg16(As + dst + v * RS * T::AS, p + v * RS * stride, v * RS < kleft ? 16 : 0);
        }
    }
    __device__ __forceinline__ void next() {
        p += T::BK * stride;
        kleft -= T::BK;
    }
};

// A gathered operand tile (Geo: a geometry of conv_index.cuh), EXTENT columns (rows of A) by BK k
// rows, element (kk, n) stored at T::b_off (B_OP) or T::ag_off, 4-byte cp.async with zero-fill: thread (kk_off,
// n_off) loads k row kk_off of each stage at columns n_off + j*STEP, STEP = NT/BK threads per k
// row. KK_FAST (backward-weight): kk_off = tid % BK, so consecutive threads read consecutive q;
// else n_off = tid % STEP. Each column is decoded once (gather_col); per k step the tap iterator
// advances and gather_step forms the part shared by the thread's columns (one base pointer), so a
// column costs its two bounds compares (a TF32 tile's forward / backward-data B, GatherMasked: one
// AND-NOT of its bounds bitmask), an address and the cp.async.
template <class T, int EXTENT, bool B_OP, bool KK_FAST, class Geo>
struct GatherTile {
    static constexpr bool ROUNDED = false;  // gathered straight from the tensor: rounded in MmaStep
    static constexpr bool KMAJOR = false;   // as a TF32 operand: k-quad rows (MmaTile::b_off, aq_off)
    static constexpr int STEP = T::NT / T::BK, L = EXTENT / STEP;
    __host__ __device__ static constexpr int off(int kk, int n) { return B_OP ? T::b_off(kk, n) : T::ag_off(kk, n); }
    // column j's shared offset past column 0's: the offsets are linear in n over disjoint bits
    // (mma_slot permutes the low 4), and n_off < STEP, a power of two
    __host__ __device__ static constexpr int coff(int j) { return off(0, j * STEP) - off(0, 0); }
    static_assert((STEP & (STEP - 1)) == 0, "gather loader: NT/BK a power of two");
    static_assert(T::NT % T::BK == 0 && EXTENT % STEP == 0, "gather loader: NT/BK threads per k row must tile it");
    const float* src;
    Geo g;
    int kleft, dst;  // k rows of the reduction left from the thread's row; its shared offset in a stage
    TapIter it;
    typename Geo::Col col[L];
    __device__ __forceinline__ static int kk_off() { return KK_FAST ? threadIdx.x % T::BK : threadIdx.x / STEP; }
    __device__ __forceinline__ static int n_off() { return KK_FAST ? threadIdx.x / T::BK : threadIdx.x % STEP; }
    __device__ __forceinline__ GatherTile(const float* src_, const Geo& g_, int n0, int ncols, int kbeg, int kend,
                                          int ni, int nj) {
        src = src_; g = g_;
        kleft = kend - kbeg - kk_off();
        dst = off(kk_off(), n_off());
        it.init(kbeg + kk_off(), T::BK, ni, nj);
#pragma unroll
        for (int j = 0; j < L; ++j) col[j] = gather_col(g, n0 + n_off() + j * STEP, ncols);
    }
    __device__ __forceinline__ void issue(float* S) const {
        const auto s = gather_step(g, it, kleft > 0);
#pragma unroll
        for (int j = 0; j < L; ++j)
            cp_async_ca4(S + dst + coff(j), src + (s.off + col_off(col[j])), gather_ok(g, col[j], s) ? 4 : 0);
    }
    __device__ __forceinline__ void next() {
        it.next();
        kleft -= T::BK;
    }
};
template <class T>
using GatherB = GatherTile<T, T::BN, true, false, typename T::GatherGeo>;  // forward, backward-data B
template <class T>
using WgradA = GatherTile<T, T::BM, false, true, WgradRows>;    // backward-weight A (dy)
template <class T>
using WgradB = GatherTile<T, T::BN, true, true, WgradGeom>;    // backward-weight B (x)

// Backward-weight B of the TF32 vec kernels: x from its channels-last copy (WgradNhwc: columns (r, s, c),
// channel fastest; rounded to tf32 by nchw_to_nhwc_v1), 16 bytes = 4 columns per cp.async, so the
// stage tile is k-major, Bs[kk][BS] (TileGeom's layout, not MmaTile's k-quad rows), and MmaStep reads
// its fragments with 32-bit shared loads (KMAJOR). Thread map row_quad_cell: V cells per thread, on KI
// distinct k rows (one iterator each, advanced BK per stage); cell v lies coff(v) floats past cell 0.
template <class T>
struct GatherRowQuad {
    static constexpr bool ROUNDED = true, KMAJOR = true;
    static constexpr int V = T::BK * T::BN / (4 * T::NT), KI = 8 * T::BK > T::NT ? 8 * T::BK / T::NT : 1;
    static_assert(T::TF32 && V >= 1 && V % KI == 0 && (T::NT & (T::NT - 1)) == 0 && (T::BK & (T::BK - 1)) == 0,
                  "16-byte x loader: whole cells per thread, powers of two");
    __host__ __device__ static constexpr int coff(int v) { return row_quad_off(v, T::NT, T::BK, T::BS); }
    const float* src;
    WgradNhwc g;
    int kleft[KI], dst;
    TapIter it[KI];
    GatherCol col[V];
    __device__ __forceinline__ GatherRowQuad(const float* src_, const WgradNhwc& g_, int n0, int ncols, int kbeg,
                                             int kend, int ni, int nj) {
        src = src_; g = g_;
        int kk, nq;
#pragma unroll
        for (int v = 0; v < V; ++v) {
            row_quad_cell(threadIdx.x, v, T::NT, T::BK, kk, nq);
            if (v == 0) dst = kk * T::BS + 4 * nq;
            if (v < KI) {
                kleft[v] = kend - kbeg - kk;
                it[v].init(kbeg + kk, T::BK, ni, nj);
            }
            col[v] = gather_col(g, n0 + 4 * nq, ncols);
        }
    }
    __device__ __forceinline__ void issue(float* S) const {
#pragma unroll
        for (int q = 0; q < KI; ++q) {
            const GatherStep s = gather_step(g, it[q], kleft[q] > 0);
#pragma unroll
            for (int v = q; v < V; v += KI)  // taps re-read a pixel's channels: keep them in L1
                cp_async_ca16(S + dst + coff(v), src + (s.off + col[v].off), gather_ok(g, col[v], s) ? 16 : 0);
        }
    }
    __device__ __forceinline__ void next() {
#pragma unroll
        for (int q = 0; q < KI; ++q) {
            it[q].next();
            kleft[q] -= T::BK;
        }
    }
};

// Pick<C, A, B>::type is A when C, else B: backward-weight's geometry and x loader by its VEC flag
// (conv_v3.cuh; naming a loader here does not instantiate it, so a fp32 tile never meets the TF32-only one).
template <bool C, class A, class B>
struct Pick {
    typedef A type;
};
template <class A, class B>
struct Pick<false, A, B> {
    typedef B type;
};
