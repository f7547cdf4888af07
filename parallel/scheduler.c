/*
 * parallel/scheduler.c — admission, KV blocks, building Steps, taking
 * results (contract in scheduler.h).
 */
#include "parallel/scheduler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"
#include "runtime/kernels.h"
#include "runtime/kv_blocks.h"
#include "parallel/draft.h"
#include "parallel/draft_model.h"

/* What a proposal must be worth for a step of n decoding sequences: the
 * chance that it is used (the sequence's accept rate to the power of its
 * place) at least the share of the step's time its row costs. A step of n
 * rows takes about (DRAFT_STEP_ROWS + n) rows of prompt compute (a decode
 * step reads every weight, which costs what 3.6 prompt rows do for
 * TinyLlama-1.1B Q4_0 and 6.5 for SmolLM2-135M on a Zen 4; the lower
 * figure is used), so a row is worth adding while accept^place >=
 * n / (DRAFT_STEP_ROWS + n): alone 0.2, among 16 sequences 0.8. */
#define DRAFT_STEP_ROWS 4.0
#define DRAFT_ACCEPT0 0.5f /* a sequence's accept rate before its first proposal */
#define DRAFT_ACCEPT0_PREDICTED 0.9f /* ... when the caller gave the expected output */
#define DRAFT_ACCEPT0_MODEL 0.8f     /* ... with a draft model (chosen to agree with the target) */
#define DRAFT_PREDICTION_MAX 16      /* proposals a step from an expected output, whatever draft_max says */
#define DRAFT_EMA 0.2f     /* weight of each proposed token's outcome in the average */
#define DRAFT_RETRY 0.05f  /* how fast the estimate rises while a sequence does not propose */
#define DRAFT_FIT_DECAY 0.98 /* weight of a decode step's time in the fit, one step later */
#define DRAFT_HORIZON 256    /* tokens a reply is taken to go on for at most when weighing a catch-up */

/* A sequence's LoRA adapter scales (engine.h) and the prefix cache's
 * parent of its first block: 0 without an adapter, else a hash of the
 * scales, so KV computed with other adapters is never found for it. */
typedef struct {
    float s[LOOM_LORA_MAX];
    int n;
    uint64_t root;
} lora_set;

/* A request waiting for a slot: new, or preempted and to be recomputed. */
typedef struct {
    uint64_t id;
    int32_t *toks;     /* (n_toks) owned: prompt, then tokens generated before a preemption */
    int n_toks, n_user_prompt;
    int limit;         /* n_toks at which generation stops with "length" */
    loom_sampling_params sp;
    lora_set lora;
    bool ignore_eos, logprobs;
    int top_logprobs;
    int32_t *pred;     /* (n_pred) owned: the expected output, or NULL */
    int n_pred, n_proposed, n_kept;
    float mirostat_mu; /* mirostat's mu after the generated tokens (a preempted sequence) */
    double t_submit, t_first, t_last;
} waiting_req;

typedef struct {
    bool used;
    uint64_t id;
    uint64_t order;   /* admission order: the highest is preempted first */
    int32_t *toks;    /* (limit) prompt then generated */
    int n_user_prompt;/* the request's prompt; later tokens are reported */
    int n_prompt;     /* positions before the first sample (the prompt, or all tokens of a resumed sequence) */
    int n_toks;
    int n_sent;       /* positions sent to the model (or found in the prefix cache) */
    int n_cached;     /* positions found in the prefix cache at admission */
    int limit;
    int32_t *blocks;  /* (max_blocks) the slot's KV blocks */
    uint64_t *hash;   /* (max_blocks) prefix-cache hash of each published block */
    int n_blocks, n_published;
    int n_draft;      /* proposals in flight (toks[n_toks ..] holds them meanwhile) */
    int n_prop;       /* with a draft model: proposals made for the step being built (at toks[n_toks ..]) */
    float accept;     /* estimated chance that the model samples a proposed token (moving average) */
    int32_t *pred;    /* (n_pred) owned: the expected output, or NULL */
    int n_pred;
    int n_proposed, n_kept; /* proposals made for it / the model's own */
    bool started;     /* first step sent */
    bool in_flight;   /* a micro-batch in flight will return this sequence's next token */
    bool in_step;     /* has rows in the micro-batch being built: not a preemption victim */
    bool cancelled;   /* cancelled while in flight: dropped when its token comes back */
    bool ignore_eos, logprobs;
    int top_logprobs;
    loom_sampling_params sp;
    float mirostat_mu; /* mirostat's mu after the last token (the results report it), for a resumption */
    lora_set lora;
    double t_submit, t_admit, t_first, t_last;
} seq_state;

typedef struct {
    Loom__Step step;
    Loom__SeqStep *seqs;       /* (max_seqs) */
    Loom__SeqStep **seq_ptrs;  /* (max_seqs) */
    Loom__SamplingParams *sps; /* (max_seqs) */
    uint32_t *release;         /* (max_seqs) */
    int32_t *new_blocks;       /* (max_seqs, max_blocks) blocks appended this step, per sequence */
    bool has_prefill;
    int n_logits;
} mb_state;

struct loom_scheduler {
    loom_engine *e;
    loom_kv_blocks *pool;
    loom_callbacks cb;
    int S, P, R, ctx, vocab, B, max_blocks, prefill_rows, watermark;
    int draft_max, draft_min_ngram, draft_max_ngram, draft_rows;
    int invariant;             /* loom_matmul_invariant_rows() */
    loom_drafter *drafter;     /* borrowed, or NULL: proposals by lookup */
    double draft_cost;         /* the options' (worth() below) */
    double draft_bytes_share;  /* the draft model's weight bytes over the target's */
    double fit[5];             /* decode steps' time against rows: weight, Σx, Σy, Σx², Σxy (fit_step) */
    loom_draft_req *dreqs;     /* (S) */
    double draft_s0;           /* the drafter's seconds at creation */
    waiting_req *wait;         /* (cap_wait) FIFO, oldest first */
    int n_wait, cap_wait;
    seq_state *act;            /* (S) slot i ↔ act[i] */
    int n_active, n_prefilling;
    uint64_t next_order;
    mb_state *mbs;             /* (P) ring of micro-batches in flight */
    int head, inflight;
    uint32_t *pending_release; /* (S) slots freed since the last launch */
    bool *release_pending;     /* (S) slot i is in pending_release */
    int n_pending_release;
    uint32_t *res_slots;       /* (R) result arrays of a one-stage step */
    int32_t *res_tokens;
    uint64_t next_id, mb_id;
    loom_run_stats stats;
    double tp0, pp0;           /* the engine's communication times at creation */
    double t_mark;             /* last event, for the prefill/decode time split */
    bool failed;
};

