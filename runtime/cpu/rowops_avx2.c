/* runtime/cpu/rowops_avx2.c — RMSNorm and SwiGLU on 8 floats at a time
 * (see runtime/rowops.h for the accuracy contract). */
#include <immintrin.h>
#include <math.h>

#include "runtime/ops.h"
#include "runtime/cpu/act_rows.h"
#include "runtime/cpu/cpu_kernels.h"
#include "runtime/cpu/vmath.h"

void loom_avx2_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(a0, a1));
    float ss = 0;
    for (int j = 0; j < 8; j++) ss += lanes[j];
    for (; i < n; i++) ss += x[i] * x[i];
    float s = 1.0f / sqrtf(ss / (float)n + eps);
    __m256 scale = _mm256_set1_ps(s);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), scale), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = x[i] * s * w[i];
}

void loom_avx2_swiglu(float *gate, const float *up, int n) {
    const __m256 nlog2e = _mm256_set1_ps(-1.4426950408889634f), one = _mm256_set1_ps(1.0f);
    const __m256 top = _mm256_set1_ps(127.0f); /* loom_exp2_8 has no overflow to inf */
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i), u = _mm256_loadu_ps(up + i);
        __m256 d = _mm256_add_ps(one, loom_exp2_8(_mm256_min_ps(_mm256_mul_ps(g, nlog2e), top)));
        _mm256_storeu_ps(gate + i, _mm256_div_ps(_mm256_mul_ps(g, u), d));
    }
    for (; i < n; i++) gate[i] = loom_silu(gate[i]) * up[i];
}

/* LayerNorm runs once per row: the scalar reference. */
void loom_avx2_layernorm(float *out, const float *x, const float *w, const float *b, int n, float eps) {
    loom_layernorm_row(out, x, w, b, n, eps);
}

/* gelu(x) = 0.5x(1 + tanh(y)) = x / (1 + e^(-2y)), y = sqrt(2/pi)(x + 0.044715x^3):
 * the sigmoid form SwiGLU uses, with its 2^x. */
void loom_avx2_gelu(float *gate, const float *up, int n) {
    const __m256 k = _mm256_set1_ps(-2.0f * 0.7978845608028654f * 1.4426950408889634f), c = _mm256_set1_ps(0.044715f);
    const __m256 one = _mm256_set1_ps(1.0f), top = _mm256_set1_ps(127.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(gate + i);
        __m256 y = _mm256_mul_ps(x, _mm256_fmadd_ps(_mm256_mul_ps(c, x), x, one)); /* x + 0.044715 x^3 */
        __m256 d = _mm256_add_ps(one, loom_exp2_8(_mm256_min_ps(_mm256_mul_ps(y, k), top)));
        __m256 num = up ? _mm256_mul_ps(x, _mm256_loadu_ps(up + i)) : x;
        _mm256_storeu_ps(gate + i, _mm256_div_ps(num, d));
    }
    for (; i < n; i++) gate[i] = loom_gelu(gate[i]) * (up ? up[i] : 1.0f);
}

/* ---- activation quantization (act_rows.h): quant_ref.c's operations, 8 lanes at a time ----
 * max(|x|, m) keeps m for a NaN (MAXPS returns its second operand), the
 * clamp's max(v, -127) gives -127 for NaN, the conversion rounds to nearest
 * even: the scalar level's bytes. */

static inline float act_amax(const float *x, int n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), absmask), m);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_shuffle_ps(h, h, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_max_ps(h, _mm_shuffle_ps(h, h, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtss_f32(h);
}

static inline int act_quant16(const float *x, float inv, int8_t *q) {
    const __m256 vi = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x), vi), lo), hi));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8), vi), lo), hi));
    /* int16 in lane order x0-3 x8-11 | x4-7 x12-15, then 64-bit chunks 0 2 1 3: x0-15 */
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), _MM_SHUFFLE(3, 1, 2, 0));
    const __m128i b = _mm_packs_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    _mm_storeu_si128((__m128i *)q, b);
    return act_sum16(b);
}

LOOM_ACT_ROWS(avx2)



static inline __m256 f16x8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

void loom_avx2_lora_down(const uint16_t *a, int nk, int64_t cols, const float *const *x, float *const *t,
                         const float *s, int n) {
    for (int kk = 0; kk < nk; kk++)
        for (int i = 0; i < n; i++) {
            const uint16_t *ak = a + (size_t)kk * cols;
            __m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();
            int64_t c = 0;
            for (; c + 16 <= cols; c += 16) {
                d0 = _mm256_fmadd_ps(f16x8(ak + c), _mm256_loadu_ps(x[i] + c), d0);
                d1 = _mm256_fmadd_ps(f16x8(ak + c + 8), _mm256_loadu_ps(x[i] + c + 8), d1);
            }
            d0 = _mm256_add_ps(d0, d1);
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(d0), _mm256_extractf128_ps(d0, 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
            float d = _mm_cvtss_f32(h);
            for (; c < cols; c++) d += loom_f16_to_f32(ak[c]) * x[i][c];
            t[i][kk] = s[i] * d;
        }
}

void loom_avx2_lora_up(float *y, const float *t, const uint16_t *bt, int r, int64_t rows, int64_t o0, int64_t o1) {
    int64_t o = o0;
    for (; o + 8 <= o1; o += 8) {
        __m256 v = _mm256_loadu_ps(y + o);
        for (int k = 0; k < r; k++) v = _mm256_fmadd_ps(_mm256_set1_ps(t[k]), f16x8(bt + (size_t)k * rows + o), v);
        _mm256_storeu_ps(y + o, v);
    }
    for (; o < o1; o++) {
        float v = y[o];
        for (int k = 0; k < r; k++) v += t[k] * loom_f16_to_f32(bt[(size_t)k * rows + o]);
        y[o] = v;
    }
}
