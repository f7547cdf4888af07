/*
 * runtime/cpu/matmul_avx2.c — AVX2 + FMA + F16C matmul kernels (Haswell and
 * later; no VNNI assumed).
 *
 * Same register-tile scheme as matmul_avx512.c (RM rows x RN tokens per
 * tile, each weight block decoded once per tile, each activation block
 * loaded once per tile), with 256-bit vectors and the classic integer dot
 * product: VPMADDUBSW (unsigned x signed bytes -> int16 pair sums) then
 * VPMADDWD (-> int32).
 *
 * 32-element families: one block per ymm. Q4_0/Q5_0 quants are used
 * unsigned (0..15 / 0..31) with the offset removed as c*sum(a), one
 * VPMADDUBSW of the constant c per token and block; Q8_0 uses the sign
 * trick (|w| x sign(a, w), at most 2*128*127 per int16 pair, no
 * saturation); mins (Q4_1/Q5_1) add m * s/8 in each of the 8 lanes (s/8 is
 * exact).
 *
 * K-quants: per 32-element sub-block one VPMADDUBSW and one VPMADDWD by the
 * sub-block's integer scale (Q6_K: two scales per 32, one per 128-bit half),
 * int32 accumulation over the super-block; mins and Q6_K's -32 offset as in
 * the AVX-512 file.
 *
 * Calls with enough tokens (g_min_n) take the panel GEMM further down
 * instead (prefill), except Q8_0 and float weights.
 *
 * Compiled with -mavx2 -mfma -mf16c -mbmi2.
 */
/* UBSan's checks multiply the size of these fully unrolled kernels and made
 * clang's sanitizer build take many minutes per file; the kernels keep
 * AddressSanitizer (every vector load is still bounds-checked) and drop only
 * the UB checks (there is no signed arithmetic on data here). */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("undefined"))), apply_to = function)
#endif

#include <immintrin.h>

#include "runtime/cpu/gemm_panel.h"

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* Largest tile; register arrays are declared at this size (arrays sized by
 * the RM/RN parameters would be VLAs, which compilers keep in memory). */
enum { XM = 4, XN = 3 };

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ======================= F32 / F16 / BF16 weights ======================= */

AI __m256 ldw_f(const int type, const uint8_t *p) {
    if (type == LOOM_TYPE_F32) return _mm256_loadu_ps((const float *)p);
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (type == LOOM_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AI float wf_scalar(const int type, const uint8_t *p) {
    if (type == LOOM_TYPE_F32) return loom_ld_f32(p);
    if (type == LOOM_TYPE_F16) return _cvtsh_ss(loom_ld_u16(p));
    return loom_bf16_to_f32(loom_ld_u16(p));
}

AI void tile_f(const int type, const int RM, const int RN, const uint8_t *w, size_t ws, int64_t k,
               const uint8_t *x, size_t xs, float *y, int64_t ldy) {
    const int es = type == LOOM_TYPE_F32 ? 4 : 2;
    __m256 acc[XM][XN];
    UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) {
        __m256 wv[XM];
        UNROLL for (int r = 0; r < RM; r++) {
            if ((j & 15) == 0) LOOM_PREFETCH_NEXT_TILE(w + (RM + r) * ws + j * es, 16 * es);
            wv[r] = ldw_f(type, w + r * ws + j * es);
        }
        UNROLL for (int t = 0; t < RN; t++) {
            const __m256 a = _mm256_loadu_ps((const float *)(x + t * xs + 4 * j));
            UNROLL for (int r = 0; r < RM; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], a, acc[r][t]);
        }
    }
    UNROLL for (int t = 0; t < RN; t++) UNROLL for (int r = 0; r < RM; r++) {
        float s = hsum8(acc[r][t]);
        for (int64_t jj = j; jj < k; jj++)
            s += wf_scalar(type, w + r * ws + jj * es) * loom_ld_f32(x + t * xs + 4 * jj);
        y[t * ldy + r] = s;
    }
}

/* ===================== 32-element block families ===================== */

AI int is_min_type(const int type) { return type == LOOM_TYPE_Q4_1 || type == LOOM_TYPE_Q5_1; }

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

/* Weight block -> quants (unsigned for Q4/Q5; for Q8_0 the signed bytes),
 * broadcast scale and (min types) broadcast min. */
