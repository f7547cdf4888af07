/*
 * runtime/attention.h — attention over the paged KV cache (kv_cache.h), for
 * a batch of rows from many sequences, with run-time ISA dispatch
 * (loom_isa_get(): AVX-512, AVX2+F16C, scalar; F16 or F32 keys/values).
 *
 * Borrows the cache, the batch's arrays and the caller's scratch; allocates
 * nothing and cannot fail (shapes are the caller's contract, as in
 * kernels.h).
 *
 * How compute works (the FlashAttention and flash-decoding schemes, on CPU
 * registers):
 *   - Work unit = (sequence, KV head, chunk of that sequence's rows): all
 *     query heads of the GQA group and up to LOOM_ATTN_NQ_MAX (row, head)
 *     queries share every K/V tile the unit loads. Rows are grouped by
 *     sequence and sorted by position, so a chunk's rows are close together
 *     and the causal bound wastes at most a tile.
 *   - Keys are stored transposed in a block (kv_cache.h), so the scores of a
 *     tile of 16 positions are head_dim broadcast-FMAs into one 16-wide
 *     register per query; the softmax is online (running max m, running sum
 *     l, unnormalised output acc rescaled when m grows), in base 2 with the
 *     queries pre-multiplied by log2(e)/sqrt(head_dim): no score buffer the
 *     size of the context. Each query sees the positions <= its row's
 *     position (rows of a sequence may be any positions, in any order).
 *   - Every query's key range is cut into segments at fixed positions (a
 *     multiple of the block size: 512 positions at least, a full context in
 *     16 segments at most; it depends on the cache's configuration only).
 *     Each segment is computed with its own online softmax, and the
 *     segments are merged in order (flash-decoding): m = max(m_a, m_b),
 *     l = 2^(m_a-m) l_a + 2^(m_b-m) l_b, likewise acc; out = acc · (1/l).
 *   - Units are handed to threads dynamically, most expensive first. When
 *     there are fewer units than 2 x threads (decode of few sequences), each
 *     segment is a job of its own and the merge follows; otherwise a job
 *     computes and merges all segments of its unit. The same segments are
 *     merged in the same order either way, so a query's result does not
 *     depend on which other rows share the batch or its unit, nor on the
 *     thread count (bit for bit; tests/test_attention.c checks it). As in
 *     GPU flash attention, a query multiplies the values of positions a unit
 *     mate sees but it does not by a weight of 0: an infinite value there
 *     (an F16 overflow) would make it NaN.
 *
 * Speed (tests/bench_attention.c; SmolLM2's 9 query / 3 KV heads of 64, F16
 * cache, blocks of 16; one layer on one Sapphire Rapids core, AVX-512):
 * decode at 4096 positions 156 us with the cache in L2/L3, 324 us from DRAM
 * (bandwidth-bound; 67 and 161 us on 2 threads); prefill of 512 rows
 * 3.1 ms, ~60% of the core's FMA peak (1.7 ms on 2 threads). The scalar
 * level is ~50x slower than AVX-512 at prefill.
 *
 * Accuracy: float arithmetic throughout; exp2 is a degree-6 polynomial on
 * [-1/2, 1/2] with exact scaling by 2^n, relative error <= 1.2e-7 (about one
 * float ulp; the scalar level uses libm's exp2f). Results differ between
 * levels and from a double-precision reference by float rounding
 * (tests/test_attention.c bounds it).
 */
#ifndef LOOM_ATTENTION_H
#define LOOM_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/kv_cache.h"
#include "runtime/threadpool.h"
#include "runtime/types.h"

/* One layer's attention over a batch of rows (rows of many sequences). */
typedef struct {
    loom_kv_cache *kv;
    int layer;            /* layer index within the cache (local) */
    int n;                /* rows */
    const int32_t *pos;   /* (n) position of each row */
    const int32_t *seq;   /* (n) KV slot of each row */
    int n_q, n_kv, head_dim;
    const int *q_to_kv;   /* (n_q) KV head (0..n_kv) of each query head */
    const float *q;       /* (n, n_q·head_dim) rotated queries */
    const float *k, *v;   /* (n, n_kv·head_dim) rotated keys, values */
    float *out;           /* (n, n_q·head_dim) attention output */
} loom_attention_args;

