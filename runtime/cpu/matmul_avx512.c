/*
 * runtime/cpu/matmul_avx512.c — AVX-512 (F/BW/VL/DQ + VNNI) matmul kernels.
 *
 * Every kernel is a register tile of RM weight rows x RN tokens that walks
 * the whole row once: each weight block is loaded and decoded once per tile
 * and used for RN tokens; each activation block is loaded once per tile and
 * used for RM rows. Decode (n = 1) uses RM = 4 rows for independent chains;
 * prefill uses the widest tile the 32 zmm registers hold. Leftover rows and
 * tokens get 1-row / fewer-token tiles (instances of the same template).
 *
 * 32-element families (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) work on pairs of
 * blocks: one zmm holds 64 quants (block b in bytes 0..31, b+1 in 32..63) as
 * unsigned bytes, VPDPBUSD multiplies them with the int8 activations into 16
 * int32 lanes (lanes 0..7 block b, 8..15 block b+1), which are converted and
 * scaled by dw*da per lane. Signed types store q + c (c = 8, 16, 128): the
 * accumulator starts at -c*sum(a) (one VPDPBUSD of the constant c per token,
 * shared by all rows). Types with a min add m * s (s = da*sum(a)) in one lane
 * per block. An odd last block is paired with itself and zero activations.
 * The 4/5-bit types take quads of blocks first (body32q: a block per 128-bit
 * lane, 4 lanes each) and pairs only for a row's last 1-3 blocks.
 *
 * K-quants: integer sums over sub-blocks times their integer scales,
 * accumulated in int32 over the whole super-block by VPDPWSSD; one convert
 * and two multiplies per super-block follow. Q4_K/Q5_K (tileK45) take
 * 128-element halves through VPDPBUSD and a lossless pack to int16; their
 * mins enter as one FMA of (-dmin*m_s) x (da*sum_s(a)) per super-block.
 * Q6_K (tileK) takes 64-element chunks through VPMADDUBSW (int16 pair sums,
 * at most 2*63*127, no saturation); its -32 offset is folded into the
 * integer sum as bsums x (-32*sc).
 *
 * F32/F16/BF16 weights: 16 floats per step (F16 via VCVTPH2PS, BF16 by a
 * shift), FMA with float activations; a masked step for k % 16.
 *
 * Calls with enough tokens (loom_gemm_min_n) go to the panel GEMM of
 * gemm_avx512.c instead, which is several times faster there.
 *
 * Q4_0, Q4_1, MXFP4, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K in the r8 layout (runtime/kernels.h;
 * held that way on AMD Zen 4 and later, Q4_0, Q4_1 and Q4_K on Intel, dispatch.c;
 * MXFP4 and IQ4_NL as Q4_0, their codes' values by one VPSHUFB per 32
 * quants, IQ4_NL's grid values + 128 less 128 x the activations' sum;
 * Q3_K and Q2_K as Q6_K, by r8_group in chunks of 4 tokens below the GEMM's):
 * one 8-row group per 256-bit vector with VNNI below 8 tokens (r8_group;
 * decode reads 1, 2 or 4 groups side by side, loom_r8_streams, Q4_0, Q4_1
 * and Q4_K; 2-4 tokens from DRAM the four as two 512-bit pairs, r8_far), two groups
 * per 512-bit vector and 8 tokens per pass from 8 tokens on (r8_pairs; the
 * K-quants from a panel of unpacked super-blocks, r8_kpairs), and where
 * the CPU wants it from loom_r8_gemm_min_n tokens the GEMM's panels
 * (gemm_avx512.c: gemm_r8, the K-quants' panels by unpack_r8k); all
 * give the AVX2 level's bits (the r8 section below) but the K-quants' GEMM,
 * which gives the rows' GEMM's (loom_r8_gemm_bits_from).
 *
 * Compiled with -mavx512{f,bw,vl,dq,vnni}; dispatch.c only calls it when the
 * CPU and OS support all of them.
 */

#include <immintrin.h>

#include "runtime/cpu/gemm_panel.h"

LOOM_NO_UBSAN_BEGIN /* why: cpu_kernels.h */
#define AI LOOM_AI
#define UNROLL LOOM_UNROLL

/* Largest tile; register arrays are declared at this size (arrays sized by
 * the RM/RN parameters would be VLAs, which compilers keep in memory). */
enum { XM = 4, XN = 4 };

/* ======================= F32 / F16 / BF16 weights ======================= */

AI __m512 ldw_f(const int type, const uint8_t *p) {
    if (type == LOOM_TYPE_F32) return _mm512_loadu_ps(p);
    const __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (type == LOOM_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AI __m512 ldw_f_mask(const int type, const uint8_t *p, __mmask16 m) {
    if (type == LOOM_TYPE_F32) return _mm512_maskz_loadu_ps(m, p);
    const __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (type == LOOM_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AI void tile_f(const int type, const int RM, const int RN, const uint8_t *w, size_t ws, int64_t k,
               const uint8_t *x, size_t xs, float *y, int64_t ldy, size_t pf) {
    const int es = type == LOOM_TYPE_F32 ? 4 : 2;
    __m512 acc[XM][XN];
    UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= k; j += 16) {
        __m512 wv[XM];
        UNROLL for (int r = 0; r < RM; r++) {
            LOOM_PREFETCH_AHEAD(w + r * ws + j * es, pf, 16 * es);
            wv[r] = ldw_f(type, w + r * ws + j * es);
        }
        UNROLL for (int t = 0; t < RN; t++) {
            const __m512 a = _mm512_loadu_ps(x + t * xs + 4 * j);
            UNROLL for (int r = 0; r < RM; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], a, acc[r][t]);
        }
    }
    if (j < k) {
        const __mmask16 m = (__mmask16)((1u << (k - j)) - 1u);
        __m512 wv[XM];
        UNROLL for (int r = 0; r < RM; r++) wv[r] = ldw_f_mask(type, w + r * ws + j * es, m);
        UNROLL for (int t = 0; t < RN; t++) {
            const __m512 a = _mm512_maskz_loadu_ps(m, x + t * xs + 4 * j);
            UNROLL for (int r = 0; r < RM; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], a, acc[r][t]);
        }
    }
    UNROLL for (int t = 0; t < RN; t++) UNROLL for (int r = 0; r < RM; r++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

/* ===================== 32-element block families ===================== */

AI int is_min_type(const int type) { return type == LOOM_TYPE_Q4_1 || type == LOOM_TYPE_Q5_1; }

AI int offset_of(const int type) {
    return type == LOOM_TYPE_Q4_0 ? 8 : type == LOOM_TYPE_Q5_0 ? 16 : type == LOOM_TYPE_Q8_0 || type == LOOM_TYPE_IQ4_NL ? 128
         : type == LOOM_TYPE_MXFP4 ? LOOM_MXFP4_OFFSET : 0;
}

/* IQ4_NL: nibbles -> their grid values + 128 (VPSHUFB), then as Q8_0 */
static const uint8_t kv_iq4nl_u[16] = LOOM_KV_IQ4NL_U_INIT;
AI __m512i iq4nl_values(__m512i nib) {
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)kv_iq4nl_u)), nib);
}

/* MXFP4: nibble codes -> their doubled E2M1 values + 12 (VPSHUFB, the
 * table in every 128-bit lane), and a block's scale 2^(e - 128) */
static const int8_t kv_mxfp4_u[16] = LOOM_KV_MXFP4_U_INIT;
AI __m512i mxfp4_values(__m512i nib) {
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)kv_mxfp4_u)), nib);
}

static const int32_t idx_pair[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
static const int32_t idx_pair_dm_d[16] = {0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2};
static const int32_t idx_pair_dm_m[16] = {1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3};

/* 16 packed nibble bytes of blocks a and b -> 64 quants in element order:
 * [a lo nibbles, a hi nibbles, b lo, b hi], 16 bytes each. */
AI __m512i nibbles_pair(const uint8_t *qa, const uint8_t *qb) {
    __m512i z = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qa));
    z = _mm512_mask_broadcast_i32x4(z, 0xFF00, _mm_loadu_si128((const __m128i *)qb));
    z = _mm512_mask_srli_epi16(z, 0xFF00FF00u, z, 4);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}

/* Decodes weight blocks pa and pb (pb may equal pa) into unsigned quants,
 * per-lane scales dw and (min types) per-lane mins mw. */
AI void dec32_pair(const int type, const uint8_t *pa, const uint8_t *pb, __m512i *q, __m512 *dw,
                   __m512 *mw) {
    if (type == LOOM_TYPE_MXFP4) {
        *dw = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(loom_e8m0_half(pa[0])), _mm512_set1_ps(loom_e8m0_half(pb[0])));
    } else if (is_min_type(type)) {
        const uint64_t dm = (uint64_t)loom_ld_u32(pa) | ((uint64_t)loom_ld_u32(pb) << 32);
        const __m512 f = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)dm)));
        *dw = _mm512_permutexvar_ps(_mm512_loadu_si512(idx_pair_dm_d), f);
        *mw = _mm512_permutexvar_ps(_mm512_loadu_si512(idx_pair_dm_m), f);
    } else {
        const uint32_t d2 = (uint32_t)loom_ld_u16(pa) | ((uint32_t)loom_ld_u16(pb) << 16);
        const __m512 f = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128((int)d2)));
        *dw = _mm512_permutexvar_ps(_mm512_loadu_si512(idx_pair), f);
    }
    switch (type) {
    case LOOM_TYPE_Q4_0: *q = nibbles_pair(pa + 2, pb + 2); break;
    case LOOM_TYPE_Q4_1: *q = nibbles_pair(pa + 4, pb + 4); break;
    case LOOM_TYPE_MXFP4: *q = mxfp4_values(nibbles_pair(pa + 1, pb + 1)); break;
    case LOOM_TYPE_IQ4_NL: *q = iq4nl_values(nibbles_pair(pa + 2, pb + 2)); break;
    case LOOM_TYPE_Q5_0:
    case LOOM_TYPE_Q5_1: {
        const int o = type == LOOM_TYPE_Q5_0 ? 2 : 4;
        const __mmask64 hb = (__mmask64)((uint64_t)loom_ld_u32(pa + o) | ((uint64_t)loom_ld_u32(pb + o) << 32));
        const __m512i lo = nibbles_pair(pa + o + 4, pb + o + 4);
        *q = _mm512_mask_add_epi8(lo, hb, lo, _mm512_set1_epi8(16));
        break;
    }
    default: { /* Q8_0: signed bytes + 128 */
        const __m512i v = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(pa + 2))),
            _mm256_loadu_si256((const __m256i *)(pb + 2)), 1);
        *q = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
        break;
    }
    }
}

/* Activation blocks b, b+1 of one token (tail: block b only, b+1 zero):
 * quants a, per-lane scales da, and either the start value -c*sum(a) per
 * lane (signed types) or s in lane 0 of each block (min types). */
AI void act32_pair(const int type, const uint8_t *x, int64_t k, int64_t b, const int tail,
                   __m512i *a, __m512 *da, __m512 *s, __m512i *start) {
    const uint8_t *dp = x + k + 4 * b;
    const uint8_t *sp = x + k + 4 * (k / 32) + 4 * b;
    if (tail) {
        *a = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(x + 32 * b)));
        *da = _mm512_maskz_permutexvar_ps(0x00FF, _mm512_loadu_si512(idx_pair),
                                          _mm512_castps128_ps512(_mm_castsi128_ps(_mm_cvtsi32_si128((int)loom_ld_u32(dp)))));
    } else {
        *a = _mm512_loadu_si512(x + 32 * b);
        *da = _mm512_permutexvar_ps(_mm512_loadu_si512(idx_pair),
                                    _mm512_castps128_ps512(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)dp))));
    }
    if (is_min_type(type)) {
        __m128 s2 = tail ? _mm_castsi128_ps(_mm_cvtsi32_si128((int)loom_ld_u32(sp)))
                         : _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)sp));
        *s = _mm512_maskz_permutexvar_ps(tail ? 0x0001 : 0x0101, _mm512_loadu_si512(idx_pair),
                                         _mm512_castps128_ps512(s2));
        *start = _mm512_setzero_si512();
    } else {
        const __m512i c = _mm512_set1_epi8((char)offset_of(type));
        *start = _mm512_sub_epi32(_mm512_setzero_si512(),
                                  _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, *a));
        *s = _mm512_setzero_ps();
    }
}

