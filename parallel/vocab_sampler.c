/*
 * parallel/vocab_sampler.c — vocabulary-parallel sampling (contract in
 * vocab_sampler.h).
 */
#include "parallel/vocab_sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"

enum { TAG_LOGITS = 16, TAG_ARGMAX = 18 };

#define TP_MAX 1024

typedef struct dry_entry dry_entry; /* below */

struct loom_vocab_sampler {
    loom_comm *tp;           /* the last stage's TP group; NULL with one TP rank */
    int tp_rank, tp_size;
    bool leader;
    int vocab;               /* whole vocabulary */
    int64_t n_vocab;         /* this rank's slice */
    int64_t *vocab_off;      /* (tp_size + 1) first vocabulary row of each TP rank */
    int slots;
    bool *greedy;            /* (slots) the slot's token is the plain argmax (no penalty, no logprobs) */
    loom_sampler **samplers; /* (slots) leader */
    int32_t *n_hist;         /* (slots) leader: positions already in the penalty history */
    int32_t *gen_from;       /* (slots) leader: first position whose token was generated */
    int8_t *top_lp;          /* (slots) leader: alternatives to report; -1: no logprobs */
    float *raw;              /* leader: (vocab) the row being sampled, before penalties */
    Loom__TokenLogprobs *lp; /* leader: (max_rows) result entries */
    Loom__TokenLogprobs **lp_ptrs;
    int32_t *lp_ids;         /* leader: (max_rows, 20) */
    float *lp_vals;          /* leader: (max_rows, 20) */
    float *mu;               /* leader: (max_rows) mirostat's mu after each token of a result */
    int32_t *argmax;         /* (max_rows, 2) value bits + vocabulary id */
    float *full;             /* leader: (2 * max_rows, vocab) full rows + one rank's incoming slice */
    loom_vocab_text text;    /* leader: the tokens' text, for structured output and the infill sampler (n = 0
                                until set) */
    int32_t end_token;       /* leader: the infill sampler's end (the tokenizer's end of turn, or of text) */
    struct {
        void *user;              /* a loom_json_constraint or loom_grammar_constraint; NULL: none */
        void (*free)(void *);
    } *cons;                     /* (slots) leader: the slot's structured-output constraint */
    loom_tokenizer *tok;         /* leader: the model's (set with the text), for DRY's breakers */
    dry_entry **dry;             /* (slots) leader: the slot's DRY breakers, or NULL */
    dry_entry *dry_tables;       /* leader: every breaker set's table (clients send the same set each time) */
    double comm_s;
};

/* A set of DRY breakers (their strings, each ended by a NUL) as a table of
 * token sequences (3 ms over a 49k vocabulary): built once, shared by the
 * slots that use it, kept while at most DRY_KEEP sets are unused. */
struct dry_entry {
    char *key;
    size_t key_len;
    int refs;
    loom_dry_table t;
    dry_entry *next;
};
#define DRY_KEEP 4

static void dry_free(dry_entry *d) {
    free(d->key);
    loom_dry_table_free(&d->t);
    free(d);
}

/* The slot no longer uses d; unused sets beyond DRY_KEEP go. */
static void dry_release(dry_entry **list, dry_entry *d) {
    if (!d || --d->refs > 0) return;
    int unused = 0;
    for (dry_entry *e = *list; e; e = e->next) unused += e->refs == 0;
    if (unused <= DRY_KEEP) return;
    for (dry_entry **pp = list; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            dry_free(d);
            return;
        }
}

/* The table of breakers b[0..n), from the list or built into it. */
static loom_status dry_acquire(dry_entry **list, const loom_tokenizer *tok, int32_t vocab, const char *const *b, int n,
                               dry_entry **out) {
    size_t len = 0;
    for (int i = 0; i < n; i++) len += strlen(b[i]) + 1;
    char *key = malloc(len ? len : 1);
    if (!key) return loom_error(LOOM_ERR_NOMEM, "out of memory for DRY's breakers");
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const size_t k = strlen(b[i]) + 1;
        memcpy(key + at, b[i], k);
        at += k;
    }
    for (dry_entry *e = *list; e; e = e->next)
        if (e->key_len == len && !memcmp(e->key, key, len)) {
            free(key);
            e->refs++;
            *out = e;
            return NULL;
        }
    dry_entry *d = calloc(1, sizeof *d);
    loom_status st = d ? loom_dry_table_build(tok, vocab, b, n, &d->t) : loom_error(LOOM_ERR_NOMEM, "out of memory");
    if (st) {
        free(key), free(d);
        return st;
    }
    d->key = key, d->key_len = len, d->refs = 1, d->next = *list;
    *list = *out = d;
    return NULL;
}

