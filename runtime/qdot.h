/*
 * runtime/qdot.h — the integer dot products of quantized weights with
 * quantized activations as the GPU computes them (dp4a: four int8 products
 * added to an int32), header-only, for the host (C, dp4a emulated) and the
 * device (CUDA C++, the __dp4a instruction). The CUDA matrix-vector kernels
 * (runtime/cuda/mmvq.cu) call exactly these functions; tests/test_qdot.c runs
 * them on the CPU and checks that, block by block, they give the integers of
 * the CPU kernels (runtime/cpu/matmul_scalar.c) — the row sums built from
 * them in the scalar kernel's order equal its output bit for bit.
 *
 * A weight block is cut into slices, each one lane's work:
 *   32-element blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): 4 slices of 8 elements;
 *   256-element blocks (Q4_K, Q5_K, Q6_K): 16 slices of 16 elements.
 * loom_qdot_<type>(w, a, i) is slice i's integer: for the 32-families the
 * plain sum of q·a (q with its offset removed for the symmetric types), for
 * the K-quants already multiplied by the sub-block scales. Integer sums do
 * not depend on the order they are added in, so the lanes of a block add
 * their slices in any order (a warp shuffle) and the block's integer is the
 * CPU's. The block's float contribution is then one expression,
 * loom_qdot_f32_<family>, evaluated with the CPU's operations in the CPU's
 * order (never fused into an FMA: LOOM_FMUL/LOOM_FADD), so each block's float
 * is the CPU's too; only the order in which a row adds its blocks differs
 * (a warp tree on the GPU, a loop on the CPU): rounding, ~1e-7 relative.
 *
 * Loads: weight blocks are 2-byte aligned (their sizes are even, rows start
 * at even offsets), so 32-bit weight words are read as two 16-bit halves;
 * activation quants are 4-byte aligned (kernels.h's layouts), read as words.
 */
#ifndef LOOM_QDOT_H
#define LOOM_QDOT_H

#include <stdint.h>

#include "runtime/quant.h"

enum { LOOM_QDOT_SLICES32 = 4, LOOM_QDOT_SLICESK = 16 };

/* c + sum of the four signed-byte products of a and b (CUDA's __dp4a) */
static inline LOOM_HD int loom_dp4a(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
    return __dp4a(a, b, c);
#else
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    for (int i = 0; i < 4; i++) {
        int x = (int)((ua >> (8 * i)) & 0xFFu), y = (int)((ub >> (8 * i)) & 0xFFu);
        x -= (x & 0x80) << 1;
        y -= (y & 0x80) << 1;
        c += x * y;
    }
    return c;
#endif
}

/* a little-endian 32-bit word at a 2-byte aligned weight address */
static inline LOOM_HD uint32_t loom_qd_w32(const uint8_t *p) {
#if defined(__CUDA_ARCH__)
    const uint16_t *h = (const uint16_t *)p;
    return (uint32_t)h[0] | ((uint32_t)h[1] << 16);
#else
    return loom_rd_u32(p);
#endif
}

/* four activation quants at a 4-byte aligned address, as a dp4a operand */
static inline LOOM_HD int loom_qd_a32(const int8_t *p) {
#if defined(__CUDA_ARCH__)
    return *(const int *)p;
#else
    return (int)loom_rd_u32((const uint8_t *)p);
#endif
}

/* bytes b (each < 0x80) minus c (each <= b's range), per byte, as signed:
 * (b | 0x80) - c never borrows across bytes; the xor restores the sign. */
static inline LOOM_HD int loom_qd_sub8(uint32_t b, uint32_t c) {
    return (int)((((b | 0x80808080u) - c)) ^ 0x80808080u);
}

/* bit 4 of each byte from the 4 low bits of h (Q5 high bits) */
static inline LOOM_HD uint32_t loom_qd_spread4(uint32_t h) {
    return ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25);
}

#define LOOM_QD_NIB 0x0F0F0F0Fu

