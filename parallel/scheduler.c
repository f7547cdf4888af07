/*
 * parallel/scheduler.c — admission, building Steps, taking results
 * (contract in scheduler.h).
 */
#include "parallel/scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"

typedef struct {
    uint64_t id;
    int32_t *prompt;  /* (n_prompt) owned */
    int n_prompt, max_tokens;
    loom_sampling_params sp;
    bool ignore_eos, logprobs;
    int top_logprobs;
    double t_submit;
} waiting_req;

typedef struct {
    bool used;
    uint64_t id;
    int32_t *toks;    /* (limit) prompt then generated */
    int n_prompt, n_toks;
    int n_sent;       /* positions sent to the model */
    int limit;        /* n_toks at which generation stops with "length" */
    int reserve;      /* positions reserved; sent with the first step */
    bool started;     /* first step sent */
    bool in_flight;   /* a micro-batch in flight will return this sequence's next token */
    bool cancelled;   /* cancelled while in flight: dropped when its token comes back */
    bool ignore_eos, logprobs;
    int top_logprobs;
    loom_sampling_params sp;
    double t_submit, t_admit, t_first, t_last;
} seq_state;

typedef struct {
    Loom__Step step;
    Loom__SeqStep *seqs;       /* (max_seqs) */
    Loom__SeqStep **seq_ptrs;  /* (max_seqs) */
    Loom__SamplingParams *sps; /* (max_seqs) */
    uint32_t *release;         /* (max_seqs) */
    bool has_prefill;
    int n_logits;
} mb_state;

struct loom_scheduler {
    loom_engine *e;
    loom_callbacks cb;
    int S, P, R, ctx, vocab;
    waiting_req *wait;         /* (cap_wait) FIFO, oldest first */
    int n_wait, cap_wait;
    seq_state *act;            /* (S) slot i ↔ act[i] */
    int n_active, n_prefilling;
    mb_state *mbs;             /* (P) ring of micro-batches in flight */
    int head, inflight;
    uint32_t *pending_release; /* (S) slots freed since the last launch */
    int n_pending_release;
    uint32_t *res_slots;       /* (S) result arrays of a one-stage step */
    int32_t *res_tokens;
    uint64_t next_id, mb_id;
    loom_run_stats stats;
    double tp0, pp0;           /* the engine's communication times at creation */
    double t_mark;             /* last event, for the prefill/decode time split */
    bool failed;
};

loom_status loom_scheduler_create(loom_engine *e, const loom_callbacks *cb, loom_scheduler **out) {
    *out = NULL;
    const loom_topology *t = loom_engine_topology(e);
    if (t->world_rank != 0) return loom_error(LOOM_ERR_INVALID, "only the coordinator (rank 0) schedules requests");
    if (!cb || !cb->is_eog) return loom_error(LOOM_ERR_INVALID, "the scheduler needs an is_eog callback");
    loom_scheduler *s = calloc(1, sizeof *s);
    if (!s) return loom_error(LOOM_ERR_NOMEM, "out of memory creating the scheduler");
    const loom_engine_options *o = loom_engine_options_of(e);
    s->e = e;
    s->cb = *cb;
    s->S = o->max_seqs, s->P = t->n_stages, s->R = o->batch_rows, s->ctx = o->ctx_size;
    s->vocab = loom_engine_model(e)->vocab;
    size_t S = (size_t)s->S;
    s->act = calloc(S, sizeof *s->act);
    s->mbs = calloc((size_t)s->P, sizeof *s->mbs);
    s->pending_release = malloc(S * sizeof(uint32_t));
    s->res_slots = malloc(S * sizeof(uint32_t));
    s->res_tokens = malloc(S * sizeof(int32_t));
    bool ok = s->act && s->mbs && s->pending_release && s->res_slots && s->res_tokens;
    for (int m = 0; ok && m < s->P; m++) {
        mb_state *mb = &s->mbs[m];
        mb->seqs = calloc(S, sizeof *mb->seqs);
        mb->seq_ptrs = calloc(S, sizeof *mb->seq_ptrs);
        mb->sps = calloc(S, sizeof *mb->sps);
        mb->release = calloc(S, sizeof *mb->release);
        ok = mb->seqs && mb->seq_ptrs && mb->sps && mb->release;
    }
    if (!ok) {
        loom_scheduler_free(s);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for %d sequences", s->S);
    }
    loom_engine_comm_time(e, &s->tp0, &s->pp0);
    s->t_mark = loom_now_s();
    *out = s;
    return NULL;
}

