/*
 * runtime/cpu/matmul_scalar.c — the reference matmul: plain C, one weight
 * row times one activation row at a time, every block decoded to integers
 * first. Meant to be read, not to be fast; the SIMD files compute the same
 * integer sums and differ only in float accumulation order.
 *
 * Per block of the 32-families (activation: qs, d, s = d * sum(qs)):
 *   Q4_0/Q5_0/Q8_0  dw * d * sum((q - c) * a)              c = 8, 16, 0
 *   Q4_1/Q5_1       dw * d * sum(q * a) + m * s
 *   MXFP4           dw * d * sum(v * a), v the doubled E2M1 value, dw 2^(e-128)
 * Per K super-block (activation: Q8_K d, qs, bsums):
 *   Q4_K/Q5_K       d*D * sum_s sc_s * sum(q*a) - dmin*D * sum_s m_s * sum_s(a)
 *   Q6_K            d*D * sum_g sc_g * sum((q - 32) * a)
 *   Q3_K            d*D * sum_g (sc_g - 32) * sum((q - 4) * a)
 *   Q2_K            d*D * sum_g sc_g * sum(q * a) - dmin*D * sum_g m_g * bsum_g
 */
#include "runtime/cpu/cpu_kernels.h"

/* 16 nibble bytes (Q4_0's order: low nibbles first) through a 16-entry table */
static void nibbles_through(const signed char kv[16], const uint8_t *qs, int q[32]) {
    for (int j = 0; j < 16; j++) {
        q[j] = kv[qs[j] & 0xF];
        q[j + 16] = kv[qs[j] >> 4];
    }
}

/* Block of a 32-family type -> 32 integers in element order (offset already
 * removed for the symmetric types), its scale, and its min (0 if none). */
