/* runtime/cpu/attn_avx512.c — attention inner loops, 16 floats per vector
 * (head_dim a multiple of 16; see runtime/attention.h). */
#include <immintrin.h>
#include <stdint.h>

#include "../attention.h"

void loom_attn_scores_avx512(loom_type kv, const float *q, const void *k, int n, int hd, float scale, float *scores) {
    for (int t = 0; t < n; t++) {
        __m512 acc = _mm512_setzero_ps();
        if (kv == LOOM_TYPE_F32) {
            const float *kr = (const float *)k + (size_t)t * hd;
            for (int i = 0; i < hd; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(kr + i), acc);
        } else {
            const uint16_t *kr = (const uint16_t *)k + (size_t)t * hd;
            for (int i = 0; i < hd; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kr + i))), acc);
        }
        scores[t] = _mm512_reduce_add_ps(acc) * scale;
    }
}

void loom_attn_accum_avx512(loom_type kv, const float *p, const void *v, int n, int hd, float *out) {
    for (int i = 0; i < hd; i += 16) {
        __m512 acc = _mm512_loadu_ps(out + i);
        for (int t = 0; t < n; t++) {
            __m512 a = _mm512_set1_ps(p[t]);
            if (kv == LOOM_TYPE_F32) {
                const float *kr = (const float *)v + (size_t)t * hd;
                acc = _mm512_fmadd_ps(a, _mm512_loadu_ps(kr + i), acc);
            } else {
                const uint16_t *kr = (const uint16_t *)v + (size_t)t * hd;
                acc = _mm512_fmadd_ps(a, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kr + i))), acc);
            }
        }
        _mm512_storeu_ps(out + i, acc);
    }
}
