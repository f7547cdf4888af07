/*
 * runtime/cpu/gemm_panel.h — the per-row scale terms of a transposed GEMM
 * panel, shared by the AVX-512 GEMM (gemm_avx512.c) and the AVX2 one
 * (gemm_avx2.c), and the Q4_K/Q5_K scale unpacking of every SIMD tile
 * (those two and matmul_avx512.c). A panel stores the terms as (group, row)
 * arrays of `mr` rows; these fill row r's entries. A NULL block is a row
 * past the matrix (every term 0). Included only by files compiled with AVX2
 * and F16C.
 *
 * Terms, with I the integer dot product of a scale group:
 *   32-element block:  y += fs*(da*I) + off*s   fs = dw; off = m (Q4_1/Q5_1)
 *                      or -c*dw (c = 8, 16, 128, 12 for MXFP4: the unsigned
 *                      form's offset),
 *                      s = da*sum(a)
 *   K super-block:     y += da*(sum_g fs_g*I_g + d2*sum_j mp_j . bsums_j),
 *                      fs_g = d*sc_g; Q4_K/Q5_K: mp_j = [m_j, m_j], d2 = -dmin;
 *                      Q6_K, Q3_K: mp_j = [-c sc_2j, -c sc_2j+1] (c = 32, 4),
 *                      d2 = d; Q2_K (16 groups): mp_j = [m_2j, m_2j+1],
 *                      d2 = -dmin
 */
#ifndef LOOM_CPU_GEMM_PANEL_H
#define LOOM_CPU_GEMM_PANEL_H

#include <immintrin.h>

#include "runtime/cpu/cpu_kernels.h"

/* Q4_K/Q5_K's 12 bytes of packed 6-bit scales and mins (u0, u1, u2) -> the
 * bytes [sc0..sc7, m0..m7] (loom_q4k_scale_min for all eight sub-blocks) as
 * the words u0 & 0x3f.., (u2 & 0x0f..) | (u0 >> 2 & 0x30..), u1 & 0x3f..,
 * (u2 >> 4 & 0x0f..) | (u1 >> 2 & 0x30..), in vector registers: 8 operations
 * where scalar words and their insertion took about 20 (reads 16 bytes from
 * s12, which the super-block's quants follow). */
static inline __m128i loom_q4k_scales(const uint8_t *s12) {
    const __m128i v = _mm_loadu_si128((const __m128i *)s12);            /* [u0, u1, u2, -] */
    const __m128i p = _mm_srlv_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0)), _mm_setr_epi32(0, 0, 0, 4));
    const __m128i q = _mm_srli_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0)), 2); /* [u0, u0, u1, u1] >> 2 */
    const __m128i lo = _mm_and_si128(p, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    return _mm_or_si128(lo, _mm_and_si128(q, _mm_setr_epi32(0, 0x30303030, 0, 0x30303030)));
}

/* loom_k_g16_scales in a register, for the decode tiles: no round trip
 * through memory (16 bytes read back from four word stores miss the
 * store forwarding), and Q2_K's mins likewise */
static inline __m128i loom_k_g16_scales128(loom_type type, const uint8_t *blk) {
    if (type == LOOM_TYPE_Q2_K) return _mm_and_si128(_mm_loadu_si128((const __m128i *)blk), _mm_set1_epi8(0x0F));
    if (type != LOOM_TYPE_Q3_K) return _mm_loadu_si128((const __m128i *)(blk + 192));
    uint32_t w[4];
    loom_q3k_scale_words(blk + 96, w);
    return _mm_sub_epi8(_mm_setr_epi32((int)w[0], (int)w[1], (int)w[2], (int)w[3]), _mm_set1_epi8(32));
}
static inline __m128i loom_q2k_mins128(const uint8_t *blk) {
    return _mm_and_si128(_mm_srli_epi16(_mm_loadu_si128((const __m128i *)blk), 4), _mm_set1_epi8(0x0F));
}

