/* The run-time kernels of SOURCES.md §3.1 for the CPU: the paper's baseline float GEMM and XNOR
 * GEMM, our optimised XNOR GEMM with three instruction-set paths chosen at run time, packing into
 * 64-bit words, and the threshold form of batch norm + sign.
 *
 * Conventions (all matrices row-major, C(M,N) = A(M,K) . B(K,N), K the inner dimension):
 *   - packing: bit t of word w is (x[64w + t] >= 0), element 0 in the least significant bit, the
 *     paper's order (concatenate(), binary_kernels.cu l.66-78) widened to 64-bit words; 0.0 and
 *     -0.0 pack as +1, NaN as -1. The tail bits past K are 0 in BOTH operands, so 0 ^ 0 never
 *     counts as a mismatch and any K works (the original needed K % 512 == 0, SOURCES.md §3.2).
 *   - pack_rows: A(M,K) -> Ap(M, W), W = ceil(K/64), each row packed along K.
 *   - pack_cols: B(K,N) -> Bp(W, N), each column packed along K, the layout of the original's
 *     concatenate_cols_kernel (bit t of word (w, j) is B[64w + t][j]).
 *   - xnor: C[i][j] = K - 2 * sum_w popcount(Ap[i][w] ^ Bp[w][j]), the exact +-1 dot product.
 *
 * Instruction-set paths (`isa` argument; the caller checks xnor_isa_supported first):
 *   ISA_AVX512 (2): AVX-512 F/BW/DQ/VL + VPOPCNTDQ: vpxorq + vpopcntq + vpaddq per 512 bits;
 *   ISA_AVX2 (1):   AVX2: the nibble look-up popcount of Mula (vpshufb) on operands split once
 *                   into low and high nibbles, so that each 256 bits costs 2 vpxor + 2 vpshufb +
 *                   2 vpaddb (no shift or mask in the inner loop);
 *   ISA_PORTABLE (0): plain C, the scalar popcount (the popcnt instruction where the CPU has it).
 * The file is compiled for the base instruction set of the machine type (no -march=native): each
 * path's functions carry their own target attribute, so the AVX2 path never contains an AVX-512
 * instruction, and one build serves every path on every CPU of the machine type. The paper's two
 * kernels are built the same way for the CPU's best instruction set, chosen at run time whatever
 * `isa` says (they are scalar; the override is about our kernel).
 *
 * Every function takes `threads` (0 = OpenMP's default; small calls run on one thread) so that
 * no global state is set. Compiled with -ffp-contract=off: the float kernels round every product
 * and every sum, in a fixed order, the same on every machine.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define XNOR_X86 1
#include <immintrin.h>
#define TARGET_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vpopcntdq,popcnt")))
#define TARGET_AVX2 __attribute__((target("avx2,popcnt")))
#define TARGET_POPCNT __attribute__((target("popcnt")))
#else
#define XNOR_X86 0
#define TARGET_POPCNT
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define NO_VECTORIZE __attribute__((optimize("no-tree-vectorize"), noinline))
#else
#define NO_VECTORIZE __attribute__((noinline))
#endif
#define ALWAYS_INLINE inline __attribute__((always_inline))

#define TILE 16 /* BLOCK_SIZE of binary_kernels.cu */

enum { ISA_PORTABLE = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };

/* Threads for a call doing about `work` elementary steps: one below ~1M, since waking a second
 * thread costs microseconds on an idle machine but a scheduler time slice on a busy one. */
static int n_threads(int threads, double work)
{
#ifdef _OPENMP
    if (work < 1e6)
        return 1;
    return threads > 0 ? threads : omp_get_max_threads();
#else
    (void)threads, (void)work;
    return 1;
#endif
}

static int has_popcnt(void)
{
#if XNOR_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("popcnt");
#else
    return 0;
#endif
}

/* 1 if this build and this CPU (and its operating system, which must save the wide registers:
 * libgcc's cpu model checks XGETBV) can run path `isa`. */
