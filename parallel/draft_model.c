/*
 * parallel/draft_model.c — a draft model's proposals (contract in
 * draft_model.h).
 */
#include "parallel/draft_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/stage.h"
#include "runtime/clock.h"
#include "runtime/kv_cache.h"
#include "runtime/model.h"
#include "runtime/sampler.h"

#define DRAFT_BLOCK_TOKENS 16

struct loom_drafter {
    loom_gguf *g;
    loom_model_config cfg;
    loom_weights *w;
    loom_kv_cache *kv;
    loom_stage *stage;
    loom_drafter_options o;
    int R;              /* rows per forward */
    int target_vocab;
    int32_t *hist;      /* (max_seqs, ctx) the token whose keys and values each position holds */
    int *n_hist;        /* (max_seqs) */
    int32_t *b_tok, *b_pos, *b_seq; /* (R) */
    int8_t *b_logits;   /* (R) */
    int *b_req;         /* (R) the request of a row that wants logits */
    bool *stopped;      /* (max_seqs) per request of a call: no more proposals */
    int *from;          /* (max_seqs) per request of a call: the first position to compute */
    float *logits;      /* (max_seqs, n_vocab) */
    double seconds;
    double t_step;      /* moving average of a one-row-per-sequence pass */
    double t_row;       /* moving average of a row of catching up (batches of 32 rows or more) */
    int64_t rows;
};

static bool str_eq(loom_str a, loom_str b) { return a.len == b.len && !memcmp(a.ptr, b.ptr, a.len); }

/* The draft model's ids must mean the target's texts. */
static loom_status check_vocab(const loom_gguf *target, const loom_gguf *draft) {
    const loom_gguf_value *t = loom_gguf_get_arr(target, "tokenizer.ggml.tokens", LOOM_GGUF_STRING),
                          *d = loom_gguf_get_arr(draft, "tokenizer.ggml.tokens", LOOM_GGUF_STRING);
    if (!t) return loom_error(LOOM_ERR_FORMAT, "the target model has no vocabulary (tokenizer.ggml.tokens)");
    if (!d) return loom_error(LOOM_ERR_FORMAT, "it has no vocabulary (tokenizer.ggml.tokens)");
    const uint64_t n = t->v.arr.n < d->v.arr.n ? t->v.arr.n : d->v.arr.n;
    for (uint64_t i = 0; i < n; i++)
        if (!str_eq(t->v.arr.strs[i], d->v.arr.strs[i]))
            return loom_error(LOOM_ERR_INVALID,
                              "it has another vocabulary: token %llu is \"%.*s\" there, \"%.*s\" in the target "
                              "model (the draft model must use the target's tokenizer)",
                              (unsigned long long)i, (int)(d->v.arr.strs[i].len > 40 ? 40 : d->v.arr.strs[i].len),
                              d->v.arr.strs[i].ptr, (int)(t->v.arr.strs[i].len > 40 ? 40 : t->v.arr.strs[i].len),
                              t->v.arr.strs[i].ptr);
    return NULL;
}

