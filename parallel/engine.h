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

#include "runtime/gguf.h"
#include "runtime/model.h"
#include "runtime/sampler.h"

struct loom_comm;

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
    double comm_s;     /* coordinator: time in TP collectives */
    double transfer_s; /* coordinator: time sending/receiving stage transfers and results */
    int64_t steps;
} loom_run_stats;

/* Where this rank sits in the cluster. A NULL topology is one rank holding
 * the whole model. World rank 0 is the coordinator: it runs the scheduler
 * and is also (stage 0, TP rank 0). */
typedef struct {
    int world_rank, world_size;
    int stage, n_stages;
    int tp_rank, tp_size;
    struct loom_comm *world;  /* point-to-point between stages; NULL when world_size == 1 */
    struct loom_comm *tp;     /* this stage's TP group; NULL when tp_size == 1 */
    int prev, next;           /* world ranks of this TP rank at stage-1 / stage+1; -1 at the ends */
    int last_leader;          /* world rank of (last stage, TP rank 0): samples and answers rank 0 */
    loom_shard shard;         /* what this rank holds */
} loom_topology;

typedef struct loom_engine loom_engine;

/* Loads this rank's part of the model from an open GGUF file (which must
 * outlive the engine). `progress` (optional) is called with a fraction
 * while weights load. topo may be NULL (one rank, whole model); the engine
 * borrows its communicators. */
loom_status loom_engine_create(const loom_gguf *g, const loom_engine_options *o, const loom_topology *topo,
                               void (*progress)(void *user, double frac), void *user,
                               loom_engine **out) LOOM_MUST_USE;
void loom_engine_free(loom_engine *e);
const loom_model_config *loom_engine_model(const loom_engine *e);
const loom_weights *loom_engine_weights(const loom_engine *e);
const loom_engine_options *loom_engine_options_of(const loom_engine *e);

/* Coordinator (world rank 0) only. Runs every request to completion;
 * results[i] belongs to reqs[i]. A bad request fails alone (its result says
 * why); the status is an error only when the engine itself failed. With
 * several stages, up to n_stages micro-batches are in flight: stage s works
 * on micro-batch m while stage s+1 works on m-1. */
loom_status loom_engine_run(loom_engine *e, const loom_request *reqs, int n, const loom_callbacks *cb,
                            loom_result *results, loom_run_stats *stats) LOOM_MUST_USE;

/* Coordinator only: tells every other rank to leave loom_engine_work(). */
loom_status loom_engine_shutdown(loom_engine *e) LOOM_MUST_USE;

/* Every rank but the coordinator: receives steps and runs its part of them
 * until the coordinator shuts the cluster down. */
loom_status loom_engine_work(loom_engine *e) LOOM_MUST_USE;

/* Teacher-forced scoring for tests (one rank, whole model): feeds `tokens`
 * of one sequence and writes the logits (n, vocab) of every position. */
loom_status loom_engine_score(loom_engine *e, const int32_t *tokens, int n, float *logits) LOOM_MUST_USE;

/* Seconds this rank spent in TP collectives and in stage-to-stage transfers. */
void loom_engine_comm_time(const loom_engine *e, double *tp_s, double *pp_s);

/* Seconds this rank spent running its part of steps (forward and sampling,
 * collectives included, waiting for the previous stage excluded). Over a
 * run's wall time, 1 - busy/wall is the rank's idle share: the pipeline
 * bubble on stages that wait for each other. */
double loom_engine_busy_seconds(const loom_engine *e);

#endif
