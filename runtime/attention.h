/*
 * runtime/attention.h — the inner loops of attention over the KV cache,
 * with run-time ISA dispatch (loom_isa_get(): AVX-512, AVX2+F16C, scalar).
 *
 * Keys and values are rows of head_dim elements in F16 or F32, `n` rows
 * back to back (one KV block of one head). Kernels never allocate or fail.
 */
#ifndef LOOM_ATTENTION_H
#define LOOM_ATTENTION_H

#include "types.h"

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