/* ---- 32-element families: slice i covers elements 4i..4i+3 and 16+4i..16+4i+3
 * (one weight word of nibbles) or, for Q8_0, 8i..8i+7 ---- */

static inline LOOM_HD int loom_qdot_q4_0(const uint8_t *w, const int8_t *a, int i) {
    const uint32_t v = loom_qd_w32(w + 2 + 4 * i);
    const int lo = loom_qd_sub8(v & LOOM_QD_NIB, 0x08080808u), hi = loom_qd_sub8((v >> 4) & LOOM_QD_NIB, 0x08080808u);
    return loom_dp4a(lo, loom_qd_a32(a + 4 * i), loom_dp4a(hi, loom_qd_a32(a + 16 + 4 * i), 0));
}

static inline LOOM_HD int loom_qdot_q4_1(const uint8_t *w, const int8_t *a, int i) {
    const uint32_t v = loom_qd_w32(w + 4 + 4 * i);
    const int lo = (int)(v & LOOM_QD_NIB), hi = (int)((v >> 4) & LOOM_QD_NIB);
    return loom_dp4a(lo, loom_qd_a32(a + 4 * i), loom_dp4a(hi, loom_qd_a32(a + 16 + 4 * i), 0));
}

static inline LOOM_HD int loom_qdot_q5_0(const uint8_t *w, const int8_t *a, int i) {
    const uint32_t qh = loom_qd_w32(w + 2), v = loom_qd_w32(w + 6 + 4 * i);
    const uint32_t lo = (v & LOOM_QD_NIB) | loom_qd_spread4(qh >> (4 * i));
    const uint32_t hi = ((v >> 4) & LOOM_QD_NIB) | loom_qd_spread4(qh >> (16 + 4 * i));
    return loom_dp4a(loom_qd_sub8(lo, 0x10101010u), loom_qd_a32(a + 4 * i),
                     loom_dp4a(loom_qd_sub8(hi, 0x10101010u), loom_qd_a32(a + 16 + 4 * i), 0));
}

static inline LOOM_HD int loom_qdot_q5_1(const uint8_t *w, const int8_t *a, int i) {
    const uint32_t qh = loom_qd_w32(w + 4), v = loom_qd_w32(w + 8 + 4 * i);
    const uint32_t lo = (v & LOOM_QD_NIB) | loom_qd_spread4(qh >> (4 * i));
    const uint32_t hi = ((v >> 4) & LOOM_QD_NIB) | loom_qd_spread4(qh >> (16 + 4 * i));
    return loom_dp4a((int)lo, loom_qd_a32(a + 4 * i), loom_dp4a((int)hi, loom_qd_a32(a + 16 + 4 * i), 0));
}

static inline LOOM_HD int loom_qdot_q8_0(const uint8_t *w, const int8_t *a, int i) {
    return loom_dp4a((int)loom_qd_w32(w + 2 + 8 * i), loom_qd_a32(a + 8 * i),
                     loom_dp4a((int)loom_qd_w32(w + 6 + 8 * i), loom_qd_a32(a + 8 * i + 4), 0));
}

/* The block's float: dw·d·isum + m·s (m = 0 for Q4_0, Q5_0, Q8_0), with the
 * weight's fp16 scale dw (and min m), the activation block's d and s. */
static inline LOOM_HD float loom_qdot_f32_32(float dw, float m, float d, float s, int isum) {
    return LOOM_FADD(LOOM_FMUL(LOOM_FMUL(dw, d), (float)isum), LOOM_FMUL(m, s));
}

/* the weight block's scale and min (0 for the symmetric types) */
static inline LOOM_HD void loom_qdot_scale32(loom_type t, const uint8_t *w, float *dw, float *m) {
    *dw = loom_f16_to_f32(loom_rd_u16(w));
    *m = (t == LOOM_TYPE_Q4_1 || t == LOOM_TYPE_Q5_1) ? loom_f16_to_f32(loom_rd_u16(w + 2)) : 0.0f;
}

