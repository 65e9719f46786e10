// binary_kernels.cu -- the run-time kernels of BinaryNet (Hubara et al., NIPS 2016), after the
// original Run-time/binary_kernels.cu (SOURCES.md §3.1), with its correctness limits fixed
// (SOURCES.md §3.2, issues #16, #35) and our optimised XNOR GEMM added (issue #24).
// In the benchmark's names (gpu_xnor/cuda.py): gemm is `baseline`, concatenate_* + xnor_gemm is
// `xnor_paper`, concatenate_* + xnor_gemm_opt is `xnor` (ours).
//
// Layouts (all row-major, as the original):
//   gemm:      C(m,k) = A(m,n) . B(n,k), float.
//   packing:   32-bit words, bit t of a word = (x >= 0) for element t of its group of 32,
//              element 0 in the least significant bit; x >= 0 means +1, so 0.0 packs as +1.
//   xnor_gemm: A packed by rows, Ac(m, words); B packed by columns, Bc(words, ldb), bit t of
//              word (w, j) is B[32w + t][j]. C = n_bits - 2 * popcount(Ac ^ Bc) = the exact
//              +-1 dot product, as a float.
//
// Compiled by PyCUDA with no_extern_c=True, hence the explicit extern "C": PyCUDA looks the
// kernels up by their unmangled names. The same text is compiled by g++ under
// cuda_emulation.h in the tests, so it uses nothing beyond what that header provides.

#define BLOCK_SIZE 16

extern "C" {

// Baseline float GEMM: the shared-memory tiled product of the CUDA programming guide, one
// 16x16 tile of C per 16x16 block, one output per thread (original l.8-63).
// Launch: block (16, 16), grid (ceil(k/16), ceil(m/16)).
__global__ void gemm(const float* A, const float* B, float* C, int m, int n, int k)
{
    const int blockRow = blockIdx.y;
    const int blockCol = blockIdx.x;
    const int row = threadIdx.y;
    const int col = threadIdx.x;
    const int aRow = BLOCK_SIZE * blockRow + row;
    const int bCol = BLOCK_SIZE * blockCol + col;

    __shared__ float As[BLOCK_SIZE][BLOCK_SIZE];
    __shared__ float Bs[BLOCK_SIZE][BLOCK_SIZE];

    float Cvalue = 0.0f;
    // Fix: ceil(n/16) tiles, not n/16: the original dropped the inner tail when n % 16 != 0.
    for (int i = 0; i < (n + BLOCK_SIZE - 1) / BLOCK_SIZE; ++i) {
        const int aCol = BLOCK_SIZE * i + col;
        const int bRow = BLOCK_SIZE * i + row;
        // Fix: guarded loads. The original loaded unconditionally and so read up to 16 rows
        // past the end of A and past the row ends of B (its grid always had one extra block
        // row and column). Zero padding adds nothing to the sum.
        As[row][col] = (aRow < m && aCol < n) ? A[aRow * n + aCol] : 0.0f;
        Bs[row][col] = (bRow < n && bCol < k) ? B[bRow * k + bCol] : 0.0f;
        __syncthreads();
        for (int j = 0; j < BLOCK_SIZE; ++j)
            Cvalue += As[row][j] * Bs[j][col];
        __syncthreads();
    }
    if (aRow < m && bCol < k)
        C[aRow * k + bCol] = Cvalue;
}

// Packs 32 floats into one word: bit t = (a[t] >= 0), LSB first (original l.66-78). `count`
// (<= 32) is how many floats exist: the missing tail bits are 0. Fix: the original always read
// 32 floats, past the end of a row whose length was not a multiple of 32.
__device__ unsigned int concatenate(const float* array, int count)
{
    unsigned int rvalue = 0;
    for (int t = 0; t < count; ++t)
        rvalue |= (unsigned int)(array[t] >= 0.0f) << t;
    return rvalue;
}

// Packs the rows of a(m, n) into b(m, words): word (i, w) holds a[i][32w .. 32w+31].
// One thread per output word, launch block (64), grid ceil(m*words/64).
// Fix: the original took one flat `size` and packed 32 contiguous floats per thread, correct
// only when n % 32 == 0; here every row starts a new word, the tail word's unused bits are 0,
// and words >= ceil(n/32) may add whole zero words (the optimised kernel wants a multiple of 8).
__global__ void concatenate_rows_kernel(const float* a, unsigned int* b, int m, int n, int words)
{
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)m * words)
        return;
    const int i = (int)(idx / words);
    const int w = (int)(idx % words);
    const int start = 32 * w;
    const int count = start >= n ? 0 : (n - start < 32 ? n - start : 32);
    b[idx] = concatenate(a + (long long)i * n + start, count);
}

