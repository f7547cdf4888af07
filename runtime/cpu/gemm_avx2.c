/*
 * runtime/cpu/gemm_avx2.c — AVX2 kernels for the quantized weight types
 * (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4): one ymm lane per weight
 * row.
 *
 * Three paths, one arithmetic:
 *   - the panel GEMM (n >= g_min_n tokens; prefill): the weights of 8 rows x
 *     one k-chunk are decoded to unsigned bytes and transposed into a panel
 *     (qT[g] = 8 dwords, dword r = quants k = 4g..4g+3 of row r); per token
 *     the 4 activation bytes of group g are broadcast, VPMADDUBSW gives int16
 *     pair sums for the 8 rows, added in int16 over as many groups as cannot
 *     overflow (2*15*127 per pair: 8 groups for 4-bit quants, 4 for 5-bit, 2
 *     for Q6_K), then one VPMADDWD by ones widens them. The panel is decoded
 *     once per k-chunk and reused for every token;
 *   - row tiles (fewer tokens; decode): the 8 rows' quants of one block are
 *     decoded into registers, each row's VPMADDUBSW + VPMADDWD with the
 *     token's activations gives 8 int32 vectors, and a VPHADDD tree turns
 *     them into one vector of per-row sums (lane r = row r);
 *   - weights in the r8 layout (runtime/kernels.h; loom_weights_repack puts
 *     Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K there on this level), every token
 *     count: the layout is the panel already, so a group's 8 rows are one
 *     stream, their scales one load, and no VPHADDD tree is needed (the
 *     K-quants' prefill unpacks 4 super-blocks once for all tokens,
 *     r8_kgroups). On Zen 4
 *     (bench_matmul 32768-65536 x 2048 from DRAM, one core) the row tiles
 *     stream Q4_0 / Q4_K / Q5_K / Q6_K / Q8_0 at 16.5 / 16.2 / 17.0 / 20.0 /
 *     23.2 GB/s, r8 at 31.5-33 / 29-33 / 26.7 / 33 / 32.2.
 * All paths get the same exact integer sum I per (row, scale group) and
 * then run the same float steps per lane (step32 / stepK_*), in the same
 * order, from the first block of the row to the last (the GEMM carries a
 * row's running sum across k-chunks through y). So a row's result is
 * bit-identical whichever path computes it, whatever else is in the call:
 * the batch invariance promised in runtime/kernels.h.
 *
 * Scale terms per lane (runtime/cpu/gemm_panel.h): 32-element blocks
 * y += dw*(da*I) + off*s (off = m, or -c*dw for the unsigned form of Q4_0/
 * Q5_0: their offset is removed in float, so the rounding error is relative
 * to c*|dw*da*sum(a)|); K super-blocks y += da*(sum_g fs_g*I_g + d2*M) with
 * M the integer mins/offset term from the bsums.
 *
 * Q8_0 runs on the row tiles only, for every number of tokens (its
 * unsigned panel form would saturate VPMADDUBSW's int16 pairs): |w| times
 * the activations carrying w's signs (at most 2*128*127 per pair), widened
 * per row, lanes summed by the VPHADDD tree; tot += dw*(da*I). Float
 * weights stay on the register tiles of matmul_avx2.c.
 *
 * Compiled with -mavx2 -mfma -mf16c -mbmi2.
 */

#include <immintrin.h>

#include "runtime/cpu/gemm_panel.h"

LOOM_NO_UBSAN_BEGIN /* why: cpu_kernels.h */
#define AI LOOM_AI
#define UNROLL LOOM_UNROLL

enum { GMR = 8, GKC = 512, GNT = 4, RTN = 4 /* tokens per row tile */ };

/* The tokens from which the GEMM takes a type; below, the row tiles (the
 * choice changes speed only, never a result). bench_matmul -i avx2 on an
 * EPYC 7xx1 (Zen 1), one thread, 2048 x 4096, GFLOP/s row tiles vs GEMM:
 *   Q4_1  n = 4: 21 vs 22, 8: 21 vs 29, 16: 21 vs 23..36, 32: 21 vs 39
 *   Q5_0  n = 4: 19 vs 19, 8: 19 vs 25, 16: 15 vs 31
 *   Q4_K  n = 4: 26 vs 23, 8: 26 vs 29, 16: 26 vs 35
 *   Q5_K  n = 4: 26 vs 19, 8: 26 vs 26, 16: 26 vs 32
 *   Q6_K  n = 8: 27 vs 23, 16: 27 vs 27, 24: 27 vs 30 */
AI int g_min_n(const int type) { return type == LOOM_TYPE_Q6_K ? 16 : 8; }

/* ============================== decoding ============================== */

/* 16 packed nibble bytes -> 32 quants in element order (lo nibbles, then hi) */
AI __m256i nibbles(const uint8_t *p) {
    const __m128i x = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, 0x10 where the bit is set (bit j -> byte j) */
AI __m256i bits_to_0x10(uint32_t bits) {
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)bits),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                         3, 3, 3, 3, 3, 3, 3));
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, sel), sel), _mm256_set1_epi8(16));
}

/* Q8_0 and IQ4_NL: signed quants, no offset */
AI int signed_q(const int type) { return type == LOOM_TYPE_Q8_0 || type == LOOM_TYPE_IQ4_NL; }

/* A 32-element block -> its unsigned quants (0..15 or 0..31); Q8_0, IQ4_NL:
 * its signed quants. */
AI __m256i dec32(const int type, const uint8_t *p) {
    switch (type) {
    case LOOM_TYPE_Q8_0: return _mm256_loadu_si256((const __m256i *)(p + 2));
    case LOOM_TYPE_Q4_0: return nibbles(p + 2);
    case LOOM_TYPE_Q4_1: return nibbles(p + 4);
    case LOOM_TYPE_MXFP4: { /* codes -> doubled E2M1 values + 12 */
        static const int8_t kv[16] = LOOM_KV_MXFP4_U_INIT;
        return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kv)), nibbles(p + 1));
    }
    case LOOM_TYPE_IQ4_NL: { /* nibbles -> their signed grid values: then as Q8_0 */
        static const int8_t kv[16] = LOOM_KV_IQ4NL_INIT;
        return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kv)), nibbles(p + 2));
    }
    case LOOM_TYPE_Q5_0: return _mm256_or_si256(nibbles(p + 6), bits_to_0x10(loom_ld_u32(p + 2)));
    default: return _mm256_or_si256(nibbles(p + 8), bits_to_0x10(loom_ld_u32(p + 4))); /* Q5_1 */
    }
}

