/*
 * runtime/attention.h — the inner loops of attention over the KV cache,
 * with run-time ISA dispatch (loom_isa_get(): AVX-512, AVX2+F16C, scalar).
 *
 * Keys and values are rows of head_dim elements in F16 or F32, `n` rows
 * back to back (one KV block of one head). Kernels never allocate or fail.
 */
#ifndef LOOM_ATTENTION_H
#define LOOM_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "kv_cache.h"
#include "threadpool.h"
#include "types.h"

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
 * and query head, over the cache (which holds this batch's rows already),
 * split over the pool's threads. scratch: (threads, scratch_floats). */
void loom_attention_compute(const loom_attention_args *a, loom_pool *pool, float *scratch);

/* Floats of per-thread scratch loom_attention_compute needs. */
size_t loom_attention_scratch_floats(const loom_kv_config *kc, int n_q, int n_kv, int head_dim, int max_rows);

/* scores[t] = scale · dot(q, K[t]) for t in [0, n); K: (n, hd) in kv type. */
void loom_attn_scores(loom_type kv, const float *q, const void *k, int n, int hd, float scale, float *scores);

/* out[0..hd) += Σ_t p[t] · V[t] for t in [0, n); V: (n, hd) in kv type. */
void loom_attn_accum(loom_type kv, const float *p, const void *v, int n, int hd, float *out);

/* Per-ISA implementations (runtime/cpu/attn_*.c). */
void loom_attn_scores_avx2(loom_type kv, const float *q, const void *k, int n, int hd, float scale, float *scores);
void loom_attn_accum_avx2(loom_type kv, const float *p, const void *v, int n, int hd, float *out);
void loom_attn_scores_avx512(loom_type kv, const float *q, const void *k, int n, int hd, float scale, float *scores);
void loom_attn_accum_avx512(loom_type kv, const float *p, const void *v, int n, int hd, float *out);

#endif
