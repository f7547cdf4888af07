/*
 * parallel/engine.c — the step loop.
 *
 * Every rank applies Steps with one function (apply_step): free the slots of
 * ended sequences, reserve KV blocks and create samplers for starting ones,
 * turn the Step into a batch of rows, run this rank's layers, and — on the
 * last stage — sample once per sequence that asked. The coordinator builds
 * the Steps (schedule) and applies them as stage 0; the other ranks receive
 * them (work loop). Between stages each TP rank sends its slice of the
 * hidden state to its counterpart, which all-gathers it inside its TP group
 * (FasterTransformer's trick: traffic drops by the TP size).
 */
#include "parallel/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parallel/comm.h"
#include "runtime/kv_cache.h"
#include "parallel/stage.h"
#include "proto/step.pb-c.h"
#include "runtime/threadpool.h"

#define LOOM_PROTOCOL 1

enum { TAG_STEP_SIZE = 11, TAG_STEP = 12, TAG_HIDDEN = 13, TAG_RESULT_SIZE = 14, TAG_RESULT = 15, TAG_LOGITS = 16,
       TAG_SCORE = 17, TAG_ARGMAX = 18 };

typedef struct {
    uint8_t *bytes; /* packed Step */
    size_t cap;
    int64_t size;
    float *hidden;  /* (batch_rows, slice) this rank's slice of the stage output */
    loom_comm_req *req[3];
} send_slot;

struct loom_engine {
    loom_engine_options opt;
    loom_model_config cfg;
    loom_topology topo;
    bool coordinator, first, last, leader; /* leader: samples (last stage, TP rank 0) */
    loom_weights *w;
    loom_kv_cache *kv;
    loom_pool *pool;
    loom_stage *stage;
    int *dim_off;        /* (tp_size + 1) hidden-state columns of each TP rank in transfers */
    int64_t *vocab_off;  /* (tp_size + 1) last stage: vocabulary rows of each TP rank */
    /* batch rows */
    int32_t *b_token, *b_pos, *b_seq;
    int8_t *b_logits;
    float *hidden_in;    /* (batch_rows, dim) from the previous stage */
    float *gather;       /* (batch_rows, dim) all-gather scratch */
    float *logits;       /* (batch_rows, n_vocab held) */
    float *full_logits;  /* leader: (batch_rows, vocab) */
    int32_t *argmax;     /* (batch_rows, 2) value bits + vocabulary id, one TP rank's slice */
    bool *greedy;        /* (slots) every rank: the slot's sampling is greedy without penalty */
    /* last-stage leader: per-slot sampling state */
    loom_sampler **samplers; /* (slots) */
    int32_t *n_hist;         /* (slots) tokens already in the sampler's history */
    /* transfers */
    send_slot *slots_out;    /* (n_stages) ring of in-flight sends */
    int n_send_slots, next_send;
    uint8_t *recv_bytes;
    size_t recv_cap;
    double tp_s, pp_s;
    double busy_s;           /* in apply_step after the inputs arrived */
    /* teacher-forced scoring */
    float *score_dst;        /* coordinator: where the leader's logits go when it is rank 0 */
    const float *score_rows; /* leader: logits (score_n, vocab) to send after the result */
    int score_n;
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

/* ------------------------------------------------------------ loading */

/* Reads one byte per page of this rank's weights so they are resident
 * before the first token (mmap loads lazily); reports progress. */
static volatile uint8_t prefault_sink;
static size_t mat_bytes(const loom_mat *m) { return m->data ? (size_t)m->rows * m->stride : 0; }
static void prefault(const loom_mat *m) {
    const volatile uint8_t *b = m->data;
    size_t n = mat_bytes(m);
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i += 4096) acc ^= b[i];
    if (n) acc ^= b[n - 1];
    prefault_sink = acc;
}

static void prefault_weights(const loom_weights *w, void (*progress)(void *, double), void *user) {
    int nl = w->shard.layer_end - w->shard.layer_begin;
    for (int l = 0; l <= nl; l++) {
        if (l == nl) {
            prefault(&w->embed);
            prefault(&w->lm_head);
        } else {
            const loom_layer *L = &w->layers[l];
            const loom_mat *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) prefault(ms[i]);
        }
        if (progress) progress(user, (double)(l + 1) / (nl + 1));
    }
}