/* Unsigned quants of the 32-element piece j (elements 32j..32j+31) of a K super-block. */
AI __m256i decK_piece(const int type, const uint8_t *blk, const int j) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    if (type == LOOM_TYPE_Q2_K) { /* bits 2jj of the half's quant bytes */
        const int n = j >> 2, jj = j & 3;
        return _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * n)), 2 * jj),
                                _mm256_set1_epi8(3));
    }
    if (type == LOOM_TYPE_Q3_K) { /* bits 2jj of the half's quant bytes, the third from hmask bit 4n + jj */
        const int n = j >> 2, jj = j & 3;
        const __m256i lo = _mm256_and_si256(
            _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * n)), 2 * jj), _mm256_set1_epi8(3));
        const __m256i bit = _mm256_set1_epi8((char)(1 << (4 * n + jj)));
        const __m256i hb = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_loadu_si256((const __m256i *)blk), bit), bit);
        return _mm256_or_si256(lo, _mm256_and_si256(hb, _mm256_set1_epi8(4)));
    }
    if (type == LOOM_TYPE_Q6_K) {
        const int h = j >> 2, p = j & 3;
        const __m256i L = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32 * (p & 1)));
        const __m256i H = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
        const __m256i m30 = _mm256_set1_epi8(0x30);
        const __m256i lo = p < 2 ? _mm256_and_si256(L, m4) : _mm256_and_si256(_mm256_srli_epi16(L, 4), m4);
        __m256i hi;
        switch (p) { /* bits 2p, 2p+1 of H moved to bits 4, 5 */
        case 0: hi = _mm256_slli_epi16(H, 4); break;
        case 1: hi = _mm256_slli_epi16(H, 2); break;
        case 2: hi = H; break;
        default: hi = _mm256_srli_epi16(H, 2); break;
        }
        return _mm256_or_si256(lo, _mm256_and_si256(hi, m30));
    }
    const int c = j >> 1;
    const __m256i x = _mm256_loadu_si256((const __m256i *)(blk + (type == LOOM_TYPE_Q4_K ? 16 : 48) + 32 * c));
    __m256i q = (j & 1) ? _mm256_and_si256(_mm256_srli_epi16(x, 4), m4) : _mm256_and_si256(x, m4);
    if (type == LOOM_TYPE_Q5_K) { /* bit j of qh[l] -> 16 */
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 16));
        __m256i hb = _mm256_and_si256(qh, _mm256_set1_epi8((char)(1 << j)));
        hb = j < 4 ? _mm256_slli_epi16(hb, 4 - j) : j > 4 ? _mm256_srli_epi16(hb, j - 4) : hb;
        q = _mm256_or_si256(q, hb);
    }
    return q;
}

/* ====================== the float steps of every path ====================== */

/* 32-element block: tot += fs*(da*I) + off*s (Q8_0, which has no offset:
 * tot += fs*(da*I)) */
AI __m256 step32(const int type, __m256 tot, __m256i I, __m256 da, __m256 fs, __m256 off, __m256 s) {
    tot = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(I), da), fs, tot);
    return signed_q(type) ? tot : _mm256_fmadd_ps(off, s, tot);
}

/* K super-block: tot += d*(da*S) + negdmin*(da*Mn); S = sum_g sc_g*I_g (Q6_K:
 * plus its -32 offset term), Mn = sum_s m_s*B_s (Q4_K/Q5_K), both exact */
AI __m256 stepK(const int type, __m256 tot, __m256i S, __m256i Mn, __m256 da, __m256 d, __m256 negdmin) {
    tot = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(S), da), d, tot);
    if (loom_k_mins(type)) tot = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(Mn), da), negdmin, tot);
    return tot;
}

AI __m256i bcast4(const uint8_t *p) { return _mm256_set1_epi32((int)loom_ld_u32(p)); }

/* K mins (Q4_K/Q5_K) or offset (Q6_K) term (lane = row) of one token's
 * super-block (activation block at ab): sum_j mp_j . bsums pair j, exact. */
AI __m256i kmins(const int32_t (*mp)[GMR], const uint8_t *ab) {
    __m256i M = _mm256_setzero_si256();
    UNROLL for (int j = 0; j < 8; j++)
        M = _mm256_add_epi32(M, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)mp[j]), bcast4(ab + 260 + 4 * j)));
    return M;
}

/* y[0..rows) = v (rows < 8: only those lanes) */
AI void store_rows(float *y, __m256 v, int rows) {
    if (rows == GMR) {
        _mm256_storeu_ps(y, v);
        return;
    }
    float tmp[GMR];
    _mm256_storeu_ps(tmp, v);
    for (int r = 0; r < rows; r++) y[r] = tmp[r];
}

AI __m256 load_rows(const float *y, int rows) {
    if (rows == GMR) return _mm256_loadu_ps(y);
    float tmp[GMR] = {0};
    for (int r = 0; r < rows; r++) tmp[r] = y[r];
    return _mm256_loadu_ps(tmp);
}

/* ============================ prefill panel GEMM ============================ */

typedef struct {
    uint8_t qT[GKC / 4][32];    /* (k-group, row, 4 bytes) unsigned quants */
    float fs[GKC / 32][GMR];    /* (block, row) 32-families: dw */
    float off[GKC / 32][GMR];   /* (block, row) 32-families: -c*dw or m */
    int32_t scp[GKC / 16][GMR]; /* (scale group, row) K: the integer scale as an int16 pair [sc, sc] */
    int32_t mp[GKC / 32][GMR];  /* (super-block*8 + j, row) K: int16 pair for the bsums pair j */
    float dk[GKC / 256][GMR];   /* (super-block, row) K: d */
    float d2[GKC / 256][GMR];   /* (super-block, row) Q4_K/Q5_K: -dmin */
} gpanel;

/* Row r's K terms of one super-block into the panel arrays (first entry of
 * the super-block): integer scale pairs, mins/offset pairs as in
 * loom_panel_termsK, d and -dmin. */
AI void g_termsK(const int type, const uint8_t *blk, int r, int32_t (*scp)[GMR], int32_t (*mp)[GMR], float *dk,
                 float *d2) {
    if (loom_k_g16(type)) { /* Q6_K, Q3_K, Q2_K */
        const int c = loom_k_g16_offset(type);
        int8_t sc[16];
        loom_k_g16_scales(type, blk, sc);
        for (int g = 0; g < 16; g++) scp[g][r] = (int32_t)((uint32_t)(uint16_t)sc[g] * 0x10001u);
        dk[r] = _cvtsh_ss(loom_ld_u16(blk + loom_k_g16_d(type)));
        if (type == LOOM_TYPE_Q2_K) { /* its mins, times -dmin */
            int8_t m[16];
            loom_q2k_mins(blk, m);
            for (int j = 0; j < 8; j++) mp[j][r] = (int32_t)((uint32_t)(uint8_t)m[2 * j] | ((uint32_t)(uint8_t)m[2 * j + 1] << 16));
            d2[r] = -_cvtsh_ss(loom_ld_u16(blk + 82));
            return;
        }
        for (int j = 0; j < 8; j++)
            mp[j][r] = (int32_t)(((uint32_t)(uint16_t)(-c * sc[2 * j])) | ((uint32_t)(uint16_t)(-c * sc[2 * j + 1]) << 16));
        d2[r] = 0.0f;
        return;
    }
    for (int s = 0; s < 8; s++) {
        uint8_t sc, m;
        loom_q4k_scale_min(s, blk + 4, &sc, &m);
        scp[s][r] = (int32_t)(sc * 0x10001u);
        mp[s][r] = (int32_t)(m * 0x10001u);
    }
    dk[r] = _cvtsh_ss(loom_ld_u16(blk));
    d2[r] = -_cvtsh_ss(loom_ld_u16(blk + 2));
}

/* groups of 4 quants whose VPMADDUBSW pair sums may be added in int16 */
AI int g_run(const int type) {
    switch (type) {
    case LOOM_TYPE_Q4_0:
    case LOOM_TYPE_Q4_1:
    case LOOM_TYPE_Q4_K:
    case LOOM_TYPE_Q3_K:
    case LOOM_TYPE_Q2_K: return 8; /* (2*7*127 a pair at most) */
    case LOOM_TYPE_Q6_K: return 2;
    default: return 4;
    }
}