AI void dec32(const int type, const uint8_t *p, __m256i *q, __m256 *dw, __m256 *mw) {
    *dw = _mm256_set1_ps(_cvtsh_ss(loom_ld_u16(p)));
    *mw = is_min_type(type) ? _mm256_set1_ps(_cvtsh_ss(loom_ld_u16(p + 2))) : _mm256_setzero_ps();
    switch (type) {
    case LOOM_TYPE_Q4_0: *q = nibbles(p + 2); break;
    case LOOM_TYPE_Q4_1: *q = nibbles(p + 4); break;
    case LOOM_TYPE_Q5_0: *q = _mm256_or_si256(nibbles(p + 6), bits_to_0x10(loom_ld_u32(p + 2))); break;
    case LOOM_TYPE_Q5_1: *q = _mm256_or_si256(nibbles(p + 8), bits_to_0x10(loom_ld_u32(p + 4))); break;
    default: *q = _mm256_loadu_si256((const __m256i *)(p + 2)); break;
    }
}

AI void tile32(const int type, const int RM, const int RN, const uint8_t *w, size_t ws, int64_t k,
               const uint8_t *x, size_t xs, float *y, int64_t ldy) {
    const int64_t nb = k / 32;
    const size_t bs = loom_qblock_bytes(type);
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 acc[XM][XN];
    UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i q[XM], sgn[XM];
        __m256 dw[XM], mw[XM];
        UNROLL for (int r = 0; r < RM; r++) {
            LOOM_PREFETCH_NEXT_TILE(w + (RM + r) * ws + b * bs, bs);
            dec32(type, w + r * ws + b * bs, &q[r], &dw[r], &mw[r]);
            if (type == LOOM_TYPE_Q8_0) { /* keep |w|; the signs go onto the activations */
                sgn[r] = q[r];
                q[r] = _mm256_abs_epi8(q[r]);
            }
        }
        UNROLL for (int t = 0; t < RN; t++) {
            const uint8_t *xt = x + t * xs;
            const __m256i a = _mm256_loadu_si256((const __m256i *)(xt + 32 * b));
            const __m256 da = _mm256_set1_ps(loom_ld_f32(xt + k + 4 * b));
            __m256i corr = _mm256_setzero_si256();
            __m256 s8 = _mm256_setzero_ps();
            if (type == LOOM_TYPE_Q4_0 || type == LOOM_TYPE_Q5_0) {
                const __m256i c = _mm256_set1_epi8(type == LOOM_TYPE_Q4_0 ? 8 : 16);
                corr = _mm256_madd_epi16(_mm256_maddubs_epi16(c, a), ones16);
            }
            if (is_min_type(type)) s8 = _mm256_set1_ps(loom_ld_f32(xt + k + 4 * (k / 32) + 4 * b) * 0.125f);
            UNROLL for (int r = 0; r < RM; r++) {
                __m256i p16;
                if (type == LOOM_TYPE_Q8_0)
                    p16 = _mm256_maddubs_epi16(q[r], _mm256_sign_epi8(a, sgn[r]));
                else
                    p16 = _mm256_maddubs_epi16(q[r], a);
                __m256i p = _mm256_madd_epi16(p16, ones16);
                if (type == LOOM_TYPE_Q4_0 || type == LOOM_TYPE_Q5_0) p = _mm256_sub_epi32(p, corr);
                const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(p), da);
                acc[r][t] = _mm256_fmadd_ps(f, dw[r], acc[r][t]);
                if (is_min_type(type)) acc[r][t] = _mm256_fmadd_ps(mw[r], s8, acc[r][t]);
            }
        }
    }
    UNROLL for (int t = 0; t < RN; t++) UNROLL for (int r = 0; r < RM; r++) y[t * ldy + r] = hsum8(acc[r][t]);
}

/* =============================== K-quants =============================== */

