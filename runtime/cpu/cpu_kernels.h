/*
 * runtime/cpu/cpu_kernels.h — what the CPU kernel files share (not part of
 * the public API): the one list of weight types that have matmul kernels,
 * from which every level declares, defines and tabulates its kernels; the
 * per-level kernel names the tables in dispatch.c are built from; the
 * activation-row accessors (the layouts of runtime/kernels.h); block facts;
 * unaligned loads; the register-tile driver of the SIMD levels.
 *
 * A level `lv` provides, for its table (dispatch.c):
 *   loom_<lv>_mm_<type>   matmul per weight type (matmul_<lv>.c, gemm_<lv>.c)
 *   loom_<lv>_attn_unit   attention work unit, loom_<lv>_f16_row (and, optional,
 *                         loom_<lv>_exp2)                           (attn_<lv>.c)
 *   loom_<lv>_rmsnorm, loom_<lv>_swiglu                             (rowops_<lv>.c)
 *   loom_<lv>_layernorm, loom_<lv>_gelu                             (rowops_<lv>.c)
 *   loom_<lv>_lora_down, loom_<lv>_lora_up                          (rowops_<lv>.c)
 */
#ifndef LOOM_CPU_KERNELS_H
#define LOOM_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "runtime/kernels.h"
#include "runtime/quant.h"
#include "runtime/types.h"

/* The SIMD matmul files' kernels are always-inline templates (LOOM_AI),
 * fully unrolled (LOOM_UNROLL) and instantiated per type and tile shape.
 * UBSan's checks multiply their size and made clang's sanitizer build take
 * many minutes per file, so those files put their functions between
 * LOOM_NO_UBSAN_BEGIN and _END: they keep AddressSanitizer (every vector
 * load is still bounds-checked) and drop only the UB checks (there is no
 * signed arithmetic on data there). */
#define LOOM_AI static inline __attribute__((always_inline))
#define LOOM_UNROLL _Pragma("GCC unroll 16")
#if defined(__clang__)
#define LOOM_NO_UBSAN_BEGIN \
    _Pragma("clang attribute push(__attribute__((no_sanitize(\"undefined\"))), apply_to = function)")
#define LOOM_NO_UBSAN_END _Pragma("clang attribute pop")
#else
#define LOOM_NO_UBSAN_BEGIN
#define LOOM_NO_UBSAN_END
#endif

/* Every weight type with matmul kernels, once: X(prefix, TYPE, suffix,
 * family), family F (float weights), Q8 (Q8_0 and IQ4_NL: signed quants), Q (4/5-bit 32-element
 * blocks), K (K-quants). A level defines its kernel for each entry (by
 * family) and its table from the same list. */
#define LOOM_MATMUL_TYPES(X, p)                                                                       \
    X(p, F32, f32, F) X(p, F16, f16, F) X(p, BF16, bf16, F) X(p, Q4_0, q4_0, Q) X(p, Q4_1, q4_1, Q)   \
    X(p, Q5_0, q5_0, Q) X(p, Q5_1, q5_1, Q) X(p, Q8_0, q8_0, Q8) X(p, Q4_K, q4_K, K)                  \
    X(p, Q5_K, q5_K, K) X(p, Q6_K, q6_K, K) X(p, MXFP4, mxfp4, Q) X(p, IQ4_NL, iq4_nl, Q8) X(p, Q3_K, q3_K, K)          \
    X(p, Q2_K, q2_K, K)

/* the parameters of a loom_matmul_fn, named as every kernel names them */
#define LOOM_MATMUL_PARAMS                                                                            \
    const uint8_t *w, size_t ws, int64_t k, int64_t nr, const uint8_t *xq, size_t xs, int64_t n, float *y, \
        int64_t ldy
#define LOOM_MATMUL_DECLARE(p, T, s, f) loom_matmul_fn p##s;
#define LOOM_MATMUL_ENTRY(p, T, s, f) [LOOM_TYPE_##T] = p##s,
/* designated initializer of a table's matmul entries: prefix##suffix per type */
#define LOOM_MATMUL_TABLE(p) {LOOM_MATMUL_TYPES(LOOM_MATMUL_ENTRY, p)}

/* The weight types with an r8 layout (runtime/kernels.h), X(prefix, TYPE,
 * suffix): every level has loom_<lv>_r8_<type>. */
#define LOOM_R8_TYPES(X, p)                                                                           \
    X(p, Q4_0, q4_0) X(p, Q4_1, q4_1) X(p, Q8_0, q8_0) X(p, Q4_K, q4_K) X(p, Q5_K, q5_K) X(p, Q6_K, q6_K)    \
        X(p, MXFP4, mxfp4) X(p, IQ4_NL, iq4_nl) X(p, Q3_K, q3_K) X(p, Q2_K, q2_K)
#define LOOM_R8_DECLARE(p, T, s) loom_matmul_fn p##s;
#define LOOM_R8_ENTRY(p, T, s) [LOOM_TYPE_##T] = p##s,
#define LOOM_R8_BIT(p, T, s) | (1ull << LOOM_TYPE_##T)
/* bytes of one block of a group's 8 rows (kernels.h): 32 elements (Q4_0,
 * Q8_0), 256 (Q4_K, Q6_K) */