void loom_scheduler_free(loom_scheduler *s) {
    if (!s) return;
    for (int i = 0; i < s->n_wait; i++) free(s->wait[i].prompt);
    free(s->wait);
    for (int i = 0; s->act && i < s->S; i++)
        if (s->act[i].used) {
            free(s->act[i].toks);
            loom_kv_release(loom_engine_kv(s->e), i);
        }
    free(s->act);
    for (int m = 0; s->mbs && m < s->P; m++) {
        free(s->mbs[m].seqs);
        free(s->mbs[m].seq_ptrs);
        free(s->mbs[m].sps);
        free(s->mbs[m].release);
    }
    free(s->mbs);
    free(s->pending_release);
    free(s->res_slots);
    free(s->res_tokens);
    free(s);
}

int loom_scheduler_pending(const loom_scheduler *s) { return s->n_wait + s->n_active; }
int loom_scheduler_running(const loom_scheduler *s) { return s->n_active; }

loom_run_stats loom_scheduler_stats(const loom_scheduler *s) {
    loom_run_stats r = s->stats;
    double tp, pp;
    loom_engine_comm_time(s->e, &tp, &pp);
    r.comm_s = tp - s->tp0;
    r.transfer_s = pp - s->pp0;
    return r;
}

/* ------------------------------------------------------------ requests */

static loom_status check_request(const loom_scheduler *s, const loom_request *r) {
    if (r->n_prompt < 1) return loom_error(LOOM_ERR_INVALID, "the prompt is empty");
    if (r->n_prompt > s->ctx)
        return loom_error(LOOM_ERR_CONTEXT, "a prompt of %d tokens does not fit the context size %d", r->n_prompt,
                          s->ctx);
    if (r->max_tokens < 0) return loom_error(LOOM_ERR_INVALID, "max_tokens %d is negative", r->max_tokens);
    if (r->top_logprobs < 0 || r->top_logprobs > 20)
        return loom_error(LOOM_ERR_INVALID, "top_logprobs %d is outside 0..20", r->top_logprobs);
    LOOM_TRY(loom_sampling_check(&r->sampling));
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= s->vocab)
            return loom_error(LOOM_ERR_INVALID, "prompt token %d at index %d is outside the vocabulary (0..%d)",
                              r->prompt[i], i, s->vocab - 1);
    return NULL;
}