/* fs: the block's row of (block, row), off likewise */
static inline __attribute__((always_inline)) void loom_panel_terms32(loom_type type, const uint8_t *blk, int mr, int r, float *fs, float *off) {
    (void)mr;
    if (!blk) {
        fs[r] = off[r] = 0.0f;
        return;
    }
    const float c = type == LOOM_TYPE_Q4_0 ? 8.0f : type == LOOM_TYPE_Q5_0 ? 16.0f
                  : type == LOOM_TYPE_MXFP4 ? (float)LOOM_MXFP4_OFFSET : 128.0f;
    const float dw = type == LOOM_TYPE_MXFP4 ? loom_e8m0_half(blk[0]) : _cvtsh_ss(loom_ld_u16(blk));
    fs[r] = dw;
    off[r] = type == LOOM_TYPE_Q4_1 || type == LOOM_TYPE_Q5_1 ? _cvtsh_ss(loom_ld_u16(blk + 2)) : -c * dw;
}

/* fs: the super-block's first scale group (16 groups for Q6_K, 8 otherwise),
 * mp: its first bsums pair (8), d2: its entry; each a (group, row) array */
static inline __attribute__((always_inline)) void loom_panel_termsK(loom_type type, const uint8_t *blk, int mr, int r, float *fs, int32_t *mp,
                                     float *d2) {
    const int ng = loom_k_g16(type) ? 16 : 8;
    if (!blk) {
        for (int g = 0; g < ng; g++) fs[g * mr + r] = 0.0f;
        for (int j = 0; j < 8; j++) mp[j * mr + r] = 0;
        d2[r] = 0.0f;
        return;
    }
    if (loom_k_g16(type)) { /* Q6_K, Q3_K, Q2_K */
        const float d = _cvtsh_ss(loom_ld_u16(blk + loom_k_g16_d(type)));
        const int c = loom_k_g16_offset(type);
        int8_t sc[16];
        loom_k_g16_scales(type, blk, sc);
        for (int g = 0; g < 16; g++) fs[g * mr + r] = d * (float)sc[g];
        if (type == LOOM_TYPE_Q2_K) { /* its mins, times -dmin */
            int8_t m[16];
            loom_q2k_mins(blk, m);
            for (int j = 0; j < 8; j++) mp[j * mr + r] = (int32_t)((uint32_t)(uint8_t)m[2 * j] | ((uint32_t)(uint8_t)m[2 * j + 1] << 16));
            d2[r] = -_cvtsh_ss(loom_ld_u16(blk + 82));
            return;
        }
        for (int j = 0; j < 8; j++) /* the offset's term, times d */
            mp[j * mr + r] = (int32_t)(((uint32_t)(uint16_t)(-c * sc[2 * j])) |
                                       ((uint32_t)(uint16_t)(-c * sc[2 * j + 1]) << 16));
        d2[r] = d;
        return;
    }
    const float d = _cvtsh_ss(loom_ld_u16(blk)), dmin = _cvtsh_ss(loom_ld_u16(blk + 2));
    for (int s = 0; s < 8; s++) {
        uint8_t sc, m;
        loom_q4k_scale_min(s, blk + 4, &sc, &m);
        fs[s * mr + r] = d * (float)sc;
        mp[s * mr + r] = (int32_t)((uint32_t)m | ((uint32_t)m << 16));
    }
    d2[r] = -dmin;
}

/* The r8 layout (runtime/kernels.h) in 256-bit vectors, one per group of 4
 * quants of the 8 rows (dword r = row r), as unsigned bytes: a Q4_0 or Q4_1
 * block's (its quants at qs; q[g]: elements 4g..4g+3), or sub-block s of a Q4_K/Q5_K super-block's
 * (Q5_K: with the fifth bit, as decK_piece of gemm_avx2.c). Shared by the
 * AVX2 and the AVX-512 r8 kernels. */
static inline __attribute__((always_inline)) void loom_r8_q4_quants(const uint8_t *qs, __m256i q[8]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    LOOM_UNROLL for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        q[j] = _mm256_and_si256(v, m4);
        q[4 + j] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
}

/* MXFP4's 8 E8M0 bytes at p (an r8 block's) as loom_e8m0_half's floats:
 * 2^(e - 128), the two smallest as subnormals */
