// runtime.h - the CUDA built-ins with their CPU meaning, force-included (g++ -include) in front of
// a kernels/*.cu text that fastconv/emu/build.py has preprocessed and rewritten (pointer types
// to fc_ptr<T>, __shared__ declarations to per-block arena references) and followed by one
// generated `fc_entry_<kernel>` launch function per __global__ kernel.
//
// Execution model: a launch runs its blocks one after another on the calling thread. The threads
// of a block are fibers (ucontext) run cooperatively: each runs until it reaches __syncthreads,
// a warp collective or its end, then the next; a barrier releases when every live thread of the
// block (of the warp mask) waits on it, so barriers are real and a missing one shows as a wrong
// result when the threads run in shuffled order (Launch::seed != 0). Shared memory is a per-block
// arena filled with 0xFF bytes (NaN as float/double, -1 as int) when a variable is first reached.
// Every access through a kernel pointer is checked against the allocation it came from; a
// violation stops the launch with the kernel, block, thread and element index.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>
#include <ucontext.h>
#include <sys/mman.h>

#ifndef FASTCONV_EMU
#define FASTCONV_EMU 1
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
// build.py turns every __shared__ declaration it understands into an arena reference; one it
// did not understand stops the build here instead of compiling to per-thread storage.
#define __shared__ __shared__declaration_form_not_supported_by_fastconv_emu
#define warpSize 32

// ---------------------------------------------------------------------------------------------
// vector types (sizes and alignment as in CUDA's vector_types.h)

#define FC_VEC2(T, N, A) struct __attribute__((aligned(A))) N##2 { T x, y; }; \
    inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define FC_VEC3(T, N) struct N##3 { T x, y, z; }; \
    inline N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }
#define FC_VEC4(T, N, A) struct __attribute__((aligned(A))) N##4 { T x, y, z, w; }; \
    inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
FC_VEC2(float, float, 8) FC_VEC3(float, float) FC_VEC4(float, float, 16)
FC_VEC2(int, int, 8) FC_VEC3(int, int) FC_VEC4(int, int, 16)
FC_VEC2(unsigned int, uint, 8) FC_VEC3(unsigned int, uint) FC_VEC4(unsigned int, uint, 16)
FC_VEC2(double, double, 16) FC_VEC3(double, double) FC_VEC4(double, double, 16)
FC_VEC2(long long, longlong, 16) FC_VEC4(long long, longlong, 16)
FC_VEC2(unsigned char, uchar, 2) FC_VEC4(unsigned char, uchar, 4)
#undef FC_VEC2
#undef FC_VEC3
#undef FC_VEC4
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

