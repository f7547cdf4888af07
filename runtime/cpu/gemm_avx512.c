/*
 * runtime/cpu/gemm_avx512.c — prefill GEMM for quantized weights with
 * AVX-512 VNNI: outer products, one zmm lane per weight row.
 *
 * Scheme (the VNNI form of llama.cpp's tiled K-quant GEMM, transposed so
 * that no activation repacking is needed and y is written contiguously):
 *   - the weights of 16 rows x one k-chunk (up to 1024 columns) are decoded
 *     to unsigned bytes and transposed into a panel on the stack:
 *     qT[g] = 16 dwords, dword r = quants k = 4g..4g+3 of row r; next to it
 *     per row and scale group the float scale and the offset/min terms;
 *   - for 8 tokens at a time, VPDPBUSD multiplies qT[g] with the token's 4
 *     activation bytes k = 4g..4g+3 (broadcast straight from its activation
 *     row) into 16 int32 lanes = 16 rows; after each scale group (block of
 *     32, K sub-block of 32 or 16) the sums are converted and scaled per
 *     lane; each token's 16 results are added into y[t][r..r+15];
 *   - the panel is decoded once per k-chunk and reused for all tokens, so
 *     decoding and transposing cost ~1/n of the multiply work.
 * Weights are read once; activations of one k-chunk for all tokens (n KiB)
 * stay in L2 while the panels walk the rows.
 *
 * Scale terms per lane r (row) and token t:
 *   32-families, block b:  y += dw*(da*I) + off*s   (off = -c*dw or the min m,
 *                          s = da*sum(a) from the activation row)
 *   Q4_K/Q5_K, super-block: y += da*(sum_s (d*sc_s)*I_s - dmin*sum_s m_s*B_s),
 *                          the mins term by VPDPWSSD of [m_s, m_s] with the
 *                          bsums pair [b_2s, b_2s+1] (= B_s)
 *   Q6_K:                  y += da*d*(sum_g sc_g*I_g - 32*sum_g sc_g*b_g), the
 *                          offset term by VPDPWSSD of [-32 sc_2j, -32 sc_2j+1]
 *                          with the bsums pair j.
 *
 * Precision: the symmetric types' offsets (c = 8, 16, 128 for Q4_0, Q5_0,
 * Q8_0) are removed in float here (dw*da*I - c*dw*s), not in the integer
 * sum as in the register tiles, so the rounding error is relative to
 * c*|dw*da*sum(a)| per block rather than to the block's dot product; for
 * Q8_0 that is a few 1e-7 of sum|w*a| on real data.
 *
 * F32/F16/BF16 weights use the same scheme with FMA: two panels of 16 rows
 * x 256 columns converted to float and transposed, each token's activation
 * float broadcast into the FMAs of both.
 *
 * Stack use: one panel, about 24 KiB (two, 32 KiB, for float weights).
 *
 * Intel AMX, tried on a Xeon with AMX-INT8 (KVM guest, family 6 model 167)
 * and not kept: the panel's qT is TDPBSUD's B operand as it is and a
 * 16-token A tile loads straight from the activation rows, so one TDPBSUD
 * per scale group gave micro()'s integer sums bit for bit; but every scale
 * group's 16 x 16 sums then leave the tile through memory (TILESTORED, 1 KiB,
 * read back for the float steps), and those stores and loads plus the float
 * steps cost what the VPDPBUSDs saved. bench_matmul 4096 x 2048, n = 128,
 * one thread, GFLOP/s without / with: Q4_0 359 / 430, Q4_K 384 / 415, Q6_K
 * 348 / 297 (16-element groups: twice the stores), whatever the tile
 * schedule (one group at a time, pairs, fours, double-buffered); prefill of
 * TinyLlama 1.1B, 128 tokens, 151 / 150 tokens/s (Q4_0), 152 / 137
 * (Q4_K_M). The products alone ran at ~1200 GFLOP/s and the float steps
 * alone at ~1200, together at ~430: they did not overlap.
 */
#include <immintrin.h>


#include "runtime/cpu/gemm_panel.h"

LOOM_NO_UBSAN_BEGIN /* why: cpu_kernels.h */
#define AI LOOM_AI
#define UNROLL LOOM_UNROLL

enum { MR = 16, KC = 1024, NT = 8 };