AI void body32(const int type, const int RM, const int RN, const int tail, const uint8_t *w,
               size_t ws, int64_t k, int64_t b, const uint8_t *x, size_t xs, __m512 acc[XM][XN], size_t pf) {
    const size_t bs = loom_qblock_bytes(type);
    __m512i q[XM];
    __m512 dw[XM], mw[XM];
    UNROLL for (int r = 0; r < RM; r++) {
        const uint8_t *pa = w + r * ws + b * bs;
        if (!tail) LOOM_PREFETCH_AHEAD(pa, pf, 2 * bs);
        dec32_pair(type, pa, tail ? pa : pa + bs, &q[r], &dw[r], &mw[r]);
    }
    UNROLL for (int t = 0; t < RN; t++) {
        __m512i a, start;
        __m512 da, s;
        act32_pair(type, x + t * xs, k, b, tail, &a, &da, &s, &start);
        UNROLL for (int r = 0; r < RM; r++) {
            const __m512i p = _mm512_dpbusd_epi32(start, q[r], a);
            const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(p), da);
            acc[r][t] = _mm512_fmadd_ps(f, dw[r], acc[r][t]);
            if (is_min_type(type)) acc[r][t] = _mm512_fmadd_ps(mw[r], s, acc[r][t]);
        }
    }
}

/* Q4_0/Q4_1/Q5_0/Q5_1 by quads of blocks b..b+3: block b+j's 16 nibble bytes in
 * 128-bit lane j, so low and high nibbles (elements 0..15, 16..31) are two
 * vectors whose VPDPBUSDs add into one accumulator of 4 lanes per block (the
 * activations' halves gathered to match, once per token for all rows), and
 * the block scales of a row are one conversion of 4 F16 values: one convert,
 * multiply and FMA per quad and row where pairs took two each, and no
 * per-pair scale shuffles. Zen 4, one core, bench_matmul 65536 x 2048, GB/s:
 * Q4_0 18.6 -> 22.6, Q4_1 17.8 -> 21.7, Q5_0 20.0 -> 22.4, Q5_1 18.8 -> 22.5;
 * 2-token tiles (4096 rows), GFLOP/s: Q4_0 99 -> 121, Q4_1 84 -> 110. */
static const int32_t idx_quad[3][16] = {
    {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}, /* lane 4j+i <- j */
    {0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6}, /* <- 2j (d of [d, m] pairs) */
    {1, 0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0, 7, 0, 0, 0}, /* lane 4j <- 2j+1 (m), masked */
};

AI void body32q(const int type, const int RM, const int RN, const uint8_t *w, size_t ws, int64_t k,
                int64_t b, const uint8_t *x, size_t xs, __m512 acc[XM][XN], size_t pf) {
    const size_t bs = loom_qblock_bytes(type);
    const int five = type == LOOM_TYPE_Q5_0 || type == LOOM_TYPE_Q5_1;
    const int qo = type == LOOM_TYPE_MXFP4 ? 1 : (is_min_type(type) ? 4 : 2) + (five ? 4 : 0); /* the quants' offset */
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i lo[XM], hi[XM];
    __m512 dw[XM], mw[XM];
    UNROLL for (int r = 0; r < RM; r++) {
        const uint8_t *p = w + r * ws + b * bs;
        LOOM_PREFETCH_AHEAD(p, pf, 4 * bs);
        __m512i z = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p + qo)));
        z = _mm512_mask_broadcast_i32x4(z, 0x00F0, _mm_loadu_si128((const __m128i *)(p + bs + qo)));
        z = _mm512_mask_broadcast_i32x4(z, 0x0F00, _mm_loadu_si128((const __m128i *)(p + 2 * bs + qo)));
        z = _mm512_mask_broadcast_i32x4(z, 0xF000, _mm_loadu_si128((const __m128i *)(p + 3 * bs + qo)));
        lo[r] = _mm512_and_si512(z, m4);
        hi[r] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
        if (type == LOOM_TYPE_MXFP4) lo[r] = mxfp4_values(lo[r]), hi[r] = mxfp4_values(hi[r]);
        if (type == LOOM_TYPE_IQ4_NL) lo[r] = iq4nl_values(lo[r]), hi[r] = iq4nl_values(hi[r]);
        if (five) { /* fifth bits: element i of block b+j at bit 16j + i (lo) / 16j + i - 16 (hi) */
            uint64_t ml = 0, mh = 0;
            UNROLL for (int j = 0; j < 4; j++) {
                const uint64_t qh = loom_ld_u32(p + j * bs + qo - 4);
                ml |= (qh & 0xFFFF) << 16 * j;
                mh |= (qh >> 16) << 16 * j;
            }
            const __m512i sixteen = _mm512_set1_epi8(16);
            lo[r] = _mm512_mask_add_epi8(lo[r], (__mmask64)ml, lo[r], sixteen);
            hi[r] = _mm512_mask_add_epi8(hi[r], (__mmask64)mh, hi[r], sixteen);
        }
        if (is_min_type(type)) { /* [d, m] of the 4 blocks by one conversion */
            __m128i h = _mm_cvtsi32_si128((int)loom_ld_u32(p));
            h = _mm_insert_epi32(h, (int)loom_ld_u32(p + bs), 1);
            h = _mm_insert_epi32(h, (int)loom_ld_u32(p + 2 * bs), 2);
            h = _mm_insert_epi32(h, (int)loom_ld_u32(p + 3 * bs), 3);
            const __m512 f = _mm512_castps256_ps512(_mm256_cvtph_ps(h));
            dw[r] = _mm512_permutexvar_ps(_mm512_loadu_si512(idx_quad[1]), f);
            mw[r] = _mm512_maskz_permutexvar_ps(0x1111, _mm512_loadu_si512(idx_quad[2]), f);
        } else if (type == LOOM_TYPE_MXFP4) {
            const __m128 f = _mm_setr_ps(loom_e8m0_half(p[0]), loom_e8m0_half(p[bs]), loom_e8m0_half(p[2 * bs]),
                                         loom_e8m0_half(p[3 * bs]));
            dw[r] = _mm512_permutexvar_ps(_mm512_loadu_si512(idx_quad[0]), _mm512_castps128_ps512(f));
        } else {
            const uint64_t d4 = (uint64_t)loom_ld_u16(p) | (uint64_t)loom_ld_u16(p + bs) << 16 |
                                (uint64_t)loom_ld_u16(p + 2 * bs) << 32 | (uint64_t)loom_ld_u16(p + 3 * bs) << 48;
            const __m512 f = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)d4)));
            dw[r] = _mm512_permutexvar_ps(_mm512_loadu_si512(idx_quad[0]), f);
        }
    }
    UNROLL for (int t = 0; t < RN; t++) {
        const uint8_t *xt = x + t * xs;
        const __m512i a0 = _mm512_loadu_si512(xt + 32 * b), a1 = _mm512_loadu_si512(xt + 32 * b + 64);
        const __m512i alo = _mm512_shuffle_i64x2(a0, a1, _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i ahi = _mm512_shuffle_i64x2(a0, a1, _MM_SHUFFLE(3, 1, 3, 1));
        const __m512 da = _mm512_permutexvar_ps(_mm512_loadu_si512(idx_quad[0]),
                                                _mm512_castps128_ps512(_mm_loadu_ps((const float *)(xt + k + 4 * b))));
        __m512i start = _mm512_setzero_si512();
        __m512 sv = _mm512_setzero_ps();
        if (is_min_type(type)) /* lane 4j: s of block b+j */
            sv = _mm512_maskz_permutexvar_ps(0x1111, _mm512_loadu_si512(idx_quad[0]),
                                             _mm512_castps128_ps512(_mm_loadu_ps((const float *)(xt + k + 4 * (k / 32) + 4 * b))));
        else { /* -c * sum(a) per lane */
            const __m512i c = _mm512_set1_epi8((char)offset_of(type));
            start = _mm512_sub_epi32(start, _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, c, alo), c, ahi));
        }
        UNROLL for (int r = 0; r < RM; r++) {
            const __m512i q = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, lo[r], alo), hi[r], ahi);
            acc[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q), da), dw[r], acc[r][t]);
            if (is_min_type(type)) acc[r][t] = _mm512_fmadd_ps(mw[r], sv, acc[r][t]);
        }
    }
}

AI void tile32(const int type, const int RM, const int RN, const uint8_t *w, size_t ws, int64_t k,
               const uint8_t *x, size_t xs, float *y, int64_t ldy, size_t pf) {
    const int64_t nb = k / 32;
    __m512 acc[XM][XN];
    UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t b = 0;
    if (type != LOOM_TYPE_Q8_0)
        for (; b + 4 <= nb; b += 4) body32q(type, RM, RN, w, ws, k, b, x, xs, acc, pf);
    for (; b + 2 <= nb; b += 2) body32(type, RM, RN, 0, w, ws, k, b, x, xs, acc, pf);
    if (b < nb) body32(type, RM, RN, 1, w, ws, k, b, x, xs, acc, pf);
    UNROLL for (int t = 0; t < RN; t++) UNROLL for (int r = 0; r < RM; r++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

/* =============================== K-quants =============================== */

/* For chunk c (64 elements): int16 lane i of the maddubs result covers
 * elements 2i, 2i+1, so lanes 0..15 take sub-block 2c, 16..31 sub-block
 * 2c+1 (Q4_K/Q5_K); for Q6_K (16-element groups) lanes 8g..8g+7 take group
 * 4c+g. */
static const int16_t idx_k4[4][32] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    {R16(0), R16(1)}, {R16(2), R16(3)}, {R16(4), R16(5)}, {R16(6), R16(7)},
#undef R16
};
static const int16_t idx_k6[4][32] = {
#define R8(v) v, v, v, v, v, v, v, v
    {R8(0), R8(1), R8(2), R8(3)}, {R8(4), R8(5), R8(6), R8(7)},
    {R8(8), R8(9), R8(10), R8(11)}, {R8(12), R8(13), R8(14), R8(15)},
#undef R8
};

/* Unsigned quants of chunk c (elements 64c..64c+63) of a K super-block. */
AI __m512i decK_chunk(const int type, const uint8_t *blk, const int c) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (type == LOOM_TYPE_Q3_K) return loom_q3k_chunk512(blk, c);
    if (type == LOOM_TYPE_Q2_K) return loom_q2k_chunk512(blk, c);
    if (type == LOOM_TYPE_Q6_K) {
        const int h = c >> 1;
        const __m512i L = _mm512_loadu_si512(blk + 64 * h);
        __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h)));
        H = _mm512_mask_srli_epi16(H, 0xFFFF0000u, H, 2); /* [H, H >> 2] */
        const __m512i m30 = _mm512_set1_epi8(0x30);
        if ((c & 1) == 0) /* (L & 15) | ((H bits) << 4) */
            return _mm512_or_si512(_mm512_and_si512(L, m4),
                                   _mm512_and_si512(_mm512_slli_epi16(H, 4), m30));
        return _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4), _mm512_and_si512(H, m30));
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

/* Q4_K/Q5_K in halves of 128 elements (P = 0, 1): one 64-byte load holds
 * the nibbles of chunks 2P and 2P+1, so its low nibbles are sub-blocks 4P and
 * 4P+2 and its high nibbles 4P+1 and 4P+3 (activations gathered to match,
 * once per token for all rows). VPDPBUSD gives int32 lanes of 4 products
 * (|.| <= 4*31*128 < 2^15), two such vectors pack into int16 without loss
 * and one VPDPWSSD applies the eight lanes' sub-block scales. The scales
 * and mins of all RM rows are unpacked in one 512-bit pass (row r in 128-bit
 * lane r; loom_q4k_scales' steps), row r's lane broadcast and spread to words
 * by in-lane VPSHUFB (on Zen 4 VPERMT2W from two word vectors was 5-8 %
 * slower, VPMADDUBSW + VPDPWSSD per half instead of VPDPBUSD + pack 8 %);
 * d and dmin of all rows by one conversion. Zen 4, one core, bench_matmul
 * 65536 x 2048: Q4_K 20.6 -> 24.9 GB/s, Q5_K 20.2 -> 23.1
 * against chunk by chunk (tileK's form, 4 x VPMADDUBSW + VPDPWSSD and a
 * VPERMW of the scales per chunk and row). */