#define LOOM_R8_Q4_0 144
#define LOOM_R8_Q4_1 160
#define LOOM_R8_Q8_0 272
#define LOOM_R8_MXFP4 136
#define LOOM_R8_IQ4_NL 144
#define LOOM_R8_Q4_K 1184
#define LOOM_R8_Q5_K 1440
#define LOOM_R8_Q6_K 1680
#define LOOM_R8_Q3_K 912
#define LOOM_R8_Q2_K 672
/* Q4_K/Q5_K: where the rows' quant chunks start (Q5_K: its qh chunks before them) */
#define LOOM_R8_K45_QS(type) ((type) == LOOM_TYPE_Q5_K ? 416 : 160)
/* Q5_K whole (the bytes the levels below AVX-512 read: loom_r8_q5_whole):
 * where chunk i (0..4) of group g (elements 4g..4g+3 of every sub-block)
 * sits, and the 5-bit quant of sub-block s from a lane's five bytes c[i];
 * loom_r8_q5_set makes them from the eight (kernels.h) */
#define LOOM_R8_Q5_Q(g, i) (160 + 256 * (i) + 32 * (g))
static inline int loom_r8_q5_get(const uint8_t c[5], int s) {
    if (s < 5) return c[s] & 0x1F;
    if (s < 7) return c[s - 5] >> 5 | (c[s - 2] >> 5 & 3) << 3;
    return c[2] >> 5 | (c[3] >> 7) << 3 | (c[4] >> 7) << 4;
}
static inline void loom_r8_q5_set(uint8_t c[5], const int q[8]) {
    c[0] = (uint8_t)(q[0] | (q[5] & 7) << 5);
    c[1] = (uint8_t)(q[1] | (q[6] & 7) << 5);
    c[2] = (uint8_t)(q[2] | (q[7] & 7) << 5);
    c[3] = (uint8_t)(q[3] | (q[5] >> 3) << 5 | (q[7] >> 3 & 1) << 7);
    c[4] = (uint8_t)(q[4] | (q[6] >> 3) << 5 | (q[7] >> 4) << 7);
}
/* Whether the active level's r8 kernels read Q5_K whole (AVX2, scalar) or
 * as the file's nibbles and fifth bits (AVX-512, whose VNNI kernel streams
 * those faster): loom_repack_r8 writes what the active level reads. */
bool loom_r8_q5_whole(void);
/* Q6_K: where the rows' three 32-byte quant chunks i (0..2) of group g
 * (elements 4g..4g+3 of each quarter) of half h sit (kernels.h) */
#define LOOM_R8_Q6_Q(h, g, i) (144 + 768 * (h) + 96 * (g) + 32 * (i))
/* Q3_K: where the rows' 32-byte hmask chunk of group g sits (bit 4h + j of
 * a lane's byte i: the third bit of element 128h + 32j + 4g + i) and the qs
 * chunk of half h, group g (bits 2j..2j+1: that element's low two), as the
 * file holds them (kernels.h) */
#define LOOM_R8_Q3_H(g) (144 + 32 * (g))
#define LOOM_R8_Q3_L(h, g) (400 + 256 * (h) + 32 * (g))
/* Q2_K: where the rows' qs chunk of half h, group g sits (as Q3_K's) */
#define LOOM_R8_Q2_L(h, g) (160 + 256 * (h) + 32 * (g))
/* A GGUF K super-block (Q3_K, Q4_K, Q5_K, Q6_K) -> its 256 unsigned quants
 * in element order (the scalar kernels, the r8 repack) */
static inline void loom_k_quants(loom_type wt, const uint8_t *b, int q[256]) {
    if (wt == LOOM_TYPE_Q2_K) {
        for (int e = 0; e < 256; e++) q[e] = (b[16 + 32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;
        return;
    }
    if (wt == LOOM_TYPE_Q3_K) {
        for (int n = 0; n < 2; n++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++)
                    q[128 * n + 32 * j + l] = ((b[32 + 32 * n + l] >> (2 * j)) & 3) | ((b[l] >> (4 * n + j)) & 1) << 2;
        return;
    }
    if (wt == LOOM_TYPE_Q6_K) {
        for (int h = 0; h < 2; h++) {
            const uint8_t *L = b + 64 * h, *H = b + 128 + 32 * h;
            int *o = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                o[l] = (L[l] & 0xF) | (((H[l] >> 0) & 3) << 4);
                o[l + 32] = (L[l + 32] & 0xF) | (((H[l] >> 2) & 3) << 4);
                o[l + 64] = (L[l] >> 4) | (((H[l] >> 4) & 3) << 4);
                o[l + 96] = (L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4);
            }
        }
        return;
    }
    const uint8_t *qs = b + (wt == LOOM_TYPE_Q4_K ? 16 : 48);
    const uint8_t *qh = b + 16; /* Q5_K only */
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = qs[32 * c + l] & 0xF;
            q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
            if (wt == LOOM_TYPE_Q5_K) {
                q[64 * c + l] |= ((qh[l] >> (2 * c)) & 1) << 4;
                q[64 * c + 32 + l] |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
        }
    }
}

