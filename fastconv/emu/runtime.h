// runtime.h - the CUDA built-ins with their CPU meaning, force-included (g++ -include) in front of
// a kernels/*.cu text that fastconv/emu/build.py has preprocessed and rewritten (pointer types
// to fc_ptr<T>, __shared__ declarations to per-block arena references) and followed by one
// generated `fc_entry_<kernel>` launch function per __global__ kernel.
//
// Execution model: a launch runs its blocks one after another on the calling thread. The threads
// of a block are fibers (a hand-written x86-64 stack switch; ucontext elsewhere) run
// cooperatively: each runs until it reaches __syncthreads, a warp collective or its end, then the
// next (a warp whose lanes all reach a collective runs on to the next barrier first); a barrier
// releases when every live thread of the block (of the warp mask) waits on it, so barriers are real
// and a missing one shows as a wrong result when the threads run in shuffled order
// (Launch::seed != 0). A cp.async lands at the wait that completes it, or when issued
// (Launch::early_copies): a refill before the readers' barrier then shows too. Shared memory is a
// per-block arena filled with 0xFF bytes (NaN as float/double, -1 as int) when a variable is first
// reached. Every access through a kernel pointer is checked against the allocation it came from;
// a violation stops the launch with the kernel, block, thread and element index.
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
#include <csetjmp>
#include <csignal>
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

// ---- fiber contexts: save the callee-saved registers and the FP control words, switch stacks.
// x86-64 gets a hand-written switch (ucontext's swapcontext makes a signal-mask system call per
// switch: measured, a quarter of a conv launch's time); other targets use ucontext.
#if defined(__x86_64__)
extern "C" void fc_ctx_switch(void** save_sp, void* to_sp) __attribute__((visibility("hidden")));
asm(R"(
    .pushsection .text
    .p2align 4
    .globl fc_ctx_switch
    .hidden fc_ctx_switch
    .type fc_ctx_switch, @function
fc_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size fc_ctx_switch, .-fc_ctx_switch
    .popsection
)");
namespace fc {
struct Context {
    void* sp = nullptr;
    // A fresh context that starts `entry` (which never returns) on the stack [stack, stack + size).
    void init(char* stack, size_t size, void (*entry)()) {
        char* s = stack + size - 72;  // the frame fc_ctx_switch pops; `ret` leaves rsp = 8 mod 16
        const uint32_t mxcsr = 0x1F80;
        const uint16_t fpucw = 0x037F;
        void* ret = reinterpret_cast<void*>(entry);
        std::memset(s, 0, 72);
        std::memcpy(s, &mxcsr, 4);
        std::memcpy(s + 4, &fpucw, 2);
        std::memcpy(s + 56, &ret, 8);
        sp = s;
    }
};
inline void switch_context(Context& from, Context& to) { fc_ctx_switch(&from.sp, to.sp); }
}  // namespace fc
#else
#include <ucontext.h>
namespace fc {
struct Context {
    ucontext_t uc;
    bool made = false;
    void init(char* stack, size_t size, void (*entry)()) {
        if (!made) getcontext(&uc);
        made = true;
        uc.uc_stack.ss_sp = stack;
        uc.uc_stack.ss_size = size;
        uc.uc_link = nullptr;
        makecontext(&uc, entry, 0);
    }
};
inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
}  // namespace fc
#endif

namespace fc {

typedef long long i64;
constexpr int kMaxThreads = 1024;
constexpr size_t kStack = 256 * 1024;          // bytes of stack per thread fiber
constexpr size_t kStaticSmem = 48 * 1024;      // static __shared__ bytes a block may declare
constexpr size_t kSmem = 227 * 1024;           // static + dynamic bytes (H100 opt-in maximum)
constexpr size_t kArena = kStaticSmem + kSmem;  // static variables, then the dynamic region
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
    Context ctx;
    dim3 idx;
    int tid, lane, warp;
    char* stack_lo;
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
    int early_copies;         // 1: a cp.async lands when issued; 0: at the wait that completes it
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
    Context sched;
    std::vector<Region> args;
    std::vector<SharedVar> shared;
    char* smem = nullptr;
    size_t smem_static = 0, smem_dynamic = 0, smem_dyn_off = 0;
    int bar_vals[2][kMaxThreads];
    unsigned long long seed = 0, rng = 0;
    bool early_copies = false;
    std::vector<int> order;
    bool failed = false;
    bool in_fiber = false;  // running a thread (else the scheduler)
    sigjmp_buf on_signal;   // where a fault in kernel code returns to (launch)
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
    switch_context(b->cur->ctx, b->sched);
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
    if (b->cur && c >= b->cur->stack_lo && c < b->cur->stack_lo + kStack) return;  // the thread's locals
    if (c >= b->smem && c <= b->smem + kArena) {
        for (const SharedVar& v : b->shared) {
            const char* vlo = b->smem + v.off;
            if (c >= vlo && c <= vlo + v.size) { lo = vlo; hi = vlo + v.size; name = v.name; return; }
        }
        return;
    }
    for (const Region& r : b->args)
        if (c >= r.lo && c <= r.hi) { lo = r.lo; hi = r.hi; name = r.name; return; }
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
    fc_ptr(T* raw, const char* lo, const char* hi, const char* name) {
        this->p = raw;
        this->lo = lo;
        this->hi = hi;
        this->name = name;
    }
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

}  // namespace fc

#include "runtime_launch.h"

#define threadIdx (::fc::tb->cur->idx)
#define blockIdx (::fc::tb->bidx)
#define blockDim (::fc::tb->bdim)
#define gridDim (::fc::tb->grid)

#include "runtime_builtins.h"
