/* runtime/cpu/attn_scalar.c — one attention work unit in plain C (the
 * reference level; see runtime/attention.h): tiles of 16 key positions,
 * each converted to float once for all the unit's queries; online softmax
 * in base 2 per tile with libm's exp2f. And the KV store's F16 conversion. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "runtime/cpu/attn_walk.h"

#define TILE LOOM_ATTN_TILE
#define NQM LOOM_ATTN_NQ_MAX

/* Element i of a head's keys or values; Q8_0's scale sc (kv_cache.h). */
static inline float kv_elem(const loom_attn_unit *u, const uint8_t *base, size_t i, const uint8_t *sc) {
    if (u->q8) return (float)(int8_t)base[i] * loom_f16_to_f32(loom_rd_u16(sc));
    return u->f16 ? loom_f16_to_f32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

void loom_scalar_f16_row(const float *src, uint16_t *dst, int n) {
    for (int i = 0; i < n; i++) dst[i] = loom_f32_to_f16(src[i]);
}

void loom_scalar_attn_unit(const loom_attn_unit *u) {
    const int hd = u->head_dim, bt = u->block_tokens, nq = u->nq, ng = hd / 32;
    const size_t head_bytes = loom_attn_head_bytes(u), nel = (size_t)hd * bt; /* Q8_0 scales follow nel codes */
    float *P = u->work;              /* (nq, TILE) scores, then probabilities */
    float *kt = P + NQM * TILE;      /* (hd, TILE) keys of the tile */
    float *vt = kt + (size_t)hd * TILE; /* (TILE, hd) values of the tile */
    for (int j = 0; j < nq; j++)
        for (int d = 0; d < hd; d++) u->q[(size_t)d * NQM + j] = u->qp[j][d] * u->qscale;
    for (int j = 0; j < nq; j++) u->m[j] = -INFINITY, u->l[j] = 0.0f;
    memset(u->acc, 0, (size_t)nq * hd * sizeof(float));
    for (int p0 = u->p_begin; p0 < u->p_end; p0 += bt) {
        const int32_t blk = u->table[p0 / bt];
        const uint8_t *kb = u->k + (size_t)blk * u->block_bytes + (size_t)u->kvh * head_bytes;
        const uint8_t *vb = u->v ? u->v + (size_t)blk * u->block_bytes + (size_t)u->kvh * head_bytes : NULL;
        for (int t0 = 0; t0 < bt && p0 + t0 < u->p_end; t0 += TILE) {
            int nt = bt - t0 < TILE ? bt - t0 : TILE;
            if (nt > u->p_end - p0 - t0) nt = u->p_end - p0 - t0;
            for (int d = 0; d < hd; d++)
                for (int t = 0; t < nt; t++)
                    kt[d * TILE + t] = kv_elem(u, kb, (size_t)d * bt + t0 + t, kb + nel + 2 * ((size_t)(d / 32) * bt + t0 + t));
            for (int t = 0; t < nt; t++) /* without value blocks the values are the keys */
                for (int d = 0; d < hd; d++)
                    vt[t * hd + d] = vb ? kv_elem(u, vb, (size_t)(t0 + t) * hd + d, vb + nel + 2 * ((size_t)(t0 + t) * ng + d / 32))
                                        : kt[d * TILE + t];
            int nv = 0; /* slots any query sees */
            for (int j = 0; j < nq; j++) {
                float *s = P + (size_t)j * TILE;
                int c = u->lim[j] - (p0 + t0) + 1; /* slots query j sees: [c0, c) */
                c = c < 0 ? 0 : c > nt ? nt : c;
                int c0 = u->lo ? u->lo[j] - (p0 + t0) : 0;
                c0 = c0 < 0 ? 0 : c0 > c ? c : c0;
                nv = c > nv ? c : nv;
                for (int t = 0; t < TILE; t++) s[t] = 0.0f;
                for (int d = 0; d < hd; d++) {
                    const float q = u->q[(size_t)d * NQM + j];
                    for (int t = 0; t < c; t++) s[t] += q * kt[d * TILE + t];
                }
                if (u->softcap > 0)
                    for (int t = 0; t < c; t++) s[t] = u->softcap * tanhf(s[t] / u->softcap);
                for (int t = 0; t < c0; t++) s[t] = -INFINITY; /* before the window */
                float mt = -INFINITY;
                for (int t = c0; t < c; t++) mt = s[t] > mt ? s[t] : mt;
                if (mt > u->m[j]) {
                    float alpha = exp2f(u->m[j] - mt); /* 0 when nothing was seen yet */
                    u->m[j] = mt;
                    u->l[j] *= alpha;
                    for (int d = 0; d < hd; d++) u->acc[(size_t)j * hd + d] *= alpha;
                }
                for (int t = 0; t < c; t++) {
                    s[t] = t < c0 ? 0.0f : exp2f(s[t] - u->m[j]);
                    u->l[j] += s[t];
                }
                for (int t = c; t < TILE; t++) s[t] = 0.0f;
            }
            for (int j = 0; j < nq; j++) {
                float *acc = u->acc + (size_t)j * hd;
                for (int t = 0; t < nv; t++) {
                    const float p = P[(size_t)j * TILE + t];
                    for (int d = 0; d < hd; d++) acc[d] += p * vt[t * hd + d];
                }
            }
        }
    }
    if (u->out) /* times 1/l, as the SIMD kernels and the segment merge do */
        for (int j = 0; j < nq; j++) {
            const float inv = 1.0f / u->l[j];
            for (int d = 0; d < hd; d++) u->out[j][d] = u->acc[(size_t)j * hd + d] * inv;
        }
}