/* 8x8 dword transpose: R[i] = row i; out[j] = column j. */
AI void transpose8(const __m256i R[8], uint8_t (*out)[32]) {
    __m256i t[8], u[8];
    UNROLL for (int p = 0; p < 4; p++) {
        t[2 * p] = _mm256_unpacklo_epi32(R[2 * p], R[2 * p + 1]);
        t[2 * p + 1] = _mm256_unpackhi_epi32(R[2 * p], R[2 * p + 1]);
    }
    UNROLL for (int h = 0; h < 2; h++) { /* rows 0-3, rows 4-7 */
        u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    UNROLL for (int c = 0; c < 4; c++) {
        _mm256_store_si256((__m256i *)out[c], _mm256_permute2x128_si256(u[c], u[4 + c], 0x20));
        _mm256_store_si256((__m256i *)out[4 + c], _mm256_permute2x128_si256(u[c], u[4 + c], 0x31));
    }
}

AI void g_unpack(const int type, gpanel *P, const uint8_t *w, size_t ws, int rows, int64_t kc0, int kcl) {
    const size_t bs = loom_qblock_bytes(type);
    for (int gb = 0; gb * 32 < kcl; gb++) {
        const int64_t e = kc0 + 32 * gb; /* first element */
        __m256i R[8];
        UNROLL for (int r = 0; r < GMR; r++) {
            if (r >= rows) {
                R[r] = _mm256_setzero_si256();
                continue;
            }
            const uint8_t *wr = w + r * ws;
            if (loom_is_kquant(type)) {
                const uint8_t *blk = wr + (e / 256) * bs;
                const int j = (int)((e % 256) / 32);
                LOOM_PREFETCH_AHEAD(blk + (size_t)j * bs / 8, GMR * ws, bs / 8);
                R[r] = decK_piece(type, blk, j);
            } else {
                const uint8_t *pb = wr + (e / 32) * bs;
                LOOM_PREFETCH_AHEAD(pb, GMR * ws, bs);
                R[r] = dec32(type, pb);
            }
        }
        transpose8(R, P->qT + 8 * gb);
    }
    if (loom_is_kquant(type)) {
        const int ng = loom_k_g16(type) ? 16 : 8;
        for (int sbl = 0; sbl < kcl / 256; sbl++)
            for (int r = 0; r < GMR; r++) /* rows past the matrix repeat row 0 (never stored) */
                g_termsK(type, w + (r < rows ? r : 0) * ws + (kc0 / 256 + sbl) * bs, r, P->scp + ng * sbl,
                         P->mp + 8 * sbl, P->dk[sbl], P->d2[sbl]);
    } else {
        for (int b = 0; b < kcl / 32; b++)
            for (int r = 0; r < GMR; r++)
                loom_panel_terms32(type, r < rows ? w + r * ws + (kc0 / 32 + b) * bs : NULL, GMR, r, P->fs[b],
                                   P->off[b]);
    }
}

/* I[t] += the int32 sums over groups g0 .. g0+ng-1 of the panel for GNT
 * tokens, times the int16 pairs mul (ones, or a K scale group's [sc, sc]);
 * token t's 4-byte activation groups start at a[t] (group g at
 * a[t] + 4*(g - g0)). */
AI void g_dot(const int type, const gpanel *P, int g0, int ng, const uint8_t *const a[GNT], __m256i mul,
              __m256i I[GNT]) {
    const int run = g_run(type);
    for (int h = 0; h < ng; h += run) {
        __m256i S[GNT];
        UNROLL for (int t = 0; t < GNT; t++) S[t] = _mm256_setzero_si256();
        for (int g = h; g < h + run && g < ng; g++) {
            const __m256i wv = _mm256_load_si256((const __m256i *)P->qT[g0 + g]);
            UNROLL for (int t = 0; t < GNT; t++)
                S[t] = _mm256_add_epi16(S[t], _mm256_maddubs_epi16(wv, bcast4(a[t] + 4 * g)));
        }
        UNROLL for (int t = 0; t < GNT; t++) I[t] = _mm256_add_epi32(I[t], _mm256_madd_epi16(S[t], mul));
    }
}

/* The panel x up to GNT tokens; y holds each row's running sum (read unless
 * this is the first k-chunk) and receives it. */
AI void g_micro(const int type, const gpanel *P, int64_t k, int64_t kc0, int kcl, const uint8_t *x, size_t xs,
                int nt, float *y, int64_t ldy, int first, int rows) {
    const uint8_t *xt[GNT];
    UNROLL for (int t = 0; t < GNT; t++) xt[t] = x + (t < nt ? t : nt - 1) * xs;
    __m256 tot[GNT];
    UNROLL for (int t = 0; t < GNT; t++) tot[t] = first || t >= nt ? _mm256_setzero_ps() : load_rows(y + t * ldy, rows);
    if (!loom_is_kquant(type)) {
        const int64_t nb = k / 32;
        for (int b = 0; b < kcl / 32; b++) {
            const int64_t bb = kc0 / 32 + b;
            const uint8_t *a[GNT];
            __m256i I[GNT];
            UNROLL for (int t = 0; t < GNT; t++) a[t] = xt[t] + 32 * bb, I[t] = _mm256_setzero_si256();
            g_dot(type, P, 8 * b, 8, a, _mm256_set1_epi16(1), I);
            const __m256 fsv = _mm256_loadu_ps(P->fs[b]), offv = _mm256_loadu_ps(P->off[b]);
            UNROLL for (int t = 0; t < GNT; t++)
                tot[t] = step32(type, tot[t], I[t], _mm256_set1_ps(loom_ld_f32(xt[t] + k + 4 * bb)), fsv, offv,
                                _mm256_set1_ps(loom_ld_f32(xt[t] + k + 4 * nb + 4 * bb)));
        }
    } else {
        const int gs = loom_k_g16(type) ? 16 : 32; /* elements per scale group */
        for (int sbl = 0; sbl < kcl / 256; sbl++) {
            const int64_t sb = kc0 / 256 + sbl;
            __m256i S[GNT], Mn[GNT];
            UNROLL for (int t = 0; t < GNT; t++) S[t] = _mm256_setzero_si256();
            for (int sub = 0; sub < 256 / gs; sub++) {
                const uint8_t *a[GNT];
                UNROLL for (int t = 0; t < GNT; t++) a[t] = xt[t] + 292 * sb + 4 + gs * sub;
                g_dot(type, P, 64 * sbl + (gs / 4) * sub, gs / 4, a,
                      _mm256_loadu_si256((const __m256i *)P->scp[(256 / gs) * sbl + sub]), S);
            }
            UNROLL for (int t = 0; t < GNT; t++) {
                const __m256i M = kmins((const int32_t (*)[GMR])P->mp[8 * sbl], xt[t] + 292 * sb);
                if (!loom_k_mins(type)) S[t] = _mm256_add_epi32(S[t], M);
                Mn[t] = M;
                tot[t] = stepK(type, tot[t], S[t], Mn[t], _mm256_set1_ps(loom_ld_f32(xt[t] + 292 * sb)),
                               _mm256_loadu_ps(P->dk[sbl]), _mm256_loadu_ps(P->d2[sbl]));
            }
        }
    }
    UNROLL for (int t = 0; t < GNT; t++) {
        if (t >= nt) break;
        store_rows(y + t * ldy, tot[t], rows);
    }
}

AI void g_gemm(const int type, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq, size_t xs,
               int64_t n, float *y, int64_t ldy) {
    _Alignas(32) gpanel P;
    for (int64_t kc0 = 0; kc0 < k; kc0 += GKC) {
        const int kcl = (int)(k - kc0 < GKC ? k - kc0 : GKC);
        for (int64_t p = 0; p < nr; p += GMR) {
            const int rows = (int)(nr - p < GMR ? nr - p : GMR);
            g_unpack(type, &P, w + p * ws, ws, rows, kc0, kcl);
            for (int64_t t = 0; t < n; t += GNT) {
                const int nt = (int)(n - t < GNT ? n - t : GNT);
                g_micro(type, &P, k, kc0, kcl, xq + t * xs, xs, nt, y + t * ldy + p, ldy, kc0 == 0, rows);
            }
        }
    }
}

/* ---- Q4_0 / Q4_1 in the r8 layout (runtime/kernels.h): the same panels ----
 * A group's 32-byte run of quants is its 8 rows' dwords of one k-group, a
 * panel line as it lies: the panel fills by nibble split without the
 * transpose, and g_micro's sums and float steps are the row tiles' and the
 * r8 kernels' (the AVX2 level's bits). */
AI void g_unpack_r8(const int type, gpanel *P, const uint8_t *grp, int64_t kc0, int kcl, const uint8_t *next) {
    const size_t bb = loom_r8_block_bytes(type);
    for (int b = 0; b < kcl / 32; b++) {
        const size_t o = (size_t)(kc0 / 32 + b) * bb;
        loom_prefetch_l2(next, o, o + bb); /* the next group's block, into L2 */
        __m256 fs, off;
        __m256i q[8];
        loom_r8_q4_block(type, grp + o, &fs, &off, q);
        _mm256_storeu_ps(P->fs[b], fs);
        _mm256_storeu_ps(P->off[b], off);
        UNROLL for (int g = 0; g < 8; g++) _mm256_store_si256((__m256i *)P->qT[8 * b + g], q[g]);
    }
}

AI void g_gemm_r8(const int type, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq, size_t xs,
                  int64_t n, float *y, int64_t ldy) {
    _Alignas(32) gpanel P;
    for (int64_t p = 0; p < nr; p += GMR) {
        const int rows = (int)(nr - p < GMR ? nr - p : GMR);
        const uint8_t *grp = w + (size_t)p * ws, *next = nr - p > GMR ? grp + GMR * ws : NULL;
        for (int64_t kc0 = 0; kc0 < k; kc0 += GKC) {
            const int kcl = (int)(k - kc0 < GKC ? k - kc0 : GKC);
            g_unpack_r8(type, &P, grp, kc0, kcl, next);
            for (int64_t t = 0; t < n; t += GNT) {
                const int nt = (int)(n - t < GNT ? n - t : GNT);
                g_micro(type, &P, k, kc0, kcl, xq + t * xs, xs, nt, y + t * ldy + p, ldy, kc0 == 0, rows);
            }
        }
    }
}

/* ================================ row tiles ================================ */

/* The two halves of a VPHADDD tree's result (rows 0-3 in a, 4-7 in b; in
 * each, bytes 0..15 in the low 128-bit half and 16..31 in the high one)
 * added per row: lane r = row r. In 128 bits, then joined (VPERM2I128 is 8
 * uops on Zen 1). */
AI __m256i rows8_join(const __m256i a, const __m256i b) {
    const __m128i s0 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    const __m128i s1 = _mm_add_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    return _mm256_inserti128_si256(_mm256_castsi128_si256(s0), s1, 1);
}

/* lane r: the sum of the 8 int32 lanes of p[r] */
AI __m256i rows8_sum(const __m256i p[GMR]) {
    return rows8_join(_mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3])),
                      _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7])));
}