/* Every rank sends its (begin, end) of the vocabulary; they must tile it. */
static loom_status exchange_slices(loom_vocab_sampler *vs, const loom_weights *w) {
    int tp = vs->tp_size;
    int64_t mine[2] = {w->shard.vocab_begin, w->shard.vocab_end};
    int64_t *all = malloc(sizeof(int64_t) * 2 * (size_t)tp);
    size_t counts[TP_MAX], displs[TP_MAX];
    if (!all) return loom_error(LOOM_ERR_NOMEM, "cannot exchange vocabulary slices");
    for (int r = 0; r < tp; r++) counts[r] = 2, displs[r] = 2 * (size_t)r;
    loom_status st = NULL;
    if (tp > 1) st = loom_comm_all_gatherv(vs->tp, mine, 2, all, counts, displs, LOOM_DT_I64);
    else memcpy(all, mine, sizeof mine);
    for (int r = 0; !st && r < tp; r++) {
        if (all[2 * r] != (r == 0 ? 0 : all[2 * r - 1]) || all[2 * r + 1] <= all[2 * r])
            st = loom_error(LOOM_ERR_PLAN, "vocabulary slices of the last stage are not contiguous at TP rank %d", r);
        vs->vocab_off[r] = all[2 * r];
    }
    if (!st) {
        vs->vocab_off[tp] = all[2 * tp - 1];
        if (vs->vocab_off[tp] != vs->vocab)
            st = loom_error(LOOM_ERR_PLAN, "the last stage holds %lld of %d vocabulary rows",
                            (long long)vs->vocab_off[tp], vs->vocab);
    }
    free(all);
    return st;
}

loom_status loom_vocab_sampler_create(const loom_topology *t, const loom_weights *w, int max_rows, int slots,
                                      loom_vocab_sampler **out) {
    *out = NULL;
    if (t->tp_size < 1 || t->tp_size > TP_MAX)
        return loom_error(LOOM_ERR_INVALID, "TP size %d is outside 1..%d", t->tp_size, TP_MAX);
    loom_vocab_sampler *vs = calloc(1, sizeof *vs);
    if (!vs) return loom_error(LOOM_ERR_NOMEM, "out of memory for the sampler");
    vs->tp = t->tp_size > 1 ? t->tp_group : NULL;
    vs->tp_rank = t->tp_rank;
    vs->tp_size = t->tp_size;
    vs->leader = t->tp_rank == 0;
    vs->vocab = w->cfg.vocab;
    vs->n_vocab = w->n_vocab;
    vs->slots = slots;
    size_t R = (size_t)max_rows;
    vs->vocab_off = malloc(sizeof(int64_t) * ((size_t)t->tp_size + 1));
    vs->greedy = calloc((size_t)slots, sizeof *vs->greedy);
    vs->argmax = malloc(R * 2 * sizeof(int32_t));
    if (vs->leader) {
        vs->samplers = calloc((size_t)slots, sizeof *vs->samplers);
        vs->cons = calloc((size_t)slots, sizeof *vs->cons);
        vs->dry = calloc((size_t)slots, sizeof *vs->dry);
        vs->n_hist = calloc((size_t)slots, sizeof *vs->n_hist);
        vs->gen_from = calloc((size_t)slots, sizeof *vs->gen_from);
        vs->top_lp = calloc((size_t)slots, sizeof *vs->top_lp);
        vs->full = malloc(2 * R * (size_t)vs->vocab * sizeof(float));
        vs->raw = malloc((size_t)vs->vocab * sizeof(float));
        vs->lp = calloc(R, sizeof *vs->lp);
        vs->lp_ptrs = calloc(R, sizeof *vs->lp_ptrs);
        vs->lp_ids = calloc(R * 20, sizeof *vs->lp_ids);
        vs->lp_vals = calloc(R * 20, sizeof *vs->lp_vals);
        vs->mu = calloc(R, sizeof *vs->mu);
    }
    loom_status st = NULL;
    bool leader_ok = !vs->leader || (vs->samplers && vs->cons && vs->dry && vs->n_hist && vs->gen_from && vs->top_lp && vs->full && vs->raw &&
                                     vs->lp && vs->lp_ptrs && vs->lp_ids && vs->lp_vals && vs->mu);
    if (!vs->vocab_off || !vs->greedy || !vs->argmax || !leader_ok)
        st = loom_error(LOOM_ERR_NOMEM, "out of memory for sampling %d rows", max_rows);
    if (!st) st = exchange_slices(vs, w);
    if (st) {
        loom_vocab_sampler_free(vs);
        return st;
    }
    *out = vs;
    return NULL;
}