// Packs the columns of a(m, n) (m is the inner dimension) into b(words, ldb): bit t of word
// (w, j) is a[32w + t][j]. One thread per output word, launch block (64), grid
// ceil(words*ldb/64); consecutive threads take consecutive columns, so each of the 32 loads of
// a warp reads one contiguous row segment.
// Fixes: the original gathered each group of 32 into a device-heap `new float[32]` in every
// thread, which is slow and fails once the heap (8 MB by default) is exhausted by many
// concurrent columns; the bits are accumulated in a register instead. It also ran one thread
// per column, looping over all words: 8192 threads cannot fill a current GPU, so each thread
// now packs one word. Rows past m give 0 bits (the original needed m % 32 == 0), words >=
// ceil(m/32) adds zero words, and columns n <= j < ldb are zero so that a padded row stride
// holds no uninitialised memory.
__global__ void concatenate_cols_kernel(const float* a, unsigned int* b, int m, int n,
                                        int words, int ldb)
{
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)words * ldb)
        return;
    const int w = (int)(idx / ldb);
    const int j = (int)(idx % ldb);
    unsigned int rvalue = 0;
    if (j < n) {
        for (int t = 0; t < 32 && 32 * w + t < m; ++t)
            rvalue |= (unsigned int)(a[(long long)(32 * w + t) * n + j] >= 0.0f) << t;
    }
    b[idx] = rvalue;
}

// XNOR GEMM, the paper's kernel (original l.128-184): the 16x16 tiling of `gemm` over packed
// words, XOR + popcount counts the mismatches, C = n_bits - 2 * mismatches.
// A: (m, n) words, B: (n, k) words, n = words of the inner dimension, n_bits = its true length.
// The original's arguments (A, B, C, m, n, k) in its order, with n_bits added at the end.
// Launch: block (16, 16), grid (ceil(k/16), ceil(m/16)).
__global__ void xnor_gemm(const unsigned int* A, const unsigned int* B, float* C,
                          int m, int n, int k, int n_bits)
{
    const int blockRow = blockIdx.y;
    const int blockCol = blockIdx.x;
    const int row = threadIdx.y;
    const int col = threadIdx.x;
    const int aRow = BLOCK_SIZE * blockRow + row;
    const int bCol = BLOCK_SIZE * blockCol + col;

    __shared__ unsigned int As[BLOCK_SIZE][BLOCK_SIZE];
    __shared__ unsigned int Bs[BLOCK_SIZE][BLOCK_SIZE];

    unsigned int Cvalue = 0;
    // Fix: ceil(n/16) tiles. The original looped n/16 times, so the inner dimension had to be
    // a multiple of 16 words = 512 bits, and below 512 it computed nothing (C = 32n, issue #35).
    for (int i = 0; i < (n + BLOCK_SIZE - 1) / BLOCK_SIZE; ++i) {
        const int aCol = BLOCK_SIZE * i + col;
        const int bRow = BLOCK_SIZE * i + row;
        // Fix: guarded loads, as in gemm. Out-of-range words load as 0 in BOTH operands, so
        // their XOR is 0 and they never count as mismatches.
        As[row][col] = (aRow < m && aCol < n) ? A[aRow * n + aCol] : 0u;
        Bs[row][col] = (bRow < n && bCol < k) ? B[bRow * k + bCol] : 0u;
        __syncthreads();
#pragma unroll
        for (int j = 0; j < BLOCK_SIZE; ++j)
            Cvalue += __popc(As[row][j] ^ Bs[j][col]);
        __syncthreads();
    }
    // Fix: n_bits, the true inner length, instead of 32n: the packing leaves the tail word's
    // unused bits 0 in both operands, so only the n_bits real positions can mismatch.
    if (aRow < m && bCol < k)
        C[aRow * k + bCol] = (float)n_bits - 2.0f * (float)Cvalue;
}

// Ours (`xnor`), the optimised XNOR GEMM: what the original's author said his kernel lacked
// (issue #24): it is
// shared-memory bound with one output per thread. Here
//  - register tiling: a block of 16x16 threads computes a 128x128 tile of C, each thread an
//    8x8 sub-tile, so every word read from shared memory feeds 8 XOR+popcounts, not 1;
//  - wide loads: 128-bit (uint4) loads of 4 packed words from global and shared memory;
//  - no bank conflicts: a thread's 8 rows (columns) are two groups of 4 that lie 64 apart, so
//    the 8 threads of one 128-bit shared-load phase read 32 consecutive words; the A tile is
//    stored transposed with a row stride of 128 + 4 words, so the transposing 32-bit stores of
//    one warp fall in 32 different banks;
//  - the next tile is loaded into registers while the current one is consumed.
// Contract (checked by the caller, gpu_xnor/cuda.py): words % XNOR_OPT_BK == 0 and
// ldb % 4 == 0 (pad with zero words / zero columns), A and B 16-byte aligned.
// A: (m, words), B: (words, ldb) with k <= ldb columns used, C: (m, k).
// Launch: block (16, 16), grid (ceil(k/128), ceil(m/128)).
#define XNOR_OPT_TILE 128
#define XNOR_OPT_BK 8
#define XNOR_OPT_LDA (XNOR_OPT_TILE + 4)