loom_status loom_scheduler_submit(loom_scheduler *s, const loom_request *r, uint64_t *id) {
    if (s->failed) return loom_error(LOOM_ERR_INVALID, "the scheduler stopped after an engine failure");
    LOOM_TRY(check_request(s, r));
    if (s->n_wait == s->cap_wait) {
        int cap = s->cap_wait ? 2 * s->cap_wait : 16;
        waiting_req *w = realloc(s->wait, (size_t)cap * sizeof *w);
        if (!w) return loom_error(LOOM_ERR_NOMEM, "out of memory queueing a request");
        s->wait = w;
        s->cap_wait = cap;
    }
    waiting_req *w = &s->wait[s->n_wait];
    w->prompt = malloc((size_t)r->n_prompt * sizeof(int32_t));
    if (!w->prompt) return loom_error(LOOM_ERR_NOMEM, "out of memory for a prompt of %d tokens", r->n_prompt);
    memcpy(w->prompt, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
    w->id = s->next_id++;
    w->n_prompt = r->n_prompt;
    w->max_tokens = r->max_tokens;
    w->sp = r->sampling;
    w->ignore_eos = r->ignore_eos;
    w->logprobs = r->logprobs;
    w->top_logprobs = r->top_logprobs;
    w->t_submit = loom_now_s();
    s->n_wait++;
    *id = w->id;
    return NULL;
}

static void drop_waiting(loom_scheduler *s, int i) {
    free(s->wait[i].prompt);
    memmove(&s->wait[i], &s->wait[i + 1], (size_t)(s->n_wait - i - 1) * sizeof *s->wait);
    s->n_wait--;
}

/* Reports a request that ends before it ran. */
static void finish_early(loom_scheduler *s, const waiting_req *w, const char *reason, loom_status why) {
    if (s->cb.on_finish) {
        double t = loom_now_s();
        loom_finished f = {.id = w->id, .n_prompt = w->n_prompt, .stop_reason = reason,
                           .error = why ? loom_status_message(why) : NULL, .queue_ms = 1e3 * (t - w->t_submit)};
        s->cb.on_finish(s->cb.user, &f);
    }
    loom_status_free(why);
}

/* Ends the sequence in `slot`: reports it (unless cancelled), frees its
 * slot here and, with the next step, on every other rank. */
static void finish(loom_scheduler *s, int slot, const char *reason, const char *error) {
    seq_state *q = &s->act[slot];
    if (q->n_toks == q->n_prompt) s->n_prefilling--;
    if (!q->cancelled && s->cb.on_finish) {
        loom_finished f = {
            .id = q->id, .tokens = q->toks + q->n_prompt, .n_prompt = q->n_prompt, .n_tokens = q->n_toks - q->n_prompt,
            .stop_reason = reason, .error = error, .queue_ms = 1e3 * (q->t_admit - q->t_submit),
            .prompt_ms = q->t_first > 0 ? 1e3 * (q->t_first - q->t_admit) : 0,
            .gen_ms = q->t_first > 0 ? 1e3 * (q->t_last - q->t_first) : 0,
        };
        s->cb.on_finish(s->cb.user, &f);
    }
    free(q->toks);
    memset(q, 0, sizeof *q);
    loom_kv_release(loom_engine_kv(s->e), slot);
    s->pending_release[s->n_pending_release++] = (uint32_t)slot;
    s->n_active--;
}

bool loom_scheduler_cancel(loom_scheduler *s, uint64_t id) {
    for (int i = 0; i < s->n_wait; i++)
        if (s->wait[i].id == id) {
            drop_waiting(s, i);
            return true;
        }
    for (int i = 0; i < s->S; i++) {
        seq_state *q = &s->act[i];
        if (!q->used || q->id != id || q->cancelled) continue;
        q->cancelled = true;
        if (!q->in_flight) finish(s, i, "cancelled", NULL);
        return true;
    }
    return false;
}

/* Admits waiting requests, in order, while a slot and the KV blocks of
 * their whole budget are free. */
static void admit(loom_scheduler *s) {
    loom_kv_cache *kv = loom_engine_kv(s->e);
    while (s->n_wait > 0 && s->n_active < s->S) {
        waiting_req *w = &s->wait[0];
        if (w->max_tokens == 0) {
            finish_early(s, w, "length", NULL);
            drop_waiting(s, 0);
            continue;
        }
        int slot = 0;
        while (s->act[slot].used) slot++;
        int limit = w->n_prompt + w->max_tokens;
        int positions = limit < s->ctx ? limit : s->ctx;
        int missing = loom_kv_blocks_missing(kv, slot, positions);
        if (missing > loom_kv_free_blocks(kv)) {
            if (s->n_active > 0) return; /* wait for a running sequence to finish */
            finish_early(s, w, "error",
                         loom_error(LOOM_ERR_KV_FULL, "request %llu needs %d KV blocks but the cache has %d free",
                                    (unsigned long long)w->id, missing, loom_kv_free_blocks(kv)));
            drop_waiting(s, 0);
            continue;
        }
        int32_t *toks = malloc((size_t)limit * sizeof(int32_t));
        loom_status rs = toks ? loom_kv_reserve(kv, slot, positions)
                              : loom_error(LOOM_ERR_NOMEM, "out of memory for request %llu", (unsigned long long)w->id);
        if (rs) {
            free(toks);
            finish_early(s, w, "error", rs);
            drop_waiting(s, 0);
            continue;
        }
        seq_state *q = &s->act[slot];
        memset(q, 0, sizeof *q);
        memcpy(toks, w->prompt, (size_t)w->n_prompt * sizeof(int32_t));
        q->used = true;
        q->id = w->id;
        q->toks = toks;
        q->n_prompt = q->n_toks = w->n_prompt;
        q->reserve = positions;
        q->sp = w->sp;
        q->ignore_eos = w->ignore_eos;
        q->logprobs = w->logprobs;
        q->top_logprobs = w->top_logprobs;
        q->limit = positions > w->n_prompt ? positions : w->n_prompt + 1;
        q->t_submit = w->t_submit;
        q->t_admit = loom_now_s();
        s->stats.prompt_tokens += w->n_prompt;
        s->n_active++;
        s->n_prefilling++;
        drop_waiting(s, 0);
    }
}

/* ------------------------------------------------------------ steps */

/* Adds the time since the last event to prefill or decode, by what was in flight. */
static void account(loom_scheduler *s) {
    double t = loom_now_s();
    if (s->n_prefilling > 0) s->stats.prefill_s += t - s->t_mark;
    else s->stats.decode_s += t - s->t_mark;
    s->t_mark = t;
}

static void sampling_message(Loom__SamplingParams *p, const seq_state *q) {
    const loom_sampling_params *sp = &q->sp;
    loom__sampling_params__init(p);
    p->presence_penalty = sp->presence_penalty;
    p->frequency_penalty = sp->frequency_penalty;
    p->logprobs = q->logprobs;
    p->top_logprobs = q->top_logprobs;
    p->temperature = sp->temperature;
    p->top_k = sp->top_k;
    p->top_p = sp->top_p;
    p->min_p = sp->min_p;
    p->repeat_penalty = sp->repeat_penalty;
    p->repeat_last_n = sp->repeat_last_n;
    p->seed = sp->seed;
}

/* Builds the next micro-batch from sequences not in flight: decode rows
 * first, then prompt chunks, about n_active / n_stages sequences so that
 * every stage has work. Returns false when nothing is ready. */
static bool build_step(loom_scheduler *s, mb_state *mb) {
    int cap_seqs = (s->n_active + s->P - 1) / s->P;
    int rows = 0, nseq = 0;
    mb->has_prefill = false;
    mb->n_logits = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < s->S && rows < s->R && nseq < cap_seqs; i++) {
            seq_state *q = &s->act[i];
            if (!q->used || q->in_flight || q->cancelled) continue;
            bool prefill = q->n_sent < q->n_prompt;
            if (prefill != (pass == 1)) continue;
            int take = prefill ? q->n_prompt - q->n_sent : 1;
            if (take > s->R - rows) take = s->R - rows;
            Loom__SeqStep *m = &mb->seqs[nseq];
            loom__seq_step__init(m);
            m->id = q->id;
            m->slot = (uint32_t)i;
            m->first_pos = (uint32_t)q->n_sent;
            m->n_tokens = (size_t)take;
            m->tokens = q->toks + q->n_sent;
            m->want_logits = q->n_sent + take >= q->n_prompt;
            if (!q->started) {
                sampling_message(&mb->sps[nseq], q);
                m->sampling = &mb->sps[nseq];
                m->reserve = (uint32_t)q->reserve;
                m->n_prompt = (uint32_t)q->n_prompt;
                q->started = true;
            }
            q->n_sent += take;
            q->in_flight = m->want_logits;
            mb->has_prefill |= prefill;
            mb->n_logits += m->want_logits;
            mb->seq_ptrs[nseq++] = m;
            rows += take;
        }
    if (nseq == 0) return false;
    Loom__Step step = LOOM__STEP__INIT;
    step.protocol = LOOM_PROTOCOL;
    step.micro_batch = s->mb_id++;
    memcpy(mb->release, s->pending_release, sizeof(uint32_t) * (size_t)s->n_pending_release);
    step.release = mb->release;
    step.n_release = (size_t)s->n_pending_release;
    s->n_pending_release = 0;
    step.seqs = mb->seq_ptrs;
    step.n_seqs = (size_t)nseq;
    mb->step = step;
    return true;
}

