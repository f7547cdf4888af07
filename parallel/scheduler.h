/*
 * parallel/scheduler.h — the coordinator's scheduler: requests in, tokens
 * out, one step at a time.
 *
 * The scheduler owns the state of every request on the coordinator: a FIFO
 * of waiting requests, the running sequences (one per KV slot) and a ring of
 * micro-batches in flight through the pipeline. Each call to
 * loom_scheduler_step() does one thing: admit what fits, then either build
 * and launch the next micro-batch or wait for the oldest one in flight and
 * take its tokens. With several stages, up to n_stages micro-batches are in
 * flight: stage s works on micro-batch m while stage s+1 works on m-1, and
 * each micro-batch carries about n_active / n_stages sequences.
 *
 * A micro-batch (continuous batching with chunked prefill, as vLLM does):
 * one row for every decoding sequence first (with the tokens it proposes,
 * when speculative decoding is on), then chunks of prompts in
 * arrival order within what is left of the row budget (batch_rows; at most
 * prefill_rows while any sequence is decoding, so a long prompt cannot
 * stall everyone's streams), each prompt taking at most an even share of it
 * while others wait.
 *
 * KV blocks come from the engine's block pool as sequences grow, not
 * reserved for max_tokens up front. A request is admitted when a slot is
 * free and its prompt's blocks are (beyond a 1 % watermark, unless nothing
 * else runs). Prompts start with the full blocks the prefix cache already
 * holds (kv_blocks.h): only the rest is computed, and at least the last
 * prompt token always is. When a growing sequence finds no free block, the
 * most recently admitted sequence is preempted: its blocks go back (its
 * full ones stay in the prefix cache), and it waits at the head of the
 * queue to be recomputed — prompt and tokens so far — and continues where
 * it was, without repeating a token to its callbacks. A request whose
 * prompt cannot fit even in an empty cache finishes alone with a clear
 * reason.
 *
 * Tokens and endings are reported through callbacks, called from inside
 * loom_scheduler_step() on the calling thread. Stop reasons follow the
 * OpenAI convention: "stop" (an end-of-generation token), "length"
 * (max_tokens reached or the context is full), or "error".
 *
 * Not thread-safe: one thread (the scheduler thread of a server, or the
 * loop of loom_engine_run) makes every call. Other ranks run
 * loom_engine_work() meanwhile.
 */
#ifndef LOOM_SCHEDULER_H
#define LOOM_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "parallel/draft_model.h"
#include "parallel/engine.h"
#include "runtime/sampler.h"

typedef struct {
    const int32_t *prompt; /* (n_prompt) copied by submit */
    int n_prompt;
    int max_tokens;
    loom_sampling_params sampling;
    bool ignore_eos;
    bool logprobs;    /* report each sampled token's log-probability */
    int top_logprobs; /* and this many most likely alternatives (0..20) */
    /* The output the caller expects (OpenAI's predicted outputs; copied by
     * submit), or NULL: speculative decoding proposes from it whatever the
     * scheduler's draft options say (draft.h), what followed the output's
     * last tokens there, and its start before the first token. */
    const int32_t *prediction;
    int n_prediction;
    /* Each LoRA adapter's scale (engine.h; copied by submit), n_lora of
     * them (adapters past them at 0); none (n_lora 0): the engine's defaults. Sequences with other
     * scales never share KV blocks through the prefix cache. */
    const float *lora;
    int n_lora;
} loom_request;

/* Log-probabilities of a sampled token under the model's raw distribution. */
typedef struct {
    float logprob;
    int n_top;
    const int32_t *top_ids;    /* (n_top) most likely first */
    const float *top_logprobs; /* (n_top) */
} loom_token_logprobs;

/* How a request ended; pointers are valid only during the callback. */
typedef struct {
    uint64_t id;
    const int32_t *tokens;   /* (n_tokens) generated ids */
    int n_prompt, n_tokens;
    const char *stop_reason; /* "stop", "length" or "error" */
    const char *error;       /* message when stop_reason is "error", else NULL */
    double queue_ms;         /* submit to admission */
    double prompt_ms;        /* admission to the first sampled token */
    double gen_ms;           /* first sampled token to the last */
    int draft_tokens;        /* speculative decoding: tokens proposed for it, and the model's own among them */
    int draft_accepted;
    int n_cached;            /* prompt positions found in the prefix cache at its (last) admission */
} loom_finished;

typedef struct {
    /* A token was sampled for request `id` (in order); lp is NULL unless the
     * request asked for logprobs. Optional. */
    void (*on_token)(void *user, uint64_t id, int32_t token, const loom_token_logprobs *lp);
    /* Request `id` ended (after its last on_token). Optional. */
    void (*on_finish)(void *user, const loom_finished *f);
    /* Whether a token ends generation. Required. */
    bool (*is_eog)(void *user, int32_t token);
    void *user;
} loom_callbacks;