int xnor_isa_supported(int isa)
{
    if (isa == ISA_PORTABLE)
        return 1;
#if XNOR_X86
    __builtin_cpu_init();
    if (isa == ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    if (isa == ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vpopcntdq") && __builtin_cpu_supports("popcnt");
#endif
    return 0;
}

int xnor_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* ---------------------------------------------------------------- baseline ------------------- */

/* One 16x16 tile of C, as one CUDA block of gemm() computes it: 16x16 tiles of A and B copied
 * into local arrays (the __shared__ arrays), zero-padded past the edges where the original read
 * out of bounds (SOURCES.md §3.2), then 16 multiply-adds per element. Scalar on purpose: it is
 * the "unoptimised" kernel the paper measured against, so the compiler may not vectorise it. */
static ALWAYS_INLINE void baseline_tile_body(const float *A, const float *B, float *C, int64_t M,
                                             int64_t N, int64_t K, int64_t row0, int64_t col0)
{
    float As[TILE][TILE], Bs[TILE][TILE], Cs[TILE][TILE];
    memset(Cs, 0, sizeof Cs);
    for (int64_t k0 = 0; k0 < K; k0 += TILE) {
        for (int r = 0; r < TILE; r++)
            for (int c = 0; c < TILE; c++) {
                int64_t i = row0 + r, k = k0 + c;
                As[r][c] = (i < M && k < K) ? A[i * K + k] : 0.0f;
                k = k0 + r;
                int64_t j = col0 + c;
                Bs[r][c] = (k < K && j < N) ? B[k * N + j] : 0.0f;
            }
        /* c innermost: the 16 outputs of a row are independent chains, as the block's threads
         * are on the GPU; each output still sums its products in k order. */
        for (int r = 0; r < TILE; r++)
            for (int e = 0; e < TILE; e++) {
                float x = As[r][e];
                for (int c = 0; c < TILE; c++)
                    Cs[r][c] += x * Bs[e][c];
            }
    }
    for (int r = 0; r < TILE && row0 + r < M; r++)
        for (int c = 0; c < TILE && col0 + c < N; c++)
            C[(row0 + r) * N + col0 + c] = Cs[r][c];
}

/* The paper's kernels are compiled for the CPU's own instruction set, as a -march=native build
 * would (scalar code, but with 32 vector registers on AVX-512 CPUs the tile's 16 running sums
 * stay in registers: 1.5x faster here), and chosen at run time. Their arithmetic is the same in
 * every build: no contraction into fused multiply-adds, the products and sums in k order. */
#define TILE_ARGS(T) const T *A, const T *B, float *C, int64_t M, int64_t N, int64_t K, \
                     int64_t row0, int64_t col0
#if XNOR_X86
static NO_VECTORIZE TARGET_AVX512 void baseline_tile_avx512(TILE_ARGS(float))
{
    baseline_tile_body(A, B, C, M, N, K, row0, col0);
}

static NO_VECTORIZE TARGET_AVX2 void baseline_tile_avx2(TILE_ARGS(float))
{
    baseline_tile_body(A, B, C, M, N, K, row0, col0);
}
#endif

static NO_VECTORIZE void baseline_tile_plain(TILE_ARGS(float))
{
    baseline_tile_body(A, B, C, M, N, K, row0, col0);
}

void baseline_gemm(const float *A, const float *B, float *C, int64_t M, int64_t N, int64_t K,
                   int threads)
{
    int64_t tr = (M + TILE - 1) / TILE, tc = (N + TILE - 1) / TILE;
    void (*tile)(TILE_ARGS(float)) = baseline_tile_plain;
#if XNOR_X86
    if (xnor_isa_supported(ISA_AVX512))
        tile = baseline_tile_avx512;
    else if (xnor_isa_supported(ISA_AVX2))
        tile = baseline_tile_avx2;
#endif
#pragma omp parallel for schedule(static) num_threads(n_threads(threads, (double)M * N * K))
    for (int64_t t = 0; t < tr * tc; t++)
        tile(A, B, C, M, N, K, (t / tc) * TILE, (t % tc) * TILE);
}

/* ---------------------------------------------------------------- packing -------------------- */

static ALWAYS_INLINE uint64_t pack_word_portable(const float *a, int64_t n)
{
    uint64_t word = 0;
    for (int64_t t = 0; t < n; t++)
        word |= (uint64_t)(a[t] >= 0.0f) << t;
    return word;
}

#if XNOR_X86
TARGET_AVX512 static uint64_t pack_word_avx512(const float *a, int64_t n)
{
    uint64_t word = 0;
    const __m512 zero = _mm512_setzero_ps();
    for (int q = 0; q < 4 && 16 * q < n; q++) {
        int64_t left = n - 16 * q;
        __mmask16 lm = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        __m512 x = _mm512_maskz_loadu_ps(lm, a + 16 * q);
        uint64_t bits = _mm512_mask_cmp_ps_mask(lm, x, zero, _CMP_GE_OQ);
        word |= bits << (16 * q);
    }
    return word;
}

TARGET_AVX2 static uint64_t pack_word_avx2(const float *a, int64_t n)
{
    if (n < 64)
        return pack_word_portable(a, n);
    uint64_t word = 0;
    const __m256 zero = _mm256_setzero_ps();
    for (int q = 0; q < 8; q++) {
        __m256 ge = _mm256_cmp_ps(_mm256_loadu_ps(a + 8 * q), zero, _CMP_GE_OQ);
        word |= (uint64_t)(unsigned)_mm256_movemask_ps(ge) << (8 * q);
    }
    return word;
}
#endif

void pack_rows(const float *A, uint64_t *out, int64_t M, int64_t K, int isa, int threads)
{
    int64_t W = (K + 63) / 64;
#pragma omp parallel for schedule(static) num_threads(n_threads(threads, (double)M * K))
    for (int64_t i = 0; i < M; i++) {
        const float *a = A + i * K;
        for (int64_t w = 0; w < W; w++) {
            int64_t n = K - 64 * w < 64 ? K - 64 * w : 64;
            uint64_t word;
#if XNOR_X86
            if (isa == ISA_AVX512)
                word = pack_word_avx512(a + 64 * w, n);
            else if (isa == ISA_AVX2)
                word = pack_word_avx2(a + 64 * w, n);
            else
#endif
                word = pack_word_portable(a + 64 * w, n);
            out[i * W + w] = word;
        }
    }
}

/* Columns j0 <= c < N of one word-row w of Bp, `n` rows of B starting at b, read row by row so
 * that B is read contiguously (the compiler vectorises it; as fast as explicit AVX2 here, the
 * loop being bound by reading B from memory). */
static void pack_cols_rest(const float *b, uint64_t *o, int64_t n, int64_t N, int64_t j0)
{
    for (int64_t c = j0; c < N; c++)
        o[c] = 0;
    for (int64_t t = 0; t < n; t++)
        for (int64_t c = j0; c < N; c++)
            o[c] |= (uint64_t)(b[t * N + c] >= 0.0f) << t;
}

#if XNOR_X86
/* 64 columns at a time: their 64 words stay in 8 registers while the <= 64 rows of the word are
 * read, 256 contiguous bytes per row; bit t set where B[64w + t][j] >= 0. Returns the first
 * column left for pack_cols_rest. */
TARGET_AVX512 static int64_t pack_cols_avx512(const float *b, uint64_t *o, int64_t n, int64_t N)
{
    const __m512 zero = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 64 <= N; j += 64) {
        __m512i acc[8];
        for (int v = 0; v < 8; v++)
            acc[v] = _mm512_setzero_si512();
        for (int64_t t = 0; t < n; t++) {
            const __m512i bit = _mm512_set1_epi64((long long)(1ULL << t));
            for (int q = 0; q < 4; q++) {
                __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(b + t * N + j + 16 * q), zero,
                                                 _CMP_GE_OQ);
                acc[2 * q] = _mm512_mask_or_epi64(acc[2 * q], (__mmask8)m, acc[2 * q], bit);
                acc[2 * q + 1] = _mm512_mask_or_epi64(acc[2 * q + 1], (__mmask8)(m >> 8),
                                                      acc[2 * q + 1], bit);
            }
        }
        for (int v = 0; v < 8; v++)
            _mm512_storeu_si512(o + j + 8 * v, acc[v]);
    }
    return j;
}