static const struct {
    uint8_t s[2][64]; /* half P: word i = byte of its sub-block's scale, zero-extended */
    uint8_t m[64];    /* int32 lanes 8..15 = m_0..m_7 zero-extended, lanes 0..7 zero */
} idx_k45 = {
#define Z 0x80 /* PSHUFB: a zero byte */
#define Q(a, b) a, Z, a, Z, a, Z, a, Z, b, Z, b, Z, b, Z, b, Z
#define HALF(P) {Q(4 * (P), 4 * (P) + 1), Q(4 * (P), 4 * (P) + 1), Q(4 * (P) + 2, 4 * (P) + 3), Q(4 * (P) + 2, 4 * (P) + 3)}
#define ZL Z, Z, Z, Z
#define ML(j) 8 + (j), Z, Z, Z
    {HALF(0), HALF(1)},
    {ZL, ZL, ZL, ZL, ZL, ZL, ZL, ZL, ML(0), ML(1), ML(2), ML(3), ML(4), ML(5), ML(6), ML(7)},
#undef ML
#undef ZL
#undef HALF
#undef Q
#undef Z
};

/* 128-bit lane r of v in all four (VSHUFI32X4 wants its lanes as a constant) */
AI __m512i lane_bcast(const __m512i v, const int r) {
    switch (r) {
    case 0: return _mm512_shuffle_i32x4(v, v, 0x00);
    case 1: return _mm512_shuffle_i32x4(v, v, 0x55);
    case 2: return _mm512_shuffle_i32x4(v, v, 0xAA);
    default: return _mm512_shuffle_i32x4(v, v, 0xFF);
    }
}

AI void tileK45(const int type, const int RM, const int RN, const uint8_t *w, size_t ws, int64_t k,
                const uint8_t *x, size_t xs, float *y, int64_t ldy, size_t pf) {
    const size_t bs = loom_qblock_bytes(type);
    const int qo = type == LOOM_TYPE_Q4_K ? 16 : 48; /* the quants' offset */
    const int64_t nsb = k / 256;
    const __m512i m4 = _mm512_set1_epi8(0x0F), zero = _mm512_setzero_si512();
    __m512 facc[XM][XN];
    UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) facc[r][t] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        /* every row's 12 scale bytes in its 128-bit lane, unpacked as
         * loom_q4k_scales does; [d, dmin] of every row by one conversion */
        __m512i v = zero;
        UNROLL for (int r = 0; r < RM; r++) {
            const uint8_t *blk = w + r * ws + sb * bs;
            LOOM_PREFETCH_AHEAD(blk, pf, bs);
            v = _mm512_mask_broadcast_i32x4(v, (__mmask16)(0xFu << (4 * r)), _mm_loadu_si128((const __m128i *)(blk + 4)));
        }
#define DH(r) (RM > (r) ? (int)loom_ld_u32(w + (r) * ws + sb * bs) : 0)
        const __m128i dh = _mm_setr_epi32(DH(0), DH(1), DH(2), DH(3));
#undef DH
        const __m512i p = _mm512_srlv_epi32(_mm512_shuffle_epi32(v, _MM_PERM_CBCA), _mm512_set4_epi32(4, 0, 0, 0));
        const __m512i q = _mm512_srli_epi32(_mm512_shuffle_epi32(v, _MM_PERM_BBAA), 2);
        const __m512i sm = _mm512_or_si512(_mm512_and_si512(p, _mm512_set4_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f)),
                                           _mm512_and_si512(q, _mm512_set4_epi32(0x30303030, 0, 0x30303030, 0)));
        __m512i smr[XM]; /* row r's [sc0..7, m0..7] in every 128-bit lane */
        UNROLL for (int r = 0; r < RM; r++) smr[r] = lane_bcast(sm, r);
        float dd[8]; /* d0, dmin0, d1, dmin1, ..: broadcast from memory (loads, not shuffles) */
        _mm256_storeu_ps(dd, _mm256_cvtph_ps(dh));
        __m512 wm[XM];
        UNROLL for (int r = 0; r < RM; r++) {
            /* lanes 8..15: dmin * m_s (subtracted below); lanes 0..7: 0 */
            const __m512i mi = _mm512_shuffle_epi8(smr[r], _mm512_loadu_si512(idx_k45.m));
            wm[r] = _mm512_mul_ps(_mm512_cvtepi32_ps(mi), _mm512_set1_ps(dd[2 * r + 1]));
        }
        __m512i iacc[XM][XN];
        UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) iacc[r][t] = _mm512_setzero_si512();
        UNROLL for (int P = 0; P < 2; P++) {
            __m512i lo[XM], hi[XM], sv[XM];
            UNROLL for (int r = 0; r < RM; r++) {
                const uint8_t *blk = w + r * ws + sb * bs;
                const __m512i z = _mm512_loadu_si512(blk + qo + 64 * P);
                lo[r] = _mm512_and_si512(z, m4);
                hi[r] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
                if (type == LOOM_TYPE_Q5_K) {
                    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 16)));
                    const int b = 4 * P; /* bytes 0..31: bit b (lo) / b+1 (hi); 32..63: b+2 / b+3 */
                    const __m512i sl = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << b)), _mm256_set1_epi8((char)(4 << b)), 1);
                    const __m512i sixteen = _mm512_set1_epi8(16);
                    lo[r] = _mm512_mask_add_epi8(lo[r], _mm512_test_epi8_mask(qh, sl), lo[r], sixteen);
                    hi[r] = _mm512_mask_add_epi8(hi[r], _mm512_test_epi8_mask(qh, _mm512_add_epi8(sl, sl)), hi[r], sixteen);
                }
                sv[r] = _mm512_shuffle_epi8(smr[r], _mm512_loadu_si512(idx_k45.s[P]));
            }
            UNROLL for (int t = 0; t < RN; t++) {
                const uint8_t *a = x + t * xs + sb * 292 + 4 + 128 * P;
                const __m512i a0 = _mm512_loadu_si512(a), a1 = _mm512_loadu_si512(a + 64);
                const __m512i alo = _mm512_shuffle_i64x2(a0, a1, _MM_SHUFFLE(1, 0, 1, 0));
                const __m512i ahi = _mm512_shuffle_i64x2(a0, a1, _MM_SHUFFLE(3, 2, 3, 2));
                UNROLL for (int r = 0; r < RM; r++) {
                    const __m512i s = _mm512_packs_epi32(_mm512_dpbusd_epi32(zero, lo[r], alo),
                                                         _mm512_dpbusd_epi32(zero, hi[r], ahi));
                    iacc[r][t] = _mm512_dpwssd_epi32(iacc[r][t], s, sv[r]);
                }
            }
        }
        UNROLL for (int t = 0; t < RN; t++) {
            const uint8_t *ab = x + t * xs + sb * 292;
            const __m512 da = _mm512_set1_ps(loom_ld_f32(ab));
            /* lanes 8..15: da * (sum of sub-block s) */
            const __m256i pairs = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(ab + 260)), _mm256_set1_epi16(1));
            const __m512 asum = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_inserti64x4(zero, pairs, 1)), da);
            UNROLL for (int r = 0; r < RM; r++) {
                facc[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(iacc[r][t]), da), _mm512_set1_ps(dd[2 * r]), facc[r][t]);
                facc[r][t] = _mm512_fnmadd_ps(wm[r], asum, facc[r][t]);
            }
        }
    }
    UNROLL for (int t = 0; t < RN; t++) UNROLL for (int r = 0; r < RM; r++) y[t * ldy + r] = _mm512_reduce_add_ps(facc[r][t]);
}

AI void tileK(const int type, const int RM, const int RN, const uint8_t *w, size_t ws, int64_t k,
              const uint8_t *x, size_t xs, float *y, int64_t ldy, size_t pf) {
    if (!loom_k_g16(type)) {
        tileK45(type, RM, RN, w, ws, k, x, xs, y, ldy, pf);
        return;
    }
    const size_t bs = loom_qblock_bytes(type);
    const int64_t nsb = k / 256;
    __m512 facc[XM][XN];
    UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) facc[r][t] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        __m512 dv[XM], wm[XM], dmv[XM];
        __m512i sc16[XM], bcorr[XM], m16[XM];
        UNROLL for (int r = 0; r < RM; r++) {
            const uint8_t *blk = w + r * ws + sb * bs;
            LOOM_PREFETCH_AHEAD(blk, pf, bs);
            m16[r] = _mm512_setzero_si512(), dmv[r] = _mm512_setzero_ps();
            if (loom_k_g16(type)) { /* Q6_K, Q3_K, Q2_K */
                dv[r] = _mm512_set1_ps(_cvtsh_ss(loom_ld_u16(blk + loom_k_g16_d(type))));
                const __m256i s = _mm256_cvtepi8_epi16(loom_k_g16_scales128((loom_type)type, blk));
                sc16[r] = _mm512_castsi256_si512(s);
                if (type == LOOM_TYPE_Q2_K) { /* its mins (16 int16 lanes), times dmin */
                    m16[r] = _mm512_zextsi256_si512(_mm256_cvtepi8_epi16(loom_q2k_mins128(blk)));
                    dmv[r] = _mm512_set1_ps(_cvtsh_ss(loom_ld_u16(blk + 82)));
                }
                /* -c * sc, against the bsums (16 int16 lanes, upper half zero) */
                bcorr[r] = _mm512_zextsi256_si512(_mm256_mullo_epi16(s, _mm256_set1_epi16((short)-loom_k_g16_offset(type))));
                wm[r] = _mm512_setzero_ps();
            } else {
                /* [d, dmin] by one conversion */
                const __m512 dd = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128((int)loom_ld_u32(blk))));
                dv[r] = _mm512_broadcastss_ps(_mm512_castps512_ps128(dd));
                const __m128i sm = loom_q4k_scales(blk + 4);
                sc16[r] = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(sm));
                /* lanes 8..15: dmin * m_s (subtracted below); lanes 0..7: 0 */
                wm[r] = _mm512_maskz_mul_ps(0xFF00, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sm)),
                                            _mm512_permutexvar_ps(_mm512_set1_epi32(1), dd));
                bcorr[r] = _mm512_setzero_si512();
            }
        }
        __m512i iacc[XM][XN];
        UNROLL for (int r = 0; r < RM; r++) UNROLL for (int t = 0; t < RN; t++) iacc[r][t] = _mm512_setzero_si512();
        UNROLL for (int c = 0; c < 4; c++) {
            __m512i q[XM], sv[XM];
            const __m512i idx = _mm512_loadu_si512(loom_k_g16(type) ? idx_k6[c] : idx_k4[c]);
            UNROLL for (int r = 0; r < RM; r++) {
                q[r] = decK_chunk(type, w + r * ws + sb * bs, c);
                sv[r] = _mm512_permutexvar_epi16(idx, sc16[r]);
            }
            UNROLL for (int t = 0; t < RN; t++) {
                const __m512i a = _mm512_loadu_si512(x + t * xs + sb * 292 + 4 + 64 * c);
                UNROLL for (int r = 0; r < RM; r++)
                    iacc[r][t] = _mm512_dpwssd_epi32(iacc[r][t], _mm512_maddubs_epi16(q[r], a), sv[r]);
            }
        }
        UNROLL for (int t = 0; t < RN; t++) {
            const uint8_t *ab = x + t * xs + sb * 292;
            const __m512 da = _mm512_set1_ps(loom_ld_f32(ab));
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)(ab + 260));
            __m512 asum = _mm512_setzero_ps();
            if (!loom_k_g16(type)) { /* lanes 8..15: da * (sum of sub-block s) */
                const __m256i pairs = _mm256_madd_epi16(bsums, _mm256_set1_epi16(1));
                asum = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_inserti64x4(_mm512_setzero_si512(), pairs, 1)), da);
            }
            UNROLL for (int r = 0; r < RM; r++) {
                __m512i is = iacc[r][t];
                if (loom_k_g16(type) && type != LOOM_TYPE_Q2_K)
                    is = _mm512_dpwssd_epi32(is, _mm512_zextsi256_si512(bsums), bcorr[r]);
                facc[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(is), da), dv[r], facc[r][t]);
                if (type == LOOM_TYPE_Q2_K) { /* - dmin·da·sum_g m_g·bsum_g */
                    const __m512i mi = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(bsums), m16[r]);
                    facc[r][t] = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(mi), da), dmv[r], facc[r][t]);
                }
                if (!loom_k_g16(type)) facc[r][t] = _mm512_fnmadd_ps(wm[r], asum, facc[r][t]);
            }
        }
    }
    UNROLL for (int t = 0; t < RN; t++) UNROLL for (int r = 0; r < RM; r++) y[t * ldy + r] = _mm512_reduce_add_ps(facc[r][t]);
}