/* Q4_K/Q5_K packed scales -> bytes [sc0..sc7, m0..m7]. */
AI __m128i q4k_scales(const uint8_t *s12) {
    uint32_t u0 = loom_ld_u32(s12), u1 = loom_ld_u32(s12 + 4), u2 = loom_ld_u32(s12 + 8);
    const uint32_t m3 = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
    const uint32_t m2 = u1 & 0x3f3f3f3fu;
    const uint32_t s1 = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
    const uint32_t s0 = u0 & 0x3f3f3f3fu;
    return _mm_set_epi32((int)m3, (int)m2, (int)s1, (int)s0);
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

/* Unsigned quants of the 32-element piece j (elements 32j..32j+31). */
AI __m256i decK_piece(const int type, const uint8_t *blk, const int j) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
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

AI void tileK(const int type, const int RM, const int RN, const uint8_t *w, size_t ws, int64_t k,
              const uint8_t *x, size_t xs, float *y, int64_t ldy) {
    const size_t bs = loom_qblock_bytes(type);
    const int64_t nsb = k / 256;
    __m256 facc[XM][XN];
    UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) facc[r][t] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        __m256 dv[XM], wm[XM];
        __m256i scb[XM], scb2[XM], bcorr[XM];
        UNROLL for (int r = 0; r < RM; r++) {
            const uint8_t *blk = w + r * ws + sb * bs;
            LOOM_PREFETCH_NEXT_TILE(blk + RM * ws, bs);
            if (type == LOOM_TYPE_Q6_K) {
                dv[r] = _mm256_set1_ps(_cvtsh_ss(loom_ld_u16(blk + 208)));
                const __m256i s = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 192)));
                scb[r] = _mm256_permute2x128_si256(s, s, 0x00);  /* groups 0..7 in both halves */
                scb2[r] = _mm256_permute2x128_si256(s, s, 0x11); /* groups 8..15 */
                bcorr[r] = _mm256_slli_epi16(_mm256_sub_epi16(_mm256_setzero_si256(), s), 5);
            } else {
                dv[r] = _mm256_set1_ps(_cvtsh_ss(loom_ld_u16(blk)));
                const __m128i sm = q4k_scales(blk + 4);
                scb[r] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
                wm[r] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8))),
                                      _mm256_set1_ps(-_cvtsh_ss(loom_ld_u16(blk + 2))));
            }
        }
        __m256i iacc[XM][XN];
        UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) iacc[r][t] = _mm256_setzero_si256();
        UNROLL for (int j = 0; j < 8; j++) {
            __m256i q[XM], sv[XM];
            UNROLL for (int r = 0; r < RM; r++) {
                q[r] = decK_piece(type, w + r * ws + sb * bs, j);
                if (type == LOOM_TYPE_Q6_K)
                    sv[r] = _mm256_shuffle_epi8(j < 4 ? scb[r] : scb2[r],
                                                _mm256_loadu_si256((const __m256i *)shuf_k6[j & 3]));
                else
                    sv[r] = _mm256_shuffle_epi8(scb[r], _mm256_loadu_si256((const __m256i *)shuf_k4[j]));
            }
            UNROLL for (int t = 0; t < RN; t++) {
                const __m256i a = _mm256_loadu_si256((const __m256i *)(x + t * xs + sb * 292 + 4 + 32 * j));
                UNROLL for (int r = 0; r < RM; r++)
                    iacc[r][t] = _mm256_add_epi32(iacc[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[r], a), sv[r]));
            }
        }
        UNROLL for (int t = 0; t < RN; t++) {
            const uint8_t *ab = x + t * xs + sb * 292;
            const __m256 da = _mm256_set1_ps(loom_ld_f32(ab));
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)(ab + 260));
            __m256 asum = _mm256_setzero_ps();
            if (type != LOOM_TYPE_Q6_K) /* da * (sum of sub-block s), s = 0..7 */
                asum = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, _mm256_set1_epi16(1))), da);
            UNROLL for (int r = 0; r < RM; r++) {
                __m256i is = iacc[r][t];
                if (type == LOOM_TYPE_Q6_K) is = _mm256_add_epi32(is, _mm256_madd_epi16(bsums, bcorr[r]));
                facc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(is), da), dv[r], facc[r][t]);
                if (type != LOOM_TYPE_Q6_K) facc[r][t] = _mm256_fmadd_ps(wm[r], asum, facc[r][t]);
            }
        }
    }
    UNROLL for (int t = 0; t < RN; t++) UNROLL for (int r = 0; r < RM; r++) y[t * ldy + r] = hsum8(facc[r][t]);
}