#endif

void pack_cols(const float *B, uint64_t *out, int64_t K, int64_t N, int isa, int threads)
{
    int64_t W = (K + 63) / 64;
#pragma omp parallel for schedule(static) num_threads(n_threads(threads, (double)K * N))
    for (int64_t w = 0; w < W; w++) {
        uint64_t *o = out + w * N;
        int64_t n = K - 64 * w < 64 ? K - 64 * w : 64;
        const float *b = B + 64 * w * N;
        int64_t j = 0;
#if XNOR_X86
        if (isa == ISA_AVX512)
            j = pack_cols_avx512(b, o, n, N);
#else
        (void)isa;
#endif
        pack_cols_rest(b, o, n, N, j);
    }
}

/* Algorithm 4's bit planes: plane n (0..7) of P(M,K) uint8 packed like pack_rows, where bit 1
 * means +1 and bit 0 means -1. out is (8, M, W). */
void pack_bitplanes(const uint8_t *P, uint64_t *out, int64_t M, int64_t K, int threads)
{
    int64_t W = (K + 63) / 64;
#pragma omp parallel for schedule(static) num_threads(n_threads(threads, 8.0 * M * K))
    for (int64_t i = 0; i < M; i++) {
        const uint8_t *p = P + i * K;
        for (int64_t w = 0; w < W; w++) {
            int64_t n = K - 64 * w < 64 ? K - 64 * w : 64;
            uint64_t word[8] = {0};
            for (int64_t t = 0; t < n; t++) {
                uint64_t v = p[64 * w + t];
                for (int b = 0; b < 8; b++)
                    word[b] |= ((v >> b) & 1u) << t;
            }
            for (int b = 0; b < 8; b++)
                out[((int64_t)b * M + i) * W + w] = word[b];
        }
    }
}

/* Batch norm + sign in its threshold form: out = +1 where d[j] * s >= t[j], else -1. With d = +-1
 * the product is exact and the comparison is exact, so the result is the same on every machine
 * for the same s; gpu_xnor/mlp.py derives (t, d) from the float32 batch-norm formula so that this
 * equals sign(((s + b) - mean) * scale + beta) for every float32 s (SOURCES.md §3.4). */
void threshold_sign(const float *S, float *out, int64_t M, int64_t N, const float *t,
                    const float *d, int threads)
{
#pragma omp parallel for schedule(static) num_threads(n_threads(threads, (double)M * N))
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            out[i * N + j] = d[j] * S[i * N + j] >= t[j] ? 1.0f : -1.0f;
}

/* ---------------------------------------------------------------- XNOR, paper style ---------- */

/* The paper's xnor_gemm (SOURCES.md §3.1 l.128-184) on the CPU: the same 16x16 tiling as the
 * baseline, 16 words of the inner dimension per step, one scalar popcount per word pair (the
 * popcnt instruction, as the GPU's __popc, where the CPU has it). */
static ALWAYS_INLINE void xnor_tile_body(const uint64_t *Ap, const uint64_t *Bp, float *C,
                                         int64_t M, int64_t N, int64_t W, int64_t K, int64_t row0,
                                         int64_t col0)
{
    uint64_t As[TILE][TILE], Bs[TILE][TILE];
    uint32_t Cs[TILE][TILE];
    memset(Cs, 0, sizeof Cs);
    for (int64_t w0 = 0; w0 < W; w0 += TILE) {
        for (int r = 0; r < TILE; r++)
            for (int c = 0; c < TILE; c++) {
                int64_t i = row0 + r, w = w0 + c;
                As[r][c] = (i < M && w < W) ? Ap[i * W + w] : 0;
                w = w0 + r;
                int64_t j = col0 + c;
                Bs[r][c] = (w < W && j < N) ? Bp[w * N + j] : 0;
            }
        for (int r = 0; r < TILE; r++)
            for (int e = 0; e < TILE; e++) {
                uint64_t x = As[r][e];
                for (int c = 0; c < TILE; c++)
                    Cs[r][c] += (uint32_t)__builtin_popcountll(x ^ Bs[e][c]);
            }
    }
    for (int r = 0; r < TILE && row0 + r < M; r++)
        for (int c = 0; c < TILE && col0 + c < N; c++)
            C[(row0 + r) * N + col0 + c] = (float)(K - 2 * (int64_t)Cs[r][c]);
}

#define XNOR_TILE_ARGS const uint64_t *Ap, const uint64_t *Bp, float *C, int64_t M, int64_t N, \
                       int64_t W, int64_t K, int64_t row0, int64_t col0