/* lane r: the dot product of row r's 32 unsigned quants q[r] with the 32
 * activations at a. The VPMADDUBSW pair sums (at most 2*15*127 = 3810 for
 * 4-bit quants, 2*31*127 = 7874 for 5-bit) are first reduced in int16 by
 * VPHADDW, as far as the sums stay below 32768 (8 terms for 4 bits, 4 for
 * 5), and widened once per 4 or 8 rows rather than by a VPMADDWD per row.
 * The integer sum is exact either way. */
AI __m256i rows8_dot(const int type, const __m256i q[GMR], const uint8_t *a) {
    const __m256i av = _mm256_loadu_si256((const __m256i *)a);
    __m256i p[GMR];
    if (signed_q(type)) { /* signed quants: |w| . (a with w's signs) */
        const __m256i ones = _mm256_set1_epi16(1);
        UNROLL for (int r = 0; r < GMR; r++)
            p[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(q[r]), _mm256_sign_epi8(av, q[r])), ones);
        return rows8_sum(p);
    }
    UNROLL for (int r = 0; r < GMR; r++) p[r] = _mm256_maddubs_epi16(q[r], av);
    const __m256i h0 = _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]), _mm256_hadd_epi16(p[2], p[3]));
    const __m256i h1 = _mm256_hadd_epi16(_mm256_hadd_epi16(p[4], p[5]), _mm256_hadd_epi16(p[6], p[7]));
    if (type == LOOM_TYPE_Q4_0 || type == LOOM_TYPE_Q4_1) {
        const __m256i h = _mm256_hadd_epi16(h0, h1); /* int16 lane r: row r, elements 0..15 | 16..31 */
        return _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(h)),
                                _mm256_cvtepi16_epi32(_mm256_extracti128_si256(h, 1)));
    }
    const __m256i ones = _mm256_set1_epi16(1);
    return rows8_join(_mm256_madd_epi16(h0, ones), _mm256_madd_epi16(h1, ones));
}

/* lane r: the fp16 at byte o of row r's block (scale d), and the one after
 * it (the min m) */
AI void rows8_f16pair(const uint8_t *const wr[GMR], size_t o, __m256 *d, __m256 *m) {
    const __m128i a = _mm_setr_epi32((int)loom_ld_u32(wr[0] + o), (int)loom_ld_u32(wr[1] + o),
                                     (int)loom_ld_u32(wr[2] + o), (int)loom_ld_u32(wr[3] + o));
    const __m128i b = _mm_setr_epi32((int)loom_ld_u32(wr[4] + o), (int)loom_ld_u32(wr[5] + o),
                                     (int)loom_ld_u32(wr[6] + o), (int)loom_ld_u32(wr[7] + o));
    const __m128i lo16 = _mm_set1_epi32(0xFFFF);
    *d = _mm256_cvtph_ps(_mm_packus_epi32(_mm_and_si128(a, lo16), _mm_and_si128(b, lo16)));
    *m = _mm256_cvtph_ps(_mm_packus_epi32(_mm_srli_epi32(a, 16), _mm_srli_epi32(b, 16)));
}

/* Rows wr[0..8) (a tile with fewer rows repeats a real one) x NT tokens,
 * the whole of k, 32-element blocks: y[t*ldy + r], all 8 lanes stored;
 * prefetching pf bytes ahead of each block read (0: none). */
AI void rt32(const int type, const int NT, const uint8_t *const wr[GMR], int64_t k, const uint8_t *x,
             size_t xs, float *y, int64_t ldy, size_t pf) {
    const int64_t nb = k / 32;
    const size_t bs = loom_qblock_bytes(type);
    const int min_type = type == LOOM_TYPE_Q4_1 || type == LOOM_TYPE_Q5_1;
    __m256 tot[RTN];
    UNROLL for (int t = 0; t < NT; t++) tot[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i q[GMR];
        UNROLL for (int r = 0; r < GMR; r++) {
            LOOM_PREFETCH_AHEAD(wr[r] + b * bs, pf, bs);
            q[r] = dec32(type, wr[r] + b * bs);
        }
        __m256 fs, off;
        if (type == LOOM_TYPE_MXFP4) {
            float e[GMR];
            UNROLL for (int r = 0; r < GMR; r++) e[r] = loom_e8m0_half(wr[r][b * bs]);
            fs = _mm256_loadu_ps(e);
        } else {
            rows8_f16pair(wr, (size_t)b * bs, &fs, &off); /* same values as loom_panel_terms32 */
        }
        if (!min_type)
            off = _mm256_mul_ps(_mm256_set1_ps(type == LOOM_TYPE_Q4_0 ? -8.0f : type == LOOM_TYPE_MXFP4 ? -12.0f : -16.0f), fs);
        UNROLL for (int t = 0; t < NT; t++) {
            const uint8_t *xt = x + t * xs;
            tot[t] = step32(type, tot[t], rows8_dot(type, q, xt + 32 * b), _mm256_set1_ps(loom_ld_f32(xt + k + 4 * b)),
                            fs, off, _mm256_set1_ps(loom_ld_f32(xt + k + 4 * nb + 4 * b)));
        }
    }
    UNROLL for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ldy, tot[t]);
}