loom_status loom_engine_create(const loom_gguf *g, const loom_engine_options *o, const loom_topology *topo,
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
    if (!st) {
        if (topo) {
            e->topo = *topo;
        } else {
            e->topo = (loom_topology){.world_size = 1, .n_stages = 1, .tp_size = 1, .prev = -1, .next = -1};
            e->topo.shard = loom_shard_full(&e->cfg);
        }
        const loom_topology *t = &e->topo;
        e->coordinator = t->world_rank == 0;
        e->first = t->stage == 0;
        e->last = t->stage == t->n_stages - 1;
        e->leader = e->last && t->tp_rank == 0;
        st = loom_weights_create(g, &e->cfg, &t->shard, &e->w);
    }
    int slots = o->max_seqs + 1; /* one spare slot for scoring */
    if (!st) {
        loom_kv_config kc = {
            .n_layers = e->w->shard.layer_end - e->w->shard.layer_begin,
            .n_kv_heads = e->w->n_kv,
            .head_dim = e->cfg.head_dim,
            .type = o->kv_type,
            .block_tokens = o->block_tokens,
            .n_blocks = loom_kv_blocks_for(o->max_seqs, o->ctx_size, o->block_tokens),
            .max_seqs = slots,
            .max_ctx = o->ctx_size,
        };
        st = loom_kv_create(&kc, &e->kv);
    }
    if (!st) st = loom_pool_create(o->n_threads, &e->pool);
    if (!st) st = loom_stage_create(e->w, e->kv, e->pool, e->topo.tp, o->batch_rows, &e->stage);
    if (!st) {
        size_t R = (size_t)o->batch_rows, dim = (size_t)e->cfg.dim, tp = (size_t)e->topo.tp_size;
        e->b_token = malloc(R * sizeof(int32_t));
        e->b_pos = malloc(R * sizeof(int32_t));
        e->b_seq = malloc(R * sizeof(int32_t));
        e->b_logits = malloc(R);
        e->hidden_in = malloc(R * dim * sizeof(float));
        e->gather = malloc(R * dim * sizeof(float));
        e->logits = malloc(R * (size_t)e->w->n_vocab * sizeof(float));
        /* rows of full logits, plus room to receive one rank's slice */
        e->full_logits = e->leader ? malloc((R + R) * (size_t)e->cfg.vocab * sizeof(float)) : NULL;
        e->argmax = malloc(R * 2 * sizeof(int32_t));
        e->greedy = calloc((size_t)slots, sizeof *e->greedy);
        e->samplers = calloc((size_t)slots, sizeof *e->samplers);
        e->n_hist = calloc((size_t)slots, sizeof *e->n_hist);
        e->dim_off = malloc((tp + 1) * sizeof(int));
        e->vocab_off = malloc((tp + 1) * sizeof(int64_t));
        e->n_send_slots = e->topo.n_stages;
        e->slots_out = calloc((size_t)e->n_send_slots, sizeof *e->slots_out);
        bool ok = e->b_token && e->b_pos && e->b_seq && e->b_logits && e->hidden_in && e->gather && e->logits &&
                  (!e->leader || e->full_logits) && e->argmax && e->greedy && e->samplers && e->n_hist && e->dim_off && e->vocab_off &&
                  e->slots_out;
        for (int i = 0; ok && i < e->n_send_slots; i++) {
            e->slots_out[i].hidden = malloc(R * dim * sizeof(float));
            ok = e->slots_out[i].hidden != NULL;
        }
        if (!ok) st = loom_error(LOOM_ERR_NOMEM, "out of memory for a batch of %d rows", o->batch_rows);
        else
            for (size_t r = 0; r <= tp; r++) e->dim_off[r] = (int)(dim * r / tp);
    }
    if (!st && e->last) {
        /* the leader assembles logits from every TP rank's vocabulary slice */
        int tp = e->topo.tp_size;
        int64_t mine[2] = {e->w->shard.vocab_begin, e->w->shard.vocab_end};
        int64_t *all = malloc(sizeof(int64_t) * 2 * (size_t)tp);
        size_t counts[1024], displs[1024];
        if (!all || tp > 1024) st = loom_error(LOOM_ERR_NOMEM, "cannot exchange vocabulary slices");
        for (int r = 0; !st && r < tp; r++) counts[r] = 2, displs[r] = 2 * (size_t)r;
        if (!st && tp > 1) st = loom_comm_all_gatherv(e->topo.tp, mine, 2, all, counts, displs, LOOM_DT_I64);
        if (!st && tp == 1) memcpy(all, mine, sizeof mine);
        for (int r = 0; !st && r < tp; r++) {
            if (all[2 * r] != (r == 0 ? 0 : all[2 * r - 1]) || all[2 * r + 1] <= all[2 * r])
                st = loom_error(LOOM_ERR_PLAN, "vocabulary slices of the last stage are not contiguous at TP rank %d", r);
            e->vocab_off[r] = all[2 * r];
        }
        if (!st) {
            e->vocab_off[tp] = all[2 * tp - 1];
            if (e->vocab_off[tp] != e->cfg.vocab)
                st = loom_error(LOOM_ERR_PLAN, "the last stage holds %lld of %d vocabulary rows",
                                (long long)e->vocab_off[tp], e->cfg.vocab);
        }
        free(all);
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
    for (int i = 0; e->slots_out && i < e->n_send_slots; i++) {
        send_slot *s = &e->slots_out[i];
        for (int k = 0; k < 3; k++) loom_status_free(loom_comm_wait(e->topo.world, s->req[k]));
        free(s->bytes);
        free(s->hidden);
    }
    free(e->slots_out);
    if (e->samplers)
        for (int i = 0; i <= e->opt.max_seqs; i++) loom_sampler_free(e->samplers[i]);
    free(e->samplers);
    free(e->n_hist);
    loom_stage_free(e->stage);
    loom_pool_free(e->pool);
    loom_kv_free(e->kv);
    loom_weights_free(e->w);
    free(e->b_token);
    free(e->b_pos);
    free(e->b_seq);
    free(e->b_logits);
    free(e->hidden_in);
    free(e->gather);
    free(e->logits);
    free(e->full_logits);
    free(e->argmax);
    free(e->greedy);
    free(e->dim_off);
    free(e->vocab_off);
    free(e->recv_bytes);
    free(e);
}

const loom_model_config *loom_engine_model(const loom_engine *e) { return &e->cfg; }
const loom_weights *loom_engine_weights(const loom_engine *e) { return e->w; }
const loom_engine_options *loom_engine_options_of(const loom_engine *e) { return &e->opt; }
double loom_engine_busy_seconds(const loom_engine *e) { return e->busy_s; }

void loom_engine_comm_time(const loom_engine *e, double *tp_s, double *pp_s) {
    *tp_s = loom_stage_comm_seconds(e->stage) + e->tp_s;
    *pp_s = e->pp_s;
}

/* ------------------------------------------------------------ transfers */

static loom_status grow(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return NULL;
    size_t c = need < 4096 ? 4096 : need * 2;
    uint8_t *b = realloc(*buf, c);
    if (!b) return loom_error(LOOM_ERR_NOMEM, "out of memory for a %zu-byte message", need);
    *buf = b;
    *cap = c;
    return NULL;
}

static loom_status recv_message(loom_engine *e, loom_comm *c, int peer, int tag_size, int tag, int64_t *size) {
    LOOM_TRY(loom_comm_recv(c, size, 1, LOOM_DT_I64, peer, tag_size));
    if (*size < 0 || *size > (1 << 30))
        return loom_error(LOOM_ERR_COMM, "rank %d announced a message of %lld bytes", peer, (long long)*size);
    LOOM_TRY(grow(&e->recv_bytes, &e->recv_cap, (size_t)*size + 1));
    return loom_comm_recv(c, e->recv_bytes, (size_t)*size, LOOM_DT_U8, peer, tag);
}

/* Broadcast a packed step inside this stage's TP group from TP rank 0. */
static loom_status tp_broadcast_bytes(loom_engine *e, uint8_t **bytes, int64_t *size) {
    loom_comm *tp = e->topo.tp;
    double t0 = now_s();
    LOOM_TRY(loom_comm_broadcast(tp, size, 1, LOOM_DT_I64, 0));
    if (tp->rank != 0) {
        if (*size < 0 || *size > (1 << 30)) return loom_error(LOOM_ERR_COMM, "bad step size %lld", (long long)*size);
        LOOM_TRY(grow(&e->recv_bytes, &e->recv_cap, (size_t)*size + 1));
        *bytes = e->recv_bytes;
    }
    loom_status st = loom_comm_broadcast(tp, *bytes, (size_t)*size, LOOM_DT_U8, 0);
    e->tp_s += now_s() - t0;
    return st;
}

/* Sends the packed step and this rank's slice of hidden (n, dim) to the next
 * stage without waiting (the slot stays busy until the sends complete). */
static loom_status send_forward(loom_engine *e, const uint8_t *bytes, int64_t size, const float *hidden, int n) {
    double t0 = now_s();
    send_slot *s = &e->slots_out[e->next_send];
    e->next_send = (e->next_send + 1) % e->n_send_slots;
    for (int k = 0; k < 3; k++) {
        loom_status st = loom_comm_wait(e->topo.world, s->req[k]);
        s->req[k] = NULL;
        if (st) return st;
    }
    LOOM_TRY(grow(&s->bytes, &s->cap, (size_t)size + 1));
    memcpy(s->bytes, bytes, (size_t)size);
    s->size = size;
    int c0 = e->dim_off[e->topo.tp_rank], w = e->dim_off[e->topo.tp_rank + 1] - c0, dim = e->cfg.dim;
    for (int r = 0; r < n; r++) memcpy(s->hidden + (size_t)r * w, hidden + (size_t)r * dim + c0, (size_t)w * sizeof(float));
    loom_comm *c = e->topo.world;
    LOOM_TRY(loom_comm_isend(c, &s->size, 1, LOOM_DT_I64, e->topo.next, TAG_STEP_SIZE, &s->req[0]));
    LOOM_TRY(loom_comm_isend(c, s->bytes, (size_t)size, LOOM_DT_U8, e->topo.next, TAG_STEP, &s->req[1]));
    if (n > 0) LOOM_TRY(loom_comm_isend(c, s->hidden, (size_t)n * w, LOOM_DT_F32, e->topo.next, TAG_HIDDEN, &s->req[2]));
    e->pp_s += now_s() - t0;
    return NULL;
}

/* Receives this rank's slice of the previous stage's output and assembles
 * the full hidden state (n, dim) in e->hidden_in. */
static loom_status recv_hidden(loom_engine *e, int n) {
    double t0 = now_s();
    int tp = e->topo.tp_size, dim = e->cfg.dim, me = e->topo.tp_rank;
    int w = e->dim_off[me + 1] - e->dim_off[me];
    float *mine = tp == 1 ? e->hidden_in : e->gather + (size_t)n * e->dim_off[me];
    LOOM_TRY(loom_comm_recv(e->topo.world, mine, (size_t)n * w, LOOM_DT_F32, e->topo.prev, TAG_HIDDEN));
    e->pp_s += now_s() - t0;
    if (tp == 1) return NULL;
    t0 = now_s();
    size_t counts[1024], displs[1024];
    if (tp > 1024) return loom_error(LOOM_ERR_INVALID, "TP size %d is above 1024", tp);
    for (int r = 0; r < tp; r++) {
        counts[r] = (size_t)n * (e->dim_off[r + 1] - e->dim_off[r]);
        displs[r] = (size_t)n * e->dim_off[r];
    }
    LOOM_TRY(loom_comm_all_gatherv(e->topo.tp, mine, counts[me], e->gather, counts, displs, LOOM_DT_F32));
    for (int r = 0; r < tp; r++) {
        int c0 = e->dim_off[r], cw = e->dim_off[r + 1] - c0;
        const float *blk = e->gather + displs[r];
        for (int i = 0; i < n; i++) memcpy(e->hidden_in + (size_t)i * dim + c0, blk + (size_t)i * cw, (size_t)cw * sizeof(float));
    }
    e->tp_s += now_s() - t0;
    return NULL;
}

/* ------------------------------------------------------------ sampling */

static loom_sampling_params params_from(const Loom__SamplingParams *p) {
    loom_sampling_params s = loom_sampling_defaults();
    if (!p) return s;
    s.temperature = p->temperature;
    s.top_k = p->top_k;
    s.top_p = p->top_p;
    s.min_p = p->min_p;
    s.repeat_penalty = p->repeat_penalty;
    s.repeat_last_n = p->repeat_last_n;
    s.seed = p->seed;
    return s;
}

/* Greedy sequences under TP: every rank finds the largest logit of its
 * vocabulary slice and the leader keeps the largest of those, the lowest
 * vocabulary id on ties (slices are in id order, so the result equals one
 * rank's loom_argmax). 8 bytes per row and rank travel instead of the slice. */
static loom_status distributed_argmax(loom_engine *e, int n_out) {
    const int tp = e->topo.tp_size;
    const int64_t nv = e->w->n_vocab, v0 = e->vocab_off[e->topo.tp_rank];
    loom_comm *c = e->topo.tp;
    for (int r = 0; r < n_out; r++) {
        const int32_t i = loom_argmax(e->logits + (size_t)r * nv, (int32_t)nv);
        memcpy(&e->argmax[2 * r], &e->logits[(size_t)r * nv + i], sizeof(float));
        e->argmax[2 * r + 1] = (int32_t)(v0 + i);
    }
    double t0 = now_s();
    if (!e->leader) {
        loom_status st = loom_comm_send(c, e->argmax, 2 * (size_t)n_out, LOOM_DT_I32, 0, TAG_ARGMAX);
        e->tp_s += now_s() - t0;
        return st;
    }
    int32_t *best = e->argmax, *in = (int32_t *)e->full_logits; /* room for one rank's pairs */
    for (int src = 1; src < tp; src++) {
        LOOM_TRY(loom_comm_recv(c, in, 2 * (size_t)n_out, LOOM_DT_I32, src, TAG_ARGMAX));
        for (int r = 0; r < n_out; r++) {
            float a, b;
            memcpy(&a, &best[2 * r], sizeof a);
            memcpy(&b, &in[2 * r], sizeof b);
            if (b > a) best[2 * r] = in[2 * r], best[2 * r + 1] = in[2 * r + 1];
        }
    }
    e->tp_s += now_s() - t0;
    return NULL; /* the leader's e->argmax holds the winners */
}

/* Last stage: one token per sequence that asked, chosen on the leader from
 * the logits of every TP rank's vocabulary slice (greedy steps: from each
 * slice's argmax). */
static loom_status sample_step(loom_engine *e, const Loom__Step *step, int n_out, Loom__StepResult *res) {
    int tp = e->topo.tp_size, V = e->cfg.vocab;
    int64_t nv = e->w->n_vocab;
    float *full = e->logits;
    bool greedy = false;
    if (tp > 1) {
        greedy = n_out > 0;
        for (size_t i = 0; i < step->n_seqs && greedy; i++)
            greedy = !step->seqs[i]->all_logits && (!step->seqs[i]->want_logits || e->greedy[step->seqs[i]->slot]);
    }
    if (greedy) {
        LOOM_TRY(distributed_argmax(e, n_out));
    } else if (tp > 1) {
        /* gather the vocabulary slices on the leader (rows of each rank's slice) */
        double t0 = now_s();
        loom_comm *c = e->topo.tp;
        if (e->leader) {
            for (int r = 0; r < n_out; r++) memcpy(e->full_logits + (size_t)r * V, e->logits + (size_t)r * nv, (size_t)nv * sizeof(float));
            for (int src = 1; src < tp; src++) {
                int64_t v0 = e->vocab_off[src], w = e->vocab_off[src + 1] - v0;
                LOOM_TRY(loom_comm_recv(c, e->full_logits + (size_t)n_out * V, (size_t)n_out * w, LOOM_DT_F32, src,
                                        TAG_LOGITS));
                for (int r = 0; r < n_out; r++)
                    memcpy(e->full_logits + (size_t)r * V + v0, e->full_logits + (size_t)n_out * V + (size_t)r * w,
                           (size_t)w * sizeof(float));
            }
        } else {
            LOOM_TRY(loom_comm_send(c, e->logits, (size_t)n_out * nv, LOOM_DT_F32, 0, TAG_LOGITS));
        }
        e->tp_s += now_s() - t0;
        full = e->full_logits;
    }
    if (!e->leader) return NULL;
    if (step->n_seqs == 1 && step->seqs[0]->all_logits) { /* scoring: the logits are the result */
        if (e->coordinator) memcpy(e->score_dst, full, sizeof(float) * (size_t)n_out * V);
        e->score_rows = full;
        e->score_n = n_out;
        res->n_slots = res->n_tokens = 0;
        return NULL;
    }
    int k = 0;
    for (size_t i = 0; i < step->n_seqs; i++) {
        const Loom__SeqStep *q = step->seqs[i];
        if (!q->want_logits) continue;
        loom_sampler *s = e->samplers[q->slot];
        int32_t tok = greedy ? e->argmax[2 * k + 1] : loom_sampler_sample(s, full + (size_t)k * V);
        loom_sampler_accept(s, tok);
        e->n_hist[q->slot]++;
        res->slots[k] = q->slot;
        res->tokens[k] = tok;
        k++;
    }
    res->n_slots = res->n_tokens = (size_t)k;
    return NULL;
}

/* ------------------------------------------------------------ apply */

/* Runs one Step on this rank. hidden: the previous stage's output, or NULL
 * on the first stage. On the leader fills res (slots/tokens arrays must
 * hold one entry per sequence). Sets *out_hidden to this stage's output. */
static loom_status apply_step(loom_engine *e, const Loom__Step *step, bool scheduled_here, float **out_hidden, int *n_rows,
                              Loom__StepResult *res) {
    const loom_kv_config *kc = loom_kv_config_of(e->kv);
    int slots = kc->max_seqs;
    if (!scheduled_here)
        for (size_t i = 0; i < step->n_release; i++) {
            if (step->release[i] >= (uint32_t)slots)
                return loom_error(LOOM_ERR_FORMAT, "step %llu releases slot %u of %d",
                                  (unsigned long long)step->micro_batch, step->release[i], slots);
            loom_kv_release(e->kv, (int)step->release[i]);
        }
    int rows = 0;
    for (size_t i = 0; i < step->n_seqs; i++) {
        const Loom__SeqStep *q = step->seqs[i];
        if (q->slot >= (uint32_t)slots || q->n_tokens == 0 || rows + (int)q->n_tokens > e->opt.batch_rows ||
            q->first_pos + q->n_tokens > (uint32_t)kc->max_ctx)
            return loom_error(LOOM_ERR_FORMAT, "step %llu: sequence %llu (slot %u, positions %u+%zu) does not fit "
                              "(slots %d, batch %d, context %d)", (unsigned long long)step->micro_batch,
                              (unsigned long long)q->id, q->slot, q->first_pos, q->n_tokens, slots, e->opt.batch_rows,
                              kc->max_ctx);
        if (q->reserve > 0) {
            if (!scheduled_here) LOOM_TRY(loom_kv_reserve(e->kv, (int)q->slot, (int)q->reserve));
            const loom_sampling_params sp = params_from(q->sampling);
            e->greedy[q->slot] = sp.temperature <= 0 && sp.repeat_penalty == 1.0f;
            if (e->leader) {
                loom_sampler_free(e->samplers[q->slot]);
                e->samplers[q->slot] = NULL;
                LOOM_TRY(loom_sampler_create(&sp, e->cfg.vocab, &e->samplers[q->slot]));
                e->n_hist[q->slot] = 0;
            }
        }
        if (e->leader && !e->samplers[q->slot])
            return loom_error(LOOM_ERR_FORMAT, "step %llu: slot %u has no running sequence",
                              (unsigned long long)step->micro_batch, q->slot);
        for (size_t j = 0; j < q->n_tokens; j++) {
            int pos = (int)(q->first_pos + j);
            e->b_token[rows] = q->tokens[j];
            e->b_pos[rows] = pos;
            e->b_seq[rows] = (int32_t)q->slot;
            e->b_logits[rows] = q->all_logits || (q->want_logits && j + 1 == q->n_tokens);
            if (e->leader && pos >= e->n_hist[q->slot]) {
                loom_sampler_accept(e->samplers[q->slot], q->tokens[j]);
                e->n_hist[q->slot] = pos + 1;
            }
            rows++;
        }
    }
    *n_rows = rows;
    if (rows == 0) return NULL;
    if (!e->first) LOOM_TRY(recv_hidden(e, rows));
    double t0 = now_s();
    loom_batch b = {rows, e->b_token, e->first ? NULL : e->hidden_in, e->b_pos, e->b_seq, e->b_logits};
    int n_logits = 0;
    loom_status st = loom_stage_forward(e->stage, &b, out_hidden, e->logits, &n_logits);
    if (!st && e->last) st = sample_step(e, step, n_logits, res);
    e->busy_s += now_s() - t0;
    return st;
}

static loom_status send_result(loom_engine *e, const Loom__StepResult *res) {
    double t0 = now_s();
    size_t len = loom__step_result__get_packed_size(res);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return loom_error(LOOM_ERR_NOMEM, "out of memory packing a result");
    loom__step_result__pack(res, buf);
    int64_t size = (int64_t)len;
    loom_status st = loom_comm_send(e->topo.world, &size, 1, LOOM_DT_I64, 0, TAG_RESULT_SIZE);
    if (!st) st = loom_comm_send(e->topo.world, buf, len, LOOM_DT_U8, 0, TAG_RESULT);
    free(buf);
    e->pp_s += now_s() - t0;
    return st;
}

/* ------------------------------------------------------------ workers */

static loom_status wait_sends(loom_engine *e) {
    loom_status st = NULL;
    for (int i = 0; i < e->n_send_slots; i++)
        for (int k = 0; k < 3; k++) {
            loom_status ws = loom_comm_wait(e->topo.world, e->slots_out[i].req[k]);
            e->slots_out[i].req[k] = NULL;
            if (ws && !st) st = ws;
            else loom_status_free(ws);
        }
    return st;
}

loom_status loom_engine_work(loom_engine *e) {
    if (e->coordinator) return loom_error(LOOM_ERR_INVALID, "the coordinator does not run the worker loop");
    int32_t *rs = malloc(sizeof(int32_t) * (size_t)(e->opt.max_seqs + 1));
    uint32_t *rslots = malloc(sizeof(uint32_t) * (size_t)(e->opt.max_seqs + 1));
    if (!rs || !rslots) {
        free(rs);
        free(rslots);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for results");
    }
    loom_status st = NULL;
    for (;;) {
        int64_t size = 0;
        uint8_t *bytes = NULL;
        if (e->first) {
            st = tp_broadcast_bytes(e, &bytes, &size);
        } else {
            double t0 = now_s();
            st = recv_message(e, e->topo.world, e->topo.prev, TAG_STEP_SIZE, TAG_STEP, &size);
            e->pp_s += now_s() - t0;
            bytes = e->recv_bytes;
        }
        if (st) break;
        Loom__Step *step = loom__step__unpack(NULL, (size_t)size, bytes);
        if (!step) {
            st = loom_error(LOOM_ERR_FORMAT, "a step message of %lld bytes does not decode", (long long)size);
            break;
        }
        if (step->protocol != LOOM_PROTOCOL) {
            st = loom_error(LOOM_ERR_FORMAT, "step protocol %u, expected %u", step->protocol, LOOM_PROTOCOL);
            loom__step__free_unpacked(step, NULL);
            break;
        }
        if (step->n_seqs > (size_t)e->opt.max_seqs + 1) {
            st = loom_error(LOOM_ERR_FORMAT, "step carries %zu sequences (at most %d)", step->n_seqs, e->opt.max_seqs);
            loom__step__free_unpacked(step, NULL);
            break;
        }
        /* keep the packed form: forwarded unchanged to the next stage */
        uint8_t *fwd = malloc((size_t)size + 1);
        if (fwd) memcpy(fwd, bytes, (size_t)size);
        Loom__StepResult res = LOOM__STEP_RESULT__INIT;
        res.protocol = LOOM_PROTOCOL;
        res.micro_batch = step->micro_batch;
        res.slots = rslots;
        res.tokens = rs;
        float *hidden = NULL;
        int rows = 0;
        bool shutdown = step->shutdown;
        st = fwd ? NULL : loom_error(LOOM_ERR_NOMEM, "out of memory forwarding a step");
        e->score_n = 0;
        if (!st && !shutdown) st = apply_step(e, step, false, &hidden, &rows, &res);
        if (!st && !e->last) st = send_forward(e, fwd, size, hidden, shutdown ? 0 : rows);
        if (!st && e->leader && !shutdown) st = send_result(e, &res);
        if (!st && e->leader && e->score_n > 0) {
            double t0 = now_s();
            st = loom_comm_send(e->topo.world, e->score_rows, (size_t)e->score_n * e->cfg.vocab, LOOM_DT_F32, 0,
                                TAG_SCORE);
            e->pp_s += now_s() - t0;
        }
        free(fwd);
        loom__step__free_unpacked(step, NULL);
        if (st || shutdown) break;
    }
    /* complete outstanding sends before returning */
    loom_status ws = wait_sends(e);
    if (ws && !st) st = ws;
    else loom_status_free(ws);
    free(rs);
    free(rslots);
    return st;
}

/* ------------------------------------------------------------ coordinator */

typedef struct {
    int req;          /* request index; -1: slot free */
    int32_t *toks;    /* (limit) prompt then generated */
    int n_prompt, n_toks;
    int n_sent;       /* positions sent to the model */
    int limit;        /* n_toks at which generation stops with "length" */
    int reserve;      /* positions reserved; sent with the first step */
    bool started;     /* first step sent */
    bool in_flight;   /* a micro-batch will return this sequence's next token */
    loom_sampling_params sp;
    double t_admit, t_first, t_last;
} seq_state;

typedef struct {
    Loom__Step step;
    Loom__SeqStep *seqs;      /* (max_seqs) */
    Loom__SeqStep **seq_ptrs; /* (max_seqs) */
    Loom__SamplingParams *sps;/* (max_seqs) */
    uint32_t *release;        /* (max_seqs) */
    bool has_prefill;
    int n_logits;
} mb_state;

typedef struct {
    loom_engine *e;
    const loom_request *reqs;
    int n;
    const loom_callbacks *cb;
    loom_result *results;
    loom_run_stats *stats;
    seq_state *act;           /* (max_seqs) slot i ↔ act[i] */
    mb_state *mbs;            /* (n_stages) ring of in-flight micro-batches */
    int head, inflight;
    uint32_t *pending_release;/* (max_seqs) slots freed since the last launch */
    int n_pending_release;
    int next, n_active, n_prefilling;
    uint64_t mb_id;
    double t_mark;            /* last event, for the prefill/decode time split */
} run_ctx;

static void fail_request(loom_result *r, loom_status st) {
    r->stop_reason = "error";
    r->error = strdup(loom_status_message(st));
    loom_status_free(st);
}

static void finish(run_ctx *c, int slot, const char *reason) {
    seq_state *s = &c->act[slot];
    loom_result *r = &c->results[s->req];
    r->n_tokens = s->n_toks - s->n_prompt;
    r->tokens = malloc((size_t)(r->n_tokens ? r->n_tokens : 1) * sizeof(int32_t));
    if (r->tokens) memcpy(r->tokens, s->toks + s->n_prompt, (size_t)r->n_tokens * sizeof(int32_t));
    r->stop_reason = reason;
    r->prompt_ms = s->t_first > 0 ? 1e3 * (s->t_first - s->t_admit) : 0;
    r->gen_ms = s->t_first > 0 ? 1e3 * (s->t_last - s->t_first) : 0;
    free(s->toks);
    memset(s, 0, sizeof *s);
    s->req = -1;
    loom_kv_release(c->e->kv, slot);
    c->pending_release[c->n_pending_release++] = (uint32_t)slot;
    c->n_active--;
}

static loom_status check_request(const loom_request *r, int idx, int ctx, int vocab) {
    if (r->n_prompt < 1) return loom_error(LOOM_ERR_INVALID, "request %d: the prompt is empty", idx);
    if (r->n_prompt > ctx)
        return loom_error(LOOM_ERR_CONTEXT, "request %d: prompt of %d tokens does not fit the context size %d", idx,
                          r->n_prompt, ctx);
    if (r->max_tokens < 0) return loom_error(LOOM_ERR_INVALID, "request %d: max_tokens %d is negative", idx, r->max_tokens);
    loom_status st = loom_sampling_check(&r->sampling);
    if (st) return loom_error_wrap(st, "request %d", idx);
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= vocab)
            return loom_error(LOOM_ERR_INVALID, "request %d: prompt token %d at index %d is outside the vocabulary (0..%d)",
                              idx, r->prompt[i], i, vocab - 1);
    return NULL;
}