void loom_vocab_sampler_free(loom_vocab_sampler *vs) {
    if (!vs) return;
    for (int i = 0; vs->samplers && i < vs->slots; i++) loom_sampler_free(vs->samplers[i]);
    free(vs->samplers);
    free(vs->n_hist);
    free(vs->gen_from);
    free(vs->top_lp);
    free(vs->raw);
    free(vs->lp);
    free(vs->lp_ptrs);
    free(vs->lp_ids);
    free(vs->lp_vals);
    free(vs->mu);
    free(vs->vocab_off);
    free(vs->greedy);
    free(vs->argmax);
    free(vs->full);
    for (int i = 0; vs->cons && i < vs->slots; i++)
        if (vs->cons[i].user) vs->cons[i].free(vs->cons[i].user);
    free(vs->cons);
    while (vs->dry_tables) {
        dry_entry *d = vs->dry_tables;
        vs->dry_tables = d->next;
        dry_free(d);
    }
    free(vs->dry);
    loom_tokenizer_free(vs->tok);
    loom_vocab_text_free(&vs->text);
    free(vs);
}

loom_status loom_vocab_sampler_set_text(loom_vocab_sampler *vs, loom_tokenizer *tok) {
    if (!vs->leader || vs->text.n) {
        loom_tokenizer_free(tok);
        return NULL;
    }
    vs->end_token = loom_tokenizer_eot(tok) >= 0 ? loom_tokenizer_eot(tok) : loom_tokenizer_eos(tok);
    loom_status st = loom_vocab_text_build(tok, vs->vocab, &vs->text);
    if (st) loom_tokenizer_free(tok);
    else vs->tok = tok;
    return st;
}

bool loom_vocab_sampler_has_text(const loom_vocab_sampler *vs) { return !vs->leader || vs->text.n > 0; }

static bool wants_dry_table(const loom_sampling_params *p) { return p->dry_multiplier != 0 && p->n_dry_breakers > 0; }

bool loom_vocab_sampler_needs_text(const loom_sampling_params *p) {
    return p->json_object || p->json_schema || p->grammar || p->infill || wants_dry_table(p);
}

double loom_vocab_sampler_comm_seconds(const loom_vocab_sampler *vs) { return vs->comm_s; }

static void free_json(void *c) { loom_json_constraint_free(c); }
static void free_grammar(void *c) { loom_grammar_constraint_free(c); }

