/*
 * runtime/attn_split.h — the flash-decoding split and merge of attention,
 * header-only, for the host (C) and the device (CUDA C++); and the work unit
 * a device's attention kernel takes.
 *
 * Every query's key range [0, len) is cut into segments at fixed positions:
 * multiples of seg_blocks KV blocks, seg_blocks depending only on the
 * cache's configuration (block size, context). Each segment is computed
 * with its own online softmax (m: running max in base 2, l: sum of
 * 2^(s - m), acc: sum of 2^(s - m)·V), then the segments are merged in
 * order:  m = max(m_a, m_b),  l = 2^(m_a - m)·l_a + 2^(m_b - m)·l_b,  acc
 * likewise;  out = acc · (1/l). runtime/attention.c (the CPU) and the
 * device kernels (runtime/cuda/attention.cu, runtime/cpu/device_host.c) use
 * these functions, so they cut and merge identically; tests/test_attn_split.c
 * checks that a split computed with the CPU's unit kernel and merged here
 * equals loom_attention_compute bit for bit. On the device the products and
 * sums are the _rn intrinsics (never fused); exp2f is CUDA's (within 2 ulp),
 * so a GPU merge matches the CPU's to float rounding, not to the bit.
 */
#ifndef LOOM_ATTN_SPLIT_H
#define LOOM_ATTN_SPLIT_H

#include <math.h>
#include <stdint.h>

#include "runtime/quant.h"

enum {
    LOOM_ATTN_SEG_MIN = 512,      /* key positions per segment at least */
    LOOM_ATTN_SEG_MAX_PARTS = 16, /* segments of a full context at most */
    LOOM_ATTN_UNIT_NQ = 16,       /* queries per unit (= kernels.h's LOOM_ATTN_NQ_MAX) */
};

/* Blocks per segment: SEG_MIN positions at least, a full context (max_ctx)
 * in SEG_MAX_PARTS segments at most. */
static inline LOOM_HD int loom_attn_seg_blocks(int block_tokens, int max_ctx) {
    const int by_min = (LOOM_ATTN_SEG_MIN + block_tokens - 1) / block_tokens;
    const int nb = (max_ctx + block_tokens - 1) / block_tokens;
    const int by_ctx = (nb + LOOM_ATTN_SEG_MAX_PARTS - 1) / LOOM_ATTN_SEG_MAX_PARTS;
    return by_min > by_ctx ? by_min : by_ctx;
}

/* Segments of a key range [0, len). */
static inline LOOM_HD int loom_attn_n_segs(int len, int block_tokens, int seg_blocks) {
    const int nb = (len + block_tokens - 1) / block_tokens;
    return (nb + seg_blocks - 1) / seg_blocks;
}

/* Key positions [*p0, *p1) of segment s of a range [0, len). */
static inline LOOM_HD void loom_attn_seg_range(int s, int len, int block_tokens, int seg_blocks, int *p0, int *p1) {
    const int b0 = s * seg_blocks, b1 = b0 + seg_blocks;
    *p0 = b0 * block_tokens;
    *p1 = b1 * block_tokens < len ? b1 * block_tokens : len;
}

/* The merge of a later segment b into a, for one query: 0 when b saw
 * nothing (keep a), 1 when a saw nothing (take b), 2 to mix: *m = max and
 * the weights *wa = 2^(m_a - m), *wb = 2^(m_b - m). */
static inline LOOM_HD int loom_attn_merge_weights(float ma, float mb, float *m, float *wa, float *wb) {
    if (mb == -INFINITY) return 0;
    if (ma == -INFINITY) return 1;
    *m = ma > mb ? ma : mb;
    *wa = exp2f(ma - *m);
    *wb = exp2f(mb - *m);
    return 2;
}

/* wa·x + wb·y, unfused */
static inline LOOM_HD float loom_attn_mix(float wa, float x, float wb, float y) {
    return LOOM_FADD(LOOM_FMUL(wa, x), LOOM_FMUL(wb, y));
}

/* Folds one query's partial (mb, lb, accb[hd]) into (*ma, *la, acca[hd]). */
static inline LOOM_HD void loom_attn_merge1(float *ma, float *la, float *acca, float mb, float lb, const float *accb,
                                            int hd) {
    float m = 0.0f, wa = 0.0f, wb = 0.0f;
    const int how = loom_attn_merge_weights(*ma, mb, &m, &wa, &wb);
    if (how == 0) return;
    if (how == 1) {
        *ma = mb, *la = lb;
        for (int d = 0; d < hd; d++) acca[d] = accb[d];
        return;
    }
    *ma = m;
    *la = loom_attn_mix(wa, *la, wb, lb);
    for (int d = 0; d < hd; d++) acca[d] = loom_attn_mix(wa, acca[d], wb, accb[d]);
}

/* out[d] = acc[d] · (1/l) */
static inline LOOM_HD void loom_attn_finish(const float *acc, float l, float *out, int hd) {
#if defined(__CUDA_ARCH__)
    const float inv = __frcp_rn(l);
#else
    const float inv = 1.0f / l;
#endif
    for (int d = 0; d < hd; d++) out[d] = LOOM_FMUL(acc[d], inv);
}

/* A device attention unit: up to LOOM_ATTN_UNIT_NQ queries of one sequence
 * that share one KV head (the rows × query heads of a GQA group), planned on
 * the host for a batch (runtime/attn_plan.h) and uploaded with it. */
typedef struct {
    int32_t table;                      /* offset of the sequence's block table in the batch's table array */
    int32_t kvh;                        /* KV head */
    int32_t nq;                         /* queries, 1..LOOM_ATTN_UNIT_NQ */
    int32_t len;                        /* key positions [0, len): the last query's position + 1 */
    int32_t q_off[LOOM_ATTN_UNIT_NQ];   /* float offset of each query's row in q and out */
    int32_t lim[LOOM_ATTN_UNIT_NQ];     /* last position each query sees */
} loom_attn_dunit;

/* Floats of one unit-segment partial result: m (16), l (16), acc (16, hd). */
#define LOOM_ATTN_PART_FLOATS(hd) (2 * LOOM_ATTN_UNIT_NQ + LOOM_ATTN_UNIT_NQ * (size_t)(hd))

#endif