__global__ void xnor_gemm_opt(const unsigned int* A, const unsigned int* B, float* C,
                              int m, int words, int k, int ldb, int n_bits)
{
    __shared__ __align__(16) unsigned int As[XNOR_OPT_BK][XNOR_OPT_LDA];
    __shared__ __align__(16) unsigned int Bs[XNOR_OPT_BK][XNOR_OPT_TILE];

    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int tid = ty * 16 + tx;
    const int row0 = blockIdx.y * XNOR_OPT_TILE;
    const int col0 = blockIdx.x * XNOR_OPT_TILE;

    // Global -> shared assignment, one uint4 of A and one of B per thread and tile:
    // A: tile row tid/2, words 4*(tid%2) .. +3 (two threads cover a row's 8 words, 32 bytes);
    // B: tile word-row tid/32, columns 4*(tid%32) .. +3 (a warp reads 512 contiguous bytes).
    const int aLoadRow = tid >> 1;
    const int aLoadWord = (tid & 1) * 4;
    const int bLoadRow = tid >> 5;
    const int bLoadCol = (tid & 31) * 4;
    const bool aValid = row0 + aLoadRow < m;
    const bool bValid = col0 + bLoadCol < ldb;  // ldb % 4 == 0: the uint4 is wholly in or out
    const uint4 zero4 = make_uint4(0u, 0u, 0u, 0u);

    unsigned int acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j)
            acc[i][j] = 0u;

    uint4 aNext = aValid
        ? *reinterpret_cast<const uint4*>(A + (long long)(row0 + aLoadRow) * words + aLoadWord)
        : zero4;
    uint4 bNext = bValid
        ? *reinterpret_cast<const uint4*>(B + (long long)bLoadRow * ldb + col0 + bLoadCol)
        : zero4;

    for (int kw = 0; kw < words; kw += XNOR_OPT_BK) {
        As[aLoadWord + 0][aLoadRow] = aNext.x;
        As[aLoadWord + 1][aLoadRow] = aNext.y;
        As[aLoadWord + 2][aLoadRow] = aNext.z;
        As[aLoadWord + 3][aLoadRow] = aNext.w;
        *reinterpret_cast<uint4*>(&Bs[bLoadRow][bLoadCol]) = bNext;
        __syncthreads();

        // Prefetch the next tile while this one is consumed.
        const int next = kw + XNOR_OPT_BK;
        if (next < words) {
            aNext = aValid
                ? *reinterpret_cast<const uint4*>(A + (long long)(row0 + aLoadRow) * words
                                                  + next + aLoadWord)
                : zero4;
            bNext = bValid
                ? *reinterpret_cast<const uint4*>(B + (long long)(next + bLoadRow) * ldb
                                                  + col0 + bLoadCol)
                : zero4;
        }

#pragma unroll
        for (int w = 0; w < XNOR_OPT_BK; ++w) {
            const uint4 a0 = *reinterpret_cast<const uint4*>(&As[w][ty * 4]);
            const uint4 a1 = *reinterpret_cast<const uint4*>(&As[w][64 + ty * 4]);
            const uint4 b0 = *reinterpret_cast<const uint4*>(&Bs[w][tx * 4]);
            const uint4 b1 = *reinterpret_cast<const uint4*>(&Bs[w][64 + tx * 4]);
            const unsigned int a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            const unsigned int b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j)
                    acc[i][j] += __popc(a[i] ^ b[j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int r = row0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
        if (r >= m)
            continue;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int c = col0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
            if (c < k)
                C[(long long)r * k + c] = (float)n_bits - 2.0f * (float)acc[i][j];
        }
    }
}

// Batch norm + sign of the run-time MLP (SOURCES.md §3.4) in threshold form:
// y = (d[j] * x >= t[j]) ? +1 : -1 with d = +-1. The host (gpu_xnor/mlp.py, fold_sign) derives
// (t, d) from the float32 batch-norm formula so that this equals sign(((x + b) - mean) * scale +
// beta) for every float32 x; the product by +-1 and the comparison are exact, so the result is
// the same bits as on the CPU for the same x (no fused multiply-add can change it).
// x and y are (m, k), y may be x; one thread per element, launch block (256),
// grid ceil(m*k/256).
__global__ void threshold_sign_kernel(const float* x, float* y, const float* t, const float* d,
                                      int m, int k)
{
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)m * k)
        return;
    const int j = (int)(idx % k);
    y[idx] = d[j] * x[idx] >= t[j] ? 1.0f : -1.0f;
}

}  // extern "C"