static inline __attribute__((always_inline)) __m256 loom_r8_e8m0(const uint8_t *p) {
    const __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    const __m256i nrm = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
    const __m256i sub = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e);
    return _mm256_castsi256_ps(_mm256_blendv_epi8(nrm, sub, _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e)));
}

/* A Q4_0/Q4_1/MXFP4/IQ4_NL block of an r8 group (at p): the 8 rows' scales
 * fs, their offset term off (Q4_1: the mins; Q4_0: -8 * fs, MXFP4: -12 * fs,
 * as loom_panel_terms32; IQ4_NL: none, off is not set) and their quants as
 * unsigned bytes (MXFP4: its codes' doubled E2M1 values + 12, IQ4_NL: the
 * grid values + 128, as the rows' kernels). */
/* where a 32-element r8 block's quants start (after the 8 rows' scales) */
static inline __attribute__((always_inline)) int loom_r8_q4_qo(const int type) {
    return type == LOOM_TYPE_Q4_1 ? 32 : type == LOOM_TYPE_MXFP4 ? 8 : 16;
}
/* MXFP4's and IQ4_NL's codes -> their unsigned values (the VPSHUFB table
 * the rows' kernels use); NULL for the types whose nibbles are the values */
static inline __attribute__((always_inline)) const void *loom_r8_code_table(const int type) {
    static const int8_t kv4[16] = LOOM_KV_MXFP4_U_INIT;
    static const uint8_t kvn[16] = LOOM_KV_IQ4NL_U_INIT;
    return type == LOOM_TYPE_MXFP4 ? (const void *)kv4 : type == LOOM_TYPE_IQ4_NL ? (const void *)kvn : NULL;
}
static inline __attribute__((always_inline)) void loom_r8_q4_block(const int type, const uint8_t *p, __m256 *fs,
                                                                   __m256 *off, __m256i q[8]) {
    *fs = type == LOOM_TYPE_MXFP4 ? loom_r8_e8m0(p) : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    if (type == LOOM_TYPE_Q8_0) { /* the AVX-512 level's: signed bytes + 128 (off: the GEMM's, as IQ4_NL's) */
        *off = _mm256_mul_ps(_mm256_set1_ps(-128.0f), *fs);
        LOOM_UNROLL for (int g = 0; g < 8; g++)
            q[g] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 16 + 32 * g)), _mm256_set1_epi8((char)0x80));
        return;
    }
    if (type != LOOM_TYPE_IQ4_NL)
        *off = type == LOOM_TYPE_Q4_1 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16)))
                                      : _mm256_mul_ps(_mm256_set1_ps(type == LOOM_TYPE_MXFP4 ? -(float)LOOM_MXFP4_OFFSET : -8.0f), *fs);
    loom_r8_q4_quants(p + loom_r8_q4_qo(type), q);
    if (loom_r8_code_table(type)) {
        const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)loom_r8_code_table(type)));
        LOOM_UNROLL for (int g = 0; g < 8; g++) q[g] = _mm256_shuffle_epi8(t, q[g]);
    }
}

/* -dmin of the 8 rows of an r8 K super-block with mins (Q4_K, Q5_K, Q2_K:
 * their F16 dmin at p + 16) */
static inline __attribute__((always_inline)) __m256 loom_r8_negdmin(const uint8_t *p) {
    return _mm256_xor_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16))), _mm256_set1_ps(-0.0f));
}