/* ============================ r8 weights ============================ */

/* One r8 group (8 rows; runtime/kernels.h) x NT tokens in 256-bit vectors
 * with VNNI (AVX-512 VL): the integer sums are the AVX2 kernels'
 * (gemm_avx2.c), by VPDPBUSD straight into int32 — per 32 quants and row,
 * exact either way; Q4_K's scales multiply those sums (VPMULLD) where AVX2
 * folds them into VPMADDWD — and the float steps are theirs, lane for lane,
 * so a row's result is the AVX2 level's bits (tests/test_matmul.c). Why 256
 * bits: two groups per 512-bit vector read two streams 8 rows apart, which
 * Zen 4 fetched from DRAM at 16 GB/s (Q4_0, bench_matmul 65536 x 2048; 52
 * from L3) where one group streams at 31; and Zen 4 runs a 512-bit
 * operation as two 256-bit halves anyway. NG groups (one token) go side
 * by side, block by block, each fetched pfd bytes ahead: decode's streams
 * (gemm_panel.h: LOOM_R8_STREAMS_WALK); pf: the next group, into L2. */
AI __m256i r8_b4(const uint8_t *p) { return _mm256_set1_epi32((int)loom_ld_u32(p)); }

/* sc x (I + J) for Q4_K's two chains of a sub-block, exactly, without
 * VPMULLD (two µops on Intel): a chain is 4 VPDPBUSD, 16 products of a
 * 4-bit quant (0..15) and an activation (|a| <= 127; 128 would still do),
 * so it lies within 16 x 15 x 128 = 30720 < 2^15 and VPMADDWD / VPDPWSSD by
 * the scale widened to 32 bits ([sc, 0] as int16 pairs) multiply it whole
 * (tests/test_matmul.c: r8_layout_extreme; Q5_K's and Q6_K's quants would
 * overflow). Decode adds the result to S (one VPADDD on S's chain: two
 * VPDPWSSD into S read 27.7 GB/s from L3 where this reads 29.8); prefill's
 * r8_ksub puts both chains into S, its tokens' chains hiding the latency
 * (on Intel, and in r8_kpairs; AMD's direct passes scale by VPMULLD, R8_KMUL
 * below).
 * Xeon, family 6 model 167, bench_matmul 4096 x 2048 Q4_K, GFLOP/s, n =
 * 128: 313-322 -> 349-355 (the rows' GEMM 358-384 in the same minutes). */
AI __m256i r8_kscale(__m256i I, __m256i J, __m256i sc) { return _mm256_dpwssd_epi32(_mm256_madd_epi16(I, sc), J, sc); }

/* Variants of the K-quants' direct pair passes (r8_kdirect): R8_FEW, Q6_K's
 * split for 2-4 tokens; R8_KMUL, Q4_K's scale step by VPMULLD as the other
 * K-quants' (one µop on Zen 4, where the VPDPWSSD pair into S lost: AMD EPYC
 * family 25 model 17, bench_matmul --r8 4096 x 2048 Q4_K, GFLOP/s, VPDPWSSD
 * pair / VPMADDWD + VPDPWSSD + add / VPMULLD: n = 16 303 / 300 / 311, n =
 * 128 (the pair passes then) 290-296 / 286-293 / 312-313; TinyLlama-shaped
 * Q4_K, 128-token prefill, one thread, 137-140 -> 148-150 tokens/s), where
 * loom_r8_kmul says (AMD, whose K-quants take the GEMM over the layout from
 * r8_kdirect_max's 24 tokens, so r8_kpairs keeps the pair). */
enum { R8_FEW = 1, R8_KMUL = 2 };

/* Q3_K's and Q2_K's scale step for one token in r8_group (decode): a
 * 16-quant group's sum fits int16 (16 x 7 x 128 = 14336; Q2_K 16 x 3 x
 * 128), so VPDPWSSD by the scale as [sc, 0] int16 pairs (r8_k16_sc16) adds
 * sum x sc exactly, one instruction where VPMULLD and VPADDD took two (Q6_K's
 * 63s overflow int16) — into four accumulators, one per quarter: into S
 * alone the chain of 16 VPDPWSSD per super-block set the pace. Zen 4
 * (family 25 model 17), bench_matmul --r8 -n 1, GB/s, VPMULLD / one chain /
 * four: Q2_K 4096 x 2048 22.9 / 19.7 / 25.1, 32768 x 4096 (DRAM) 22.5 / - /
 * 24.7; Q3_K 24.8 / 20.3-25.3 / 25.3; loom bench TinyLlama, one thread,
 * three alternations, decode tokens/s (share of the bandwidth): Q2_K
 * 40.0-49.0 (69-80 %) -> 45.8-54.6 (83-87 %), Q3_K_M 36.1-36.2 (80-85 %)
 * -> 38.4-40.1 (88-91 %). More tokens keep VPMULLD (their accumulators
 * would spill). */
AI bool r8_k16_dpw(const int type, const int NT) { return type != LOOM_TYPE_Q6_K && NT == 1; }
AI __m256i r8_k16_sc16(const int type, __m256i sc) {
    return type == LOOM_TYPE_Q3_K ? _mm256_and_si256(sc, _mm256_set1_epi32(0xFFFF)) : sc; /* Q2_K's 0..15: already */
}

/* Q8_0 in the layout: its quants + 128 as VPDPBUSD's unsigned operand, then
 * 128 x the block's activation sum taken off, so the sum is the signed one
 * exactly and the float step the AVX2 level's (gemm_avx2.c: step32), bit
 * for bit (tests/test_matmul.c: r8_layout_every_isa). The sum once per
 * block and token (one VPDPBUSD and a horizontal add, for every group of
 * the pass) where IQ4_NL's takes 8 VPDPBUSD each. Its cost: n = 8 over
 * 4096 x 2048, GFLOP/s (Xeon family 6 model 207), the offset as a float
 * step instead (the GEMM's form, not the AVX2 level's bits) 293, this
 * 240-245, the rows' GEMM 125-127. */
AI __m128i q8_sum128(const uint8_t *a) {
    const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), _mm256_loadu_si256((const __m256i *)a));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
    return _mm_slli_epi32(h, 7);
}

/* The same 128 x sums as a table per call (r8_matmul: q8_table), one row
 * of nb per token, from the activation row's own block sums: it holds
 * d·Σq rounded once (act_rows.h), so Σq = d·Σq / d rounded to the nearest
 * integer exactly (|Σq| <= 4064: the error is ~1e-3 of one), 0 where d is
 * 0. Read by r8_group and r8_qblock instead of q8_sum128 (one broadcast
 * load instead of a VPDPBUSD and a horizontal add per block and token,
 * for every group or pair): same bits. Xeon family 6 model 207, one
 * thread, bench_matmul 4096 x 2048 from L2, GFLOP/s, per pair -> table
 * (alternated in one minute): n = 2 99-102 -> 102-103, 4 151-196 -> 197-199,
 * 5 219 -> 247, 6 227 -> 282, 8 243 -> 300-301, 12 241 -> 279, 15 239 ->
 * 307; from DRAM (--stream 22) n = 4 13.1-13.2 -> 13.4-13.9 GB/s. loom
 * bench, two threads, 8 sequences' decode, two alternations: TinyLlama
 * Q8_0 149.6-155.8 -> 157.6-169.9 tokens/s, SmolLM2 (its Q8_0 head)
 * 1108-1269 -> 1349-1387. */
enum { Q8TAB_CAP = 16384 };
static __thread struct {
    const uint8_t *x; /* the call's activations (token 0) */
    size_t xs;
    int64_t nb;
    const int32_t *c; /* NULL: none (too many, or not Q8_0) */
} q8tab;
static __thread int32_t q8buf[Q8TAB_CAP];

static void q8_table(const uint8_t *xq, size_t xs, int64_t k, int64_t n) {
    const int64_t nb = k / 32;
    q8tab.x = xq, q8tab.xs = xs, q8tab.nb = nb, q8tab.c = n * nb <= Q8TAB_CAP ? q8buf : NULL;
    if (!q8tab.c) return;
    for (int64_t t = 0; t < n; t++) {
        const uint8_t *dp = xq + (size_t)t * xs + k, *sp = dp + 4 * nb;
        for (int64_t b = 0; b < nb; b += 16) {
            const __mmask16 m = (__mmask16)(nb - b < 16 ? (1u << (nb - b)) - 1 : 0xFFFFu);
            const __m512 d = _mm512_maskz_loadu_ps(m, dp + 4 * b), sd = _mm512_maskz_loadu_ps(m, sp + 4 * b);
            const __mmask16 nz = _mm512_mask_cmp_ps_mask(m, d, _mm512_setzero_ps(), _CMP_NEQ_UQ);
            const __m512i q = _mm512_maskz_cvtps_epi32(nz, _mm512_maskz_div_ps(nz, sd, d)); /* nearest (MXCSR) */
            _mm512_mask_storeu_epi32(q8buf + t * nb + b, m, _mm512_slli_epi32(q, 7));
        }
    }
}

/* The table's row of the token whose activations are at x (NULL: none). */
AI const int32_t *q8_row(const int type, const uint8_t *x) {
    if (type != LOOM_TYPE_Q8_0 || !q8tab.c) return NULL;
    return q8tab.c + (x - q8tab.x) / (ptrdiff_t)q8tab.xs * q8tab.nb;
}