/* byte shuffles picking int16 lane i of a 128-bit register into all 8 lanes
 * (Q4_K/Q5_K: [s] = sub-block s), or lane i in the low half and lane i+1 in
 * the high half (Q6_K: [j] = groups 2j, 2j+1 of a half). */
#define B2(i) (char)(2 * (i)), (char)(2 * (i) + 1)
#define L8(i) B2(i), B2(i), B2(i), B2(i), B2(i), B2(i), B2(i), B2(i)
static const char shuf_k4[8][32] = {{L8(0), L8(0)}, {L8(1), L8(1)}, {L8(2), L8(2)}, {L8(3), L8(3)},
                                    {L8(4), L8(4)}, {L8(5), L8(5)}, {L8(6), L8(6)}, {L8(7), L8(7)}};
static const char shuf_k6[4][32] = {{L8(0), L8(1)}, {L8(2), L8(3)}, {L8(4), L8(5)}, {L8(6), L8(7)}};
#undef L8
#undef B2

/* The same for K super-blocks: per row, the int16 pair sums of each 32
 * quants are multiplied by their integer scales (VPMADDWD) and summed in
 * int32 over the super-block, then one VPHADDD tree per super-block gives
 * S (and Mn) with a lane per row. */
AI void rtK(const int type, const int NT, const uint8_t *const wr[GMR], int64_t k, const uint8_t *x,
            size_t xs, float *y, int64_t ldy, size_t pf) {
    const size_t bs = loom_qblock_bytes(type);
    __m256 tot[RTN];
    UNROLL for (int t = 0; t < NT; t++) tot[t] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < k / 256; sb++) {
        __m256i S[RTN][GMR], Mn[RTN][GMR];
        for (int r = 0; r < GMR; r++) {
            const uint8_t *blk = wr[r] + sb * bs;
            __m256i sc_a, sc_b = _mm256_setzero_si256(), corr = _mm256_setzero_si256();
            if (loom_k_g16(type)) { /* Q6_K, Q3_K, Q2_K */
                const __m256i s16 = _mm256_cvtepi8_epi16(loom_k_g16_scales128((loom_type)type, blk));
                sc_a = _mm256_permute2x128_si256(s16, s16, 0x00); /* groups 0..7 in both halves */
                sc_b = _mm256_permute2x128_si256(s16, s16, 0x11); /* groups 8..15 */
                if (type == LOOM_TYPE_Q2_K) /* m_g, against the bsums */
                    corr = _mm256_cvtepi8_epi16(loom_q2k_mins128(blk));
                else
                    corr = _mm256_mullo_epi16(s16, _mm256_set1_epi16((short)-loom_k_g16_offset(type))); /* -c sc_g */
            } else {
                const __m128i sm = loom_q4k_scales(blk + 4);
                sc_a = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
                corr = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)); /* [m_s, m_s] pairs */
            }
            __m256i acc[RTN];
            UNROLL for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_si256();
            UNROLL for (int j = 0; j < 8; j++) {
                LOOM_PREFETCH_AHEAD(blk + (size_t)j * bs / 8, pf, bs / 8);
                const __m256i q = decK_piece(type, blk, j);
                const __m256i sv = loom_k_g16(type)
                                       ? _mm256_shuffle_epi8(j < 4 ? sc_a : sc_b, _mm256_loadu_si256((const __m256i *)shuf_k6[j & 3]))
                                       : _mm256_shuffle_epi8(sc_a, _mm256_loadu_si256((const __m256i *)shuf_k4[j]));
                UNROLL for (int t = 0; t < NT; t++) {
                    const __m256i a = _mm256_loadu_si256((const __m256i *)(x + t * xs + 292 * sb + 4 + 32 * j));
                    acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), sv));
                }
            }
            UNROLL for (int t = 0; t < NT; t++) {
                const __m256i m = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(x + t * xs + 292 * sb + 260)), corr);
                if (!loom_k_mins(type)) S[t][r] = _mm256_add_epi32(acc[t], m);
                else S[t][r] = acc[t], Mn[t][r] = m;
            }
        }
        __m256 dk, negdmin;
        /* Q6_K / Q3_K: the fp16 at 208 / 108, the high half of the u32 read at 206 / 106 (it ends at the
         * block's end); Q2_K: [d, dmin] at 80 */
        rows8_f16pair(wr, (size_t)sb * bs + (loom_k_g16(type) ? bs - 4 : 0), &dk, &negdmin);
        if (!loom_k_mins(type)) dk = negdmin;
        negdmin = _mm256_xor_ps(negdmin, _mm256_set1_ps(-0.0f));
        UNROLL for (int t = 0; t < NT; t++)
            tot[t] = stepK(type, tot[t], rows8_sum(S[t]), loom_k_mins(type) ? rows8_sum(Mn[t]) : _mm256_setzero_si256(),
                           _mm256_set1_ps(loom_ld_f32(x + t * xs + 292 * sb)), dk, negdmin);
    }
    UNROLL for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ldy, tot[t]);
}

/* Rows in streams as loom_run_tiles walks them (cpu_kernels.h): tiles of rows
 * i, i+h, .., i+7h for i < h = nr / 8, then one tile of the leftover rows. */
AI void row_tiles(const int type, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq, size_t xs,
                  int64_t n, float *y, int64_t ldy) {
    /* eight streams: the next row of each is prefetched on every CPU (on Zen
     * 4, where loom_decode_pf() leaves the four-stream AVX-512 tiles without,
     * bench_matmul 65536 x 2048 decode Q6_K 13.6 -> 18.4 GB/s, Q4_K 15.8 ->
     * 16.8, Q8_0 22.4 -> 20.9) */
    const size_t pf = ws;
    const int64_t h = nr / GMR;
    for (int64_t i = 0; i < h + (nr % GMR != 0); i++) {
        const int rows = i < h ? GMR : (int)(nr - GMR * h);
        const int64_t r0 = i < h ? i : GMR * h, step = i < h ? h : 1; /* row q of the tile: r0 + q*step */
        const uint8_t *wr[GMR];
        UNROLL for (int q = 0; q < GMR; q++) wr[q] = w + (r0 + (q < rows ? q : 0) * step) * ws;
        for (int64_t t = 0; t < n; t += RTN) {
            const uint8_t *x = xq + t * xs;
            const int nt = (int)(n - t < RTN ? n - t : RTN);
            float tmp[RTN * GMR]; /* (token, row) */
#define RT(NT)                                                                 \
    if (loom_is_kquant(type)) rtK(type, NT, wr, k, x, xs, tmp, GMR, pf); \
    else rt32(type, NT, wr, k, x, xs, tmp, GMR, pf);
            switch (nt) {
            case 1: RT(1) break;
            case 2: RT(2) break;
            case 3: RT(3) break;
            default: RT(4) break;
            }
#undef RT
            for (int j = 0; j < nt; j++)
                for (int q = 0; q < rows; q++) y[(t + j) * ldy + r0 + q * step] = tmp[j * GMR + q];
        }
    }
}