static inline __attribute__((always_inline)) size_t loom_r8_block_bytes(int type) {
    switch (type) {
    case LOOM_TYPE_Q4_0: return LOOM_R8_Q4_0;
    case LOOM_TYPE_Q4_1: return LOOM_R8_Q4_1;
    case LOOM_TYPE_Q8_0: return LOOM_R8_Q8_0;
    case LOOM_TYPE_MXFP4: return LOOM_R8_MXFP4;
    case LOOM_TYPE_IQ4_NL: return LOOM_R8_IQ4_NL;
    case LOOM_TYPE_Q4_K: return LOOM_R8_Q4_K;
    case LOOM_TYPE_Q5_K: return LOOM_R8_Q5_K;
    case LOOM_TYPE_Q6_K: return LOOM_R8_Q6_K;
    case LOOM_TYPE_Q3_K: return LOOM_R8_Q3_K;
    case LOOM_TYPE_Q2_K: return LOOM_R8_Q2_K;
    default: return 0;
    }
}

/* Where row r's bytes of a GGUF block sit in its r8 block (Q4_0, Q4_1,
 * Q8_0, MXFP4, IQ4_NL, Q2_K; Q6_K's d and scales; Q3_K's d and quants; Q4_K
 * / Q5_K's and Q6_K's quants, Q4_K / Q5_K's and Q3_K's scales are
 * rearranged, see repack.c): calls f(arg, offset in the r8 block, offset
 * in the GGUF block, length) for each piece. */
#define LOOM_R8_PIECES(type, r, f, arg)                                                              \
    do {                                                                                             \
        if ((type) == LOOM_TYPE_Q6_K) { /* its quants: repack.c */                                  \
            f(arg, 2 * (r), 208, 2); /* d */                                                         \
            for (int g_ = 0; g_ < 16; g_++) f(arg, 16 + 8 * g_ + (r), 192 + g_, 1); /* scales */     \
        } else if ((type) == LOOM_TYPE_Q2_K) {                                                       \
            f(arg, 2 * (r), 80, 2);      /* d */                                                     \
            f(arg, 16 + 2 * (r), 82, 2); /* dmin */                                                  \
            for (int g_ = 0; g_ < 16; g_++) f(arg, 32 + 8 * g_ + (r), g_, 1); /* scales | mins << 4 */ \
            for (int g_ = 0; g_ < 8; g_++) {                                                         \
                f(arg, LOOM_R8_Q2_L(0, g_) + 4 * (r), 16 + 4 * g_, 4); /* qs */                      \
                f(arg, LOOM_R8_Q2_L(1, g_) + 4 * (r), 48 + 4 * g_, 4);                               \
            }                                                                                        \
        } else if ((type) == LOOM_TYPE_Q3_K) { /* its scales unpacked: repack.c */                   \
            f(arg, 2 * (r), 108, 2); /* d */                                                         \
            for (int g_ = 0; g_ < 8; g_++) {                                                         \
                f(arg, LOOM_R8_Q3_H(g_) + 4 * (r), 4 * g_, 4); /* hmask */                           \
                f(arg, LOOM_R8_Q3_L(0, g_) + 4 * (r), 32 + 4 * g_, 4); /* qs */                      \
                f(arg, LOOM_R8_Q3_L(1, g_) + 4 * (r), 64 + 4 * g_, 4);                               \
            }                                                                                        \
        } else if ((type) == LOOM_TYPE_MXFP4) {                                                      \
            f(arg, (r), 0, 1); /* e */                                                               \
            for (int j_ = 0; j_ < 4; j_++) f(arg, 8 + 32 * j_ + 4 * (r), 1 + 4 * j_, 4);             \
        } else if ((type) == LOOM_TYPE_Q4_1) {                                                       \
            f(arg, 2 * (r), 0, 2);       /* d */                                                     \
            f(arg, 16 + 2 * (r), 2, 2);  /* m */                                                     \
            for (int j_ = 0; j_ < 4; j_++) f(arg, 32 + 32 * j_ + 4 * (r), 4 + 4 * j_, 4);            \
        } else {                                                                                     \
            f(arg, 2 * (r), 0, 2); /* d */                                                           \
            for (int j_ = 0; j_ < ((type) == LOOM_TYPE_Q8_0 ? 8 : 4); j_++)                          \
                f(arg, 16 + 32 * j_ + 4 * (r), 2 + 4 * j_, 4);                                       \
        }                                                                                            \
    } while (0)

typedef struct {
    const uint8_t *r8;
    uint8_t *gguf;
} loom_r8_copy_args;
static inline void loom_r8_copy_out(loom_r8_copy_args *a, int o8, int og, int n) { memcpy(a->gguf + og, a->r8 + o8, (size_t)n); }

/* Row r (< 8) of block b of the r8 group at grp, as the GGUF block it came
 * from (Q4_0, Q4_1, Q8_0, MXFP4, IQ4_NL). */
static inline void loom_r8_gguf_block(int type, const uint8_t *grp, int64_t b, int r, uint8_t *out) {
    loom_r8_copy_args a = {grp + (size_t)b * loom_r8_block_bytes(type), out};
    LOOM_R8_PIECES(type, r, loom_r8_copy_out, &a);
}

