#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_cache.h"
#include "stage.h"
#include "threadpool.h"

struct loom_engine {
    loom_engine_options opt;
    loom_model_config cfg;
    loom_weights *w;
    loom_kv_cache *kv;
    loom_pool *pool;
    loom_stage *stage;
    float *logits;       /* (batch_rows, vocab) */
    int32_t *b_token, *b_pos, *b_seq; /* (batch_rows) batch rows */
    int8_t *b_logits;
    int *b_owner;        /* (batch_rows) index into the active list */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

loom_engine_options loom_engine_defaults(void) {
    loom_engine_options o = {0};
    o.n_threads = loom_cpu_count();
    o.ctx_size = 4096;
    o.max_seqs = 8;
    o.kv_type = LOOM_TYPE_F16;
    o.batch_rows = 256;
    o.block_tokens = 16;
    return o;
}

void loom_result_free(loom_result *r) {
    if (!r) return;
    free(r->tokens);
    free(r->error);
    memset(r, 0, sizeof *r);
}

/* Reads one byte per page of a weight so its pages are resident before the
 * first token (mmap loads lazily); reports progress. */
static volatile uint8_t prefault_sink;
static void prefault(const void *p, size_t n) {
    const volatile uint8_t *b = p;
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i += 4096) acc ^= b[i];
    if (n) acc ^= b[n - 1];
    prefault_sink = acc;
}
static size_t mat_bytes(const loom_mat *m) { return m->data ? (size_t)m->rows * m->stride : 0; }

static void prefault_weights(const loom_weights *w, void (*progress)(void *, double), void *user) {
    int nl = w->shard.layer_end - w->shard.layer_begin;
    size_t total = mat_bytes(&w->embed) + mat_bytes(&w->lm_head), done = 0;
    for (int l = 0; l < nl; l++) {
        const loom_layer *L = &w->layers[l];
        total += mat_bytes(&L->wq) + mat_bytes(&L->wk) + mat_bytes(&L->wv) + mat_bytes(&L->wo) +
                 mat_bytes(&L->w_gate) + mat_bytes(&L->w_up) + mat_bytes(&L->w_down);
    }
    const loom_mat *heads[2] = {&w->embed, &w->lm_head};
    for (int i = 0; i < 2; i++) {
        prefault(heads[i]->data, mat_bytes(heads[i]));
        done += mat_bytes(heads[i]);
    }
    for (int l = 0; l < nl; l++) {
        const loom_layer *L = &w->layers[l];
        const loom_mat *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
            prefault(ms[i]->data, mat_bytes(ms[i]));
            done += mat_bytes(ms[i]);
        }
        if (progress && total) progress(user, (double)done / (double)total);
    }
    if (progress) progress(user, 1.0);
}