/* Writes every row's keys and values into its cache block (blocks must be
 * reserved for every row's position). */
void loom_attention_store(const loom_attention_args *a);

/* out = softmax(q·Kᵀ/√d, causal: positions ≤ the row's) · V for every row
 * and query head, over the cache (which holds this batch's rows and every
 * earlier position of their sequences), split over the pool's threads.
 * scratch: at least loom_pool_size(pool) × loom_attention_scratch_floats(
 * kc, n_q, n_kv, head_dim, m) floats for some m >= a->n, any alignment. */
void loom_attention_compute(const loom_attention_args *a, loom_pool *pool, float *scratch);

/* Floats of per-thread scratch loom_attention_compute needs for batches of
 * up to max_rows rows (nondecreasing in max_rows). */
size_t loom_attention_scratch_floats(const loom_kv_config *kc, int n_q, int n_kv, int head_dim, int max_rows);

/* ------------------------------------------------ kernels (runtime/cpu/attn_*.c)
 *
 * One work unit: nq queries attending to key positions [p_begin, p_end) of
 * one sequence and KV head. Query j sees position t iff t <= lim[j]. The
 * kernel first writes q (the queries × qscale, transposed, so the score
 * loop broadcasts q[d·16 + j] at fixed offsets), then sets m[j] (running
 * max, base-2 units; -inf if it saw nothing), l[j] (sum of 2^(s - m)) and
 * acc[j] (sum of 2^(s - m) · V[t]); with `out`, it writes acc[j] · (1/l[j]) to
 * out[j] instead (acc is then scratch). Keys are visited in tiles of 16
 * positions of one block; the SIMD kernels update the running max once per
 * chunk of LOOM_ATTN_CHUNK tiles (chunks depend only on the key range and
 * block size, never on nq, so a query's result does not depend on its unit
 * mates). */
#define LOOM_ATTN_NQ_MAX 16 /* queries per unit */
#define LOOM_ATTN_TILE 16   /* key positions per tile */
#define LOOM_ATTN_CHUNK 4   /* tiles per online-softmax step */

typedef struct {
    const loom_kv_cache *kv;
    int layer, kvh;
    const int32_t *table;   /* block table of the sequence */
    int nq;                 /* 1..LOOM_ATTN_NQ_MAX */
    int p_begin, p_end;     /* p_begin a multiple of block_tokens; p_end <= capacity */
    int p_pf;               /* >= p_end: blocks below it may be prefetched (the next segment's) */
    const float *const *qp; /* (nq) query rows, head_dim floats each */
    float qscale;           /* log2(e)/√head_dim */
    float *const *out;      /* (nq) output rows, or NULL (keep m, l, acc for a merge) */
    const int32_t *lim;     /* (nq) last position each query sees */
    float *q;               /* (head_dim, LOOM_ATTN_NQ_MAX) scratch, 64-byte aligned */
    float *m, *l;           /* (nq) */
    float *acc;             /* (nq, head_dim), 64-byte aligned */
    float *work;            /* LOOM_ATTN_WORK_FLOATS(head_dim) floats, 64-byte aligned */
} loom_attn_unit;

#define LOOM_ATTN_WORK_FLOATS(hd) \
    ((size_t)(1 + 2 * LOOM_ATTN_CHUNK) * LOOM_ATTN_NQ_MAX * LOOM_ATTN_TILE + 2 * (size_t)(hd) * LOOM_ATTN_TILE)

void loom_attn_unit_scalar(const loom_attn_unit *u);
void loom_attn_unit_avx2(const loom_attn_unit *u);   /* head_dim % 8 == 0 */
void loom_attn_unit_avx512(const loom_attn_unit *u); /* head_dim % 16 == 0 */

/* dst[i] = loom_f32_to_f16(src[i]) for i in [0, n) with F16C (same bits). */
void loom_attn_f16_row_avx2(const float *src, uint16_t *dst, int n);

/* 2^x for x <= 0 (the polynomial the SIMD kernels use; for the tests):
 * y[i] = exp2(x[i]), 0 for x < -126 and for -inf. */
void loom_attn_exp2_avx2(const float *x, float *y, int n);
void loom_attn_exp2_avx512(const float *x, float *y, int n);

#endif