static inline __attribute__((always_inline)) void loom_r8_k45_quants(const int type, const bool whole, const uint8_t *sb,
                                                                     const int s, __m256i q[8]) {
    if (type == LOOM_TYPE_Q5_K && whole) { /* loom_r8_q5_get, 32 lanes at once (16-bit shifts of a byte's top bits stay in it) */
        const __m256i m5 = _mm256_set1_epi8(0x1F), me0 = _mm256_set1_epi8((char)0xE0), m60 = _mm256_set1_epi8(0x60),
                      m80 = _mm256_set1_epi8((char)0x80);
        LOOM_UNROLL for (int g = 0; g < 8; g++) {
#define Q5C(i) _mm256_loadu_si256((const __m256i *)(sb + LOOM_R8_Q5_Q(g, i)))
            if (s < 5) q[g] = _mm256_and_si256(Q5C(s), m5);
            else if (s < 7)
                q[g] = _mm256_or_si256(_mm256_srli_epi16(_mm256_and_si256(Q5C(s - 5), me0), 5),
                                       _mm256_srli_epi16(_mm256_and_si256(Q5C(s - 2), m60), 2));
            else
                q[g] = _mm256_or_si256(_mm256_or_si256(_mm256_srli_epi16(_mm256_and_si256(Q5C(2), me0), 5),
                                                       _mm256_srli_epi16(_mm256_and_si256(Q5C(3), m80), 4)),
                                       _mm256_srli_epi16(_mm256_and_si256(Q5C(4), m80), 3));
#undef Q5C
        }
        return;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const uint8_t *qp = sb + LOOM_R8_K45_QS(type) + 256 * (s >> 1); /* chunks 8(s/2).., low nibbles for even s */
    LOOM_UNROLL for (int g = 0; g < 8; g++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qp + 32 * g));
        q[g] = _mm256_and_si256(s & 1 ? _mm256_srli_epi16(v, 4) : v, m4);
        if (type == LOOM_TYPE_Q5_K) { /* bit s of qh -> 16 */
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(sb + 160 + 32 * g));
            __m256i hb = _mm256_and_si256(qh, _mm256_set1_epi8((char)(1 << s)));
            hb = s < 4 ? _mm256_slli_epi16(hb, 4 - s) : s > 4 ? _mm256_srli_epi16(hb, s - 4) : hb;
            q[g] = _mm256_or_si256(q[g], hb);
        }
    }
}

/* Group g of half h of a Q6_K super-block of an r8 group (at sb): q[j], the
 * 8 rows' 6-bit quants of elements 128h + 32j + 4g.. (kernels.h: three
 * chunks' low 6 bits, the fourth quarter from their top two; a 16-bit
 * shift of a byte's top bits moves none across bytes). */
static inline __attribute__((always_inline)) void loom_r8_q6_quants(const uint8_t *sb, const int h, const int g,
                                                                    __m256i q[4]) {
    const __m256i m6 = _mm256_set1_epi8(0x3F), mc0 = _mm256_set1_epi8((char)0xC0);
    const uint8_t *c = sb + LOOM_R8_Q6_Q(h, g, 0);
    const __m256i b0 = _mm256_loadu_si256((const __m256i *)c), b1 = _mm256_loadu_si256((const __m256i *)(c + 32)),
                  b2 = _mm256_loadu_si256((const __m256i *)(c + 64));
    q[0] = _mm256_and_si256(b0, m6);
    q[1] = _mm256_and_si256(b1, m6);
    q[2] = _mm256_and_si256(b2, m6);
    q[3] = _mm256_or_si256(_mm256_or_si256(_mm256_srli_epi16(_mm256_and_si256(b0, mc0), 6),
                                           _mm256_srli_epi16(_mm256_and_si256(b1, mc0), 4)),
                           _mm256_srli_epi16(_mm256_and_si256(b2, mc0), 2));
}

/* The same for Q3_K (0..7: the low two bits from the half's qs chunk, the
 * third from bit 4h + j of the group's hmask chunk; LOOM_R8_Q3_L / _H) */
