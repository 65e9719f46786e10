/* The run-time kernels of PAPER.md §3.1 for the CPU: a baseline float GEMM, packing into 64-bit
 * words, and the XNOR (XOR + popcount) GEMM.
 *
 * Conventions (all matrices row-major, C(M,N) = A(M,K) . B(K,N), K the inner dimension):
 *   - packing: bit t of word w is (x[64w + t] >= 0), element 0 in the least significant bit, the
 *     paper's order (concatenate(), binary_kernels.cu l.66-78) widened to 64-bit words; 0.0 and
 *     -0.0 pack as +1, NaN as -1. The tail bits past K are 0 in BOTH operands, so 0 ^ 0 never
 *     counts as a mismatch and any K works (the original needed K % 512 == 0, §3.2).
 *   - pack_rows: A(M,K) -> Ap(M, W), W = ceil(K/64), each row packed along K.
 *   - pack_cols: B(K,N) -> Bp(W, N), each column packed along K, the layout of the original's
 *     concatenate_cols_kernel (bit t of word (w, j) is B[64w + t][j]).
 *   - xnor: C[i][j] = K - 2 * sum_w popcount(Ap[i][w] ^ Bp[w][j]), the exact +-1 dot product.
 * Every function takes `threads` (0 = OpenMP's default; small calls run on one thread) so that
 * no global state is set.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__) && defined(__AVX512DQ__)
#define XNOR_SIMD 512
#include <immintrin.h>
#elif defined(__AVX2__)
#define XNOR_SIMD 256
#include <immintrin.h>
#else
#define XNOR_SIMD 0
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define NO_VECTORIZE __attribute__((optimize("no-tree-vectorize"), noinline))
#else
#define NO_VECTORIZE __attribute__((noinline))
#endif

#define TILE 16 /* BLOCK_SIZE of binary_kernels.cu */

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

int xnor_simd_level(void) { return XNOR_SIMD; }

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
 * out of bounds (§3.2), then 16 multiply-adds per element. Scalar on purpose: it is the
 * "unoptimised" kernel the paper measured against, so the compiler may not vectorise it. */
