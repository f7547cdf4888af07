/*
 * parallel/draft_model.h — proposals for speculative decoding from a small
 * draft model (vLLM's draft-model method, llama.cpp's `-md`): a model with
 * the target's vocabulary, held whole by the coordinator, continues each
 * decoding sequence greedily for a few tokens; the target checks them all
 * in its next step (parallel/vocab_sampler.h) and keeps those it would have
 * sampled anyway, so the output is that of a run without proposals.
 *
 * The draft model computes on the coordinator's CPU with the engine's
 * thread pool, between the target's steps, in batches of every sequence
 * that proposes. Its paged KV cache has a slot per scheduler slot and
 * remembers which tokens it holds: a sequence's next call computes only the
 * tokens that differ from what it last saw (the target's token after the
 * kept proposals, or a new request's prompt past what it shares with the
 * slot's previous one), so no call tells it that a slot changed hands.
 */
#ifndef LOOM_DRAFT_MODEL_H
#define LOOM_DRAFT_MODEL_H

#include <stdint.h>

#include "runtime/gguf.h"
#include "runtime/status.h"
#include "runtime/threadpool.h"

typedef struct {
    int max_seqs;   /* slots 0 .. max_seqs - 1 (the scheduler's) */
    int ctx;        /* positions per slot at most */
    int kv_tokens;  /* positions its KV cache holds in all (0: every slot's whole context); when a call
                       needs more, slots outside the call give theirs up */
    int batch_rows; /* rows of one forward pass at most (catching up on prompts) */
    float p_min;    /* a sequence stops proposing at a token the draft model gives less than this
                       probability (llama.cpp's --draft-p-min); 0: never */
} loom_drafter_options;

typedef struct loom_drafter loom_drafter;

/* Opens the draft model at `path` (a decoder whose token texts equal the
 * target's for every id both vocabularies have; the error says what
 * differs) and prepares it on `pool` (borrowed: the engine's, idle while
 * the drafter runs). */
loom_status loom_drafter_create(const char *path, const loom_gguf *target, loom_pool *pool,
                                const loom_drafter_options *o, loom_drafter **out) LOOM_MUST_USE;
void loom_drafter_free(loom_drafter *d);

/* One sequence's call: in slot `slot` the tokens toks[0 .. n_toks) are
 * settled; up to `want` greedy continuations go to out, their count to
 * n_out (fewer where the draft model is unsure, the context ends, or a
 * token lies past the target's vocabulary). */
typedef struct {
    int slot;
    const int32_t *toks;
    int n_toks;
    int want;
    int32_t *out;
    int n_out;
} loom_draft_req;

/* Proposals for n sequences (distinct slots) at once. An error means the
 * draft model failed (n_out is then 0 everywhere); the caller may go on
 * without proposals. */
loom_status loom_drafter_propose(loom_drafter *d, loom_draft_req *r, int n) LOOM_MUST_USE;

/* The slots it was made for (options' max_seqs). */
int loom_drafter_slots(const loom_drafter *d);
/* Moving average of the seconds of a pass of one row per sequence (0
 * before the first). */
double loom_drafter_step_seconds(const loom_drafter *d);
/* Moving average of the seconds a row of catching up takes (tokens of a
 * sequence it has not seen, in batches of 32 rows or more; 0 before). */
double loom_drafter_row_seconds(const loom_drafter *d);
/* How many of toks[0 .. n) slot `slot` holds already (the rest a call
 * computes first). */
int loom_drafter_known(const loom_drafter *d, int slot, const int32_t *toks, int n);
/* Seconds spent proposing since creation; the draft model's tokens computed. */
double loom_drafter_seconds(const loom_drafter *d);
int64_t loom_drafter_rows(const loom_drafter *d);
/* Bytes of the draft model's weights and of its KV cache (every slot's
 * whole context; pages are touched only as positions are written). */
size_t loom_drafter_weight_bytes(const loom_drafter *d);
size_t loom_drafter_kv_bytes(const loom_drafter *d);

#endif