/* ================================ r8 weights ================================ */

/* One r8 group (8 rows, runtime/kernels.h) x NT tokens, the whole of k:
 * tmp[t*GMR + r]. Loads of 32 bytes give the 8 rows' quants as the GEMM's
 * panel holds them (qT: dword r = row r; low nibbles one group of 4, high
 * nibbles another), the rows' scales are one conversion, the K scales and
 * mins bytes per (sub-block, row); so the integer sums (g_dot's: runs of
 * groups in int16, then one VPMADDWD by ones or by the [sc, sc] pairs;
 * kmins; Q8_0 as rows8_dot) and the float steps are the GEMM's and the row
 * tiles': a row's result is the same bits in either layout. No horizontal
 * sums, no per-row loads. NG groups (one token) go side by side, block by
 * block, each fetched pfd bytes ahead: decode's streams (gemm_panel.h:
 * LOOM_R8_STREAMS_WALK); pf: the next group, into L2. */

/* lane r: the int16 pair [v, v] of unsigned byte r at p (a K scale or min per row) */
AI __m256i r8_pairs(const uint8_t *p) {
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_or_si256(v, _mm256_slli_epi32(v, 16));
}

AI void r8_group(const int type, const int NG, const int NT, const uint8_t *const *grps, int64_t k, const uint8_t *x,
                 size_t xs, float *tmp, const uint8_t *pf, size_t pfd) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 tot[RTN];
    UNROLL for (int t = 0; t < NG * NT; t++) tot[t] = _mm256_setzero_ps();
    if (type == LOOM_TYPE_Q4_0 || type == LOOM_TYPE_Q4_1 || type == LOOM_TYPE_MXFP4) {
        const int64_t nb = k / 32;
        const size_t bb = loom_r8_block_bytes(type);
        const int run = g_run(type); /* groups per int16 sum */
        for (int64_t b = 0; b < nb; b++) UNROLL for (int gi = 0; gi < NG; gi++) {
            const uint8_t *p = grps[gi] + (size_t)b * bb;
            __m256 fs, off;
            __m256i q[8];
            LOOM_PREFETCH_AHEAD(p, pfd, bb);
            loom_prefetch_l2(pf, (size_t)b * bb, (size_t)(b + 1) * bb);
            loom_r8_q4_block(type, p, &fs, &off, q);
            UNROLL for (int t = 0; t < NT; t++) {
                const uint8_t *xt = x + t * xs, *a = xt + 32 * b;
                __m256i I = _mm256_setzero_si256();
                UNROLL for (int h = 0; h < 8; h += run) {
                    __m256i S = _mm256_maddubs_epi16(q[h], bcast4(a + 4 * h));
                    UNROLL for (int g = h + 1; g < h + run; g++) S = _mm256_add_epi16(S, _mm256_maddubs_epi16(q[g], bcast4(a + 4 * g)));
                    I = h ? _mm256_add_epi32(I, _mm256_madd_epi16(S, ones)) : _mm256_madd_epi16(S, ones);
                }
                tot[gi * NT + t] = step32(type, tot[gi * NT + t], I, _mm256_set1_ps(loom_ld_f32(xt + k + 4 * b)),
                                          fs, off, _mm256_set1_ps(loom_ld_f32(xt + k + 4 * nb + 4 * b)));
            }
        }
    } else if (type == LOOM_TYPE_Q8_0 || type == LOOM_TYPE_IQ4_NL) { /* |w| x (a with w's signs), as rows8_dot */
        const int64_t nb = k / 32;
        const size_t bb = loom_r8_block_bytes(type);
        for (int64_t b = 0; b < nb; b++) UNROLL for (int gi = 0; gi < NG; gi++) {
            const uint8_t *p = grps[gi] + (size_t)b * bb;
            LOOM_PREFETCH_AHEAD(p, pfd, bb);
            loom_prefetch_l2(pf, (size_t)b * bb, (size_t)(b + 1) * bb);
            __m256 fs, unused;
            __m256i q[8]; /* IQ4_NL: the grid values + 128, made signed below */
            if (type == LOOM_TYPE_IQ4_NL) loom_r8_q4_block(type, p, &fs, &unused, q);
            else fs = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
            __m256i I[RTN];
            UNROLL for (int t = 0; t < NT; t++) I[t] = _mm256_setzero_si256();
            UNROLL for (int g = 0; g < 8; g++) {
                const __m256i wv = type == LOOM_TYPE_IQ4_NL ? _mm256_xor_si256(q[g], _mm256_set1_epi8((char)0x80))
                                                            : _mm256_loadu_si256((const __m256i *)(p + 16 + 32 * g)),
                              aw = _mm256_abs_epi8(wv);
                UNROLL for (int t = 0; t < NT; t++)
                    I[t] = _mm256_add_epi32(I[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast4(x + t * xs + 32 * b + 4 * g), wv)), ones));
            }
            UNROLL for (int t = 0; t < NT; t++)
                tot[gi * NT + t] = step32(type, tot[gi * NT + t], I[t], _mm256_set1_ps(loom_ld_f32(x + t * xs + k + 4 * b)), fs, fs, fs);
        }
    } else if (loom_r8_k16(type)) {
        const size_t bb = loom_r8_block_bytes(type);
        for (int64_t sb = 0; sb < k / 256; sb++) UNROLL for (int gi = 0; gi < NG; gi++) {
            const uint8_t *p = grps[gi] + (size_t)sb * bb;
            LOOM_PREFETCH_AHEAD(p, pfd, bb);
            __m256i S[RTN];
            UNROLL for (int t = 0; t < NT; t++) S[t] = _mm256_setzero_si256();
            UNROLL for (int h = 0; h < 2; h++) {
                __m256i scs[2][4]; /* [hv][pp]: the [sc, sc] pairs of scale group 8h + 2pp + hv */
                UNROLL for (int pp = 0; pp < 4; pp++) loom_r8_k16_scale_pairs(type, p, 8 * h + 2 * pp, &scs[0][pp], &scs[1][pp]);
                UNROLL for (int hv = 0; hv < 2; hv++) { /* groups 4hv..4hv+3 of each quarter: one scale each */
                    const __m256i *sc = scs[hv];
                    UNROLL for (int g = 4 * hv; g < 4 * hv + 4; g += 2) {
                        __m256i q[2][4]; /* [group][quarter]: elements 128h + 32pp + 4g.. */
                        loom_r8_k16_quants(type, p, h, g, q[0]);
                        loom_r8_k16_quants(type, p, h, g + 1, q[1]);
                        UNROLL for (int t = 0; t < NT; t++) {
                            const uint8_t *a = x + t * xs + 292 * sb + 4 + 128 * h + 4 * g;
                            UNROLL for (int pp = 0; pp < 4; pp++) /* two groups of 4 per int16 sum (<= 2*2*63*127) */
                                S[t] = _mm256_add_epi32(S[t], _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(q[0][pp], bcast4(a + 32 * pp)),
                                                                                                  _mm256_maddubs_epi16(q[1][pp], bcast4(a + 32 * pp + 4))),
                                                                                 sc[pp]));
                        }
                    }
                }
            }
            /* the -32 (Q3_K: -4) offset, as g_termsK: S -= 32 sum_G sc_G bsum_G, the rows' pairs
             * (sc[2j], sc[2j+1]) from the 16 scale bytes at p + 16 + 16j (Q2_K: its mins' term) */
            __m256i O[RTN];
            UNROLL for (int t = 0; t < NT; t++) O[t] = _mm256_setzero_si256();
            UNROLL for (int j = 0; j < 8; j++) {
                const __m256i mp = _mm256_cvtepi8_epi16(loom_r8_k16_offset_pairs(type, p, j));
                UNROLL for (int t = 0; t < NT; t++)
                    O[t] = _mm256_add_epi32(O[t], _mm256_madd_epi16(mp, bcast4(x + t * xs + 292 * sb + 260 + 4 * j)));
            }
            if (!loom_k_mins(type)) /* Q2_K's O: its mins' term, stepK's second step */
                UNROLL for (int t = 0; t < NT; t++) S[t] = _mm256_sub_epi32(S[t], _mm256_slli_epi32(O[t], loom_r8_k16_shift(type)));
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
            const __m256 negdmin = loom_k_mins(type) ? loom_r8_negdmin(p) : d;
            UNROLL for (int t = 0; t < NT; t++)
                tot[gi * NT + t] = stepK(type, tot[gi * NT + t], S[t], O[t], _mm256_set1_ps(loom_ld_f32(x + t * xs + 292 * sb)), d, negdmin);
        }
    } else { /* Q4_K, Q5_K */
        for (int64_t sb = 0; sb < k / 256; sb++) UNROLL for (int gi = 0; gi < NG; gi++) {
            const uint8_t *p = grps[gi] + (size_t)sb * loom_r8_block_bytes(type);
            LOOM_PREFETCH_AHEAD(p, pfd, loom_r8_block_bytes(type));
            __m256i S[RTN], M[RTN];
            UNROLL for (int t = 0; t < NT; t++) S[t] = M[t] = _mm256_setzero_si256();
            UNROLL for (int s = 0; s < 8; s++) {
                __m256i q[8];
                loom_r8_k45_quants(type, true, p, s, q);
                const __m256i sc = r8_pairs(p + 32 + 8 * s);
                UNROLL for (int t = 0; t < NT; t++) {
                    const uint8_t *a = x + t * xs + 292 * sb + 4 + 32 * s;
                    /* 4-bit: 8 groups per int16 sum (<= 16*15*127), 5-bit: 4 (<= 8*31*127), as g_run */
                    UNROLL for (int g0 = 0; g0 < 8; g0 += g_run(type)) {
                        __m256i S16 = _mm256_maddubs_epi16(q[g0], bcast4(a + 4 * g0));
                        UNROLL for (int g = g0 + 1; g < g0 + g_run(type); g++)
                            S16 = _mm256_add_epi16(S16, _mm256_maddubs_epi16(q[g], bcast4(a + 4 * g)));
                        S[t] = _mm256_add_epi32(S[t], _mm256_madd_epi16(S16, sc));
                    }
                }
            }
            UNROLL for (int j = 0; j < 8; j++) { /* kmins */
                const __m256i mp = r8_pairs(p + 96 + 8 * j);
                UNROLL for (int t = 0; t < NT; t++)
                    M[t] = _mm256_add_epi32(M[t], _mm256_madd_epi16(mp, bcast4(x + t * xs + 292 * sb + 260 + 4 * j)));
            }
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
            const __m256 negdmin = loom_r8_negdmin(p);
            UNROLL for (int t = 0; t < NT; t++)
                tot[gi * NT + t] = stepK(type, tot[gi * NT + t], S[t], M[t], _mm256_set1_ps(loom_ld_f32(x + t * xs + 292 * sb)), d, negdmin);
        }
    }
    UNROLL for (int t = 0; t < NG * NT; t++) _mm256_storeu_ps(tmp + t * GMR, tot[t]);
}