typedef struct {
    uint8_t qT[KC / 4][64];  /* (k-group, row, 4 bytes) unsigned quants */
    float fs[KC / 16][MR];   /* (scale group, row) float scale: dw, or d*sc */
    float off[KC / 32][MR];  /* (block, row) 32-families: -c*dw or m */
    int32_t mp[KC / 32][MR]; /* (super-block*8 + j, row) K: int16 pair for the bsums pair j */
    float d2[KC / 256][MR];  /* (super-block, row) K: -dmin (Q4_K/Q5_K) or d (Q6_K) */
} panel;

/* ---- decoding 64 quants of one row (element order, unsigned form) ---- */

AI __m512i nib_pair(const uint8_t *qa, const uint8_t *qb) {
    __m512i z = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qa));
    z = _mm512_mask_broadcast_i32x4(z, 0xFF00, _mm_loadu_si128((const __m128i *)qb));
    z = _mm512_mask_srli_epi16(z, 0xFF00FF00u, z, 4);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}

/* blocks at pa and pb (pb == pa when only one block is wanted) */
AI __m512i dec32x2(const int type, const uint8_t *pa, const uint8_t *pb) {
    switch (type) {
    case LOOM_TYPE_Q4_0: return nib_pair(pa + 2, pb + 2);
    case LOOM_TYPE_Q4_1: return nib_pair(pa + 4, pb + 4);
    case LOOM_TYPE_MXFP4: { /* codes -> doubled E2M1 values + 12 */
        static const int8_t kv[16] = LOOM_KV_MXFP4_U_INIT;
        return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)kv)), nib_pair(pa + 1, pb + 1));
    }
    case LOOM_TYPE_IQ4_NL: { /* nibbles -> grid values + 128, then as Q8_0 (offset 128) */
        static const uint8_t kv[16] = LOOM_KV_IQ4NL_U_INIT;
        return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)kv)), nib_pair(pa + 2, pb + 2));
    }
    case LOOM_TYPE_Q5_0:
    case LOOM_TYPE_Q5_1: {
        const int o = type == LOOM_TYPE_Q5_0 ? 2 : 4;
        const __mmask64 hb = (__mmask64)((uint64_t)loom_ld_u32(pa + o) | ((uint64_t)loom_ld_u32(pb + o) << 32));
        const __m512i lo = nib_pair(pa + o + 4, pb + o + 4);
        return _mm512_mask_add_epi8(lo, hb, lo, _mm512_set1_epi8(16));
    }
    default: {
        const __m512i v = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(pa + 2))),
            _mm256_loadu_si256((const __m256i *)(pb + 2)), 1);
        return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
    }
    }
}

/* chunk c (elements 64c..64c+63) of a K super-block */
AI __m512i decK(const int type, const uint8_t *blk, const int c) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (type == LOOM_TYPE_Q3_K) return loom_q3k_chunk512(blk, c);
    if (type == LOOM_TYPE_Q2_K) return loom_q2k_chunk512(blk, c);
    if (type == LOOM_TYPE_Q6_K) {
        const int h = c >> 1;
        const __m512i L = _mm512_loadu_si512(blk + 64 * h);
        __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h)));
        H = _mm512_mask_srli_epi16(H, 0xFFFF0000u, H, 2); /* [H, H >> 2] */
        H = _mm512_and_si512(H, _mm512_set1_epi8(0x33));  /* the 2-bit fields at bits 0-1, 4-5 */
        /* (L & 15) | (H<<4 & 0x30)  or  (L>>4 & 15) | (H & 0x30), as bit selects
         * (0xCA: a ? b : c) — bits 6-7 of the H operand are already zero */
        if ((c & 1) == 0)
            return _mm512_ternarylogic_epi32(m4, L, _mm512_slli_epi16(H, 4), 0xCA);
        return _mm512_ternarylogic_epi32(m4, _mm512_srli_epi16(L, 4), H, 0xCA);
    }
    const uint8_t *qs = blk + (type == LOOM_TYPE_Q4_K ? 16 : 48) + 32 * c;
    __m512i z = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs));
    z = _mm512_and_si512(_mm512_mask_srli_epi16(z, 0xFFFF0000u, z, 4), m4);
    if (type == LOOM_TYPE_Q5_K) {
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 16)));
        const __m512i sel = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))),
                                               _mm256_set1_epi8((char)(2 << (2 * c))), 1);
        z = _mm512_mask_add_epi8(z, _mm512_test_epi8_mask(qh, sel), z, _mm512_set1_epi8(16));
    }
    return z;
}