static inline __attribute__((always_inline)) void loom_r8_q3_quants(const uint8_t *sb, const int h, const int g,
                                                                    __m256i q[4]) {
    const __m256i L = _mm256_loadu_si256((const __m256i *)(sb + LOOM_R8_Q3_L(h, g)));
    const __m256i H = _mm256_loadu_si256((const __m256i *)(sb + LOOM_R8_Q3_H(g)));
    LOOM_UNROLL for (int j = 0; j < 4; j++) {
        const int s = 4 * h + j; /* H's bit s -> bit 2 */
        const __m256i lo = _mm256_and_si256(j ? _mm256_srli_epi16(L, 2 * j) : L, _mm256_set1_epi8(3));
#ifdef __AVX512VL__
        q[j] = _mm256_mask_add_epi8(lo, _mm256_test_epi8_mask(H, _mm256_set1_epi8((char)(1 << s))), lo, _mm256_set1_epi8(4));
#else
        const __m256i hb = s >= 2 ? _mm256_srli_epi16(H, s - 2) : _mm256_slli_epi16(H, 2 - s);
        q[j] = _mm256_or_si256(lo, _mm256_and_si256(hb, _mm256_set1_epi8(4)));
#endif
    }
}
/* The same for Q2_K (0..3: Q3_K's low two bits; LOOM_R8_Q2_L) */
static inline __attribute__((always_inline)) void loom_r8_q2_quants(const uint8_t *sb, const int h, const int g,
                                                                    __m256i q[4]) {
    const __m256i L = _mm256_loadu_si256((const __m256i *)(sb + LOOM_R8_Q2_L(h, g)));
    LOOM_UNROLL for (int j = 0; j < 4; j++) q[j] = _mm256_and_si256(j ? _mm256_srli_epi16(L, 2 * j) : L, _mm256_set1_epi8(3));
}
/* The r8 K-quants of 16-element scale groups, which take Q6_K's paths:
 * Q3_K with its offset (q - 4), Q2_K with its mins (as Q4_K's: a -dmin
 * step) instead of one. Their quants (loom_r8_q6_quants, _q3_, _q2_); the
 * log2 of the offset (q - 32, q - 4); the 8 rows' scales of group G as
 * int32 (Q6_K, Q3_K: int8 at sb + 16 + 8G; Q2_K: the low nibbles at sb +
 * 32 + 8G). */
static inline __attribute__((always_inline)) bool loom_r8_k16(const int type) {
    return type == LOOM_TYPE_Q6_K || type == LOOM_TYPE_Q3_K || type == LOOM_TYPE_Q2_K;
}
static inline __attribute__((always_inline)) void loom_r8_k16_quants(const int type, const uint8_t *sb, const int h,
                                                                     const int g, __m256i q[4]) {
    if (type == LOOM_TYPE_Q3_K) loom_r8_q3_quants(sb, h, g, q);
    else if (type == LOOM_TYPE_Q2_K) loom_r8_q2_quants(sb, h, g, q);
    else loom_r8_q6_quants(sb, h, g, q);
}
static inline __attribute__((always_inline)) int loom_r8_k16_shift(const int type) { return type == LOOM_TYPE_Q3_K ? 2 : 5; }
static inline __attribute__((always_inline)) __m256i loom_r8_k16_sc32(const int type, const uint8_t *sb, const int G) {
    if (type == LOOM_TYPE_Q2_K)
        return _mm256_and_si256(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sb + 32 + 8 * G))), _mm256_set1_epi32(0xF));
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(sb + 16 + 8 * G)));
}

/* Q6_K / Q3_K r8 scales (8 rows per scale group G at sb + 16 + 8G): the
 * rows' signed int8 pairs (sc[2j], sc[2j+1]) for the offset term's bsums
 * pair j (Q2_K: its mins' pairs (m[2j], m[2j+1]) for the min term), and the
 * [sc, sc] int16 pairs of groups G and G+1 (G even) */
static inline __attribute__((always_inline)) __m128i loom_r8_k16_offset_pairs(const int type, const uint8_t *sb, const int j) {
    __m128i v = _mm_loadu_si128((const __m128i *)(sb + (type == LOOM_TYPE_Q2_K ? 32 : 16) + 16 * j));
    if (type == LOOM_TYPE_Q2_K) v = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F));
    return _mm_unpacklo_epi8(v, _mm_srli_si128(v, 8));
}
static inline __attribute__((always_inline)) void loom_r8_k16_scale_pairs(const int type, const uint8_t *sb, const int G,
                                                                          __m256i *a, __m256i *b) {
    const __m256i v = type == LOOM_TYPE_Q2_K
                          ? _mm256_cvtepu8_epi16(_mm_and_si128(_mm_loadu_si128((const __m128i *)(sb + 32 + 8 * G)), _mm_set1_epi8(0x0F)))
                          : _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(sb + 16 + 8 * G)));
    const __m256i lo = _mm256_unpacklo_epi16(v, v), hi = _mm256_unpackhi_epi16(v, v);
    *a = _mm256_permute2x128_si256(lo, hi, 0x20);
    *b = _mm256_permute2x128_si256(lo, hi, 0x31);
}