loom_status loom_vocab_sampler_start(loom_vocab_sampler *vs, int slot, const loom_seq_sampling *p, int n_prompt,
                                     int n_generated) {
    vs->greedy[slot] = loom_sampling_is_plain_greedy(&p->params) && !p->logprobs;
    if (!vs->leader) return NULL;
    loom_sampler_free(vs->samplers[slot]);
    vs->samplers[slot] = NULL;
    vs->n_hist[slot] = 0;
    vs->gen_from[slot] = n_prompt - n_generated;
    vs->top_lp[slot] = (int8_t)(!p->logprobs ? -1 : p->top_logprobs < 0 ? 0 : p->top_logprobs > 20 ? 20 : p->top_logprobs);
    if (vs->cons[slot].user) vs->cons[slot].free(vs->cons[slot].user);
    vs->cons[slot].user = NULL;
    dry_release(&vs->dry_tables, vs->dry[slot]);
    vs->dry[slot] = NULL;
    LOOM_TRY(loom_sampler_create(&p->params, vs->vocab, &vs->samplers[slot]));
    if (wants_dry_table(&p->params)) {
        if (!vs->tok) return loom_error(LOOM_ERR_INVALID, "DRY's breakers before the vocabulary's text was set");
        LOOM_TRY(dry_acquire(&vs->dry_tables, vs->tok, vs->vocab, p->params.dry_breakers, p->params.n_dry_breakers,
                             &vs->dry[slot]));
        loom_sampler_set_dry(vs->samplers[slot], &vs->dry[slot]->t.b);
    }
    if (p->params.json_object || p->params.json_schema || p->params.grammar) {
        if (!vs->text.n) return loom_error(LOOM_ERR_INVALID, "structured output before the vocabulary's text was set");
        loom_sampler_constraint c;
        if (p->params.grammar) {
            loom_grammar *g;
            loom_grammar_constraint *gc;
            const size_t n = strlen(p->params.grammar);
            LOOM_TRY(p->params.grammar_regex ? loom_grammar_compile_regex(p->params.grammar, n, &g)
                                             : loom_grammar_compile(p->params.grammar, n, &g));
            LOOM_TRY(loom_grammar_constraint_create(&vs->text, g, &gc));
            c = (loom_sampler_constraint){loom_grammar_constraint_fits, loom_grammar_constraint_accept, gc};
            vs->cons[slot].free = free_grammar;
        } else {
            static const char OBJECT[] = "{\"type\": \"object\"}";
            const char *schema = p->params.json_schema ? p->params.json_schema : OBJECT;
            loom_json_schema *js;
            loom_json_constraint *jc;
            LOOM_TRY(loom_json_schema_compile(schema, strlen(schema), &js));
            LOOM_TRY(loom_json_constraint_create(&vs->text, js, &jc));
            c = (loom_sampler_constraint){loom_json_constraint_fits, loom_json_constraint_accept, jc};
            vs->cons[slot].free = free_json;
        }
        vs->cons[slot].user = c.user;
        loom_sampler_set_constraint(vs->samplers[slot], &c);
    }
    if (p->params.infill) {
        if (!vs->text.n) return loom_error(LOOM_ERR_INVALID, "the infill sampler before the vocabulary's text was set");
        const loom_sampler_vocab v = {.n = vs->text.n, .off = vs->text.off, .text = vs->text.bytes,
                                      .kind = vs->text.kind, .end_token = vs->end_token};
        loom_sampler_set_vocab(vs->samplers[slot], &v);
    }
    loom_sampler_skip(vs->samplers[slot], n_generated); /* (the streams the parameters draw from) */
    if (p->params.mirostat && n_generated > 0) loom_sampler_set_mirostat_mu(vs->samplers[slot], p->mirostat_mu);
    return NULL;
}

bool loom_vocab_sampler_has(const loom_vocab_sampler *vs, int slot) {
    return !vs->leader || vs->samplers[slot] != NULL;
}

void loom_vocab_sampler_history(loom_vocab_sampler *vs, int slot, int pos, int32_t token) {
    if (!vs->leader || pos < vs->n_hist[slot]) return;
    if (pos >= vs->gen_from[slot]) loom_sampler_accept_output(vs->samplers[slot], token);
    else loom_sampler_accept(vs->samplers[slot], token);
    vs->n_hist[slot] = pos + 1;
}

/* Each rank's best (value, id) per row; the leader keeps the largest, the
 * lowest id on ties (slices are in id order, so later ranks win only when
 * strictly larger). On return the leader's vs->argmax holds the winners. */
static loom_status distributed_argmax(loom_vocab_sampler *vs, const float *logits, int n_out) {
    const int64_t nv = vs->n_vocab, v0 = vs->vocab_off[vs->tp_rank];
    for (int r = 0; r < n_out; r++) {
        const int32_t i = loom_argmax(logits + (size_t)r * nv, (int32_t)nv);
        memcpy(&vs->argmax[2 * r], &logits[(size_t)r * nv + i], sizeof(float));
        vs->argmax[2 * r + 1] = (int32_t)(v0 + i);
    }
    double t0 = loom_now_s();
    loom_status st = NULL;
    if (!vs->leader) {
        st = loom_comm_send(vs->tp, vs->argmax, 2 * (size_t)n_out, LOOM_DT_I32, 0, TAG_ARGMAX);
    } else {
        int32_t *best = vs->argmax, *in = (int32_t *)vs->full; /* room for one rank's pairs */
        for (int src = 1; src < vs->tp_size && !st; src++) {
            st = loom_comm_recv(vs->tp, in, 2 * (size_t)n_out, LOOM_DT_I32, src, TAG_ARGMAX);
            for (int r = 0; r < n_out && !st; r++) {
                float a, b;
                memcpy(&a, &best[2 * r], sizeof a);
                memcpy(&b, &in[2 * r], sizeof b);
                if (b > a) best[2 * r] = in[2 * r], best[2 * r + 1] = in[2 * r + 1];
            }
        }
    }
    vs->comm_s += loom_now_s() - t0;
    return st;
}

/* The leader assembles full rows (n_out, vocab) in vs->full from every
 * rank's slice. */