#if XNOR_X86
static NO_VECTORIZE TARGET_AVX512 void xnor_tile_avx512(XNOR_TILE_ARGS)
{
    xnor_tile_body(Ap, Bp, C, M, N, W, K, row0, col0);
}

static NO_VECTORIZE TARGET_AVX2 void xnor_tile_avx2(XNOR_TILE_ARGS)
{
    xnor_tile_body(Ap, Bp, C, M, N, W, K, row0, col0);
}
#endif

static NO_VECTORIZE TARGET_POPCNT void xnor_tile_popcnt(XNOR_TILE_ARGS)
{
    xnor_tile_body(Ap, Bp, C, M, N, W, K, row0, col0);
}

static NO_VECTORIZE void xnor_tile_plain(XNOR_TILE_ARGS)
{
    xnor_tile_body(Ap, Bp, C, M, N, W, K, row0, col0);
}

void xnor_gemm_paper(const uint64_t *Ap, const uint64_t *Bp, float *C, int64_t M, int64_t N,
                     int64_t K, int threads)
{
    int64_t W = (K + 63) / 64;
    int64_t tr = (M + TILE - 1) / TILE, tc = (N + TILE - 1) / TILE;
    void (*tile)(XNOR_TILE_ARGS) = has_popcnt() ? xnor_tile_popcnt : xnor_tile_plain;
#if XNOR_X86
    if (xnor_isa_supported(ISA_AVX512))
        tile = xnor_tile_avx512;
    else if (xnor_isa_supported(ISA_AVX2))
        tile = xnor_tile_avx2;
#endif
#pragma omp parallel for schedule(static) num_threads(n_threads(threads, (double)M * N * W))
    for (int64_t t = 0; t < tr * tc; t++)
        tile(Ap, Bp, C, M, N, W, K, (t / tc) * TILE, (t % tc) * TILE);
}

/* ---------------------------------------------------------------- XNOR, ours ----------------- */

/* Register-blocked like an SGEMM micro-kernel: MR rows of A times an NR-column panel of B, the
 * panels copied once into a contiguous buffer (Bp's rows are N words apart, which would alias
 * in the L1 cache), each A word broadcast against NR/lanes vectors of B words. The rows are
 * taken in blocks whose A words fit in the L2 cache, and every panel is swept across a block.
 *
 * Micro-kernels: cnt[r][c] = sum_w popcount(a_r[w] ^ panel[w][c]) for r < mr, c < nr. */
#define MR_MAX 6
#define NR_MAX 32
typedef struct {
    float *C; /* the tile's first element, or NULL: counts to cnt instead (bit planes) */
    int64_t ldc;
    int64_t nr, nc; /* rows and columns of the tile inside C */
    int32_t K;
    int32_t (*cnt)[NR_MAX];
} tile_out;
typedef void (*micro_fn)(const uint64_t *const *a, const uint64_t *panel, int64_t W,
                         const tile_out *o);

#if XNOR_X86
/* Whether every row of a full tile starts on a `bytes` boundary, for streaming stores. */
static inline int streamable(const tile_out *o, int bytes)
{
    return ((uintptr_t)o->C % bytes) == 0 && ((o->ldc * 4) % bytes) == 0;
}
#endif

/* A tile's outputs K - 2 * count (exact in int32, converted once), or its counts: inlined into
 * each path's micro-kernel, so that the compiler vectorises it for that path. counts[r * ld + c]
 * is row r against column c. */
static ALWAYS_INLINE void store_tile(const int64_t *counts, int ld, const tile_out *o)
{
    for (int64_t r = 0; r < o->nr; r++) {
        const int64_t *x = counts + r * ld;
        if (o->C) {
            float *out = o->C + r * o->ldc;
            for (int64_t c = 0; c < o->nc; c++)
                out[c] = (float)(o->K - 2 * (int32_t)x[c]);
        } else {
            for (int64_t c = 0; c < o->nc; c++)
                o->cnt[r][c] = (int32_t)x[c];
        }
    }
}

#define MR_P 4
#define NR_P 4
static ALWAYS_INLINE void micro_portable_body(const uint64_t *const *a, const uint64_t *panel,
                                              int64_t W, const tile_out *o)
{
    int64_t acc[MR_P][NR_P] = {{0}};
    for (int64_t w = 0; w < W; w++)
        for (int r = 0; r < MR_P; r++) {
            uint64_t x = a[r][w];
            for (int c = 0; c < NR_P; c++)
                acc[r][c] += __builtin_popcountll(x ^ panel[w * NR_P + c]);
        }
    store_tile(&acc[0][0], NR_P, o);
}

static TARGET_POPCNT void micro_portable_popcnt(const uint64_t *const *a, const uint64_t *panel,
                                                int64_t W, const tile_out *o)
{
    micro_portable_body(a, panel, W, o);
}

static void micro_portable_plain(const uint64_t *const *a, const uint64_t *panel, int64_t W,
                                 const tile_out *o)
{
    micro_portable_body(a, panel, W, o);
}

