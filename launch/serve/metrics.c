/*
 * launch/serve/metrics.c — Prometheus exposition (contract in metrics.h).
 */
#include "launch/serve/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* vLLM's buckets, trimmed to 16 */
static const double ttft_b[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 20};
static const double itl_b[] = {0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                               0.5, 1};
static const double e2e_b[] = {0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60};

loom_status srv_metrics_init(srv_metrics *m, int n_ranks) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->ttft.bounds = ttft_b, m->ttft.n = 16;
    m->itl.bounds = itl_b, m->itl.n = 16;
    m->e2e.bounds = e2e_b, m->e2e.n = 16;
    m->queue.bounds = e2e_b, m->queue.n = 16;
    m->ranks = calloc((size_t)(n_ranks > 0 ? n_ranks : 1), sizeof *m->ranks);
    m->n_ranks = n_ranks;
    return m->ranks ? NULL : loom_error(LOOM_ERR_NOMEM, "out of memory for metrics");
}

void srv_metrics_free(srv_metrics *m) {
    free(m->ranks);
    pthread_mutex_destroy(&m->mu);
}

void srv_hist_add(srv_hist *h, double v) {
    int i = 0;
    while (i < h->n && v > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

void srv_metrics_http(srv_metrics *m, int status) {
    pthread_mutex_lock(&m->mu);
    if (status == 429) m->http_429++;
    if (status >= 500) m->http_5xx++;
    else if (status >= 400) m->http_4xx++;
    else m->http_2xx++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_ranks(srv_metrics *m, const double *fig) {
    pthread_mutex_lock(&m->mu);
    for (int r = 0; r < m->n_ranks; r++) {
        srv_rank_stats *s = &m->ranks[r];
        const double *f = fig + 4 * r;
        if (f[3] <= 0) continue; /* no report from this rank yet */
        double dw = f[3] - s->wall_s, db = f[2] - s->busy_s;
        if (dw > 0) s->idle = 1 - db / dw;
        s->tp_s = f[0], s->pp_s = f[1], s->busy_s = f[2], s->wall_s = f[3];
    }
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    loom_strbuf *out;
    loom_status st;
} writer;

static void put(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(writer *w, const char *fmt, ...) {
    if (w->st) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) w->st = loom_strbuf_append(w->out, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void metric(writer *w, const char *name, const char *type, const char *help) {
    put(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist(writer *w, const char *name, const char *help, const srv_hist *h, const char *lbl) {
    metric(w, name, "histogram", help);
    uint64_t acc = 0;
    for (int i = 0; i <= h->n; i++) {
        acc += h->counts[i];
        if (i < h->n) put(w, "%s_bucket{%s,le=\"%g\"} %llu\n", name, lbl, h->bounds[i], (unsigned long long)acc);
        else put(w, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, lbl, (unsigned long long)acc);
    }
    put(w, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, lbl, h->sum, name, lbl, (unsigned long long)h->count);
}

loom_status srv_metrics_render(srv_metrics *m, const char *model, loom_strbuf *out) {
    writer w = {out, NULL};
    char lbl[300];
    snprintf(lbl, sizeof lbl, "model_name=\"%s\"", model); /* the model name is a file's base name, no quotes */
    pthread_mutex_lock(&m->mu);
    metric(&w, "loom_num_requests_running", "gauge", "Requests in the engine (prefilling or decoding).");
    put(&w, "loom_num_requests_running{%s} %d\n", lbl, m->running);
    metric(&w, "loom_num_requests_waiting", "gauge", "Requests waiting for a KV slot.");
    put(&w, "loom_num_requests_waiting{%s} %d\n", lbl, m->waiting);
    metric(&w, "loom_kv_cache_usage_perc", "gauge", "Share of KV cache blocks in use (1 = full).");
    put(&w, "loom_kv_cache_usage_perc{%s} %.6f\n", lbl, m->kv_usage);
    metric(&w, "loom_prompt_tokens_total", "counter", "Prompt tokens prefilled.");
    put(&w, "loom_prompt_tokens_total{%s} %llu\n", lbl, (unsigned long long)m->prompt_tokens);
    metric(&w, "loom_generation_tokens_total", "counter", "Tokens generated.");
    put(&w, "loom_generation_tokens_total{%s} %llu\n", lbl, (unsigned long long)m->generation_tokens);
    metric(&w, "loom_num_preemptions_total", "counter", "Sequences preempted for KV blocks (recomputed later).");
    put(&w, "loom_num_preemptions_total{%s} %llu\n", lbl, (unsigned long long)m->preemptions);
    metric(&w, "loom_prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.");
    put(&w, "loom_prefix_cache_queries_total{%s} %llu\n", lbl, (unsigned long long)m->prefix_queries);
    metric(&w, "loom_prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.");
    put(&w, "loom_prefix_cache_hits_total{%s} %llu\n", lbl, (unsigned long long)m->prefix_hits);
    metric(&w, "loom_spec_decode_num_draft_tokens_total", "counter", "Tokens proposed by speculative decoding.");
    put(&w, "loom_spec_decode_num_draft_tokens_total{%s} %llu\n", lbl, (unsigned long long)m->draft_tokens);
    metric(&w, "loom_spec_decode_num_accepted_tokens_total", "counter",
           "Proposed tokens that were the model's own (each saved a step).");
    put(&w, "loom_spec_decode_num_accepted_tokens_total{%s} %llu\n", lbl, (unsigned long long)m->draft_accepted);
    metric(&w, "loom_embedding_inputs_total", "counter", "Inputs embedded (rerank: query-document pairs scored).");
    put(&w, "loom_embedding_inputs_total{%s} %llu\n", lbl, (unsigned long long)m->embed_inputs);
    metric(&w, "loom_embedding_steps_total", "counter",
           "Engine steps that embedded them (inputs over steps: how many shared a step, across requests).");
    put(&w, "loom_embedding_steps_total{%s} %llu\n", lbl, (unsigned long long)m->embed_steps);
    metric(&w, "loom_request_success_total", "counter", "Requests finished, by finish reason.");
    put(&w, "loom_request_success_total{%s,finished_reason=\"stop\"} %llu\n", lbl, (unsigned long long)m->requests_ok);
    put(&w, "loom_request_success_total{%s,finished_reason=\"length\"} %llu\n", lbl,
        (unsigned long long)m->requests_length);
    put(&w, "loom_request_success_total{%s,finished_reason=\"abort\"} %llu\n", lbl,
        (unsigned long long)m->requests_cancelled);
    put(&w, "loom_request_success_total{%s,finished_reason=\"error\"} %llu\n", lbl,
        (unsigned long long)m->requests_error);
    metric(&w, "loom_http_responses_total", "counter", "HTTP responses by status class.");
    put(&w, "loom_http_responses_total{code=\"2xx\"} %llu\n", (unsigned long long)m->http_2xx);
    put(&w, "loom_http_responses_total{code=\"4xx\"} %llu\n", (unsigned long long)m->http_4xx);
    put(&w, "loom_http_responses_total{code=\"429\"} %llu\n", (unsigned long long)m->http_429);
    put(&w, "loom_http_responses_total{code=\"5xx\"} %llu\n", (unsigned long long)m->http_5xx);
    hist(&w, "loom_time_to_first_token_seconds", "Time from arrival to the first generated token.", &m->ttft, lbl);
    hist(&w, "loom_inter_token_latency_seconds", "Time between consecutive generated tokens.", &m->itl, lbl);
    hist(&w, "loom_e2e_request_latency_seconds", "Time from arrival to the last token.", &m->e2e, lbl);
    hist(&w, "loom_request_queue_time_seconds", "Time from arrival to admission into the engine.", &m->queue, lbl);
    metric(&w, "loom_rank_tp_collective_seconds_total", "counter", "Seconds a rank spent in TP collectives.");
    for (int r = 0; r < m->n_ranks; r++)
        put(&w, "loom_rank_tp_collective_seconds_total{rank=\"%d\"} %.6f\n", r, m->ranks[r].tp_s);
    metric(&w, "loom_rank_stage_transfer_seconds_total", "counter",
           "Seconds a rank spent in stage-to-stage transfers (waiting for a peer included).");
    for (int r = 0; r < m->n_ranks; r++)
        put(&w, "loom_rank_stage_transfer_seconds_total{rank=\"%d\"} %.6f\n", r, m->ranks[r].pp_s);
    metric(&w, "loom_rank_busy_seconds_total", "counter", "Seconds a rank spent computing its part of steps.");
    for (int r = 0; r < m->n_ranks; r++)
        put(&w, "loom_rank_busy_seconds_total{rank=\"%d\"} %.6f\n", r, m->ranks[r].busy_s);
    metric(&w, "loom_rank_idle_ratio", "gauge",
           "Share of a rank's time not spent computing over the last report window (about 2 s): pipeline "
           "bubble, waits for peers, an idle server.");
    for (int r = 0; r < m->n_ranks; r++) put(&w, "loom_rank_idle_ratio{rank=\"%d\"} %.6f\n", r, m->ranks[r].idle);
    pthread_mutex_unlock(&m->mu);
    return w.st;
}