loom_status loom_scheduler_create(loom_engine *e, const loom_callbacks *cb, const loom_scheduler_options *o,
                                  loom_scheduler **out) {
    *out = NULL;
    const loom_topology *t = loom_engine_topology(e);
    if (t->world_rank != 0) return loom_error(LOOM_ERR_INVALID, "only the coordinator (rank 0) schedules requests");
    if (!cb || !cb->is_eog) return loom_error(LOOM_ERR_INVALID, "the scheduler needs an is_eog callback");
    loom_scheduler *s = calloc(1, sizeof *s);
    if (!s) return loom_error(LOOM_ERR_NOMEM, "out of memory creating the scheduler");
    const loom_engine_options *eo = loom_engine_options_of(e);
    s->e = e;
    s->pool = loom_engine_blocks(e);
    s->cb = *cb;
    s->S = eo->max_seqs, s->P = t->n_stages, s->R = eo->batch_rows, s->ctx = eo->ctx_size;
    s->B = eo->block_tokens;
    s->max_blocks = (eo->ctx_size + s->B - 1) / s->B;
    s->prefill_rows = o && o->prefill_rows > 0 && o->prefill_rows < s->R ? o->prefill_rows : s->R;
    if (o && o->draft_max > 0) {
        s->draft_max = o->draft_max;
        s->draft_min_ngram = o->draft_min_ngram > 0 ? o->draft_min_ngram : LOOM_DRAFT_MIN_NGRAM;
        s->draft_max_ngram = o->draft_max_ngram >= s->draft_min_ngram ? o->draft_max_ngram
                             : s->draft_min_ngram > LOOM_DRAFT_MAX_NGRAM ? s->draft_min_ngram : LOOM_DRAFT_MAX_NGRAM;
    }
    s->draft_rows = o && o->draft_rows > 0 ? o->draft_rows : LOOM_DRAFT_ROWS; /* expected outputs propose too */
    if (o && o->drafter && loom_drafter_slots(o->drafter) < s->S) {
        const int S = s->S;
        free(s);
        return loom_error(LOOM_ERR_INVALID, "the draft model has %d slots for %d sequences", loom_drafter_slots(o->drafter),
                          S);
    }
    if (o && o->drafter) {
        s->drafter = o->drafter;
        s->draft_s0 = loom_drafter_seconds(o->drafter);
        s->draft_cost = o->draft_cost;
        const loom_weights *w = loom_engine_weights(e);
        s->draft_bytes_share = (double)loom_drafter_weight_bytes(o->drafter) / (double)(w->bytes_mapped + w->bytes_copied);
        if (s->draft_max == 0) s->draft_max = LOOM_DRAFT_MODEL_MAX;
    }
    s->watermark = loom_kv_blocks_total(s->pool) / 100;
    s->invariant = loom_matmul_invariant_rows();
    s->vocab = loom_engine_model(e)->vocab;
    size_t S = (size_t)s->S, MB = (size_t)s->max_blocks;
    s->act = calloc(S, sizeof *s->act);
    s->mbs = calloc((size_t)s->P, sizeof *s->mbs);
    s->pending_release = malloc(S * sizeof(uint32_t));
    s->release_pending = calloc(S, sizeof(bool));
    s->res_slots = malloc((size_t)s->R * sizeof(uint32_t));
    s->res_tokens = malloc((size_t)s->R * sizeof(int32_t));
    s->dreqs = malloc(S * sizeof *s->dreqs);
    bool ok = s->act && s->mbs && s->pending_release && s->release_pending && s->res_slots && s->res_tokens && s->dreqs;
    for (size_t i = 0; ok && i < S; i++) {
        s->act[i].blocks = malloc(MB * sizeof(int32_t));
        s->act[i].hash = malloc(MB * sizeof(uint64_t));
        ok = s->act[i].blocks && s->act[i].hash;
    }
    for (int m = 0; ok && m < s->P; m++) {
        mb_state *mb = &s->mbs[m];
        mb->seqs = calloc(S, sizeof *mb->seqs);
        mb->seq_ptrs = calloc(S, sizeof *mb->seq_ptrs);
        mb->sps = calloc(S, sizeof *mb->sps);
        mb->release = calloc(S, sizeof *mb->release);
        mb->new_blocks = malloc(S * MB * sizeof(int32_t));
        ok = mb->seqs && mb->seq_ptrs && mb->sps && mb->release && mb->new_blocks;
    }
    if (!ok) {
        loom_scheduler_free(s);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for %d sequences", s->S);
    }
    /* the first step clears every slot's table on every rank: a scheduler
     * before this one may have ended with releases it never sent */
    for (int i = 0; i < s->S; i++) s->pending_release[i] = (uint32_t)i, s->release_pending[i] = true;
    s->n_pending_release = s->S;
    loom_engine_comm_time(e, &s->tp0, &s->pp0);
    s->t_mark = loom_now_s();
    *out = s;
    return NULL;
}

static void drop_blocks(loom_scheduler *s, seq_state *q) {
    for (int i = 0; i < q->n_blocks; i++) loom_kv_blocks_unref(s->pool, q->blocks[i]);
    q->n_blocks = q->n_published = 0;
}

void loom_scheduler_free(loom_scheduler *s) {
    if (!s) return;
    for (int i = 0; i < s->n_wait; i++) free(s->wait[i].toks), free(s->wait[i].pred);
    free(s->wait);
    for (int i = 0; s->act && i < s->S; i++) {
        if (s->act[i].used) {
            drop_blocks(s, &s->act[i]);
            free(s->act[i].toks);
            free(s->act[i].pred);
        }
        free(s->act[i].blocks);
        free(s->act[i].hash);
    }
    free(s->act);
    for (int m = 0; s->mbs && m < s->P; m++) {
        free(s->mbs[m].seqs);
        free(s->mbs[m].seq_ptrs);
        free(s->mbs[m].sps);
        free(s->mbs[m].release);
        free(s->mbs[m].new_blocks);
    }
    free(s->mbs);
    free(s->pending_release);
    free(s->release_pending);
    free(s->res_slots);
    free(s->res_tokens);
    free(s->dreqs);
    free(s);
}

int loom_scheduler_pending(const loom_scheduler *s) { return s->n_wait + s->n_active; }
void loom_scheduler_skip_id(loom_scheduler *s) { s->next_id++; }
int loom_scheduler_running(const loom_scheduler *s) { return s->n_active; }
double loom_scheduler_kv_usage(const loom_scheduler *s) {
    int total = loom_kv_blocks_total(s->pool);
    return 1.0 - (double)loom_kv_blocks_available(s->pool) / total;
}