/* K-quant prefill (n > RTN): a group's R8_SBC super-blocks unpacked once
 * (quants as r8_group reads them, scale and min pairs, d and -dmin) into a
 * panel in L1 that every RTN-token pass then reads, the running sums
 * carried through y from one panel to the next; sums and float steps are
 * r8_group's, lane for lane. r8_group unpacks the quants again for every
 * RTN tokens: Zen 4 (LOOM_ISA=avx2), bench_matmul 4096 x 2048, n = 128:
 * Q4_K / Q5_K / Q6_K 173 / 149 / 139 GFLOP/s that way. */
enum { R8_SBC = 4 };
typedef struct {
    __m256i q[R8_SBC][8][8];  /* [super-block][sub-block s][group g]; Q6_K: s = 4h + quarter */
    __m256i sc[R8_SBC][16];   /* [sc, sc] pairs: per sub-block (Q4_K/Q5_K), per 16 elements (Q6_K) */
    __m256i mp[R8_SBC][8];    /* min pairs [m_j, m_j] (Q4_K/Q5_K), scale pairs [sc_2j, sc_2j+1] (Q6_K) */
    __m256 d[R8_SBC], negdmin[R8_SBC];
} r8_kpanel;

AI void r8_kunpack(const int type, const uint8_t *p, r8_kpanel *P, const int c) {
    P->d[c] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    if (loom_r8_k16(type)) {
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 8; g++) {
                __m256i q[4];
                loom_r8_k16_quants(type, p, h, g, q);
                UNROLL for (int j = 0; j < 4; j++) P->q[c][4 * h + j][g] = q[j];
            }
        for (int G = 0; G < 16; G += 2) loom_r8_k16_scale_pairs(type, p, G, &P->sc[c][G], &P->sc[c][G + 1]);
        for (int j = 0; j < 8; j++) P->mp[c][j] = _mm256_cvtepi8_epi16(loom_r8_k16_offset_pairs(type, p, j));
        if (type == LOOM_TYPE_Q2_K) P->negdmin[c] = loom_r8_negdmin(p);
        return;
    }
    for (int s = 0; s < 8; s++) {
        loom_r8_k45_quants(type, true, p, s, P->q[c][s]);
        P->sc[c][s] = r8_pairs(p + 32 + 8 * s);
        P->mp[c][s] = r8_pairs(p + 96 + 8 * s);
    }
    P->negdmin[c] = loom_r8_negdmin(p);
}

/* NT tokens (x: their activations from the panel's first super-block on)
 * over nsb super-blocks of the panel */
