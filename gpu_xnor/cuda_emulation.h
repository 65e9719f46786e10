// cuda_emulation.h -- just enough of CUDA for g++ to compile and run binary_kernels.cu,
// unchanged, on a CPU, so that its indexing is tested where there is no GPU, and
// AddressSanitizer catches out-of-bounds reads such as the original kernels' (SOURCES.md §3.2).
//
// Model: the blocks of a launch run one after another; inside a block every CUDA thread is a
// fiber (ucontext) with its own stack, run by a round-robin scheduler on one host thread.
// __syncthreads() switches back to the scheduler, which resumes every thread of the block up
// to its next barrier before any passes it, which is the barrier's semantics. Fibers rather
// than host threads because a barrier then costs a few context switches instead of waking
// hundreds of OS threads on a small machine. __shared__ becomes `static`: one copy that all
// threads of the running block see, left over from the previous block as on a GPU.
// threadIdx, blockIdx, blockDim and gridDim are globals the scheduler sets before it resumes
// a thread. A thread that ends while others wait at a barrier, or threads that pass different
// numbers of barriers, abort the program: that is undefined behaviour in CUDA.
#pragma once

#include <ucontext.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct __attribute__((aligned(16))) uint4 {
    unsigned int x, y, z, w;
};

inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w)
{
    uint4 v;
    v.x = x; v.y = y; v.z = z; v.w = w;
    return v;
}

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {

enum Status { RUNNING, AT_BARRIER, DONE };

struct Fiber {
    ucontext_t context;
    void* stack = nullptr;
    Status status = RUNNING;
    long barriers = 0;
    dim3 index;
};

struct Scheduler {
    ucontext_t context;
    std::vector<Fiber> fibers;
    size_t current = 0;
    std::function<void()> body;
    // Where the scheduler's own stack lies, for AddressSanitizer's fiber annotations.
    const void* stack_bottom = nullptr;
    size_t stack_size = 0;
};

// AddressSanitizer clears the shadow of the whole target stack at every swapcontext, so the
// stacks are kept small: the kernels' frames need a few kilobytes.
constexpr size_t kStackBytes = 32 * 1024;

inline Scheduler& scheduler()
{
    static Scheduler s;
    return s;
}

[[noreturn]] inline void fail(const char* what)
{
    std::fprintf(stderr, "cuda_emulation: %s (block %u,%u,%u)\n", what, blockIdx.x, blockIdx.y,
                 blockIdx.z);
    std::abort();
}

// Fiber -> scheduler. `dying` tells AddressSanitizer that this fiber's stack is left for good.
inline void switch_to_scheduler(bool dying)
{
    Scheduler& s = scheduler();
    Fiber& f = s.fibers[s.current];
#if EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(dying ? nullptr : &fake, s.stack_bottom, s.stack_size);
#endif
    if (dying)
        return;  // uc_link takes the fiber back to the scheduler when its entry returns
    swapcontext(&f.context, &s.context);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

inline void fiber_entry()
{
    Scheduler& s = scheduler();
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &s.stack_bottom, &s.stack_size);
#endif
    s.body();
    s.fibers[s.current].status = DONE;
    switch_to_scheduler(true);
}

// Scheduler -> fiber `t`, until it reaches a barrier or ends.
inline void resume(size_t t)
{
    Scheduler& s = scheduler();
    Fiber& f = s.fibers[t];
    s.current = t;
    threadIdx = f.index;
    f.status = RUNNING;
#if EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f.stack, kStackBytes);
#endif
    swapcontext(&s.context, &f.context);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, &s.stack_bottom, &s.stack_size);
#endif
}

inline void run_block(Scheduler& s)
{
    for (Fiber& f : s.fibers) {
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack;
        f.context.uc_stack.ss_size = kStackBytes;
        f.context.uc_link = &s.context;
        makecontext(&f.context, fiber_entry, 0);
        f.status = RUNNING;
        f.barriers = 0;
    }
    for (;;) {
        size_t at_barrier = 0, done = 0;
        for (size_t t = 0; t < s.fibers.size(); ++t) {
            if (s.fibers[t].status != DONE)
                resume(t);
            at_barrier += s.fibers[t].status == AT_BARRIER;
            done += s.fibers[t].status == DONE;
        }
        if (done == s.fibers.size())
            break;
        if (done != 0)
            fail("__syncthreads() not reached by every thread of the block");
        const long expected = s.fibers[0].barriers;
        for (const Fiber& f : s.fibers)
            if (f.barriers != expected)
                fail("threads of one block passed different numbers of barriers");
    }
}

// The `kernel<<<grid, block>>>(args...)` of the emulation.
template <typename Kernel, typename... Args>
void launch(dim3 grid, dim3 block, Kernel kernel, Args... args)
{
    Scheduler& s = scheduler();
    const size_t threads = (size_t)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024)
        fail("block size must be 1..1024 threads");
    s.body = [=]() { kernel(args...); };
    s.fibers.assign(threads, Fiber());
    size_t t = 0;
    for (unsigned int z = 0; z < block.z; ++z)
        for (unsigned int y = 0; y < block.y; ++y)
            for (unsigned int x = 0; x < block.x; ++x, ++t) {
                s.fibers[t].index = dim3(x, y, z);
                void* stack = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (stack == MAP_FAILED)
                    fail("cannot map a fiber stack");
                s.fibers[t].stack = stack;
            }
    gridDim = grid;
    blockDim = block;
    for (unsigned int z = 0; z < grid.z; ++z)
        for (unsigned int y = 0; y < grid.y; ++y)
            for (unsigned int x = 0; x < grid.x; ++x) {
                blockIdx = dim3(x, y, z);
                run_block(s);
            }
    for (Fiber& f : s.fibers)
        munmap(f.stack, kStackBytes);
    s.fibers.clear();
}

}  // namespace emu

inline void __syncthreads()
{
    emu::Scheduler& s = emu::scheduler();
    emu::Fiber& f = s.fibers[s.current];
    f.status = emu::AT_BARRIER;
    ++f.barriers;
    emu::switch_to_scheduler(false);
}
