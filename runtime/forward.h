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
 *   x = embed_finish(Σ_ranks x)            (scale, positions, token type, norm)
 *   for each layer l held:
 *     p = attention(l, x); residual(l, attn, Σ_ranks p)   x += post(p); x = res(x)
 *     p = mlp(l, x);       residual(l, mlp, Σ_ranks p)
 *   logits = lm_head(norm(x)) over the vocabulary slice
 *
 * The families differ inside the pieces (model.h: norms with or without a
 * bias, before or after the residual add, GELU or SiLU, gated or plain MLP,
 * QK-norm, biases, learned or rotary positions, sliding windows,
 * soft-capping). A bias on an output that is summed over the TP group
 * (attention output, MLP down) is added by the rank holding the first
 * slice only, so the sum has it once.
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

/* The scales of the weights' LoRA adapters (runtime/lora.h) for the
 * sequence in KV slot `slot` from now on: scale[i] for adapter i < n, 0 for
 * the rest (n <= LOOM_LORA_MAX). */
loom_status loom_forward_set_lora(loom_forward *f, int slot, const float *scale, int n) LOOM_MUST_USE;

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

/* After the embedding's sum over the vocabulary-parallel group: the
 * model's embedding scale, learned position and token-type rows, and
 * embedding norm (no-ops for most families; nothing for hidden-state
 * input). */
void loom_forward_embed_finish(loom_forward *f, const loom_batch *b);

/* partial (n, dim) = attention of layer `layer` (absolute index) over this
 * rank's heads, from x. Writes the rows' keys and values into the cache. */
loom_status loom_forward_attention(loom_forward *f, int layer, const loom_batch *b, float *partial) LOOM_MUST_USE;

/* partial (n, dim) = MLP of layer `layer` over this rank's columns, from x. */
void loom_forward_mlp(loom_forward *f, int layer, int n, float *partial);

/* x[:n] += partial[:n]. */
void loom_forward_add(loom_forward *f, int n, const float *partial);

typedef enum { LOOM_BLOCK_ATTN, LOOM_BLOCK_MLP } loom_block;

/* x[:n] += post_norm(sum[:n]), then x = res_norm(x), for block `block` of
 * layer `layer`: sum is the TP group's sum of the block's partials (it is
 * overwritten). Without either norm (llama) this is loom_forward_add. */
void loom_forward_residual(loom_forward *f, int layer, loom_block block, int n, float *sum);

/* For the rows with logits set, in order: logits (n_out, n_vocab held) =
 * lm_head · norm(x) over this rank's vocabulary slice (soft-capped when the
 * model says so). For encoders (no lm head) the hidden states (n_out, dim)
 * instead. Returns n_out. */
int loom_forward_logits(loom_forward *f, const loom_batch *b, float *logits);

/* Scratch of (max_rows, dim) floats for partial outputs. */
float *loom_forward_scratch(loom_forward *f);

#endif