namespace fc {

typedef long long i64;
constexpr int kMaxThreads = 1024;
constexpr size_t kStack = 256 * 1024;          // bytes of stack per thread fiber
constexpr size_t kStaticSmem = 48 * 1024;      // static __shared__ bytes a block may declare
constexpr size_t kSmem = 227 * 1024;           // static + dynamic bytes (H100 opt-in maximum)
constexpr unsigned char kCanary = 0xA5;        // bytes after each shared variable
constexpr size_t kRedzone = 16;

enum State { READY, BLOCK_WAIT, WARP_WAIT, DONE };

// One pending cp.async copy (completed by cp_async_wait_group / wait_all / thread exit).
struct Copy {
    void* dst;
    const void* src;
    int bytes, src_bytes;
    int group;  // -1 until committed
};

struct Thread {
    ucontext_t ctx;
    dim3 idx;
    int tid, lane, warp;
    State state;
    unsigned wait_mask;
    unsigned long long warp_seq, bar_seq;
    std::vector<Copy> copies;
    int groups_committed;
};

struct Warp {
    unsigned long long slot[2][32][2];  // double-buffered 16-byte exchange slot per lane
    const void* addr[2][32];             // ldmatrix row addresses
};

struct Region {
    const char* lo;
    const char* hi;
    const char* name;
};

struct SharedVar {
    const void* key;
    size_t off, size;
    const char* name;
};

struct Launch {             // filled by the Python side (fastconv/emu/build.py mirrors it)
    unsigned grid[3], block[3];
    long long smem;         // dynamic shared-memory bytes
    unsigned long long seed;  // 0: threads in order; else shuffled order between barriers
};

struct Block {
    const char* kernel = nullptr;
    dim3 grid, bdim, bidx;
    int nthreads = 0;
    Thread* threads = nullptr;
    Warp* warps = nullptr;
    char* stacks = nullptr;
    int stack_slots = 0;
    Thread* cur = nullptr;
    ucontext_t sched;
    std::vector<Region> args;
    std::vector<SharedVar> shared;
    char* smem = nullptr;
    size_t smem_static = 0, smem_dynamic = 0, smem_dyn_off = 0;
    int bar_vals[2][kMaxThreads];
    unsigned long long seed = 0, rng = 0;
    std::vector<int> order;
    bool failed = false;
    bool in_fiber = false;  // running a thread (else the scheduler)
    char* err = nullptr;
    int errlen = 0;
    void (*body)(void*) = nullptr;
    void* body_arg = nullptr;
};

inline Block* tb = nullptr;  // the block being run (one launch at a time: build.py holds the GIL)

inline Block& block_state() {
    static Block b;
    return b;
}

// ---- errors: record the message, abandon the launch ----------------------------------------

struct Abort {};  // thrown when the scheduler (not a thread) finds the error

[[noreturn]] inline void abort_launch() {
    Block* b = tb;
    b->failed = true;
    if (!b->in_fiber) throw Abort{};
    b->in_fiber = false;
    swapcontext(&b->cur->ctx, &b->sched);
    std::abort();  // an aborted fiber is never resumed
}

inline int where(char* buf, int len) {
    Block* b = tb;
    if (!b->cur)
        return snprintf(buf, len, "kernel %s, block (%u, %u, %u)", b->kernel, b->bidx.x, b->bidx.y, b->bidx.z);
    const dim3& t = b->cur->idx;
    return snprintf(buf, len, "kernel %s, block (%u, %u, %u), thread (%u, %u, %u)", b->kernel, b->bidx.x,
                    b->bidx.y, b->bidx.z, t.x, t.y, t.z);
}

template <class... A>
[[noreturn]] void fail(const char* fmt, A... a) {
    Block* b = tb;
    int n = where(b->err, b->errlen);
    if (n < b->errlen) n += snprintf(b->err + n, b->errlen - n, ": ");
    if (n < b->errlen) snprintf(b->err + n, b->errlen - n, fmt, a...);
    abort_launch();
}

// ---- checked pointers ------------------------------------------------------------------------

// The region (kernel argument or shared variable) holding address p, for pointers formed from
// raw addresses (&shared[i], &arg[i], array decay); stack addresses have none and stay unchecked.
inline void lookup(const void* p, const char*& lo, const char*& hi, const char*& name) {
    lo = hi = name = nullptr;
    Block* b = tb;
    if (!b || !p) return;
    const char* c = static_cast<const char*>(p);
    for (const Region& r : b->args)
        if (c >= r.lo && c <= r.hi) { lo = r.lo; hi = r.hi; name = r.name; return; }
    for (const SharedVar& v : b->shared) {
        const char* vlo = b->smem + v.off;
        if (c >= vlo && c <= vlo + v.size) { lo = vlo; hi = vlo + v.size; name = v.name; return; }
    }
}

template <class T>
struct fc_ptr_base {
    T* p = nullptr;
    const char* lo = nullptr;  // allocation bounds; lo == nullptr: unchecked (stack memory)
    const char* hi = nullptr;
    const char* name = nullptr;
};

}  // namespace fc

template <class T>
struct fc_ptr : fc::fc_ptr_base<T> {
    using B = fc::fc_ptr_base<T>;
    using ref = std::add_lvalue_reference_t<T>;
    fc_ptr() = default;
    fc_ptr(std::nullptr_t) {}
    fc_ptr(T* raw) { this->p = raw; fc::lookup(raw, this->lo, this->hi, this->name); }
    fc_ptr(T* raw, const char* lo, const char* hi, const char* name) { this->p = raw; this->lo = lo; this->hi = hi; this->name = name; }
    template <class U, class = std::enable_if_t<std::is_convertible<U*, T*>::value>>
    fc_ptr(const fc_ptr<U>& o) { this->p = o.p; this->lo = o.lo; this->hi = o.hi; this->name = o.name; }