AI void r8_kpass(const int type, const int NT, const r8_kpanel *P, const int nsb, const uint8_t *x, size_t xs, float *y,
                 int64_t ldy, const int rows, const bool first, const uint8_t *pf, size_t pfn) {
    __m256 tot[RTN];
    UNROLL for (int t = 0; t < NT; t++) tot[t] = first ? _mm256_setzero_ps() : load_rows(y + t * ldy, rows);
    for (int c = 0; c < nsb; c++) {
        loom_prefetch_l2(pf, pfn * c / nsb, pfn * (c + 1) / nsb);
        __m256i S[RTN], M[RTN];
        UNROLL for (int t = 0; t < NT; t++) S[t] = M[t] = _mm256_setzero_si256();
        for (int s = 0; s < 8; s++) {
            const __m256i *q = P->q[c][s];
            UNROLL for (int t = 0; t < NT; t++) {
                const uint8_t *a = x + t * xs + 292 * c + 4 + 32 * s;
                if (loom_r8_k16(type)) { /* two groups per int16 sum, groups 0-3 and 4-7 one scale each */
                    UNROLL for (int g = 0; g < 8; g += 2)
                        S[t] = _mm256_add_epi32(S[t], _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(q[g], bcast4(a + 4 * g)),
                                                                                          _mm256_maddubs_epi16(q[g + 1], bcast4(a + 4 * g + 4))),
                                                                         P->sc[c][2 * s + g / 4]));
                    continue;
                }
                UNROLL for (int g0 = 0; g0 < 8; g0 += g_run(type)) {
                    __m256i S16 = _mm256_maddubs_epi16(q[g0], bcast4(a + 4 * g0));
                    UNROLL for (int g = g0 + 1; g < g0 + g_run(type); g++)
                        S16 = _mm256_add_epi16(S16, _mm256_maddubs_epi16(q[g], bcast4(a + 4 * g)));
                    S[t] = _mm256_add_epi32(S[t], _mm256_madd_epi16(S16, P->sc[c][s]));
                }
            }
        }
        UNROLL for (int t = 0; t < NT; t++) {
            const uint8_t *xt = x + t * xs + 292 * c;
            UNROLL for (int j = 0; j < 8; j++) M[t] = _mm256_add_epi32(M[t], _mm256_madd_epi16(P->mp[c][j], bcast4(xt + 260 + 4 * j)));
            if (loom_r8_k16(type) && !loom_k_mins(type)) S[t] = _mm256_sub_epi32(S[t], _mm256_slli_epi32(M[t], loom_r8_k16_shift(type)));
            tot[t] = stepK(type, tot[t], S[t], M[t], _mm256_set1_ps(loom_ld_f32(xt)), P->d[c], P->negdmin[c]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++) store_rows(y + t * ldy, tot[t], rows);
}

AI void r8_kgroups(const int type, LOOM_MATMUL_PARAMS) {
    r8_kpanel P;
    const int64_t nsbk = k / 256;
    const size_t bb = loom_r8_block_bytes(type);
    for (int64_t r0 = 0; r0 < nr; r0 += GMR) {
        const uint8_t *grp = w + (size_t)r0 * ws;
        const int rows = nr - r0 < GMR ? (int)(nr - r0) : GMR;
        for (int64_t sb0 = 0; sb0 < nsbk; sb0 += R8_SBC) {
            const int nsb = (int)(nsbk - sb0 < R8_SBC ? nsbk - sb0 : R8_SBC);
            for (int c = 0; c < nsb; c++) r8_kunpack(type, grp + (size_t)(sb0 + c) * bb, &P, c);
            size_t pfn;
            const uint8_t *np = loom_r8_next_panel(w, ws, nr, r0, GMR, sb0, R8_SBC, nsbk, bb, &pfn, NULL);
            for (int64_t t = 0; t < n; t += RTN) {
                const uint8_t *x = xq + t * xs + 292 * sb0, *pf = t ? NULL : np;
                float *yt = y + t * ldy + r0;
                switch (n - t < RTN ? n - t : RTN) {
                case 1: r8_kpass(type, 1, &P, nsb, x, xs, yt, ldy, rows, sb0 == 0, pf, pfn); break;
                case 2: r8_kpass(type, 2, &P, nsb, x, xs, yt, ldy, rows, sb0 == 0, pf, pfn); break;
                case 3: r8_kpass(type, 3, &P, nsb, x, xs, yt, ldy, rows, sb0 == 0, pf, pfn); break;
                default: r8_kpass(type, 4, &P, nsb, x, xs, yt, ldy, rows, sb0 == 0, pf, pfn); break;
                }
            }
        }
    }
}

LOOM_R8_STREAMS_WALK(1)
LOOM_R8_GROUP_PASSES

/* The panel GEMM over the layout, one per type, apart from r8_matmul's
 * group passes: inlined beside them it cost them 10 % on Zen 4 (AMD EPYC
 * family 25 model 17, where the passes run every prefill: bench_matmul -i
 * avx2 --r8 4096 x 2048 Q4_0 n = 128, GFLOP/s, 147-150 against 159-167
 * before 4c34ab6) */
#define GEMMR8FN(T, t) \
    static __attribute__((noinline)) void g_gemm_r8_##t(LOOM_MATMUL_PARAMS) { g_gemm_r8(T, w, ws, k, nr, xq, xs, n, y, ldy); }
GEMMR8FN(LOOM_TYPE_Q4_0, q4_0)
GEMMR8FN(LOOM_TYPE_Q4_1, q4_1)
GEMMR8FN(LOOM_TYPE_MXFP4, mxfp4)
#undef GEMMR8FN

/* Every group x every token, RTN tokens at a time (a group's weights stay
 * in L1 or L2 between token chunks); the K-quants' prefill by panels, Q4_0
 * / Q4_1 / MXFP4 from loom_r8_gemm_min_n tokens by the GEMM's (g_gemm_r8). */
AI void r8_matmul(const int type, LOOM_MATMUL_PARAMS) {
    if (n > RTN && loom_is_kquant(type)) {
        r8_kgroups(type, w, ws, k, nr, xq, xs, n, y, ldy);
        return;
    }
    const int64_t gmin = loom_r8_gemm_min_n(false, false);
    if (type != LOOM_TYPE_Q8_0 && type != LOOM_TYPE_IQ4_NL && gmin > 0 && n >= gmin) {
        (type == LOOM_TYPE_Q4_0 ? g_gemm_r8_q4_0 : type == LOOM_TYPE_Q4_1 ? g_gemm_r8_q4_1 : g_gemm_r8_mxfp4)(w, ws, k, nr, xq, xs, n, y, ldy);
        return;
    }
    /* decode's streams, then the groups they leave; with more than one pass, the next group during the first */
    const int64_t g0 = n == 1 ? r8_streams(type, w, ws, k, nr, xq, xs, 1, y, ldy) : 0;
    r8_passes(type, w + (size_t)(8 * g0) * ws, ws, k, nr - 8 * g0, xq, xs, n, y + 8 * g0, ldy, n > RTN);
}

/* ============================== instantiation ============================== */

/* the Q, Q8 and K families of the weight-type list; F is in matmul_avx2.c */
#define LANES(p, T, s)                                                                                \
    void p##s(LOOM_MATMUL_PARAMS) {                                                                   \
        if (n >= g_min_n(LOOM_TYPE_##T)) g_gemm(LOOM_TYPE_##T, w, ws, k, nr, xq, xs, n, y, ldy);      \
        else row_tiles(LOOM_TYPE_##T, w, ws, k, nr, xq, xs, n, y, ldy);                               \
    }
#define LANES_Q(p, T, s) LANES(p, T, s)
#define LANES_K(p, T, s) LANES(p, T, s)
#define LANES_F(p, T, s)
/* Q8_0: row tiles for every n, over token chunks whose activations stay in
 * L2 (as loom_run_tiles walks them) */
#define LANES_Q8(p, T, s)                                                                             \
    void p##s(LOOM_MATMUL_PARAMS) {                                                                   \
        const int64_t chunk = loom_act_chunk_tokens(xs, RTN);                                         \
        for (int64_t t0 = 0; t0 < n; t0 += chunk)                                                     \
            row_tiles(LOOM_TYPE_##T, w, ws, k, nr, xq + t0 * xs, xs, n - t0 < chunk ? n - t0 : chunk,  \
                      y + t0 * ldy, ldy);                                                             \
    }
#define FAMILY(p, T, s, f) LANES_##f(p, T, s)
LOOM_MATMUL_TYPES(FAMILY, loom_avx2_mm_)

#define R8(p, T, s) \
    void loom_avx2_r8_##s(LOOM_MATMUL_PARAMS) { r8_matmul(LOOM_TYPE_##T, w, ws, k, nr, xq, xs, n, y, ldy); }
LOOM_R8_TYPES(R8, _)

LOOM_NO_UBSAN_END