/* ---- K-quants: activation is a Q8_K block (qs at its offset 4) ---- */

/* Q4_K slice i: c = i/4, j = i%4: quant bytes qs[32c+8j .. +8): low nibbles
 * are elements 64c+8j.. (sub-block 2c), high ones 64c+32+8j.. (2c+1). */
static inline LOOM_HD int loom_qdot_q4_K(const uint8_t *w, const int8_t *a, int i) {
    const int c = i >> 2, j = i & 3;
    const uint8_t *q = w + 16 + 32 * c + 8 * j;
    const uint32_t v0 = loom_qd_w32(q), v1 = loom_qd_w32(q + 4);
    const int8_t *al = a + 64 * c + 8 * j, *ah = al + 32;
    const int lo = loom_dp4a((int)(v0 & LOOM_QD_NIB), loom_qd_a32(al), loom_dp4a((int)(v1 & LOOM_QD_NIB), loom_qd_a32(al + 4), 0));
    const int hi = loom_dp4a((int)((v0 >> 4) & LOOM_QD_NIB), loom_qd_a32(ah),
                             loom_dp4a((int)((v1 >> 4) & LOOM_QD_NIB), loom_qd_a32(ah + 4), 0));
    uint8_t sc0, m0, sc1, m1;
    loom_q4k_scale_min(2 * c, w + 4, &sc0, &m0);
    loom_q4k_scale_min(2 * c + 1, w + 4, &sc1, &m1);
    return sc0 * lo + sc1 * hi;
}

/* Q5_K slice i: as Q4_K, bit 4 of element 64c+l from qh[l] >> 2c, of
 * element 64c+32+l from qh[l] >> (2c+1). */
static inline LOOM_HD int loom_qdot_q5_K(const uint8_t *w, const int8_t *a, int i) {
    const int c = i >> 2, j = i & 3;
    const uint8_t *q = w + 48 + 32 * c + 8 * j, *h = w + 16 + 8 * j;
    const uint32_t v0 = loom_qd_w32(q), v1 = loom_qd_w32(q + 4), h0 = loom_qd_w32(h), h1 = loom_qd_w32(h + 4);
    const uint32_t l0 = (v0 & LOOM_QD_NIB) | (((h0 >> (2 * c)) & 0x01010101u) << 4);
    const uint32_t l1 = (v1 & LOOM_QD_NIB) | (((h1 >> (2 * c)) & 0x01010101u) << 4);
    const uint32_t u0 = ((v0 >> 4) & LOOM_QD_NIB) | (((h0 >> (2 * c + 1)) & 0x01010101u) << 4);
    const uint32_t u1 = ((v1 >> 4) & LOOM_QD_NIB) | (((h1 >> (2 * c + 1)) & 0x01010101u) << 4);
    const int8_t *al = a + 64 * c + 8 * j, *ah = al + 32;
    const int lo = loom_dp4a((int)l0, loom_qd_a32(al), loom_dp4a((int)l1, loom_qd_a32(al + 4), 0));
    const int hi = loom_dp4a((int)u0, loom_qd_a32(ah), loom_dp4a((int)u1, loom_qd_a32(ah + 4), 0));
    uint8_t sc0, m0, sc1, m1;
    loom_q4k_scale_min(2 * c, w + 4, &sc0, &m0);
    loom_q4k_scale_min(2 * c + 1, w + 4, &sc1, &m1);
    return sc0 * lo + sc1 * hi;
}

/* Q4_K/Q5_K: sum over sub-blocks s of m_s · (bsums[2s] + bsums[2s+1]) (the
 * min term; once per block). */
static inline LOOM_HD int loom_qdot_kmins(const uint8_t *w, const int16_t *bsums) {
    int msum = 0;
    for (int s = 0; s < 8; s++) {
        uint8_t sc, m;
        loom_q4k_scale_min(s, w + 4, &sc, &m);
        msum += m * (bsums[2 * s] + bsums[2 * s + 1]);
    }
    return msum;
}