loom_status loom_engine_create(const loom_gguf *g, const loom_engine_options *o,
                               void (*progress)(void *user, double frac), void *user, loom_engine **out) {
    *out = NULL;
    if (o->ctx_size < 1 || o->max_seqs < 1 || o->batch_rows < 1 || o->block_tokens < 1 || o->n_threads < 1)
        return loom_error(LOOM_ERR_INVALID,
                          "engine options out of range: context %d, sequences %d, batch %d, block %d, threads %d",
                          o->ctx_size, o->max_seqs, o->batch_rows, o->block_tokens, o->n_threads);
    loom_engine *e = calloc(1, sizeof *e);
    if (!e) return loom_error(LOOM_ERR_NOMEM, "out of memory creating the engine");
    e->opt = *o;
    loom_status st = loom_model_config_read(g, &e->cfg);
    loom_shard shard = loom_shard_full(&e->cfg);
    if (!st) st = loom_weights_create(g, &e->cfg, &shard, &e->w);
    if (!st) {
        loom_kv_config kc = {
            .n_layers = e->cfg.n_layers,
            .n_kv_heads = e->cfg.n_kv_heads,
            .head_dim = e->cfg.head_dim,
            .type = o->kv_type,
            .block_tokens = o->block_tokens,
            .n_blocks = loom_kv_blocks_for(o->max_seqs, o->ctx_size, o->block_tokens),
            .max_seqs = o->max_seqs + 1, /* one spare slot for scoring */
            .max_ctx = o->ctx_size,
        };
        st = loom_kv_create(&kc, &e->kv);
    }
    if (!st) st = loom_pool_create(o->n_threads, &e->pool);
    if (!st) st = loom_stage_create(e->w, e->kv, e->pool, NULL, o->batch_rows, &e->stage);
    if (!st) {
        size_t R = (size_t)o->batch_rows;
        e->logits = malloc(R * (size_t)e->cfg.vocab * sizeof(float));
        e->b_token = malloc(R * sizeof(int32_t));
        e->b_pos = malloc(R * sizeof(int32_t));
        e->b_seq = malloc(R * sizeof(int32_t));
        e->b_logits = malloc(R);
        e->b_owner = malloc(R * sizeof(int));
        if (!e->logits || !e->b_token || !e->b_pos || !e->b_seq || !e->b_logits || !e->b_owner)
            st = loom_error(LOOM_ERR_NOMEM, "out of memory for a batch of %d rows", o->batch_rows);
    }
    if (st) {
        loom_engine_free(e);
        return st;
    }
    prefault_weights(e->w, progress, user);
    *out = e;
    return NULL;
}

void loom_engine_free(loom_engine *e) {
    if (!e) return;
    loom_stage_free(e->stage);
    loom_pool_free(e->pool);
    loom_kv_free(e->kv);
    loom_weights_free(e->w);
    free(e->logits);
    free(e->b_token);
    free(e->b_pos);
    free(e->b_seq);
    free(e->b_logits);
    free(e->b_owner);
    free(e);
}

const loom_model_config *loom_engine_model(const loom_engine *e) { return &e->cfg; }
const loom_weights *loom_engine_weights(const loom_engine *e) { return e->w; }
const loom_engine_options *loom_engine_options_of(const loom_engine *e) { return &e->opt; }

/* ------------------------------------------------------------ step loop */

typedef struct {
    int req;
    int slot;
    int32_t *toks;     /* prompt then generated, (n_prompt + max_tokens) */
    int n_prompt, n_toks;
    int n_done;        /* positions whose keys/values are in the cache */
    int limit;         /* n_toks at which generation stops with "length" */
    loom_sampler *smp;
    double t_admit, t_first, t_last;
} seq_state;

static void finish(seq_state *s, loom_result *r, const char *reason) {
    r->n_tokens = s->n_toks - s->n_prompt;
    r->tokens = malloc((size_t)(r->n_tokens ? r->n_tokens : 1) * sizeof(int32_t));
    if (r->tokens) memcpy(r->tokens, s->toks + s->n_prompt, (size_t)r->n_tokens * sizeof(int32_t));
    r->stop_reason = reason;
    r->prompt_ms = s->t_first > 0 ? 1e3 * (s->t_first - s->t_admit) : 0;
    r->gen_ms = s->t_first > 0 ? 1e3 * (s->t_last - s->t_first) : 0;
    loom_sampler_free(s->smp);
    free(s->toks);
    memset(s, 0, sizeof *s);
}

static void fail_request(loom_result *r, loom_status st) {
    r->stop_reason = "error";
    r->error = strdup(loom_status_message(st));
    loom_status_free(st);
}