/* 16x16 dword transpose: in R[i] = row i, dwords j = 0..15; out[j] = column j. */
AI void transpose16(__m512i R[16], uint8_t (*out)[64]) {
    __m512i A[16], V[16];
    UNROLL for (int p = 0; p < 8; p++) {
        A[2 * p] = _mm512_unpacklo_epi32(R[2 * p], R[2 * p + 1]);
        A[2 * p + 1] = _mm512_unpackhi_epi32(R[2 * p], R[2 * p + 1]);
    }
    /* V[4c + q]: in 128-bit lane L, rows 4q..4q+3 of column 4L + c */
    UNROLL for (int q = 0; q < 4; q++) {
        V[0 + q] = _mm512_unpacklo_epi64(A[4 * q], A[4 * q + 2]);
        V[4 + q] = _mm512_unpackhi_epi64(A[4 * q], A[4 * q + 2]);
        V[8 + q] = _mm512_unpacklo_epi64(A[4 * q + 1], A[4 * q + 3]);
        V[12 + q] = _mm512_unpackhi_epi64(A[4 * q + 1], A[4 * q + 3]);
    }
    UNROLL for (int c = 0; c < 4; c++) {
        const __m512i *v = V + 4 * c;
        const __m512i x0 = _mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i x1 = _mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(3, 2, 3, 2));
        const __m512i x2 = _mm512_shuffle_i32x4(v[2], v[3], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i x3 = _mm512_shuffle_i32x4(v[2], v[3], _MM_SHUFFLE(3, 2, 3, 2));
        _mm512_store_si512(out[0 + c], _mm512_shuffle_i32x4(x0, x2, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_store_si512(out[4 + c], _mm512_shuffle_i32x4(x0, x2, _MM_SHUFFLE(3, 1, 3, 1)));
        _mm512_store_si512(out[8 + c], _mm512_shuffle_i32x4(x1, x3, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_store_si512(out[12 + c], _mm512_shuffle_i32x4(x1, x3, _MM_SHUFFLE(3, 1, 3, 1)));
    }
}

/* Fills the panel with rows [0, rows) of w (row 0 at w), columns
 * [kc0, kc0 + kcl); rows beyond get zero quants and scales. */
AI void unpack(const int type, panel *P, const uint8_t *w, size_t ws, int rows, int64_t kc0, int kcl) {
    const size_t bs = loom_qblock_bytes(type);
    for (int gb = 0; gb * 64 < kcl; gb++) {
        const int64_t e = kc0 + 64 * gb; /* first element */
        __m512i R[16];
        UNROLL for (int r = 0; r < MR; r++) {
            if (r >= rows) {
                R[r] = _mm512_setzero_si512();
                continue;
            }
            const uint8_t *wr = w + r * ws;
            if (loom_is_kquant(type)) {
                const uint8_t *blk = wr + (e / 256) * bs;
                const int c = (int)((e % 256) / 64);
                /* the next panel's rows, into L2 (into L1, as the register tiles do, was
                 * slower from DRAM: Zen 4, 32768 x 2048 rows at n = 16, Q8_0 / Q4_K / Q4_0 /
                 * Q6_K 162 / 167 / 187 / 146 -> 180 / 183 / 201 / 151 GFLOP/s; n = 128 +0-4 %) */
                loom_prefetch_l2(blk + (size_t)c * bs / 4 + MR * ws, 0, bs / 4);
                R[r] = decK(type, blk, c);
            } else {
                const uint8_t *pa = wr + (e / 32) * bs;
                loom_prefetch_l2(pa + MR * ws, 0, 2 * bs);
                R[r] = dec32x2(type, pa, 64 * gb + 32 < kcl ? pa + bs : pa);
            }
        }
        transpose16(R, P->qT + 16 * gb);
    }
    if (loom_is_kquant(type)) {
        const int ng = loom_k_g16(type) ? 16 : 8;
        for (int sbl = 0; sbl < kcl / 256; sbl++)
            for (int r = 0; r < MR; r++)
                loom_panel_termsK(type, r < rows ? w + r * ws + (kc0 / 256 + sbl) * bs : NULL, MR, r,
                                  P->fs[ng * sbl], P->mp[8 * sbl], P->d2[sbl]);
    } else {
        for (int b = 0; b < kcl / 32; b++)
            for (int r = 0; r < MR; r++)
                loom_panel_terms32(type, r < rows ? w + r * ws + (kc0 / 32 + b) * bs : NULL, MR, r, P->fs[b],
                                   P->off[b]);
    }
}

/* ---- micro-kernel: the panel x NT tokens, added into y ---- */

AI __m512i bcast(const uint8_t *p) { return _mm512_set1_epi32((int)loom_ld_u32(p)); }

/* x: activation rows of the NT tokens (row t at x + t*xs; tokens >= nt
 * repeat the last one and are not stored); y += (or = when first) the
 * panel's contribution, lanes beyond rmask untouched; with carry, the
 * running sums start from y instead (one accumulation over all of k). */
AI void micro(const int type, const panel *P, int64_t k, int64_t kc0, int kcl, const uint8_t *x,
              size_t xs, int nt, float *y, int64_t ldy, int first, __mmask16 rmask, const int carry) {
    const uint8_t *xt[NT];
    UNROLL for (int t = 0; t < NT; t++) xt[t] = x + (t < nt ? t : nt - 1) * xs;
    __m512 tot[NT];
    UNROLL for (int t = 0; t < NT; t++) /* carry: the running sums go on from y (unused tokens: any value) */
        tot[t] = carry && !first ? _mm512_maskz_loadu_ps(rmask, y + (t < nt ? t : nt - 1) * ldy) : _mm512_setzero_ps();
    if (!loom_is_kquant(type)) {
        const int64_t nb = k / 32;
        for (int b = 0; b < kcl / 32; b++) {
            const int64_t bb = kc0 / 32 + b;
            __m512i I[NT];
            UNROLL for (int t = 0; t < NT; t++) I[t] = _mm512_setzero_si512();
            UNROLL for (int g = 0; g < 8; g++) {
                const __m512i wv = _mm512_load_si512(P->qT[8 * b + g]);
                UNROLL for (int t = 0; t < NT; t++)
                    I[t] = _mm512_dpbusd_epi32(I[t], wv, bcast(xt[t] + 32 * bb + 4 * g));
            }
            const __m512 fsv = _mm512_load_ps(P->fs[b]), offv = _mm512_load_ps(P->off[b]);
            UNROLL for (int t = 0; t < NT; t++) {
                const __m512 da = _mm512_set1_ps(loom_ld_f32(xt[t] + k + 4 * bb));
                const __m512 s = _mm512_set1_ps(loom_ld_f32(xt[t] + k + 4 * nb + 4 * bb));
                tot[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(I[t]), da), fsv, tot[t]);
                tot[t] = _mm512_fmadd_ps(offv, s, tot[t]);
            }
        }
    } else {
        const int gs = loom_k_g16(type) ? 16 : 32; /* elements per scale group */
        for (int sbl = 0; sbl < kcl / 256; sbl++) {
            const int64_t sb = kc0 / 256 + sbl;
            __m512 A[NT];
            UNROLL for (int t = 0; t < NT; t++) A[t] = _mm512_setzero_ps();
            for (int s = 0; s < 256 / gs; s++) {
                __m512i I[NT];
                UNROLL for (int t = 0; t < NT; t++) I[t] = _mm512_setzero_si512();
                UNROLL for (int g = 0; g < gs / 4; g++) {
                    const __m512i wv = _mm512_load_si512(P->qT[64 * sbl + (gs / 4) * s + g]);
                    UNROLL for (int t = 0; t < NT; t++)
                        I[t] = _mm512_dpbusd_epi32(I[t], wv, bcast(xt[t] + 292 * sb + 4 + gs * s + 4 * g));
                }
                const __m512 fsv = _mm512_load_ps(P->fs[(256 / gs) * sbl + s]);
                UNROLL for (int t = 0; t < NT; t++) A[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I[t]), fsv, A[t]);
            }
            __m512i M[NT];
            UNROLL for (int t = 0; t < NT; t++) M[t] = _mm512_setzero_si512();
            UNROLL for (int j = 0; j < 8; j++) {
                const __m512i mv = _mm512_load_si512(P->mp[8 * sbl + j]);
                UNROLL for (int t = 0; t < NT; t++)
                    M[t] = _mm512_dpwssd_epi32(M[t], mv, bcast(xt[t] + 292 * sb + 260 + 4 * j));
            }
            const __m512 d2v = _mm512_load_ps(P->d2[sbl]);
            UNROLL for (int t = 0; t < NT; t++) {
                A[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(M[t]), d2v, A[t]);
                tot[t] = _mm512_fmadd_ps(A[t], _mm512_set1_ps(loom_ld_f32(xt[t] + 292 * sb)), tot[t]);
            }
        }
    }
    UNROLL for (int t = 0; t < NT; t++) {
        if (t >= nt) break;
        float *yt = y + t * ldy;
        __m512 v = tot[t];
        if (!first && !carry) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(rmask, yt));
        _mm512_mask_storeu_ps(yt, rmask, v);
    }
}

AI void gemm(const int type, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq,
             size_t xs, int64_t n, float *y, int64_t ldy) {
    _Alignas(64) panel P;
    for (int64_t kc0 = 0; kc0 < k; kc0 += KC) {
        const int kcl = (int)(k - kc0 < KC ? k - kc0 : KC);
        for (int64_t p = 0; p < nr; p += MR) {
            const int rows = (int)(nr - p < MR ? nr - p : MR);
            const __mmask16 rmask = (__mmask16)((1u << rows) - 1u);
            unpack(type, &P, w + p * ws, ws, rows, kc0, kcl);
            for (int64_t t = 0; t < n; t += NT) {
                const int nt = (int)(n - t < NT ? n - t : NT);
                micro(type, &P, k, kc0, kcl, xq + t * xs, xs, nt, y + t * ldy + p, ldy, kc0 == 0, rmask, 0);
            }
        }
    }
}

/* ---- Q4_0 / Q4_1 / Q8_0 / MXFP4 / IQ4_NL in the r8 layout (runtime/kernels.h): the same panels ----
 * Two r8 groups are a panel as they lie: a 32-byte run of a group's quants
 * is the 8 rows' dwords of one k-group, so the panel's qT line is group A's
 * run beside group B's, split into low and high nibbles, and the scales
 * convert 16 at a time; no transpose. The sums carry through y from one
 * k-chunk to the next, and the float steps are r8_pair's (matmul_avx512.c),
 * lane for lane, so the result is the r8 kernels' bits (the AVX2 level's). */
AI void unpack_r8(const int type, panel *P, const uint8_t *ga, const uint8_t *gb, int64_t kc0, int kcl,
                  const uint8_t *na, const uint8_t *nb) {
    const size_t bb = loom_r8_block_bytes(type);
    for (int b = 0; b < kcl / 32; b++) {
        const size_t o = (size_t)(kc0 / 32 + b) * bb;
        const uint8_t *pa = ga + o, *pb = gb + o;
        loom_prefetch_l2(na, o, o + bb); /* the next pair's block, into L2 */
        loom_prefetch_l2(nb, o, o + bb);
        __m512 fs, off;
        __m512i q[8];
        loom_r8_q4_block2(type, pa, pb, &fs, &off, q);
        _mm512_store_ps(P->fs[b], fs);
        _mm512_store_ps(P->off[b], off);
        UNROLL for (int g = 0; g < 8; g++) _mm512_store_si512(P->qT[8 * b + g], q[g]);
    }
}

/* ---- Q2_K / Q3_K / Q4_K / Q5_K / Q6_K in the r8 layout: the rows' panels, bit for bit ----
 * A group's 32-byte run of a sub-block's k-group is 8 rows' dwords, so two
 * groups' runs, split as the r8 kernels split them (loom_r8_k45_quants,
 * loom_r8_q6_quants), are a qT line; the scale terms are
 * loom_panel_termsK's, 16 rows at once (d * sc by the same one rounding).
 * The panel is then the one unpack() makes from the same rows, and micro()
 * runs as gemm() runs it (each k-chunk's sums added into y), so the result
 * is the rows' GEMM's bits, not the r8 kernels' (the AVX2 level's). */
AI void unpack_r8k(const int type, panel *P, const uint8_t *ga, const uint8_t *gb, int64_t kc0, int kcl,
                   const uint8_t *na, const uint8_t *nb) {
    const size_t bb = loom_r8_block_bytes(type);
    for (int sbl = 0; sbl < kcl / 256; sbl++) {
        const size_t o = (size_t)(kc0 / 256 + sbl) * bb;
        const uint8_t *pa = ga + o, *pb = gb + o;
        loom_prefetch_l2(na, o, o + bb); /* the next pair's super-block, into L2 */
        loom_prefetch_l2(nb, o, o + bb);
        uint8_t(*qT)[64] = P->qT + 64 * sbl;
        const __m512 d = loom_r8_f16x2(pa, pb);
        if (loom_r8_k16(type)) {
            for (int h = 0; h < 2; h++)
                for (int g = 0; g < 8; g++) {
                    __m256i qa[4], qb[4];
                    loom_r8_k16_quants(type, pa, h, g, qa);
                    loom_r8_k16_quants(type, pb, h, g, qb);
                    UNROLL for (int j = 0; j < 4; j++) {
                        _mm256_store_si256((__m256i *)qT[32 * h + 8 * j + g], qa[j]);
                        _mm256_store_si256((__m256i *)(qT[32 * h + 8 * j + g] + 32), qb[j]);
                    }
                }
            for (int G = 0; G < 16; G++)
                _mm512_store_ps(P->fs[16 * sbl + G],
                                _mm512_mul_ps(d, _mm512_cvtepi32_ps(type == LOOM_TYPE_Q2_K
                                                                        ? _mm512_and_si512(loom_r8_u8x2(pa + 32 + 8 * G, pb + 32 + 8 * G), _mm512_set1_epi32(0xF))
                                                                        : loom_r8_i8x2(pa + 16 + 8 * G, pb + 16 + 8 * G))));
            for (int j = 0; j < 8; j++) /* [-32 sc[2j], -32 sc[2j+1]] (|32 sc| <= 4096; Q3_K: -4 sc; Q2_K: [m[2j], m[2j+1]]) */
                _mm512_store_si512(P->mp[8 * sbl + j], type == LOOM_TYPE_Q2_K ? loom_r8_kmp(type, pa, pb, j)
                                                       : _mm512_sub_epi16(_mm512_setzero_si512(),
                                                                          _mm512_slli_epi16(loom_r8_kmp(type, pa, pb, j), loom_r8_k16_shift(type))));
            _mm512_store_ps(P->d2[sbl], type == LOOM_TYPE_Q2_K ? loom_r8_knegdmin(pa, pb) : d);
            continue;
        }
        for (int s = 0; s < 8; s++) {
            __m256i qa[8], qb[8];
            loom_r8_k45_quants(type, false, pa, s, qa);
            loom_r8_k45_quants(type, false, pb, s, qb);
            UNROLL for (int g = 0; g < 8; g++) {
                _mm256_store_si256((__m256i *)qT[8 * s + g], qa[g]);
                _mm256_store_si256((__m256i *)(qT[8 * s + g] + 32), qb[g]);
            }
            _mm512_store_ps(P->fs[8 * sbl + s], _mm512_mul_ps(d, _mm512_cvtepi32_ps(loom_r8_u8x2(pa + 32 + 8 * s, pb + 32 + 8 * s))));
            _mm512_store_si512(P->mp[8 * sbl + s], loom_r8_kmp(type, pa, pb, s));
        }
        _mm512_store_ps(P->d2[sbl], loom_r8_knegdmin(pa, pb));
    }
}

AI void gemm_r8(const int type, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq,
                size_t xs, int64_t n, float *y, int64_t ldy) {
    _Alignas(64) panel P;
    for (int64_t p = 0; p < nr; p += MR) {
        const uint8_t *ga = w + (size_t)p * ws, *gb = nr - p > 8 ? ga + 8 * ws : ga;
        const uint8_t *na = nr - p > MR ? ga + MR * ws : NULL, *nb = na && nr - p > MR + 8 ? na + 8 * ws : na;
        const __mmask16 rmask = (__mmask16)(nr - p < MR ? (1u << (nr - p)) - 1u : 0xFFFFu);
        for (int64_t kc0 = 0; kc0 < k; kc0 += KC) {
            const int kcl = (int)(k - kc0 < KC ? k - kc0 : KC);
            if (loom_is_kquant(type)) unpack_r8k(type, &P, ga, gb, kc0, kcl, na, nb);
            else unpack_r8(type, &P, ga, gb, kc0, kcl, na, nb);
            for (int64_t t = 0; t < n; t += NT) {
                const int nt = (int)(n - t < NT ? n - t : NT);
                micro(type, &P, k, kc0, kcl, xq + t * xs, xs, nt, y + t * ldy + p, ldy, kc0 == 0, rmask, !loom_r8_rows_gemm_bits(type));
            }
        }
    }
}

void loom_avx512_r8_gemm_q4_0(LOOM_MATMUL_PARAMS) { gemm_r8(LOOM_TYPE_Q4_0, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_gemm_q4_1(LOOM_MATMUL_PARAMS) { gemm_r8(LOOM_TYPE_Q4_1, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_gemm_q8_0(LOOM_MATMUL_PARAMS) { gemm_r8(LOOM_TYPE_Q8_0, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_gemm_mxfp4(LOOM_MATMUL_PARAMS) { gemm_r8(LOOM_TYPE_MXFP4, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_gemm_iq4_nl(LOOM_MATMUL_PARAMS) { gemm_r8(LOOM_TYPE_IQ4_NL, w, ws, k, nr, xq, xs, n, y, ldy); }

void loom_avx512_r8_gemm_q4_K(LOOM_MATMUL_PARAMS) { gemm_r8(LOOM_TYPE_Q4_K, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_gemm_q5_K(LOOM_MATMUL_PARAMS) { gemm_r8(LOOM_TYPE_Q5_K, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_gemm_q6_K(LOOM_MATMUL_PARAMS) { gemm_r8(LOOM_TYPE_Q6_K, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_gemm_q3_K(LOOM_MATMUL_PARAMS) { gemm_r8(LOOM_TYPE_Q3_K, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_gemm_q2_K(LOOM_MATMUL_PARAMS) { gemm_r8(LOOM_TYPE_Q2_K, w, ws, k, nr, xq, xs, n, y, ldy); }

/* ---- float weights (F32, F16, BF16): the same panel scheme with FMA ----
 * Two panels of 16 rows x up to KCF columns as floats, transposed (one
 * vector per column, lane = row); per column, the 2 panel vectors and NTF
 * tokens' activation floats (broadcast) feed 2 x NTF FMAs into 24
 * accumulators. Each (row, token) sums its columns in order from 0 in each
 * chunk, then adds the chunk to y: the bits of the one-panel kernel this
 * replaced, whose 12 FMAs a column came with 13 loads and the spills of 12
 * token pointers (load-bound, 61-66 % of the FMA peak). Xeon family 6 model
 * 207, one thread (FMA peak ~173 GFLOP/s), bench_matmul -n 128, GFLOP/s,
 * old / new alternated: 2048 x 2048 F16 105-107 / 135-136, BF16 111 / 142,
 * F32 109 / 130-131; F16 4864 x 896 112 / 140, 896 x 4864 108 / 136, the
 * 151936 x 896 head from DRAM 84 / 102. Below loom_gemm_min_n (20) the
 * register tiles stay faster (n = 12 equal, 16: 76 vs 68). Decoding (F16 /
 * BF16 -> float) and transposing happen once per panel and k-chunk. */

enum { KCF = 256, NTF = 12 };

AI __m512 ldrow_f(const int type, const uint8_t *p, __mmask16 m) {
    if (type == LOOM_TYPE_F32) return _mm512_maskz_loadu_ps(m, p);
    const __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (type == LOOM_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* rows p.. (at most 16) x columns kc0..kc0+kcl of w into pf, transposed */
AI void panel_f(const int type, const uint8_t *w, size_t ws, int64_t p, int rows, int64_t kc0, int kcl,
                uint8_t (*pf)[64]) {
    const int es = type == LOOM_TYPE_F32 ? 4 : 2;
    for (int c0 = 0; c0 < kcl; c0 += 16) {
        const __mmask16 cm = (__mmask16)(kcl - c0 >= 16 ? 0xFFFFu : (1u << (kcl - c0)) - 1u);
        __m512i R[16];
        UNROLL for (int r = 0; r < MR; r++)
            R[r] = r < rows ? _mm512_castps_si512(ldrow_f(type, w + (p + r) * ws + (kc0 + c0) * es, cm))
                            : _mm512_setzero_si512();
        transpose16(R, pf + c0);
    }
}

/* NP panels (1 or 2) x tokens t0..t0+nt (NTF at most): y rows p.. */
AI void micro_f(const int NP, const uint8_t (*pf)[KCF][64], const uint8_t *xq, size_t xs, int kcl, int nt, int rows,
                int64_t kc0, float *y, int64_t ldy, int64_t p, int64_t t0) {
    const uint8_t *xt[NTF];
    UNROLL for (int t = 0; t < NTF; t++) xt[t] = xq + (t0 + (t < nt ? t : nt - 1)) * xs + 4 * kc0;
    __m512 acc[2][NTF];
    UNROLL for (int q = 0; q < NP; q++) UNROLL for (int t = 0; t < NTF; t++) acc[q][t] = _mm512_setzero_ps();
    for (int c = 0; c < kcl; c++) {
        __m512 wv[2];
        UNROLL for (int q = 0; q < NP; q++) wv[q] = _mm512_load_ps(pf[q][c]);
        UNROLL for (int t = 0; t < NTF; t++) {
            const __m512 a = _mm512_set1_ps(loom_ld_f32(xt[t] + 4 * c));
            UNROLL for (int q = 0; q < NP; q++) acc[q][t] = _mm512_fmadd_ps(wv[q], a, acc[q][t]);
        }
    }
    UNROLL for (int q = 0; q < NP; q++) {
        const int rq = rows - 16 * q;
        const __mmask16 rmask = (__mmask16)(rq >= 16 ? 0xFFFFu : (1u << rq) - 1u);
        UNROLL for (int t = 0; t < NTF; t++) {
            if (t >= nt) break;
            float *yt = y + (t0 + t) * ldy + p + 16 * q;
            __m512 v = acc[q][t];
            if (kc0) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(rmask, yt));
            _mm512_mask_storeu_ps(yt, rmask, v);
        }
    }
}

AI void gemm_f(const int type, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq,
               size_t xs, int64_t n, float *y, int64_t ldy) {
    _Alignas(64) uint8_t pf[2][KCF][64]; /* (panel, column, row) floats */
    for (int64_t kc0 = 0; kc0 < k; kc0 += KCF) {
        const int kcl = (int)(k - kc0 < KCF ? k - kc0 : KCF);
        for (int64_t p = 0; p < nr; p += 2 * MR) {
            const int rows = (int)(nr - p < 2 * MR ? nr - p : 2 * MR);
            panel_f(type, w, ws, p, rows < MR ? rows : MR, kc0, kcl, pf[0]);
            if (rows > MR) panel_f(type, w, ws, p + MR, rows - MR, kc0, kcl, pf[1]);
            const uint8_t(*pc)[KCF][64] = (const uint8_t(*)[KCF][64])pf;
            for (int64_t t0 = 0; t0 < n; t0 += NTF) {
                const int nt = (int)(n - t0 < NTF ? n - t0 : NTF);
                if (rows > MR) micro_f(2, pc, xq, xs, kcl, nt, rows, kc0, y, ldy, p, t0);
                else micro_f(1, pc, xq, xs, kcl, nt, rows, kc0, y, ldy, p, t0);
            }
        }
    }
}

/* one GEMM per entry of the weight-type list */
#define GEMM(p, T, s, fn) \
    void p##s(LOOM_MATMUL_PARAMS) { fn(LOOM_TYPE_##T, w, ws, k, nr, xq, xs, n, y, ldy); }
#define GEMM_F(p, T, s) GEMM(p, T, s, gemm_f)
#define GEMM_Q(p, T, s) GEMM(p, T, s, gemm)
#define GEMM_Q8(p, T, s) GEMM(p, T, s, gemm)
#define GEMM_K(p, T, s) GEMM(p, T, s, gemm)
#define FAMILY(p, T, s, f) GEMM_##f(p, T, s)
LOOM_MATMUL_TYPES(FAMILY, loom_avx512_gemm_)

LOOM_NO_UBSAN_END