loom_status loom_drafter_create(const char *path, const loom_gguf *target, loom_pool *pool,
                                const loom_drafter_options *o, loom_drafter **out) {
    *out = NULL;
    if (o->max_seqs < 1 || o->ctx < 2 || o->batch_rows < 1 || !(o->p_min >= 0 && o->p_min <= 1))
        return loom_error(LOOM_ERR_INVALID, "draft model options out of range: %d sequences, context %d, %d rows, p_min %g",
                          o->max_seqs, o->ctx, o->batch_rows, (double)o->p_min);
    loom_drafter *d = calloc(1, sizeof *d);
    if (!d) return loom_error(LOOM_ERR_NOMEM, "out of memory for the draft model");
    d->o = *o;
    d->R = o->batch_rows > o->max_seqs ? o->batch_rows : o->max_seqs;
    loom_status st = loom_gguf_open(path, &d->g);
    if (!st) st = check_vocab(target, d->g);
    if (!st) st = loom_model_config_read(d->g, &d->cfg);
    if (!st && d->cfg.encoder) st = loom_error(LOOM_ERR_INVALID, "it is an encoder: it cannot propose tokens");
    if (!st) {
        loom_model_config tc;
        st = loom_model_config_read(target, &tc);
        d->target_vocab = tc.vocab;
    }
    if (!st) {
        loom_shard sh = loom_shard_full(&d->cfg);
        st = loom_weights_create(d->g, &d->cfg, &sh, &d->w);
    }
    if (!st) {
        loom_kv_config kc = {
            .n_layers = d->cfg.n_layers,
            .n_kv_heads = d->w->n_kv,
            .head_dim = d->cfg.head_dim,
            .type = LOOM_TYPE_F16,
            .block_tokens = DRAFT_BLOCK_TOKENS,
            .n_blocks = o->kv_tokens > 0 ? (o->kv_tokens + DRAFT_BLOCK_TOKENS - 1) / DRAFT_BLOCK_TOKENS + o->max_seqs
                                         : loom_kv_blocks_for(o->max_seqs, o->ctx, DRAFT_BLOCK_TOKENS),
            .max_seqs = o->max_seqs,
            .max_ctx = o->ctx,
            .v_is_k = d->cfg.mla,
        };
        st = loom_kv_create(&kc, &d->kv);
    }
    if (!st) st = loom_weights_repack(d->w, d->g, pool);
    if (!st) st = loom_stage_create(d->w, d->kv, pool, NULL, d->R, &d->stage);
    if (!st) {
        size_t S = (size_t)o->max_seqs, R = (size_t)d->R;
        d->hist = malloc(S * (size_t)o->ctx * sizeof(int32_t));
        d->n_hist = calloc(S, sizeof(int));
        d->b_tok = malloc(R * sizeof(int32_t));
        d->b_pos = malloc(R * sizeof(int32_t));
        d->b_seq = malloc(R * sizeof(int32_t));
        d->b_logits = malloc(R);
        d->b_req = malloc(R * sizeof(int));
        d->stopped = malloc(S * sizeof(bool));
        d->from = malloc(S * sizeof(int));
        d->logits = malloc(S * (size_t)d->w->n_vocab * sizeof(float));
        if (!d->hist || !d->n_hist || !d->b_tok || !d->b_pos || !d->b_seq || !d->b_logits || !d->b_req || !d->logits ||
            !d->stopped || !d->from)
            st = loom_error(LOOM_ERR_NOMEM, "out of memory for the draft model's buffers");
    }
    if (st) {
        loom_drafter_free(d);
        return loom_error_wrap(st, "draft model %s", path);
    }
    *out = d;
    return NULL;
}

void loom_drafter_free(loom_drafter *d) {
    if (!d) return;
    loom_stage_free(d->stage);
    loom_kv_free(d->kv);
    loom_weights_free(d->w);
    loom_gguf_free(d->g);
    free(d->hist);
    free(d->n_hist);
    free(d->b_tok);
    free(d->b_pos);
    free(d->b_seq);
    free(d->b_logits);
    free(d->b_req);
    free(d->stopped);
    free(d->from);
    free(d->logits);
    free(d);
}

int loom_drafter_slots(const loom_drafter *d) { return d->o.max_seqs; }
double loom_drafter_seconds(const loom_drafter *d) { return d->seconds; }
double loom_drafter_step_seconds(const loom_drafter *d) { return d->t_step; }
double loom_drafter_row_seconds(const loom_drafter *d) { return d->t_row; }

int loom_drafter_known(const loom_drafter *d, int slot, const int32_t *toks, int n) {
    if (slot < 0 || slot >= d->o.max_seqs) return 0;
    const int32_t *h = d->hist + (size_t)slot * d->o.ctx;
    int c = 0;
    while (c < d->n_hist[slot] && c < n && h[c] == toks[c]) c++;
    return c;
}
int64_t loom_drafter_rows(const loom_drafter *d) { return d->rows; }
size_t loom_drafter_weight_bytes(const loom_drafter *d) { return d->w->bytes_mapped + d->w->bytes_copied; }
size_t loom_drafter_kv_bytes(const loom_drafter *d) { return loom_kv_bytes(loom_kv_config_of(d->kv)); }

/* Runs the batch of n rows; each row that wants logits appends its
 * request's greedy token (or ends its proposals: unsure, or past the
 * target's vocabulary). */
static loom_status run_batch(loom_drafter *d, int n, loom_draft_req *r, bool *stopped) {
    loom_batch b = {.n = n, .token = d->b_tok, .pos = d->b_pos, .seq = d->b_seq, .logits = d->b_logits};
    float *hidden;
    int n_out = 0;
    LOOM_TRY(loom_stage_forward(d->stage, &b, &hidden, d->logits, &n_out));
    d->rows += n;
    const int V = d->w->n_vocab;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!d->b_logits[i]) continue;
        const float *l = d->logits + (size_t)k++ * V;
        loom_draft_req *q = &r[d->b_req[i]];
        const int32_t best = loom_argmax(l, V); /* ties to the lowest id, as the target's */
        bool sure = best < d->target_vocab;
        if (sure && d->o.p_min > 0) { /* the top token's probability: 1 / sum of exp(l - max) (terms
                                          below e^-20 left out: all of a 10^6 vocabulary would move it 2e-3) */
            const float m = l[best];
            float s = 0;
            for (int v = 0; v < V; v++)
                if (l[v] - m > -20.0f) s += expf(l[v] - m);
            sure = 1.0f / s >= d->o.p_min;
        }
        if (sure) q->out[q->n_out++] = best;
        else stopped[d->b_req[i]] = true;
    }
    return NULL;
}

