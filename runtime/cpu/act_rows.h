/*
 * runtime/cpu/act_rows.h — the row loops of activation quantization
 * (kernels.h: loom_act_q8_fn), written once for every level. A level's file
 * defines, before including this header,
 *   static float act_amax(const float *x, int n);            max |x[j]|, j < n
 *                                                           (n a multiple of 16), NaNs skipped
 *   static int act_quant16(const float *x, float inv, int8_t *q);
 *                                                           q[0..16) = round_half_even(clamp(
 *                                                           x * inv, -127, 127)), NaN -> -127;
 *                                                           returns their sum
 * and then LOOM_ACT_ROWS(level) defines loom_<level>_act_q8_32 and
 * loom_<level>_act_q8_K: the per-block scale of runtime/actq.h (the GPU's),
 * the row layouts of kernels.h. Every level writes the same bytes
 * (tests/test_actq.c).
 */
#ifndef LOOM_CPU_ACT_ROWS_H
#define LOOM_CPU_ACT_ROWS_H

#include <string.h>

#include "runtime/actq.h"
#include "runtime/cpu/cpu_kernels.h"

#if defined(__SSE2__)
#include <emmintrin.h>
/* the sum of 16 signed bytes: PSADBW of the bytes + 128 against zero, less 16 · 128 */
static inline int act_sum16(__m128i b) {
    const __m128i s = _mm_sad_epu8(_mm_xor_si128(b, _mm_set1_epi8((char)0x80)), _mm_setzero_si128());
    return _mm_cvtsi128_si32(s) + _mm_extract_epi16(s, 4) - 16 * 128;
}
#endif

#define LOOM_ACT_ROWS(lv)                                                                                   \
    void loom_##lv##_act_q8_32(const float *x, uint8_t *dst, int64_t k, int64_t b0, int64_t b1) {           \
        int8_t *qs = (int8_t *)dst;                                                                         \
        uint8_t *dp = dst + k, *sp = dst + k + 4 * (k / 32);                                                \
        for (int64_t b = b0; b < b1; b++) {                                                                 \
            const float *xb = x + 32 * b;                                                                   \
            float inv;                                                                                      \
            const float d = loom_actq_scale(act_amax(xb, 32), &inv);                                        \
            const int sum = act_quant16(xb, inv, qs + 32 * b) + act_quant16(xb + 16, inv, qs + 32 * b + 16); \
            loom_st_f32(dp + 4 * b, d);                                                                     \
            loom_st_f32(sp + 4 * b, d * (float)sum);                                                        \
        }                                                                                                   \
    }                                                                                                       \
    void loom_##lv##_act_q8_K(const float *x, uint8_t *dst, int64_t k, int64_t b0, int64_t b1) {            \
        (void)k;                                                                                            \
        for (int64_t b = b0; b < b1; b++) {                                                                 \
            const float *xb = x + 256 * b;                                                                  \
            loom_block_q8_K blk;                                                                            \
            float inv;                                                                                      \
            blk.d = loom_actq_scale(act_amax(xb, 256), &inv);                                               \
            for (int g = 0; g < 16; g++) blk.bsums[g] = (int16_t)act_quant16(xb + 16 * g, inv, blk.qs + 16 * g); \
            memcpy(dst + (size_t)b * sizeof blk, &blk, sizeof blk);                                         \
        }                                                                                                   \
    }

#endif