    T* at(fc::i64 i, size_t bytes = sizeof(T)) const {
        T* q = this->p + i;
        if (this->lo) {
            const char* c = reinterpret_cast<const char*>(q);
            if (c < this->lo || c + bytes > this->hi || c + bytes < c) {
                const long long sz = (long long)sizeof(T);
                fc::fail("out-of-bounds access to %s: element %lld of %lld (%zu-byte elements; index %lld "
                         "from the pointer)", this->name ? this->name : "?",
                         (long long)((c - this->lo) >= 0 ? (c - this->lo) / sz : -((this->lo - c + sz - 1) / sz)),
                         (long long)((this->hi - this->lo) / sz), sizeof(T), (long long)i);
            }
            if (reinterpret_cast<uintptr_t>(c) % alignof(T))
                fc::fail("misaligned %zu-byte access to %s at byte offset %lld (needs %zu-byte alignment)",
                         sizeof(T), this->name ? this->name : "?", (long long)(c - this->lo), alignof(T));
        }
        return q;
    }
    template <class I, class = std::enable_if_t<std::is_integral<I>::value>>
    ref operator[](I i) const { return *at((fc::i64)i); }
    ref operator*() const { return *at(0); }
    T* operator->() const { return at(0); }
    template <class I, class = std::enable_if_t<std::is_integral<I>::value>>
    fc_ptr operator+(I i) const { fc_ptr r = *this; r.p = this->p + (fc::i64)i; return r; }
    template <class I, class = std::enable_if_t<std::is_integral<I>::value>>
    fc_ptr operator-(I i) const { fc_ptr r = *this; r.p = this->p - (fc::i64)i; return r; }
    template <class I, class = std::enable_if_t<std::is_integral<I>::value>>
    friend fc_ptr operator+(I i, const fc_ptr& q) { return q + i; }
    template <class U>
    std::ptrdiff_t operator-(const fc_ptr<U>& o) const { return this->p - o.p; }
    template <class I> fc_ptr& operator+=(I i) { this->p += (fc::i64)i; return *this; }
    template <class I> fc_ptr& operator-=(I i) { this->p -= (fc::i64)i; return *this; }
    fc_ptr& operator++() { ++this->p; return *this; }
    fc_ptr& operator--() { --this->p; return *this; }
    fc_ptr operator++(int) { fc_ptr r = *this; ++this->p; return r; }
    fc_ptr operator--(int) { fc_ptr r = *this; --this->p; return r; }
    explicit operator bool() const { return this->p != nullptr; }
    template <class U> bool operator==(const fc_ptr<U>& o) const { return this->p == o.p; }
    template <class U> bool operator!=(const fc_ptr<U>& o) const { return this->p != o.p; }
    template <class U> bool operator<(const fc_ptr<U>& o) const { return this->p < o.p; }
    bool operator==(std::nullptr_t) const { return this->p == nullptr; }
    bool operator!=(std::nullptr_t) const { return this->p != nullptr; }
};

