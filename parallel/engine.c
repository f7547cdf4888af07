/*
 * parallel/engine.c — one rank's share of the model and how it applies a
 * Step (contract in engine.h). What crosses ranks is in transfer.c, the
 * choice of tokens in vocab_sampler.c, the building of Steps in
 * scheduler.c.
 */
#include "parallel/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/stage.h"
#include "parallel/transfer.h"
#include "parallel/vocab_sampler.h"
#include "runtime/device_forward.h"
#include "runtime/kernels.h"
#include "runtime/kv_blocks.h"
#include "runtime/clock.h"
#include "runtime/threadpool.h"

struct loom_engine {
    loom_engine_options opt;
    loom_model_config cfg;
    loom_topology topo;
    bool coordinator, first, last, leader; /* leader: samples (last stage, TP rank 0) */
    loom_weights *w;
    loom_kv_cache *kv;     /* pool-managed: tables come with the Steps */
    loom_kv_blocks *blocks;/* coordinator: which block holds what */
    loom_pool *pool;
    loom_stage *stage;
    loom_transfer *xfer;
    loom_vocab_sampler *vs; /* last stage */
    const loom_gguf *g;     /* the model file (JSON mode reads its vocabulary) */
    /* the rows of the step being applied */
    int32_t *b_token, *b_pos, *b_seq; /* (batch_rows) */
    int8_t *b_logits;                 /* (batch_rows) */
    float *logits;                    /* (batch_rows, n_vocab held) */
    uint32_t *res_slots;              /* (batch_rows) a worker's StepResult arrays */
    int32_t *res_tokens;
    double busy_s;                    /* in apply_step after the inputs arrived */
    double t_start;                   /* creation */
    bool report_wanted;               /* coordinator: mark the next launched step */
    int report_state;                 /* coordinator: 0 none, 1 posted, 2 came back */
    double *reports;                  /* coordinator: (world, 4) the ranks' figures */
    /* teacher-forced scoring */
    float *score_dst;                 /* coordinator: where the logits of a scoring step go */
    const float *score_rows;          /* leader: logits (score_n, width) of the last scoring step */
    int score_n;
    int width;                        /* a scored row: vocab (logits), or dim (an encoder's hidden state) */
    /* LoRA adapters (loom_engine_add_lora) and their scales for sequences that start without their own */
    loom_lora *lora[LOOM_LORA_MAX];
    char *lora_path[LOOM_LORA_MAX];
    float lora_default[LOOM_LORA_MAX];
    int n_lora;
};

loom_engine_options loom_engine_defaults(void) {
    loom_engine_options o = {0};
    o.n_threads = loom_cpu_count();
    o.ctx_size = 4096;
    o.max_seqs = 8;
    o.kv_type = LOOM_TYPE_F16;
    o.batch_rows = 256;
    o.block_tokens = 16;
    o.prefix_cache = true;
    return o;
}

loom_topology loom_topology_single(const loom_model_config *cfg) {
    loom_topology t = {.world_size = 1, .n_stages = 1, .tp_size = 1, .prev = -1, .next = -1};
    t.shard = loom_shard_full(cfg);
    return t;
}

/* ------------------------------------------------------------ loading */

/* Reads one byte per page of this rank's weights so they are resident
 * before the first token (mmap loads lazily); reports progress. */
static volatile uint8_t prefault_sink;
static void prefault(const loom_mat *m) {
    const volatile uint8_t *b = m->data;
    size_t n = m->data ? (size_t)m->rows * m->stride : 0;
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i += 4096) acc ^= b[i];
    if (n) acc ^= b[n - 1];
    prefault_sink = acc;
}

static void prefault_weights(const loom_weights *w, void (*progress)(void *, double), void *user) {
    int nl = w->shard.layer_end - w->shard.layer_begin;
    loom_mat **ms = malloc((size_t)loom_layer_max_mats(&w->cfg) * sizeof *ms);
    for (int l = 0; l <= nl; l++) {
        if (l == nl) {
            prefault(&w->embed);
            prefault(&w->lm_head);
            prefault(&w->pos_embd);
        } else if (ms) { /* (out of memory: the pages load as they are first read) */
            const int n = loom_layer_mats(&w->cfg, &w->layers[l], ms);
            for (int i = 0; i < n; i++) prefault(ms[i]);
        }
        if (progress) progress(user, (double)(l + 1) / (nl + 1));
    }
    free(ms);
}

