/* runtime/cpu/rowops_avx512.c — RMSNorm and SwiGLU on 16 floats at a time
 * (see runtime/rowops.h for the accuracy contract). */
#include <immintrin.h>
#include <math.h>

#include "runtime/cpu/act_rows.h"
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

/* ---- activation quantization (act_rows.h): quant_ref.c's operations, 16 lanes at a time ----
 * max(|x|, m) keeps m for a NaN (VMAXPS returns its second operand), the
 * clamp's max(v, -127) gives -127 for NaN, the conversion rounds to nearest
 * even: the scalar level's bytes. */

static inline float act_amax(const float *x, int n) {
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + j)), m);
    return _mm512_reduce_max_ps(m);
}

static inline int act_quant16(const float *x, float inv, int8_t *q) {
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x), _mm512_set1_ps(inv)), lo), hi);
    const __m128i b = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v));
    _mm_storeu_si128((__m128i *)q, b);
    return act_sum16(b);
}

LOOM_ACT_ROWS(avx512)



/* 16 F16 values as floats (masked: the others 0). */
static inline __m512 f16x16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline __m512 f16x16_mask(__mmask16 m, const uint16_t *p) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }

/* LoRA's halves keep several independent FMA chains (an FMA's latency is
 * four of its issue slots): lora_down one per (A row, x row), eight with
 * two A rows and four x rows, which also halves the loads per FMA; lora_up
 * four output chunks of 16 at once. */
void loom_avx512_lora_down(const uint16_t *a, int nk, int64_t cols, const float *const *x, float *const *t,
                           const float *s, int n) {
    /* named accumulators: an array would live on the stack */
    __m512 d0 = _mm512_setzero_ps(), d1 = d0, d2 = d0, d3 = d0, e0 = d0, e1 = d0, e2 = d0, e3 = d0;
    const float *x0 = x[0], *x1 = x[n > 1 ? 1 : 0], *x2 = x[n > 2 ? 2 : 0], *x3 = x[n > 3 ? 3 : 0];
    const uint16_t *b = nk > 1 ? a + cols : a;
    for (int64_t c = 0; c < cols; c += 16) {
        const __mmask16 m = cols - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - c)) - 1);
        const __m512 av = f16x16_mask(m, a + c), bv = f16x16_mask(m, b + c);
        const __m512 v0 = _mm512_maskz_loadu_ps(m, x0 + c), v1 = _mm512_maskz_loadu_ps(m, x1 + c),
                     v2 = _mm512_maskz_loadu_ps(m, x2 + c), v3 = _mm512_maskz_loadu_ps(m, x3 + c);
        d0 = _mm512_fmadd_ps(av, v0, d0);
        d1 = _mm512_fmadd_ps(av, v1, d1);
        d2 = _mm512_fmadd_ps(av, v2, d2);
        d3 = _mm512_fmadd_ps(av, v3, d3);
        e0 = _mm512_fmadd_ps(bv, v0, e0);
        e1 = _mm512_fmadd_ps(bv, v1, e1);
        e2 = _mm512_fmadd_ps(bv, v2, e2);
        e3 = _mm512_fmadd_ps(bv, v3, e3);
    }
    t[0][0] = s[0] * _mm512_reduce_add_ps(d0);
    if (n > 1) t[1][0] = s[1] * _mm512_reduce_add_ps(d1);
    if (n > 2) t[2][0] = s[2] * _mm512_reduce_add_ps(d2);
    if (n > 3) t[3][0] = s[3] * _mm512_reduce_add_ps(d3);
    if (nk < 2) return;
    t[0][1] = s[0] * _mm512_reduce_add_ps(e0);
    if (n > 1) t[1][1] = s[1] * _mm512_reduce_add_ps(e1);
    if (n > 2) t[2][1] = s[2] * _mm512_reduce_add_ps(e2);
    if (n > 3) t[3][1] = s[3] * _mm512_reduce_add_ps(e3);
}

void loom_avx512_lora_up(float *y, const float *t, const uint16_t *bt, int r, int64_t rows, int64_t o0, int64_t o1) {
    int64_t o = o0;
    for (; o + 64 <= o1; o += 64) {
        __m512 v0 = _mm512_loadu_ps(y + o), v1 = _mm512_loadu_ps(y + o + 16), v2 = _mm512_loadu_ps(y + o + 32),
               v3 = _mm512_loadu_ps(y + o + 48);
        for (int k = 0; k < r; k++) {
            const uint16_t *b = bt + (size_t)k * rows + o;
            const __m512 tk = _mm512_set1_ps(t[k]);
            v0 = _mm512_fmadd_ps(tk, f16x16(b), v0);
            v1 = _mm512_fmadd_ps(tk, f16x16(b + 16), v1);
            v2 = _mm512_fmadd_ps(tk, f16x16(b + 32), v2);
            v3 = _mm512_fmadd_ps(tk, f16x16(b + 48), v3);
        }
        _mm512_storeu_ps(y + o, v0);
        _mm512_storeu_ps(y + o + 16, v1);
        _mm512_storeu_ps(y + o + 32, v2);
        _mm512_storeu_ps(y + o + 48, v3);
    }
    for (; o < o1; o += 16) {
        __mmask16 m = o1 - o >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (o1 - o)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, y + o);
        for (int k = 0; k < r; k++)
            v = _mm512_fmadd_ps(_mm512_set1_ps(t[k]), f16x16_mask(m, bt + (size_t)k * rows + o), v);
        _mm512_mask_storeu_ps(y + o, m, v);
    }
}
