/*
 * runtime/cpu/matmul_avx2.c — AVX2 + FMA + F16C register tiles for the
 * float weight types, which keep one accumulator per (row, token): F32, F16,
 * BF16 (Haswell and later). The quantized types run in gemm_avx2.c, one
 * lane per row.
 *
 * Same register-tile scheme as matmul_avx512.c (RM rows x RN tokens per
 * tile, each weight block loaded once per tile, each activation block
 * loaded once per tile), with 256-bit vectors.
 *
 * Every (row, token) accumulates the same lanes in the same order whatever
 * the tile's shape, so a row's result does not depend on the number of
 * tokens or rows in the call (batch invariance, runtime/kernels.h).
 *
 * Compiled with -mavx2 -mfma -mf16c -mbmi2.
 */

#include <immintrin.h>

#include "runtime/cpu/cpu_kernels.h"

LOOM_NO_UBSAN_BEGIN /* why: cpu_kernels.h */
#define AI LOOM_AI
#define UNROLL LOOM_UNROLL

/* Largest tile; register arrays are declared at this size (arrays sized by
 * the RM/RN parameters would be VLAs, which compilers keep in memory). */
enum { XM = 4, XN = 4 };

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ======================= F32 / F16 / BF16 weights ======================= */

AI __m256 ldw_f(const int type, const uint8_t *p) {
    if (type == LOOM_TYPE_F32) return _mm256_loadu_ps((const float *)p);
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (type == LOOM_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AI float wf_scalar(const int type, const uint8_t *p) {
    if (type == LOOM_TYPE_F32) return loom_ld_f32(p);
    if (type == LOOM_TYPE_F16) return _cvtsh_ss(loom_ld_u16(p));
    return loom_bf16_to_f32(loom_ld_u16(p));
}

AI void tile_f(const int type, const int RM, const int RN, const uint8_t *w, size_t ws, int64_t k,
               const uint8_t *x, size_t xs, float *y, int64_t ldy, size_t pf) {
    const int es = type == LOOM_TYPE_F32 ? 4 : 2;
    __m256 acc[XM][XN];
    UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) {
        __m256 wv[XM];
        UNROLL for (int r = 0; r < RM; r++) {
            if ((j & 15) == 0) LOOM_PREFETCH_AHEAD(w + r * ws + j * es, pf, 16 * es);
            wv[r] = ldw_f(type, w + r * ws + j * es);
        }
        UNROLL for (int t = 0; t < RN; t++) {
            const __m256 a = _mm256_loadu_ps((const float *)(x + t * xs + 4 * j));
            UNROLL for (int r = 0; r < RM; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], a, acc[r][t]);
        }
    }
    UNROLL for (int t = 0; t < RN; t++) UNROLL for (int r = 0; r < RM; r++) {
        float s = hsum8(acc[r][t]);
        for (int64_t jj = j; jj < k; jj++)
            s += wf_scalar(type, w + r * ws + jj * es) * loom_ld_f32(x + t * xs + 4 * jj);
        y[t * ldy + r] = s;
    }
}

/* ============================ instantiation ============================ */

/* the F family of the weight-type list; Q, Q8 and K are in gemm_avx2.c.
 * Prefill tiles of 3 rows x 4 tokens: 12 accumulators, 3 weight vectors
 * and an activation fill the 16 ymm registers, and each weight vector's
 * conversion (F16, BF16) serves 4 tokens instead of 3. Xeon family 6
 * model 207, one thread, bench_matmul -i avx2 2048 x 2048, GFLOP/s, 3 x 3
 * -> 3 x 4: F16 n = 4 46 -> 66, 8 56 -> 64, 128 62 -> 66; BF16 n = 4
 * 45 -> 66, 128 58 -> 65; F32 n = 4 31 -> 41, 128 41 -> 49 (same lanes,
 * so the same bits). */
#define KERNEL(p, T, s, fn, RMD, RM)                                                                  \
    LOOM_TILE_SET(s, fn, LOOM_TYPE_##T, RMD, RM, 4)                                                   \
    void p##s(LOOM_MATMUL_PARAMS) { loom_run_tiles(&s##_tiles, w, ws, k, nr, xq, xs, n, y, ldy); }
#define KERNEL_F(p, T, s) KERNEL(p, T, s, tile_f, 4, 3)
#define KERNEL_Q8(p, T, s)
#define KERNEL_Q(p, T, s)
#define KERNEL_K(p, T, s)
#define FAMILY(p, T, s, f) KERNEL_##f(p, T, s)
LOOM_MATMUL_TYPES(FAMILY, loom_avx2_mm_)

LOOM_NO_UBSAN_END