static loom_status alloc_rows(loom_engine *e) {
    size_t R = (size_t)e->opt.batch_rows;
    e->b_token = malloc(R * sizeof(int32_t));
    e->b_pos = malloc(R * sizeof(int32_t));
    e->b_seq = malloc(R * sizeof(int32_t));
    e->b_logits = malloc(R);
    size_t per_row = (size_t)e->w->n_vocab > (size_t)e->width ? (size_t)e->w->n_vocab : (size_t)e->width;
    e->logits = malloc(R * per_row * sizeof(float));
    e->res_slots = malloc(R * sizeof(uint32_t));
    e->res_tokens = malloc(R * sizeof(int32_t));
    if (e->b_token && e->b_pos && e->b_seq && e->b_logits && e->logits && e->res_slots && e->res_tokens) return NULL;
    return loom_error(LOOM_ERR_NOMEM, "out of memory for a batch of %d rows", e->opt.batch_rows);
}

loom_device_kind loom_engine_device(loom_device_kind k, loom_type kv_type, const loom_model_config *c) {
    if (k == LOOM_DEVICE_AUTO && kv_type == LOOM_TYPE_Q8_0) return LOOM_DEVICE_CPU; /* the CPU's cache only */
    return loom_dforward_resolve(k, c);
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
    e->g = g;
    loom_status st = loom_model_config_read(g, &e->cfg);
    e->width = e->cfg.pooling == LOOM_POOL_RANK ? e->cfg.n_cls_out : e->cfg.encoder ? e->cfg.dim : e->cfg.vocab;
    if (!st) {
        e->topo = topo ? *topo : loom_topology_single(&e->cfg);
        const loom_topology *t = &e->topo;
        e->coordinator = t->world_rank == 0;
        e->first = t->stage == 0;
        e->last = t->stage == t->n_stages - 1;
        e->leader = e->last && t->tp_rank == 0;
        st = loom_weights_create(g, &e->cfg, &t->shard, &e->w);
    }
    int slots = o->max_seqs + 1; /* one spare slot for scoring */
    const loom_device_kind dk = loom_engine_device(o->device, o->kv_type, &e->cfg);
    const bool on_device = dk == LOOM_DEVICE_CUDA || dk == LOOM_DEVICE_HOST; /* the KV blocks live there */
    if (!st) {
        loom_kv_config kc = {
            .n_layers = e->w->shard.layer_end - e->w->shard.layer_begin,
            .n_kv_heads = e->w->n_kv,
            .head_dim = e->cfg.head_dim,
            .type = o->kv_type,
            .block_tokens = o->block_tokens,
            .n_blocks = loom_engine_kv_blocks(o),
            .max_seqs = slots,
            .max_ctx = o->ctx_size,
            .tables_only = on_device,
            .v_is_k = e->cfg.mla, /* the latent is key and value: held once */
        };
        st = loom_kv_create(&kc, &e->kv);
    }
    if (!st && e->coordinator)
        st = loom_kv_blocks_create(loom_kv_config_of(e->kv)->n_blocks, o->block_tokens, o->prefix_cache, &e->blocks);
    if (!st) st = loom_pool_create(o->n_threads, &e->pool);
    if (!st) {
        const int hr = o->host_ranks > 1 ? o->host_ranks : 1;
        loom_set_host_cores(o->n_threads * hr);
        loom_set_host_weights((int64_t)(e->w->bytes_mapped + e->w->bytes_copied) * hr);
    }
    if (!st && !on_device) st = loom_weights_repack(e->w, g, e->pool); /* the CPU kernels' layouts */
    if (!st && on_device)
        st = loom_stage_create_device(e->w, e->kv, dk, o->device_ordinal, o->n_threads, e->topo.tp_group, o->batch_rows,
                                      &e->stage);
    else if (!st)
        st = loom_stage_create(e->w, e->kv, e->pool, e->topo.tp_group, o->batch_rows, &e->stage);
    if (!st) st = loom_transfer_create(&e->topo, e->cfg.dim, o->batch_rows, &e->xfer);
    if (!st) st = alloc_rows(e);
    if (!st && e->last && !e->cfg.encoder) st = loom_vocab_sampler_create(&e->topo, e->w, o->batch_rows, slots, &e->vs);
    if (st) {
        loom_engine_free(e);
        return st;
    }
    if (!on_device) prefault_weights(e->w, progress, user); /* a device read them all while uploading */
    else if (progress) progress(user, 1.0);
    e->t_start = loom_now_s();
    *out = e;
    return NULL;
}

