/*
 * parallel/plan_wire.c — the ShardPlan message (proto/loom.proto): encoding
 * a plan, and decoding one with every number checked before it is used and
 * the whole plan validated against this rank's model.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "proto/loom.pb-c.h"
#include "parallel/plan_internal.h"

#define MAX_MESSAGE (64u << 20) /* largest ShardPlan accepted */

loom_status loom_plan_encode(const loom_plan *p, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    Loom__ModelShape shape = LOOM__MODEL_SHAPE__INIT;
    shape.n_layers = (uint32_t)p->cfg.n_layers;
    shape.dim = (uint32_t)p->cfg.dim;
    shape.n_heads = (uint32_t)p->cfg.n_heads;
    shape.n_kv_heads = (uint32_t)p->cfg.n_kv_heads;
    shape.head_dim = (uint32_t)p->cfg.head_dim;
    shape.ffn = (uint32_t)p->cfg.ffn;
    shape.vocab = (uint32_t)p->cfg.vocab;
    shape.tied_embeddings = p->cfg.tied_embeddings;

    Loom__StagePlan *stages = calloc((size_t)p->pp, sizeof *stages);
    Loom__StagePlan **stage_ptrs = calloc((size_t)p->pp, sizeof *stage_ptrs);
    Loom__RankPlan *ranks = calloc((size_t)p->world, sizeof *ranks);
    Loom__RankPlan **rank_ptrs = calloc((size_t)p->world, sizeof *rank_ptrs);
    loom_status st = NULL;
    if (!stages || !stage_ptrs || !ranks || !rank_ptrs) {
        st = loom_error(LOOM_ERR_NOMEM, "out of memory encoding a plan of %d ranks", p->world);
        goto done;
    }
    for (int s = 0; s < p->pp; s++) {
        const loom_stage_plan *sp = &p->stages[s];
        loom__stage_plan__init(&stages[s]);
        stages[s].layer_begin = (uint32_t)sp->layer_begin;
        stages[s].layer_end = (uint32_t)sp->layer_end;
        stages[s].cost = (uint64_t)sp->cost;
        stages[s].head_group = (uint32_t)sp->head_group;
        stages[s].ffn_group = (uint32_t)sp->ffn_group;
        stage_ptrs[s] = &stages[s];
    }
    for (int r = 0; r < p->world; r++) {
        const loom_rank_plan *rp = &p->ranks[r];
        const loom_shard *sh = &rp->shard;
        Loom__RankPlan *o = &ranks[r];
        loom__rank_plan__init(o);
        o->world_rank = (uint32_t)rp->world_rank;
        o->stage = (uint32_t)rp->stage;
        o->tp_rank = (uint32_t)rp->tp_rank;
        o->host = (char *)rp->host;
        o->layer_begin = (uint32_t)sh->layer_begin;
        o->layer_end = (uint32_t)sh->layer_end;
        o->q_begin = (uint32_t)sh->q_begin;
        o->q_end = (uint32_t)sh->q_end;
        o->kv_begin = (uint32_t)sh->kv_begin;
        o->kv_end = (uint32_t)sh->kv_end;
        o->ffn_begin = (uint32_t)sh->ffn_begin;
        o->ffn_end = (uint32_t)sh->ffn_end;
        o->vocab_begin = (uint32_t)sh->vocab_begin;
        o->vocab_end = (uint32_t)sh->vocab_end;
        o->embed = sh->embed;
        o->head = sh->head;
        o->weight_bytes = (uint64_t)rp->weight_bytes;
        o->kv_bytes = (uint64_t)rp->kv_bytes;
        o->workspace_bytes = (uint64_t)rp->workspace_bytes;
        o->split_experts = sh->split_experts;
        o->expert_begin = (uint32_t)sh->expert_begin, o->expert_end = (uint32_t)sh->expert_end;
        o->shared_begin = (uint32_t)sh->shared_begin, o->shared_end = (uint32_t)sh->shared_end;
        rank_ptrs[r] = o;
    }
    Loom__ShardPlan msg = LOOM__SHARD_PLAN__INIT;
    msg.protocol = LOOM_PLAN_PROTOCOL;
    msg.world = (uint32_t)p->world;
    msg.tp = (uint32_t)p->tp;
    msg.pp = (uint32_t)p->pp;
    msg.model_hash = p->model_hash;
    msg.model = &shape;
    msg.ctx_size = (uint32_t)p->req.engine.ctx_size;
    msg.sequences = (uint32_t)p->req.engine.max_seqs;
    msg.kv_type = (uint32_t)p->req.engine.kv_type;
    msg.block_tokens = (uint32_t)p->req.engine.block_tokens;
    msg.batch_rows = (uint32_t)p->req.engine.batch_rows;
    msg.max_memory = (uint64_t)p->req.max_memory;
    msg.kv_blocks = (uint32_t)p->req.engine.kv_blocks;
    msg.n_stages = (size_t)p->pp;
    msg.stages = stage_ptrs;
    msg.n_ranks = (size_t)p->world;
    msg.ranks = rank_ptrs;
    msg.n_warnings = (size_t)p->n_warnings;
    msg.warnings = p->warnings;
    msg.balance = (char *)p->balance;
    size_t n = loom__shard_plan__get_packed_size(&msg);
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        st = loom_error(LOOM_ERR_NOMEM, "out of memory encoding a plan (%zu bytes)", n);
        goto done;
    }
    if (loom__shard_plan__pack(&msg, b) != n) {
        free(b);
        st = loom_error(LOOM_ERR_INVALID, "protobuf-c packed a plan to an unexpected size");
        goto done;
    }
    *buf = b;
    *len = n;