#ifdef __AVX512F__
/* A pair of r8 groups in one 512-bit vector (group A's 8 rows in the low
 * half, B's in the high one; the AVX-512 r8 kernels and the GEMM over the
 * layout): 32 bytes of each, their F16 values as floats, their bytes as
 * unsigned or signed dwords; a K super-block's min pairs j (Q4_K/Q5_K: [m,
 * m] int16 per row) or Q6_K's offset pairs j ([sc[2j], sc[2j+1]]), and
 * -dmin. */
static inline __attribute__((always_inline)) __m512i loom_r8_ld2(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}
static inline __attribute__((always_inline)) __m512 loom_r8_f16x2(const uint8_t *a, const uint8_t *b) {
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
                                                   _mm_loadu_si128((const __m128i *)b), 1));
}
/* MXFP4: the 16 rows' E8M0 bytes (8 at a, 8 at b) as loom_r8_e8m0's floats */
static inline __attribute__((always_inline)) __m512 loom_r8_e8m0x2(const uint8_t *a, const uint8_t *b) {
    const __m512i e = _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)a), _mm_loadl_epi64((const __m128i *)b)));
    const __m512i nrm = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
    return _mm512_castsi512_ps(_mm512_mask_sllv_epi32(nrm, _mm512_cmplt_epu32_mask(e, _mm512_set1_epi32(2)),
                                                      _mm512_set1_epi32(0x00200000), e));
}
/* A Q4_0 / Q4_1 / MXFP4 / IQ4_NL block of an r8 pair (pa, pb: its bytes in
 * groups A and B): the 16 rows' scales, offset terms and quants as
 * loom_r8_q4_block's (IQ4_NL's off: -128 * fs, the GEMM's, as
 * loom_panel_terms32) */
static inline __attribute__((always_inline)) void loom_r8_q4_block2(const int type, const uint8_t *pa, const uint8_t *pb,
                                                                    __m512 *fs, __m512 *off, __m512i q[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const int qo = loom_r8_q4_qo(type);
    *fs = type == LOOM_TYPE_MXFP4 ? loom_r8_e8m0x2(pa, pb) : loom_r8_f16x2(pa, pb);
    if (type == LOOM_TYPE_Q8_0) { /* as loom_r8_q4_block's */
        *off = _mm512_mul_ps(_mm512_set1_ps(-128.0f), *fs);
        LOOM_UNROLL for (int g = 0; g < 8; g++)
            q[g] = _mm512_xor_si512(loom_r8_ld2(pa + 16 + 32 * g, pb + 16 + 32 * g), _mm512_set1_epi8((char)0x80));
        return;
    }
    *off = type == LOOM_TYPE_Q4_1 ? loom_r8_f16x2(pa + 16, pb + 16)
                                  : _mm512_mul_ps(_mm512_set1_ps(type == LOOM_TYPE_MXFP4 ? -(float)LOOM_MXFP4_OFFSET
                                                                 : type == LOOM_TYPE_IQ4_NL ? -128.0f : -8.0f), *fs);
    LOOM_UNROLL for (int j = 0; j < 4; j++) {
        const __m512i v = loom_r8_ld2(pa + qo + 32 * j, pb + qo + 32 * j);
        q[j] = _mm512_and_si512(v, m4);
        q[4 + j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    if (loom_r8_code_table(type)) {
        const __m512i t = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)loom_r8_code_table(type)));
        LOOM_UNROLL for (int g = 0; g < 8; g++) q[g] = _mm512_shuffle_epi8(t, q[g]);
    }
}
static inline __attribute__((always_inline)) __m512i loom_r8_u8x2(const uint8_t *a, const uint8_t *b) {
    return _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)a), _mm_loadl_epi64((const __m128i *)b)));
}
static inline __attribute__((always_inline)) __m512i loom_r8_i8x2(const uint8_t *a, const uint8_t *b) {
    return _mm512_cvtepi8_epi32(_mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)a), _mm_loadl_epi64((const __m128i *)b)));
}
static inline __attribute__((always_inline)) __m512i loom_r8_kmp(const int type, const uint8_t *pa, const uint8_t *pb,
                                                                 const int j) {
    if (loom_r8_k16(type))
        return _mm512_cvtepi8_epi16(_mm256_inserti128_si256(_mm256_castsi128_si256(loom_r8_k16_offset_pairs(type, pa, j)),
                                                            loom_r8_k16_offset_pairs(type, pb, j), 1));
    const __m512i m = loom_r8_u8x2(pa + 96 + 8 * j, pb + 96 + 8 * j);
    return _mm512_or_si512(m, _mm512_slli_epi32(m, 16));
}
static inline __attribute__((always_inline)) __m512 loom_r8_knegdmin(const uint8_t *pa, const uint8_t *pb) {
    return _mm512_xor_ps(loom_r8_f16x2(pa + 16, pb + 16), _mm512_set1_ps(-0.0f));
}
#endif