#if XNOR_X86
#define MR_512 6
#define NR_512 32
TARGET_AVX512 static void micro_avx512(const uint64_t *const *a, const uint64_t *panel, int64_t W,
                                       const tile_out *o)
{
    __m512i acc[MR_512][NR_512 / 8];
    for (int r = 0; r < MR_512; r++)
        for (int v = 0; v < NR_512 / 8; v++)
            acc[r][v] = _mm512_setzero_si512();
    for (int64_t w = 0; w < W; w++) {
        __m512i b[NR_512 / 8];
        for (int v = 0; v < NR_512 / 8; v++)
            b[v] = _mm512_loadu_si512(panel + w * NR_512 + 8 * v);
        for (int r = 0; r < MR_512; r++) {
            __m512i x = _mm512_set1_epi64((long long)a[r][w]);
            for (int v = 0; v < NR_512 / 8; v++)
                acc[r][v] = _mm512_add_epi64(acc[r][v],
                                             _mm512_popcnt_epi64(_mm512_xor_si512(x, b[v])));
        }
    }
    if (o->C && o->nr == MR_512 && o->nc == NR_512 && streamable(o, 64)) {
        /* Whole cache lines of C, written around the caches: no read for ownership. */
        const __m512i k = _mm512_set1_epi64(o->K);
        for (int r = 0; r < MR_512; r++)
            for (int v = 0; v < NR_512 / 8; v += 2) {
                __m256 lo = _mm512_cvtepi64_ps(_mm512_sub_epi64(k, _mm512_add_epi64(acc[r][v], acc[r][v])));
                __m256 hi = _mm512_cvtepi64_ps(
                    _mm512_sub_epi64(k, _mm512_add_epi64(acc[r][v + 1], acc[r][v + 1])));
                _mm512_stream_ps(o->C + r * o->ldc + 8 * v,
                                 _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1));
            }
        return;
    }
    int64_t counts[MR_512][NR_512] __attribute__((aligned(64)));
    for (int r = 0; r < MR_512; r++)
        for (int v = 0; v < NR_512 / 8; v++)
            _mm512_store_si512(&counts[r][8 * v], acc[r][v]);
    store_tile(&counts[0][0], NR_512, o);
}

/* AVX2 has no vector popcount. Mula's method looks the popcount of each nibble up in a 16-entry
 * table with vpshufb. Since (a ^ b) & 0x0f.. = (a & 0x0f..) ^ (b & 0x0f..) and likewise for the
 * high nibbles, both operands are split once into low and high nibbles (a word becomes two:
 * lo = x & 0x0f.., hi = (x >> 4) & 0x0f..), and the inner loop is per 4 words
 * 2 vpxor + 2 vpshufb + 2 vpaddb into byte counters, which are summed into 64-bit lanes with
 * vpsadbw every 31 words (a byte gains at most 8 per word: 31 * 8 < 256).
 * Split layouts: a[r][2w] = lo, a[r][2w + 1] = hi; panel[w] = NR lo words, then NR hi words.
 * The block of 3 rows x 16 columns uses all 16 ymm registers (12 byte counters, the table, the 2
 * broadcast words of a row, 1 temporary; B is a memory operand of the vpxor's). Written with
 * intrinsics, GCC 12 spilled the counters of such blocks to the stack in the inner loop, so the
 * loop over one chunk of <= 31 words is assembly. */
