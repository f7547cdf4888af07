/* runtime/cpu/rowops_avx512.c — RMSNorm and SwiGLU on 16 floats at a time
 * (see runtime/rowops.h for the accuracy contract). */
#include <immintrin.h>
#include <math.h>

#include "runtime/cpu/cpu_kernels.h"
#include "runtime/ops.h"
#include "runtime/cpu/vmath.h"

void loom_avx512_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        a0 = _mm512_fmadd_ps(v0, v0, a0);
        a1 = _mm512_fmadd_ps(v1, v1, a1);
    }
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        a0 = _mm512_fmadd_ps(v, v, a0);
    }
    float ss = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    __m512 scale = _mm512_set1_ps(1.0f / sqrtf(ss / (float)n + eps));
    for (i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), scale);
        _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, w + i)));
    }
}

void loom_avx512_swiglu(float *gate, const float *up, int n) {
    const __m512 nlog2e = _mm512_set1_ps(-1.4426950408889634f), one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 g = _mm512_maskz_loadu_ps(k, gate + i), u = _mm512_maskz_loadu_ps(k, up + i);
        /* silu(g) = g / (1 + e^-g); e^-g overflowing to inf gives -0, as expf would */
        __m512 d = _mm512_add_ps(one, loom_exp2_16(_mm512_mul_ps(g, nlog2e)));
        _mm512_mask_storeu_ps(gate + i, k, _mm512_div_ps(_mm512_mul_ps(g, u), d));
    }
}

/* LayerNorm runs once per row: the scalar reference. */
void loom_avx512_layernorm(float *out, const float *x, const float *w, const float *b, int n, float eps) {
    loom_layernorm_row(out, x, w, b, n, eps);
}

/* gelu(x) = x / (1 + e^(-2y)), y = sqrt(2/pi)(x + 0.044715x^3) (as loom_avx2_gelu). */
void loom_avx512_gelu(float *gate, const float *up, int n) {
    const __m512 k = _mm512_set1_ps(-2.0f * 0.7978845608028654f * 1.4426950408889634f), c = _mm512_set1_ps(0.044715f);
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, gate + i);
        __m512 y = _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_mul_ps(c, x), x, one));
        __m512 d = _mm512_add_ps(one, loom_exp2_16(_mm512_mul_ps(y, k)));
        __m512 num = up ? _mm512_mul_ps(x, _mm512_maskz_loadu_ps(m, up + i)) : x;
        _mm512_mask_storeu_ps(gate + i, m, _mm512_div_ps(num, d));
    }
}

/* ---- activation quantization: quant_ref.c's operations, 16 lanes at a time ----
 * max(|x|, m) keeps m for a NaN (VMAXPS returns its second operand), the
 * clamp's max(v, -127) gives -127 for NaN, the conversion rounds to nearest
 * even: the scalar level's bytes (tests/test_actq.c checks every level). */

/* amax of n floats (n a multiple of 16) */
static inline float act_amax(const float *x, int n) {
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + j)), m);
    return _mm512_reduce_max_ps(m);
}

static inline float act_scale(float amax, float *inv) {
    const float d = amax / 127.0f;
    *inv = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

/* the 16 quants of x[0..16) at q, their int32 values returned */
static inline __m512i act_quant16(const float *x, __m512 inv, int8_t *q) {
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x), inv), lo), hi);
    const __m512i i = _mm512_cvtps_epi32(v);
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(i));
    return i;
}

void loom_avx512_act_q8_32(const float *x, uint8_t *dst, int64_t k, int64_t b0, int64_t b1) {
    int8_t *qs = (int8_t *)dst;
    uint8_t *dp = dst + k, *sp = dst + k + 4 * (k / 32);
    for (int64_t b = b0; b < b1; b++) {
        const float *xb = x + 32 * b;
        float inv;
        const float d = act_scale(act_amax(xb, 32), &inv);
        const __m512 vi = _mm512_set1_ps(inv);
        const __m512i s = _mm512_add_epi32(act_quant16(xb, vi, qs + 32 * b), act_quant16(xb + 16, vi, qs + 32 * b + 16));
        loom_st_f32(dp + 4 * b, d);
        loom_st_f32(sp + 4 * b, d * (float)_mm512_reduce_add_epi32(s));
    }
}

void loom_avx512_act_q8_K(const float *x, uint8_t *dst, int64_t k, int64_t b0, int64_t b1) {
    (void)k;
    for (int64_t b = b0; b < b1; b++) {
        const float *xb = x + 256 * b;
        loom_block_q8_K blk;
        float inv;
        blk.d = act_scale(act_amax(xb, 256), &inv);
        const __m512 vi = _mm512_set1_ps(inv);
        for (int g = 0; g < 16; g++)
            blk.bsums[g] = (int16_t)_mm512_reduce_add_epi32(act_quant16(xb + 16 * g, vi, blk.qs + 16 * g));
        memcpy(dst + (size_t)b * sizeof blk, &blk, sizeof blk);
    }
}