/* ========================= prefill panel GEMM ========================= *
 * The scheme of gemm_avx512.c on 256-bit vectors without VNNI: the weights
 * of 8 rows x one k-chunk are decoded to unsigned bytes and transposed into
 * a panel (qT[g] = 8 dwords, dword r = quants k = 4g..4g+3 of row r); per
 * token the 4 activation bytes of group g are broadcast, VPMADDUBSW gives
 * int16 pair sums for the 8 rows, added in int16 over as many groups as
 * cannot overflow (2*15*127 per pair: 8 groups for 4-bit quants, 4 for
 * 5-bit, 2 for Q6_K), then one VPMADDWD by ones widens them. Scale, offset,
 * min and bsum terms per lane as in the AVX-512 GEMM. The panel is decoded
 * once per k-chunk and reused for every token. Q8_0 stays on the register
 * tiles (its unsigned form would saturate the int16 pairs). */

enum { GMR = 8, GKC = 512, GNT = 4 };

/* The tokens from which the GEMM takes a type (0: never; below, the tiles).
 * bench_matmul -i avx2 on this Sapphire Rapids, GFLOP/s at n = 128, tiles
 * vs GEMM: Q4_K 82 vs 150, Q5_K 73 vs 122, Q4_1 47 vs 151, Q5_0 46 vs 114,
 * Q6_K 82 vs 94 (and below the tiles at n = 8). */
AI int g_min_n(const int type) {
    switch (type) {
    case LOOM_TYPE_F32:
    case LOOM_TYPE_F16:
    case LOOM_TYPE_BF16:
    case LOOM_TYPE_Q8_0: return 0;
    case LOOM_TYPE_Q6_K: return 32;
    default: return 8;
    }
}

typedef struct {
    uint8_t qT[GKC / 4][32];   /* (k-group, row, 4 bytes) unsigned quants */
    float fs[GKC / 16][GMR];   /* (scale group, row): dw, or d*sc */
    float off[GKC / 32][GMR];  /* (block, row) 32-families: -c*dw or m */
    int32_t mp[GKC / 32][GMR]; /* (super-block*8 + j, row) K: int16 pair for the bsums pair j */
    float d2[GKC / 256][GMR];  /* (super-block, row) K: -dmin (Q4_K/Q5_K) or d (Q6_K) */
} gpanel;

/* groups of 4 quants whose VPMADDUBSW pair sums may be added in int16 */
AI int g_run(const int type) {
    switch (type) {
    case LOOM_TYPE_Q4_0:
    case LOOM_TYPE_Q4_1:
    case LOOM_TYPE_Q4_K: return 8;
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
                LOOM_PREFETCH_NEXT_TILE(blk + GMR * ws + (size_t)j * bs / 8, bs / 8);
                R[r] = decK_piece(type, blk, j);
            } else {
                const uint8_t *pb = wr + (e / 32) * bs;
                __m256 dw, mw;
                LOOM_PREFETCH_NEXT_TILE(pb + GMR * ws, bs);
                dec32(type, pb, &R[r], &dw, &mw);
            }
        }
        transpose8(R, P->qT + 8 * gb);
    }
    if (loom_is_kquant(type)) {
        const int ng = type == LOOM_TYPE_Q6_K ? 16 : 8;
        for (int sbl = 0; sbl < kcl / 256; sbl++)
            for (int r = 0; r < GMR; r++)
                loom_panel_termsK(type, r < rows ? w + r * ws + (kc0 / 256 + sbl) * bs : NULL, GMR, r,
                                  P->fs[ng * sbl], P->mp[8 * sbl], P->d2[sbl]);
    } else {
        for (int b = 0; b < kcl / 32; b++)
            for (int r = 0; r < GMR; r++)
                loom_panel_terms32(type, r < rows ? w + r * ws + (kc0 / 32 + b) * bs : NULL, GMR, r, P->fs[b],
                                   P->off[b]);
    }
}

AI __m256i g_bcast(const uint8_t *p) { return _mm256_set1_epi32((int)loom_ld_u32(p)); }

/* int32 sums over groups g0 .. g0+ng-1 of the panel for GNT tokens, whose
 * 4-byte activation groups start at a[t] (group g at a[t] + 4*(g - g0)). */
