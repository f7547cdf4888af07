/*
 * launch/serve/metrics.h — what `GET /metrics` reports, in Prometheus'
 * text format (version 0.0.4).
 *
 * The server's threads record into one srv_metrics under its own mutex
 * (a few ns per event); srv_metrics_render() writes a snapshot. Names
 * follow vLLM's where one exists (loom_ prefix instead of vllm:), so its
 * dashboards map one to one: requests running/waiting, KV cache use,
 * prompt and generated token counters, preemptions, prefix cache queries
 * and hits, histograms of time to first token, inter-token latency,
 * end-to-end latency and queue time; and loom's own per-rank figures
 * (seconds in TP collectives and stage transfers, idle share).
 */
#ifndef LOOM_SERVE_METRICS_H
#define LOOM_SERVE_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include "runtime/text/utf8.h"

#define SRV_HIST_BUCKETS 16

typedef struct {
    const double *bounds; /* (n) upper bounds, ascending; +Inf implied */
    int n;
    uint64_t counts[SRV_HIST_BUCKETS + 1];
    double sum;
    uint64_t count;
} srv_hist;

typedef struct {
    double tp_s, pp_s, busy_s, wall_s; /* since the engine started */
    double idle;                       /* 1 - busy / wall over the last report window */
} srv_rank_stats;

typedef struct {
    pthread_mutex_t mu;
    /* gauges (set by the scheduler thread) */
    int running, waiting;
    double kv_usage;          /* 0..1 */
    /* counters */
    uint64_t prompt_tokens, generation_tokens, preemptions, prefix_queries, prefix_hits;
    uint64_t draft_tokens, draft_accepted; /* speculative decoding: proposed / the model's own */
    uint64_t embed_inputs, embed_steps;    /* embedding models: inputs (or rerank pairs), the steps they took */
    uint64_t requests_ok, requests_length, requests_error, requests_cancelled;
    uint64_t http_2xx, http_4xx, http_5xx, http_429;
    /* histograms, seconds */
    srv_hist ttft, itl, e2e, queue;
    /* per rank, from the engine's reports */
    srv_rank_stats *ranks;    /* (n_ranks) */
    int n_ranks;
} srv_metrics;

loom_status srv_metrics_init(srv_metrics *m, int n_ranks) LOOM_MUST_USE;
void srv_metrics_free(srv_metrics *m);

/* Callers hold m->mu for the updates below (or use the locked helpers). */
void srv_hist_add(srv_hist *h, double v);
void srv_metrics_http(srv_metrics *m, int status); /* locks */

/* A new report of every rank's figures (n_ranks × {tp, pp, busy, wall}); locks. */
void srv_metrics_ranks(srv_metrics *m, const double *fig);

/* Appends the exposition text (locks). */
loom_status srv_metrics_render(srv_metrics *m, const char *model, loom_strbuf *out) LOOM_MUST_USE;

#endif