/* The r8 K-quant prefill's next panel, fetched while the current one is
 * read (loom_prefetch_l2): after super-blocks [sb0, sb0 + sbc) of the rows
 * from r0 (rstep rows per panel), the same rows' next super-blocks or the
 * next rows' first ones; NULL after the last. *bytes: its bytes per group
 * of 8 rows; *rows_left (if given): the rows from its first on. */
static inline const uint8_t *loom_r8_next_panel(const uint8_t *w, size_t ws, int64_t nr, int64_t r0, int64_t rstep,
                                                int64_t sb0, int64_t sbc, int64_t nsbk, size_t bb, size_t *bytes,
                                                int64_t *rows_left) {
    const bool more = sb0 + sbc < nsbk;
    const int64_t r1 = more ? r0 : r0 + rstep, sb1 = more ? sb0 + sbc : 0;
    *bytes = (size_t)(nsbk - sb1 < sbc ? nsbk - sb1 : sbc) * bb;
    if (rows_left) *rows_left = nr - r1;
    return r1 < nr ? w + (size_t)r1 * ws + (size_t)sb1 * bb : NULL;
}

/* The r8 decode walk of both levels (matmul_avx512.c, gemm_avx2.c), over
 * their r8_group(type, NG, NT, grps, k, x, xs, tmp, pf, pfd): n <= MAXN
 * tokens (a level's r8_group takes up to 4 x MAXN sums; 0 is returned for
 * more), groups i, i+h, .. side by side in S = loom_r8_streams() streams (h =
 * groups / S), each fetched LOOM_R8_STREAM_PF bytes ahead; returns the
 * first group it left (the last groups % S, or 0 with one stream), for the
 * caller's one-group walk. */
#define LOOM_R8_STREAMS_WALK(MAXN)                                                                    \
    AI int64_t r8_streams(const int type, const uint8_t *w, size_t ws, int64_t k, int64_t nr,         \
                          const uint8_t *xq, size_t xs, const int n, float *y, int64_t ldy) {         \
        const int S = loom_r8_streams();                                                              \
        const int64_t h = (nr + 7) / 8 / S;                                                           \
        if (S == 1 || n > (MAXN)) return 0;                                                           \
        for (int64_t i = 0; i < h; i++) {                                                             \
            const uint8_t *grps[4];                                                                   \
            float tmp[4 * (MAXN) * 8];                                                                \
            for (int j = 0; j < S; j++) grps[j] = w + (size_t)(8 * (i + j * h)) * ws;                 \
            if (S == 4) {                                                                             \
                if (n == 1) r8_group(type, 4, 1, grps, k, xq, xs, tmp, NULL, LOOM_R8_STREAM_PF);      \
                else if ((MAXN) > 1 && n == 2) r8_group(type, 4, 2, grps, k, xq, xs, tmp, NULL, LOOM_R8_STREAM_PF); \
                else if ((MAXN) > 1 && n == 3) r8_group(type, 4, 3, grps, k, xq, xs, tmp, NULL, LOOM_R8_STREAM_PF); \
                else if ((MAXN) > 1) r8_group(type, 4, 4, grps, k, xq, xs, tmp, NULL, LOOM_R8_STREAM_PF); \
            } else {                                                                                  \
                if (n == 1) r8_group(type, 2, 1, grps, k, xq, xs, tmp, NULL, LOOM_R8_STREAM_PF);      \
                else if ((MAXN) > 1 && n == 2) r8_group(type, 2, 2, grps, k, xq, xs, tmp, NULL, LOOM_R8_STREAM_PF); \
                else if ((MAXN) > 1 && n == 3) r8_group(type, 2, 3, grps, k, xq, xs, tmp, NULL, LOOM_R8_STREAM_PF); \
                else if ((MAXN) > 1) r8_group(type, 2, 4, grps, k, xq, xs, tmp, NULL, LOOM_R8_STREAM_PF); \
            }                                                                                         \
            for (int j = 0; j < S; j++)                                                               \
                for (int t = 0; t < n; t++)                                                           \
                    for (int64_t r = 0; r < 8 && 8 * (i + j * h) + r < nr; r++)                       \
                        y[t * ldy + 8 * (i + j * h) + r] = tmp[8 * (j * n + t) + r];                  \
        }                                                                                             \
        return S * h;                                                                                 \
    }