static NO_VECTORIZE void baseline_tile(const float *A, const float *B, float *C, int64_t M,
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

void baseline_gemm(const float *A, const float *B, float *C, int64_t M, int64_t N, int64_t K,
                   int threads)
{
    int64_t tr = (M + TILE - 1) / TILE, tc = (N + TILE - 1) / TILE;
#pragma omp parallel for schedule(static) num_threads(n_threads(threads, (double)M * N * K))
    for (int64_t t = 0; t < tr * tc; t++)
        baseline_tile(A, B, C, M, N, K, (t / tc) * TILE, (t % tc) * TILE);
}

/* ---------------------------------------------------------------- packing -------------------- */

void pack_rows(const float *A, uint64_t *out, int64_t M, int64_t K, int threads)
{
    int64_t W = (K + 63) / 64;
#pragma omp parallel for schedule(static) num_threads(n_threads(threads, (double)M * K))
    for (int64_t i = 0; i < M; i++) {
        const float *a = A + i * K;
        for (int64_t w = 0; w < W; w++) {
            int64_t n = K - 64 * w < 64 ? K - 64 * w : 64;
            uint64_t word = 0;
#if XNOR_SIMD == 512
            const __m512 zero = _mm512_setzero_ps();
            for (int q = 0; q < 4 && 16 * q < n; q++) {
                int64_t left = n - 16 * q;
                __mmask16 lm = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
                __m512 x = _mm512_maskz_loadu_ps(lm, a + 64 * w + 16 * q);
                uint64_t bits = _mm512_mask_cmp_ps_mask(lm, x, zero, _CMP_GE_OQ);
                word |= bits << (16 * q);
            }
#else
            for (int64_t t = 0; t < n; t++)
                word |= (uint64_t)(a[64 * w + t] >= 0.0f) << t;
#endif
            out[i * W + w] = word;
        }
    }
}

void pack_cols(const float *B, uint64_t *out, int64_t K, int64_t N, int threads)
{
    int64_t W = (K + 63) / 64;
#pragma omp parallel for schedule(static) num_threads(n_threads(threads, (double)K * N))
    for (int64_t w = 0; w < W; w++) {
        uint64_t *o = out + w * N;
        int64_t n = K - 64 * w < 64 ? K - 64 * w : 64;
        const float *b = B + 64 * w * N;
        int64_t j = 0;
#if XNOR_SIMD == 512
        /* 64 columns at a time: their 64 words stay in 8 registers while the <= 64 rows of the
         * word are read, 256 contiguous bytes per row; bit t set where B[64w + t][j] >= 0. */
        const __m512 zero = _mm512_setzero_ps();
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
#endif
        /* Row by row over the remaining columns, so that B is read contiguously. */
        for (int64_t c = j; c < N; c++)
            o[c] = 0;
        for (int64_t t = 0; t < n; t++)
            for (int64_t c = j; c < N; c++)
                o[c] |= (uint64_t)(b[t * N + c] >= 0.0f) << t;
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

/* Batch norm + sign of a dense layer's output, fused because it is memory-bound:
 * out = +1 if (x + bias - mean) * scale + beta >= 0 else -1, with scale = gamma * inv_std.
 * No multiply-add contraction, so that each step rounds as numpy and PyTensor round it. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
void bn_sign(const float *X, float *out, int64_t M, int64_t N, const float *bias,
             const float *mean, const float *scale, const float *beta, int threads)
{
#pragma omp parallel for schedule(static) num_threads(n_threads(threads, (double)M * N))
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float y = (X[i * N + j] + bias[j] - mean[j]) * scale[j] + beta[j];
            out[i * N + j] = y >= 0.0f ? 1.0f : -1.0f;
        }
}

/* ---------------------------------------------------------------- XNOR, paper style ---------- */

/* The paper's xnor_gemm (§3.1 l.128-184) on the CPU: the same 16x16 tiling as the baseline, 16
 * words of the inner dimension per step, a scalar popcount per word pair. */
static NO_VECTORIZE void xnor_tile(const uint64_t *Ap, const uint64_t *Bp, float *C, int64_t M,
                                   int64_t N, int64_t W, int64_t K, int64_t row0, int64_t col0)
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

void xnor_gemm_tiled(const uint64_t *Ap, const uint64_t *Bp, float *C, int64_t M, int64_t N,
                     int64_t K, int threads)
{
    int64_t W = (K + 63) / 64;
    int64_t tr = (M + TILE - 1) / TILE, tc = (N + TILE - 1) / TILE;
#pragma omp parallel for schedule(static) num_threads(n_threads(threads, (double)M * N * W))
    for (int64_t t = 0; t < tr * tc; t++)
        xnor_tile(Ap, Bp, C, M, N, W, K, (t / tc) * TILE, (t % tc) * TILE);
}

/* ---------------------------------------------------------------- XNOR, blocked -------------- */

/* Register-blocked like an SGEMM micro-kernel: MR rows of Ap times an NR-column panel of Bp,
 * the panel copied once into a contiguous buffer (Bp's rows are N words apart, which would
 * alias in the L1 cache), each A word broadcast against NR/VW vectors of B words. */
#if XNOR_SIMD == 512
#define MR 6
#define NR 32
#elif XNOR_SIMD == 256
#define MR 2
#define NR 8
#else
#define MR 4
#define NR 4
#endif

/* cnt[r][c] = sum_w popcount(a_r[w] ^ panel[w][c]) for MR rows a_r and one panel. */
static inline void micro_kernel(const uint64_t *const a[MR], const uint64_t *panel, int64_t W,
                                int64_t cnt[MR][NR])
{
#if XNOR_SIMD == 512
    __m512i acc[MR][NR / 8];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NR / 8; v++)
            acc[r][v] = _mm512_setzero_si512();
    for (int64_t w = 0; w < W; w++) {
        __m512i b[NR / 8];
        for (int v = 0; v < NR / 8; v++)
            b[v] = _mm512_loadu_si512(panel + w * NR + 8 * v);
        for (int r = 0; r < MR; r++) {
            __m512i x = _mm512_set1_epi64((long long)a[r][w]);
            for (int v = 0; v < NR / 8; v++)
                acc[r][v] = _mm512_add_epi64(acc[r][v],
                                             _mm512_popcnt_epi64(_mm512_xor_si512(x, b[v])));
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NR / 8; v++)
            _mm512_storeu_si512(&cnt[r][8 * v], acc[r][v]);
#elif XNOR_SIMD == 256
    /* No vector popcount in AVX2: a nibble look-up table through vpshufb, then vpsadbw to sum
     * the bytes of each 64-bit lane (Mula's method). */
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    __m256i acc[MR][NR / 4];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NR / 4; v++)
            acc[r][v] = zero;
    for (int64_t w = 0; w < W; w++) {
        __m256i b[NR / 4];
        for (int v = 0; v < NR / 4; v++)
            b[v] = _mm256_loadu_si256((const __m256i *)(panel + w * NR + 4 * v));
        for (int r = 0; r < MR; r++) {
            __m256i x = _mm256_set1_epi64x((long long)a[r][w]);
            for (int v = 0; v < NR / 4; v++) {
                __m256i y = _mm256_xor_si256(x, b[v]);
                __m256i c = _mm256_add_epi8(
                    _mm256_shuffle_epi8(lut, _mm256_and_si256(y, low)),
                    _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi64(y, 4), low)));
                acc[r][v] = _mm256_add_epi64(acc[r][v], _mm256_sad_epu8(c, zero));
            }
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NR / 4; v++)
            _mm256_storeu_si256((__m256i *)&cnt[r][4 * v], acc[r][v]);
#else
    for (int r = 0; r < MR; r++)
        for (int c = 0; c < NR; c++)
            cnt[r][c] = 0;
    for (int64_t w = 0; w < W; w++)
        for (int r = 0; r < MR; r++) {
            uint64_t x = a[r][w];
            for (int c = 0; c < NR; c++)
                cnt[r][c] += __builtin_popcountll(x ^ panel[w * NR + c]);
        }
#endif
}

/* C = sum_n 2^n * (K - 2 * popcount-sum of plane n of Ap against Bp), for n < nplanes, with Ap
 * (nplanes, M, W): nplanes = 1 is the XNOR GEMM, nplanes = 8 Algorithm 4's bit-plane layer. */
void xnor_gemm_planes(const uint64_t *Ap, int nplanes, const uint64_t *Bp, float *C, int64_t M,
                      int64_t N, int64_t K, int threads)
{
    int64_t W = (K + 63) / 64, panels = (N + NR - 1) / NR;
    int64_t Kp = K * ((INT64_C(1) << nplanes) - 1); /* sum_n 2^n K */
    uint64_t *zeros = calloc((size_t)(W > 0 ? W : 1), sizeof *zeros);
#pragma omp parallel num_threads(n_threads(threads, (double)nplanes * M * N * W))
    {
        uint64_t *panel = malloc((size_t)(W > 0 ? W : 1) * NR * sizeof *panel);
        int64_t cnt[MR][NR], tot[MR][NR];
#pragma omp for schedule(dynamic, 1)
        for (int64_t p = 0; p < panels; p++) {
            int64_t j0 = p * NR, nc = N - j0 < NR ? N - j0 : NR;
            for (int64_t w = 0; w < W; w++)
                for (int c = 0; c < NR; c++)
                    panel[w * NR + c] = c < nc ? Bp[w * N + j0 + c] : 0;
            for (int64_t i0 = 0; i0 < M; i0 += MR) {
                int64_t nr = M - i0 < MR ? M - i0 : MR;
                const uint64_t *a[MR];
                for (int n = 0; n < nplanes; n++) {
                    for (int r = 0; r < MR; r++)
                        a[r] = r < nr ? Ap + ((int64_t)n * M + i0 + r) * W : zeros;
                    micro_kernel(a, panel, W, cnt);
                    for (int r = 0; r < MR; r++)
                        for (int c = 0; c < NR; c++)
                            tot[r][c] = (n ? tot[r][c] : 0) + (cnt[r][c] << n);
                }
                for (int r = 0; r < nr; r++) {
                    float *c = C + (i0 + r) * N + j0;
                    for (int64_t q = 0; q < nc; q++)
                        c[q] = (float)(Kp - 2 * tot[r][q]);
                }
            }
        }
        free(panel);
    }
    free(zeros);
}

void xnor_gemm(const uint64_t *Ap, const uint64_t *Bp, float *C, int64_t M, int64_t N,
               int64_t K, int threads)
{
    xnor_gemm_planes(Ap, 1, Bp, C, M, N, K, threads);
}
