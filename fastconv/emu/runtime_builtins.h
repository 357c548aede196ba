// runtime_builtins.h - CUDA device functions on the CPU: math and bit intrinsics, block and warp
// synchronisation, warp shuffles/votes, atomics, and the warp-collective helpers behind the
// inline-PTX wrappers of kernels/common.cuh (cp.async, ldmatrix, mma.sync). Included by runtime.h.
#pragma once

// ---- math and bit intrinsics ---------------------------------------------------------------

inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; std::memcpy(&v, &f, 4); return v; }
inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned v; std::memcpy(&v, &f, 4); return v; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double d) { long long v; std::memcpy(&v, &d, 8); return v; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : (x != x ? 0.f : x)); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
inline int __mul24(int a, int b) { return a * b; }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }

// CUDA's device min/max are overloaded for the integer and floating types (no std:: needed).
template <class A, class B>
inline auto min(A a, B b) -> std::common_type_t<A, B> { return b < a ? b : a; }
template <class A, class B>
inline auto max(A a, B b) -> std::common_type_t<A, B> { return a < b ? b : a; }

template <class P>
inline auto __ldg(const P& p) -> std::remove_cv_t<typename fc::strip<std::remove_pointer_t<P>>::type> { return *p; }
template <class P>
inline auto __ldcg(const P& p) -> std::remove_cv_t<typename fc::strip<std::remove_pointer_t<P>>::type> { return *p; }

inline void __threadfence() {}
inline void __threadfence_block() {}

// ---- block barrier ---------------------------------------------------------------------------

inline void __syncthreads() {
    fc::Block* b = fc::tb;
    b->cur->bar_seq++;
    b->cur->state = fc::BLOCK_WAIT;
    fc::yield_to_scheduler();
}

namespace fc {
// __syncthreads_count/and/or: every thread deposits its predicate, one barrier, then all read
// the same buffer (double-buffered by barrier parity, so the next call cannot overwrite it).
inline int bar_reduce(int pred, int op) {
    Block* b = tb;
    const int buf = (int)(b->cur->bar_seq & 1);
    b->bar_vals[buf][b->cur->tid] = pred != 0;
    __syncthreads();
    int n = 0;
    for (int i = 0; i < b->nthreads; ++i) n += b->bar_vals[buf][i];
    return op == 0 ? n : (op == 1 ? n == b->nthreads : n > 0);
}
}  // namespace fc
inline int __syncthreads_count(int p) { return fc::bar_reduce(p, 0); }
inline int __syncthreads_and(int p) { return fc::bar_reduce(p, 1); }
inline int __syncthreads_or(int p) { return fc::bar_reduce(p, 2); }

// ---- warp collectives ------------------------------------------------------------------------

namespace fc {

// Waits until every lane of `mask` reaches its own matching collective; returns the buffer
// (0/1) of this collective's exchange slots.
inline int warp_rendezvous(unsigned mask, const char* what) {
    Block* b = tb;
    Thread* t = b->cur;
    if (!(mask >> t->lane & 1u))
        fail("%s with mask 0x%08x called by lane %d, which is not in the mask", what, mask, t->lane);
    const int buf = (int)(t->warp_seq & 1);
    t->wait_mask = mask;
    t->state = WARP_WAIT;
    yield_to_scheduler();
    t->warp_seq++;
    return buf;
}

template <class T>
inline T shfl(unsigned mask, T v, int b_operand, int c_operand, int mode, const char* what) {
    static_assert(sizeof(T) <= 16, "warp shuffle of a type wider than 16 bytes");
    Block* bl = tb;
    Thread* t = bl->cur;
    Warp& w = bl->warps[t->warp];
    const int buf = (int)(t->warp_seq & 1);
    std::memcpy(w.slot[buf][t->lane], &v, sizeof(T));
    warp_rendezvous(mask, what);
    // PTX ISA shfl.sync: c packs the segment mask (bits 12:8) and the clamp value (bits 4:0).
    const int lane = t->lane, bval = b_operand & 31, cval = c_operand & 31, segmask = (c_operand >> 8) & 31;
    const int max_lane = (lane & segmask) | (cval & ~segmask), min_lane = lane & segmask;
    int j;
    bool ok;
    switch (mode) {
        case 0: j = lane - bval; ok = j >= max_lane; break;                     // up
        case 1: j = lane + bval; ok = j <= max_lane; break;                     // down
        case 2: j = lane ^ bval; ok = j <= max_lane; break;                     // bfly
        default: j = min_lane | (bval & ~segmask); ok = j <= max_lane; break;  // idx
    }
    if (!ok) j = lane;
    if (!(mask >> j & 1u)) fail("%s reads lane %d, which is not in the mask 0x%08x", what, j, mask);
    T r;
    std::memcpy(&r, w.slot[buf][j], sizeof(T));
    return r;
}

inline int shfl_c(int width, bool up) {
    if (width < 1 || width > 32 || (width & (width - 1)))
        fail("warp shuffle width %d is not a power of two <= 32", width);
    return ((32 - width) << 8) | (up ? 0 : 0x1f);
}

}  // namespace fc