/* The one-group walk of both levels after it: every group x every token,
 * by their r8_group in passes of up to 4 tokens (a group stays in L1 / L2
 * between passes); fetch: the next group into L2 during a group's first
 * pass. */
#define LOOM_R8_GROUP_PASSES                                                                          \
    AI void r8_passes(const int type, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq, \
                      size_t xs, int64_t n, float *y, int64_t ldy, const bool fetch) {                \
        for (int64_t r0 = 0; r0 < nr; r0 += 8) {                                                      \
            const uint8_t *grp = w + (size_t)r0 * ws;                                                 \
            const int rows = nr - r0 < 8 ? (int)(nr - r0) : 8;                                       \
            for (int64_t t0 = 0; t0 < n; t0 += 4) {                                                   \
                const uint8_t *pf = fetch && t0 == 0 && r0 + 8 < nr ? grp + 8 * ws : NULL, *x = xq + t0 * xs; \
                const int nt = (int)(n - t0 < 4 ? n - t0 : 4);                                        \
                float tmp[4 * 8];                                                                     \
                if (nt == 1) r8_group(type, 1, 1, &grp, k, x, xs, tmp, pf, 0);                        \
                else if (nt == 2) r8_group(type, 1, 2, &grp, k, x, xs, tmp, pf, 0);                   \
                else if (nt == 3) r8_group(type, 1, 3, &grp, k, x, xs, tmp, pf, 0);                   \
                else r8_group(type, 1, 4, &grp, k, x, xs, tmp, pf, 0);                                \
                for (int j = 0; j < nt; j++)                                                          \
                    for (int r = 0; r < rows; r++) y[(t0 + j) * ldy + r0 + r] = tmp[8 * j + r];       \
            }                                                                                         \
        }                                                                                             \
    }

#ifdef __AVX512BW__
/* Q3_K's unsigned quants (0..7) of chunk c (elements 64c..64c+63; the
 * AVX-512 tiles and GEMM): the low two bits of elements 128n + 32j + l
 * (n = c/2, j = 2(c%2) and the next) from byte l of the half's quant bytes
 * at bits 2j, the third from bit 4n + j of hmask[l]. */
static inline __m512i loom_q3k_chunk512(const uint8_t *blk, const int c) {
    const int n = c >> 1, j = 2 * (c & 1);
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * n)));
    v = _mm512_srli_epi16(v, 2 * j);
    v = _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFFFF0000u, v, 2), _mm512_set1_epi8(3));
    const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)blk));
    const __m512i sel = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (4 * n + j))),
                                           _mm256_set1_epi8((char)(2 << (4 * n + j))), 1);
    return _mm512_mask_add_epi8(v, _mm512_test_epi8_mask(h, sel), v, _mm512_set1_epi8(4));
}
/* Q2_K's quants (0..3) of chunk c: Q3_K's low two bits, from its bytes at 16 */
static inline __m512i loom_q2k_chunk512(const uint8_t *blk, const int c) {
    const int n = c >> 1, j = 2 * (c & 1);
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * n)));
    v = _mm512_srli_epi16(v, 2 * j);
    return _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFFFF0000u, v, 2), _mm512_set1_epi8(3));
}
#endif

#endif