loom_status loom_engine_add_lora(loom_engine *e, const char *path, float scale) {
    if (e->n_lora == LOOM_LORA_MAX) return loom_error(LOOM_ERR_INVALID, "%s: at most %d LoRA adapters", path, LOOM_LORA_MAX);
    if (!loom_stage_takes_lora(e->stage))
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: LoRA adapters run on the CPU only (--device cpu)", path);
    if (!isfinite(scale)) return loom_error(LOOM_ERR_INVALID, "%s: the scale is not a number", path);
    char *p = strdup(path);
    if (!p) return loom_error(LOOM_ERR_NOMEM, "out of memory loading %s", path);
    loom_status st = loom_lora_load(path, e->g, e->w, e->n_lora, &e->lora[e->n_lora]);
    if (st) {
        free(p);
        return st;
    }
    e->lora_path[e->n_lora] = p;
    e->lora_default[e->n_lora++] = scale;
    return NULL;
}

int loom_engine_n_lora(const loom_engine *e) { return e->n_lora; }
const loom_lora *loom_engine_lora(const loom_engine *e, int i) { return e->lora[i]; }
const char *loom_engine_lora_path(const loom_engine *e, int i) { return e->lora_path[i]; }
const float *loom_engine_lora_defaults(const loom_engine *e) { return e->lora_default; }

void loom_engine_free(loom_engine *e) {
    if (!e) return;
    loom_transfer_free(e->xfer);
    loom_vocab_sampler_free(e->vs);
    loom_stage_free(e->stage);
    loom_pool_free(e->pool);
    loom_kv_free(e->kv);
    loom_kv_blocks_free(e->blocks);
    loom_weights_free(e->w);
    for (int i = 0; i < e->n_lora; i++) loom_lora_free(e->lora[i]), free(e->lora_path[i]);
    free(e->b_token);
    free(e->b_pos);
    free(e->b_seq);
    free(e->b_logits);
    free(e->logits);
    free(e->res_slots);
    free(e->res_tokens);
    free(e->reports);
    free(e);
}

const loom_model_config *loom_engine_model(const loom_engine *e) { return &e->cfg; }
const loom_weights *loom_engine_weights(const loom_engine *e) { return e->w; }
const loom_engine_options *loom_engine_options_of(const loom_engine *e) { return &e->opt; }
const loom_topology *loom_engine_topology(const loom_engine *e) { return &e->topo; }
loom_kv_blocks *loom_engine_blocks(loom_engine *e) { return e->blocks; }
loom_pool *loom_engine_pool(loom_engine *e) { return e->pool; }
double loom_engine_busy_seconds(const loom_engine *e) { return e->busy_s; }

void loom_engine_comm_time(const loom_engine *e, double *tp_s, double *pp_s) {
    loom_transfer_times(e->xfer, tp_s, pp_s);
    *tp_s += loom_stage_comm_seconds(e->stage) + (e->vs ? loom_vocab_sampler_comm_seconds(e->vs) : 0);
}

/* ------------------------------------------------------------ apply */

/* A sequence of the step that starts in a fresh slot: its sampler, with the
 * penalty history of positions the prefix cache spared it from computing. */