AI void r8_group(const int type, const int NG, const int NT, const uint8_t *const *grps, int64_t k, const uint8_t *x,
                 size_t xs, float *tmp, const uint8_t *pf, size_t pfd) {
    __m256 tot[4 * XN]; /* NG x NT: decode's streams (LOOM_R8_STREAMS_WALK) take up to 4 x 4 */
    UNROLL for (int t = 0; t < NG * NT; t++) tot[t] = _mm256_setzero_ps();
    if (!loom_is_kquant(type)) { /* Q4_0, Q4_1, Q8_0, MXFP4, IQ4_NL */
        const int64_t nb = k / 32;
        const size_t bb = loom_r8_block_bytes(type);
        const int32_t *c8 = q8_row(type, x);
        for (int64_t b = 0; b < nb; b++) {
            __m256i C[XN]; /* Q8_0: 128 x each token's block sum */
            if (type == LOOM_TYPE_Q8_0)
                UNROLL for (int t = 0; t < NT; t++) C[t] = c8 ? _mm256_set1_epi32(c8[t * nb + b])
                                                              : _mm256_broadcastd_epi32(q8_sum128(x + t * xs + 32 * b));
            UNROLL for (int gi = 0; gi < NG; gi++) {
                const uint8_t *p = grps[gi] + (size_t)b * bb;
                LOOM_PREFETCH_AHEAD(p, pfd, bb);
                __m256 fs, off;
                __m256i q[8];
                loom_r8_q4_block(type, p, &fs, &off, q);
                UNROLL for (int t = 0; t < NT; t++) {
                    const uint8_t *xt = x + t * xs, *a = xt + 32 * b;
                    __m256i I = _mm256_setzero_si256(), J = _mm256_setzero_si256(); /* two chains */
                    UNROLL for (int g = 0; g < 8; g += 2) {
                        I = _mm256_dpbusd_epi32(I, q[g], r8_b4(a + 4 * g));
                        J = _mm256_dpbusd_epi32(J, q[g + 1], r8_b4(a + 4 * g + 4));
                    }
                    I = _mm256_add_epi32(I, J);
                    if (type == LOOM_TYPE_IQ4_NL) { /* less 128 x the activations' sum: the signed sum */
                        __m256i Cn = _mm256_setzero_si256();
                        UNROLL for (int g = 0; g < 8; g++) Cn = _mm256_dpbusd_epi32(Cn, _mm256_set1_epi8((char)0x80), r8_b4(a + 4 * g));
                        I = _mm256_sub_epi32(I, Cn);
                    }
                    if (type == LOOM_TYPE_Q8_0) I = _mm256_sub_epi32(I, C[t]);
                    __m256 *tt = &tot[gi * NT + t];
                    *tt = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(I), _mm256_set1_ps(loom_ld_f32(xt + k + 4 * b))), fs, *tt);
                    if (type != LOOM_TYPE_IQ4_NL && type != LOOM_TYPE_Q8_0)
                        *tt = _mm256_fmadd_ps(off, _mm256_set1_ps(loom_ld_f32(xt + k + 4 * nb + 4 * b)), *tt);
                }
            }
        }
    } else if (loom_r8_k16(type)) {
        const size_t bb = loom_r8_block_bytes(type);
        for (int64_t sb = 0; sb < k / 256; sb++) UNROLL for (int gi = 0; gi < NG; gi++) {
            const uint8_t *p = grps[gi] + (size_t)sb * bb;
            LOOM_PREFETCH_AHEAD(p, pfd, bb);
            __m256i S[XN], O[XN], SP[4]; /* SP: one token's Q3_K / Q2_K sums per quarter (r8_k16_dpw) */
            UNROLL for (int t = 0; t < NT; t++) S[t] = O[t] = _mm256_setzero_si256();
            UNROLL for (int pp = 0; pp < 4; pp++) SP[pp] = _mm256_setzero_si256();
            const bool dpw = r8_k16_dpw(type, NT);
            UNROLL for (int h = 0; h < 2; h++)
                UNROLL for (int hv = 0; hv < 2; hv++) { /* groups 4hv..4hv+3 of each quarter pp: scale 8h + 2pp + hv */
                    __m256i I[XN][4]; /* [token][quarter] */
                    UNROLL for (int g = 4 * hv; g < 4 * hv + 4; g += 2) {
                        __m256i q[2][4]; /* [group][quarter] */
                        loom_r8_k16_quants(type, p, h, g, q[0]);
                        loom_r8_k16_quants(type, p, h, g + 1, q[1]);
                        UNROLL for (int t = 0; t < NT; t++)
                            UNROLL for (int pp = 0; pp < 4; pp++) {
                                const uint8_t *a = x + t * xs + 292 * sb + 4 + 128 * h + 32 * pp + 4 * g;
                                const __m256i i0 = g == 4 * hv ? _mm256_setzero_si256() : I[t][pp];
                                I[t][pp] = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(i0, q[0][pp], r8_b4(a)), q[1][pp], r8_b4(a + 4));
                            }
                    }
                    UNROLL for (int pp = 0; pp < 4; pp++) {
                        const __m256i sc = loom_r8_k16_sc32(type, p, 8 * h + 2 * pp + hv);
                        if (dpw) SP[pp] = _mm256_dpwssd_epi32(SP[pp], I[0][pp], r8_k16_sc16(type, sc));
                        else UNROLL for (int t = 0; t < NT; t++) S[t] = _mm256_add_epi32(S[t], _mm256_mullo_epi32(I[t][pp], sc));
                    }
                }
            if (dpw) S[0] = _mm256_add_epi32(_mm256_add_epi32(SP[0], SP[1]), _mm256_add_epi32(SP[2], SP[3]));
            UNROLL for (int j = 0; j < 8; j++) { /* the -32 (Q3_K: -4) offset (Q2_K: its mins), as the AVX2 kernel's */
                const __m256i mp = _mm256_cvtepi8_epi16(loom_r8_k16_offset_pairs(type, p, j));
                UNROLL for (int t = 0; t < NT; t++)
                    O[t] = _mm256_add_epi32(O[t], _mm256_madd_epi16(mp, r8_b4(x + t * xs + 292 * sb + 260 + 4 * j)));
            }
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
            if (type == LOOM_TYPE_Q2_K) { /* d·da·S − dmin·da·O, the AVX2 kernel's stepK */
                const __m256 negdmin = loom_r8_negdmin(p);
                UNROLL for (int t = 0; t < NT; t++) {
                    const __m256 da = _mm256_set1_ps(loom_ld_f32(x + t * xs + 292 * sb));
                    __m256 *tt = &tot[gi * NT + t];
                    *tt = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(S[t]), da), d, *tt);
                    *tt = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(O[t]), da), negdmin, *tt);
                }
                continue;
            }
            UNROLL for (int t = 0; t < NT; t++) {
                const __m256i St = _mm256_sub_epi32(S[t], _mm256_slli_epi32(O[t], loom_r8_k16_shift(type)));
                tot[gi * NT + t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(St), _mm256_set1_ps(loom_ld_f32(x + t * xs + 292 * sb))),
                                                   d, tot[gi * NT + t]);
            }
        }
    } else { /* Q4_K, Q5_K */
        const size_t bb = loom_r8_block_bytes(type);
        for (int64_t sb = 0; sb < k / 256; sb++) UNROLL for (int gi = 0; gi < NG; gi++) {
            const uint8_t *p = grps[gi] + (size_t)sb * bb;
            LOOM_PREFETCH_AHEAD(p, pfd, bb);
            loom_prefetch_l2(pf, (size_t)sb * bb, (size_t)(sb + 1) * bb);
            __m256i S[XN], M[XN];
            UNROLL for (int t = 0; t < NT; t++) S[t] = M[t] = _mm256_setzero_si256();
            UNROLL for (int s = 0; s < 8; s++) {
                __m256i q[8];
                loom_r8_k45_quants(type, false, p, s, q);
                const __m256i sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 32 + 8 * s)));
                UNROLL for (int t = 0; t < NT; t++) {
                    const uint8_t *a = x + t * xs + 292 * sb + 4 + 32 * s;
                    __m256i I = _mm256_setzero_si256(), J = _mm256_setzero_si256(); /* two chains */
                    UNROLL for (int g = 0; g < 8; g += 2) {
                        I = _mm256_dpbusd_epi32(I, q[g], r8_b4(a + 4 * g));
                        J = _mm256_dpbusd_epi32(J, q[g + 1], r8_b4(a + 4 * g + 4));
                    }
                    S[t] = _mm256_add_epi32(S[t], type == LOOM_TYPE_Q4_K ? r8_kscale(I, J, sc)
                                                                         : _mm256_mullo_epi32(_mm256_add_epi32(I, J), sc));
                }
            }
            UNROLL for (int j = 0; j < 8; j++) { /* the mins: m_j x (bsums 2j + 2j+1), as kmins */
                const __m256i m = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 96 + 8 * j)));
                const __m256i mp = _mm256_or_si256(m, _mm256_slli_epi32(m, 16));
                UNROLL for (int t = 0; t < NT; t++)
                    M[t] = _mm256_add_epi32(M[t], _mm256_madd_epi16(mp, r8_b4(x + t * xs + 292 * sb + 260 + 4 * j)));
            }
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
            const __m256 negdmin = loom_r8_negdmin(p);
            UNROLL for (int t = 0; t < NT; t++) {
                const __m256 da = _mm256_set1_ps(loom_ld_f32(x + t * xs + 292 * sb));
                __m256 *tt = &tot[gi * NT + t];
                *tt = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(S[t]), da), d, *tt);
                *tt = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(M[t]), da), negdmin, *tt);
            }
        }
    }
    UNROLL for (int t = 0; t < NG * NT; t++) _mm256_storeu_ps(tmp + 8 * t, tot[t]);
}

/* Two tokens or more (r8_pair_n) of Q4_0/Q4_1: two groups per 512-bit vector
 * (group A's rows in the low half, B's in the high one; B = A for a lone
 * last group) and up to 8 tokens per pass, so each load and nibble split
 * serves 16 rows x 8 tokens; the pair's bytes stay in L1/L2 across passes
 * (its two streams slow only one token: r8_pair_n). Same integer sums and float steps as
 * r8_group, lane for lane. (A panel of the quants split once per 256
 * columns for all tokens, with the running sums carried through y, was 20 %
 * slower on Zen 4: the activations walked 2.5 KiB apart.) */
enum { XP = 8 };

/* The fewest tokens that go by pairs (r8_pairs, r8_kdirect / r8_kpairs)
 * instead of r8_group's one chunk (a last chunk of 1-3 tokens would stream
 * the group again). Zen 4, one thread, bench_matmul 131072 x 2048 (DRAM) /
 * 2048 x 2048 (L3), GFLOP/s, chunks -> pairs: Q4_0 n = 2 196 -> 251 / 210
 * -> 266, n = 4 226 -> 303 / 243 -> 310 (Q4_1 the same; n = 1 streams
 * faster by chunks: 61 against 50 GB/s); Q4_K (passes splitting each
 * chunk's two nibble halves from one load) n = 2 / 3 / 4 175 / 197 / 212 ->
 * 190 / 229 / 246; Q6_K (a half's four sub-blocks from one load of its
 * chunks) n = 2 / 3 / 4 141 / 160 / 173 -> 140 / 165 / 186 (4096 rows, L3:
 * 154 / 176 / 183 -> 172 / 192 / 220); Q5_K's chunks win up to 4 (n = 4 183
 * against 158). */
AI int r8_pair_n(const int type) { return type == LOOM_TYPE_Q5_K ? 5 : 2; }

AI __m512i r8_b4x(const uint8_t *p) { return _mm512_set1_epi32((int)loom_ld_u32(p)); }

/* the next pair's (or panel's) bytes [from, to) of both groups into L2
 * (cpu_kernels.h: loom_prefetch_l2) */
AI void r8_pf(const uint8_t *a, const uint8_t *b, size_t from, size_t to) {
    loom_prefetch_l2(a, from, to);
    loom_prefetch_l2(b, from, to);
}

/* Block b of a Q4_0 / Q4_1 / MXFP4 / IQ4_NL pair (pa, pb: its bytes in groups A and B) for NT tokens into tot */
AI void r8_qblock(const int type, const int NT, const uint8_t *pa, const uint8_t *pb, int64_t k, const int64_t b,
                  const uint8_t *x, size_t xs, const int32_t *c8, __m512 *tot) {
    const int64_t nb = k / 32;
    __m512 fs, off;
    __m512i q[8];
    loom_r8_q4_block2(type, pa, pb, &fs, &off, q);
    UNROLL for (int t = 0; t < NT; t++) {
        const uint8_t *xt = x + t * xs, *a = xt + 32 * b;
        __m512i I = _mm512_setzero_si512(), J = _mm512_setzero_si512(); /* two chains */
        UNROLL for (int g = 0; g < 8; g += 2) {
            I = _mm512_dpbusd_epi32(I, q[g], r8_b4x(a + 4 * g));
            J = _mm512_dpbusd_epi32(J, q[g + 1], r8_b4x(a + 4 * g + 4));
        }
        I = _mm512_add_epi32(I, J);
        if (type == LOOM_TYPE_IQ4_NL) { /* less 128 x the activations' sum (r8_group) */
            __m512i C = _mm512_setzero_si512();
            UNROLL for (int g = 0; g < 8; g++) C = _mm512_dpbusd_epi32(C, _mm512_set1_epi8((char)0x80), r8_b4x(a + 4 * g));
            I = _mm512_sub_epi32(I, C);
        }
        if (type == LOOM_TYPE_Q8_0) /* (r8_group; c8: q8_row(x)) */
            I = _mm512_sub_epi32(I, c8 ? _mm512_set1_epi32(c8[t * nb + b]) : _mm512_broadcastd_epi32(q8_sum128(a)));
        tot[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(I), _mm512_set1_ps(loom_ld_f32(xt + k + 4 * b))),
                                 fs, tot[t]);
        if (type != LOOM_TYPE_IQ4_NL && type != LOOM_TYPE_Q8_0)
            tot[t] = _mm512_fmadd_ps(off, _mm512_set1_ps(loom_ld_f32(xt + k + 4 * nb + 4 * b)), tot[t]);
    }
}

AI void r8_pair(const int type, const int NT, const uint8_t *ga, const uint8_t *gb, int64_t k, const uint8_t *x,
                size_t xs, float *y, int64_t ldy, __mmask16 rows, const uint8_t *pfa, const uint8_t *pfb) {
    __m512 tot[XP];
    UNROLL for (int t = 0; t < NT; t++) tot[t] = _mm512_setzero_ps();
    const size_t bb = loom_r8_block_bytes(type);
    const int32_t *c8 = q8_row(type, x);
    for (int64_t b = 0; b < k / 32; b++) {
        r8_pf(pfa, pfb, (size_t)b * bb, (size_t)(b + 1) * bb);
        r8_qblock(type, NT, ga + (size_t)b * bb, gb + (size_t)b * bb, k, b, x, xs, c8, tot);
    }
    UNROLL for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + t * ldy, rows, tot[t]);
}