done:
    free(stages);
    free(stage_ptrs);
    free(ranks);
    free(rank_ptrs);
    return st;
}

/* ---------------------------------------------------------- decoding */

#define BAD(...) loom_error(LOOM_ERR_PLAN, "shard plan: " __VA_ARGS__)

/* Ranges and flags of one stage's ranks, in TP order. */
static loom_status validate_stage(const loom_plan_model *m, const loom_plan *p, int s) {
    const loom_model_config *c = &m->cfg;
    const loom_stage_plan *sp = &p->stages[s];
    int64_t q_at = 0, f_at = 0, v_at = 0, e_at = 0, s_at = 0;
    const bool by_experts = p->ranks[p->grid[s * p->tp]].shard.split_experts;
    for (int t = 0; t < p->tp; t++) {
        int r = p->grid[s * p->tp + t];
        const loom_rank_plan *rp = &p->ranks[r];
        const loom_shard *sh = &rp->shard;
        if (sh->layer_begin != sp->layer_begin || sh->layer_end != sp->layer_end)
            return BAD("rank %d holds layers [%d, %d) but its stage %d has [%d, %d)", r, sh->layer_begin, sh->layer_end,
                       s, sp->layer_begin, sp->layer_end);
        if (sh->embed != (s == 0) || sh->head != (s == p->pp - 1))
            return BAD("rank %d (stage %d of %d) has embed=%d head=%d; the embedding belongs to stage 0 and the lm "
                       "head to stage %d",
                       r, s, p->pp, sh->embed, sh->head, p->pp - 1);
        if (sh->split_experts != by_experts)
            return BAD("stage %d splits its experts by columns on some ranks and whole on others", s);
        if (by_experts) { /* every column of whole experts; the experts and the shared expert's columns tile */
            if (!c->n_experts || sh->ffn_begin != 0 || sh->ffn_end != c->ffn || sh->expert_begin != e_at ||
                sh->expert_end <= sh->expert_begin || sh->expert_end > c->n_experts || sh->shared_begin != s_at ||
                sh->shared_end < sh->shared_begin || sh->shared_end > c->ffn_shared || (sh->shared_begin % 256 && sh->shared_begin != c->ffn_shared))
                return BAD("stage %d: rank %d's experts [%d, %d) or shared columns [%lld, %lld) do not follow the "
                           "previous TP rank's (%lld, %lld) within the model's %d experts and %d shared columns",
                           s, r, sh->expert_begin, sh->expert_end, (long long)sh->shared_begin,
                           (long long)sh->shared_end, (long long)e_at, (long long)s_at, c->n_experts, c->ffn_shared);
            e_at = sh->expert_end, s_at = sh->shared_end;
        }
        const struct {
            const char *what;
            int64_t b, e, n, *at, group;
        } rg[3] = {{"query heads", sh->q_begin, sh->q_end, c->n_heads, &q_at, sp->head_group},
                   {"MLP columns", sh->ffn_begin, sh->ffn_end, c->ffn, &f_at, sp->ffn_group},
                   {"vocabulary rows", sh->vocab_begin, sh->vocab_end, c->vocab, &v_at, 1}};
        if (by_experts) f_at = 0; /* every rank holds every column */
        for (int k = 0; k < 3; k++) {
            if (rg[k].b >= rg[k].e || rg[k].e > rg[k].n)
                return BAD("rank %d holds %s [%lld, %lld), not a non-empty range inside [0, %lld)", r, rg[k].what,
                           (long long)rg[k].b, (long long)rg[k].e, (long long)rg[k].n);
            if (rg[k].b != *rg[k].at)
                return BAD("stage %d: %s [%lld, %lld) of TP rank %d (world rank %d) %s the previous TP rank's, which "
                           "end at %lld: each must be held exactly once",
                           s, rg[k].what, (long long)rg[k].b, (long long)rg[k].e, t, r,
                           rg[k].b < *rg[k].at ? "overlap" : "leave a gap after", (long long)*rg[k].at);
            if (rg[k].b % rg[k].group || (rg[k].e % rg[k].group && rg[k].e != rg[k].n))
                return BAD("stage %d: %s [%lld, %lld) of rank %d do not fall on the blocks of layers %d-%d (groups "
                           "of %lld)",
                           s, rg[k].what, (long long)rg[k].b, (long long)rg[k].e, r, sp->layer_begin, sp->layer_end - 1,
                           (long long)rg[k].group);
            *rg[k].at = rg[k].e;
        }
        int kb = loom_kv_of_q(c, sh->q_begin), ke = loom_kv_of_q(c, sh->q_end - 1) + 1;
        if (sh->kv_begin != kb || sh->kv_end != ke)
            return BAD("rank %d holds KV heads [%d, %d) but its query heads [%d, %d) need [%d, %d)", r, sh->kv_begin,
                       sh->kv_end, sh->q_begin, sh->q_end, kb, ke);
    }
    if (by_experts && (e_at != c->n_experts || s_at != c->ffn_shared))
        return BAD("stage %d leaves experts [%lld, %d) or shared columns [%lld, %d) unheld", s, (long long)e_at,
                   c->n_experts, (long long)s_at, c->ffn_shared);
    if (q_at != c->n_heads || f_at != c->ffn || v_at != c->vocab)
        return BAD("stage %d leaves query heads [%lld, %d), MLP columns [%lld, %d) or vocabulary rows [%lld, %d) "
                   "unheld",
                   s, (long long)q_at, c->n_heads, (long long)f_at, c->ffn, (long long)v_at, c->vocab);
    return NULL;
}