static loom_status start_sequence(loom_engine *e, const Loom__SeqStep *q) {
    if (!e->vs) return NULL;
    loom_seq_sampling ss = {.params = loom_sampling_defaults()};
    const Loom__SamplingParams *p = q->sampling;
    if (p) {
        ss.params.temperature = p->temperature;
        ss.params.top_k = p->top_k;
        ss.params.top_p = p->top_p;
        ss.params.min_p = p->min_p;
        ss.params.repeat_penalty = p->repeat_penalty;
        ss.params.repeat_last_n = p->repeat_last_n;
        ss.params.seed = p->seed;
        ss.params.presence_penalty = p->presence_penalty;
        ss.params.frequency_penalty = p->frequency_penalty;
        ss.logprobs = p->logprobs;
        ss.top_logprobs = p->top_logprobs;
        if (p->n_bias_token != p->n_bias_value || p->n_bias_token > LOOM_LOGIT_BIAS_MAX)
            return loom_error(LOOM_ERR_FORMAT, "sequence %llu: a logit bias of %zu tokens and %zu values",
                              (unsigned long long)q->id, p->n_bias_token, p->n_bias_value);
        /* borrowed from the step: the slot's sampler keeps its own copies */
        ss.params.n_logit_bias = (int32_t)p->n_bias_token;
        ss.params.bias_token = p->bias_token;
        ss.params.bias_value = p->bias_value;
        ss.params.json_object = p->json_object;
        ss.params.json_schema = p->json_schema && *p->json_schema ? p->json_schema : NULL;
        ss.params.grammar = p->grammar && *p->grammar ? p->grammar : NULL;
        ss.params.grammar_regex = p->grammar_regex;
        ss.params.typical_p = p->typical_p;
        ss.params.top_n_sigma = p->top_n_sigma;
        ss.params.xtc_probability = p->xtc_probability;
        ss.params.xtc_threshold = p->xtc_threshold;
        ss.params.dynatemp_range = p->dynatemp_range;
        ss.params.dynatemp_exponent = p->dynatemp_exponent;
        ss.params.dry_multiplier = p->dry_multiplier;
        ss.params.dry_base = p->dry_base;
        ss.params.dry_allowed_length = p->dry_allowed_length;
        ss.params.dry_penalty_last_n = p->dry_penalty_last_n;
        if (p->n_dry_breakers > LOOM_DRY_MAX_BREAKERS)
            return loom_error(LOOM_ERR_FORMAT, "sequence %llu: %zu DRY sequence breakers", (unsigned long long)q->id,
                              p->n_dry_breakers);
        ss.params.n_dry_breakers = (int32_t)p->n_dry_breakers;
        ss.params.dry_breakers = (const char *const *)p->dry_breakers;
        ss.params.infill = p->infill;
        ss.params.mirostat = p->mirostat;
        ss.params.mirostat_tau = p->mirostat_tau;
        ss.params.mirostat_eta = p->mirostat_eta;
        ss.mirostat_mu = q->mirostat_mu;
    }
    if (q->n_generated > q->n_prompt)
        return loom_error(LOOM_ERR_FORMAT, "sequence %llu: %u generated tokens in a prompt of %u",
                          (unsigned long long)q->id, q->n_generated, q->n_prompt);
    if (q->n_history != q->first_pos)
        return loom_error(LOOM_ERR_FORMAT, "sequence %llu starts at position %u with %zu history tokens",
                          (unsigned long long)q->id, q->first_pos, q->n_history);
    if (loom_vocab_sampler_needs_text(&ss.params) && !loom_vocab_sampler_has_text(e->vs)) {
        /* the first sequence with structured output, the infill sampler or DRY's breakers */
        loom_tokenizer *tok;
        LOOM_TRY(loom_tokenizer_create(e->g, &tok));
        LOOM_TRY(loom_vocab_sampler_set_text(e->vs, tok));
    }
    LOOM_TRY(loom_vocab_sampler_start(e->vs, (int)q->slot, &ss, (int)q->n_prompt, (int)q->n_generated));
    for (size_t i = 0; i < q->n_history; i++) loom_vocab_sampler_history(e->vs, (int)q->slot, (int)i, q->history[i]);
    return NULL;
}

/* Runs one Step on this rank: the previous stage's output is received here
 * unless this is the first stage. On the leader fills res (slots/tokens
 * arrays must hold one entry per row). Sets *out_hidden to this
 * stage's output (n_rows rows). */