loom_run_stats loom_scheduler_stats(const loom_scheduler *s) {
    loom_run_stats r = s->stats;
    double tp, pp;
    loom_engine_comm_time(s->e, &tp, &pp);
    r.comm_s = tp - s->tp0;
    r.transfer_s = pp - s->pp0;
    r.draft_model_s = s->drafter ? loom_drafter_seconds(s->drafter) - s->draft_s0 : 0;
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
    if (r->n_lora < 0 || r->n_lora > loom_engine_n_lora(s->e))
        return loom_error(LOOM_ERR_INVALID, "%d LoRA scales for %d adapters", r->n_lora, loom_engine_n_lora(s->e));
    for (int i = 0; i < r->n_lora; i++)
        if (!isfinite(r->lora[i])) return loom_error(LOOM_ERR_INVALID, "LoRA adapter %d's scale is not a number", i);
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= s->vocab)
            return loom_error(LOOM_ERR_INVALID, "prompt token %d at index %d is outside the vocabulary (0..%d)",
                              r->prompt[i], i, s->vocab - 1);
    for (int i = 0; i < r->n_prediction; i++)
        if (r->prediction[i] < 0 || r->prediction[i] >= s->vocab)
            return loom_error(LOOM_ERR_INVALID, "prediction token %d at index %d is outside the vocabulary (0..%d)",
                              r->prediction[i], i, s->vocab - 1);
    for (int i = 0; i < r->sampling.n_logit_bias; i++)
        if (r->sampling.bias_token[i] >= s->vocab)
            return loom_error(LOOM_ERR_INVALID, "logit bias of token %d: outside the vocabulary (0..%d)",
                              r->sampling.bias_token[i], s->vocab - 1);
    return NULL;
}

/* The scales r runs with: its own (those it leaves out 0), else the engine's defaults. */
static void lora_resolve(const loom_scheduler *s, const loom_request *r, lora_set *l) {
    memset(l, 0, sizeof *l);
    l->n = loom_engine_n_lora(s->e);
    const int given = r->n_lora ? r->n_lora : l->n;
    if (given) memcpy(l->s, r->n_lora ? r->lora : loom_engine_lora_defaults(s->e), sizeof(float) * (size_t)given);
    uint64_t h = 0xcbf29ce484222325ull;
    bool any = false;
    for (int i = 0; i < l->n; i++) {
        float v = l->s[i] == 0 ? 0.0f : l->s[i]; /* -0 as 0 */
        uint32_t bits;
        memcpy(&bits, &v, sizeof bits);
        h = (h ^ bits) * 0x100000001b3ull;
        any |= v != 0;
    }
    l->root = any ? h | 1 : 0;
}

/* Room for one more waiting request at position `at` (0: the head). */
static waiting_req *wait_insert(loom_scheduler *s, int at) {
    if (s->n_wait == s->cap_wait) {
        int cap = s->cap_wait ? 2 * s->cap_wait : 16;
        waiting_req *w = realloc(s->wait, (size_t)cap * sizeof *w);
        if (!w) return NULL;
        s->wait = w;
        s->cap_wait = cap;
    }
    memmove(&s->wait[at + 1], &s->wait[at], (size_t)(s->n_wait - at) * sizeof *s->wait);
    s->n_wait++;
    memset(&s->wait[at], 0, sizeof *s->wait);
    return &s->wait[at];
}

static void drop_waiting(loom_scheduler *s, int i) {
    free(s->wait[i].toks);
    free(s->wait[i].pred);
    memmove(&s->wait[i], &s->wait[i + 1], (size_t)(s->n_wait - i - 1) * sizeof *s->wait);
    s->n_wait--;
}