static loom_status validate(const loom_plan_model *m, loom_plan *p) {
    const loom_model_config *c = &m->cfg;
    int at = 0;
    for (int s = 0; s < p->pp; s++) {
        const loom_stage_plan *sp = &p->stages[s];
        if (sp->layer_begin != at && s == 0)
            return BAD("stage 0 starts at layer %d, not 0: layers [0, %d) are missing", sp->layer_begin,
                       sp->layer_begin);
        if (sp->layer_begin != at)
            return BAD("stage %d starts at layer %d but stage %d ends at layer %d: layers %s", s, sp->layer_begin,
                       s - 1, at, sp->layer_begin > at ? "are missing" : "overlap");
        if (sp->layer_end <= sp->layer_begin || sp->layer_end > c->n_layers)
            return BAD("stage %d holds layers [%d, %d), not a non-empty range inside [0, %d)", s, sp->layer_begin,
                       sp->layer_end, c->n_layers);
        at = sp->layer_end;
        int hg;
        int64_t fg;
        loom_plan_stage_groups(m, sp->layer_begin, sp->layer_end, &hg, &fg);
        if (hg != sp->head_group || fg != sp->ffn_group)
            return BAD("stage %d claims groups of %d query heads and %lld MLP columns, but its layers' blocks give %d "
                       "and %lld",
                       s, sp->head_group, (long long)sp->ffn_group, hg, (long long)fg);
        int64_t cost = loom_plan_stage_cost(m, sp->layer_begin, sp->layer_end, s == 0, s == p->pp - 1);
        if (cost != sp->cost)
            return BAD("stage %d claims %" PRId64 " bytes per token but its layers read %" PRId64, s, sp->cost, cost);
    }
    if (at != c->n_layers)
        return BAD("the last stage ends at layer %d: layers [%d, %d) are missing", at, at, c->n_layers);
    for (int s = 0; s < p->pp; s++) LOOM_TRY(validate_stage(m, p, s));
    loom_plan_kv_flags(p);
    for (int r = 0; r < p->world; r++) {
        loom_rank_plan *rp = &p->ranks[r], want = *rp;
        loom_plan_rank_figures(m, &p->req, &want);
        if (want.weight_bytes != rp->weight_bytes || want.kv_bytes != rp->kv_bytes ||
            want.workspace_bytes != rp->workspace_bytes)
            return BAD("rank %d claims %" PRId64 " weight, %" PRId64 " KV and %" PRId64 " workspace bytes; its shard "
                       "needs %" PRId64 ", %" PRId64 " and %" PRId64,
                       r, rp->weight_bytes, rp->kv_bytes, rp->workspace_bytes, want.weight_bytes, want.kv_bytes,
                       want.workspace_bytes);
        if (p->req.max_memory && loom_plan_rank_total(rp) > p->req.max_memory)
            return BAD("rank %d needs %" PRId64 " bytes, over the plan's memory limit of %" PRId64, r,
                       loom_plan_rank_total(rp), p->req.max_memory);
    }
    return NULL;
}