static loom_status apply_step(loom_engine *e, const Loom__Step *step, float **out_hidden, int *n_rows,
                              Loom__StepResult *res) {
    const loom_kv_config *kc = loom_kv_config_of(e->kv);
    int slots = kc->max_seqs;
    for (size_t i = 0; i < step->n_release; i++) {
        if (step->release[i] >= (uint32_t)slots)
            return loom_error(LOOM_ERR_FORMAT, "step %llu releases slot %u of %d",
                              (unsigned long long)step->micro_batch, step->release[i], slots);
        loom_kv_clear(e->kv, (int)step->release[i]);
    }
    int rows = 0;
    for (size_t i = 0; i < step->n_seqs; i++) {
        const Loom__SeqStep *q = step->seqs[i];
        if (q->slot < (uint32_t)slots && q->n_blocks > 0) {
            loom_status bs = loom_kv_assign(e->kv, (int)q->slot, q->blocks, (int)q->n_blocks);
            if (bs) return loom_error_wrap(bs, "step %llu", (unsigned long long)step->micro_batch);
        }
        if (q->slot >= (uint32_t)slots || q->n_tokens == 0 || rows + (int)q->n_tokens > e->opt.batch_rows ||
            q->first_pos + q->n_tokens > (uint32_t)kc->max_ctx ||
            q->first_pos + q->n_tokens > (uint32_t)loom_kv_capacity(e->kv, (int)q->slot))
            return loom_error(LOOM_ERR_FORMAT, "step %llu: sequence %llu (slot %u, positions %u+%zu) does not fit "
                              "(slots %d, batch %d, context %d, KV blocks for %d positions)",
                              (unsigned long long)step->micro_batch, (unsigned long long)q->id, q->slot, q->first_pos,
                              q->n_tokens, slots, e->opt.batch_rows, kc->max_ctx,
                              q->slot < (uint32_t)slots ? loom_kv_capacity(e->kv, (int)q->slot) : 0);
        if (q->n_draft && (q->n_draft >= q->n_tokens || !q->want_logits || q->all_logits))
            return loom_error(LOOM_ERR_FORMAT, "step %llu: sequence %llu proposes %u of %zu tokens%s",
                              (unsigned long long)step->micro_batch, (unsigned long long)q->id, q->n_draft,
                              q->n_tokens, q->want_logits && !q->all_logits ? "" : " without sampling");
        if (q->start) LOOM_TRY(start_sequence(e, q));
        if (q->start && (e->n_lora || q->n_lora)) {
            if (q->n_lora > (size_t)e->n_lora)
                return loom_error(LOOM_ERR_FORMAT, "step %llu: sequence %llu gives %zu LoRA scales; %d adapters are loaded",
                                  (unsigned long long)step->micro_batch, (unsigned long long)q->id, q->n_lora, e->n_lora);
            LOOM_TRY(loom_stage_set_lora(e->stage, (int)q->slot, q->n_lora ? q->lora : e->lora_default,
                                         q->n_lora ? (int)q->n_lora : e->n_lora));
        }
        if (e->vs && !loom_vocab_sampler_has(e->vs, (int)q->slot))
            return loom_error(LOOM_ERR_FORMAT, "step %llu: slot %u has no running sequence",
                              (unsigned long long)step->micro_batch, q->slot);
        const size_t sampled = q->n_tokens - q->n_draft; /* rows before the proposals */
        for (size_t j = 0; j < q->n_tokens; j++) {
            int pos = (int)(q->first_pos + j);
            e->b_token[rows] = q->tokens[j];
            e->b_pos[rows] = pos;
            e->b_seq[rows] = (int32_t)q->slot;
            e->b_logits[rows] = q->all_logits || (q->want_logits && j + 1 >= sampled);
            if (e->vs && j < sampled) loom_vocab_sampler_history(e->vs, (int)q->slot, pos, q->tokens[j]);
            rows++;
        }
    }
    *n_rows = rows;
    if (rows == 0) return NULL;
    float *hidden_in = NULL;
    if (!e->first) LOOM_TRY(loom_transfer_hidden_recv(e->xfer, rows, &hidden_in));
    double t0 = loom_now_s();
    loom_batch b = {rows, e->b_token, hidden_in, e->b_pos, e->b_seq, e->b_logits};
    int n_logits = 0;
    loom_status st = loom_stage_forward(e->stage, &b, out_hidden, e->logits, &n_logits);
    e->score_n = 0;
    if (!st && e->last && e->cfg.encoder) { /* hidden states, the same on every TP rank */
        e->score_rows = e->logits;
        e->score_n = n_logits;
        if (e->coordinator && n_logits) memcpy(e->score_dst, e->logits, sizeof(float) * (size_t)n_logits * e->width);
    } else if (!st && e->last) {
        const float *scores = NULL;
        st = loom_vocab_sampler_sample(e->vs, step, e->logits, n_logits, res, &scores);
        if (!st && scores) {
            e->score_rows = scores;
            e->score_n = n_logits;
            if (e->coordinator) memcpy(e->score_dst, scores, sizeof(float) * (size_t)n_logits * e->width);
        }
    }
    e->busy_s += loom_now_s() - t0;
    return st;
}

/* ------------------------------------------------------------ coordinator */

loom_status loom_engine_launch(loom_engine *e, const Loom__Step *step, Loom__StepResult *res) {
    if (!e->coordinator) return loom_error(LOOM_ERR_INVALID, "only the coordinator (rank 0) launches steps");
    uint8_t *bytes = NULL;
    int64_t size = 0;
    loom_status st = NULL;
    if (e->topo.world_size > 1) {
        size_t len = loom__step__get_packed_size(step);
        bytes = malloc(len ? len : 1);
        if (!bytes) return loom_error(LOOM_ERR_NOMEM, "out of memory packing a step");
        loom__step__pack(step, bytes);
        size = (int64_t)len;
    }
    if (e->report_wanted && e->topo.world_size > 1 && !step->shutdown) { /* the step carries the request */
        Loom__Step marked = *step;
        marked.report = true;
        size_t len = loom__step__get_packed_size(&marked);
        uint8_t *b = realloc(bytes, len ? len : 1);
        if (!b) {
            free(bytes);
            return loom_error(LOOM_ERR_NOMEM, "out of memory packing a step");
        }
        bytes = b;
        loom__step__pack(&marked, bytes);
        size = (int64_t)len;
        if (!e->reports) e->reports = calloc((size_t)e->topo.world_size * 4, sizeof(double));
        st = e->reports ? loom_transfer_report_post(e->xfer, e->reports, 4)
                        : loom_error(LOOM_ERR_NOMEM, "out of memory for rank reports");
        if (!st) e->report_state = 1;
        e->report_wanted = false;
    }
    uint8_t *sent = bytes;
    if (!st) st = loom_transfer_step_broadcast(e->xfer, &sent, &size);
    float *hidden = NULL;
    int rows = 0;
    if (!st && !step->shutdown) st = apply_step(e, step, &hidden, &rows, res);
    if (!st && e->topo.n_stages > 1) st = loom_transfer_forward(e->xfer, bytes, size, hidden, step->shutdown ? 0 : rows);
    free(bytes);
    return st;
}

