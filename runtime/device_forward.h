/*
 * runtime/device_forward.h — the forward-pass pieces of runtime/forward.h
 * on a device (runtime/device.h): the same pieces, the same partial
 * outputs for parallel/ to compose with its collectives, but every buffer
 * in the device's memory and every step queued on its compute stream.
 *
 * create() uploads this rank's weights once (from the views into the mapped
 * GGUF file; a tied embedding is uploaded once) and allocates the KV pool
 * (kv_cache.h's block layout, the block ids of the host cache's tables) and
 * a workspace for max_rows rows. A step is:
 *   prepare(batch, tables)   validates the rows, plans the attention units
 *                            (attn_plan.h), computes the rotary angles on
 *                            the host, uploads them with the tokens, slots,
 *                            block tables and (from the previous stage) the
 *                            hidden states;
 *   embed, then per layer attention and mlp (into a partial buffer, or
 *                            straight into the residual stream with
 *                            accumulate = 1 when there is nothing to
 *                            all-reduce), add;
 *   logits                   norm and lm head over this rank's vocabulary
 *                            slice for the rows that want logits;
 *   fetch_logits / fetch_hidden   download (and synchronise).
 * The pieces between prepare and the fetches only queue device work whose
 * launch parameters depend on the step's shape (rows, units, logit rows),
 * never on its contents, so a device may capture them in a graph and
 * replay it for every step of the same shape (parallel/stage.c does).
 * prepare rewrites host staging the previous step's uploads read: fetch
 * (or sync) before the next prepare.
 *
 * On the host device the pieces call the CPU kernels exactly as
 * runtime/forward.c does, so the results are bit-identical to it
 * (tests/test_device_forward.c).
 */
#ifndef LOOM_DEVICE_FORWARD_H
#define LOOM_DEVICE_FORWARD_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/device.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"
#include "runtime/model.h"

typedef struct loom_dforward loom_dforward;

/* Whether the device pass runs this model: the llama and qwen2 families.
 * The other families' pieces (LayerNorm, GELU, QK-norm, post-norms,
 * soft-caps, sliding windows, learned positions, encoders, LongRoPE) run on
 * the CPU only, and create() refuses them. */
bool loom_dforward_supports(const loom_model_config *c);
/* Whether `auto` may put this model on a GPU: the device pass runs it and
 * the CUDA device multiplies every weight type of its file
 * (LOOM_CUDA_MATMUL_TYPES). */
bool loom_dforward_auto_ok(const loom_model_config *c);
/* The device for `k` and this model: `auto` is the CPU for a model that
 * loom_dforward_auto_ok refuses, else loom_device_resolve(k); an explicit
 * kind is kept (create() then names what is missing). */
loom_device_kind loom_dforward_resolve(loom_device_kind k, const loom_model_config *c);

/* Borrows the device and the weights (the GGUF mapping stays open). Errors
 * name what the device lacks (a weight type, a head size) or the buffer
 * that did not fit. */
loom_status loom_dforward_create(loom_device *d, const loom_weights *w, const loom_kv_config *kc, int max_rows,
                                 loom_dforward **out) LOOM_MUST_USE;
void loom_dforward_free(loom_dforward *f);

/* Groups of matrices that read the same rows and share a type (q, k, v;
 * gate, up) are uploaded one after another into one buffer, and a step of
 * one row multiplies each group in one launch (decode of one sequence is
 * bound by launches, not bytes, on a GPU); other steps use each matrix
 * apart. LOOM_DEVICE_FUSE=0 uploads them apart (to time the difference).
 * How many groups of two or more matrices this pass fused: */
int loom_dforward_fused_groups(const loom_dforward *f);

/* Device bytes held: weights, KV pool, workspace. */
void loom_dforward_bytes(const loom_dforward *f, size_t *weights, size_t *kv, size_t *workspace);
/* Device bytes create() would take, without a device (for plans). */
size_t loom_dforward_plan_bytes(const loom_weights *w, const loom_kv_config *kc, int max_rows);

loom_status loom_dforward_prepare(loom_dforward *f, const loom_batch *b, const loom_kv_cache *tables) LOOM_MUST_USE;

/* x = embeddings of the batch's tokens (zeros outside this rank's vocabulary
 * slice); nothing when the batch carried hidden states (prepare uploaded
 * them). */
void loom_dforward_embed(loom_dforward *f);
/* out (n, dim) (+)= attention / MLP of layer `layer` (absolute index) over
 * this rank's heads / columns, from x. */
void loom_dforward_attention(loom_dforward *f, int layer, float *out, int accumulate);
void loom_dforward_mlp(loom_dforward *f, int layer, float *out, int accumulate);
/* x += partial */
void loom_dforward_add(loom_dforward *f, const float *partial);
/* device logits (n_out, n_vocab held) for the rows that want them; returns n_out */
int loom_dforward_logits(loom_dforward *f);

/* Downloads the logits of the last logits() (n_out, n_vocab held) / the
 * residual stream (n, dim) into host memory; synchronises. */
loom_status loom_dforward_fetch_logits(loom_dforward *f, float *logits) LOOM_MUST_USE;
loom_status loom_dforward_fetch_hidden(loom_dforward *f, float *hidden) LOOM_MUST_USE;

/* Device buffers: the residual stream (max_rows, dim) and a partial (max_rows, dim). */
float *loom_dforward_hidden(loom_dforward *f);
float *loom_dforward_scratch(loom_dforward *f);
loom_device *loom_dforward_device(loom_dforward *f);

/* The shape of the prepared step: rows, attention units, logit rows, and
 * whether it carried hidden states (a graph of the pieces is valid for
 * every step of the same shape). */
typedef struct {
    int n, n_units, n_out, embd;
} loom_dforward_shape;
loom_dforward_shape loom_dforward_shape_of(const loom_dforward *f);

#endif