/* CALL(NT) for nt = 1..XP tokens, NT a constant (the passes' templates) */
#define R8_BY_NT(nt, CALL)                                                                            \
    switch (nt) {                                                                                     \
    case 1: CALL(1); break;                                                                           \
    case 2: CALL(2); break;                                                                           \
    case 3: CALL(3); break;                                                                           \
    case 4: CALL(4); break;                                                                           \
    case 5: CALL(5); break;                                                                           \
    case 6: CALL(6); break;                                                                           \
    case 7: CALL(7); break;                                                                           \
    default: CALL(8); break;                                                                          \
    }

AI void r8_pairs(const int type, LOOM_MATMUL_PARAMS) {
    for (int64_t r0 = 0; r0 < nr; r0 += 16) {
        const uint8_t *ga = w + (size_t)r0 * ws, *gb = nr - r0 > 8 ? ga + 8 * ws : ga;
        const __mmask16 rows = (__mmask16)(nr - r0 < 16 ? (1u << (nr - r0)) - 1 : 0xFFFFu);
        const uint8_t *na = nr - r0 > 16 ? ga + 16 * ws : NULL, *nb = na && nr - r0 > 24 ? na + 8 * ws : na;
        for (int64_t t = 0; t < n; t += XP) {
            const uint8_t *x = xq + t * xs;
            const int nt = (int)(n - t < XP ? n - t : XP);
#define PAIR(NT) r8_pair(type, NT, ga, gb, k, x, xs, y + t * ldy + r0, ldy, rows, t ? NULL : na, nb)
            R8_BY_NT(nt, PAIR)
#undef PAIR
        }
    }
}

/* K-quant prefill (Q4_K, Q5_K, Q6_K): a pair's R8_SBC super-blocks unpacked
 * once (quants as loom_r8_k45_quants / loom_r8_q6_quants give them, scales
 * and mins widened, d and -dmin) into a panel (43 KiB: 8 super-blocks beat 4
 * in 21 KiB by 2-6 %, kernels.h) that every 8-token pass then reads, the running
 * sums carried through y from one panel to the next; the sums and float
 * steps are r8_group's, lane for lane. Unpacking inside each pass, as the
 * 32-element types do, cost Q5_K's fifth bits every pass: 250 GFLOP/s
 * where its rows' GEMM gave 280. */
enum { R8_SBC = 8 };
typedef struct {
    __m512i q[R8_SBC][8][8]; /* [super-block][sub-block s][group g] */
    __m512i sc[R8_SBC][8], mp[R8_SBC][8];
    __m128i sc6[R8_SBC][16]; /* Q6_K's scale per 16 elements: int8, group A's rows then B's */
    __m512 d[R8_SBC], negdmin[R8_SBC];
} r8_kpanel;

/* (the quants of each group by the decode kernels' helper, once per panel) */
AI void r8_kunpack(const int type, const uint8_t *pa, const uint8_t *pb, r8_kpanel *P, const int c) {
    for (int s = 0; s < 8; s++) {
        __m256i qa[8], qb[8];
        loom_r8_k45_quants(type, false, pa, s, qa);
        loom_r8_k45_quants(type, false, pb, s, qb);
        UNROLL for (int g = 0; g < 8; g++) P->q[c][s][g] = _mm512_inserti64x4(_mm512_castsi256_si512(qa[g]), qb[g], 1);
        P->sc[c][s] = loom_r8_u8x2(pa + 32 + 8 * s, pb + 32 + 8 * s);
        P->mp[c][s] = loom_r8_kmp(type, pa, pb, s);
    }
    P->d[c] = loom_r8_f16x2(pa, pb);
    P->negdmin[c] = loom_r8_knegdmin(pa, pb);
}


/* Q6_K: sub-block s = 4h + quarter; quants unsigned (0..63), the -32 offset
 * by mp as the AVX2 kernel's */
AI void r8_q6unpack(const uint8_t *pa, const uint8_t *pb, r8_kpanel *P, const int c) {
    for (int h = 0; h < 2; h++)
        for (int g = 0; g < 8; g++) {
            __m256i qa[4], qb[4];
            loom_r8_q6_quants(pa, h, g, qa);
            loom_r8_q6_quants(pb, h, g, qb);
            UNROLL for (int j = 0; j < 4; j++) P->q[c][4 * h + j][g] = _mm512_inserti64x4(_mm512_castsi256_si512(qa[j]), qb[j], 1);
        }
    for (int G = 0; G < 16; G++)
        P->sc6[c][G] = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)(pa + 16 + 8 * G)), _mm_loadl_epi64((const __m128i *)(pb + 16 + 8 * G)));
    for (int j = 0; j < 8; j++) P->mp[c][j] = loom_r8_kmp(LOOM_TYPE_Q6_K, pa, pb, j);
    P->d[c] = loom_r8_f16x2(pa, pb);
}

/* The integer sums of sub-block s (quants q, scales sa / Q6_K's second
 * half sb) for NT tokens (a: their activations' sub-block) into S */
AI void r8_ksub(const int type, const int NT, const int var, const __m512i q[8], const __m512i sa, const __m512i sb,
                const uint8_t *a0, size_t xs, __m512i *S) {
    UNROLL for (int t = 0; t < NT; t++) {
        const uint8_t *a = a0 + t * xs;
        __m512i I = _mm512_setzero_si512(), J = _mm512_setzero_si512(); /* two chains */
        if (type == LOOM_TYPE_Q6_K) { /* groups 0-3 and 4-7: one scale each */
            UNROLL for (int g = 0; g < 4; g++) {
                I = _mm512_dpbusd_epi32(I, q[g], r8_b4x(a + 4 * g));
                J = _mm512_dpbusd_epi32(J, q[g + 4], r8_b4x(a + 4 * g + 16));
            }
            S[t] = _mm512_add_epi32(S[t], _mm512_add_epi32(_mm512_mullo_epi32(I, sa), _mm512_mullo_epi32(J, sb)));
            continue;
        }
        UNROLL for (int g = 0; g < 8; g += 2) {
            I = _mm512_dpbusd_epi32(I, q[g], r8_b4x(a + 4 * g));
            J = _mm512_dpbusd_epi32(J, q[g + 1], r8_b4x(a + 4 * g + 4));
        }
        if (type == LOOM_TYPE_Q4_K && !(var & R8_KMUL)) { /* as r8_kscale, both chains into S (NT chains hide the latency) */
            S[t] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(S[t], I, sa), J, sa);
            continue;
        }
        S[t] = _mm512_add_epi32(S[t], _mm512_mullo_epi32(_mm512_add_epi32(I, J), sa));
    }
}

/* A super-block's float steps (the min / offset pairs mp, d, -dmin) for NT
 * tokens (xb: their activations' Q8_K block) from S into tot */
AI void r8_kfinish(const int type, const int NT, const __m512i *mp, const __m512 d, const __m512 negdmin,
                   const uint8_t *xb, size_t xs, __m512i *S, __m512 *tot) {
    UNROLL for (int t = 0; t < NT; t++) {
        const uint8_t *xt = xb + t * xs;
        __m512i M = _mm512_setzero_si512();
        UNROLL for (int j = 0; j < 8; j++) M = _mm512_add_epi32(M, _mm512_madd_epi16(mp[j], r8_b4x(xt + 260 + 4 * j)));
        const __m512 da = _mm512_set1_ps(loom_ld_f32(xt));
        if (type == LOOM_TYPE_Q6_K) { /* S - 32 M, one step (the AVX2 kernel's stepK) */
            S[t] = _mm512_sub_epi32(S[t], _mm512_slli_epi32(M, 5));
            tot[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(S[t]), da), d, tot[t]);
            continue;
        }
        tot[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(S[t]), da), d, tot[t]);
        tot[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(M), da), negdmin, tot[t]);
    }
}

/* NT tokens (x: their activations from the panel's first super-block on)
 * over nsb super-blocks of the panel */
AI void r8_kpass(const int type, const int NT, const r8_kpanel *P, const int nsb, const uint8_t *x, size_t xs, float *y, int64_t ldy,
                 __mmask16 rows, const bool first, const uint8_t *pfa, const uint8_t *pfb, size_t pfn) {
    __m512 tot[XP];
    UNROLL for (int t = 0; t < NT; t++) tot[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rows, y + t * ldy);
    for (int c = 0; c < nsb; c++) {
        r8_pf(pfa, pfb, pfn * c / nsb, pfn * (c + 1) / nsb);
        __m512i S[XP];
        UNROLL for (int t = 0; t < NT; t++) S[t] = _mm512_setzero_si512();
        for (int s = 0; s < 8; s++) {
            __m512i q[8];
            UNROLL for (int g = 0; g < 8; g++) q[g] = P->q[c][s][g];
            const __m512i sa = type == LOOM_TYPE_Q6_K ? _mm512_cvtepi8_epi32(P->sc6[c][2 * s]) : P->sc[c][s],
                          sb = type == LOOM_TYPE_Q6_K ? _mm512_cvtepi8_epi32(P->sc6[c][2 * s + 1]) : sa;
            r8_ksub(type, NT, 0, q, sa, sb, x + 292 * c + 4 + 32 * s, xs, S);
        }
        r8_kfinish(type, NT, P->mp[c], P->d[c], P->negdmin[c], x + 292 * c, xs, S, tot);
    }
    UNROLL for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + t * ldy, rows, tot[t]);
}

/* The same for super-block c of a pair (pa, pb: its bytes in groups A and
 * B) over the r8 bytes themselves, split in registers as r8_kunpack /
 * r8_q6unpack would: for a single pass there is nothing to gain from a
 * panel written once and read once (r8_kdpass walks a pair's super-blocks). */