/* Row r (< 8) of the r8 K super-block at p (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)
 * unpacked: the quants in element order (unsigned, as loom_k_quants), d,
 * and Q6_K's or Q3_K's 16 (signed) scales, Q2_K's 16 scales, 16 mins and
 * dmin, or Q4_K/Q5_K's dmin, 8 scales and 8 mins (q5_whole: which Q5_K
 * bytes, loom_r8_q5_whole). */
typedef struct {
    int q[256];
    uint16_t d, dmin; /* F16 */
    int8_t sc6[16];
    uint8_t sc[8], m[8];
    uint8_t sc2[16], m2[16]; /* Q2_K's scales and mins */
} loom_r8_ksb;
static inline void loom_r8_k_unpack(int wt, bool q5_whole, const uint8_t *p, int r, loom_r8_ksb *o) {
    o->d = loom_rd_u16(p + 2 * r);
    o->dmin = 0; /* (Q6_K, Q3_K: none) */
    if (wt == LOOM_TYPE_Q2_K) {
        o->dmin = loom_rd_u16(p + 16 + 2 * r);
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 8; g++)
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++)
                        o->q[128 * h + 32 * j + 4 * g + i] = p[LOOM_R8_Q2_L(h, g) + 4 * r + i] >> (2 * j) & 3;
        for (int G = 0; G < 16; G++) o->sc2[G] = p[32 + 8 * G + r] & 0xF, o->m2[G] = p[32 + 8 * G + r] >> 4;
        return;
    }
    if (wt == LOOM_TYPE_Q3_K) {
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 8; g++)
                for (int i = 0; i < 4; i++) {
                    const uint8_t lo = p[LOOM_R8_Q3_L(h, g) + 4 * r + i], hi = p[LOOM_R8_Q3_H(g) + 4 * r + i];
                    for (int j = 0; j < 4; j++)
                        o->q[128 * h + 32 * j + 4 * g + i] = (lo >> (2 * j) & 3) | (hi >> (4 * h + j) & 1) << 2;
                }
        for (int G = 0; G < 16; G++) o->sc6[G] = (int8_t)p[16 + 8 * G + r];
        return;
    }
    if (wt == LOOM_TYPE_Q6_K) {
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 8; g++)
                for (int i = 0; i < 4; i++) { /* elements e + 32j from chunk j's low bits, e + 96 from their top two */
                    const int e = 128 * h + 4 * g + i;
                    o->q[e + 96] = 0;
                    for (int j = 0; j < 3; j++) {
                        const uint8_t c = p[LOOM_R8_Q6_Q(h, g, j) + 4 * r + i];
                        o->q[e + 32 * j] = c & 0x3F;
                        o->q[e + 96] |= (c >> 6) << (2 * j);
                    }
                }
        for (int G = 0; G < 16; G++) o->sc6[G] = (int8_t)p[16 + 8 * G + r];
        return;
    }
    o->dmin = loom_rd_u16(p + 16 + 2 * r);
    for (int s = 0; s < 8; s++) o->sc[s] = p[32 + 8 * s + r], o->m[s] = p[96 + 8 * s + r];
    if (wt == LOOM_TYPE_Q5_K && q5_whole) {
        for (int l = 0; l < 32; l++) { /* element 32s + l */
            uint8_t c[5];
            for (int i = 0; i < 5; i++) c[i] = p[LOOM_R8_Q5_Q(l / 4, i) + 4 * r + l % 4];
            for (int s = 0; s < 8; s++) o->q[32 * s + l] = loom_r8_q5_get(c, s);
        }
        return;
    }
    for (int j = 0; j < 32; j++) /* nibbles (and Q5_K's fifth bits, AVX-512's bytes) */
        for (int i = 0; i < 4; i++) {
            const uint8_t v = p[LOOM_R8_K45_QS(wt) + 32 * j + 4 * r + i];
            const int e = 64 * (j / 8) + 4 * (j % 8) + i, l = e % 32; /* sub-blocks 2(j/8) and 2(j/8)+1 */
            o->q[e] = v & 0xF;
            o->q[e + 32] = v >> 4;
            if (wt == LOOM_TYPE_Q5_K) { /* bit s of the row's qh[l]: element 32s + l */
                const uint8_t h = p[160 + 32 * (l / 4) + 4 * r + l % 4];
                o->q[e] |= ((h >> (2 * (j / 8))) & 1) << 4;
                o->q[e + 32] |= ((h >> (2 * (j / 8) + 1)) & 1) << 4;
            }
        }
}

