/*
 * runtime/forward.h — the pieces of a transformer forward pass on one rank.
 *
 * A forward call takes a batch of rows from many sequences (prefill, decode
 * and mixtures are the same call). The pieces work on whatever part of the
 * model the rank's weights hold and produce *partial* outputs; parallel/
 * composes them with the collectives (one all-reduce after the attention
 * output projection and one after the MLP down projection). On one rank with
 * the whole model the collectives are no-ops:
 *
 *   x = embed(batch)                       (partial when the vocabulary is split)
 *   for each layer l held:
 *     p = attention(l, x); x += Σ_ranks p
 *     p = mlp(l, x);       x += Σ_ranks p
 *   logits = lm_head(norm(x)) over the vocabulary slice
 *
 * The workspace is sized once for `max_rows` rows; nothing is allocated per
 * call. KV blocks for every row's position must have been reserved
 * (loom_kv_reserve) before attention() writes them.
 */
#ifndef LOOM_FORWARD_H
#define LOOM_FORWARD_H

#include <stdint.h>

#include "runtime/kv_cache.h"
#include "runtime/model.h"
#include "runtime/threadpool.h"

typedef struct {
    int32_t n;              /* rows */
    const int32_t *token;   /* (n) token ids; NULL when embd is given */
    const float *embd;      /* (n, dim) hidden states from the previous stage, or NULL */
    const int32_t *pos;     /* (n) position of each row in its sequence */
    const int32_t *seq;     /* (n) KV slot of each row */
    const int8_t *logits;   /* (n) nonzero: compute logits for this row (last stage) */
} loom_batch;

typedef struct loom_forward loom_forward;

loom_status loom_forward_create(const loom_weights *w, loom_kv_cache *kv, loom_pool *pool, int max_rows,
                                loom_forward **out) LOOM_MUST_USE;
void loom_forward_free(loom_forward *f);
int loom_forward_max_rows(const loom_forward *f);

/* The residual stream: (max_rows, dim). */
float *loom_forward_hidden(loom_forward *f);

/* Validates the batch (slots, positions with reserved KV blocks) and
 * computes its rotary angles. Must be called for every batch (also one
 * reused with new contents) before attention(). */
loom_status loom_forward_prepare(loom_forward *f, const loom_batch *b) LOOM_MUST_USE;

/* x[i] = embedding of token[i] when it lies in this rank's vocabulary slice,
 * zeros otherwise (sum over the vocabulary-parallel group gives the full
 * embedding); or x = embd when the batch carries hidden states. Errors on a
 * token id outside the vocabulary. */
loom_status loom_forward_embed(loom_forward *f, const loom_batch *b) LOOM_MUST_USE;

/* partial (n, dim) = attention of layer `layer` (absolute index) over this
 * rank's heads, from x. Writes the rows' keys and values into the cache. */
loom_status loom_forward_attention(loom_forward *f, int layer, const loom_batch *b, float *partial) LOOM_MUST_USE;

/* partial (n, dim) = MLP of layer `layer` over this rank's columns, from x. */
void loom_forward_mlp(loom_forward *f, int layer, int n, float *partial);

/* x[:n] += partial[:n]. */
void loom_forward_add(loom_forward *f, int n, const float *partial);

/* For the rows with logits set, in order: logits (n_out, n_vocab held) =
 * lm_head · norm(x) over this rank's vocabulary slice. Returns n_out. */
int loom_forward_logits(loom_forward *f, const loom_batch *b, float *logits);

/* Scratch of (max_rows, dim) floats for partial outputs. */
float *loom_forward_scratch(loom_forward *f);

#endif