AI void r8_kdsb(const int type, const int NT, const int var, const uint8_t *pa, const uint8_t *pb, const uint8_t *x,
                size_t xs, const int c, __m512 *tot) {
    __m512i S[XP];
    UNROLL for (int t = 0; t < NT; t++) S[t] = _mm512_setzero_si512();
    if (type == LOOM_TYPE_Q6_K && (var & R8_FEW) && NT <= 4) {
        /* one half (groups 0-3 or 4-7, one scale each) of sub-blocks 4h .. 4h+3 from one load of each of its
         * chunks (loom_r8_q6_quants' four at once); the integer sums add in another order, to the same bits.
         * The split is written out here and below: one helper for both cost n = 4 2-9 % (GCC's allocation) */
        const __m512i m6 = _mm512_set1_epi8(0x3F), mc0 = _mm512_set1_epi8((char)0xC0);
        for (int h = 0; h < 2; h++)
            for (int half = 0; half < 2; half++) {
                __m512i q[4][4];
                UNROLL for (int i = 0; i < 4; i++) {
                    const size_t o = LOOM_R8_Q6_Q(h, 4 * half + i, 0);
                    const __m512i b0 = loom_r8_ld2(pa + o, pb + o), b1 = loom_r8_ld2(pa + o + 32, pb + o + 32),
                                  b2 = loom_r8_ld2(pa + o + 64, pb + o + 64);
                    q[0][i] = _mm512_and_si512(b0, m6);
                    q[1][i] = _mm512_and_si512(b1, m6);
                    q[2][i] = _mm512_and_si512(b2, m6);
                    q[3][i] = _mm512_or_si512(_mm512_or_si512(_mm512_srli_epi16(_mm512_and_si512(b0, mc0), 6),
                                                              _mm512_srli_epi16(_mm512_and_si512(b1, mc0), 4)),
                                              _mm512_srli_epi16(_mm512_and_si512(b2, mc0), 2));
                }
                UNROLL for (int j = 0; j < 4; j++) {
                    const int sub = 4 * h + j, G = 2 * sub + half;
                    const __m512i sc = loom_r8_i8x2(pa + 16 + 8 * G, pb + 16 + 8 * G);
                    UNROLL for (int t = 0; t < NT; t++) {
                        const uint8_t *a = x + t * xs + 292 * c + 4 + 32 * sub + 16 * half;
                        __m512i I = _mm512_setzero_si512();
                        UNROLL for (int i = 0; i < 4; i++) I = _mm512_dpbusd_epi32(I, q[j][i], r8_b4x(a + 4 * i));
                        S[t] = _mm512_add_epi32(S[t], _mm512_mullo_epi32(I, sc));
                    }
                }
            }
    } else if (type == LOOM_TYPE_Q4_K && NT <= 4) {
        /* sub-blocks 2j and 2j+1 from one load of each chunk (n = 4 224 -> 246 GFLOP/s from DRAM;
         * with 5-8 tokens the chunks no longer fit the registers beside the sums: 2-3 % slower) */
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        for (int j = 0; j < 4; j++) {
            __m512i v[8], q[8];
            UNROLL for (int g = 0; g < 8; g++) {
                const size_t o = LOOM_R8_K45_QS(LOOM_TYPE_Q4_K) + 256 * j + 32 * g;
                v[g] = loom_r8_ld2(pa + o, pb + o);
                q[g] = _mm512_and_si512(v[g], m4);
            }
            const __m512i s0 = loom_r8_u8x2(pa + 32 + 16 * j, pb + 32 + 16 * j);
            r8_ksub(type, NT, var, q, s0, s0, x + 292 * c + 4 + 64 * j, xs, S);
            UNROLL for (int g = 0; g < 8; g++) q[g] = _mm512_and_si512(_mm512_srli_epi16(v[g], 4), m4);
            const __m512i s1 = loom_r8_u8x2(pa + 40 + 16 * j, pb + 40 + 16 * j);
            r8_ksub(type, NT, var, q, s1, s1, x + 292 * c + 36 + 64 * j, xs, S);
        }
    } else
    for (int s = 0; s < 8; s++) {
        __m512i q[8], sa, sb;
        if (type == LOOM_TYPE_Q6_K) { /* loom_r8_q6_quants' q[j] of half h, sub-block s = 4h + j, alone */
            const int h = s >> 2, j = s & 3;
            const __m512i m6 = _mm512_set1_epi8(0x3F), mc0 = _mm512_set1_epi8((char)0xC0);
            UNROLL for (int g = 0; g < 8; g++) {
                const size_t o = LOOM_R8_Q6_Q(h, g, 0);
                if (j < 3) {
                    q[g] = _mm512_and_si512(loom_r8_ld2(pa + o + 32 * j, pb + o + 32 * j), m6);
                    continue;
                }
                const __m512i b0 = loom_r8_ld2(pa + o, pb + o), b1 = loom_r8_ld2(pa + o + 32, pb + o + 32),
                              b2 = loom_r8_ld2(pa + o + 64, pb + o + 64);
                q[g] = _mm512_or_si512(_mm512_or_si512(_mm512_srli_epi16(_mm512_and_si512(b0, mc0), 6),
                                                       _mm512_srli_epi16(_mm512_and_si512(b1, mc0), 4)),
                                       _mm512_srli_epi16(_mm512_and_si512(b2, mc0), 2));
            }
            sa = loom_r8_i8x2(pa + 16 + 16 * s, pb + 16 + 16 * s);
            sb = loom_r8_i8x2(pa + 24 + 16 * s, pb + 24 + 16 * s);
        } else {
            __m256i qa[8], qb[8];
            loom_r8_k45_quants(type, false, pa, s, qa);
            loom_r8_k45_quants(type, false, pb, s, qb);
            UNROLL for (int g = 0; g < 8; g++) q[g] = _mm512_inserti64x4(_mm512_castsi256_si512(qa[g]), qb[g], 1);
            sa = sb = loom_r8_u8x2(pa + 32 + 8 * s, pb + 32 + 8 * s);
        }
        r8_ksub(type, NT, var, q, sa, sb, x + 292 * c + 4 + 32 * s, xs, S);
    }
    __m512i mp[8];
    UNROLL for (int j = 0; j < 8; j++) mp[j] = loom_r8_kmp(type, pa, pb, j);
    const __m512 negdmin = type == LOOM_TYPE_Q6_K ? _mm512_setzero_ps() : loom_r8_knegdmin(pa, pb);
    r8_kfinish(type, NT, mp, loom_r8_f16x2(pa, pb), negdmin, x + 292 * c, xs, S, tot);
}

AI void r8_kdpass(const int type, const int NT, const int var, const uint8_t *ga, const uint8_t *gb, const int nsb,
                  const uint8_t *x, size_t xs, float *y, int64_t ldy, __mmask16 rows, const uint8_t *pfa,
                  const uint8_t *pfb) {
    const size_t bb = loom_r8_block_bytes(type);
    __m512 tot[XP];
    UNROLL for (int t = 0; t < NT; t++) tot[t] = _mm512_setzero_ps();
    for (int c = 0; c < nsb; c++) {
        r8_pf(pfa, pfb, (size_t)c * bb, (size_t)(c + 1) * bb);
        r8_kdsb(type, NT, var, ga + (size_t)c * bb, gb + (size_t)c * bb, x, xs, c, tot);
    }
    UNROLL for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + t * ldy, rows, tot[t]);
}


/* 2-4 tokens whose weights come from DRAM (loom_r8_stream_n) where decode
 * reads four streams (loom_r8_streams): the same four streams (groups i,
 * i+h, i+2h, i+3h of the range), each fetched LOOM_R8_STREAM_PF bytes
 * ahead, as two 512-bit pairs of far groups (r8_qblock / r8_kdsb, the
 * pairs' sums and float steps); returns the groups done (4h), the rest
 * left to the caller. Xeon (family 6 model 167), bench_matmul --stream 22
 * (2 GiB), GB/s, r8_group's 256-bit streams -> these, two alternations:
 * Q4_0 n = 2 / 3 / 4 17.0 -> 17.1-17.4, 16.1 -> 16.8-16.9, 15.8 -> 16.7;
 * Q4_1 17.3 -> 17.1-17.2, 16.2-16.3 -> 16.7-17.1, 16.1-16.3 -> 16.6-17.1;
 * Q4_K 15.1-15.5 -> 14.8-14.9, 12.9-13.0 -> 13.9, 13.2-13.4 -> 13.2-13.4;
 * loom bench TinyLlama one thread, 2 / 3 / 4 sequences, tokens/s: Q4_0
 * 59-60 -> 59-61, 81-83 -> 88, 105-107 -> 111-112; Q4_K_M 3 / 4 64-65 ->
 * 67-69, 84-85 -> 85. (Q5_K lost here: its 512-bit pass unpacks the fifth
 * bits by halves, Q5_K n = 3 12.0 -> 10.2; only the types Intel holds in
 * the layout have these walks, r8_matmul.) */
AI void r8_far_nt(const int type, const int NT, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq,
                  size_t xs, float *y, int64_t ldy, const int64_t h) {
    const bool kq = loom_is_kquant(type);
    const size_t bb = loom_r8_block_bytes(type);
    const int64_t nblk = k / (kq ? 256 : 32);
    const int32_t *c8 = q8_row(type, xq);
    for (int64_t i = 0; i < h; i++) {
        const uint8_t *g[4];
        for (int j = 0; j < 4; j++) g[j] = w + (size_t)(8 * (i + j * h)) * ws;
        __m512 tot[2][XP];
        UNROLL for (int t = 0; t < NT; t++) tot[0][t] = tot[1][t] = _mm512_setzero_ps();
        for (int64_t c = 0; c < nblk; c++) {
            const size_t o = (size_t)c * bb;
            UNROLL for (int j = 0; j < 4; j++) LOOM_PREFETCH_AHEAD(g[j] + o, LOOM_R8_STREAM_PF, bb);
            UNROLL for (int p = 0; p < 2; p++) {
                if (kq) r8_kdsb(type, NT, R8_FEW, g[2 * p] + o, g[2 * p + 1] + o, xq, xs, (int)c, tot[p]);
                else r8_qblock(type, NT, g[2 * p] + o, g[2 * p + 1] + o, k, c, xq, xs, c8, tot[p]);
            }
        }
        UNROLL for (int t = 0; t < NT; t++) {
            float tmp[32];
            _mm512_storeu_ps(tmp, tot[0][t]);
            _mm512_storeu_ps(tmp + 16, tot[1][t]);
            for (int j = 0; j < 4; j++)
                for (int64_t r = 0; r < 8 && 8 * (i + j * h) + r < nr; r++) y[t * ldy + 8 * (i + j * h) + r] = tmp[8 * j + r];
        }
    }
}

AI int64_t r8_far(const int type, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq, size_t xs,
                  const int n, float *y, int64_t ldy) {
    const int64_t h = (nr + 7) / 8 / 4;
#define FAR(NT) r8_far_nt(type, NT, w, ws, k, nr, xq, xs, y, ldy, h)
    if (n == 2) FAR(2);
    else if (n == 3) FAR(3);
    else FAR(4);
#undef FAR
    return 4 * h;
}
/* A walk fn(type, ...) that returns the groups it did, as one out-of-line
 * function per type (fn_t): apart from r8_matmul's other paths, as
 * r8_kdirect's (the decode streams' 2 x 4 instantiations, inlined there,
 * cost Q5_K's one-stream decode and small prefill 10-20 % on Zen 4) */
#define R8_WALK_FN(fn, T, t) \
    static __attribute__((noinline)) int64_t fn##_##t(const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq, \
                                                      size_t xs, const int n, float *y, int64_t ldy) { \
        return fn(T, w, ws, k, nr, xq, xs, n, y, ldy); \
    }
R8_WALK_FN(r8_far, LOOM_TYPE_Q4_0, q4_0)
R8_WALK_FN(r8_far, LOOM_TYPE_Q4_1, q4_1)
R8_WALK_FN(r8_far, LOOM_TYPE_Q8_0, q8_0)
R8_WALK_FN(r8_far, LOOM_TYPE_Q4_K, q4_K)

/* K-quants by pairs up to r8_kdirect_max tokens: passes of XP tokens over
 * the r8 bytes as they are (r8_kdpass), each splitting the quants again
 * (the pair's 16 rows stay in L1/L2 between passes); more tokens go by
 * panels (r8_kpairs), whose unpacking was then worth its stores. Zen 4,
 * one thread, bench_matmul 131072 x 2048 (DRAM), GFLOP/s, panels ->
 * passes: Q4_K n = 5 / 8 / 16 / 24 / 32 174 / 222 / 272 / 289 / 299 -> 237 /
 * 298 / 303 / 300 / 294; Q6_K n = 8 / 16 / 24 190 / 241 / 255 -> 221 / 248 /
 * 246; Q5_K (its fifth bits the dearest to split) n = 8 / 12 199 / 237 ->
 * 231 / 215. Q5_K below r8_pair_n by the 4-token chunks (n = 4 183 against
 * the passes' 158). */
AI int r8_kdirect_max(const int type) { return type == LOOM_TYPE_Q4_K ? 24 : type == LOOM_TYPE_Q6_K ? 16 : XP; }

AI void r8_kdirect(const int type, const int var, LOOM_MATMUL_PARAMS) {
    const int64_t nsbk = k / 256;
    for (int64_t r0 = 0; r0 < nr; r0 += 16) {
        const uint8_t *ga = w + (size_t)r0 * ws, *gb = nr - r0 > 8 ? ga + 8 * ws : ga;
        const __mmask16 rows = (__mmask16)(nr - r0 < 16 ? (1u << (nr - r0)) - 1 : 0xFFFFu);
        const uint8_t *na = nr - r0 > 16 ? ga + 16 * ws : NULL, *nb = na && nr - r0 > 24 ? na + 8 * ws : na;
        for (int64_t t = 0; t < n; t += XP) {
            const int nt = (int)(n - t < XP ? n - t : XP);
#define KPASS(NT) r8_kdpass(type, NT, var, ga, gb, (int)nsbk, xq + t * xs, xs, y + t * ldy + r0, ldy, rows, t ? NULL : na, nb)
            R8_BY_NT(nt, KPASS)
#undef KPASS
        }
    }
}