/* Admits waiting requests, in order, while a slot and the KV blocks of
 * their whole budget are free. */
static void admit(run_ctx *c) {
    loom_engine *e = c->e;
    int S = e->opt.max_seqs, ctx = e->opt.ctx_size;
    while (c->next < c->n && c->n_active < S) {
        int idx = c->next;
        const loom_request *r = &c->reqs[idx];
        loom_status bad = check_request(r, idx, ctx, e->cfg.vocab);
        if (bad) {
            fail_request(&c->results[c->next++], bad);
            continue;
        }
        if (r->max_tokens == 0) {
            c->results[c->next++].stop_reason = "length";
            continue;
        }
        int slot = 0;
        while (c->act[slot].req >= 0) slot++;
        int limit = r->n_prompt + r->max_tokens;
        int positions = limit < ctx ? limit : ctx;
        int missing = loom_kv_blocks_missing(e->kv, slot, positions);
        if (missing > loom_kv_free_blocks(e->kv)) {
            if (c->n_active > 0) return; /* wait for a running sequence to finish */
            fail_request(&c->results[c->next++],
                         loom_error(LOOM_ERR_KV_FULL, "request %d needs %d KV blocks but the cache has %d free", idx,
                                    missing, loom_kv_free_blocks(e->kv)));
            continue;
        }
        seq_state *s = &c->act[slot];
        s->toks = malloc((size_t)limit * sizeof(int32_t));
        loom_status rs = s->toks ? loom_kv_reserve(e->kv, slot, positions)
                                 : loom_error(LOOM_ERR_NOMEM, "out of memory for request %d", idx);
        if (rs) {
            free(s->toks);
            s->toks = NULL;
            fail_request(&c->results[c->next++], rs);
            continue;
        }
        memcpy(s->toks, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
        s->req = idx;
        s->n_prompt = s->n_toks = r->n_prompt;
        s->n_sent = 0;
        s->reserve = positions;
        s->started = s->in_flight = false;
        s->sp = r->sampling;
        s->limit = positions > r->n_prompt ? positions : r->n_prompt + 1;
        s->t_admit = now_s();
        s->t_first = 0;
        c->stats->prompt_tokens += r->n_prompt;
        c->n_active++;
        c->n_prefilling++;
        c->next++;
    }
}

/* Adds the time since the last event to prefill or decode, by what was in flight. */
static void account(run_ctx *c) {
    double t = now_s();
    if (c->n_prefilling > 0) c->stats->prefill_s += t - c->t_mark;
    else c->stats->decode_s += t - c->t_mark;
    c->t_mark = t;
}

/* Builds the next micro-batch from sequences not in flight: decode rows
 * first, then prompt chunks, about n_active / n_stages sequences so that
 * every stage has work. Returns false when nothing is ready. */
static bool build_step(run_ctx *c, mb_state *mb) {
    loom_engine *e = c->e;
    int S = e->opt.max_seqs, P = e->topo.n_stages, R = e->opt.batch_rows;
    int cap_seqs = (c->n_active + P - 1) / P;
    int rows = 0, nseq = 0;
    mb->has_prefill = false;
    mb->n_logits = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < S && rows < R && nseq < cap_seqs; i++) {
            seq_state *s = &c->act[i];
            if (s->req < 0 || s->in_flight) continue;
            bool prefill = s->n_sent < s->n_prompt;
            if (prefill != (pass == 1)) continue;
            int take = prefill ? s->n_prompt - s->n_sent : 1;
            if (take > R - rows) take = R - rows;
            Loom__SeqStep *q = &mb->seqs[nseq];
            loom__seq_step__init(q);
            q->id = (uint64_t)s->req;
            q->slot = (uint32_t)i;
            q->first_pos = (uint32_t)s->n_sent;
            q->n_tokens = (size_t)take;
            q->tokens = s->toks + s->n_sent;
            q->want_logits = s->n_sent + take >= s->n_prompt;
            if (!s->started) {
                Loom__SamplingParams *p = &mb->sps[nseq];
                loom__sampling_params__init(p);
                p->temperature = s->sp.temperature;
                p->top_k = s->sp.top_k;
                p->top_p = s->sp.top_p;
                p->min_p = s->sp.min_p;
                p->repeat_penalty = s->sp.repeat_penalty;
                p->repeat_last_n = s->sp.repeat_last_n;
                p->seed = s->sp.seed;
                q->sampling = p;
                q->reserve = (uint32_t)s->reserve;
                s->started = true;
            }
            s->n_sent += take;
            s->in_flight = q->want_logits;
            mb->has_prefill |= prefill;
            mb->n_logits += q->want_logits;
            mb->seq_ptrs[nseq++] = q;
            rows += take;
        }
    if (nseq == 0) return false;
    Loom__Step step = LOOM__STEP__INIT;
    step.protocol = LOOM_PROTOCOL;
    step.micro_batch = c->mb_id++;
    memcpy(mb->release, c->pending_release, sizeof(uint32_t) * (size_t)c->n_pending_release);
    step.release = mb->release;
    step.n_release = (size_t)c->n_pending_release;
    c->n_pending_release = 0;
    step.seqs = mb->seq_ptrs;
    step.n_seqs = (size_t)nseq;
    mb->step = step;
    return true;
}

