#include "attention.h"

#include <stdint.h>

#include "kernels.h"
#include "quant.h"

static void scores_scalar(loom_type kv, const float *q, const void *k, int n, int hd, float scale, float *scores) {
    for (int t = 0; t < n; t++) {
        float s = 0.0f;
        if (kv == LOOM_TYPE_F32) {
            const float *kr = (const float *)k + (size_t)t * hd;
            for (int i = 0; i < hd; i++) s += q[i] * kr[i];
        } else {
            const uint16_t *kr = (const uint16_t *)k + (size_t)t * hd;
            for (int i = 0; i < hd; i++) s += q[i] * loom_f16_to_f32(kr[i]);
        }
        scores[t] = s * scale;
    }
}

static void accum_scalar(loom_type kv, const float *p, const void *v, int n, int hd, float *out) {
    for (int t = 0; t < n; t++) {
        float a = p[t];
        if (kv == LOOM_TYPE_F32) {
            const float *vr = (const float *)v + (size_t)t * hd;
            for (int i = 0; i < hd; i++) out[i] += a * vr[i];
        } else {
            const uint16_t *vr = (const uint16_t *)v + (size_t)t * hd;
            for (int i = 0; i < hd; i++) out[i] += a * loom_f16_to_f32(vr[i]);
        }
    }
}

void loom_attn_scores(loom_type kv, const float *q, const void *k, int n, int hd, float scale, float *scores) {
    loom_isa isa = loom_isa_get();
    if (isa >= LOOM_ISA_AVX512 && hd % 16 == 0) loom_attn_scores_avx512(kv, q, k, n, hd, scale, scores);
    else if (isa >= LOOM_ISA_AVX2 && hd % 8 == 0) loom_attn_scores_avx2(kv, q, k, n, hd, scale, scores);
    else scores_scalar(kv, q, k, n, hd, scale, scores);
}

void loom_attn_accum(loom_type kv, const float *p, const void *v, int n, int hd, float *out) {
    loom_isa isa = loom_isa_get();
    if (isa >= LOOM_ISA_AVX512 && hd % 16 == 0) loom_attn_accum_avx512(kv, p, v, n, hd, out);
    else if (isa >= LOOM_ISA_AVX2 && hd % 8 == 0) loom_attn_accum_avx2(kv, p, v, n, hd, out);
    else accum_scalar(kv, p, v, n, hd, out);
}
