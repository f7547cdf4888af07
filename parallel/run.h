/*
 * parallel/run.h — a batch of requests run to completion: the loop over the
 * scheduler that `loom generate`, `loom bench` and the tests use (the
 * server drives the scheduler itself).
 */
#ifndef LOOM_RUN_H
#define LOOM_RUN_H

#include "parallel/scheduler.h"

typedef struct {
    int32_t *tokens;          /* generated ids (malloc'd; free with loom_result_free) */
    int n_tokens;
    const char *stop_reason;  /* "stop", "length", or "error" */
    char *error;              /* message when stop_reason is "error" */
    double prompt_ms;         /* admission to first sampled token */
    double gen_ms;            /* first sampled token to the last */
} loom_result;

void loom_result_free(loom_result *r);

/* Runs every request to completion with the scheduler's options o (NULL:
 * the defaults); results[i] belongs to reqs[i] and on_token/on_finish see
 * id i. A bad request fails alone (its result says why); the status is an
 * error only when the engine itself failed. stats may be NULL. */
loom_status loom_engine_run(loom_engine *e, const loom_request *reqs, int n, const loom_callbacks *cb,
                            const loom_scheduler_options *o, loom_result *results, loom_run_stats *stats) LOOM_MUST_USE;

#endif
