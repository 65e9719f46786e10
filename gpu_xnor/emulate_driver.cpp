// emulate_driver.cpp -- runs one kernel of binary_kernels.cu under cuda_emulation.h.
//
//   emulate_driver DIR KERNEL GX GY BX BY INT...
//
// reads the kernel's inputs from raw little-endian files in DIR (float32 *.f32, uint32 *.u32,
// written by the tests with numpy), launches KERNEL on grid (GX, GY) and block (BX, BY), and
// writes its output to DIR. Every buffer is allocated with its exact size, so that
// AddressSanitizer reports any read or write past its end. The grid and block come from the
// caller (gpu_xnor/cuda.py's launch arithmetic), so that is tested too.
#include "cuda_emulation.h"
#include "binary_kernels.cu"

#include <cstdint>
#include <cstring>
#include <string>

namespace {

std::vector<void*> allocations;  // freed at exit, so LeakSanitizer stays quiet

template <typename T>
T* alloc(size_t count)
{
    void* p = nullptr;
    // 16-byte alignment as cudaMalloc's (which is 256) allows the uint4 loads; exact size.
    if (posix_memalign(&p, 16, count ? count * sizeof(T) : 1) != 0) {
        std::fprintf(stderr, "emulate_driver: out of memory\n");
        std::exit(2);
    }
    allocations.push_back(p);
    return static_cast<T*>(p);
}

template <typename T>
T* read(const std::string& dir, const char* name, size_t count)
{
    T* p = alloc<T>(count);
    const std::string path = dir + "/" + name;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f || std::fread(p, sizeof(T), count, f) != count) {
        std::fprintf(stderr, "emulate_driver: %s: cannot read %zu values\n", path.c_str(), count);
        std::exit(2);
    }
    std::fclose(f);
    return p;
}

template <typename T>
void write(const std::string& dir, const char* name, const T* p, size_t count)
{
    const std::string path = dir + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(p, sizeof(T), count, f) != count) {
        std::fprintf(stderr, "emulate_driver: %s: cannot write\n", path.c_str());
        std::exit(2);
    }
    std::fclose(f);
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc < 7) {
        std::fprintf(stderr, "usage: emulate_driver DIR KERNEL GX GY BX BY INT...\n");
        return 2;
    }
    const std::string dir = argv[1];
    const std::string kernel = argv[2];
    const dim3 grid(std::atoi(argv[3]), std::atoi(argv[4]));
    const dim3 block(std::atoi(argv[5]), std::atoi(argv[6]));
    std::vector<long> v;
    for (int i = 7; i < argc; ++i)
        v.push_back(std::atol(argv[i]));
    auto need = [&](size_t n) {
        if (v.size() != n) {
            std::fprintf(stderr, "emulate_driver: %s takes %zu integers\n", kernel.c_str(), n);
            std::exit(2);
        }
    };

    if (kernel == "gemm") {  // m n k: a.f32 (m,n), b.f32 (n,k) -> c.f32 (m,k)
        need(3);
        const long m = v[0], n = v[1], k = v[2];
        float* a = read<float>(dir, "a.f32", m * n);
        float* b = read<float>(dir, "b.f32", n * k);
        float* c = alloc<float>(m * k);
        emu::launch(grid, block, gemm, a, b, c, (int)m, (int)n, (int)k);
        write(dir, "c.f32", c, m * k);
    } else if (kernel == "concatenate_rows_kernel") {  // m n words: a.f32 -> p.u32 (m,words)
        need(3);
        const long m = v[0], n = v[1], words = v[2];
        float* a = read<float>(dir, "a.f32", m * n);
        unsigned int* p = alloc<unsigned int>(m * words);
        emu::launch(grid, block, concatenate_rows_kernel, a, p, (int)m, (int)n, (int)words);
        write(dir, "p.u32", p, m * words);
    } else if (kernel == "concatenate_cols_kernel") {  // m n words ldb: a.f32 -> p.u32 (words,ldb)
        need(4);
        const long m = v[0], n = v[1], words = v[2], ldb = v[3];
        float* a = read<float>(dir, "a.f32", m * n);
        unsigned int* p = alloc<unsigned int>(words * ldb);
        emu::launch(grid, block, concatenate_cols_kernel, a, p, (int)m, (int)n, (int)words,
                    (int)ldb);
        write(dir, "p.u32", p, words * ldb);
    } else if (kernel == "xnor_gemm") {  // m words k n_bits: pa.u32, pb.u32 (words,k) -> c.f32
        need(4);
        const long m = v[0], words = v[1], k = v[2], n_bits = v[3];
        unsigned int* pa = read<unsigned int>(dir, "pa.u32", m * words);
        unsigned int* pb = read<unsigned int>(dir, "pb.u32", words * k);
        float* c = alloc<float>(m * k);
        emu::launch(grid, block, xnor_gemm, pa, pb, c, (int)m, (int)words, (int)k, (int)n_bits);
        write(dir, "c.f32", c, m * k);
    } else if (kernel == "xnor_gemm_opt") {  // m words k ldb n_bits: pb.u32 is (words,ldb)
        need(5);
        const long m = v[0], words = v[1], k = v[2], ldb = v[3], n_bits = v[4];
        unsigned int* pa = read<unsigned int>(dir, "pa.u32", m * words);
        unsigned int* pb = read<unsigned int>(dir, "pb.u32", words * ldb);
        float* c = alloc<float>(m * k);
        emu::launch(grid, block, xnor_gemm_opt, pa, pb, c, (int)m, (int)words, (int)k, (int)ldb,
                    (int)n_bits);
        write(dir, "c.f32", c, m * k);
    } else if (kernel == "threshold_sign_kernel") {  // m k: x.f32 (m,k), td.f32 (2,k) -> y.f32
        need(2);
        const long m = v[0], k = v[1];
        float* x = read<float>(dir, "x.f32", m * k);
        float* td = read<float>(dir, "td.f32", 2 * k);
        float* y = alloc<float>(m * k);
        emu::launch(grid, block, threshold_sign_kernel, x, y, td, td + k, (int)m, (int)k);
        write(dir, "y.f32", y, m * k);
    } else {
        std::fprintf(stderr, "emulate_driver: unknown kernel %s\n", kernel.c_str());
        return 2;
    }
    for (void* p : allocations)
        std::free(p);
    return 0;
}