typedef struct {
    int64_t prompt_tokens, gen_tokens;
    int64_t decode_tokens; /* tokens sampled in pure decode steps */
    double prefill_s;      /* wall time while steps carried prompt rows */
    double decode_s;       /* wall time of pure decode steps */
    double comm_s;         /* coordinator: time in TP collectives */
    double transfer_s;     /* coordinator: time in stage transfers and results */
    int64_t steps;
    int64_t decode_steps;  /* steps without prompt rows (each reads every weight once) */
    int64_t preemptions;   /* sequences preempted for KV blocks */
    int64_t prefix_queries, prefix_hits; /* prompt tokens looked up in / found in the prefix cache */
    int64_t draft_tokens, draft_accepted; /* speculative decoding: tokens proposed / the model's own */
    double draft_model_s;  /* wall time of the draft model's proposals (draft_model.h) */
} loom_run_stats;

typedef struct loom_scheduler loom_scheduler;

/* Speculative decoding's defaults (options below). */
#define LOOM_DRAFT_MIN_NGRAM 2
#define LOOM_DRAFT_MAX_NGRAM 4
#define LOOM_DRAFT_ROWS 16
#define LOOM_DRAFT_MODEL_MAX 8 /* proposals a step with a draft model when draft_max is 0 */

typedef struct {
    int prefill_rows; /* prompt rows per step at most while a sequence decodes; 0 = the batch */
    /* Speculative decoding by prompt lookup (draft.h): each decoding
     * sequence proposes up to draft_max tokens a step (0: off) that the
     * model checks in the same step, when its last draft_min_ngram ..
     * draft_max_ngram tokens occurred before (0: the defaults above); a
     * step carries at most draft_rows proposals (0: the default), and only
     * as many as are likely to pay for their rows (scheduler.c). Each
     * token is drawn as without proposals (one draw of the sequence's
     * random stream, after the same history), and proposals never take a
     * step's decode rows to loom_matmul_invariant_rows(), so the tokens
     * are those of a run without them. */
    int draft_max, draft_min_ngram, draft_max_ngram, draft_rows;
    /* With a draft model (borrowed; its slots the engine's max_seqs), the
     * proposals are its greedy continuations instead of lookups (up to
     * draft_max, 0: LOOM_DRAFT_MODEL_MAX), by the same rules, and each
     * must also pay for its share of the draft model's pass: draft_cost,
     * that pass's time as a share of a decode step (0: free; negative:
     * measured as the run goes, scheduler.c). */
    loom_drafter *drafter;
    double draft_cost;
} loom_scheduler_options;

/* Coordinator only. Borrows the engine and copies cb; o may be NULL (defaults). */
loom_status loom_scheduler_create(loom_engine *e, const loom_callbacks *cb, const loom_scheduler_options *o,
                                  loom_scheduler **out) LOOM_MUST_USE;
/* Frees the scheduler; requests still waiting or running are dropped
 * without callbacks (their KV blocks are released). */
void loom_scheduler_free(loom_scheduler *s);

/* Queues a request and sets *id (ids count up from 0 in submission order).
 * A request that can never run (empty prompt, prompt longer than the
 * context, a token outside the vocabulary, bad sampling parameters) is
 * refused with an error naming the problem and is not queued. */
loom_status loom_scheduler_submit(loom_scheduler *s, const loom_request *r, uint64_t *id) LOOM_MUST_USE;

/* Ends request `id` now, wherever it is (waiting, prefilling, decoding);
 * no callback names it afterwards and its KV blocks are freed (once a
 * micro-batch in flight that carries it has come back). Returns false when
 * no such request is waiting or running. */
bool loom_scheduler_cancel(loom_scheduler *s, uint64_t id);

/* Does one round of work (see above) and reports through the callbacks.
 * Returns at once when nothing is waiting or running. An error means the
 * engine failed: every request then finishes with "error" and the
 * scheduler refuses further work. */
loom_status loom_scheduler_step(loom_scheduler *s) LOOM_MUST_USE;

/* Collects every micro-batch in flight (reporting their tokens), so the
 * engine may run something else (loom_engine_score_chunks) before the next
 * step; the next step starts the pipeline again. Errors as for step. */
loom_status loom_scheduler_drain(loom_scheduler *s) LOOM_MUST_USE;

/* Requests waiting plus running; running ones. */
int loom_scheduler_pending(const loom_scheduler *s);
int loom_scheduler_running(const loom_scheduler *s);
/* Share of KV blocks held by sequences (0..1). */
double loom_scheduler_kv_usage(const loom_scheduler *s);
/* Counters since creation (comm_s/transfer_s: the engine's, since creation). */
loom_run_stats loom_scheduler_stats(const loom_scheduler *s);

/* Uses up the next id without queueing anything (so a caller's ids can
 * stay its own indices when it refuses a request itself). */
void loom_scheduler_skip_id(loom_scheduler *s);

#endif