#define LOOM_LEVEL_DECLARE(lv)                                                                        \
    LOOM_MATMUL_TYPES(LOOM_MATMUL_DECLARE, loom_##lv##_mm_)                                           \
    LOOM_R8_TYPES(LOOM_R8_DECLARE, loom_##lv##_r8_)                                                   \
    loom_attn_unit_fn loom_##lv##_attn_unit;                                                           \
    loom_f16_row_fn loom_##lv##_f16_row;                                                               \
    loom_rmsnorm_fn loom_##lv##_rmsnorm;                                                               \
    loom_swiglu_fn loom_##lv##_swiglu;                                                                 \
    loom_act_q8_fn loom_##lv##_act_q8_32, loom_##lv##_act_q8_K;                                        \
    loom_layernorm_fn loom_##lv##_layernorm;                                                           \
    loom_gelu_fn loom_##lv##_gelu;                                                                     \
    loom_lora_down_fn loom_##lv##_lora_down;                                                           \
    loom_lora_up_fn loom_##lv##_lora_up;
LOOM_LEVEL_DECLARE(scalar)
LOOM_LEVEL_DECLARE(avx2)
LOOM_LEVEL_DECLARE(avx512)
loom_exp2_fn loom_avx2_exp2, loom_avx512_exp2; /* the optional entry: the levels with a vector exp2 */

/* The AVX-512 prefill GEMM (gemm_avx512.c), loom_avx512_gemm_<type>; the
 * avx512 kernels hand calls with n >= loom_gemm_min_n(type) to it. It rounds
 * differently from the register tiles, so on AVX-512 a row's result changes
 * (by float rounding) when the number of tokens crosses the threshold: the
 * batch invariance of kernels.h does not hold there yet (AVX2 has it:
 * gemm_avx2.c). Crossovers measured with bench_matmul on Sapphire Rapids
 * (one thread, GFLOP/s, register tiles vs GEMM, weights in the L3 cache;
 * from DRAM the tiles keep their lead a little longer):
 *   Q4_K  n = 6: 91 vs 70, 8: 118 vs 91, 10: 111 vs 122, 12: 119 vs 160
 *   Q6_K  n = 6: 125 vs 89, 8: 138 vs 116
 *   Q8_0  n = 4: 92 vs 55, 6: 85 vs 77, 8: 109 vs 107
 *   Q4_1  n = 4: 62 vs 57, 6: 69 vs 86
 * On a later Xeon (family 6 model 167 as a KVM guest reports it; 32768 x
 * 2048 rows, from DRAM) the crossover is near 7 for every type, so the
 * 32-element families hand over too early and the K-quants too late there:
 *   Q4_0  n = 5: 131 vs 108, 6: 140 vs 128, 7: 149 vs 149, 8: 150 vs 168
 *   Q4_1  n = 5: 124 vs 99, 6: 129 vs 115, 7: 118 vs 137, 8: 125 vs 155
 *   Q4_K  n = 5: 107 vs 93, 7: 119 vs 131, 8: 122 vs 150, 9: 113 vs 120
 *   Q5_K  n = 7: 107 vs 123, 8: 111 vs 142; Q6_K 8: 124 vs 123, 10: 118 vs 109
 *   (the GEMM's 8-token steps: 9 and 10 tokens run below 8 and 12)
 * Not changed yet: the two Intel machines disagree, so the threshold wants
 * choosing per CPU (a start-up calibration), which it does not have. (On
 * Intel Q4_0, Q4_1 and Q4_K are now held in the r8 layout, whose kernels
 * take their small batches: these thresholds reach them only with
 * LOOM_R8=0.) */
LOOM_MATMUL_TYPES(LOOM_MATMUL_DECLARE, loom_avx512_gemm_)
/* The same GEMM over Q4_0 / Q4_1 in the r8 layout (the r8 kernels' bits)
 * and over the K-quants in it (the rows' GEMM's bits); the r8 kernels hand
 * it calls with n >= loom_r8_gemm_min_n(avx512, kquant) (dispatch.c: by CPU
 * and level, AVX2's own gemm_avx2.c: g_gemm_r8; 0: never). */
loom_matmul_fn loom_avx512_r8_gemm_q4_0, loom_avx512_r8_gemm_q4_1, loom_avx512_r8_gemm_q8_0, loom_avx512_r8_gemm_mxfp4;
loom_matmul_fn loom_avx512_r8_gemm_q4_K, loom_avx512_r8_gemm_q5_K, loom_avx512_r8_gemm_q6_K, loom_avx512_r8_gemm_q3_K,
    loom_avx512_r8_gemm_q2_K, loom_avx512_r8_gemm_iq4_nl;
int64_t loom_r8_gemm_min_n(bool avx512, bool kquant);
static inline int64_t loom_gemm_min_n(loom_type t) {
    switch (t) {
    case LOOM_TYPE_F32:
    case LOOM_TYPE_F16:
    case LOOM_TYPE_BF16: return 20;
    case LOOM_TYPE_Q2_K:
    case LOOM_TYPE_Q3_K:
    case LOOM_TYPE_Q4_K:
    case LOOM_TYPE_Q5_K:
    case LOOM_TYPE_Q6_K: return 10;
    case LOOM_TYPE_Q8_0: return 8;
    default: return 5;
    }
}

/* ---- "q8 32-block" activation rows: qs[k] | d[k/32] | s[k/32] ---- */

static inline const int8_t *loom_act32_qs(const uint8_t *row) { return (const int8_t *)row; }
static inline const uint8_t *loom_act32_d(const uint8_t *row, int64_t k) { return row + k; }
static inline const uint8_t *loom_act32_s(const uint8_t *row, int64_t k) {
    return row + k + 4 * (k / 32);
}

/* Block facts the always-inline SIMD kernels need as constants (a switch
 * on a constant type folds; loom_type_info's table does not). */
static inline __attribute__((always_inline)) int loom_is_kquant(int type) {
    return type == LOOM_TYPE_Q2_K || type == LOOM_TYPE_Q3_K || type == LOOM_TYPE_Q4_K || type == LOOM_TYPE_Q5_K ||
           type == LOOM_TYPE_Q6_K;
}
/* The r8 types whose AVX-512 GEMM over the layout gives the rows' GEMM's
 * bits (its sums added into y per k-chunk, as gemm() does) rather than the
 * r8 kernels' (the AVX2 level's): the K-quants, and IQ4_NL and Q8_0, whose passes sum
 * signed (the AVX2 level's sums, VPDPBUSD's grid values + 128 less 128 x
 * the activations' sum) where the GEMM's offset is a float step. They take
 * the GEMM from loom_r8_gemm_min_n(avx512, true) tokens. */
static inline bool loom_r8_rows_gemm_bits(int type) {
    return loom_is_kquant(type) || type == LOOM_TYPE_IQ4_NL || type == LOOM_TYPE_Q8_0;
}
/* K-quants of 16-element groups with integer scales: Q6_K and Q3_K with
 * signed scales and an offset, x = d·sc_g·(q − c) (Q6_K: c = 32, scales
 * bytes 192.., d at 208; Q3_K: c = 4, scales packed at 96..
 * (loom_q3k_scales), d at 108), and Q2_K with 4-bit scales and mins, x =
 * d·sc_g·q − dmin·m_g (c = 0, d at 80, dmin at 82); the SIMD kernels share
 * their paths, apart from the quants' decoding and Q2_K's mins. Q4_K and
 * Q5_K have 32-element sub-blocks with mins. */
static inline __attribute__((always_inline)) int loom_k_g16(int type) {
    return type == LOOM_TYPE_Q6_K || type == LOOM_TYPE_Q3_K || type == LOOM_TYPE_Q2_K;
}
/* the K-quants with mins (a dmin term) */
static inline __attribute__((always_inline)) int loom_k_mins(int type) {
    return type == LOOM_TYPE_Q4_K || type == LOOM_TYPE_Q5_K || type == LOOM_TYPE_Q2_K;
}
static inline __attribute__((always_inline)) int loom_k_g16_offset(int type) {
    return type == LOOM_TYPE_Q3_K ? 4 : type == LOOM_TYPE_Q2_K ? 0 : 32;
}
static inline __attribute__((always_inline)) int loom_k_g16_d(int type) {
    return type == LOOM_TYPE_Q3_K ? 108 : type == LOOM_TYPE_Q2_K ? 80 : 208;
}
/* their 16 scales as int8 */
static inline __attribute__((always_inline)) void loom_k_g16_scales(int type, const uint8_t *blk, int8_t sc[16]) {
    if (type == LOOM_TYPE_Q3_K) loom_q3k_scales(blk + 96, sc);
    else if (type == LOOM_TYPE_Q2_K)
        for (int g = 0; g < 16; g++) sc[g] = (int8_t)(blk[g] & 0xF);
    else memcpy(sc, blk + 192, 16);
}
static inline void loom_q2k_mins(const uint8_t *blk, int8_t m[16]) {
    for (int g = 0; g < 16; g++) m[g] = (int8_t)(blk[g] >> 4);
}
static inline __attribute__((always_inline)) size_t loom_qblock_bytes(int type) {
    switch (type) {
    case LOOM_TYPE_Q4_0: return 18;
    case LOOM_TYPE_Q4_1: return 20;
    case LOOM_TYPE_Q5_0: return 22;
    case LOOM_TYPE_Q5_1: return 24;
    case LOOM_TYPE_Q8_0: return 34;
    case LOOM_TYPE_Q4_K: return 144;
    case LOOM_TYPE_Q5_K: return 176;
    case LOOM_TYPE_Q6_K: return 210;
    case LOOM_TYPE_MXFP4: return 17;
    case LOOM_TYPE_IQ4_NL: return 18;
    case LOOM_TYPE_Q3_K: return 110;
    case LOOM_TYPE_Q2_K: return 84;
    default: return 0;
    }
}

/* unaligned little-endian loads from weight and activation bytes */
static inline float loom_ld_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}
static inline uint32_t loom_ld_u32(const uint8_t *p) {
    uint32_t u;
    memcpy(&u, p, sizeof u);
    return u;
}
static inline uint16_t loom_ld_u16(const uint8_t *p) {
    uint16_t u;
    memcpy(&u, p, sizeof u);
    return u;
}

static inline void loom_st_f32(uint8_t *p, float f) { memcpy(p, &f, sizeof f); }

/* ---- register-tile driver shared by the SIMD files ---- */

/* rm rows x nt tokens: y[t*ldy + r] = dot(row r at w + r*ws, token t at x + t*xs);
 * while reading a weight block at address b, the tile prefetches the block
 * at b + pf (pf = 0: no software prefetch) */
typedef void (*loom_tile_fn)(const uint8_t *w, size_t ws, int64_t k, const uint8_t *x, size_t xs,
                             float *y, int64_t ldy, size_t pf);

/* The tiles of one kernel: decode tiles (1 and rmd rows, 1 token) and
 * prefill tiles (1 and rm rows, nt = 1..rn tokens; rn <= 4). */
typedef struct {
    int rmd, rm, rn;
    loom_tile_fn dec[2];  /* [0]: 1 row, [1]: rmd rows; one token */
    loom_tile_fn one[5];  /* [nt]: 1 row x nt tokens */
    loom_tile_fn full[5]; /* [nt]: rm rows x nt tokens */
    loom_tile_fn dec2;    /* rmd rows x 2 tokens for n = 2 (two sequences, PP micro-batches of 2), or
                             NULL: n = 2 takes full[2] */
} loom_tile_set;

/* How the row tiles walk a thread's rows, so that the memory system sees a
 * few long sequential streams rather than many short ones.
 *
 * A tile reads its rows side by side. Walking rows r, r+1, .., r+rm-1 and
 * then the next rm (what loom did first) makes rm streams that each end
 * after one row (a few KiB); the hardware prefetchers lose them at every
 * row, so the tiles fetched the next tile's rows in software (on Sapphire
 * Rapids, 288 MiB of Q4_K weights, one thread: 7.3 -> 12.2 GB/s). On AMD
 * EPYC Zen 4 that still left decode at 10-15 GB/s for every weight type
 * (bench_matmul 65536 x 2048, one thread, from DRAM; 6-7 GB/s without the
 * software prefetch), two such streams were as slow, and one row at a time
 * (one sequential stream, as llama.cpp's vec_dot reads) reached 17-23. So a
 * tile reads rows i, i+h, .., i+(rm-1)h of the thread's nr rows (h = nr /
 * rm): rm streams, each through h consecutive rows, which the prefetchers
 * follow, and the tile keeps its rm rows of arithmetic. Same benchmark, Zen
 * 4, AVX-512: Q4_K 10.6 -> 20.1 GB/s, Q4_0 11.9 -> 18.9, Q6_K 10.3 -> 27.8,
 * Q8_0 13.1 -> 34.1, F16 18.9 -> 27.7 (the 4-bit types are then bound by
 * arithmetic, as they are from the L3 cache). */

/* Bytes ahead of the block being read that the tiles prefetch in software,
 * for rows ws bytes apart: ws (the next row of the same stream) or 0 (the
 * hardware prefetchers alone). For decode (n = 1) by CPU (dispatch.c); with
 * more tokens per tile always ws (Zen 4, Q4_K n = 4, bench_matmul as above:
 * 115 GFLOP/s without, 125 with). */
size_t loom_decode_pf(size_t ws);
/* Decode over r8 weights (one token): how many streams the groups are read
 * in (1, 2 or 4: groups i, i+h, .. side by side, h = groups / streams;
 * dispatch.c, loom_r8_walk_set), and the bytes ahead of each that are
 * fetched in software when there are several (dispatch.c's measurements). */
int loom_r8_streams(void);
/* up to how many tokens of weights of type wt go by those streams (dispatch.c) */
int loom_r8_stream_n(loom_type wt);
/* The types Intel holds in the r8 layout at the AVX-512 level (dispatch.c
 * has why), a bit per loom_type: the only ones decoded there in several
 * streams, so the only ones with the AVX-512 multi-stream walks
 * (matmul_avx512.c: r8_matmul). */
#define LOOM_R8_AVX512_INTEL (1ull << LOOM_TYPE_Q4_0 | 1ull << LOOM_TYPE_Q4_1 | 1ull << LOOM_TYPE_Q8_0 | 1ull << LOOM_TYPE_Q4_K)
/* Whether the AVX-512 Q4_K direct pair passes (up to 24 tokens) scale by
 * VPMULLD (matmul_avx512.c: R8_KMUL; AMD) rather than by a VPDPWSSD pair
 * (Intel) */
bool loom_r8_kmul(void);
#define LOOM_R8_STREAM_PF 1024
static inline size_t loom_tiles_pf(size_t ws, int64_t n) { return n == 1 ? loom_decode_pf(ws) : ws; }

/* fetches [p + pf, p + pf + bytes) into the cache; pf = 0: nothing */
#define LOOM_PREFETCH_AHEAD(p, pf, bytes)                                                  \
    do {                                                                                       \
        if ((size_t)(pf) != 0) {                                                               \
            _Pragma("GCC unroll 8") for (size_t o_ = 0; o_ < (size_t)(bytes); o_ += 64)        \
                __builtin_prefetch((const char *)(p) + (pf) + o_, 0, 3);                       \
        }                                                                                      \
    } while (0)

/* The r8 prefill kernels: the next group's (pair's, panel's) bytes [from,
 * to) of p into L2 (p = NULL: nothing), spread over the first token pass
 * of the current one. From DRAM the passes otherwise wait on each block's
 * first load, which the hardware prefetchers do not hide at that pace (Zen
 * 4, one thread, bench_matmul 32768 x 2048 r8 at n = 16, AVX-512: Q4_0 /
 * Q4_1 / Q4_K / Q5_K / Q6_K 254 / 238 / 207 / 201 / 175 -> 316 / 312 / 255
 * / 238 / 218 GFLOP/s, n = 128 +1-5 %, from L2 within 3 %; the AVX2 level
 * Q4_0 / Q8_0 / Q4_K / Q6_K 152 / 100 / 162 / 134 -> 168 / 118 / 187 / 169).
 * Decode (one pass) goes without: it streams. Also the AVX-512 GEMM's next
 * panel of rows (gemm_avx512.c). */
static inline void loom_prefetch_l2(const uint8_t *p, size_t from, size_t to) {
    for (size_t o = (from + 63) & ~(size_t)63; p && o < to; o += 64) __builtin_prefetch(p + o, 0, 2);
}

/* token rows whose activations stay in L2 while a row tile walks them */
#define LOOM_ACT_CHUNK_BYTES (256 * 1024)

/* Tokens per such chunk for activation rows xs bytes apart: a multiple of
 * the tile's rn tokens, at least rn. */
static inline int64_t loom_act_chunk_tokens(size_t xs, int rn) {
    const int64_t c = (int64_t)(LOOM_ACT_CHUNK_BYTES / (xs ? xs : 1)) / rn * rn;
    return c < rn ? rn : c;
}

/* Covers nr rows x n tokens with the tiles, walking token chunks that fit in
 * L2 (n = 1: one chunk); in each, the rows in streams as above: tiles of rows
 * i, i+h, .. (h = nr / tile rows; rmd rows for n = 1, else rm) x token tiles
 * of rn (leftover tokens in one narrower tile), leftover rows one by one, so
 * each weight tile is read from memory once per chunk. */
static inline void loom_run_tiles(const loom_tile_set *ts, const uint8_t *w, size_t ws, int64_t k,
                                  int64_t nr, const uint8_t *xq, size_t xs, int64_t n, float *y,
                                  int64_t ldy) {
    const bool d2 = n == 2 && ts->dec2;
    const int rm = n == 1 || d2 ? ts->rmd : ts->rm, rn = n == 1 ? 1 : ts->rn;
    const size_t pf = loom_tiles_pf(ws, n);
    const int64_t h = nr / rm, chunk = loom_act_chunk_tokens(xs, rn);
    for (int64_t t0 = 0; t0 < n; t0 += chunk) {
        const int64_t t1 = t0 + chunk < n ? t0 + chunk : n;
        for (int64_t i = 0; i < nr - h * (rm - 1); i++) { /* i < h: rows i, i+h, ..; then single rows */
            const int64_t r = i < h ? i : i + h * (rm - 1);
            for (int64_t t = t0; t < t1; t += rn) {
                const int nt = (int)(t1 - t < rn ? t1 - t : rn);
                const uint8_t *x = xq + t * xs;
                float *yt = y + t * ldy;
                if (i >= h) {
                    (n == 1 ? ts->dec[0] : ts->one[nt])(w + r * ws, ws, k, x, xs, yt + r, ldy, pf);
                    continue;
                }
                float tmp[4 * 8]; /* (token, row) of one tile: rn <= 4, rm <= 8 */
                (n == 1 ? ts->dec[1] : d2 ? ts->dec2 : ts->full[nt])(w + r * ws, ws * (size_t)h, k, x, xs, tmp, rm, pf);
                for (int j = 0; j < nt; j++)
                    for (int q = 0; q < rm; q++) yt[j * ldy + r + q * h] = tmp[j * rm + q];
            }
        }
    }
}

/* The tile functions of one kernel and their loom_tile_set `name##_tiles`,
 * from a tile template fn(type, RM, RN, w, ws, k, x, xs, y, ldy, pf): decode
 * tiles 1 x 1 and RMD x 1, prefill tiles 1 x nt and RM x nt for nt = 1..4,
 * of which loom_run_tiles uses nt <= RN. */
#define LOOM_TILE(name, fn, type, RM, RN)                                                             \
    static void name(const uint8_t *w, size_t ws, int64_t k, const uint8_t *x, size_t xs, float *y,   \
                     int64_t ldy, size_t pf) {                                                        \
        fn(type, RM, RN, w, ws, k, x, xs, y, ldy, pf);                                                \
    }
#define LOOM_TILE_SET(name, fn, type, RMD, RM, RN) LOOM_TILE_SET_(name, fn, type, RMD, RM, RN, NULL)
/* ... with an rmd x 2 tile for n = 2 (where rmd > rm) */
#define LOOM_TILE_SET_DEC2(name, fn, type, RMD, RM, RN)                                               \
    LOOM_TILE(name##_t2, fn, type, RMD, 2)                                                            \
    LOOM_TILE_SET_(name, fn, type, RMD, RM, RN, name##_t2)
#define LOOM_TILE_SET_(name, fn, type, RMD, RM, RN, DEC2)                                             \
    LOOM_TILE(name##_d1, fn, type, 1, 1)                                                              \
    LOOM_TILE(name##_dm, fn, type, RMD, 1)                                                            \
    LOOM_TILE(name##_o2, fn, type, 1, 2)                                                              \
    LOOM_TILE(name##_o3, fn, type, 1, 3)                                                              \
    LOOM_TILE(name##_o4, fn, type, 1, 4)                                                              \
    LOOM_TILE(name##_f1, fn, type, RM, 1)                                                             \
    LOOM_TILE(name##_f2, fn, type, RM, 2)                                                             \
    LOOM_TILE(name##_f3, fn, type, RM, 3)                                                             \
    LOOM_TILE(name##_f4, fn, type, RM, 4)                                                             \
    static const loom_tile_set name##_tiles = {RMD, RM, RN, {name##_d1, name##_dm},                   \
                                               {NULL, name##_d1, name##_o2, name##_o3, name##_o4},    \
                                               {NULL, name##_f1, name##_f2, name##_f3, name##_f4}, DEC2};

#endif