template <class T> T __shfl_sync(unsigned m, T v, int src, int width = 32) {
    return fc::shfl(m, v, src, fc::shfl_c(width, false), 3, "__shfl_sync");
}
template <class T> T __shfl_up_sync(unsigned m, T v, unsigned d, int width = 32) {
    return fc::shfl(m, v, (int)d, fc::shfl_c(width, true), 0, "__shfl_up_sync");
}
template <class T> T __shfl_down_sync(unsigned m, T v, unsigned d, int width = 32) {
    return fc::shfl(m, v, (int)d, fc::shfl_c(width, false), 1, "__shfl_down_sync");
}
template <class T> T __shfl_xor_sync(unsigned m, T v, int lm, int width = 32) {
    return fc::shfl(m, v, lm, fc::shfl_c(width, false), 2, "__shfl_xor_sync");
}

inline unsigned __ballot_sync(unsigned mask, int pred) {
    fc::Block* b = fc::tb;
    fc::Thread* t = b->cur;
    fc::Warp& w = b->warps[t->warp];
    const int buf = (int)(t->warp_seq & 1);
    w.slot[buf][t->lane][0] = pred != 0;
    fc::warp_rendezvous(mask, "__ballot_sync");
    unsigned r = 0;
    for (int l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && w.slot[buf][l][0]) r |= 1u << l;
    return r;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }
inline void __syncwarp(unsigned mask = 0xffffffffu) { fc::warp_rendezvous(mask, "__syncwarp"); }
// The lanes of the warp that have not exited; a rendezvous of those lanes, so that in converged
// code (the only place the fastconv kernels may use it) every live lane is counted.
inline unsigned __activemask() {
    fc::Block* b = fc::tb;
    unsigned m = 0;
    for (int l = 0; l < 32; ++l) {
        const int id = b->cur->warp * 32 + l;
        if (id < b->nthreads && b->threads[id].state != fc::DONE) m |= 1u << l;
    }
    fc::warp_rendezvous(m, "__activemask");
    return m;
}

// ---- atomics (blocks and threads run one at a time: a plain read-modify-write is atomic) -----

#define FC_ATOMIC(NAME, EXPR)                                              \
    template <class P, class V>                                           \
    inline auto NAME(P p, V v) {                                          \
        auto& r = *p;                                                     \
        using T = std::remove_reference_t<decltype(r)>;                   \
        const T old = r;                                                  \
        const T val = (T)v;                                               \
        r = (EXPR);                                                       \
        return old;                                                       \
    }
FC_ATOMIC(atomicAdd, old + val)
FC_ATOMIC(atomicSub, old - val)
FC_ATOMIC(atomicExch, val)
FC_ATOMIC(atomicMin, val < old ? val : old)
FC_ATOMIC(atomicMax, old < val ? val : old)
FC_ATOMIC(atomicAnd, old & val)
FC_ATOMIC(atomicOr, old | val)
FC_ATOMIC(atomicXor, old ^ val)
FC_ATOMIC(atomicInc, old >= val ? 0 : old + 1)
FC_ATOMIC(atomicDec, (old == 0 || old > val) ? val : old - 1)
#undef FC_ATOMIC
template <class P, class V>
inline auto atomicCAS(P p, V compare, V val) {
    auto& r = *p;
    const auto old = r;
    if (old == compare) r = val;
    return old;
}

// ---- helpers behind the inline-PTX wrappers of kernels/common.cuh ---------------------------