/* Takes the tokens of a finished micro-batch: streams them, stops sequences. */
static loom_status take_result(run_ctx *c, const mb_state *mb, const Loom__StepResult *r) {
    int S = c->e->opt.max_seqs;
    if (r->micro_batch != mb->step.micro_batch || (int)r->n_slots != mb->n_logits || r->n_slots != r->n_tokens)
        return loom_error(LOOM_ERR_FORMAT, "result for micro-batch %llu with %zu tokens, expected %llu with %d",
                          (unsigned long long)r->micro_batch, r->n_slots, (unsigned long long)mb->step.micro_batch,
                          mb->n_logits);
    account(c);
    double t = c->t_mark;
    for (size_t k = 0; k < r->n_slots; k++) {
        int slot = (int)r->slots[k];
        if (slot < 0 || slot >= S || c->act[slot].req < 0 || !c->act[slot].in_flight)
            return loom_error(LOOM_ERR_FORMAT, "result names slot %d, which awaits no token", slot);
        seq_state *s = &c->act[slot];
        int32_t tok = r->tokens[k];
        s->in_flight = false;
        if (s->n_toks == s->n_prompt) c->n_prefilling--;
        s->toks[s->n_toks++] = tok;
        if (s->t_first == 0) s->t_first = t;
        s->t_last = t;
        c->stats->gen_tokens++;
        if (!mb->has_prefill) c->stats->decode_tokens++;
        int req = s->req;
        if (c->cb && c->cb->on_token) c->cb->on_token(c->cb->user, req, tok);
        if (!c->reqs[req].ignore_eos && c->cb && c->cb->is_eog && c->cb->is_eog(c->cb->user, tok)) finish(c, slot, "stop");
        else if (s->n_toks >= s->limit) finish(c, slot, "length");
    }
    return NULL;
}