AI void g_dot(const int type, const gpanel *P, int g0, int ng, const uint8_t *const a[GNT], __m256i I[GNT]) {
    const __m256i ones = _mm256_set1_epi16(1);
    const int run = g_run(type);
    UNROLL for (int t = 0; t < GNT; t++) I[t] = _mm256_setzero_si256();
    for (int h = 0; h < ng; h += run) {
        __m256i S[GNT];
        UNROLL for (int t = 0; t < GNT; t++) S[t] = _mm256_setzero_si256();
        for (int g = h; g < h + run && g < ng; g++) {
            const __m256i wv = _mm256_load_si256((const __m256i *)P->qT[g0 + g]);
            UNROLL for (int t = 0; t < GNT; t++)
                S[t] = _mm256_add_epi16(S[t], _mm256_maddubs_epi16(wv, g_bcast(a[t] + 4 * g)));
        }
        UNROLL for (int t = 0; t < GNT; t++) I[t] = _mm256_add_epi32(I[t], _mm256_madd_epi16(S[t], ones));
    }
}

AI void g_micro(const int type, const gpanel *P, int64_t k, int64_t kc0, int kcl, const uint8_t *x, size_t xs,
                int nt, float *y, int64_t ldy, int first, int rows) {
    const uint8_t *xt[GNT];
    UNROLL for (int t = 0; t < GNT; t++) xt[t] = x + (t < nt ? t : nt - 1) * xs;
    __m256 tot[GNT];
    UNROLL for (int t = 0; t < GNT; t++) tot[t] = _mm256_setzero_ps();
    if (!loom_is_kquant(type)) {
        const int64_t nb = k / 32;
        for (int b = 0; b < kcl / 32; b++) {
            const int64_t bb = kc0 / 32 + b;
            const uint8_t *a[GNT];
            __m256i I[GNT];
            UNROLL for (int t = 0; t < GNT; t++) a[t] = xt[t] + 32 * bb;
            g_dot(type, P, 8 * b, 8, a, I);
            const __m256 fsv = _mm256_loadu_ps(P->fs[b]), offv = _mm256_loadu_ps(P->off[b]);
            UNROLL for (int t = 0; t < GNT; t++) {
                const __m256 da = _mm256_set1_ps(loom_ld_f32(xt[t] + k + 4 * bb));
                const __m256 sv = _mm256_set1_ps(loom_ld_f32(xt[t] + k + 4 * nb + 4 * bb));
                tot[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(I[t]), da), fsv, tot[t]);
                tot[t] = _mm256_fmadd_ps(offv, sv, tot[t]);
            }
        }
    } else {
        const int gs = type == LOOM_TYPE_Q6_K ? 16 : 32; /* elements per scale group */
        for (int sbl = 0; sbl < kcl / 256; sbl++) {
            const int64_t sb = kc0 / 256 + sbl;
            __m256 A[GNT];
            UNROLL for (int t = 0; t < GNT; t++) A[t] = _mm256_setzero_ps();
            for (int sub = 0; sub < 256 / gs; sub++) {
                const uint8_t *a[GNT];
                __m256i I[GNT];
                UNROLL for (int t = 0; t < GNT; t++) a[t] = xt[t] + 292 * sb + 4 + gs * sub;
                g_dot(type, P, 64 * sbl + (gs / 4) * sub, gs / 4, a, I);
                const __m256 fsv = _mm256_loadu_ps(P->fs[(256 / gs) * sbl + sub]);
                UNROLL for (int t = 0; t < GNT; t++) A[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I[t]), fsv, A[t]);
            }
            __m256i M[GNT];
            UNROLL for (int t = 0; t < GNT; t++) M[t] = _mm256_setzero_si256();
            UNROLL for (int j = 0; j < 8; j++) {
                const __m256i mv = _mm256_loadu_si256((const __m256i *)P->mp[8 * sbl + j]);
                UNROLL for (int t = 0; t < GNT; t++)
                    M[t] = _mm256_add_epi32(M[t], _mm256_madd_epi16(mv, g_bcast(xt[t] + 292 * sb + 260 + 4 * j)));
            }
            const __m256 d2v = _mm256_loadu_ps(P->d2[sbl]);
            UNROLL for (int t = 0; t < GNT; t++) {
                A[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(M[t]), d2v, A[t]);
                tot[t] = _mm256_fmadd_ps(A[t], _mm256_set1_ps(loom_ld_f32(xt[t] + 292 * sb)), tot[t]);
            }
        }
    }
    UNROLL for (int t = 0; t < GNT; t++) {
        if (t >= nt) break;
        float *yt = y + t * ldy;
        if (rows == GMR) {
            __m256 v = tot[t];
            if (!first) v = _mm256_add_ps(v, _mm256_loadu_ps(yt));
            _mm256_storeu_ps(yt, v);
        } else {
            float tmp[GMR];
            _mm256_storeu_ps(tmp, tot[t]);
            for (int r = 0; r < rows; r++) yt[r] = first ? tmp[r] : yt[r] + tmp[r];
        }
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

/* ============================ instantiation ============================ */

#define TILE(fam, name, type, RM, RN)                                                        \
    static void name(const uint8_t *w, size_t ws, int64_t k, const uint8_t *x, size_t xs, \
                     float *y, int64_t ldy) {                                              \
        tile##fam(type, RM, RN, w, ws, k, x, xs, y, ldy);                                  \
    }

/* decode tiles (1 and RMD rows), prefill tiles (1 and RM rows x 1..3 tokens) */
#define KERNEL(fam, tname, type, RMD, RM)                                                   \
    TILE(fam, tname##_d1, type, 1, 1)                                                       \
    TILE(fam, tname##_dm, type, RMD, 1)                                                     \
    TILE(fam, tname##_o2, type, 1, 2)                                                       \
    TILE(fam, tname##_o3, type, 1, 3)                                                       \
    TILE(fam, tname##_f1, type, RM, 1)                                                      \
    TILE(fam, tname##_f2, type, RM, 2)                                                      \
    TILE(fam, tname##_f3, type, RM, 3)                                                      \
    static const loom_tile_set tname##_tiles = {                                           \
        RMD, RM, 3, {tname##_d1, tname##_dm},                                               \
        {NULL, tname##_d1, tname##_o2, tname##_o3},                                         \
        {NULL, tname##_f1, tname##_f2, tname##_f3}};                                        \
    static void tname(const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq, \
                      size_t xs, int64_t n, float *y, int64_t ldy) {                        \
        if (g_min_n(type) && n >= g_min_n(type)) g_gemm(type, w, ws, k, nr, xq, xs, n, y, ldy);  \
        else loom_run_tiles(&tname##_tiles, w, ws, k, nr, xq, xs, n, y, ldy);               \
    }

KERNEL(_f, mm_f32, LOOM_TYPE_F32, 4, 3)
KERNEL(_f, mm_f16, LOOM_TYPE_F16, 4, 3)
KERNEL(_f, mm_bf16, LOOM_TYPE_BF16, 4, 3)
KERNEL(32, mm_q4_0, LOOM_TYPE_Q4_0, 2, 2)
KERNEL(32, mm_q4_1, LOOM_TYPE_Q4_1, 2, 2)
KERNEL(32, mm_q5_0, LOOM_TYPE_Q5_0, 2, 2)
KERNEL(32, mm_q5_1, LOOM_TYPE_Q5_1, 2, 2)
KERNEL(32, mm_q8_0, LOOM_TYPE_Q8_0, 2, 2)
KERNEL(K, mm_q4_K, LOOM_TYPE_Q4_K, 2, 2)
KERNEL(K, mm_q5_K, LOOM_TYPE_Q5_K, 2, 2)
KERNEL(K, mm_q6_K, LOOM_TYPE_Q6_K, 2, 2)

const loom_cpu_kernels loom_cpu_kernels_avx2 = {
    .matmul = {
        [LOOM_TYPE_F32] = mm_f32,
        [LOOM_TYPE_F16] = mm_f16,
        [LOOM_TYPE_BF16] = mm_bf16,
        [LOOM_TYPE_Q4_0] = mm_q4_0,
        [LOOM_TYPE_Q4_1] = mm_q4_1,
        [LOOM_TYPE_Q5_0] = mm_q5_0,
        [LOOM_TYPE_Q5_1] = mm_q5_1,
        [LOOM_TYPE_Q8_0] = mm_q8_0,
        [LOOM_TYPE_Q4_K] = mm_q4_K,
        [LOOM_TYPE_Q5_K] = mm_q5_K,
        [LOOM_TYPE_Q6_K] = mm_q6_K,
    },
};

#if defined(__clang__)
#pragma clang attribute pop
#endif
