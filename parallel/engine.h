/*
 * parallel/engine.h — the step loop: many sequences through one model.
 *
 * The engine owns the model's weights, KV cache, stage and per-sequence
 * samplers of this rank. loom_engine_run() takes a list of requests and runs
 * them to completion concurrently: each step the scheduler builds one batch
 * of rows — one row per decoding sequence plus chunks of prompts still being
 * prefilled (chunked prefill, as vLLM does) — runs it, samples once per
 * sequence that asked for logits and streams the tokens out through the
 * callbacks. A sequence is admitted when a slot and the KV blocks for its
 * whole budget (prompt + max_tokens, capped by the context) are free, so a
 * running sequence never runs out of cache; a request that cannot fit even
 * in an empty cache fails alone with a clear reason.
 *
 * Stop reasons follow the OpenAI convention: "stop" (an end-of-generation
 * token), "length" (max_tokens reached or the context is full).
 */
#ifndef LOOM_ENGINE_H
#define LOOM_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "model.h"
#include "sampler.h"

typedef struct {
    int n_threads;     /* per rank */
    int ctx_size;      /* positions per sequence */
    int max_seqs;      /* sequences running at once (KV slots) */
    loom_type kv_type; /* F16 (default) or F32 */
    int batch_rows;    /* rows per forward call at most (prefill chunk) */
    int block_tokens;  /* KV block size */
} loom_engine_options;

loom_engine_options loom_engine_defaults(void);

typedef struct {
    const int32_t *prompt;
    int n_prompt;
    int max_tokens;
    loom_sampling_params sampling;
    bool ignore_eos;
} loom_request;

typedef struct {
    int32_t *tokens;          /* generated ids (malloc'd; free with loom_result_free) */
    int n_tokens;
    const char *stop_reason;  /* "stop", "length", or "error" */
    char *error;              /* message when stop_reason is "error" */
    double prompt_ms;         /* admission to first sampled token */
    double gen_ms;            /* first sampled token to the last */
} loom_result;

void loom_result_free(loom_result *r);

typedef struct {
    /* A token was sampled for request `req` (in order). Optional. */
    void (*on_token)(void *user, int req, int32_t token);
    /* Whether a token ends generation. Required. */
    bool (*is_eog)(void *user, int32_t token);
    void *user;
} loom_callbacks;

typedef struct {
    int64_t prompt_tokens, gen_tokens;
    int64_t decode_tokens; /* tokens sampled in pure decode steps */
    double prefill_s;  /* wall time of steps that carried prompt rows */
    double decode_s;   /* wall time of pure decode steps */
    double comm_s;     /* time in collectives */
    int64_t steps;
} loom_run_stats;

typedef struct loom_engine loom_engine;

/* Loads the model from an open GGUF file (which must outlive the engine).
 * `progress` (optional) is called with a fraction while weights load. */
loom_status loom_engine_create(const loom_gguf *g, const loom_engine_options *o,
                               void (*progress)(void *user, double frac), void *user,
                               loom_engine **out) LOOM_MUST_USE;
void loom_engine_free(loom_engine *e);
const loom_model_config *loom_engine_model(const loom_engine *e);
const loom_weights *loom_engine_weights(const loom_engine *e);
const loom_engine_options *loom_engine_options_of(const loom_engine *e);

/* Runs every request to completion; results[i] belongs to reqs[i]. A bad
 * request fails alone (its result says why); the status is an error only
 * when the engine itself failed. */
loom_status loom_engine_run(loom_engine *e, const loom_request *reqs, int n, const loom_callbacks *cb,
                            loom_result *results, loom_run_stats *stats) LOOM_MUST_USE;

/* Teacher-forced scoring for tests: feeds `tokens` of one sequence and
 * writes the logits (n, vocab) of every position. */
loom_status loom_engine_score(loom_engine *e, const int32_t *tokens, int n, float *logits) LOOM_MUST_USE;

#endif