loom_status loom_engine_collect(loom_engine *e, Loom__StepResult **out) {
    *out = NULL;
    uint8_t *bytes;
    int64_t size;
    LOOM_TRY(loom_transfer_result_recv(e->xfer, &bytes, &size));
    Loom__StepResult *r = loom__step_result__unpack(NULL, (size_t)size, bytes);
    if (!r)
        return loom_error(LOOM_ERR_FORMAT, "a result message of %lld bytes from rank %d does not decode",
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
    loom_status st = loom_engine_launch(e, &s, NULL);
    loom_status ws = loom_transfer_flush(e->xfer);
    if (st) {
        loom_status_free(ws);
        return st;
    }
    return ws;
}

/* A scored text: 1 .. ctx_size tokens, each in the vocabulary. */
static loom_status check_text(const loom_engine *e, const int32_t *tokens, int n) {
    if (n < 1 || n > e->opt.ctx_size)
        return loom_error(LOOM_ERR_CONTEXT, "scoring %d tokens with a context size of %d", n, e->opt.ctx_size);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= e->cfg.vocab)
            return loom_error(LOOM_ERR_INVALID, "token %d at index %d is outside the vocabulary", tokens[i], i);
    return NULL;
}

/* nb free KV blocks into *out (allocated; give_blocks returns them), or
 * LOOM_ERR_KV_FULL with none taken. */
static loom_status take_blocks(loom_engine *e, int nb, int32_t **out) {
    int32_t *b = malloc((size_t)(nb > 0 ? nb : 1) * sizeof *b);
    if (!b) return loom_error(LOOM_ERR_NOMEM, "out of memory for %d KV blocks", nb);
    int got = 0;
    while (got < nb && (b[got] = loom_kv_blocks_alloc(e->blocks)) >= 0) got++;
    if (got < nb) {
        for (int i = 0; i < got; i++) loom_kv_blocks_unref(e->blocks, b[i]);
        free(b);
        return loom_error(LOOM_ERR_KV_FULL, "scoring needs %d KV blocks; %d are free", nb, got);
    }
    *out = b;
    return NULL;
}

static void give_blocks(loom_engine *e, int32_t *blocks, int nb) {
    for (int i = 0; i < nb; i++) loom_kv_blocks_unref(e->blocks, blocks[i]);
    free(blocks);
}

/* One scoring step: its `rows` scored rows (none: a step that only
 * releases) go to dst, from the last stage across a pipeline. */
static loom_status score_step(loom_engine *e, const Loom__Step *step, float *dst, int rows) {
    Loom__StepResult res = LOOM__STEP_RESULT__INIT;
    e->score_dst = dst;
    loom_status st = loom_engine_launch(e, step, &res);
    if (!st && e->topo.n_stages > 1) { /* the rows follow the last stage's result */
        Loom__StepResult *r = NULL;
        st = loom_engine_collect(e, &r);
        loom__step_result__free_unpacked(r, NULL);
        if (!st && rows) st = loom_transfer_floats_recv(e->xfer, dst, (size_t)rows * e->width);
    }
    return st;
}

/* loom_engine_score, and loom_engine_score_chunks where chunk is set: then
 * each chunk's rows go to out (batch_rows rows) and to chunk. */
