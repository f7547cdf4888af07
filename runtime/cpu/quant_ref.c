/*
 * runtime/cpu/quant_ref.c — row dequantization (plain C, used by every ISA
 * level) and the scalar level's activation quantization (the vector levels'
 * are in rowops_<level>.c, the same bytes); kernels.h has the layouts.
 *
 * Built with the baseline x86-64 flags, so no multiply-add is ever fused and
 * dequantization is bit-equal to quant.h's reference and to GGML.
 */
#include <math.h>
#include <string.h>

#include "runtime/cpu/act_rows.h"
#include "runtime/cpu/cpu_kernels.h"

bool loom_type_can_matmul(loom_type wt) {
    switch (wt) {
#define CASE(p, T, s, f) case LOOM_TYPE_##T:
        LOOM_MATMUL_TYPES(CASE, _) return true;
#undef CASE
    default: return false;
    }
}

void loom_dequant_row(loom_type t, const void *src, float *dst, int64_t k) {
    const uint8_t *s = (const uint8_t *)src;
    switch (t) {
    case LOOM_TYPE_F32: memcpy(dst, s, (size_t)k * sizeof(float)); return;
    case LOOM_TYPE_F16:
        for (int64_t i = 0; i < k; i++) dst[i] = loom_f16_to_f32(loom_rd_u16(s + 2 * i));
        return;
    case LOOM_TYPE_BF16:
        for (int64_t i = 0; i < k; i++) dst[i] = loom_bf16_to_f32(loom_rd_u16(s + 2 * i));
        return;
    default: break;
    }
    const loom_type_traits *tr = loom_type_info((uint32_t)t);
    if (!tr || (!loom_type_can_matmul(t) && t != LOOM_TYPE_Q8_K && t != LOOM_TYPE_IQ4_XS)) return; /* IQ4_XS: embeddings */
    const int64_t nb = k / tr->block_size;
    for (int64_t b = 0; b < nb; b++)
        loom_dequant_block(t, s + (size_t)b * tr->type_size, dst + b * tr->block_size);
}

/* ---- activations ---- */

typedef enum { ACT_F32, ACT_Q8_32, ACT_Q8_K, ACT_NONE } act_kind;

static act_kind act_kind_of(loom_type wt) {
    switch (wt) {
    case LOOM_TYPE_F32:
    case LOOM_TYPE_F16:
    case LOOM_TYPE_BF16: return ACT_F32;
    case LOOM_TYPE_Q4_0:
    case LOOM_TYPE_Q4_1:
    case LOOM_TYPE_Q5_0:
    case LOOM_TYPE_Q5_1:
    case LOOM_TYPE_Q8_0:
    case LOOM_TYPE_IQ4_NL:
    case LOOM_TYPE_MXFP4: return ACT_Q8_32;
    case LOOM_TYPE_Q2_K:
    case LOOM_TYPE_Q3_K:
    case LOOM_TYPE_Q4_K:
    case LOOM_TYPE_Q5_K:
    case LOOM_TYPE_Q6_K: return ACT_Q8_K;
    default: return ACT_NONE;
    }
}

size_t loom_act_row_bytes(loom_type wt, int64_t k) {
    if (k < 0) return 0;
    switch (act_kind_of(wt)) {
    case ACT_F32: return (size_t)k * sizeof(float);
    case ACT_Q8_32: return k % 32 ? 0 : (size_t)k + 8 * (size_t)(k / 32);
    case ACT_Q8_K: return k % 256 ? 0 : (size_t)(k / 256) * sizeof(loom_block_q8_K);
    default: return 0;
    }
}

/* Activation quantization: per block, d = max|x| / 127 and q = x * (1/d)
 * rounded to nearest (ties to even), clamped to [-127, 127] (NaN -> -127).
 * The SSE2 path (always there on x86-64) and the portable path compute the
 * same operations and give identical bytes. */

#if defined(__SSE2__)
#include <emmintrin.h>

/* max |x[j]| for j < n (n a multiple of 4); NaNs are skipped */
static float act_amax(const float *x, int n) {
    const __m128 absmask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    __m128 m = _mm_setzero_ps();
    for (int j = 0; j < n; j += 4) m = _mm_max_ps(_mm_and_ps(_mm_loadu_ps(x + j), absmask), m);
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtss_f32(m);
}

/* q[0..16) = quantized x[0..16); returns their sum */
static int act_quant16(const float *x, float inv, int8_t *q) {
    const __m128 vi = _mm_set1_ps(inv), lo = _mm_set1_ps(-127.0f), hi = _mm_set1_ps(127.0f);
    __m128i r[4];
    for (int i = 0; i < 4; i++) {
        __m128 v = _mm_mul_ps(_mm_loadu_ps(x + 4 * i), vi);
        v = _mm_min_ps(_mm_max_ps(v, lo), hi); /* max(NaN, lo) = lo */
        r[i] = _mm_cvtps_epi32(v);             /* nearest even (default MXCSR) */
    }
    const __m128i b = _mm_packs_epi16(_mm_packs_epi32(r[0], r[1]), _mm_packs_epi32(r[2], r[3]));
    _mm_storeu_si128((__m128i *)q, b);
    return act_sum16(b);
}
#else
static float act_amax(const float *x, int n) {
    float m = 0.0f;
    for (int j = 0; j < n; j++) {
        const float a = fabsf(x[j]);
        m = a > m ? a : m;
    }
    return m;
}

static int act_quant16(const float *x, float inv, int8_t *q) {
    int sum = 0;
    for (int j = 0; j < 16; j++) {
        float v = x[j] * inv;
        v = v >= -127.0f ? v : -127.0f;
        v = v <= 127.0f ? v : 127.0f;
        /* +-1.5*2^23 rounds |v| < 2^22 to an integer, nearest even */
        const int i = (int)((v + 12582912.0f) - 12582912.0f);
        q[j] = (int8_t)i;
        sum += i;
    }
    return sum;
}
#endif

/* The scalar level's activation quantizers (SSE2 where there is SSE2). */
LOOM_ACT_ROWS(scalar)

void loom_act_quantize(loom_type wt, const float *x, void *dst, int64_t k) {
    switch (act_kind_of(wt)) {
    case ACT_F32: memcpy(dst, x, (size_t)k * sizeof(float)); return;
    case ACT_Q8_32: loom_kernels_get()->act_q8_32(x, (uint8_t *)dst, k, 0, k / 32); return;
    case ACT_Q8_K: loom_kernels_get()->act_q8_K(x, (uint8_t *)dst, k, 0, k / 256); return;
    default: return;
    }
}

void loom_act_dequantize(loom_type wt, const void *src, float *dst, int64_t k) {
    const uint8_t *s = (const uint8_t *)src;
    switch (act_kind_of(wt)) {
    case ACT_F32: memcpy(dst, s, (size_t)k * sizeof(float)); return;
    case ACT_Q8_32: {
        const int8_t *qs = loom_act32_qs(s);
        const uint8_t *dp = loom_act32_d(s, k);
        for (int64_t j = 0; j < k; j++) dst[j] = loom_ld_f32(dp + 4 * (j / 32)) * (float)qs[j];
        return;
    }
    case ACT_Q8_K:
        for (int64_t b = 0; b < k / 256; b++)
            loom_dequant_block_q8_K(s + (size_t)b * sizeof(loom_block_q8_K), dst + 256 * b);
        return;
    default: return;
    }
}