/* Runs a step built here: TP broadcast, stage 0, then sampling (one stage)
 * or the send to stage 1. */
static loom_status launch(loom_engine *e, const Loom__Step *step, Loom__StepResult *res) {
    uint8_t *bytes = NULL;
    int64_t size = 0;
    loom_status st = NULL;
    if (e->topo.tp_size > 1 || e->topo.n_stages > 1) {
        size_t len = loom__step__get_packed_size(step);
        bytes = malloc(len ? len : 1);
        if (!bytes) return loom_error(LOOM_ERR_NOMEM, "out of memory packing a step");
        loom__step__pack(step, bytes);
        size = (int64_t)len;
    }
    if (e->topo.tp_size > 1) st = tp_broadcast_bytes(e, &bytes, &size);
    float *hidden = NULL;
    int rows = 0;
    if (!st && !step->shutdown) st = apply_step(e, step, true, &hidden, &rows, res);
    if (!st && e->topo.n_stages > 1) st = send_forward(e, bytes, size, hidden, step->shutdown ? 0 : rows);
    free(bytes);
    return st;
}

static loom_status collect(loom_engine *e, Loom__StepResult **out) {
    double t0 = now_s();
    int64_t size;
    loom_status st = recv_message(e, e->topo.world, e->topo.last_leader, TAG_RESULT_SIZE, TAG_RESULT, &size);
    e->pp_s += now_s() - t0;
    if (st) return st;
    Loom__StepResult *r = loom__step_result__unpack(NULL, (size_t)size, e->recv_bytes);
    if (!r) return loom_error(LOOM_ERR_FORMAT, "a result message of %lld bytes from rank %d does not decode",
                              (long long)size, e->topo.last_leader);
    if (r->protocol != LOOM_PROTOCOL) {
        loom__step_result__free_unpacked(r, NULL);
        return loom_error(LOOM_ERR_FORMAT, "a result from rank %d has protocol %u, expected %u", e->topo.last_leader,
                          r->protocol, LOOM_PROTOCOL);
    }
    *out = r;
    return NULL;
}