loom_status loom_scheduler_submit(loom_scheduler *s, const loom_request *r, uint64_t *id) {
    if (s->failed) return loom_error(LOOM_ERR_INVALID, "the scheduler stopped after an engine failure");
    LOOM_TRY(check_request(s, r));
    int32_t *toks = malloc((size_t)r->n_prompt * sizeof(int32_t));
    int32_t *pred = r->n_prediction > 0 ? malloc((size_t)r->n_prediction * sizeof(int32_t)) : NULL;
    waiting_req *w = toks && (pred || r->n_prediction <= 0) ? wait_insert(s, s->n_wait) : NULL;
    if (!w) {
        free(toks), free(pred);
        return loom_error(LOOM_ERR_NOMEM, "out of memory queueing a prompt of %d tokens", r->n_prompt);
    }
    if (pred) memcpy(pred, r->prediction, (size_t)r->n_prediction * sizeof(int32_t));
    w->pred = pred;
    w->n_pred = pred ? r->n_prediction : 0;
    memcpy(toks, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
    w->toks = toks;
    w->id = s->next_id++;
    w->n_toks = w->n_user_prompt = r->n_prompt;
    /* the last position fed is limit - 2, so with a full context one token can still be sampled */
    int64_t limit = (int64_t)r->n_prompt + r->max_tokens;
    w->limit = r->max_tokens == 0 ? r->n_prompt : limit < s->ctx ? (int)limit : s->ctx;
    if (r->max_tokens > 0 && w->limit <= r->n_prompt) w->limit = r->n_prompt + 1;
    w->sp = r->sampling;
    lora_resolve(s, r, &w->lora);
    w->ignore_eos = r->ignore_eos;
    w->logprobs = r->logprobs;
    w->top_logprobs = r->top_logprobs;
    w->t_submit = loom_now_s();
    *id = w->id;
    return NULL;
}

/* Reports a request that ends before it ran. */
static void finish_early(loom_scheduler *s, const waiting_req *w, const char *reason, loom_status why) {
    if (s->cb.on_finish) {
        double t = loom_now_s();
        loom_finished f = {.id = w->id, .tokens = w->toks + w->n_user_prompt, .n_prompt = w->n_user_prompt,
                           .n_tokens = w->n_toks - w->n_user_prompt, .stop_reason = reason,
                           .error = why ? loom_status_message(why) : NULL, .queue_ms = 1e3 * (t - w->t_submit)};
        s->cb.on_finish(s->cb.user, &f);
    }
    loom_status_free(why);
}

/* Frees `slot` here and, with the next step, on every other rank. */
static void vacate(loom_scheduler *s, int slot) {
    seq_state *q = &s->act[slot];
    if (q->n_toks == q->n_prompt) s->n_prefilling--;
    drop_blocks(s, q);
    free(q->toks);
    free(q->pred);
    int32_t *blocks = q->blocks;
    uint64_t *hash = q->hash;
    memset(q, 0, sizeof *q);
    q->blocks = blocks, q->hash = hash;
    if (!s->release_pending[slot]) {
        s->release_pending[slot] = true;
        s->pending_release[s->n_pending_release++] = (uint32_t)slot;
    }
    s->n_active--;
}

/* Ends the sequence in `slot` and reports it (unless cancelled). */
static void finish(loom_scheduler *s, int slot, const char *reason, const char *error) {
    seq_state *q = &s->act[slot];
    if (!q->cancelled && s->cb.on_finish) {
        loom_finished f = {
            .id = q->id, .tokens = q->toks + q->n_user_prompt, .n_prompt = q->n_user_prompt,
            .n_tokens = q->n_toks - q->n_user_prompt, .stop_reason = reason, .error = error,
            .queue_ms = 1e3 * (q->t_admit - q->t_submit),
            .prompt_ms = q->t_first > 0 ? 1e3 * (q->t_first - q->t_admit) : 0,
            .gen_ms = q->t_first > 0 ? 1e3 * (q->t_last - q->t_first) : 0,
            .draft_tokens = q->n_proposed, .draft_accepted = q->n_kept, .n_cached = q->n_cached,
        };
        s->cb.on_finish(s->cb.user, &f);
    }
    vacate(s, slot);
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

/* Puts a running sequence (not in flight) back at the head of the queue,
 * to be recomputed from its tokens so far. */
static bool preempt(loom_scheduler *s, int slot) {
    seq_state *q = &s->act[slot];
    waiting_req *w = wait_insert(s, 0);
    if (!w) return false;
    w->id = q->id;
    w->toks = q->toks; /* the buffer moves to the queue */
    w->n_toks = q->n_toks;
    w->n_user_prompt = q->n_user_prompt;
    w->limit = q->limit;
    w->sp = q->sp;
    w->lora = q->lora;
    w->ignore_eos = q->ignore_eos;
    w->logprobs = q->logprobs;
    w->top_logprobs = q->top_logprobs;
    w->t_submit = q->t_submit;
    w->t_first = q->t_first;
    w->t_last = q->t_last;
    w->pred = q->pred, w->n_pred = q->n_pred; /* the buffer moves too */
    w->n_proposed = q->n_proposed, w->n_kept = q->n_kept, w->mirostat_mu = q->mirostat_mu;
    q->toks = NULL;
    q->pred = NULL;
    vacate(s, slot);
    s->stats.preemptions++;
    return true;
}

/* The most recently admitted running sequence that is not in flight, or -1. */
static int newest_victim(const loom_scheduler *s) {
    int v = -1;
    for (int i = 0; i < s->S; i++)
        if (s->act[i].used && !s->act[i].in_flight && !s->act[i].in_step && !s->act[i].cancelled &&
            (v < 0 || s->act[i].order > s->act[v].order))
            v = i;
    return v;
}

/* Takes the prefix cache's full blocks for the start of w's tokens into q:
 * never the block of the last token, which must be computed for logits,
 * and never so many that fewer than loom_matmul_invariant_rows() tokens are
 * left to compute (with fewer, AVX-512 computes them with kernels that
 * round differently from the ones a cold run of the prompt used, and the
 * greedy tokens could differ from that run's). */
static void take_cached_prefix(loom_scheduler *s, const waiting_req *w, seq_state *q) {
    const int tail = loom_matmul_invariant_rows();
    int usable = w->n_toks > tail ? (w->n_toks - tail) / s->B : 0;
    uint64_t parent = w->lora.root;
    for (int i = 0; i < usable; i++) {
        const int32_t *t = w->toks + (size_t)i * s->B;
        uint64_t h = loom_kv_blocks_hash(s->pool, parent, t);
        int32_t b = loom_kv_blocks_find(s->pool, h, t);
        if (b < 0) break;
        q->blocks[q->n_blocks++] = b;
        q->hash[i] = h;
        parent = h;
    }
    q->n_published = q->n_blocks;
    q->n_cached = q->n_sent = q->n_blocks * s->B;
}

/* Admits waiting requests, in order, while a slot and the KV blocks for
 * their prompt are free. */
static void admit(loom_scheduler *s) {
    while (s->n_wait > 0 && s->n_active < s->S) {
        waiting_req *w = &s->wait[0];
        if (w->limit == w->n_user_prompt) { /* max_tokens 0 */
            finish_early(s, w, "length", NULL);
            drop_waiting(s, 0);
            continue;
        }
        int slot = 0;
        while (s->act[slot].used) slot++;
        seq_state *q = &s->act[slot];
        q->n_blocks = 0;
        take_cached_prefix(s, w, q);
        int need = (w->n_toks + s->B - 1) / s->B - q->n_blocks;
        int avail = loom_kv_blocks_available(s->pool);
        if (need > avail - (s->n_active > 0 ? s->watermark : 0)) {
            drop_blocks(s, q);
            if (s->n_active > 0) return; /* wait for running sequences to finish */
            finish_early(s, w, "error",
                         loom_error(LOOM_ERR_KV_FULL, "request %llu needs %d KV blocks of %d tokens; the cache has %d",
                                    (unsigned long long)w->id, need, s->B, avail));
            drop_waiting(s, 0);
            continue;
        }
        int32_t *toks = malloc((size_t)w->limit * sizeof(int32_t));
        if (!toks) {
            drop_blocks(s, q);
            finish_early(s, w, "error", loom_error(LOOM_ERR_NOMEM, "out of memory for request %llu",
                                                   (unsigned long long)w->id));
            drop_waiting(s, 0);
            continue;
        }
        memcpy(toks, w->toks, (size_t)w->n_toks * sizeof(int32_t));
        q->used = true;
        q->id = w->id;
        q->order = s->next_order++;
        q->toks = toks;
        q->n_user_prompt = w->n_user_prompt;
        q->n_prompt = q->n_toks = w->n_toks;
        q->limit = w->limit;
        q->pred = w->pred, q->n_pred = w->n_pred;
        w->pred = NULL; /* moved: drop_waiting below frees the rest */
        q->n_proposed = w->n_proposed, q->n_kept = w->n_kept, q->mirostat_mu = w->mirostat_mu;
        q->accept = q->pred ? DRAFT_ACCEPT0_PREDICTED : s->drafter ? DRAFT_ACCEPT0_MODEL : DRAFT_ACCEPT0;
        q->sp = w->sp;
        q->lora = w->lora;
        q->ignore_eos = w->ignore_eos;
        q->logprobs = w->logprobs;
        q->top_logprobs = w->top_logprobs;
        q->t_submit = w->t_submit;
        q->t_admit = loom_now_s();
        q->t_first = w->t_first;
        q->t_last = w->t_last;
        s->stats.prompt_tokens += w->n_toks - q->n_cached;
        s->stats.prefix_queries += w->n_toks;
        s->stats.prefix_hits += q->n_cached;
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
    p->temperature = sp->temperature;
    p->top_k = sp->top_k;
    p->top_p = sp->top_p;
    p->min_p = sp->min_p;
    p->repeat_penalty = sp->repeat_penalty;
    p->repeat_last_n = sp->repeat_last_n;
    p->seed = sp->seed;
    p->presence_penalty = sp->presence_penalty;
    p->frequency_penalty = sp->frequency_penalty;
    p->logprobs = q->logprobs;
    p->top_logprobs = q->top_logprobs;
    p->n_bias_token = p->n_bias_value = (size_t)sp->n_logit_bias;
    p->bias_token = (int32_t *)sp->bias_token; /* read while the message is packed */
    p->bias_value = (float *)sp->bias_value;
    p->json_object = sp->json_object;
    p->json_schema = sp->json_schema ? (char *)sp->json_schema : (char *)""; /* read while the message is packed */
    p->grammar = sp->grammar ? (char *)sp->grammar : (char *)"";
    p->grammar_regex = sp->grammar_regex;
    p->typical_p = sp->typical_p;
    p->top_n_sigma = sp->top_n_sigma;
    p->xtc_probability = sp->xtc_probability;
    p->xtc_threshold = sp->xtc_threshold;
    p->dynatemp_range = sp->dynatemp_range;
    p->dynatemp_exponent = sp->dynatemp_exponent;
    p->dry_multiplier = sp->dry_multiplier;
    p->dry_base = sp->dry_base;
    p->dry_allowed_length = sp->dry_allowed_length;
    p->dry_penalty_last_n = sp->dry_penalty_last_n;
    p->n_dry_breakers = (size_t)sp->n_dry_breakers;
    p->dry_breakers = (char **)sp->dry_breakers; /* read while the message is packed */
    p->infill = sp->infill;
    p->mirostat = sp->mirostat;
    p->mirostat_tau = sp->mirostat_tau;
    p->mirostat_eta = sp->mirostat_eta;
}

/* Gives slot `slot` blocks for positions [0, upto), preempting newer
 * sequences when the pool is dry. New ids go to out[*n_out]. Returns the
 * positions the slot can hold afterwards (less than upto when even
 * preemption could not help), or -1 when the slot itself was preempted. */
static int grow(loom_scheduler *s, int slot, int upto, int32_t *out, int *n_out) {
    seq_state *q = &s->act[slot];
    int need = (upto + s->B - 1) / s->B;
    while (q->n_blocks < need) {
        int32_t b = loom_kv_blocks_alloc(s->pool);
        if (b >= 0) {
            q->blocks[q->n_blocks++] = b;
            out[(*n_out)++] = b;
            continue;
        }
        int v = newest_victim(s);
        if (v < 0) break;                      /* everything else is in flight: wait */
        if (v == slot) {
            if (*n_out > 0) break;             /* keep what this step already gave it */
            return preempt(s, slot) ? -1 : q->n_blocks * s->B;
        }
        if (!preempt(s, v)) break;
    }
    return q->n_blocks * s->B;
}

/* Publishes the slot's blocks that the positions sent so far fill. */
static void publish_full(loom_scheduler *s, seq_state *q) {
    if (!loom_kv_blocks_caching(s->pool)) return;
    while ((q->n_published + 1) * s->B <= q->n_sent && q->n_published < q->n_blocks) {
        int i = q->n_published;
        const int32_t *t = q->toks + (size_t)i * s->B;
        q->hash[i] = loom_kv_blocks_hash(s->pool, i ? q->hash[i - 1] : q->lora.root, t);
        loom_kv_blocks_publish(s->pool, q->blocks[i], q->hash[i], t);
        q->n_published++;
    }
}

/* Decode steps' time against their rows (one stage, pure decode steps:
 * least squares with older steps weighing less), so a row's cost is
 * known for the weights at hand: F16 weights cost ~2 ms a row on 2 Zen 4
 * cores where the read of all of them takes ~9, quantized ones far less. */
static void fit_step(loom_scheduler *s, double rows, double t) {
    double *f = s->fit;
    for (int i = 0; i < 5; i++) f[i] *= DRAFT_FIT_DECAY;
    f[0] += 1, f[1] += rows, f[2] += t, f[3] += rows * rows, f[4] += rows * t;
}

/* The fit's step of n rows and a row's cost. Steps of one size only: their
 * mean, a row by the model above (DRAFT_STEP_ROWS); false before 4 steps. */
static bool fitted(const loom_scheduler *s, int n, double *step, double *row) {
    const double *f = s->fit, det = f[0] * f[3] - f[1] * f[1];
    if (f[0] < 4) return false;
    if (det < 1e-9 * f[0] * f[0]) {
        *step = f[2] / f[0];
        *row = *step / (DRAFT_STEP_ROWS + f[1] / f[0]);
        *step += *row * (n - f[1] / f[0]);
        return *step > 0;
    }
    const double b = (f[0] * f[4] - f[1] * f[2]) / det, a = (f[2] - b * f[1]) / f[0];
    *row = b > 0 ? b : 0;
    *step = a + *row * n;
    return *step > 0;
}

/* What proposing costs with a draft model, one stage, from the
 * measurements: a decode step of the n sequences, a row of it, the draft
 * model's pass (until it ran: its weights' bytes over the target's times
 * the step: decode reads them all) and a row of its catching up on tokens
 * it has not seen (until measured: an eighth of its pass). False before
 * the steps are measured. */
typedef struct {
    double step, row, pass, catch_row;
} draft_costs;

static bool draft_costs_of(const loom_scheduler *s, int n, draft_costs *c) {
    if (!fitted(s, n, &c->step, &c->row)) return false;
    c->pass = loom_drafter_step_seconds(s->drafter);
    if (c->pass <= 0) c->pass = s->draft_bytes_share * c->step;
    c->catch_row = loom_drafter_row_seconds(s->drafter);
    if (c->catch_row <= 0) c->catch_row = c->pass / 8;
    return true;
}

/* What a proposal's place must be likely to be kept to be worth making
 * for one of n decoding sequences. By prompt lookup: n / (DRAFT_STEP_ROWS
 * + n) (above). With a draft model, each token it brings is worth a step's
 * time / n, and it costs its row and its share of the draft model's pass
 * (one pass serves the n sequences): accept^j >= (n · row + pass) / step,
 * by draft_costs_of (before the first steps: the pass as its weights'
 * bytes over the target's); or the options fix the pass's share. Over a
 * pipeline the draft model's time overlaps the later stages' and counts
 * as nothing. A draft model as large as the target thus stops proposing,
 * one a tenth of it proposes while kept 3 times in 10 alone. */
static double worth(const loom_scheduler *s, int n) {
    const double plain = n / (DRAFT_STEP_ROWS + n);
    if (!s->drafter) return plain;
    if (s->draft_cost >= 0) return plain + s->draft_cost;
    if (s->P > 1) return plain;
    draft_costs c;
    if (!draft_costs_of(s, n, &c)) return plain + s->draft_bytes_share;
    return (n * c.row + c.pass) / c.step;
}

/* Whether the draft model's catching up on `lag` tokens of the sequence
 * (its prompt, or what came while it did not propose) pays: what its
 * proposals save over the rest of the reply (at most DRAFT_HORIZON tokens
 * more), at its accept rate and `fit` places a step, against lag rows of
 * catching up. A long prompt under a draft model barely cheaper than the
 * target, or many sequences that resume proposing late in long replies,
 * are not worth it. c: the measured costs (NULL: one stage, no fixed
 * share, or not measured yet: it pays). */
static bool catch_up_pays(const loom_scheduler *s, int slot, int n, int fit, const draft_costs *c) {
    const seq_state *q = &s->act[slot];
    if (!c) return true;
    const int lag = q->n_toks - loom_drafter_known(s->drafter, slot, q->toks, q->n_toks);
    if (lag <= fit + 1) return true;
    double gain = 0, kept = 0, a = 1;
    for (int j = 1; j <= fit; j++) {
        a *= q->accept;
        gain += a * c->step / n - c->row - c->pass / n;
        kept += a;
    }
    int rest = q->limit - q->n_toks;
    if (rest > DRAFT_HORIZON) rest = DRAFT_HORIZON;
    return gain * rest / (1 + kept) >= lag * c->catch_row;
}

/* How many of a sequence's next places are worth a row by its estimate
 * (accept^place >= threshold: worth() below), at most max; none: the
 * estimate rises, to try again now and then. */
static int worth_rows(seq_state *q, int max, double threshold) {
    double used = q->accept;
    int fit = 0;
    while (fit < max && used >= threshold) fit++, used *= q->accept;
    if (fit == 0) q->accept += DRAFT_RETRY * (1.0f - q->accept);
    return fit;
}

/* The most proposals the sequence may make this step: max, its source's
 * cap, the request's limit. */
static int proposal_cap(const loom_scheduler *s, const seq_state *q, int max) {
    const int cap = q->pred && s->draft_max < DRAFT_PREDICTION_MAX ? DRAFT_PREDICTION_MAX : s->draft_max;
    if (max > cap) max = cap;
    if (max > q->limit - q->n_toks - 1) max = q->limit - q->n_toks - 1;
    return max;
}

/* What followed the sequence's last tokens in its expected output, or (by
 * lookup: no draft model) in its own tokens; up to fit, at toks[n_toks ..]. */
static int lookup(const loom_scheduler *s, seq_state *q, int fit) {
    const int nmin = s->draft_max ? s->draft_min_ngram : LOOM_DRAFT_MIN_NGRAM,
              nmax = s->draft_max ? s->draft_max_ngram : LOOM_DRAFT_MAX_NGRAM;
    int k = 0;
    if (q->pred) /* the expected output first: what followed the reply's last tokens there */
        k = loom_draft_lookup_in(q->toks + q->n_user_prompt, q->n_toks - q->n_user_prompt, q->pred, q->n_pred, nmin, nmax,
                                 fit, q->toks + q->n_toks);
    if (k == 0 && s->draft_max && !s->drafter)
        k = loom_draft_lookup(q->toks, q->n_toks, nmin, nmax, fit, q->toks + q->n_toks);
    return k;
}

/* Proposals for the decoding sequence in `slot` (draft.h), written after
 * its tokens: at most `max` and as many as are worth their rows among
 * n_decode decoding sequences (above), none past the request's limit, and
 * only as many as the KV blocks it holds or the pool has free take (never
 * preempting another sequence for them). New block ids go to out[*n_out].
 * With a draft model they were made before the step (draft_model_pass). */
static int propose(loom_scheduler *s, int slot, int max, int n_decode, int32_t *out, int *n_out) {
    seq_state *q = &s->act[slot];
    max = proposal_cap(s, q, max);
    if (max <= 0) return 0;
    int k;
    if (s->drafter) {
        k = q->n_prop < max ? q->n_prop : max;
    } else {
        const int fit = worth_rows(q, max, worth(s, n_decode));
        k = fit ? lookup(s, q, fit) : 0;
    }
    while (k > 0 && q->n_blocks * s->B < q->n_sent + 1 + k) {
        int32_t b = loom_kv_blocks_available(s->pool) > s->watermark ? loom_kv_blocks_alloc(s->pool) : -1;
        if (b < 0) {
            k = q->n_blocks * s->B - q->n_sent - 1;
            break;
        }
        q->blocks[q->n_blocks++] = b;
        out[(*n_out)++] = b;
    }
    return k > 0 ? k : 0;
}

/* Whether the sequence takes a decode row in the step being built. */
static bool decodes_next(const seq_state *q) {
    return q->used && !q->in_flight && !q->cancelled && q->n_sent >= q->n_prompt;
}

/* With a draft model: the proposals of the decoding sequences the next
 * step takes (build_step's order and shares), all in one call of the
 * draft model. An expected output's match goes first, then an earlier
 * occurrence of the sequence's last 4 tokens (prompt lookup at its
 * strictest, which costs nothing: a reply copying its input proposes
 * without the draft model's passes). A failing draft model is reported
 * once and dropped: decoding goes on without it. */
static void draft_model_pass(loom_scheduler *s, int cap_seqs, int n_decode, int draft_rows, int decoding) {
    int n = 0, rows = 0, seqs = 0, decode_left = decoding;
    for (int i = 0; i < s->S; i++) s->act[i].n_prop = 0;
    if (draft_rows <= 0) return;
    const double threshold = worth(s, n_decode);
    draft_costs costs;
    const bool measured = s->draft_cost < 0 && s->P == 1 && draft_costs_of(s, n_decode, &costs);
    for (int i = 0; i < s->S && seqs < cap_seqs; i++) {
        seq_state *q = &s->act[i];
        if (!decodes_next(q)) continue;
        decode_left--, seqs++;
        const int spare = s->R - rows - 1 - (decode_left > 0 ? decode_left : 0);
        const int max = proposal_cap(s, q, spare < draft_rows ? spare : draft_rows);
        const int fit = max > 0 ? worth_rows(q, max, threshold) : 0;
        if (fit == 0) {
            rows++;
            continue;
        }
        int k = q->pred ? lookup(s, q, fit) : 0;
        if (k == 0) /* its last LOOM_DRAFT_MAX_NGRAM tokens occurred before: what followed then, for free */
            k = loom_draft_lookup(q->toks, q->n_toks, LOOM_DRAFT_MAX_NGRAM, LOOM_DRAFT_MAX_NGRAM, fit, q->toks + q->n_toks);
        if (k > 0) {
            q->n_prop = k;
        } else if (catch_up_pays(s, i, n_decode, fit, measured ? &costs : NULL)) {
            s->dreqs[n++] = (loom_draft_req){.slot = i, .toks = q->toks, .n_toks = q->n_toks, .want = fit,
                                             .out = q->toks + q->n_toks};
        } else {
            rows++;
            continue;
        }
        draft_rows -= k > 0 ? k : fit;
        rows += 1 + (k > 0 ? k : fit);
    }
    if (n == 0) return;
    loom_status st = loom_drafter_propose(s->drafter, s->dreqs, n);
    if (st) {
        fprintf(stderr, "loom: the draft model failed (%s); decoding goes on without its proposals\n",
                loom_status_message(st));
        loom_status_free(st);
        s->drafter = NULL;
        s->draft_max = 0;
        return;
    }
    for (int j = 0; j < n; j++) s->act[s->dreqs[j].slot].n_prop = s->dreqs[j].n_out;
}

/* Adds `take` rows of the sequence in slot i to the micro-batch, the last
 * n_draft of them proposals. */
static void add_rows(loom_scheduler *s, mb_state *mb, int nseq, int i, int take, int n_draft, const int32_t *blocks,
                     int n_blocks) {
    seq_state *q = &s->act[i];
    bool prefill = q->n_sent < q->n_prompt;
    Loom__SeqStep *m = &mb->seqs[nseq];
    loom__seq_step__init(m);
    m->id = q->id;
    m->slot = (uint32_t)i;
    m->first_pos = (uint32_t)q->n_sent;
    m->n_tokens = (size_t)take;
    m->tokens = q->toks + q->n_sent;
    m->want_logits = q->n_sent + take >= q->n_prompt;
    m->n_draft = (uint32_t)n_draft;
    m->blocks = (int32_t *)blocks;
    m->n_blocks = (size_t)n_blocks;
    if (!q->started) { /* every block so far, those found in the prefix cache included */
        m->blocks = q->blocks;
        m->n_blocks = (size_t)q->n_blocks;
        sampling_message(&mb->sps[nseq], q);
        m->sampling = &mb->sps[nseq];
        m->start = true;
        m->lora = q->lora.s;
        m->n_lora = (size_t)q->lora.n;
        m->n_prompt = (uint32_t)q->n_prompt;
        m->n_generated = (uint32_t)(q->n_prompt - q->n_user_prompt);
        m->history = q->toks;
        m->n_history = (size_t)q->n_sent;
        m->mirostat_mu = q->mirostat_mu;
        q->started = true;
    }
    q->n_sent += take - n_draft; /* proposals count once their tokens come back */
    q->n_draft = n_draft;
    q->in_flight = m->want_logits;
    q->in_step = true;
    mb->has_prefill |= prefill;
    mb->n_logits += m->want_logits;
    mb->seq_ptrs[nseq] = m;
    publish_full(s, q);
}

/* Builds the next micro-batch from sequences not in flight: one row per
 * decoding sequence, then prompt chunks in admission order, each at most an
 * even share of what is left. Returns false when nothing is ready. */
static bool build_step(loom_scheduler *s, mb_state *mb) {
    int cap_seqs = (s->n_active + s->P - 1) / s->P;
    int rows = 0, nseq = 0, decoding = 0;
    mb->has_prefill = false;
    mb->n_logits = 0;
    for (int i = 0; i < s->S; i++) {
        s->act[i].in_step = false;
        decoding += s->act[i].used && !s->act[i].cancelled && s->act[i].n_sent >= s->act[i].n_prompt;
    }
    int draft_rows = s->draft_rows, decode_left = decoding, n_decode = decoding < cap_seqs ? decoding : cap_seqs;
    /* proposals never take a step of decode rows across the row count from which the matmuls round
     * differently (kernels.h): each row's result stays the bits it has without them */
    if (n_decode < s->invariant && draft_rows > s->invariant - 1 - n_decode) draft_rows = s->invariant - 1 - n_decode;
    if (s->drafter) draft_model_pass(s, cap_seqs, n_decode, draft_rows, decoding);
    for (int i = 0; i < s->S && rows < s->R && nseq < cap_seqs; i++) { /* decode rows */
        seq_state *q = &s->act[i];
        if (!decodes_next(q)) continue;
        decode_left--;
        int32_t *nb = mb->new_blocks + (size_t)nseq * s->max_blocks;
        int n_nb = 0;
        int room = grow(s, i, q->n_sent + 1, nb, &n_nb);
        if (room < q->n_sent + 1) continue; /* preempted, or no block this round */
        /* proposals within the step's share, leaving a row for every other decoding sequence */
        int spare = s->R - rows - 1 - (decode_left > 0 ? decode_left : 0);
        int k = s->draft_max || q->pred ? propose(s, i, spare < draft_rows ? spare : draft_rows, n_decode, nb, &n_nb) : 0;
        draft_rows -= k;
        add_rows(s, mb, nseq++, i, 1 + k, k, nb, n_nb);
        rows += 1 + k;
    }
    int budget = s->R - rows;
    if (decoding > 0 && budget > s->prefill_rows) budget = s->prefill_rows;
    for (int pass = 0; pass < 2 && budget > 0; pass++) {
        /* prompts by admission order; pass 0 gives each an even share */
        int waiting = 0;
        for (int i = 0; i < s->S; i++)
            waiting += s->act[i].used && !s->act[i].cancelled && !s->act[i].in_flight &&
                       s->act[i].n_sent < s->act[i].n_prompt;
        if (waiting == 0) break;
        int share = pass == 0 ? (budget + waiting - 1) / waiting : budget;
        for (;;) {
            int best = -1;
            for (int i = 0; i < s->S; i++) {
                seq_state *q = &s->act[i];
                if (!q->used || q->cancelled || q->in_flight || q->n_sent >= q->n_prompt) continue;
                if (q->in_step) continue;
                if (best < 0 || q->order < s->act[best].order) best = i;
            }
            if (best < 0 || budget <= 0 || nseq >= cap_seqs) break;
            seq_state *q = &s->act[best];
            int take = q->n_prompt - q->n_sent;
            if (take > share) take = share;
            if (take > budget) take = budget;
            int32_t *nb = mb->new_blocks + (size_t)nseq * s->max_blocks;
            int n_nb = 0;
            int room = grow(s, best, q->n_sent + take, nb, &n_nb);
            if (room < 0) continue;           /* it was preempted itself */
            if (room <= q->n_sent) break;     /* no block for it this round */
            if (take > room - q->n_sent) take = room - q->n_sent;
            add_rows(s, mb, nseq++, best, take, 0, nb, n_nb);
            rows += take;
            budget -= take;
        }
    }
    if (nseq == 0) return false;
    Loom__Step step = LOOM__STEP__INIT;
    step.protocol = LOOM_PROTOCOL;
    step.micro_batch = s->mb_id++;
    memcpy(mb->release, s->pending_release, sizeof(uint32_t) * (size_t)s->n_pending_release);
    step.release = mb->release;
    step.n_release = (size_t)s->n_pending_release;
    for (int i = 0; i < s->n_pending_release; i++) s->release_pending[s->pending_release[i]] = false;
    s->n_pending_release = 0;
    step.seqs = mb->seq_ptrs;
    step.n_seqs = (size_t)nseq;
    mb->step = step;
    return true;
}

/* Takes the tokens of a finished micro-batch: reports them, ends sequences.
 * A sequence's tokens come in a row: one, or 1 .. n_draft + 1 with proposals. */
static loom_status take_result(loom_scheduler *s, const mb_state *mb, const Loom__StepResult *r) {
    if (r->micro_batch != mb->step.micro_batch || r->n_slots != r->n_tokens ||
        (r->n_mirostat_mu && r->n_mirostat_mu != r->n_tokens))
        return loom_error(LOOM_ERR_FORMAT, "result for micro-batch %llu with %zu slots, %zu tokens and %zu mirostat "
                          "states, expected %llu", (unsigned long long)r->micro_batch, r->n_slots, r->n_tokens,
                          r->n_mirostat_mu, (unsigned long long)mb->step.micro_batch);
    int runs = 0;
    for (size_t k = 0; k < r->n_slots; k++) {
        int slot = (int)r->slots[k];
        if (k > 0 && r->slots[k - 1] == r->slots[k]) continue;
        size_t n = 1;
        while (k + n < r->n_slots && r->slots[k + n] == r->slots[k]) n++;
        if (slot < 0 || slot >= s->S || !s->act[slot].used || !s->act[slot].in_flight ||
            n > 1 + (size_t)s->act[slot].n_draft)
            return loom_error(LOOM_ERR_FORMAT, "result of micro-batch %llu gives slot %d %zu tokens, which it does not await",
                              (unsigned long long)r->micro_batch, slot, n);
        runs++;
    }
    if (runs != mb->n_logits)
        return loom_error(LOOM_ERR_FORMAT, "result for micro-batch %llu has tokens for %d sequences, expected %d",
                          (unsigned long long)r->micro_batch, runs, mb->n_logits);
    account(s);
    double t = s->t_mark;
    size_t lp_next = 0; /* logprobs entries come in the order of their tokens */
    for (size_t k = 0; k < r->n_slots;) {
        int slot = (int)r->slots[k];
        size_t end = k;
        while (end < r->n_slots && r->slots[end] == (uint32_t)slot) end++;
        seq_state *q = &s->act[slot];
        q->in_flight = false;
        s->stats.draft_tokens += q->n_draft;
        s->stats.draft_accepted += (int64_t)(end - k) - 1;
        q->n_proposed += q->n_draft;
        q->n_kept += (int)(end - k) - 1;
        for (int j = 0; j < q->n_draft && j <= (int)(end - k) - 1; j++) /* tried until the first miss */
            q->accept += DRAFT_EMA * ((j < (int)(end - k) - 1 ? 1.0f : 0.0f) - q->accept);
        q->n_sent += (int)(end - k) - 1; /* the accepted proposals' positions hold their keys and values */
        q->n_draft = 0;
        bool done = false;
        for (; k < end; k++) {
            const loom_token_logprobs *lp = NULL;
            loom_token_logprobs tl;
            if (lp_next < r->n_logprobs && r->logprobs[lp_next]->slot == (uint32_t)slot) {
                const Loom__TokenLogprobs *m = r->logprobs[lp_next++];
                size_t nt = m->n_top_ids < m->n_top_logprobs ? m->n_top_ids : m->n_top_logprobs;
                tl = (loom_token_logprobs){m->logprob, (int)nt, m->top_ids, m->top_logprobs};
                lp = &tl;
            }
            if (done) continue;
            if (q->cancelled) {
                finish(s, slot, "cancelled", NULL);
                done = true;
                continue;
            }
            int32_t tok = r->tokens[k];
            if (r->n_mirostat_mu) q->mirostat_mu = r->mirostat_mu[k]; /* (what a resumed sequence starts from) */
            if (q->n_toks == q->n_prompt) s->n_prefilling--;
            q->toks[q->n_toks++] = tok;
            if (q->t_first == 0) q->t_first = t;
            q->t_last = t;
            s->stats.gen_tokens++;
            if (!mb->has_prefill) s->stats.decode_tokens++;
            if (s->cb.on_token) s->cb.on_token(s->cb.user, q->id, tok, q->logprobs ? lp : NULL);
            if (!q->ignore_eos && s->cb.is_eog(s->cb.user, tok)) finish(s, slot, "stop", NULL), done = true;
            else if (q->n_toks >= q->limit) finish(s, slot, "length", NULL), done = true;
        }
        if (!done) publish_full(s, q);
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
        const double t0 = loom_now_s();
        LOOM_TRY(loom_engine_launch(s->e, &mb->step, &res));
        s->stats.steps++;
        if (!mb->has_prefill) s->stats.decode_steps++;
        if (s->P == 1) { /* one stage: the tokens are here already */
            if (!mb->has_prefill && s->drafter) {
                size_t rows = 0;
                for (size_t i = 0; i < mb->step.n_seqs; i++) rows += mb->step.seqs[i]->n_tokens;
                fit_step(s, (double)rows, loom_now_s() - t0);
            }
            return take_result(s, mb, &res);
        }
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

loom_status loom_scheduler_drain(loom_scheduler *s) {
    while (s->inflight > 0 && !s->failed) {
        Loom__StepResult *r = NULL;
        loom_status st = loom_engine_collect(s->e, &r);
        if (!st) st = take_result(s, &s->mbs[s->head], r);
        loom__step_result__free_unpacked(r, NULL);
        s->head = (s->head + 1) % s->P;
        s->inflight--;
        if (st) {
            fail_all(s, st);
            return st;
        }
    }
    return NULL;
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