static void decode32(loom_type wt, const uint8_t *b, int q[32], float *dw, float *m) {
    *dw = loom_f16_to_f32(loom_rd_u16(b));
    *m = 0.0f;
    switch (wt) {
    case LOOM_TYPE_Q4_0:
        for (int j = 0; j < 16; j++) {
            q[j] = (b[2 + j] & 0xF) - 8;
            q[j + 16] = (b[2 + j] >> 4) - 8;
        }
        break;
    case LOOM_TYPE_Q4_1:
        *m = loom_f16_to_f32(loom_rd_u16(b + 2));
        for (int j = 0; j < 16; j++) {
            q[j] = b[4 + j] & 0xF;
            q[j + 16] = b[4 + j] >> 4;
        }
        break;
    case LOOM_TYPE_Q5_0: {
        const uint32_t qh = loom_rd_u32(b + 2);
        for (int j = 0; j < 16; j++) {
            q[j] = ((b[6 + j] & 0xF) | (int)(((qh >> j) & 1u) << 4)) - 16;
            q[j + 16] = ((b[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4)) - 16;
        }
        break;
    }
    case LOOM_TYPE_Q5_1: {
        *m = loom_f16_to_f32(loom_rd_u16(b + 2));
        const uint32_t qh = loom_rd_u32(b + 4);
        for (int j = 0; j < 16; j++) {
            q[j] = (b[8 + j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
            q[j + 16] = (b[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        }
        break;
    }
    case LOOM_TYPE_MXFP4: {
        static const signed char kv[16] = LOOM_KV_MXFP4_INIT;
        *dw = loom_e8m0_half(b[0]);
        nibbles_through(kv, b + 1, q);
        break;
    }
    case LOOM_TYPE_IQ4_NL: {
        static const signed char kv[16] = LOOM_KV_IQ4NL_INIT;
        nibbles_through(kv, b + 2, q);
        break;
    }
    default: /* Q8_0 */
        for (int j = 0; j < 32; j++) q[j] = (int8_t)b[2 + j];
        break;
    }
}

/* Block b's term of a row's dot product (blk: the block's bytes). */
static float term32(loom_type wt, const uint8_t *blk, const uint8_t *x, int64_t k, int64_t b) {
    const int8_t *qs = loom_act32_qs(x);
    int q[32];
    float dw, m;
    decode32(wt, blk, q, &dw, &m);
    int isum = 0;
    for (int j = 0; j < 32; j++) isum += q[j] * qs[32 * b + j];
    return dw * loom_ld_f32(loom_act32_d(x, k) + 4 * b) * (float)isum + m * loom_ld_f32(loom_act32_s(x, k) + 4 * b);
}

static float dot32(loom_type wt, size_t bsize, const uint8_t *w, const uint8_t *x, int64_t k) {
    float sum = 0.0f;
    for (int64_t b = 0; b < k / 32; b++) sum += term32(wt, w + (size_t)b * bsize, x, k, b);
    return sum;
}

/* A Q4_K/Q5_K super-block's term: unsigned quants q, scales and mins per
 * sub-block, the activation block a. */
static float term45K(float d, float dmin, const int q[256], const uint8_t sc[8], const uint8_t m[8],
                     const loom_block_q8_K *a) {
    int isum = 0, msum = 0;
    for (int s = 0; s < 8; s++) {
        int ss = 0;
        for (int j = 32 * s; j < 32 * s + 32; j++) ss += q[j] * a->qs[j];
        isum += sc[s] * ss;
        msum += m[s] * (a->bsums[2 * s] + a->bsums[2 * s + 1]);
    }
    return d * a->d * (float)isum - dmin * a->d * (float)msum;
}

/* A Q6_K / Q3_K super-block's term: unsigned quants q (offset c: 32, 4),
 * its 16 scales, the activation block a. */
static float term6K(float d, const int q[256], const int8_t sc[16], int c, const loom_block_q8_K *a) {
    int isum = 0;
    for (int g = 0; g < 16; g++) {
        int gs = 0;
        for (int j = 16 * g; j < 16 * g + 16; j++) gs += (q[j] - c) * a->qs[j];
        isum += sc[g] * gs;
    }
    return d * a->d * (float)isum;
}

/* A Q2_K super-block's term: quants q (0..3), its 16 scales and mins. */
static float term2K(float d, float dmin, const int q[256], const uint8_t sc[16], const uint8_t m[16], const loom_block_q8_K *a) {
    int isum = 0, msum = 0; /* d·D·sum_g sc_g·sum(q·a) − dmin·D·sum_g m_g·bsum_g */
    for (int g = 0; g < 16; g++) {
        int gs = 0;
        for (int j = 16 * g; j < 16 * g + 16; j++) gs += q[j] * a->qs[j];
        isum += sc[g] * gs;
        msum += m[g] * a->bsums[g];
    }
    return d * a->d * (float)isum - dmin * a->d * (float)msum;
}

/* Super-block b's term of a row's dot product (wb: the block's bytes). */
static float termK(loom_type wt, const uint8_t *wb, const uint8_t *x, int64_t b) {
    loom_block_q8_K a;
    memcpy(&a, x + (size_t)b * sizeof a, sizeof a);
    int q[256];
    loom_k_quants(wt, wb, q);
    if (wt == LOOM_TYPE_Q2_K) {
        uint8_t sc[16], m[16];
        for (int g = 0; g < 16; g++) sc[g] = wb[g] & 0xF, m[g] = wb[g] >> 4;
        return term2K(loom_f16_to_f32(loom_rd_u16(wb + 80)), loom_f16_to_f32(loom_rd_u16(wb + 82)), q, sc, m, &a);
    }
    if (loom_k_g16(wt)) {
        int8_t sc[16];
        loom_k_g16_scales(wt, wb, sc);
        return term6K(loom_f16_to_f32(loom_rd_u16(wb + loom_k_g16_d(wt))), q, sc, loom_k_g16_offset(wt), &a);
    }
    uint8_t sc[8], m[8];
    for (int s = 0; s < 8; s++) loom_q4k_scale_min(s, wb + 4, &sc[s], &m[s]);
    return term45K(loom_f16_to_f32(loom_rd_u16(wb)), loom_f16_to_f32(loom_rd_u16(wb + 2)), q, sc, m, &a);
}

static float dotK(loom_type wt, size_t bsize, const uint8_t *w, const uint8_t *x, int64_t k) {
    float sum = 0.0f;
    for (int64_t b = 0; b < k / 256; b++) sum += termK(wt, w + (size_t)b * bsize, x, b);
    return sum;
}

static float dotF(loom_type wt, const uint8_t *w, const uint8_t *x, int64_t k) {
    float sum = 0.0f;
    for (int64_t j = 0; j < k; j++) {
        float wj;
        if (wt == LOOM_TYPE_F32) wj = loom_ld_f32(w + 4 * j);
        else if (wt == LOOM_TYPE_F16) wj = loom_f16_to_f32(loom_rd_u16(w + 2 * j));
        else wj = loom_bf16_to_f32(loom_rd_u16(w + 2 * j));
        sum += wj * loom_ld_f32(x + 4 * j);
    }
    return sum;
}

static void matmul_any(loom_type wt, const uint8_t *w, size_t w_stride, int64_t k, int64_t nr,
                       const uint8_t *xq, size_t xq_stride, int64_t n, float *y, int64_t ldy) {
    const size_t bsize = loom_type_info((uint32_t)wt)->type_size;
    for (int64_t t = 0; t < n; t++) {
        const uint8_t *x = xq + (size_t)t * xq_stride;
        for (int64_t r = 0; r < nr; r++) {
            const uint8_t *wr = w + (size_t)r * w_stride;
            float v;
            switch (wt) {
            case LOOM_TYPE_F32:
            case LOOM_TYPE_F16:
            case LOOM_TYPE_BF16: v = dotF(wt, wr, x, k); break;
            case LOOM_TYPE_Q2_K:
            case LOOM_TYPE_Q3_K:
            case LOOM_TYPE_Q4_K:
            case LOOM_TYPE_Q5_K:
            case LOOM_TYPE_Q6_K: v = dotK(wt, bsize, wr, x, k); break;
            default: v = dot32(wt, bsize, wr, x, k); break;
            }
            y[t * ldy + r] = v;
        }
    }
}

#define SCALAR_KERNEL(p, T, s, f)                                                                     \
    void p##s(LOOM_MATMUL_PARAMS) { matmul_any(LOOM_TYPE_##T, w, ws, k, nr, xq, xs, n, y, ldy); }
LOOM_MATMUL_TYPES(SCALAR_KERNEL, loom_scalar_mm_)

/* A row's K super-block unpacked from the r8 layout (loom_r8_k_unpack): its
 * term with the activations at x, as termK's. */
static float r8_termK(loom_type wt, const loom_r8_ksb *o, int64_t sb, const uint8_t *x) {
    loom_block_q8_K a;
    memcpy(&a, x + (size_t)sb * sizeof a, sizeof a);
    if (wt == LOOM_TYPE_Q2_K) return term2K(loom_f16_to_f32(o->d), loom_f16_to_f32(o->dmin), o->q, o->sc2, o->m2, &a);
    if (wt == LOOM_TYPE_Q6_K || wt == LOOM_TYPE_Q3_K)
        return term6K(loom_f16_to_f32(o->d), o->q, o->sc6, wt == LOOM_TYPE_Q6_K ? 32 : 4, &a);
    return term45K(loom_f16_to_f32(o->d), loom_f16_to_f32(o->dmin), o->q, o->sc, o->m, &a);
}

/* r8 weights (runtime/kernels.h): K super-blocks unpacked in place, the
 * 32-element types' blocks rebuilt as the GGUF blocks they came from, each
 * once per row for up to TC tokens; then as above (each token's terms in
 * the same order, so the same bits as one token at a time). */
static void matmul_r8(loom_type wt, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq,
                      size_t xs, int64_t n, float *y, int64_t ldy) {
    enum { TC = 16 };
    const bool q5_whole = loom_r8_q5_whole();
    for (int64_t t0 = 0; t0 < n; t0 += TC) {
        const int nt = n - t0 < TC ? (int)(n - t0) : TC;
        const uint8_t *x = xq + (size_t)t0 * xs;
        for (int64_t r = 0; r < nr; r++) {
            const uint8_t *grp = w + (size_t)(r / 8) * 8 * ws;
            float sum[TC] = {0};
            if (loom_is_kquant(wt))
                for (int64_t sb = 0; sb < k / 256; sb++) {
                    loom_r8_ksb o;
                    loom_r8_k_unpack(wt, q5_whole, grp + (size_t)sb * loom_r8_block_bytes(wt), (int)(r % 8), &o);
                    for (int t = 0; t < nt; t++) sum[t] += r8_termK(wt, &o, sb, x + (size_t)t * xs);
                }
            else
                for (int64_t b = 0; b < k / 32; b++) {
                    uint8_t blk[256]; /* (a 32-element block; sized for any r8 type's pieces) */
                    loom_r8_gguf_block(wt, grp, b, (int)(r % 8), blk);
                    for (int t = 0; t < nt; t++) sum[t] += term32(wt, blk, x + (size_t)t * xs, k, b);
                }
            for (int t = 0; t < nt; t++) y[(t0 + t) * ldy + r] = sum[t];
        }
    }
}

#define SCALAR_R8(p, T, s)                                                                            \
    void p##s(LOOM_MATMUL_PARAMS) { matmul_r8(LOOM_TYPE_##T, w, ws, k, nr, xq, xs, n, y, ldy); }
LOOM_R8_TYPES(SCALAR_R8, loom_scalar_r8_)
