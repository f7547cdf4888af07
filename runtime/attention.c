#include "attention.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "ops.h"
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

/* ------------------------------------------------------------ orchestration */

size_t loom_attention_scratch_floats(const loom_kv_config *kc, int n_q, int n_kv, int head_dim, int max_rows) {
    (void)n_q;
    (void)n_kv;
    (void)head_dim;
    (void)max_rows;
    return (size_t)kc->max_ctx;
}

void loom_attention_store(const loom_attention_args *a) {
    const loom_kv_config *kc = loom_kv_config_of(a->kv);
    int hd = a->head_dim, bt = kc->block_tokens, kvdim = a->n_kv * hd;
    size_t es = kc->type == LOOM_TYPE_F32 ? 4 : 2;
    for (int i = 0; i < a->n; i++) {
        int p = a->pos[i];
        int32_t blk = loom_kv_table(a->kv, a->seq[i])[p / bt];
        uint8_t *kb = loom_kv_k_block(a->kv, a->layer, blk), *vb = loom_kv_v_block(a->kv, a->layer, blk);
        const float *ki = a->k + (size_t)i * kvdim, *vi = a->v + (size_t)i * kvdim;
        for (int h = 0; h < a->n_kv; h++) {
            size_t off = ((size_t)h * bt + p % bt) * hd * es;
            if (kc->type == LOOM_TYPE_F32) {
                memcpy(kb + off, ki + (size_t)h * hd, (size_t)hd * 4);
                memcpy(vb + off, vi + (size_t)h * hd, (size_t)hd * 4);
            } else {
                uint16_t *kd = (uint16_t *)(kb + off), *vd = (uint16_t *)(vb + off);
                for (int j = 0; j < hd; j++) {
                    kd[j] = loom_f32_to_f16(ki[(size_t)h * hd + j]);
                    vd[j] = loom_f32_to_f16(vi[(size_t)h * hd + j]);
                }
            }
        }
    }
}

typedef struct {
    const loom_attention_args *a;
    float *scratch;
    size_t scratch_floats;
} att_task;

static void att_worker(void *ctx, int ith, int nth) {
    const att_task *t = ctx;
    const loom_attention_args *a = t->a;
    const loom_kv_config *kc = loom_kv_config_of(a->kv);
    int hd = a->head_dim, bt = kc->block_tokens, qdim = a->n_q * hd;
    size_t es = kc->type == LOOM_TYPE_F32 ? 4 : 2;
    float scale = 1.0f / sqrtf((float)hd);
    float *sc = t->scratch + (size_t)ith * t->scratch_floats;
    int64_t i0, i1;
    loom_split_range((int64_t)a->n * a->n_q, 1, ith, nth, &i0, &i1);
    for (int64_t it = i0; it < i1; it++) {
        int row = (int)(it / a->n_q), h = (int)(it % a->n_q), kvh = a->q_to_kv[h];
        int pos = a->pos[row];
        const int32_t *table = loom_kv_table(a->kv, a->seq[row]);
        const float *q = a->q + (size_t)row * qdim + (size_t)h * hd;
        /* scores over the sequence's blocks, softmax, then the weighted sum of values */
        for (int p0 = 0; p0 <= pos; p0 += bt) {
            int cnt = pos + 1 - p0 < bt ? pos + 1 - p0 : bt;
            const uint8_t *kb = loom_kv_k_block(a->kv, a->layer, table[p0 / bt]);
            loom_attn_scores(kc->type, q, kb + (size_t)kvh * bt * hd * es, cnt, hd, scale, sc + p0);
        }
        loom_softmax_row(sc, pos + 1);
        float *o = a->out + (size_t)row * qdim + (size_t)h * hd;
        memset(o, 0, (size_t)hd * sizeof(float));
        for (int p0 = 0; p0 <= pos; p0 += bt) {
            int cnt = pos + 1 - p0 < bt ? pos + 1 - p0 : bt;
            const uint8_t *vb = loom_kv_v_block(a->kv, a->layer, table[p0 / bt]);
            loom_attn_accum(kc->type, sc + p0, vb + (size_t)kvh * bt * hd * es, cnt, hd, o);
        }
    }
}

void loom_attention_compute(const loom_attention_args *a, loom_pool *pool, float *scratch) {
    const loom_kv_config *kc = loom_kv_config_of(a->kv);
    att_task t = {a, scratch, loom_attention_scratch_floats(kc, a->n_q, a->n_kv, a->head_dim, a->n)};
    loom_pool_run(pool, att_worker, &t);
}