loom_status loom_engine_shutdown(loom_engine *e) {
    if (!e->coordinator || e->topo.world_size == 1) return NULL;
    Loom__Step s = LOOM__STEP__INIT;
    s.protocol = LOOM_PROTOCOL;
    s.shutdown = true;
    loom_status st = launch(e, &s, NULL);
    loom_status ws = wait_sends(e);
    if (st) {
        loom_status_free(ws);
        return st;
    }
    return ws;
}

loom_status loom_engine_run(loom_engine *e, const loom_request *reqs, int n, const loom_callbacks *cb,
                            loom_result *results, loom_run_stats *stats) {
    if (!e->coordinator) return loom_error(LOOM_ERR_INVALID, "only the coordinator (rank 0) runs requests");
    loom_run_stats local;
    run_ctx c = {.e = e, .reqs = reqs, .n = n, .cb = cb, .results = results, .stats = stats ? stats : &local};
    memset(c.stats, 0, sizeof *c.stats);
    memset(results, 0, (size_t)n * sizeof *results);
    int S = e->opt.max_seqs, P = e->topo.n_stages;
    c.act = calloc((size_t)S, sizeof *c.act);
    c.mbs = calloc((size_t)P, sizeof *c.mbs);
    c.pending_release = malloc(sizeof(uint32_t) * (size_t)S);
    int32_t *res_tokens = malloc(sizeof(int32_t) * (size_t)S);
    uint32_t *res_slots = malloc(sizeof(uint32_t) * (size_t)S);
    bool ok = c.act && c.mbs && c.pending_release && res_tokens && res_slots;
    for (int m = 0; ok && m < P; m++) {
        mb_state *mb = &c.mbs[m];
        mb->seqs = calloc((size_t)S, sizeof *mb->seqs);
        mb->seq_ptrs = calloc((size_t)S, sizeof *mb->seq_ptrs);
        mb->sps = calloc((size_t)S, sizeof *mb->sps);
        mb->release = calloc((size_t)S, sizeof *mb->release);
        ok = mb->seqs && mb->seq_ptrs && mb->sps && mb->release;
    }
    loom_status st = ok ? NULL : loom_error(LOOM_ERR_NOMEM, "out of memory for %d sequences", S);
    for (int i = 0; ok && i < S; i++) c.act[i].req = -1;
    double tp0, pp0;
    loom_engine_comm_time(e, &tp0, &pp0);
    c.t_mark = now_s();

    while (!st && (c.next < n || c.n_active > 0)) {
        admit(&c);
        mb_state *mb = &c.mbs[(c.head + c.inflight) % P];
        if (c.inflight < P && build_step(&c, mb)) {
            account(&c);
            Loom__StepResult res = LOOM__STEP_RESULT__INIT;
            res.slots = res_slots;
            res.tokens = res_tokens;
            res.micro_batch = mb->step.micro_batch;
            st = launch(e, &mb->step, &res);
            c.stats->steps++;
            if (st) break;
            if (P == 1) { /* one stage: the tokens are here already */
                st = take_result(&c, mb, &res);
            } else {
                c.inflight++;
            }
            continue;
        }
        if (c.inflight == 0) continue; /* only admissions/failures this round */
        Loom__StepResult *r = NULL;
        st = collect(e, &r);
        if (st) break;
        st = take_result(&c, &c.mbs[c.head], r);
        loom__step_result__free_unpacked(r, NULL);
        c.head = (c.head + 1) % P;
        c.inflight--;
    }
    /* a failure leaves sequences unfinished: report them */
    for (int i = 0; c.act && i < S; i++)
        if (c.act[i].req >= 0) {
            int req = c.act[i].req;
            finish(&c, i, "error");
            results[req].error = strdup(st ? loom_status_message(st) : "engine stopped");
        }
    double tp_s, pp_s;
    loom_engine_comm_time(e, &tp_s, &pp_s);
    c.stats->comm_s = tp_s - tp0;
    c.stats->transfer_s = pp_s - pp0;
    for (int m = 0; c.mbs && m < P; m++) {
        free(c.mbs[m].seqs);
        free(c.mbs[m].seq_ptrs);
        free(c.mbs[m].sps);
        free(c.mbs[m].release);
    }
    free(c.mbs);
    free(c.act);
    free(c.pending_release);
    free(res_tokens);
    free(res_slots);
    return st;
}