static loom_status gather_rows(loom_vocab_sampler *vs, const float *logits, int n_out) {
    const int V = vs->vocab;
    const int64_t nv = vs->n_vocab;
    double t0 = loom_now_s();
    loom_status st = NULL;
    if (vs->leader) {
        for (int r = 0; r < n_out; r++)
            memcpy(vs->full + (size_t)r * V, logits + (size_t)r * nv, (size_t)nv * sizeof(float));
        float *in = vs->full + (size_t)n_out * V;
        for (int src = 1; src < vs->tp_size && !st; src++) {
            int64_t v0 = vs->vocab_off[src], w = vs->vocab_off[src + 1] - v0;
            st = loom_comm_recv(vs->tp, in, (size_t)n_out * w, LOOM_DT_F32, src, TAG_LOGITS);
            for (int r = 0; r < n_out && !st; r++)
                memcpy(vs->full + (size_t)r * V + v0, in + (size_t)r * w, (size_t)w * sizeof(float));
        }
    } else {
        st = loom_comm_send(vs->tp, logits, (size_t)n_out * nv, LOOM_DT_F32, 0, TAG_LOGITS);
    }
    vs->comm_s += loom_now_s() - t0;
    return st;
}

loom_status loom_vocab_sampler_sample(loom_vocab_sampler *vs, const Loom__Step *step, float *logits, int n_out,
                                      Loom__StepResult *res, const float **scores) {
    bool greedy = false;
    float *full = logits;
    if (vs->tp_size > 1) {
        greedy = n_out > 0;
        for (size_t i = 0; i < step->n_seqs && greedy; i++) {
            const Loom__SeqStep *q = step->seqs[i];
            greedy = !q->all_logits && (!q->want_logits || vs->greedy[q->slot]);
        }
        if (greedy) LOOM_TRY(distributed_argmax(vs, logits, n_out));
        else LOOM_TRY(gather_rows(vs, logits, n_out));
        if (!greedy) full = vs->full;
    }
    if (!vs->leader) return NULL;
    res->n_slots = res->n_tokens = 0;
    if (step->n_seqs == 1 && step->seqs[0]->all_logits) { /* scoring: the logits are the result */
        *scores = full;
        return NULL;
    }
    const int V = vs->vocab;
    int row_k = 0, k = 0, n_lp = 0;
    bool miro = false; /* a sequence with mirostat: every token's mu goes back */
    for (size_t i = 0; i < step->n_seqs; i++) {
        const Loom__SeqStep *q = step->seqs[i];
        if (!q->want_logits) continue;
        loom_sampler *s = vs->samplers[q->slot];
        int top = vs->top_lp[q->slot];
        const int32_t *draft = q->tokens + (q->n_tokens - q->n_draft);
        /* row j's token is the model's after the proposals before it, which
         * hold while each sampled token equals the next proposal */
        for (uint32_t j = 0; j <= q->n_draft; j++) {
            const int r = row_k + (int)j;
            float *row = full + (size_t)r * V;
            if (top >= 0 && !greedy) memcpy(vs->raw, row, (size_t)V * sizeof(float));
            int32_t tok = greedy ? vs->argmax[2 * r + 1] : loom_sampler_sample(s, row);
            if (top >= 0 && !greedy) {
                Loom__TokenLogprobs *lp = &vs->lp[n_lp];
                loom__token_logprobs__init(lp);
                lp->slot = q->slot;
                lp->top_ids = vs->lp_ids + 20 * n_lp;
                lp->top_logprobs = vs->lp_vals + 20 * n_lp;
                lp->n_top_ids = lp->n_top_logprobs = (size_t)top;
                loom_logprobs(vs->raw, V, tok, top, &lp->logprob, lp->top_ids, lp->top_logprobs);
                vs->lp_ptrs[n_lp++] = lp;
            }
            loom_sampler_accept_output(s, tok);
            vs->n_hist[q->slot]++;
            vs->mu[k] = greedy ? NAN : loom_sampler_mirostat_mu(s); /* (greedy: no sampler has mirostat) */
            miro |= !isnan(vs->mu[k]);
            res->slots[k] = q->slot;
            res->tokens[k++] = tok;
            if (j == q->n_draft || tok != draft[j]) break;
        }
        row_k += (int)q->n_draft + 1;
    }
    res->n_slots = res->n_tokens = (size_t)k;
    res->mirostat_mu = vs->mu;
    res->n_mirostat_mu = miro ? (size_t)k : 0;
    res->logprobs = vs->lp_ptrs;
    res->n_logprobs = (size_t)n_lp;
    return NULL;
}