/* run_batch for rows of catching up, timed per row when there are enough. */
static loom_status catch_up(loom_drafter *d, int n, loom_draft_req *r, bool *stopped) {
    const double t = loom_now_s();
    loom_status st = run_batch(d, n, r, stopped);
    if (!st && n >= 32) {
        const double dt = (loom_now_s() - t) / n;
        d->t_row = d->t_row > 0 ? d->t_row + 0.1 * (dt - d->t_row) : dt;
    }
    return st;
}

static void add_row(loom_drafter *d, int *n, int req, int slot, int32_t tok, int pos, bool logits) {
    d->b_tok[*n] = tok;
    d->b_pos[*n] = pos;
    d->b_seq[*n] = slot;
    d->b_logits[*n] = logits;
    d->b_req[*n] = req;
    d->hist[(size_t)slot * d->o.ctx + pos] = tok;
    if (d->n_hist[slot] < pos + 1) d->n_hist[slot] = pos + 1;
    (*n)++;
}

loom_status loom_drafter_propose(loom_drafter *d, loom_draft_req *r, int n) {
    if (n > d->o.max_seqs) return loom_error(LOOM_ERR_INVALID, "%d sequences for a draft model of %d slots", n, d->o.max_seqs);
    double t0 = loom_now_s();
    bool *stopped = d->stopped;
    int *from = d->from;
    loom_status st = NULL;
    for (int i = 0; i < n; i++) {
        loom_draft_req *q = &r[i];
        q->n_out = 0;
        stopped[i] = false;
        /* positions fed: up to n_toks - 1 + want - 1, inside the context */
        if (q->want > d->o.ctx - q->n_toks + 1) q->want = d->o.ctx - q->n_toks + 1;
        if (q->slot < 0 || q->slot >= d->o.max_seqs || q->n_toks < 1 || q->want < 1) {
            stopped[i] = true, from[i] = q->n_toks;
            continue;
        }
        const int c = loom_drafter_known(d, q->slot, q->toks, q->n_toks - 1); /* the last token always: its logits */
        from[i] = c;
        d->n_hist[q->slot] = c;
        for (int p = c; p < q->n_toks; p++)
            if (q->toks[p] < 0 || q->toks[p] >= d->cfg.vocab) { /* a token the draft model does not have */
                stopped[i] = true, from[i] = q->n_toks;
                break;
            }
        if (stopped[i]) continue;
        loom_status full = loom_kv_reserve(d->kv, q->slot, q->n_toks + q->want - 1);
        for (int v = 0; full && v < d->o.max_seqs; v++) { /* slots this call does not name give theirs up */
            bool named = false;
            for (int j = 0; j < n && !named; j++) named = r[j].slot == v;
            if (named || !loom_kv_capacity(d->kv, v)) continue;
            loom_kv_release(d->kv, v);
            d->n_hist[v] = 0;
            loom_status_free(full);
            full = loom_kv_reserve(d->kv, q->slot, q->n_toks + q->want - 1);
        }
        if (full) stopped[i] = true, from[i] = q->n_toks, loom_status_free(full);
    }
    /* the settled tokens not computed yet, prompts in chunks, each sequence's last row with logits */
    int rows = 0;
    for (int i = 0; i < n && !st; i++) {
        loom_draft_req *q = &r[i];
        for (int p = from[i]; p < q->n_toks && !st; p++) {
            add_row(d, &rows, i, q->slot, q->toks[p], p, p == q->n_toks - 1);
            if (rows == d->R) st = catch_up(d, rows, r, stopped), rows = 0;
        }
    }
    if (rows && !st) st = catch_up(d, rows, r, stopped);
    /* then one row per sequence still proposing: its last proposal */
    for (;;) {
        rows = 0;
        for (int i = 0; i < n && !st; i++) {
            loom_draft_req *q = &r[i];
            if (stopped[i] || q->n_out == 0 || q->n_out >= q->want) continue;
            add_row(d, &rows, i, q->slot, q->out[q->n_out - 1], q->n_toks + q->n_out - 1, true);
        }
        if (rows == 0 || st) break;
        const double t = loom_now_s();
        st = run_batch(d, rows, r, stopped);
        const double dt = loom_now_s() - t;
        d->t_step = d->t_step > 0 ? d->t_step + 0.1 * (dt - d->t_step) : dt;
    }
    if (st) /* the cache's contents are unknown: recompute everything next time */
        for (int i = 0; i < n; i++) {
            r[i].n_out = 0;
            if (r[i].slot >= 0 && r[i].slot < d->o.max_seqs) d->n_hist[r[i].slot] = 0;
        }
    d->seconds += loom_now_s() - t0;
    return st;
}
