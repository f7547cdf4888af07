/*
 * runtime/cpu/quant_ref.c — row dequantization and activation quantization
 * (plain C, used by every ISA level; see kernels.h for the layouts).
 *
 * Built with the baseline x86-64 flags, so no multiply-add is ever fused and
 * dequantization is bit-equal to quant.h's reference and to GGML.
 */
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"
#include "kernels.h"

bool loom_type_can_matmul(loom_type wt) {
    switch (wt) {
    case LOOM_TYPE_F32:
    case LOOM_TYPE_F16:
    case LOOM_TYPE_BF16:
    case LOOM_TYPE_Q4_0:
    case LOOM_TYPE_Q4_1:
    case LOOM_TYPE_Q5_0:
    case LOOM_TYPE_Q5_1:
    case LOOM_TYPE_Q8_0:
    case LOOM_TYPE_Q4_K:
    case LOOM_TYPE_Q5_K:
    case LOOM_TYPE_Q6_K: return true;
    default: return false;
    }
}

void loom_dequant_row(loom_type t, const void *src, float *dst, int64_t k) {
    const uint8_t *s = (const uint8_t *)src;
    switch (t) {
    case LOOM_TYPE_F32: memcpy(dst, s, (size_t)k * sizeof(float)); return;
    case LOOM_TYPE_F16:
        for (int64_t i = 0; i < k; i++) dst[i] = loom_f16_to_f32(loom_rd_u16(s + 2 * i));
        return;
    case LOOM_TYPE_BF16:
        for (int64_t i = 0; i < k; i++) dst[i] = loom_bf16_to_f32(loom_rd_u16(s + 2 * i));
        return;
    default: break;
    }
    const loom_type_traits *tr = loom_type_info((uint32_t)t);
    if (!tr || (!loom_type_can_matmul(t) && t != LOOM_TYPE_Q8_K)) return;
    const int64_t nb = k / tr->block_size;
    for (int64_t b = 0; b < nb; b++)
        loom_dequant_block(t, s + (size_t)b * tr->type_size, dst + b * tr->block_size);
}

/* ---- activations ---- */

typedef enum { ACT_F32, ACT_Q8_32, ACT_Q8_K, ACT_NONE } act_kind;

static act_kind act_kind_of(loom_type wt) {
    switch (wt) {
    case LOOM_TYPE_F32:
    case LOOM_TYPE_F16:
    case LOOM_TYPE_BF16: return ACT_F32;
    case LOOM_TYPE_Q4_0:
    case LOOM_TYPE_Q4_1:
    case LOOM_TYPE_Q5_0:
    case LOOM_TYPE_Q5_1:
    case LOOM_TYPE_Q8_0: return ACT_Q8_32;
    case LOOM_TYPE_Q4_K:
    case LOOM_TYPE_Q5_K:
    case LOOM_TYPE_Q6_K: return ACT_Q8_K;
    default: return ACT_NONE;
    }
}

size_t loom_act_row_bytes(loom_type wt, int64_t k) {
    if (k < 0) return 0;
    switch (act_kind_of(wt)) {
    case ACT_F32: return (size_t)k * sizeof(float);
    case ACT_Q8_32: return k % 32 ? 0 : (size_t)k + 8 * (size_t)(k / 32);
    case ACT_Q8_K: return k % 256 ? 0 : (size_t)(k / 256) * sizeof(loom_block_q8_K);
    default: return 0;
    }
}

/* Round to nearest, ties to even, and clamp to [-127, 127]; NaN gives -127.
 * Adding and subtracting 1.5*2^23 rounds any |v| < 2^22 to an integer in the
 * current (nearest-even) rounding mode. */
static inline int quant_i8(float v) {
    if (!(v >= -127.0f)) v = -127.0f;
    if (v > 127.0f) v = 127.0f;
    return (int)((v + 12582912.0f) - 12582912.0f);
}

/* Scale for a block with largest magnitude amax, and its inverse. */
static inline float block_scale(float amax, float *inv) {
    const float d = amax / 127.0f;
    *inv = d != 0.0f ? 1.0f / d : 0.0f;
    return d;
}

static void act_quantize_q8_32(const float *x, uint8_t *dst, int64_t k) {
    int8_t *qs = (int8_t *)dst;
    uint8_t *dp = dst + k, *sp = dst + k + 4 * (k / 32);
    for (int64_t b = 0; b < k / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float inv;
        const float d = block_scale(amax, &inv);
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = quant_i8(xb[j] * inv);
            qs[32 * b + j] = (int8_t)q;
            sum += q;
        }
        loom_st_f32(dp + 4 * b, d);
        loom_st_f32(sp + 4 * b, d * (float)sum);
    }
}

static void act_quantize_q8_K(const float *x, uint8_t *dst, int64_t k) {
    for (int64_t b = 0; b < k / 256; b++) {
        const float *xb = x + 256 * b;
        loom_block_q8_K blk;
        float amax = 0.0f;
        for (int j = 0; j < 256; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float inv;
        blk.d = block_scale(amax, &inv);
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) {
                int q = quant_i8(xb[16 * g + j] * inv);
                blk.qs[16 * g + j] = (int8_t)q;
                sum += q;
            }
            blk.bsums[g] = (int16_t)sum;
        }
        memcpy(dst + (size_t)b * sizeof blk, &blk, sizeof blk);
    }
}

void loom_act_quantize(loom_type wt, const float *x, void *dst, int64_t k) {
    switch (act_kind_of(wt)) {
    case ACT_F32: memcpy(dst, x, (size_t)k * sizeof(float)); return;
    case ACT_Q8_32: act_quantize_q8_32(x, (uint8_t *)dst, k); return;
    case ACT_Q8_K: act_quantize_q8_K(x, (uint8_t *)dst, k); return;
    default: return;
    }
}

void loom_act_dequantize(loom_type wt, const void *src, float *dst, int64_t k) {
    const uint8_t *s = (const uint8_t *)src;
    switch (act_kind_of(wt)) {
    case ACT_F32: memcpy(dst, s, (size_t)k * sizeof(float)); return;
    case ACT_Q8_32: {
        const int8_t *qs = loom_act32_qs(s);
        const uint8_t *dp = loom_act32_d(s, k);
        for (int64_t j = 0; j < k; j++) dst[j] = loom_ld_f32(dp + 4 * (j / 32)) * (float)qs[j];
        return;
    }
    case ACT_Q8_K:
        for (int64_t b = 0; b < k / 256; b++)
            loom_dequant_block_q8_K(s + (size_t)b * sizeof(loom_block_q8_K), dst + 256 * b);
        return;
    default: return;
    }
}
