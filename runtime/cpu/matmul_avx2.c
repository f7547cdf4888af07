/*
 * runtime/cpu/matmul_avx2.c — AVX2 + FMA + F16C register tiles for the
 * weight types that keep one accumulator per (row, token): F32, F16, BF16
 * and Q8_0 (Haswell and later; no VNNI assumed). The 4/5/6-bit types run in
 * gemm_avx2.c, one lane per row.
 *
 * Same register-tile scheme as matmul_avx512.c (RM rows x RN tokens per
 * tile, each weight block decoded once per tile, each activation block
 * loaded once per tile), with 256-bit vectors. Q8_0 uses the classic integer
 * dot product with the sign trick: VPMADDUBSW of |w| and sign(a, w) (at most
 * 2*128*127 per int16 pair, no saturation), then VPMADDWD.
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
               const uint8_t *x, size_t xs, float *y, int64_t ldy) {
    const int es = type == LOOM_TYPE_F32 ? 4 : 2;
    __m256 acc[XM][XN];
    UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) {
        __m256 wv[XM];
        UNROLL for (int r = 0; r < RM; r++) {
            if ((j & 15) == 0) LOOM_PREFETCH_NEXT_TILE(w + (RM + r) * ws + j * es, 16 * es);
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

/* ================================ Q8_0 ================================ */

AI void tile_q8(const int type, const int RM, const int RN, const uint8_t *w, size_t ws, int64_t k, const uint8_t *x, size_t xs,
                float *y, int64_t ldy) {
    const int64_t nb = k / 32;
    const size_t bs = loom_qblock_bytes(type);
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 acc[XM][XN];
    UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i q[XM], sgn[XM];
        __m256 dw[XM];
        UNROLL for (int r = 0; r < RM; r++) {
            const uint8_t *p = w + r * ws + b * bs;
            LOOM_PREFETCH_NEXT_TILE(p + RM * ws, bs);
            dw[r] = _mm256_set1_ps(_cvtsh_ss(loom_ld_u16(p)));
            sgn[r] = _mm256_loadu_si256((const __m256i *)(p + 2)); /* keep |w|; the signs go onto the activations */
            q[r] = _mm256_abs_epi8(sgn[r]);
        }
        UNROLL for (int t = 0; t < RN; t++) {
            const uint8_t *xt = x + t * xs;
            const __m256i a = _mm256_loadu_si256((const __m256i *)(xt + 32 * b));
            const __m256 da = _mm256_set1_ps(loom_ld_f32(xt + k + 4 * b));
            UNROLL for (int r = 0; r < RM; r++) {
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q[r], _mm256_sign_epi8(a, sgn[r])), ones16);
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), da), dw[r], acc[r][t]);
            }
        }
    }
    UNROLL for (int t = 0; t < RN; t++) UNROLL for (int r = 0; r < RM; r++) y[t * ldy + r] = hsum8(acc[r][t]);
}

/* ============================ instantiation ============================ */

/* the F and Q8 families of the weight-type list; Q and K are in gemm_avx2.c */
#define KERNEL(p, T, s, fn, RMD, RM)                                                                  \
    LOOM_TILE_SET(s, fn, LOOM_TYPE_##T, RMD, RM, 3)                                                   \
    void p##s(LOOM_MATMUL_PARAMS) { loom_run_tiles(&s##_tiles, w, ws, k, nr, xq, xs, n, y, ldy); }
#define KERNEL_F(p, T, s) KERNEL(p, T, s, tile_f, 4, 3)
#define KERNEL_Q8(p, T, s) KERNEL(p, T, s, tile_q8, 2, 2)
#define KERNEL_Q(p, T, s)
#define KERNEL_K(p, T, s)
#define FAMILY(p, T, s, f) KERNEL_##f(p, T, s)
LOOM_MATMUL_TYPES(FAMILY, loom_avx2_mm_)

LOOM_NO_UBSAN_END
