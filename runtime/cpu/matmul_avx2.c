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
/* UBSan's checks multiply the size of these fully unrolled kernels and made
 * clang's sanitizer build take many minutes per file; the kernels keep
 * AddressSanitizer (every vector load is still bounds-checked) and drop only
 * the UB checks (there is no signed arithmetic on data here). */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("undefined"))), apply_to = function)
#endif

#include <immintrin.h>

#include "runtime/cpu/cpu_kernels.h"

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* Largest tile; register arrays are declared at this size (arrays sized by
 * the RM/RN parameters would be VLAs, which compilers keep in memory). */
enum { XM = 4, XN = 3 };

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

AI void tile_q8(const int RM, const int RN, const uint8_t *w, size_t ws, int64_t k, const uint8_t *x, size_t xs,
                float *y, int64_t ldy) {
    const int64_t nb = k / 32;
    const size_t bs = loom_qblock_bytes(LOOM_TYPE_Q8_0);
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

#define TILE(name, body)                                                                   \
    static void name(const uint8_t *w, size_t ws, int64_t k, const uint8_t *x, size_t xs, \
                     float *y, int64_t ldy) {                                              \
        body;                                                                              \
    }
#define TILE_F(name, type, RM, RN) TILE(name, tile_f(type, RM, RN, w, ws, k, x, xs, y, ldy))
#define TILE_Q8(name, type, RM, RN) TILE(name, tile_q8(RM, RN, w, ws, k, x, xs, y, ldy))

/* decode tiles (1 and RMD rows), prefill tiles (1 and RM rows x 1..3 tokens) */
#define KERNEL(fam, tname, type, RMD, RM)                                                   \
    fam(tname##_d1, type, 1, 1)                                                             \
    fam(tname##_dm, type, RMD, 1)                                                           \
    fam(tname##_o2, type, 1, 2)                                                             \
    fam(tname##_o3, type, 1, 3)                                                             \
    fam(tname##_f1, type, RM, 1)                                                            \
    fam(tname##_f2, type, RM, 2)                                                            \
    fam(tname##_f3, type, RM, 3)                                                            \
    static const loom_tile_set tname##_tiles = {                                           \
        RMD, RM, 3, {tname##_d1, tname##_dm},                                               \
        {NULL, tname##_d1, tname##_o2, tname##_o3},                                         \
        {NULL, tname##_f1, tname##_f2, tname##_f3}};                                        \
    static void tname(const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq, \
                      size_t xs, int64_t n, float *y, int64_t ldy) {                        \
        loom_run_tiles(&tname##_tiles, w, ws, k, nr, xq, xs, n, y, ldy);                    \
    }

KERNEL(TILE_F, mm_f32, LOOM_TYPE_F32, 4, 3)
KERNEL(TILE_F, mm_f16, LOOM_TYPE_F16, 4, 3)
KERNEL(TILE_F, mm_bf16, LOOM_TYPE_BF16, 4, 3)
KERNEL(TILE_Q8, mm_q8_0, LOOM_TYPE_Q8_0, 2, 2)

const loom_cpu_kernels loom_cpu_kernels_avx2 = {
    .matmul = {
        [LOOM_TYPE_F32] = mm_f32,
        [LOOM_TYPE_F16] = mm_f16,
        [LOOM_TYPE_BF16] = mm_bf16,
        [LOOM_TYPE_Q4_0] = loom_avx2_lanes_q4_0,
        [LOOM_TYPE_Q4_1] = loom_avx2_lanes_q4_1,
        [LOOM_TYPE_Q5_0] = loom_avx2_lanes_q5_0,
        [LOOM_TYPE_Q5_1] = loom_avx2_lanes_q5_1,
        [LOOM_TYPE_Q8_0] = mm_q8_0,
        [LOOM_TYPE_Q4_K] = loom_avx2_lanes_q4_K,
        [LOOM_TYPE_Q5_K] = loom_avx2_lanes_q5_K,
        [LOOM_TYPE_Q6_K] = loom_avx2_lanes_q6_K,
    },
};

#if defined(__clang__)
#pragma clang attribute pop
#endif