/* Q6_K slice i: half h = i/8, j = i%8: l = 4j..4j+3 of that half, i.e. the
 * elements 128h + {0, 32, 64, 96} + l, from ql[64h + l], ql[64h + 32 + l],
 * qh[32h + l]; group scales sc[8h + j/4 + {0, 2, 4, 6}]. */
static inline LOOM_HD int loom_qdot_q6_K(const uint8_t *w, const int8_t *a, int i) {
    const int h = i >> 3, j = i & 7;
    const uint8_t *L = w + 64 * h + 4 * j, *H = w + 128 + 32 * h + 4 * j;
    const int8_t *sc = (const int8_t *)(w + 192) + 8 * h + (j >> 2);
    const uint32_t L0 = loom_qd_w32(L), L1 = loom_qd_w32(L + 32), Hv = loom_qd_w32(H);
    const uint32_t q0 = (L0 & LOOM_QD_NIB) | ((Hv & 0x03030303u) << 4);
    const uint32_t q1 = (L1 & LOOM_QD_NIB) | (((Hv >> 2) & 0x03030303u) << 4);
    const uint32_t q2 = ((L0 >> 4) & LOOM_QD_NIB) | (((Hv >> 4) & 0x03030303u) << 4);
    const uint32_t q3 = ((L1 >> 4) & LOOM_QD_NIB) | (((Hv >> 6) & 0x03030303u) << 4);
    const int8_t *ab = a + 128 * h + 4 * j;
    return sc[0] * loom_dp4a(loom_qd_sub8(q0, 0x20202020u), loom_qd_a32(ab), 0) +
           sc[2] * loom_dp4a(loom_qd_sub8(q1, 0x20202020u), loom_qd_a32(ab + 32), 0) +
           sc[4] * loom_dp4a(loom_qd_sub8(q2, 0x20202020u), loom_qd_a32(ab + 64), 0) +
           sc[6] * loom_dp4a(loom_qd_sub8(q3, 0x20202020u), loom_qd_a32(ab + 96), 0);
}

/* K-quant block floats, with the activation block's scale ad:
 *   Q4_K/Q5_K  d·ad·isum − dmin·ad·msum;   Q6_K  d·ad·isum */
static inline LOOM_HD float loom_qdot_f32_k45(const uint8_t *w, float ad, int isum, int msum) {
    const float d = loom_f16_to_f32(loom_rd_u16(w)), dmin = loom_f16_to_f32(loom_rd_u16(w + 2));
    return LOOM_FSUB(LOOM_FMUL(LOOM_FMUL(d, ad), (float)isum), LOOM_FMUL(LOOM_FMUL(dmin, ad), (float)msum));
}
static inline LOOM_HD float loom_qdot_f32_q6K(const uint8_t *w, float ad, int isum) {
    return LOOM_FMUL(LOOM_FMUL(loom_f16_to_f32(loom_rd_u16(w + 208)), ad), (float)isum);
}

/* Slice i's integer for any quantized type (the device kernels are
 * instantiated per type, so this switch folds away). */
static inline LOOM_HD int loom_qdot_slice(loom_type t, const uint8_t *w, const int8_t *a, int i) {
    switch (t) {
    case LOOM_TYPE_Q4_0: return loom_qdot_q4_0(w, a, i);
    case LOOM_TYPE_Q4_1: return loom_qdot_q4_1(w, a, i);
    case LOOM_TYPE_Q5_0: return loom_qdot_q5_0(w, a, i);
    case LOOM_TYPE_Q5_1: return loom_qdot_q5_1(w, a, i);
    case LOOM_TYPE_Q8_0: return loom_qdot_q8_0(w, a, i);
    case LOOM_TYPE_Q4_K: return loom_qdot_q4_K(w, a, i);
    case LOOM_TYPE_Q5_K: return loom_qdot_q5_K(w, a, i);
    case LOOM_TYPE_Q6_K: return loom_qdot_q6_K(w, a, i);
    default: return 0;
    }
}

#endif