static loom_status score(loom_engine *e, const int32_t *tokens, int n, float *out,
                         void (*chunk)(void *user, int p0, int rows, const float *logits), void *user) {
    if (!e->coordinator) return loom_error(LOOM_ERR_INVALID, "only the coordinator (rank 0) scores");
    LOOM_TRY(check_text(e, tokens, n));
    if (e->cfg.bidirectional && n > e->opt.batch_rows) /* every row must see the whole sequence: one step */
        return loom_error(LOOM_ERR_CONTEXT, "%s encodes a sequence in one batch: %d tokens exceed the batch of %d rows",
                          e->cfg.arch_name, n, e->opt.batch_rows);
    uint32_t slot = (uint32_t)e->opt.max_seqs; /* the spare slot */
    int B = e->opt.block_tokens, nb = (n + B - 1) / B;
    int32_t *blocks;
    LOOM_TRY(take_blocks(e, nb, &blocks));
    loom_status st = NULL;
    int R = e->opt.batch_rows, V = e->width;
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
            q.start = p0 == 0;
            q.n_prompt = (uint32_t)n;
            if (p0 == 0) q.blocks = blocks, q.n_blocks = (size_t)nb;
            step.seqs = qs;
            step.n_seqs = 1;
        } else {
            step.release = &slot;
            step.n_release = 1;
        }
        float *dst = out + (size_t)(last || chunk ? 0 : p0) * V;
        st = score_step(e, &step, dst, rows);
        if (last) break;
        if (!st && chunk) chunk(user, p0, rows, dst);
    }
    if (st) loom_kv_clear(e->kv, (int)slot); /* the release step did not run */
    give_blocks(e, blocks, nb);
    return st;
}

loom_status loom_engine_score(loom_engine *e, const int32_t *tokens, int n, float *logits) {
    return score(e, tokens, n, logits, NULL, NULL);
}

int loom_engine_step_texts(const loom_engine *e, const int *n, int k) {
    const int slots = loom_kv_config_of(e->kv)->max_seqs;
    int i = k > 0 ? 1 : 0, rows = k > 0 ? n[0] : 0;
    while (i < k && i < slots && rows + n[i] <= e->opt.batch_rows) rows += n[i++];
    return i;
}

loom_status loom_engine_score_texts(loom_engine *e, const int32_t *const *tokens, const int *n, int k, float *out) {
    if (!e->coordinator) return loom_error(LOOM_ERR_INVALID, "only the coordinator (rank 0) scores");
    if (!e->cfg.encoder) return loom_error(LOOM_ERR_INVALID, "several texts in one step: an embedding model's only");
    const int slots = loom_kv_config_of(e->kv)->max_seqs, B = e->opt.block_tokens;
    if (k < 1 || k > slots) return loom_error(LOOM_ERR_INVALID, "%d texts in one step; %d slots", k, slots);
    int rows = 0, nb = 0;
    for (int i = 0; i < k; i++) {
        LOOM_TRY(check_text(e, tokens[i], n[i]));
        rows += n[i], nb += (n[i] + B - 1) / B;
    }
    if (rows > e->opt.batch_rows)
        return loom_error(LOOM_ERR_CONTEXT, "%d texts of %d tokens in all exceed the batch of %d rows", k, rows,
                          e->opt.batch_rows);
    Loom__SeqStep *q = calloc((size_t)k, sizeof *q);
    Loom__SeqStep **qs = calloc((size_t)k, sizeof *qs);
    uint32_t *rel = calloc((size_t)k, sizeof *rel);
    int32_t *blocks = NULL;
    loom_status st = q && qs && rel ? take_blocks(e, nb, &blocks) : loom_error(LOOM_ERR_NOMEM, "out of memory");
    /* every slot is free: an embedding model's sequences are only these (loom_engine_score's spare one too) */
    for (int i = 0, b0 = 0; i < k && !st; i++) {
        loom__seq_step__init(&q[i]);
        q[i].slot = (uint32_t)i, rel[i] = (uint32_t)i;
        q[i].n_tokens = (size_t)n[i];
        q[i].tokens = (int32_t *)tokens[i];
        q[i].all_logits = q[i].start = true;
        q[i].n_prompt = (uint32_t)n[i];
        q[i].blocks = blocks + b0, q[i].n_blocks = (size_t)((n[i] + B - 1) / B);
        b0 += (int)q[i].n_blocks;
        qs[i] = &q[i];
    }
    if (!st) { /* the texts, then a step that only releases their slots */
        Loom__Step step = LOOM__STEP__INIT, release = LOOM__STEP__INIT;
        step.protocol = release.protocol = LOOM_PROTOCOL;
        step.seqs = qs, step.n_seqs = (size_t)k;
        release.release = rel, release.n_release = (size_t)k;
        st = score_step(e, &step, out, rows);
        if (!st) st = score_step(e, &release, out, 0);
        if (st)
            for (int i = 0; i < k; i++) loom_kv_clear(e->kv, i); /* the release step did not run */
        give_blocks(e, blocks, nb);
    }
    free(q), free(qs), free(rel);
    return st;
}

loom_status loom_engine_score_chunks(loom_engine *e, const int32_t *tokens, int n, float *buf,
                                     void (*chunk)(void *user, int p0, int rows, const float *logits), void *user) {
    return score(e, tokens, n, buf, chunk, user);
}

void loom_engine_request_report(loom_engine *e) { e->report_wanted = true; }

