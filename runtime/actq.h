/*
 * runtime/actq.h — activation quantization of one block, header-only, for
 * the host (C) and the device (CUDA C++): the per-element math the GPU's
 * fused norm+quantize kernels run, with which they write exactly the bytes
 * of the CPU's loom_act_quantize (runtime/kernels.h has the row layouts;
 * tests/test_actq.c checks these functions against it, byte for byte, on
 * random, tied, huge, tiny, infinite and NaN inputs).
 *
 * For a block of n values (32 for the "q8 32-block" rows, 256 for Q8_K):
 *   amax = max |x| over the block, NaNs skipped (loom_actq_absmax folded
 *          over the elements in any order: max is order-free);
 *   d    = amax / 127, inv = d != 0 ? 1/d : 0       (IEEE division);
 *   q    = round_half_even(clamp(x * inv, -127, 127)), NaN -> -127;
 *   sums of q are integers, so the order in which a warp adds them does not
 *   matter either: a kernel that reduces amax and the sums across threads
 *   writes the same bytes as the sequential loops here.
 * On the device the multiply, divide and reciprocal use the _rn intrinsics
 * (never contracted into an FMA, never approximated, whatever the flags).
 */
#ifndef LOOM_ACTQ_H
#define LOOM_ACTQ_H

#include <math.h>
#include <stdint.h>

#include "runtime/quant.h"

/* max(m, |x|), keeping m when x is NaN (as SSE's maxps(|x|, m) does) */
static inline LOOM_HD float loom_actq_absmax(float m, float x) {
    const float a = fabsf(x);
    return a > m ? a : m;
}

/* the block's scale d = amax / 127 and *inv = 1/d (0 for an all-zero block) */
static inline LOOM_HD float loom_actq_scale(float amax, float *inv) {
#if defined(__CUDA_ARCH__)
    const float d = __fdiv_rn(amax, 127.0f);
    *inv = d != 0.0f ? __frcp_rn(d) : 0.0f;
#else
    const float d = amax / 127.0f;
    *inv = d != 0.0f ? 1.0f / d : 0.0f;
#endif
    return d;
}

/* round_half_even(clamp(x * inv, -127, 127)); NaN -> -127 */
static inline LOOM_HD int loom_actq_round(float x, float inv) {
    float v = LOOM_FMUL(x, inv);
    v = v >= -127.0f ? v : -127.0f;
    v = v <= 127.0f ? v : 127.0f;
#if defined(__CUDA_ARCH__)
    return __float2int_rn(v);
#else
    /* +-1.5*2^23 rounds |v| < 2^22 to an integer, nearest even */
    return (int)LOOM_FSUB(LOOM_FADD(v, 12582912.0f), 12582912.0f);
#endif
}

/* One "q8 32-block" of a row of k: quants to qs[0..32), the scale and the
 * scaled sum to the row's d and s arrays (row layout of kernels.h). */
static inline LOOM_HD void loom_actq_block32(const float *x, int8_t *qs, float *d_out, float *s_out) {
    float amax = 0.0f, inv;
    for (int j = 0; j < 32; j++) amax = loom_actq_absmax(amax, x[j]);
    const float d = loom_actq_scale(amax, &inv);
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        const int q = loom_actq_round(x[j], inv);
        qs[j] = (int8_t)q;
        sum += q;
    }
    *d_out = d;
    *s_out = LOOM_FMUL(d, (float)sum);
}

/* A whole activation row of k (a multiple of 32) for a 32-family weight:
 * qs[k] | d[k/32] | s[k/32], any alignment (bytes stored one by one). */
static inline LOOM_HD void loom_actq_row32(const float *x, uint8_t *dst, int64_t k) {
    const int64_t nb = k / 32;
    for (int64_t b = 0; b < nb; b++) {
        float d, s;
        loom_actq_block32(x + 32 * b, (int8_t *)dst + 32 * b, &d, &s);
        const uint32_t ud = loom_f32_to_bits(d), us = loom_f32_to_bits(s);
        for (int i = 0; i < 4; i++) {
            dst[k + 4 * b + i] = (uint8_t)(ud >> (8 * i));
            dst[k + 4 * nb + 4 * b + i] = (uint8_t)(us >> (8 * i));
        }
    }
}

/* One Q8_K block (256 values) into *out. */
static inline LOOM_HD void loom_actq_block_q8K(const float *x, loom_block_q8_K *out) {
    float amax = 0.0f, inv;
    for (int j = 0; j < 256; j++) amax = loom_actq_absmax(amax, x[j]);
    out->d = loom_actq_scale(amax, &inv);
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int j = 16 * g; j < 16 * g + 16; j++) {
            const int q = loom_actq_round(x[j], inv);
            out->qs[j] = (int8_t)q;
            sum += q;
        }
        out->bsums[g] = (int16_t)sum;
    }
}

#endif