namespace fc {

inline void complete(const Copy& c) {
    std::memcpy(c.dst, c.src, (size_t)c.src_bytes);
    std::memset(static_cast<char*>(c.dst) + c.src_bytes, 0, (size_t)(c.bytes - c.src_bytes));
}

// Completes the thread's committed cp.async groups except the `keep` most recent ones; at the
// thread's end (keep < 0) every copy, committed or not.
inline void finish_copies(Thread* t, int keep) {
    if (t->copies.empty()) return;
    std::vector<Copy> rest;
    for (const Copy& c : t->copies) {
        if (keep < 0 || (c.group >= 0 && c.group < t->groups_committed - keep)) complete(c);
        else rest.push_back(c);
    }
    t->copies.swap(rest);
}

// cp.async{.ca,.cg}.shared.global [dst], [src], bytes, src_bytes: queued, done at wait_group; with
// early copies (fastconv.emu.early_copies) done at once, the other end of the window in which a GPU
// lands it: a stage refilled while another thread may still read it then changes the result.
template <class D, class S>
inline void cp_async(D dst, S src, int bytes, int src_bytes) {
    if (src_bytes < 0 || src_bytes > bytes) fail("cp.async: src-size %d outside [0, %d]", src_bytes, bytes);
    void* d = raw(ptr_cast<char>(dst), (size_t)bytes);
    if (reinterpret_cast<uintptr_t>(d) % bytes) fail("cp.async: shared address not aligned to %d bytes", bytes);
    const void* s = src_bytes ? (const void*)raw(ptr_cast<const char>(src), (size_t)src_bytes) : nullptr;
    if (s && reinterpret_cast<uintptr_t>(s) % bytes) fail("cp.async: global address not aligned to %d bytes", bytes);
    if (tb->early_copies) return complete(Copy{d, s, bytes, src_bytes, -1});
    tb->cur->copies.push_back(Copy{d, s, bytes, src_bytes, -1});
}
inline void cp_async_commit() {
    Thread* t = tb->cur;
    for (Copy& c : t->copies)
        if (c.group < 0) c.group = t->groups_committed;
    t->groups_committed++;
}
inline void cp_async_wait(int keep) { finish_copies(tb->cur, keep); }

// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16: lane 8*j + r gives the address of row r
// of matrix j; lane l receives, for each matrix j, register j = the 16-bit elements (l/4, 2*(l%4))
// and (l/4, 2*(l%4)+1) (low half first), or with .trans the elements (2*(l%4), l/4) and
// (2*(l%4)+1, l/4).
template <class P>
inline void ldmatrix(unsigned* regs, int count, bool trans, P row) {
    Block* b = tb;
    Thread* t = b->cur;
    Warp& w = b->warps[t->warp];
    const int buf = (int)(t->warp_seq & 1);
    w.addr[buf][t->lane] = t->lane < 8 * count ? (const void*)raw(ptr_cast<const char>(row), 16) : nullptr;
    if (t->lane < 8 * count && reinterpret_cast<uintptr_t>(w.addr[buf][t->lane]) % 16)
        fail("ldmatrix: row address of lane %d is not 16-byte aligned", t->lane);
    warp_rendezvous(0xffffffffu, "ldmatrix");
    const int l = t->lane;
    for (int j = 0; j < count; ++j) {
        unsigned short h[2];
        for (int e = 0; e < 2; ++e) {
            const int r = trans ? 2 * (l % 4) + e : l / 4, c = trans ? l / 4 : 2 * (l % 4) + e;
            std::memcpy(&h[e], static_cast<const char*>(w.addr[buf][8 * j + r]) + 2 * c, 2);
        }
        regs[j] = (unsigned)h[0] | ((unsigned)h[1] << 16);
    }
}

// Every lane of the full warp posts its 16 bytes `mine`; after the rendezvous all[l] holds lane l's.
inline void warp_gather16(const void* mine, const char* what, unsigned (*all)[4]) {
    Block* bl = tb;
    Thread* t = bl->cur;
    Warp& w = bl->warps[t->warp];
    const int buf = (int)(t->warp_seq & 1);
    std::memcpy(w.slot[buf][t->lane], mine, 16);
    warp_rendezvous(0xffffffffu, what);
    for (int l = 0; l < 32; ++l) std::memcpy(all[l], w.slot[buf][l], 16);
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 d, a, b, c: the fragment layouts of the PTX
// ISA (groupID g = lane >> 2, t = lane % 4): A a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4);
// B b0 (k=t, n=g), b1 (k=t+4, n=g); C/D c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1).
// The tf32 operands keep their upper 19 bits; products are summed in double, rounded once.
inline void mma_tf32_m16n8k8(float* d, const unsigned* a, const unsigned* bfrag, const float* c) {
    Thread* t = tb->cur;
    const auto tf32 = [](unsigned v) { return __uint_as_float(v & 0xffffe000u); };
    unsigned va[32][4], vb[32][4];
    warp_gather16(a, "mma.sync (A)", va);
    const unsigned bv[4] = {bfrag[0], bfrag[1], 0, 0};
    warp_gather16(bv, "mma.sync (B)", vb);
    float A[16][8], B[8][8];
    for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, q = l % 4;
        A[g][q] = tf32(va[l][0]);
        A[g + 8][q] = tf32(va[l][1]);
        A[g][q + 4] = tf32(va[l][2]);
        A[g + 8][q + 4] = tf32(va[l][3]);
        B[q][g] = tf32(vb[l][0]);
        B[q + 4][g] = tf32(vb[l][1]);
    }
    const int g = t->lane >> 2, q = t->lane % 4;
    for (int i = 0; i < 4; ++i) {
        const int row = g + (i >= 2 ? 8 : 0), col = 2 * q + (i & 1);
        double s = c[i];
        for (int k = 0; k < 8; ++k) s += (double)A[row][k] * (double)B[k][col];
        d[i] = (float)s;
    }
}

// cvt.rna.tf32.f32: round to the nearest tf32 (10 mantissa bits), ties away from zero.
inline unsigned cvt_rna_tf32(float x) {
    const unsigned u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return u;  // inf / NaN pass through
    return (u + 0x1000u) & 0xffffe000u;
}

}  // namespace fc
