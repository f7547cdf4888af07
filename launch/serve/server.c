/*
 * launch/serve/server.c — the life of the server and its scheduler thread
 * (contract in server.h; shared state in server_internal.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "launch/serve/harmony.h"
#include "launch/serve/server_internal.h"
#include "runtime/clock.h"

/* ------------------------------------------------------------ requests */

static void free_strings(char **s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

/* *out: copies of s[0..n) (NULL when n is 0); false when out of memory. */
static bool copy_strings(const char *const *s, int n, char ***out) {
    *out = NULL;
    if (n <= 0) return true;
    char **c = calloc((size_t)n, sizeof *c);
    for (int i = 0; c && i < n; i++)
        if (!(c[i] = strdup(s[i]))) {
            free_strings(c, n);
            return false;
        }
    *out = c;
    return c != NULL;
}

srv_req *srv_req_new(const int32_t *prompt, int n_prompt, const loom_request *r) {
    srv_req *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->prompt = malloc((size_t)(n_prompt > 0 ? n_prompt : 1) * sizeof(int32_t));
    if (!q->prompt) {
        free(q);
        return NULL;
    }
    memcpy(q->prompt, prompt, (size_t)n_prompt * sizeof(int32_t));
    const size_t nb = (size_t)(r->sampling.n_logit_bias > 0 ? r->sampling.n_logit_bias : 0);
    const size_t np = (size_t)(r->n_prediction > 0 ? r->n_prediction : 0);
    if ((r->sampling.json_schema && !(q->schema = strdup(r->sampling.json_schema))) ||
        (r->sampling.grammar && !(q->grammar = strdup(r->sampling.grammar))) ||
        !copy_strings(r->sampling.dry_breakers, r->sampling.n_dry_breakers, &q->dry_breakers) ||
        (nb && (!(q->bias_token = malloc(nb * sizeof *q->bias_token)) ||
                !(q->bias_value = malloc(nb * sizeof *q->bias_value)))) ||
        (np && !(q->pred = malloc(np * sizeof *q->pred)))) {
        free(q->prompt), free(q->schema), free(q->grammar), free(q->bias_token), free(q->bias_value), free(q->pred);
        free_strings(q->dry_breakers, r->sampling.n_dry_breakers);
        free(q);
        return NULL;
    }
    if (np) memcpy(q->pred, r->prediction, np * sizeof *q->pred);
    if (nb) {
        memcpy(q->bias_token, r->sampling.bias_token, nb * sizeof *q->bias_token);
        memcpy(q->bias_value, r->sampling.bias_value, nb * sizeof *q->bias_value);
    }
    q->r = *r;
    /* the scheduler reads these until the sequence ends */
    q->r.sampling.json_schema = q->schema;
    q->r.sampling.grammar = q->grammar;
    q->r.sampling.dry_breakers = (const char *const *)q->dry_breakers;
    q->r.sampling.bias_token = q->bias_token, q->r.sampling.bias_value = q->bias_value;
    q->r.prompt = q->prompt;
    q->r.n_prompt = n_prompt;
    q->r.prediction = q->pred;
    if (r->n_lora > 0) memcpy(q->lora, r->lora, sizeof(float) * (size_t)(r->n_lora < SRV_MAX_LORA ? r->n_lora : SRV_MAX_LORA));
    q->r.lora = q->lora;
    q->top = r->logprobs ? r->top_logprobs : 0;
    q->refs = 1;
    q->t_arrive = loom_now_s();
    pthread_cond_init(&q->cv, NULL);
    return q;
}

static void req_free(srv_req *q) {
    pthread_cond_destroy(&q->cv);
    free(q->prompt);
    free(q->schema);
    free(q->grammar);
    free_strings(q->dry_breakers, q->r.sampling.n_dry_breakers);
    free(q->bias_token);
    free(q->bias_value);
    free(q->pred);
    free(q->toks);
    free(q->lp);
    free(q->top_ids);
    free(q->top_lp);
    free(q->error);
    free(q);
}

static void unref_locked(srv_req *q) {
    if (--q->refs == 0) req_free(q);
}

void srv_req_unref(srv *s, srv_req *q) {
    pthread_mutex_lock(&s->mu);
    unref_locked(q);
    pthread_mutex_unlock(&s->mu);
}

uint64_t srv_next_seed(srv *s) {
    pthread_mutex_lock(&s->mu);
    uint64_t x = ++s->seed_counter ^ ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    pthread_mutex_unlock(&s->mu);
    x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33; /* spread the bits */
    return x;
}

bool srv_submit(srv *s, srv_req *q, srv_error *e) {
    pthread_mutex_lock(&s->mu);
    bool ok = false;
    if (s->failed)
        srv_fail(e, 503, "server_error", NULL, NULL, "the engine failed: %s", s->fail_msg);
    else if (!s->accepting)
        srv_fail(e, 503, "server_error", NULL, NULL, "the server is shutting down");
    else if (s->n_queued + s->sched_waiting >= s->opt.max_queue)
        srv_fail(e, 429, "rate_limit_exceeded", NULL, "queue_full",
                 "%d requests are waiting already (--max-queue); retry later", s->n_queued + s->sched_waiting);
    else
        ok = true;
    if (ok && q->r.n_lora == 0 && s->n_lora) { /* the server's current scales */
        memcpy(q->lora, s->lora, sizeof(float) * (size_t)s->n_lora);
        q->r.n_lora = s->n_lora;
    }
    if (ok) {
        q->refs++;
        q->next = NULL;
        if (s->queue_tail) s->queue_tail->next = q;
        else s->queue_head = q;
        s->queue_tail = q;
        s->n_queued++;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

int srv_lora_by_name(const srv *s, const char *name) {
    for (int i = 0; name && i < s->n_lora; i++)
        if (!strcmp(s->lora_name[i], name)) return i;
    return -1;
}

void srv_cancel(srv *s, srv_req *q) {
    pthread_mutex_lock(&s->mu);
    if (!q->done && !q->cancel) {
        q->cancel = true;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------ scheduler callbacks */

static srv_req *find_active(srv *s, uint64_t id, int *at) {
    for (int i = 0; i < s->n_active; i++)
        if (s->active[i]->id == id) {
            if (at) *at = i;
            return s->active[i];
        }
    return NULL;
}

/* Marks q finished and drops the scheduler's reference (s->mu held). */
static void finish_locked(srv *s, srv_req *q, const char *reason, const char *error) {
    int at = -1;
    if (q->submitted && find_active(s, q->id, &at)) s->active[at] = s->active[--s->n_active];
    q->done = true;
    snprintf(q->finish, sizeof q->finish, "%s", reason);
    if (error && !q->error) q->error = strdup(error);
    pthread_cond_broadcast(&q->cv);
    unref_locked(q);
}

static bool grow_tokens(srv_req *q) {
    if (q->n < q->cap) return true;
    int cap = q->cap ? 2 * q->cap : 64;
    int32_t *t = realloc(q->toks, (size_t)cap * sizeof *t);
    if (!t) return false;
    q->toks = t;
    if (q->r.logprobs) {
        float *lp = realloc(q->lp, (size_t)cap * sizeof *lp);
        if (lp) q->lp = lp;
        int32_t *ti = realloc(q->top_ids, (size_t)cap * (size_t)(q->top ? q->top : 1) * sizeof *ti);
        if (ti) q->top_ids = ti;
        float *tl = realloc(q->top_lp, (size_t)cap * (size_t)(q->top ? q->top : 1) * sizeof *tl);
        if (tl) q->top_lp = tl;
        if (!lp || !ti || !tl) return false;
    }
    q->cap = cap;
    return true;
}

static void on_token(void *user, uint64_t id, int32_t token, const loom_token_logprobs *lp) {
    srv *s = user;
    double t = loom_now_s();
    pthread_mutex_lock(&s->mu);
    srv_req *q = find_active(s, id, NULL);
    if (q && grow_tokens(q)) {
        q->toks[q->n] = token;
        if (q->r.logprobs) {
            q->lp[q->n] = lp ? lp->logprob : 0;
            for (int k = 0; k < q->top; k++) {
                bool have = lp && k < lp->n_top;
                q->top_ids[(size_t)q->n * q->top + k] = have ? lp->top_ids[k] : -1;
                q->top_lp[(size_t)q->n * q->top + k] = have ? lp->top_logprobs[k] : 0;
            }
        }
        q->n++;
        pthread_mutex_lock(&s->metrics.mu);
        s->metrics.generation_tokens++;
        if (q->n == 1) srv_hist_add(&s->metrics.ttft, t - q->t_arrive);
        else srv_hist_add(&s->metrics.itl, t - q->t_last);
        pthread_mutex_unlock(&s->metrics.mu);
        if (q->n == 1) q->t_first = t;
        q->t_last = t;
        pthread_cond_broadcast(&q->cv);
    } else if (q) {
        finish_locked(s, q, "error", "out of memory for generated tokens");
    }
    pthread_mutex_unlock(&s->mu);
}

static bool is_eog(void *user, int32_t token) { return loom_tokenizer_is_eog(((srv *)user)->tok, token); }

static void on_finish(void *user, const loom_finished *f) {
    srv *s = user;
    pthread_mutex_lock(&s->mu);
    srv_req *q = find_active(s, f->id, NULL);
    if (q) {
        pthread_mutex_lock(&s->metrics.mu);
        srv_metrics *m = &s->metrics;
        if (!strcmp(f->stop_reason, "stop")) m->requests_ok++;
        else if (!strcmp(f->stop_reason, "length")) m->requests_length++;
        else m->requests_error++;
        srv_hist_add(&m->e2e, loom_now_s() - q->t_arrive);
        srv_hist_add(&m->queue, f->queue_ms / 1e3);
        pthread_mutex_unlock(&m->mu);
        q->draft_tokens = f->draft_tokens, q->draft_accepted = f->draft_accepted;
        q->n_cached = f->n_cached, q->prompt_ms = f->prompt_ms;
        finish_locked(s, q, f->stop_reason, f->error);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------ the scheduler thread */

/* New requests into the scheduler, cancellations out (s->mu held). */
static void intake(srv *s) {
    while (s->queue_head) {
        srv_req *q = s->queue_head;
        s->queue_head = q->next;
        if (!s->queue_head) s->queue_tail = NULL;
        s->n_queued--;
        if (q->cancel) {
            finish_locked(s, q, "cancelled", NULL);
            continue;
        }
        uint64_t id;
        loom_status st = loom_scheduler_submit(s->sched, &q->r, &id);
        if (st) { /* the HTTP side checked everything it could; this is a last guard */
            finish_locked(s, q, "error", loom_status_message(st));
            loom_status_free(st);
            continue;
        }
        if (s->n_active == s->cap_active) {
            int cap = s->cap_active ? 2 * s->cap_active : 64;
            srv_req **a = realloc(s->active, (size_t)cap * sizeof *a);
            if (!a) {
                (void)loom_scheduler_cancel(s->sched, id);
                finish_locked(s, q, "error", "out of memory");
                continue;
            }
            s->active = a;
            s->cap_active = cap;
        }
        q->id = id;
        q->submitted = true;
        s->active[s->n_active++] = q;
        pthread_mutex_lock(&s->metrics.mu);
        s->metrics.prompt_tokens += (uint64_t)q->r.n_prompt;
        pthread_mutex_unlock(&s->metrics.mu);
    }
    for (int i = 0; i < s->n_active;) {
        srv_req *q = s->active[i];
        if (!q->cancel) {
            i++;
            continue;
        }
        (void)loom_scheduler_cancel(s->sched, q->id);
        pthread_mutex_lock(&s->metrics.mu);
        s->metrics.requests_cancelled++;
        pthread_mutex_unlock(&s->metrics.mu);
        finish_locked(s, q, "cancelled", NULL); /* removes q from active */
    }
}

static void update_gauges(srv *s) {
    int running = loom_scheduler_running(s->sched), pending = loom_scheduler_pending(s->sched);
    s->sched_waiting = pending - running;
    s->sched_pending = pending;
    loom_run_stats rs = loom_scheduler_stats(s->sched);
    pthread_mutex_lock(&s->metrics.mu);
    s->metrics.running = running;
    s->metrics.waiting = s->sched_waiting + s->n_queued;
    s->metrics.kv_usage = loom_scheduler_kv_usage(s->sched);
    s->metrics.preemptions = (uint64_t)rs.preemptions;
    s->metrics.prefix_queries = (uint64_t)rs.prefix_queries;
    s->metrics.prefix_hits = (uint64_t)rs.prefix_hits;
    s->metrics.draft_tokens = (uint64_t)rs.draft_tokens;
    s->metrics.draft_accepted = (uint64_t)rs.draft_accepted;
    pthread_mutex_unlock(&s->metrics.mu);
}

static void *sched_main(void *arg) {
    srv *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop_sched) {
        intake(s);
        srv_embed_run(s);
        update_gauges(s);
        if (loom_now_s() - s->last_report > 2.0) { /* the ranks' figures, about every 2 s */
            s->last_report = loom_now_s();
            loom_engine_rank_figures(s->e, s->figures);
            srv_metrics_ranks(&s->metrics, s->figures);
            loom_engine_request_report(s->e);
        }
        if (loom_scheduler_pending(s->sched) == 0 && !s->embed_head) {
            s->last_step = loom_now_s();
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&s->work, &s->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        loom_status st = loom_scheduler_step(s->sched); /* callbacks take s->mu */
        pthread_mutex_lock(&s->mu);
        s->last_step = loom_now_s();
        if (st) {
            s->failed = true;
            snprintf(s->fail_msg, sizeof s->fail_msg, "%s", loom_status_message(st));
            fprintf(stderr, "loom serve: the engine failed: %s\n", s->fail_msg);
            loom_status_free(st);
            break;
        }
    }
    /* requests still queued or running end here */
    while (s->queue_head) {
        srv_req *q = s->queue_head;
        s->queue_head = q->next;
        s->n_queued--;
        finish_locked(s, q, "error", s->failed ? s->fail_msg : "the server stopped");
    }
    s->queue_tail = NULL;
    while (s->n_active > 0) finish_locked(s, s->active[0], "error", s->failed ? s->fail_msg : "the server stopped");
    srv_embed_fail_all(s, s->failed ? s->fail_msg : "the server stopped");
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ------------------------------------------------------------ run */

void loom_server_block_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Waits for a shutdown signal or an engine failure; true for a signal. */
static bool wait_for_end(srv *s) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    for (;;) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            fprintf(stderr, "loom serve: %s: no new requests; finishing the running ones\n",
                    sig == SIGTERM ? "SIGTERM" : "SIGINT");
            return true;
        }
        pthread_mutex_lock(&s->mu);
        bool failed = s->failed;
        pthread_mutex_unlock(&s->mu);
        if (failed) return false;
    }
}

loom_status loom_server_run(const loom_server_options *o, loom_cluster *cluster, loom_engine *e,
                            const loom_tokenizer *tok, const loom_chat_template *tmpl) {
    srv *s = calloc(1, sizeof *s);
    if (!s) return loom_error(LOOM_ERR_NOMEM, "out of memory starting the server");
    s->opt = *o;
    s->cluster = cluster;
    s->e = e;
    s->tok = tok;
    s->tmpl = tmpl;
    s->harmony = tmpl && srv_harmony_template(tmpl);
    if (tmpl) { /* a converter makes such markers control tokens where the model's tokenizer calls them special */
        static const char *const calls[] = {"<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>",
                                            "</arg_value>", NULL};
        /* DeepSeek's and Kimi's calls: the tags around each call; those around the section stay silent */
        static const char *const deepseek[] = {"<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>", NULL};
        static const char *const kimi[] = {"<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>",
                                           NULL};
        static const char *const mistral[] = {"[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", NULL};
        const loom_tool_syntax ts = loom_chat_template_tool_syntax(tmpl);
        const loom_think_tags *tt = loom_chat_template_think_tags(tmpl);
        const char *const think[] = {tt ? tt->open : NULL, tt ? tt->close : NULL, NULL};
        const char *const *sets[2] = {think,
                                      ts == LOOM_TOOLS_DEEPSEEK ? deepseek
                                      : ts == LOOM_TOOLS_KIMI   ? kimi
                                      : ts == LOOM_TOOLS_MISTRAL ? mistral
                                      : ts == LOOM_TOOLS_HERMES || ts == LOOM_TOOLS_GLM || ts == LOOM_TOOLS_XML
                                          ? calls
                                          : NULL};
        for (int k = 0; k < 2; k++)
            for (const char *const *m = sets[k]; m && *m; m++) {
                const int32_t id = loom_token_lookup(tok, *m, strlen(*m));
                if (id < 0 || !loom_tokenizer_is_control(tok, id)) continue;
                if (!s->keep) s->keep = calloc((size_t)loom_tokenizer_n_vocab(tok), 1);
                if (s->keep) s->keep[id] = 1;
            }
    }
    s->ctx_size = loom_engine_options_of(e)->ctx_size;
    s->n_lora = loom_engine_n_lora(e);
    for (int i = 0; i < s->n_lora; i++) { /* a name: the file's stem */
        const char *path = loom_engine_lora_path(e, i), *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        size_t n = strlen(base);
        if (n > 5 && !strcmp(base + n - 5, ".gguf")) n -= 5;
        snprintf(s->lora_name[i], sizeof s->lora_name[i], "%.*s", (int)n, base);
        s->lora[i] = loom_engine_lora_defaults(e)[i];
    }
    s->accepting = true;
    s->last_step = loom_now_s();
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    loom_callbacks cb = {.on_token = on_token, .on_finish = on_finish, .is_eog = is_eog, .user = s};
    loom_status st = srv_metrics_init(&s->metrics, loom_cluster_size(cluster));
    s->figures = calloc((size_t)loom_cluster_size(cluster) * 4, sizeof(double));
    if (!st && !s->figures) st = loom_error(LOOM_ERR_NOMEM, "out of memory starting the server");
    loom_scheduler_options schedo = o->sched;
    if (!st) st = loom_scheduler_create(e, &cb, &schedo, &s->sched);
    bool thread = false;
    if (!st) {
        thread = pthread_create(&s->sched_thread, NULL, sched_main, s) == 0;
        if (!thread) st = loom_error(LOOM_ERR_NOMEM, "cannot start the scheduler thread");
    }
    if (!st) st = srv_http_start(s);
    if (!st) {
        fprintf(stderr, "loom serve: listening on http://%s:%d (model \"%s\", %d positions per sequence)\n", o->host,
                o->port, o->model_name, s->ctx_size);
        if (o->pid_file) {
            FILE *f = fopen(o->pid_file, "w");
            if (f) fprintf(f, "%d\n", (int)getpid());
            if (!f || fclose(f) != 0) fprintf(stderr, "loom serve: cannot write %s: %s\n", o->pid_file, strerror(errno));
        }
        bool signalled = wait_for_end(s);
        pthread_mutex_lock(&s->mu);
        s->accepting = false;
        pthread_mutex_unlock(&s->mu);
        if (s->mhd) MHD_quiesce_daemon(s->mhd);
        /* drain: running requests finish, their clients get the rest */
        double t0 = loom_now_s();
        for (;;) {
            pthread_mutex_lock(&s->mu);
            bool busy = s->http_jobs > 0 || s->n_queued > 0 || s->sched_pending > 0;
            pthread_mutex_unlock(&s->mu);
            if (!busy || !signalled || loom_now_s() - t0 > o->drain_timeout_s) break;
            usleep(20 * 1000);
        }
        pthread_mutex_lock(&s->mu);
        if (s->failed) st = loom_error(LOOM_ERR_PEER, "the engine failed: %s", s->fail_msg);
        pthread_mutex_unlock(&s->mu);
    }
    if (thread) {
        pthread_mutex_lock(&s->mu);
        s->stop_sched = true;
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->sched_thread, NULL);
    }
    if (s->mhd) MHD_stop_daemon(s->mhd); /* waits for the connection threads */
    if (o->pid_file) unlink(o->pid_file);
    loom_scheduler_free(s->sched);
    free(s->active);
    free(s->keep);
    free(s->figures);
    srv_metrics_free(&s->metrics);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return st;
}