/* Copies the message into *p, checking every number before it is used. */
static loom_status from_message(const Loom__ShardPlan *msg, const loom_plan_model *m, loom_plan **out) {
    const loom_model_config *c = &m->cfg;
    if (msg->protocol != LOOM_PLAN_PROTOCOL)
        return loom_error(LOOM_ERR_FORMAT,
                          "shard plan: protocol version %u, but this loom speaks %u: run the same loom build on every "
                          "rank",
                          msg->protocol, LOOM_PLAN_PROTOCOL);
    if (msg->model_hash != m->hash)
        return BAD("made for a model with header hash %016" PRIx64 ", but this rank's model has %016" PRIx64
                   ": every rank must open the same model file",
                   msg->model_hash, m->hash);
    const Loom__ModelShape *ms = msg->model;
    if (!ms) return loom_error(LOOM_ERR_FORMAT, "shard plan: the model shape is missing");
    if (ms->n_layers != (uint32_t)c->n_layers || ms->dim != (uint32_t)c->dim || ms->n_heads != (uint32_t)c->n_heads ||
        ms->n_kv_heads != (uint32_t)c->n_kv_heads || ms->head_dim != (uint32_t)c->head_dim ||
        ms->ffn != (uint32_t)c->ffn || ms->vocab != (uint32_t)c->vocab || ms->tied_embeddings != c->tied_embeddings)
        return BAD("made for %u layers, width %u, %u/%u heads of %u, FFN %u, vocab %u%s, but this rank's model has "
                   "%d layers, width %d, %d/%d heads of %d, FFN %d, vocab %d%s",
                   ms->n_layers, ms->dim, ms->n_heads, ms->n_kv_heads, ms->head_dim, ms->ffn, ms->vocab,
                   ms->tied_embeddings ? " (tied)" : "", c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim,
                   c->ffn, c->vocab, c->tied_embeddings ? " (tied)" : "");
    if (msg->tp < 1 || msg->pp < 1 || msg->tp > LOOM_PLAN_MAX_WORLD || msg->pp > (uint32_t)c->n_layers ||
        (uint64_t)msg->tp * msg->pp != msg->world || msg->world > LOOM_PLAN_MAX_WORLD)
        return BAD("world %u, tp %u, pp %u: expected world = tp × pp <= %d and 1 <= pp <= %d layers", msg->world,
                   msg->tp, msg->pp, LOOM_PLAN_MAX_WORLD, c->n_layers);
    if (msg->n_stages != msg->pp || msg->n_ranks != msg->world)
        return BAD("%zu stages and %zu ranks for pp %u and world %u", msg->n_stages, msg->n_ranks, msg->pp, msg->world);
    if (msg->n_warnings > LOOM_PLAN_MAX_WARNINGS)
        return BAD("%zu warnings (at most %d)", msg->n_warnings, LOOM_PLAN_MAX_WARNINGS);
    loom_plan_request req = {0};
    req.tp = (int)msg->tp;
    req.pp = (int)msg->pp;
    req.world = (int)msg->world;
    if (msg->ctx_size > INT_MAX || msg->sequences > INT_MAX || msg->block_tokens > INT_MAX ||
        msg->batch_rows > INT_MAX || msg->kv_type > INT_MAX || msg->max_memory > INT64_MAX)
        return BAD("context %u, sequences %u, block %u, batch %u or memory %" PRIu64 " out of range", msg->ctx_size,
                   msg->sequences, msg->block_tokens, msg->batch_rows, msg->max_memory);
    req.engine.ctx_size = (int)msg->ctx_size;
    req.engine.max_seqs = (int)msg->sequences;
    req.engine.block_tokens = (int)msg->block_tokens;
    req.engine.batch_rows = (int)msg->batch_rows;
    req.engine.kv_type = (loom_type)msg->kv_type;
    if (msg->kv_blocks > INT_MAX) return BAD("kv_blocks %u out of range", msg->kv_blocks);
    req.engine.kv_blocks = (int)msg->kv_blocks;
    req.max_memory = (int64_t)msg->max_memory;
    LOOM_TRY(loom_error_wrap(loom_plan_check_request(m, &req), "shard plan"));

    loom_plan *p; /* model_hash and cfg come from m, which the message was just checked to match */
    LOOM_TRY(loom_plan_alloc(m, &req, &p));
    loom_status st = NULL;
    for (int s = 0; s < p->pp && !st; s++) {
        const Loom__StagePlan *o = msg->stages[s];
        if (!o || o->layer_begin > (uint32_t)c->n_layers || o->layer_end > (uint32_t)c->n_layers || o->head_group < 1 ||
            o->head_group > (uint32_t)c->n_heads || o->ffn_group < 1 || o->ffn_group > (uint32_t)c->ffn ||
            o->cost > INT64_MAX) {
            st = BAD("stage %d: layers [%u, %u), groups of %u heads and %u columns out of range", s,
                     o ? o->layer_begin : 0, o ? o->layer_end : 0, o ? o->head_group : 0, o ? o->ffn_group : 0);
            break;
        }
        p->stages[s] = (loom_stage_plan){(int)o->layer_begin, (int)o->layer_end, (int64_t)o->cost, (int)o->head_group,
                                         (int64_t)o->ffn_group};
    }
    for (int r = 0; r < p->world; r++) p->grid[r] = -1;
    uint8_t *seen = st ? NULL : calloc((size_t)p->world, 1);
    if (!st && !seen) st = loom_error(LOOM_ERR_NOMEM, "out of memory decoding a plan of %d ranks", p->world);
    for (size_t i = 0; i < msg->n_ranks && !st; i++) {
        const Loom__RankPlan *o = msg->ranks[i];
        if (!o) {
            st = BAD("entry %zu is empty", i);
            break;
        }
        if (o->world_rank >= msg->world || seen[o->world_rank]) {
            st = BAD("entry %zu names world rank %u, %s", i, o->world_rank,
                     o->world_rank >= msg->world ? "outside the world" : "which another entry already names");
            break;
        }
        seen[o->world_rank] = 1;
        if (o->stage >= msg->pp || o->tp_rank >= msg->tp || p->grid[o->stage * msg->tp + o->tp_rank] >= 0) {
            st = BAD("world rank %u is stage %u, TP rank %u: %s", o->world_rank, o->stage, o->tp_rank,
                     o->stage >= msg->pp || o->tp_rank >= msg->tp ? "outside the grid" : "another rank has that place");
            break;
        }
        if (o->layer_begin > (uint32_t)c->n_layers || o->layer_end > (uint32_t)c->n_layers ||
            o->q_begin > (uint32_t)c->n_heads || o->q_end > (uint32_t)c->n_heads ||
            o->kv_begin > (uint32_t)c->n_kv_heads || o->kv_end > (uint32_t)c->n_kv_heads ||
            o->ffn_begin > (uint32_t)c->ffn || o->ffn_end > (uint32_t)c->ffn || o->vocab_begin > (uint32_t)c->vocab ||
            o->vocab_end > (uint32_t)c->vocab || o->weight_bytes > INT64_MAX || o->kv_bytes > INT64_MAX ||
            o->workspace_bytes > INT64_MAX || o->expert_begin > (uint32_t)c->n_experts ||
            o->expert_end > (uint32_t)c->n_experts || o->shared_begin > (uint32_t)c->ffn_shared ||
            o->shared_end > (uint32_t)c->ffn_shared) {
            st = BAD("world rank %u: a range or byte count lies outside the model", o->world_rank);
            break;
        }
        size_t hl = o->host ? strlen(o->host) : 0;
        if (hl >= LOOM_PLAN_HOST_MAX) {
            st = BAD("world rank %u: host name of %zu bytes (at most %d)", o->world_rank, hl, LOOM_PLAN_HOST_MAX - 1);
            break;
        }
        p->grid[o->stage * msg->tp + o->tp_rank] = (int)o->world_rank;
        loom_rank_plan *rp = &p->ranks[o->world_rank];
        rp->world_rank = (int)o->world_rank;
        rp->stage = (int)o->stage;
        rp->tp_rank = (int)o->tp_rank;
        if (hl) memcpy(rp->host, o->host, hl);
        rp->host[hl] = 0;
        loom_shard *sh = &rp->shard;
        sh->layer_begin = (int)o->layer_begin, sh->layer_end = (int)o->layer_end;
        sh->q_begin = (int)o->q_begin, sh->q_end = (int)o->q_end;
        sh->kv_begin = (int)o->kv_begin, sh->kv_end = (int)o->kv_end;
        sh->ffn_begin = o->ffn_begin, sh->ffn_end = o->ffn_end;
        sh->vocab_begin = o->vocab_begin, sh->vocab_end = o->vocab_end;
        sh->embed = o->embed, sh->head = o->head;
        sh->split_experts = o->split_experts;
        sh->expert_begin = (int)o->expert_begin, sh->expert_end = (int)o->expert_end;
        sh->shared_begin = o->shared_begin, sh->shared_end = o->shared_end;
        rp->weight_bytes = (int64_t)o->weight_bytes;
        rp->kv_bytes = (int64_t)o->kv_bytes;
        rp->workspace_bytes = (int64_t)o->workspace_bytes;
    }
    free(seen);
    for (size_t i = 0; i < msg->n_warnings && !st; i++) {
        const char *w = msg->warnings[i] ? msg->warnings[i] : "";
        if (strlen(w) >= LOOM_PLAN_MAX_WARNING_LEN) {
            st = BAD("warning %zu is longer than %d bytes", i, LOOM_PLAN_MAX_WARNING_LEN - 1);
            break;
        }
        st = loom_plan_warn(p, "%s", w);
    }
    if (!st && msg->balance) {
        if (strlen(msg->balance) >= sizeof p->balance)
            st = BAD("balance is longer than %zu bytes", sizeof p->balance - 1);
        else
            snprintf(p->balance, sizeof p->balance, "%s", msg->balance);
    }
    if (!st) st = validate(m, p);
    if (st) {
        loom_plan_free(p);
        return st;
    }
    *out = p;
    return NULL;
}

loom_status loom_plan_decode(const uint8_t *buf, size_t len, const loom_plan_model *m, loom_plan **out) {
    *out = NULL;
    LOOM_TRY(loom_plan_check_model(m));
    if (!buf && len) return loom_error(LOOM_ERR_INVALID, "shard plan: no buffer for %zu bytes", len);
    if (len > MAX_MESSAGE)
        return loom_error(LOOM_ERR_FORMAT, "shard plan: %zu bytes, more than the %u a plan may take", len, MAX_MESSAGE);
    Loom__ShardPlan *msg = loom__shard_plan__unpack(NULL, len, buf);
    if (!msg)
        return loom_error(LOOM_ERR_FORMAT,
                          "shard plan: %zu bytes are not a ShardPlan message (truncated or corrupt protobuf)", len);
    loom_status st = from_message(msg, m, out);
    loom__shard_plan__free_unpacked(msg, NULL);
    return st;
}
