/*
 * runtime/attention.h — attention over the paged KV cache (kv_cache.h), for
 * a batch of rows from many sequences (F16, F32 or Q8_0 keys/values): the KV
 * store, the plan of work units and segments, the threads and the merge.
 * The work units run in the active kernel table's attn_unit
 * (runtime/kernels.h: loom_attn_unit; runtime/cpu/attn_*.c).
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
    /* what families other than llama change (all 0: llama) */
    float scale;          /* scores are q·k·scale; 0 = 1/sqrt(head_dim) */
    float softcap;        /* > 0: scores become softcap·tanh(s/softcap) before the softmax (gemma2) */
    int window;           /* > 0: a row at position p sees only positions > p - window (sliding window) */
    int bidirectional;    /* a row sees every position of its sequence in this batch and before (encoders) */
    const float *sinks;   /* (n_q) or NULL: query head h's softmax sums exp(sinks[h]) too, a position with no
                           * value (gpt-oss's attention sinks; in the scores' units, not scaled) */
} loom_attention_args;

/* Writes every row's keys and values into its cache block (blocks must be
 * reserved for every row's position); the keys only into a v_is_k cache
 * (kv_cache.h), whose attention reads them as the values too. */
void loom_attention_store(const loom_attention_args *a);
/* The same for KV heads [h0, h1) only (threads storing disjoint heads). */
void loom_attention_store_heads(const loom_attention_args *a, int h0, int h1);

/* One position (slot) of KV head h into a paged block pair (kv_cache.h's
 * layout, kb and vb the blocks' starts): keys transposed, values as rows
 * (vb NULL: the key only, a v_is_k cache's); F16 through the kernel table's
 * conversion (the CPU's bits), Q8_0 rounded under its stored F16 scale (kv_cache.h). Shared by the CPU
 * store above and the host device's. */
void loom_kv_write_head(void *kb, void *vb, int h, int slot, int block_tokens, int head_dim, loom_type type,
                        const float *k, const float *v);

/* out = softmax(q·Kᵀ/√d, causal: positions ≤ the row's; see the fields
 * above for the scale, soft-capping, windows and bidirectional rows) · V for every row
 * and query head, over the cache (which holds this batch's rows and every
 * earlier position of their sequences), split over the pool's threads.
 * scratch: at least loom_pool_size(pool) × loom_attention_scratch_floats(
 * kc, n_q, n_kv, head_dim, m) floats for some m >= a->n, any alignment. */
void loom_attention_compute(const loom_attention_args *a, loom_pool *pool, float *scratch);

/* Floats of per-thread scratch loom_attention_compute needs for batches of
 * up to max_rows rows (nondecreasing in max_rows). */
size_t loom_attention_scratch_floats(const loom_kv_config *kc, int n_q, int n_kv, int head_dim, int max_rows);

#endif