#define MR_2 3
#define NR_2 16
#define FLUSH_2 31
static const uint8_t NIBBLE_POPCOUNT[32] __attribute__((aligned(32))) = {
    0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

/* One vector of B (low words at byte offset LO, high words at HI) against the broadcast words of
 * one row, into counter X. */
#define AVX2_VEC(LO, HI, X)                                                                       \
    "vpxor " LO "(%[p]), %%ymm13, %%ymm15\n\t"                                                    \
    "vpshufb %%ymm15, %%ymm0, %%ymm15\n\t"                                                        \
    "vpaddb %%ymm15, %%" X ", %%" X "\n\t"                                                        \
    "vpxor " HI "(%[p]), %%ymm14, %%ymm15\n\t"                                                    \
    "vpshufb %%ymm15, %%ymm0, %%ymm15\n\t"                                                        \
    "vpaddb %%ymm15, %%" X ", %%" X "\n\t"
/* One row: its low and high words broadcast, then the panel's 4 vectors (16 columns). */
#define AVX2_ROW(A, X0, X1, X2, X3)                                                               \
    "vpbroadcastq (%[" A "]), %%ymm13\n\t"                                                        \
    "vpbroadcastq 8(%[" A "]), %%ymm14\n\t"                                                       \
    AVX2_VEC("0", "128", X0) AVX2_VEC("32", "160", X1) AVX2_VEC("64", "192", X2)                 \
    AVX2_VEC("96", "224", X3)
/* tot[12][4] += the counts of words [0, n) (1 <= n <= 31) of the rows a0..a2 (split, already
 * offset to the chunk) against the panel (offset likewise): tot[4r + v][l] is row r against
 * column 4v + l. Registers: ymm0 the table, ymm1-12 the byte counters, ymm13-14 the broadcast
 * words, ymm15 a temporary. */
static void avx2_chunk(const uint64_t *a0, const uint64_t *a1, const uint64_t *a2,
                       const uint64_t *p, int64_t n, int64_t tot[12][4])
{
    __asm__ volatile(
        "vmovdqa (%[lut]), %%ymm0\n\t"
        "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
        "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
        "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
        "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
        "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
        "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
        "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"
        "vpxor %%ymm8, %%ymm8, %%ymm8\n\t"
        "vpxor %%ymm9, %%ymm9, %%ymm9\n\t"
        "vpxor %%ymm10, %%ymm10, %%ymm10\n\t"
        "vpxor %%ymm11, %%ymm11, %%ymm11\n\t"
        "vpxor %%ymm12, %%ymm12, %%ymm12\n\t"
        "1:\n\t"
        AVX2_ROW("a0", "ymm1", "ymm2", "ymm3", "ymm4")
        AVX2_ROW("a1", "ymm5", "ymm6", "ymm7", "ymm8")
        AVX2_ROW("a2", "ymm9", "ymm10", "ymm11", "ymm12")
        "add $16, %[a0]\n\t"
        "add $16, %[a1]\n\t"
        "add $16, %[a2]\n\t"
        "add $256, %[p]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vpxor %%ymm13, %%ymm13, %%ymm13\n\t"
        "vpsadbw %%ymm13, %%ymm1, %%ymm1\n\t"
        "vpsadbw %%ymm13, %%ymm2, %%ymm2\n\t"
        "vpsadbw %%ymm13, %%ymm3, %%ymm3\n\t"
        "vpsadbw %%ymm13, %%ymm4, %%ymm4\n\t"
        "vpsadbw %%ymm13, %%ymm5, %%ymm5\n\t"
        "vpsadbw %%ymm13, %%ymm6, %%ymm6\n\t"
        "vpsadbw %%ymm13, %%ymm7, %%ymm7\n\t"
        "vpsadbw %%ymm13, %%ymm8, %%ymm8\n\t"
        "vpsadbw %%ymm13, %%ymm9, %%ymm9\n\t"
        "vpsadbw %%ymm13, %%ymm10, %%ymm10\n\t"
        "vpsadbw %%ymm13, %%ymm11, %%ymm11\n\t"
        "vpsadbw %%ymm13, %%ymm12, %%ymm12\n\t"
        "vpaddq 0(%[t]), %%ymm1, %%ymm1\n\t"
        "vpaddq 32(%[t]), %%ymm2, %%ymm2\n\t"
        "vpaddq 64(%[t]), %%ymm3, %%ymm3\n\t"
        "vpaddq 96(%[t]), %%ymm4, %%ymm4\n\t"
        "vpaddq 128(%[t]), %%ymm5, %%ymm5\n\t"
        "vpaddq 160(%[t]), %%ymm6, %%ymm6\n\t"
        "vpaddq 192(%[t]), %%ymm7, %%ymm7\n\t"
        "vpaddq 224(%[t]), %%ymm8, %%ymm8\n\t"
        "vpaddq 256(%[t]), %%ymm9, %%ymm9\n\t"
        "vpaddq 288(%[t]), %%ymm10, %%ymm10\n\t"
        "vpaddq 320(%[t]), %%ymm11, %%ymm11\n\t"
        "vpaddq 352(%[t]), %%ymm12, %%ymm12\n\t"
        "vmovdqu %%ymm1, 0(%[t])\n\t"
        "vmovdqu %%ymm2, 32(%[t])\n\t"
        "vmovdqu %%ymm3, 64(%[t])\n\t"
        "vmovdqu %%ymm4, 96(%[t])\n\t"
        "vmovdqu %%ymm5, 128(%[t])\n\t"
        "vmovdqu %%ymm6, 160(%[t])\n\t"
        "vmovdqu %%ymm7, 192(%[t])\n\t"
        "vmovdqu %%ymm8, 224(%[t])\n\t"
        "vmovdqu %%ymm9, 256(%[t])\n\t"
        "vmovdqu %%ymm10, 288(%[t])\n\t"
        "vmovdqu %%ymm11, 320(%[t])\n\t"
        "vmovdqu %%ymm12, 352(%[t])\n\t"
        "vzeroupper\n\t"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [p] "+r"(p), [n] "+r"(n)
        : [t] "r"(&tot[0][0]), [lut] "r"(NIBBLE_POPCOUNT)
        : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
          "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

TARGET_AVX2 static void micro_avx2(const uint64_t *const *a, const uint64_t *panel, int64_t W,
                                   const tile_out *o)
{
    int64_t tot[12][4] __attribute__((aligned(32))) = {{0}};
    for (int64_t w0 = 0; w0 < W; w0 += FLUSH_2) {
        int64_t n = W - w0 < FLUSH_2 ? W - w0 : FLUSH_2;
        avx2_chunk(a[0] + 2 * w0, a[1] + 2 * w0, a[2] + 2 * w0, panel + w0 * 2 * NR_2, n, tot);
    }
    /* tot[4r + v][l] = row r, column 4v + l */
    if (o->C && o->nr == MR_2 && o->nc == NR_2 && streamable(o, 32)) {
        const __m256i low = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7), k = _mm256_set1_epi32(o->K);
        for (int r = 0; r < MR_2; r++)
            for (int v = 0; v < 4; v += 2) { /* 8 counts < 2^31: their low halves, as int32 */
                __m256i x0 = _mm256_permutevar8x32_epi32(
                    _mm256_load_si256((const __m256i *)tot[4 * r + v]), low);
                __m256i x1 = _mm256_permutevar8x32_epi32(
                    _mm256_load_si256((const __m256i *)tot[4 * r + v + 1]), low);
                __m256i x = _mm256_permute2x128_si256(x0, x1, 0x20);
                _mm256_stream_ps(o->C + r * o->ldc + 4 * v,
                                 _mm256_cvtepi32_ps(_mm256_sub_epi32(k, _mm256_add_epi32(x, x))));
            }
        return;
    }
    store_tile(&tot[0][0], NR_2, o);
}
#endif

#define LO_NIBBLES UINT64_C(0x0f0f0f0f0f0f0f0f)

typedef struct {
    int mr, nr, split; /* split: operands in low/high nibble words (2 words per packed word) */
    micro_fn micro;
} path_t;

static int path_for(int isa, path_t *p)
{
    if (!xnor_isa_supported(isa))
        return -1;
#if XNOR_X86
    if (isa == ISA_AVX512) {
        *p = (path_t){MR_512, NR_512, 0, micro_avx512};
        return 0;
    }
    if (isa == ISA_AVX2) {
        *p = (path_t){MR_2, NR_2, 1, micro_avx2};
        return 0;
    }
#endif
    *p = (path_t){MR_P, NR_P, 0, has_popcnt() ? micro_portable_popcnt : micro_portable_plain};
    return 0;
}

/* Bytes of A per row block: about a quarter of a typical L2 cache. */
#ifndef A_BLOCK_BYTES
#define A_BLOCK_BYTES (256 * 1024)
#endif

/* C = sum_n 2^n * (K - 2 * popcount-sum of plane n of Ap against Bp), for n < nplanes, with Ap
 * (nplanes, M, W): nplanes = 1 is the XNOR GEMM, nplanes = 8 Algorithm 4's bit-plane layer.
 * Returns 0, -1 for a path this CPU lacks, -2 when out of memory. */
int xnor_gemm_planes(const uint64_t *Ap, int nplanes, const uint64_t *Bp, float *C, int64_t M,
                     int64_t N, int64_t K, int isa, int threads)
{
    path_t P;
    if (path_for(isa, &P))
        return -1;
    const int64_t W = (K + 63) / 64, aw = P.split ? 2 : 1, rows = (int64_t)nplanes * M;
    const int64_t panels = (N + P.nr - 1) / P.nr, pw = (W > 0 ? W : 1) * P.nr * aw;
    const int64_t Kp = K * ((INT64_C(1) << nplanes) - 1); /* sum_n 2^n K */
    const int nt = n_threads(threads, (double)nplanes * M * N * W);
    int64_t mc = A_BLOCK_BYTES / ((W > 0 ? W : 1) * aw * 8) / P.mr * P.mr;
    mc = mc < P.mr ? P.mr : mc;
    const int64_t blocks = (M + mc - 1) / mc;

    uint64_t *split = NULL, *pan = malloc((size_t)(panels > 0 ? panels : 1) * pw * 8);
    uint64_t *zeros = calloc((size_t)(W > 0 ? W : 1) * aw, 8);
    if (P.split)
        split = malloc((size_t)(rows > 0 ? rows : 1) * (W > 0 ? W : 1) * 2 * 8);
    if (!pan || !zeros || (P.split && !split)) {
        free(pan), free(zeros), free(split);
        return -2;
    }
    const uint64_t *A = P.split ? split : Ap;
#pragma omp parallel num_threads(nt)
    {
        if (P.split) {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < rows; i++)
                for (int64_t w = 0; w < W; w++) {
                    uint64_t x = Ap[i * W + w];
                    split[(i * W + w) * 2] = x & LO_NIBBLES;
                    split[(i * W + w) * 2 + 1] = (x >> 4) & LO_NIBBLES;
                }
        }
#pragma omp for schedule(static)
        for (int64_t p = 0; p < panels; p++) {
            uint64_t *panel = pan + p * pw;
            int64_t j0 = p * P.nr;
            for (int64_t w = 0; w < W; w++)
                for (int c = 0; c < P.nr; c++) {
                    uint64_t x = j0 + c < N ? Bp[w * N + j0 + c] : 0;
                    if (P.split) {
                        panel[w * 2 * P.nr + c] = x & LO_NIBBLES;
                        panel[w * 2 * P.nr + P.nr + c] = (x >> 4) & LO_NIBBLES;
                    } else {
                        panel[w * P.nr + c] = x;
                    }
                }
        }
        int32_t cnt[MR_MAX][NR_MAX];
        int64_t tot[MR_MAX][NR_MAX];
        /* Tiles (row block, panel) in row-block order, handed out one by one: the threads sweep
         * the panels of one row block together, with no barrier between row blocks. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < blocks * panels; tile++) {
            const int64_t ib = tile / panels * mc, p = tile % panels;
            const int64_t iend = M - ib < mc ? M : ib + mc;
            const uint64_t *panel = pan + p * pw;
            const int64_t j0 = p * P.nr, nc = N - j0 < P.nr ? N - j0 : P.nr;
            for (int64_t i0 = ib; i0 < iend; i0 += P.mr) {
                int64_t nr = iend - i0 < P.mr ? iend - i0 : P.mr;
                const uint64_t *a[MR_MAX];
                tile_out o = {nplanes == 1 ? C + i0 * N + j0 : NULL, N, nr, nc, (int32_t)K, cnt};
                for (int n = 0; n < nplanes; n++) {
                    for (int r = 0; r < P.mr; r++)
                        a[r] = r < nr ? A + ((int64_t)n * M + i0 + r) * W * aw : zeros;
                    P.micro(a, panel, W, &o);
                    if (nplanes > 1)
                        for (int r = 0; r < nr; r++)
                            for (int c = 0; c < nc; c++)
                                tot[r][c] = (n ? tot[r][c] : 0) + ((int64_t)cnt[r][c] << n);
                }
                if (nplanes > 1)
                    for (int r = 0; r < nr; r++) {
                        float *out = C + (i0 + r) * N + j0;
                        for (int c = 0; c < nc; c++)
                            out[c] = (float)(Kp - 2 * tot[r][c]);
                    }
            }
        }
#if XNOR_X86
        _mm_sfence(); /* the streaming stores are visible before the threads join */
#endif
    }
    free(pan), free(zeros), free(split);
    return 0;
}

int xnor_gemm(const uint64_t *Ap, const uint64_t *Bp, float *C, int64_t M, int64_t N, int64_t K,
              int isa, int threads)
{
    return xnor_gemm_planes(Ap, 1, Bp, C, M, N, K, isa, threads);
}

/* ---------------------------------------------------------------- the machine's limits ------- */

/* A dependent chain of 4 one-cycle integer additions per iteration, on `threads` threads at once:
 * 4 * iterations cycles per thread, for measuring the clock while all cores are busy. */
int64_t xnor_spin(int64_t iterations, int threads)
{
    int64_t total = 0;
#pragma omp parallel num_threads(threads > 0 ? threads : 1) reduction(+ : total)
    {
        uint64_t x = 0;
        for (int64_t i = 0; i < iterations; i++) {
#if XNOR_X86
            __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
#else
            __asm__ volatile("" : "+r"(x));
            x += 4;
#endif
        }
        total += (int64_t)x;
    }
    return total;
}

/* The inner loop's instruction mix alone, from registers (no loads, no stores, 8 independent
 * counters), on `threads` threads: what the path could reach if memory cost nothing. In assembly,
 * so that the compiler can neither hoist the loop-invariant XORs nor merge the counters' identical
 * work, nor spill. One iteration on one thread does xnor_mix_bits(isa) bits. */
#if XNOR_X86
#define MIX512(ACC, T)                                                                            \
    "vpxorq %%zmm17, %%zmm16, %%" T "\n\t"                                                        \
    "vpopcntq %%" T ", %%" T "\n\t"                                                               \
    "vpaddq %%" T ", %%" ACC ", %%" ACC "\n\t"
TARGET_AVX512 static void mix_avx512(int64_t n)
{
    __asm__ volatile(
        "vpternlogd $0xff, %%zmm16, %%zmm16, %%zmm16\n\t"
        "vpxorq %%zmm17, %%zmm17, %%zmm17\n\t"
        "1:\n\t"
        MIX512("zmm18", "zmm26") MIX512("zmm19", "zmm27") MIX512("zmm20", "zmm28")
        MIX512("zmm21", "zmm29") MIX512("zmm22", "zmm30") MIX512("zmm23", "zmm31")
        MIX512("zmm24", "zmm26") MIX512("zmm25", "zmm27")
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vzeroupper\n\t"
        : [n] "+r"(n)
        :
        : "cc", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24",
          "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
}

/* Per 256 bits exactly avx2_chunk's sequence: 2 vpxor, 2 vpshufb, 2 vpaddb. */
#define MIX2(ACC, T)                                                                              \
    "vpxor %%ymm9, %%ymm13, %%" T "\n\t"                                                          \
    "vpshufb %%" T ", %%ymm0, %%" T "\n\t"                                                        \
    "vpaddb %%" T ", %%" ACC ", %%" ACC "\n\t"                                                    \
    "vpxor %%ymm11, %%ymm14, %%" T "\n\t"                                                         \
    "vpshufb %%" T ", %%ymm0, %%" T "\n\t"                                                        \
    "vpaddb %%" T ", %%" ACC ", %%" ACC "\n\t"
TARGET_AVX2 static void mix_avx2(int64_t n)
{
    __asm__ volatile(
        "vmovdqa (%[lut]), %%ymm0\n\t"
        "vpcmpeqb %%ymm9, %%ymm9, %%ymm9\n\t"
        "vpxor %%ymm11, %%ymm11, %%ymm11\n\t"
        "vpxor %%ymm13, %%ymm13, %%ymm13\n\t"
        "vpxor %%ymm14, %%ymm14, %%ymm14\n\t"
        "1:\n\t"
        MIX2("ymm1", "ymm15") MIX2("ymm2", "ymm10") MIX2("ymm3", "ymm12") MIX2("ymm4", "ymm15")
        MIX2("ymm5", "ymm10") MIX2("ymm6", "ymm12") MIX2("ymm7", "ymm15") MIX2("ymm8", "ymm10")
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vzeroupper\n\t"
        : [n] "+r"(n)
        : [lut] "r"(NIBBLE_POPCOUNT)
        : "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

#define MIXP(ACC)                                                                                 \
    "mov %[x], %%rax\n\t"                                                                         \
    "xor %[y], %%rax\n\t"                                                                         \
    "popcnt %%rax, %%rax\n\t"                                                                     \
    "add %%rax, %[" ACC "]\n\t"
TARGET_POPCNT static void mix_popcnt(int64_t n)
{
    uint64_t x = 0x0123456789abcdefULL, y = 7, c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    __asm__ volatile(
        "1:\n\t"
        MIXP("c0") MIXP("c1") MIXP("c2") MIXP("c3") MIXP("c0") MIXP("c1") MIXP("c2") MIXP("c3")
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        : [n] "+r"(n), [c0] "+r"(c0), [c1] "+r"(c1), [c2] "+r"(c2), [c3] "+r"(c3)
        : [x] "r"(x), [y] "r"(y)
        : "cc", "rax");
}
#endif

/* Bits of XOR + popcount one iteration of xnor_mix's loop does on one thread. */
int64_t xnor_mix_bits(int isa)
{
    return isa == ISA_AVX512 ? 8 * 512 : isa == ISA_AVX2 ? 8 * 256 : 8 * 64;
}

/* Runs the mix of path `isa`: 0 when done, -1 for a path this CPU lacks (portable needs the
 * popcnt instruction here: the model is about it). */
int xnor_mix(int isa, int64_t iterations, int threads)
{
    if (!xnor_isa_supported(isa) || !has_popcnt() || iterations < 1)
        return -1;
#if XNOR_X86
#pragma omp parallel num_threads(threads > 0 ? threads : 1)
    {
        if (isa == ISA_AVX512)
            mix_avx512(iterations);
        else if (isa == ISA_AVX2)
            mix_avx2(iterations);
        else
            mix_popcnt(iterations);
    }
    return 0;
#else
    (void)threads;
    return -1;
#endif
}