bool loom_engine_rank_figures(loom_engine *e, double *out) {
    bool all = true;
    if (e->topo.world_size > 1) {
        if (e->report_state == 1) { /* the ranks answered after that step; this does not wait long */
            loom_status st = loom_transfer_report_wait(e->xfer);
            if (!st) e->report_state = 2;
            loom_status_free(st);
        }
        all = e->report_state == 2;
        if (all) memcpy(out + 4, e->reports + 4, sizeof(double) * 4 * (size_t)(e->topo.world_size - 1));
    }
    loom_engine_comm_time(e, &out[0], &out[1]);
    out[2] = e->busy_s;
    out[3] = loom_now_s() - e->t_start;
    return all;
}

/* ------------------------------------------------------------ workers */

/* Unpacks and checks a step that arrived from the network. */
static loom_status unpack_step(loom_engine *e, const uint8_t *bytes, int64_t size, Loom__Step **out) {
    Loom__Step *step = loom__step__unpack(NULL, (size_t)size, bytes);
    *out = NULL;
    if (!step) return loom_error(LOOM_ERR_FORMAT, "a step message of %lld bytes does not decode", (long long)size);
    loom_status st = NULL;
    if (step->protocol != LOOM_PROTOCOL)
        st = loom_error(LOOM_ERR_FORMAT, "step protocol %u, expected %u", step->protocol, LOOM_PROTOCOL);
    else if (step->n_seqs > (size_t)e->opt.max_seqs + 1)
        st = loom_error(LOOM_ERR_FORMAT, "step carries %zu sequences (at most %d)", step->n_seqs, e->opt.max_seqs);
    if (st) {
        loom__step__free_unpacked(step, NULL);
        return st;
    }
    *out = step;
    return NULL;
}

static loom_status send_result(loom_engine *e, const Loom__StepResult *res) {
    size_t len = loom__step_result__get_packed_size(res);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return loom_error(LOOM_ERR_NOMEM, "out of memory packing a result");
    loom__step_result__pack(res, buf);
    loom_status st = loom_transfer_result_send(e->xfer, buf, (int64_t)len);
    free(buf);
    if (!st && e->score_n > 0)
        st = loom_transfer_floats_send(e->xfer, e->score_rows, (size_t)e->score_n * e->width);
    return st;
}

loom_status loom_engine_work(loom_engine *e) {
    if (e->coordinator) return loom_error(LOOM_ERR_INVALID, "the coordinator does not run the worker loop");
    loom_status st = NULL;
    uint8_t *fwd = NULL; /* the packed step, forwarded unchanged to the next stage */
    size_t fwd_cap = 0;
    for (;;) {
        int64_t size = 0;
        uint8_t *bytes = NULL;
        st = e->first ? loom_transfer_step_broadcast(e->xfer, &bytes, &size)
                      : loom_transfer_step_recv(e->xfer, &bytes, &size);
        Loom__Step *step = NULL;
        if (!st) st = unpack_step(e, bytes, size, &step);
        if (st) break;
        if (!e->last && (size_t)size + 1 > fwd_cap) {
            free(fwd);
            fwd_cap = (size_t)size + 1;
            fwd = malloc(fwd_cap);
            if (!fwd) st = loom_error(LOOM_ERR_NOMEM, "out of memory forwarding a step");
        }
        if (!st && fwd) memcpy(fwd, bytes, (size_t)size);
        Loom__StepResult res = LOOM__STEP_RESULT__INIT;
        res.protocol = LOOM_PROTOCOL;
        res.micro_batch = step->micro_batch;
        res.slots = e->res_slots;
        res.tokens = e->res_tokens;
        float *hidden = NULL;
        int rows = 0;
        bool shutdown = step->shutdown;
        e->score_n = 0;
        if (!st && !shutdown) st = apply_step(e, step, &hidden, &rows, &res);
        if (!st && !e->last) st = loom_transfer_forward(e->xfer, fwd, size, hidden, shutdown ? 0 : rows);
        if (!st && e->leader && !shutdown) st = send_result(e, &res);
        if (!st && step->report) {
            double v[4];
            loom_engine_comm_time(e, &v[0], &v[1]);
            v[2] = e->busy_s;
            v[3] = loom_now_s() - e->t_start;
            st = loom_transfer_report_send(e->xfer, v, 4);
        }
        loom__step__free_unpacked(step, NULL);
        if (st || shutdown) break;
    }
    loom_status ws = loom_transfer_flush(e->xfer); /* complete outstanding sends before returning */
    if (ws && !st) st = ws;
    else loom_status_free(ws);
    free(fwd);
    return st;
}