loom_status loom_engine_score(loom_engine *e, const int32_t *tokens, int n, float *logits) {
    if (!e->coordinator) return loom_error(LOOM_ERR_INVALID, "only the coordinator (rank 0) scores");
    if (n < 1 || n > e->opt.ctx_size)
        return loom_error(LOOM_ERR_CONTEXT, "scoring %d tokens with a context size of %d", n, e->opt.ctx_size);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= e->cfg.vocab)
            return loom_error(LOOM_ERR_INVALID, "token %d at index %d is outside the vocabulary", tokens[i], i);
    uint32_t slot = (uint32_t)e->opt.max_seqs; /* the spare slot */
    LOOM_TRY(loom_kv_reserve(e->kv, (int)slot, n));
    loom_status st = NULL;
    int R = e->opt.batch_rows, V = e->cfg.vocab;
    for (int p0 = 0; !st; p0 += R) {
        /* chunks of rows, then one step that only releases the slot */
        bool last = p0 >= n;
        int rows = last ? 0 : (n - p0 < R ? n - p0 : R);
        Loom__SeqStep q = LOOM__SEQ_STEP__INIT;
        Loom__SeqStep *qs[1] = {&q};
        Loom__Step step = LOOM__STEP__INIT;
        step.protocol = LOOM_PROTOCOL;
        if (!last) {
            q.slot = slot;
            q.first_pos = (uint32_t)p0;
            q.n_tokens = (size_t)rows;
            q.tokens = (int32_t *)(tokens + p0);
            q.all_logits = true;
            q.reserve = p0 == 0 ? (uint32_t)n : 0;
            step.seqs = qs;
            step.n_seqs = 1;
        } else {
            step.release = &slot;
            step.n_release = 1;
        }
        Loom__StepResult res = LOOM__STEP_RESULT__INIT;
        e->score_dst = logits + (size_t)(last ? 0 : p0) * V;
        st = launch(e, &step, &res);
        if (st) break;
        if (e->topo.n_stages == 1) {
            if (last) break;
            continue;
        }
        Loom__StepResult *r = NULL;
        st = collect(e, &r);
        if (st) break;
        loom__step_result__free_unpacked(r, NULL);
        if (!last) {
            double t0 = now_s();
            st = loom_comm_recv(e->topo.world, e->score_dst, (size_t)rows * V, LOOM_DT_F32, e->topo.last_leader,
                                TAG_SCORE);
            e->pp_s += now_s() - t0;
        }
        if (last) break;
    }
    loom_kv_release(e->kv, (int)slot);
    return st;
}