AI void r8_kpairs(const int type, LOOM_MATMUL_PARAMS) {
    r8_kpanel P;
    const int64_t nsbk = k / 256;
    const size_t bb = loom_r8_block_bytes(type);
    for (int64_t r0 = 0; r0 < nr; r0 += 16) {
        const uint8_t *ga = w + (size_t)r0 * ws, *gb = nr - r0 > 8 ? ga + 8 * ws : ga;
        const __mmask16 rows = (__mmask16)(nr - r0 < 16 ? (1u << (nr - r0)) - 1 : 0xFFFFu);
        for (int64_t sb0 = 0; sb0 < nsbk; sb0 += R8_SBC) {
            const int nsb = (int)(nsbk - sb0 < R8_SBC ? nsbk - sb0 : R8_SBC);
            for (int c = 0; c < nsb; c++) {
                const uint8_t *pa = ga + (size_t)(sb0 + c) * bb, *pb = gb + (size_t)(sb0 + c) * bb;
                if (type == LOOM_TYPE_Q6_K) r8_q6unpack(pa, pb, &P, c);
                else r8_kunpack(type, pa, pb, &P, c);
            }
            /* the next panel's bytes, fetched into L2 during the first pass over this one */
            size_t pfn;
            int64_t left;
            const uint8_t *na = loom_r8_next_panel(w, ws, nr, r0, 16, sb0, R8_SBC, nsbk, bb, &pfn, &left);
            const uint8_t *nb = na && left > 8 ? na + 8 * ws : na;
            for (int64_t t = 0; t < n; t += XP) {
                const uint8_t *x = xq + t * xs + 292 * sb0;
                float *yt = y + t * ldy + r0;
                const int nt = (int)(n - t < XP ? n - t : XP);
#define KPASS(NT) r8_kpass(type, NT, &P, nsb, x, xs, yt, ldy, rows, sb0 == 0, t ? NULL : na, nb, pfn)
                R8_BY_NT(nt, KPASS)
#undef KPASS
            }
        }
    }
}

/* apart from the panel path's function: inlined beside it, the panels
 * lost a third (Zen 4, Q4_K n = 8 220 -> 147 GFLOP/s); Q6_K's 2-4 tokens
 * apart again (compiled beside them, 5-6 tokens lost 3-6 %) */
#define KDIRECT(T, t, var) \
    static __attribute__((noinline)) void r8_kdirect_##t(LOOM_MATMUL_PARAMS) { r8_kdirect(T, var, w, ws, k, nr, xq, xs, n, y, ldy); }
KDIRECT(LOOM_TYPE_Q4_K, q4_K, 0)
KDIRECT(LOOM_TYPE_Q4_K, q4_K_mul, R8_KMUL)
KDIRECT(LOOM_TYPE_Q5_K, q5_K, 0)
KDIRECT(LOOM_TYPE_Q6_K, q6_K, 0)
KDIRECT(LOOM_TYPE_Q6_K, q6_K_few, R8_FEW)
#undef KDIRECT

LOOM_R8_STREAMS_WALK(4)
R8_WALK_FN(r8_streams, LOOM_TYPE_Q4_0, q4_0)
R8_WALK_FN(r8_streams, LOOM_TYPE_Q4_1, q4_1)
R8_WALK_FN(r8_streams, LOOM_TYPE_Q8_0, q8_0)
R8_WALK_FN(r8_streams, LOOM_TYPE_Q4_K, q4_K)
#undef R8_WALK_FN

LOOM_R8_GROUP_PASSES

/* Every group x every token; from r8_pair_n tokens by pairs. */
AI void r8_matmul(const int type, LOOM_MATMUL_PARAMS) {
    const int64_t gmin = loom_r8_gemm_min_n(true, loom_r8_rows_gemm_bits(type));
    if (gmin > 0 && n >= gmin) {
        (type == LOOM_TYPE_Q4_0   ? loom_avx512_r8_gemm_q4_0
         : type == LOOM_TYPE_Q4_1 ? loom_avx512_r8_gemm_q4_1
         : type == LOOM_TYPE_Q8_0 ? loom_avx512_r8_gemm_q8_0
         : type == LOOM_TYPE_Q4_K ? loom_avx512_r8_gemm_q4_K
         : type == LOOM_TYPE_Q5_K ? loom_avx512_r8_gemm_q5_K
         : type == LOOM_TYPE_Q6_K ? loom_avx512_r8_gemm_q6_K
         : type == LOOM_TYPE_Q3_K ? loom_avx512_r8_gemm_q3_K
         : type == LOOM_TYPE_Q2_K ? loom_avx512_r8_gemm_q2_K
         : type == LOOM_TYPE_MXFP4 ? loom_avx512_r8_gemm_mxfp4
                                  : loom_avx512_r8_gemm_iq4_nl)(w, ws, k, nr, xq, xs, n, y, ldy);
        return;
    }
    if (type == LOOM_TYPE_Q8_0) q8_table(xq, xs, k, n);
    /* decode's streams (one token; up to 4 where loom_r8_stream_n says), the groups they leave below;
     * only for the types Intel holds in the layout at this level (LOOM_R8_AVX512_INTEL; AMD decodes
     * in one stream): the others' walks (Q5_K, Q6_K, MXFP4, IQ4_NL, Q3_K, Q2_K) ran only under
     * LOOM_R8 / LOOM_R8_STREAMS, and cost clang's ASan build minutes (Q6_K's four-stream r8_group
     * 106 s of the 247 this file took), the longest step of the test command */
    _Static_assert(LOOM_R8_AVX512_INTEL == (1ull << LOOM_TYPE_Q4_0 | 1ull << LOOM_TYPE_Q4_1 | 1ull << LOOM_TYPE_Q8_0 |
                                            1ull << LOOM_TYPE_Q4_K),
                   "a type Intel holds in the layout needs its walks below");
    const bool walk = LOOM_R8_AVX512_INTEL >> type & 1;
    const int64_t g0 = !walk || n > loom_r8_stream_n((loom_type)type) ? 0
                       : n >= 2 && loom_r8_streams() == 4
                           ? (type == LOOM_TYPE_Q4_0   ? r8_far_q4_0
                              : type == LOOM_TYPE_Q4_1 ? r8_far_q4_1
                              : type == LOOM_TYPE_Q8_0 ? r8_far_q8_0
                                                       : r8_far_q4_K)(w, ws, k, nr, xq, xs, (int)n, y, ldy)
                           : (type == LOOM_TYPE_Q4_0   ? r8_streams_q4_0
                              : type == LOOM_TYPE_Q4_1 ? r8_streams_q4_1
                              : type == LOOM_TYPE_Q8_0 ? r8_streams_q8_0
                                                       : r8_streams_q4_K)(w, ws, k, nr, xq, xs, (int)n, y, ldy);
    w += (size_t)(8 * g0) * ws, nr -= 8 * g0, y += 8 * g0;
    if (nr <= 0) return;
    if (n >= r8_pair_n(type) && type != LOOM_TYPE_Q3_K && type != LOOM_TYPE_Q2_K) {
        if (!loom_is_kquant(type)) r8_pairs(type, w, ws, k, nr, xq, xs, n, y, ldy);
        else if (n > r8_kdirect_max(type)) r8_kpairs(type, w, ws, k, nr, xq, xs, n, y, ldy);
        else if (type == LOOM_TYPE_Q4_K) (loom_r8_kmul() ? r8_kdirect_q4_K_mul : r8_kdirect_q4_K)(w, ws, k, nr, xq, xs, n, y, ldy);
        else if (type == LOOM_TYPE_Q5_K) r8_kdirect_q5_K(w, ws, k, nr, xq, xs, n, y, ldy);
        else if (n <= 4) r8_kdirect_q6_K_few(w, ws, k, nr, xq, xs, n, y, ldy);
        else r8_kdirect_q6_K(w, ws, k, nr, xq, xs, n, y, ldy);
        return;
    }
    /* n < r8_pair_n <= XN + 1: one chunk of every group (Q3_K and Q2_K, without pair passes: every n
     * below the GEMM's, in chunks of XN tokens over a group that stays in L1 / L2). Q5_K's 1 and 4 tokens, and Q4_K's one
     * token on a core decoding alone on its host (loom_host_cores), fetch the next group into L2
     * (loom_prefetch_l2; Q4_0 and Q6_K take none, Q5_K's 2-3 tokens lost by it). Zen 4, DRAM:
     * Q5_K n = 4 159 -> 182-184 GFLOP/s; n = 1, bench_matmul --stream (decode's walk over
     * TinyLlama-shaped layers) Q4_K 24.6-28.9 -> 27.7-29.6, Q5_K 22.3-26.1 -> 24.7-29.0 GB/s,
     * TinyLlama one thread Q4_K_M 43.7-45.0 -> 45.1-47.9 and Q5_K_M 31.9-32.6 -> 39.4-40.7
     * tokens/s; from L3 8 % slower (the prefetches' own work). Two threads, four alternations,
     * share of the bandwidth probed beside each run without -> with: Q5_K_M 91-95 -> 96-98 %;
     * Q4_K_M 90-99 -> 93-100 %, but in the minutes when the host's memory is the limit 98-99
     * -> 93-94 % (54.1-55.2 -> 52.1-53.2 tokens/s in five other alternations), the minutes
     * where llama.cpp comes closest, so Q4_K fetches only alone. */
    r8_passes(type, w, ws, k, nr, xq, xs, n, y, ldy, n >= 4 || (n == 1 && (type == LOOM_TYPE_Q5_K || loom_host_cores() == 1)));
}

/* ============================ instantiation ============================ */

/* One kernel per entry of the weight-type list: its register tiles (decode
 * RMD rows; prefill RM rows x up to RN tokens) and the hand-over to the GEMM. */
#define KERNEL(p, T, s, fn, RMD, RM, RN) KERNEL_(p, T, s, fn, RMD, RM, RN, LOOM_TILE_SET)
#define KERNEL_(p, T, s, fn, RMD, RM, RN, SET)                                                        \
    SET(s, fn, LOOM_TYPE_##T, RMD, RM, RN)                                                            \
    void p##s(LOOM_MATMUL_PARAMS) {                                                                   \
        if (n >= loom_gemm_min_n(LOOM_TYPE_##T)) loom_avx512_gemm_##s(w, ws, k, nr, xq, xs, n, y, ldy); \
        else loom_run_tiles(&s##_tiles, w, ws, k, nr, xq, xs, n, y, ldy);                             \
    }
#define KERNEL_F(p, T, s) KERNEL(p, T, s, tile_f, 4, 4, 4)
#define KERNEL_Q(p, T, s) /* types with a min: 3 tokens (the min terms take registers) */            \
    KERNEL(p, T, s, tile32, 4, 4, LOOM_TYPE_##T == LOOM_TYPE_Q4_1 || LOOM_TYPE_##T == LOOM_TYPE_Q5_1 ? 3 : 4)
#define KERNEL_Q8(p, T, s) KERNEL_Q(p, T, s)
/* K-quants: 2 rows x 4 tokens; Q4_K 4 rows for 2 tokens (Zen 4, n = 2: 113 -> 121 GFLOP/s;
 * Q5_K 98 -> 96 and Q6_K 119 -> 100 would lose) */
#define KERNEL_K(p, T, s)                                                                             \
    KERNEL_(p, T, s, tileK, 4, 2, 4, KSET_##T)
#define KSET_Q4_K LOOM_TILE_SET_DEC2
#define KSET_Q5_K LOOM_TILE_SET
#define KSET_Q6_K LOOM_TILE_SET
#define KSET_Q3_K LOOM_TILE_SET
#define KSET_Q2_K LOOM_TILE_SET
#define FAMILY(p, T, s, f) KERNEL_##f(p, T, s)
LOOM_MATMUL_TYPES(FAMILY, loom_avx512_mm_)

void loom_avx512_r8_q8_0(LOOM_MATMUL_PARAMS) { r8_matmul(LOOM_TYPE_Q8_0, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_q4_0(LOOM_MATMUL_PARAMS) { r8_matmul(LOOM_TYPE_Q4_0, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_q4_1(LOOM_MATMUL_PARAMS) { r8_matmul(LOOM_TYPE_Q4_1, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_q4_K(LOOM_MATMUL_PARAMS) { r8_matmul(LOOM_TYPE_Q4_K, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_q5_K(LOOM_MATMUL_PARAMS) { r8_matmul(LOOM_TYPE_Q5_K, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_q6_K(LOOM_MATMUL_PARAMS) { r8_matmul(LOOM_TYPE_Q6_K, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_q3_K(LOOM_MATMUL_PARAMS) { r8_matmul(LOOM_TYPE_Q3_K, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_q2_K(LOOM_MATMUL_PARAMS) { r8_matmul(LOOM_TYPE_Q2_K, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_mxfp4(LOOM_MATMUL_PARAMS) { r8_matmul(LOOM_TYPE_MXFP4, w, ws, k, nr, xq, xs, n, y, ldy); }
void loom_avx512_r8_iq4_nl(LOOM_MATMUL_PARAMS) { r8_matmul(LOOM_TYPE_IQ4_NL, w, ws, k, nr, xq, xs, n, y, ldy); }

LOOM_NO_UBSAN_END
