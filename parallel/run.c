/*
 * parallel/run.c — a batch of requests run to completion through the
 * scheduler (contract in run.h).
 */
#include "parallel/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void loom_result_free(loom_result *r) {
    if (!r) return;
    free(r->tokens);
    free(r->error);
    memset(r, 0, sizeof *r);
}

typedef struct {
    const loom_callbacks *user_cb;
    loom_result *results;
} run_ctx;

static void run_on_token(void *user, uint64_t id, int32_t token, const loom_token_logprobs *lp) {
    run_ctx *c = user;
    if (c->user_cb->on_token) c->user_cb->on_token(c->user_cb->user, id, token, lp);
}

static bool run_is_eog(void *user, int32_t token) {
    run_ctx *c = user;
    return c->user_cb->is_eog(c->user_cb->user, token);
}

static void run_on_finish(void *user, const loom_finished *f) {
    run_ctx *c = user;
    loom_result *r = &c->results[f->id];
    r->n_tokens = f->n_tokens;
    r->tokens = malloc((size_t)(f->n_tokens ? f->n_tokens : 1) * sizeof(int32_t));
    if (r->tokens && f->n_tokens) memcpy(r->tokens, f->tokens, (size_t)f->n_tokens * sizeof(int32_t));
    r->stop_reason = !strcmp(f->stop_reason, "stop") ? "stop" : !strcmp(f->stop_reason, "length") ? "length" : "error";
    r->error = f->error ? strdup(f->error) : NULL;
    r->prompt_ms = f->prompt_ms;
    r->gen_ms = f->gen_ms;
    if (c->user_cb->on_finish) c->user_cb->on_finish(c->user_cb->user, f);
}

loom_status loom_engine_run(loom_engine *e, const loom_request *reqs, int n, const loom_callbacks *cb,
                            const loom_scheduler_options *o, loom_result *results, loom_run_stats *stats) {
    memset(results, 0, (size_t)n * sizeof *results);
    if (loom_engine_model(e)->encoder)
        return loom_error(LOOM_ERR_UNSUPPORTED, "this %s model is an embedding model: it makes embeddings (loom embed), "
                          "not text",
                          loom_engine_model(e)->arch_name);
    run_ctx c = {cb, results};
    loom_callbacks inner = {run_on_token, run_on_finish, run_is_eog, &c};
    loom_scheduler *s = NULL;
    LOOM_TRY(loom_scheduler_create(e, &inner, o, &s));
    loom_status st = NULL;
    for (int i = 0; i < n && !st; i++) {
        uint64_t id;
        loom_status bad = loom_scheduler_submit(s, &reqs[i], &id);
        if (bad) { /* fails alone; the ids of the others stay their indices */
            results[i].stop_reason = "error";
            char msg[1024];
            snprintf(msg, sizeof msg, "request %d: %s", i, loom_status_message(bad));
            results[i].error = strdup(msg);
            loom_status_free(bad);
            loom_scheduler_skip_id(s);
        }
    }
    while (!st && loom_scheduler_pending(s) > 0) st = loom_scheduler_step(s);
    if (stats) *stats = loom_scheduler_stats(s);
    loom_scheduler_free(s);
    return st;
}