/* Takes the tokens of a finished micro-batch: reports them, ends sequences. */
static loom_status take_result(loom_scheduler *s, const mb_state *mb, const Loom__StepResult *r) {
    if (r->micro_batch != mb->step.micro_batch || (int)r->n_slots != mb->n_logits || r->n_slots != r->n_tokens)
        return loom_error(LOOM_ERR_FORMAT, "result for micro-batch %llu with %zu tokens, expected %llu with %d",
                          (unsigned long long)r->micro_batch, r->n_slots, (unsigned long long)mb->step.micro_batch,
                          mb->n_logits);
    account(s);
    double t = s->t_mark;
    for (size_t k = 0; k < r->n_slots; k++) {
        int slot = (int)r->slots[k];
        if (slot < 0 || slot >= s->S || !s->act[slot].used || !s->act[slot].in_flight)
            return loom_error(LOOM_ERR_FORMAT, "result names slot %d, which awaits no token", slot);
        seq_state *q = &s->act[slot];
        int32_t tok = r->tokens[k];
        q->in_flight = false;
        if (q->cancelled) {
            finish(s, slot, "cancelled", NULL);
            continue;
        }
        if (q->n_toks == q->n_prompt) s->n_prefilling--;
        q->toks[q->n_toks++] = tok;
        if (q->t_first == 0) q->t_first = t;
        q->t_last = t;
        s->stats.gen_tokens++;
        if (!mb->has_prefill) s->stats.decode_tokens++;
        if (s->cb.on_token) {
            const loom_token_logprobs *lp = NULL;
            loom_token_logprobs tl;
            for (size_t j = 0; q->logprobs && j < r->n_logprobs; j++) {
                const Loom__TokenLogprobs *m = r->logprobs[j];
                if (m->slot != (uint32_t)slot) continue;
                tl = (loom_token_logprobs){m->logprob, (int)(m->n_top_ids < m->n_top_logprobs ? m->n_top_ids
                                                                                               : m->n_top_logprobs),
                                           m->top_ids, m->top_logprobs};
                lp = &tl;
            }
            s->cb.on_token(s->cb.user, q->id, tok, lp);
        }
        if (!q->ignore_eos && s->cb.is_eog(s->cb.user, tok)) finish(s, slot, "stop", NULL);
        else if (q->n_toks >= q->limit) finish(s, slot, "length", NULL);
    }
    return NULL;
}