namespace fc {

template <class T> struct strip { using type = T; };
template <class T> struct strip<fc_ptr<T>> { using type = T; };

// reinterpret_cast<T*>(p) / static_cast<T*>(p) after the rewrite: keeps p's allocation bounds.
template <class T, class U>
fc_ptr<T> ptr_cast(const fc_ptr<U>& q) {
    return fc_ptr<T>((T*)(q.p), q.lo, q.hi, q.name);
}
template <class T, class U>
fc_ptr<T> ptr_cast(U* q) {
    return fc_ptr<T>((T*)(q));
}

template <class T>
T* raw(const fc_ptr<T>& q, size_t bytes) { return q.at(0, bytes); }
template <class T>
T* raw(T* q, size_t) { return q; }

// ---- shared memory ---------------------------------------------------------------------------

inline void* shared_alloc(const void* key, size_t size, size_t align, const char* name) {
    Block* b = tb;
    for (const SharedVar& v : b->shared)
        if (v.key == key) return b->smem + v.off;
    size_t off = (b->smem_static + align - 1) / align * align;
    if (off + size + kRedzone > kStaticSmem)
        fail("static shared memory: %s needs %zu bytes more than the %zu bytes a block may declare", name,
             off + size - kStaticSmem, kStaticSmem);
    std::memset(b->smem + off, 0xFF, size);
    std::memset(b->smem + off + size, kCanary, kRedzone);
    b->shared.push_back(SharedVar{key, off, size, name});
    b->smem_static = off + size + kRedzone;
    return b->smem + off;
}

template <class T>
fc_ptr<T> dynamic_shared(const char* name) {
    Block* b = tb;
    char* lo = b->smem + b->smem_dyn_off;
    return fc_ptr<T>(reinterpret_cast<T*>(lo), lo, lo + b->smem_dynamic, name);
}

inline void check_canaries() {
    Block* b = tb;
    for (const SharedVar& v : b->shared) {
        const unsigned char* z = reinterpret_cast<const unsigned char*>(b->smem + v.off + v.size);
        for (size_t i = 0; i < kRedzone; ++i)
            if (z[i] != kCanary) {
                b->cur = nullptr;
                fail("shared variable %s was written past its end (byte %zu after it)", v.name, i);
            }
    }
}

// ---- scheduling ------------------------------------------------------------------------------

inline unsigned long long next_rand() {
    unsigned long long& s = tb->rng;  // splitmix64
    s += 0x9E3779B97F4A7C15ull;
    unsigned long long z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline void reorder() {
    Block* b = tb;
    if (!b->seed) return;
    for (int i = b->nthreads - 1; i > 0; --i) {
        const int j = (int)(next_rand() % (unsigned long long)(i + 1));
        std::swap(b->order[i], b->order[j]);
    }
}

inline void yield_to_scheduler() {
    Block* b = tb;
    b->in_fiber = false;
    swapcontext(&b->cur->ctx, &b->sched);
}

void finish_copies(Thread* t, int keep);

inline void fiber_main() {
    Block* b = tb;
    b->body(b->body_arg);
    finish_copies(b->cur, -1);
    b->cur->state = DONE;
    b->in_fiber = false;
    swapcontext(&b->cur->ctx, &b->sched);
}

// Releases the warp collective `t` waits on when every lane of its mask waits too.
inline void try_release_warp(Thread* t) {
    Block* b = tb;
    const int base = t->warp * 32;
    for (int l = 0; l < 32; ++l) {
        if (!(t->wait_mask >> l & 1u)) continue;
        const int id = base + l;
        if (id >= b->nthreads) {
            b->cur = t;
            fail("warp collective with mask 0x%08x names lane %d, which the block of %d threads does not have",
                 t->wait_mask, l, b->nthreads);
        }
        Thread* o = &b->threads[id];
        if (o->state == DONE) {
            b->cur = t;
            fail("warp collective with mask 0x%08x waits for lane %d, which has exited", t->wait_mask, l);
        }
        if (o->state != WARP_WAIT) return;
        if (o->warp_seq != t->warp_seq || o->wait_mask != t->wait_mask) {
            b->cur = t;
            fail("lanes %d and %d of warp %d are at different warp collectives (the %llu-th with mask 0x%08x vs "
                 "the %llu-th with mask 0x%08x): divergent __shfl/__ballot/__syncwarp/mma", t->lane, l, t->warp,
                 t->warp_seq, t->wait_mask, o->warp_seq, o->wait_mask);
        }
    }
    for (int l = 0; l < 32; ++l)
        if (t->wait_mask >> l & 1u) b->threads[base + l].state = READY;
}

[[noreturn]] inline void deadlock() {
    Block* b = tb;
    int at_bar = 0, at_warp = 0, first_warp = -1, first_bar = -1;
    for (int i = 0; i < b->nthreads; ++i) {
        if (b->threads[i].state == BLOCK_WAIT) { ++at_bar; if (first_bar < 0) first_bar = i; }
        if (b->threads[i].state == WARP_WAIT) { ++at_warp; if (first_warp < 0) first_warp = i; }
    }
    b->cur = nullptr;
    fail("deadlock: %d threads wait at __syncthreads (first: thread %d) while %d wait at a warp collective "
         "(first: thread %d) that cannot complete", at_bar, first_bar, at_warp, first_warp);
}

// Runs every thread of the current block to its end; false when the launch failed.
inline bool run_block() {
    Block* b = tb;
    reorder();
    for (;;) {
        bool ran = false, live = false;
        for (int k = 0; k < b->nthreads; ++k) {
            Thread* t = &b->threads[b->order[k]];
            if (t->state != READY) continue;
            ran = true;
            b->cur = t;
            b->in_fiber = true;
            swapcontext(&b->sched, &t->ctx);
            b->in_fiber = false;
            if (b->failed) return false;
            if (t->state == WARP_WAIT) try_release_warp(t);
        }
        b->cur = nullptr;
        int waiting = 0;
        for (int i = 0; i < b->nthreads; ++i) {
            const State s = b->threads[i].state;
            if (s != DONE) live = true;
            if (s == BLOCK_WAIT) ++waiting;
        }
        if (!live) break;
        if (ran) continue;
        int alive = 0;
        for (int i = 0; i < b->nthreads; ++i) alive += b->threads[i].state != DONE;
        if (waiting != alive) deadlock();
        if (alive != b->nthreads)  // CUDA: __syncthreads must be reached by every thread of the block
            fail("__syncthreads reached by %d threads while %d threads of the block have exited (a barrier in "
                 "code that not all threads run)", waiting, b->nthreads - alive);
        check_canaries();
        for (int i = 0; i < b->nthreads; ++i)
            if (b->threads[i].state == BLOCK_WAIT) b->threads[i].state = READY;
        reorder();
    }
    check_canaries();
    return true;
}

inline void ensure_capacity(Block* b, int n) {
    if (b->stack_slots >= n) return;
    if (b->stacks) munmap(b->stacks, (size_t)b->stack_slots * (kStack + 4096));
    const size_t len = (size_t)n * (kStack + 4096);
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) { std::perror("fastconv emu: mmap of fiber stacks"); std::abort(); }
    b->stacks = static_cast<char*>(m);
    for (int i = 0; i < n; ++i)  // a guard page below each stack turns an overflow into a fault
        mprotect(b->stacks + (size_t)i * (kStack + 4096), 4096, PROT_NONE);
    delete[] b->threads;
    b->threads = new Thread[n];
    for (int i = 0; i < n; ++i) getcontext(&b->threads[i].ctx);
    delete[] b->warps;
    b->warps = new Warp[(n + 31) / 32];
    b->stack_slots = n;
    if (!b->smem) b->smem = static_cast<char*>(std::malloc(kSmem + 64));
}

// Runs the whole grid: body(arg) is the kernel call with its decoded arguments.
inline int run_grid(const Launch* L, void (*body)(void*), void* arg) {
    Block* b = tb;
    const int n = (int)(L->block[0] * L->block[1] * L->block[2]);
    ensure_capacity(b, n);
    b->nthreads = n;
    b->body = body;
    b->body_arg = arg;
    b->grid = dim3{L->grid[0], L->grid[1], L->grid[2]};
    b->bdim = dim3{L->block[0], L->block[1], L->block[2]};
    b->seed = L->seed;
    b->rng = L->seed;
    b->smem_dynamic = (size_t)L->smem;
    b->smem_dyn_off = kStaticSmem;
    b->order.resize(n);
    for (unsigned z = 0; z < b->grid.z; ++z)
        for (unsigned y = 0; y < b->grid.y; ++y)
            for (unsigned x = 0; x < b->grid.x; ++x) {
                b->bidx = dim3{x, y, z};
                b->shared.clear();
                b->smem_static = 0;
                std::memset(b->smem + b->smem_dyn_off, 0xFF, b->smem_dynamic);
                for (int i = 0; i < n; ++i) {
                    Thread* t = &b->threads[i];
                    t->tid = i;
                    t->idx = dim3{i % b->bdim.x, (i / b->bdim.x) % b->bdim.y, i / (b->bdim.x * b->bdim.y)};
                    t->lane = i & 31;
                    t->warp = i >> 5;
                    t->state = READY;
                    t->warp_seq = t->bar_seq = 0;
                    t->copies.clear();
                    t->groups_committed = 0;
                    t->ctx.uc_stack.ss_sp = b->stacks + (size_t)i * (kStack + 4096) + 4096;
                    t->ctx.uc_stack.ss_size = kStack;
                    t->ctx.uc_link = nullptr;
                    makecontext(&t->ctx, fiber_main, 0);
                    b->order[i] = i;
                }
                b->cur = nullptr;
                if (!run_block()) return 1;
            }
    return 0;
}

// ---- kernel arguments ------------------------------------------------------------------------

struct ArgPtr {  // a device-array argument: its address and the bounds of the array
    void* ptr;
    void* lo;
    void* hi;
};

template <class P> struct arg_code;
#define FC_CODE(T, C) template <> struct arg_code<T> { static constexpr const char* value = C; };
FC_CODE(bool, "b1") FC_CODE(char, "i1") FC_CODE(signed char, "i1") FC_CODE(unsigned char, "u1")
FC_CODE(short, "i2") FC_CODE(unsigned short, "u2") FC_CODE(int, "i4") FC_CODE(unsigned int, "u4")
FC_CODE(long, "i8") FC_CODE(unsigned long, "u8") FC_CODE(long long, "i8") FC_CODE(unsigned long long, "u8")
FC_CODE(float, "f4") FC_CODE(double, "f8")
#undef FC_CODE
template <class P> struct is_ptr : std::false_type {};
template <class T> struct is_ptr<fc_ptr<T>> : std::true_type {};

// Type code of a parameter for the Python side: numpy's "i4", "f4", ...; "p" + the element's
// code for a pointer ("pv" for a pointer to a struct such as float4).
template <class P>
std::string code_of() {
    if constexpr (is_ptr<P>::value) {
        using E = std::remove_cv_t<typename strip<P>::type>;
        if constexpr (std::is_arithmetic<E>::value) return std::string("p") + arg_code<E>::value;
        else return "pv";
    } else {
        return arg_code<P>::value;
    }
}

template <class P>
struct arg_decode {
    static P get(void* a, const char*) {
        static_assert(std::is_arithmetic<P>::value, "fastconv emu: kernel parameters must be numbers or pointers");
        P v;
        std::memcpy(&v, a, sizeof(P));
        return v;
    }
};
template <class T>
struct arg_decode<fc_ptr<T>> {
    static fc_ptr<T> get(void* a, const char* name) {
        const ArgPtr* ap = static_cast<const ArgPtr*>(a);
        const char* lo = static_cast<const char*>(ap->lo);
        const char* hi = static_cast<const char*>(ap->hi);
        if (ap->ptr) tb->args.push_back(Region{lo, hi, name});
        return fc_ptr<T>(static_cast<T*>(ap->ptr), ap->ptr ? lo : nullptr, hi, name);
    }
};

template <class... P>
std::string signature(void (*)(P...)) {
    std::string s;
    const std::string codes[] = {code_of<std::remove_cv_t<P>>()..., ""};
    for (size_t i = 0; i < sizeof...(P); ++i) s += (i ? "," : ""), s += codes[i];
    return s;
}

template <class... P>
struct Call {
    void (*fn)(P...);
    std::tuple<P...> args;
    static void run(void* self) {
        Call* c = static_cast<Call*>(self);
        std::apply(c->fn, c->args);
    }
};

template <class... P, size_t... I>
Call<P...> decode(void (*fn)(P...), void** a, const char* const* names, std::index_sequence<I...>) {
    return Call<P...>{fn, std::tuple<P...>(arg_decode<std::remove_cv_t<P>>::get(a[I], names[I])...)};
}

template <class... P>
int launch(const Launch* L, const char* kernel, void (*fn)(P...), void** a, const char* const* names, char* err,
           int errlen) {
    Block& b = block_state();
    tb = &b;
    b.kernel = kernel;
    b.err = err;
    b.errlen = errlen;
    b.failed = false;
    b.cur = nullptr;
    b.args.clear();
    err[0] = 0;
    auto call = decode(fn, a, names, std::index_sequence_for<P...>{});
    int rc;
    try {
        rc = run_grid(L, &Call<P...>::run, &call);
    } catch (const Abort&) {
        rc = 1;
    }
    tb = nullptr;
    return rc;
}

}  // namespace fc

#define threadIdx (::fc::tb->cur->idx)
#define blockIdx (::fc::tb->bidx)
#define blockDim (::fc::tb->bdim)
#define gridDim (::fc::tb->grid)

#include "runtime_builtins.h"
