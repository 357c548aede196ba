// runtime_launch.h - shared-memory arena, the fiber scheduler of a block, kernel argument
// decoding and the launch entry that build.py's generated fc_entry_<kernel> functions call.
// Included by runtime.h (see there for the execution model).
#pragma once

namespace fc {

// ---- shared memory ---------------------------------------------------------------------------

inline void* shared_alloc(const void* key, size_t size, size_t align, const char* name) {
    Block* b = tb;
    for (const SharedVar& v : b->shared)
        if (v.key == key) return b->smem + v.off;
    size_t off = (b->smem_static + align - 1) / align * align;
    if (off + size + kRedzone > kStaticSmem)
        fail("static shared memory: %s needs %zu bytes more than the %zu bytes a block may declare", name,
             off + size - kStaticSmem, kStaticSmem);
    if (off + size + b->smem_dynamic > kSmem)
        fail("shared memory: %zu static bytes (up to %s) and %zu dynamic bytes pass the %zu bytes a block may use",
             off + size, name, b->smem_dynamic, kSmem);
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
    switch_context(b->cur->ctx, b->sched);
}

void finish_copies(Thread* t, int keep);

inline void fiber_main() {
    Block* b = tb;
    b->body(b->body_arg);
    finish_copies(b->cur, -1);
    b->cur->state = DONE;
    b->in_fiber = false;
    switch_context(b->cur->ctx, b->sched);
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

// One turn of thread t: runs it until it blocks or ends, then releases its warp collective when t is
// the last lane to reach it; false when the launch failed.
inline bool turn(Thread* t) {
    Block* b = tb;
    b->cur = t;
    b->in_fiber = true;
    switch_context(b->sched, t->ctx);
    b->in_fiber = false;
    if (b->failed) return false;
    if (t->state == WARP_WAIT) try_release_warp(t);
    return true;
}

// Runs thread t until it blocks or ends; false when the launch failed. When that released t's warp
// collective (t is ready again), the warp's lanes run on (in lane order) until none is ready: a warp
// goes on to the block's next barrier before the other warps leave their current collective, a
// schedule a GPU may pick, and the one under which a warp that refills a buffer too early (see
// early_copies) overwrites what the other warps have yet to read.
inline bool run_thread(Thread* t) {
    Block* b = tb;
    if (!turn(t)) return false;
    if (t->state != READY) return true;
    const int base = t->warp * 32, end = base + 32 < b->nthreads ? base + 32 : b->nthreads;
    for (bool ran = true; ran;) {
        ran = false;
        for (int id = base; id < end; ++id) {
            Thread* o = &b->threads[id];
            if (o->state != READY) continue;
            ran = true;
            if (!turn(o)) return false;
        }
    }
    return true;
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
            if (!run_thread(t)) return false;
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
    delete[] b->warps;
    b->warps = new Warp[(n + 31) / 32];
    b->stack_slots = n;
    if (!b->smem) b->smem = static_cast<char*>(std::malloc(kArena));
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
    b->early_copies = L->early_copies != 0;
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
                    t->stack_lo = b->stacks + (size_t)i * (kStack + 4096) + 4096;
                    t->ctx.init(t->stack_lo, kStack, fiber_main);
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

// A fault in kernel code (a wild pointer the checks could not see, a stack overflow into a guard
// page, an integer division by zero) ends the launch with the signal and the faulting thread
// instead of killing the process; the previous handlers come back after the launch.
inline void on_fault(int sig, siginfo_t* info, void*) {
    Block* b = tb;
    const char* what = sig == SIGSEGV ? "SIGSEGV (invalid memory access)" : sig == SIGBUS ? "SIGBUS (bus error)"
                     : sig == SIGFPE ? "SIGFPE (integer division by zero or overflow)"
                     : "SIGILL (an index outside a fixed-size local or __shared__ array, or an illegal instruction)";
    int n = where(b->err, b->errlen);
    if (n < b->errlen) snprintf(b->err + n, b->errlen - n, ": %s at address %p", what, info->si_addr);
    siglongjmp(b->on_signal, 1);
}

struct FaultGuard {
    static constexpr int kSignals[4] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    struct sigaction old[4];
    stack_t old_stack;
    FaultGuard() {
        static char* alt = static_cast<char*>(std::malloc(1 << 16));  // handler stack: the fault may be an overflow
        stack_t st{};
        st.ss_sp = alt;
        st.ss_size = 1 << 16;
        sigaltstack(&st, &old_stack);
        struct sigaction sa{};
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        for (int i = 0; i < 4; ++i) sigaction(kSignals[i], &sa, &old[i]);
    }
    ~FaultGuard() {
        for (int i = 0; i < 4; ++i) sigaction(kSignals[i], &old[i], nullptr);
        sigaltstack(&old_stack, nullptr);
    }
};

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
    b.in_fiber = false;
    b.args.clear();
    err[0] = 0;
    auto call = decode(fn, a, names, std::index_sequence_for<P...>{});
    int rc = 1;
    {
        FaultGuard guard;
        if (sigsetjmp(b.on_signal, 1) == 0) {
            try {
                rc = run_grid(L, &Call<P...>::run, &call);
            } catch (const Abort&) {
                rc = 1;
            }
        }
    }
    tb = nullptr;
    return rc;
}

}  // namespace fc