loom_status loom_engine_run(loom_engine *e, const loom_request *reqs, int n, const loom_callbacks *cb,
                            loom_result *results, loom_run_stats *stats) {
    loom_run_stats local = {0};
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    memset(results, 0, (size_t)n * sizeof *results);
    int S = e->opt.max_seqs, ctx = e->opt.ctx_size, vocab = e->cfg.vocab;
    seq_state *act = calloc((size_t)S, sizeof *act); /* slot i ↔ act[i]; req < 0 marks free */
    if (!act) return loom_error(LOOM_ERR_NOMEM, "out of memory for %d sequences", S);
    for (int i = 0; i < S; i++) act[i].req = -1;
    int next = 0, n_active = 0;
    loom_status st = NULL;
    double comm0 = loom_stage_comm_seconds(e->stage);

    while (!st && (next < n || n_active > 0)) {
        /* admit waiting requests in order while a slot and their KV budget are free */
        while (next < n && n_active < S) {
            const loom_request *r = &reqs[next];
            loom_result *res = &results[next];
            loom_status bad = NULL;
            if (r->n_prompt < 1) bad = loom_error(LOOM_ERR_INVALID, "request %d: the prompt is empty", next);
            else if (r->n_prompt > ctx)
                bad = loom_error(LOOM_ERR_CONTEXT, "request %d: prompt of %d tokens does not fit the context size %d",
                                 next, r->n_prompt, ctx);
            else if (r->max_tokens < 0)
                bad = loom_error(LOOM_ERR_INVALID, "request %d: max_tokens %d is negative", next, r->max_tokens);
            else if ((bad = loom_sampling_check(&r->sampling)))
                bad = loom_error_wrap(bad, "request %d", next);
            if (!bad)
                for (int i = 0; i < r->n_prompt && !bad; i++)
                    if (r->prompt[i] < 0 || r->prompt[i] >= vocab)
                        bad = loom_error(LOOM_ERR_INVALID, "request %d: prompt token %d at index %d is outside the vocabulary (0..%d)",
                                         next, r->prompt[i], i, vocab - 1);
            if (bad) {
                fail_request(res, bad);
                next++;
                continue;
            }
            if (r->max_tokens == 0) {
                res->stop_reason = "length";
                next++;
                continue;
            }
            int slot = 0;
            while (act[slot].req >= 0) slot++;
            int limit = r->n_prompt + r->max_tokens;
            int positions = limit < ctx ? limit : ctx;
            int missing = loom_kv_blocks_missing(e->kv, slot, positions);
            if (missing > loom_kv_free_blocks(e->kv)) {
                if (n_active > 0) break; /* wait for a running sequence to finish */
                fail_request(res, loom_error(LOOM_ERR_KV_FULL,
                                             "request %d needs %d KV blocks but the cache has %d free", next, missing,
                                             loom_kv_free_blocks(e->kv)));
                next++;
                continue;
            }
            seq_state *s = &act[slot];
            s->toks = malloc((size_t)limit * sizeof(int32_t));
            loom_status cs = s->toks ? loom_sampler_create(&r->sampling, vocab, &s->smp)
                                     : loom_error(LOOM_ERR_NOMEM, "out of memory for request %d", next);
            if (!cs) cs = loom_kv_reserve(e->kv, slot, positions);
            if (cs) {
                loom_sampler_free(s->smp);
                free(s->toks);
                memset(s, 0, sizeof *s);
                s->req = -1;
                fail_request(res, cs);
                next++;
                continue;
            }
            memcpy(s->toks, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
            for (int i = 0; i < r->n_prompt; i++) loom_sampler_accept(s->smp, r->prompt[i]);
            s->req = next;
            s->slot = slot;
            s->n_prompt = s->n_toks = r->n_prompt;
            s->limit = limit < ctx ? limit : ctx;
            if (s->limit < s->n_prompt + 1) s->limit = s->n_prompt + 1; /* a full-context prompt still yields one token */
            s->t_admit = now_s();
            stats->prompt_tokens += r->n_prompt;
            n_active++;
            next++;
        }
        if (n_active == 0) continue;

        /* build the batch: decode rows first, then prompt chunks */
        int rows = 0, R = e->opt.batch_rows;
        bool has_prefill = false;
        for (int i = 0; i < S && rows < R; i++) {
            seq_state *s = &act[i];
            if (s->req < 0 || s->n_done < s->n_prompt) continue;
            e->b_token[rows] = s->toks[s->n_done];
            e->b_pos[rows] = s->n_done;
            e->b_seq[rows] = s->slot;
            e->b_logits[rows] = 1;
            e->b_owner[rows] = i;
            rows++;
        }
        for (int i = 0; i < S && rows < R; i++) {
            seq_state *s = &act[i];
            if (s->req < 0 || s->n_done >= s->n_prompt) continue;
            has_prefill = true;
            int take = s->n_prompt - s->n_done;
            if (take > R - rows) take = R - rows;
            for (int j = 0; j < take; j++) {
                int p = s->n_done + j;
                e->b_token[rows] = s->toks[p];
                e->b_pos[rows] = p;
                e->b_seq[rows] = s->slot;
                e->b_logits[rows] = p == s->n_prompt - 1;
                e->b_owner[rows] = i;
                rows++;
            }
        }
        loom_batch b = {rows, e->b_token, NULL, e->b_pos, e->b_seq, e->b_logits};
        double t0 = now_s();
        float *hidden;
        int n_logits = 0;
        st = loom_stage_forward(e->stage, &b, &hidden, e->logits, &n_logits);
        if (st) break;

        /* sample once per sequence that asked, in row order */
        int li = 0;
        double t1 = now_s();
        for (int r = 0; r < rows; r++) {
            seq_state *s = &act[e->b_owner[r]];
            s->n_done++;
            if (!e->b_logits[r]) continue;
            int32_t tok = loom_sampler_sample(s->smp, e->logits + (size_t)li++ * vocab);
            loom_sampler_accept(s->smp, tok);
            s->toks[s->n_toks++] = tok;
            if (s->t_first == 0) s->t_first = t1;
            s->t_last = t1;
            stats->gen_tokens++;
            if (!has_prefill) stats->decode_tokens++;
            int req = s->req;
            if (cb && cb->on_token) cb->on_token(cb->user, req, tok);
            const char *reason = NULL;
            if (!reqs[req].ignore_eos && cb && cb->is_eog && cb->is_eog(cb->user, tok)) reason = "stop";
            else if (s->n_toks >= s->limit) reason = "length";
            if (reason) {
                loom_kv_release(e->kv, s->slot);
                finish(s, &results[req], reason);
                s->req = -1;
                n_active--;
            }
        }
        double dt = now_s() - t0;
        if (has_prefill) stats->prefill_s += dt;
        else stats->decode_s += dt;
        stats->steps++;
    }
    for (int i = 0; i < S; i++)
        if (act[i].req >= 0) {
            loom_kv_release(e->kv, act[i].slot);
            finish(&act[i], &results[act[i].req], "error");
        }
    stats->comm_s = loom_stage_comm_seconds(e->stage) - comm0;
    free(act);
    return st;
}

loom_status loom_engine_score(loom_engine *e, const int32_t *tokens, int n, float *logits) {
    int slot = e->opt.max_seqs; /* the spare slot */
    LOOM_TRY(loom_kv_reserve(e->kv, slot, n));
    loom_status st = NULL;
    int R = e->opt.batch_rows;
    for (int p0 = 0; p0 < n && !st; p0 += R) {
        int rows = n - p0 < R ? n - p0 : R;
        for (int j = 0; j < rows; j++) {
            e->b_token[j] = tokens[p0 + j];
            e->b_pos[j] = p0 + j;
            e->b_seq[j] = slot;
            e->b_logits[j] = 1;
        }
        loom_batch b = {rows, e->b_token, NULL, e->b_pos, e->b_seq, e->b_logits};
        float *hidden;
        int n_logits;
        st = loom_stage_forward(e->stage, &b, &hidden, logits + (size_t)p0 * e->cfg.vocab, &n_logits);
    }
    loom_kv_release(e->kv, slot);
    return st;
}