/* After an engine failure: every request ends with "error". */
static void fail_all(loom_scheduler *s, loom_status st) {
    const char *msg = loom_status_message(st);
    for (int i = 0; i < s->S; i++)
        if (s->act[i].used) {
            s->act[i].in_flight = false;
            finish(s, i, "error", msg);
        }
    while (s->n_wait > 0) {
        finish_early(s, &s->wait[0], "error", loom_error(LOOM_ERR_PEER, "%s", msg));
        drop_waiting(s, 0);
    }
    s->inflight = 0;
    s->failed = true;
}

static loom_status step_once(loom_scheduler *s) {
    mb_state *mb = &s->mbs[(s->head + s->inflight) % s->P];
    if (s->inflight < s->P && build_step(s, mb)) {
        account(s);
        Loom__StepResult res = LOOM__STEP_RESULT__INIT;
        res.slots = s->res_slots;
        res.tokens = s->res_tokens;
        res.micro_batch = mb->step.micro_batch;
        LOOM_TRY(loom_engine_launch(s->e, &mb->step, &res));
        s->stats.steps++;
        if (s->P == 1) return take_result(s, mb, &res); /* one stage: the tokens are here already */
        s->inflight++;
        return NULL;
    }
    if (s->inflight == 0) return NULL; /* only admissions and early endings this round */
    Loom__StepResult *r = NULL;
    LOOM_TRY(loom_engine_collect(s->e, &r));
    loom_status st = take_result(s, &s->mbs[s->head], r);
    loom__step_result__free_unpacked(r, NULL);
    s->head = (s->head + 1) % s->P;
    s->inflight--;
    return st;
}

loom_status loom_scheduler_step(loom_scheduler *s) {
    if (s->failed) return loom_error(LOOM_ERR_INVALID, "the scheduler stopped after an engine failure");
    if (s->n_active == 0 && s->inflight == 0) s->t_mark = loom_now_s(); /* idle time counts nowhere */
    admit(s);
    if (s->n_active == 0 && s->inflight == 0) return NULL;
    loom_status st = step_once(s);
    if (st) fail_all(s, st);
    return st;
}

/* ------------------------------------------------------------ batch runs */

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
                            loom_result *results, loom_run_stats *stats) {
    memset(results, 0, (size_t)n * sizeof *results);
    run_ctx c = {cb, results};
    loom_callbacks inner = {run_on_token, run_on_finish, run_is_eog, &c};
    loom_scheduler *s = NULL;
    LOOM_TRY(loom_scheduler_create(e, &inner, &s));
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
            s->next_id++;
        }
    }
    while (!st && loom_scheduler_pending(s) > 0) st = loom_scheduler_step(s);
    if (stats) *stats = loom_scheduler_stats(s);
    loom_scheduler_free(s);
    return st;
}
