/*
 * parallel/plan.c — the shard plan: stage partition, tensor-parallel splits,
 * rank placement, byte counts, the ShardPlan message and its validation.
 */
#include "plan.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "kv_cache.h"
#include "loom.pb-c.h"

#define MAX_LAYERS 4096
#define MAX_MESSAGE (64u << 20) /* largest ShardPlan accepted */
#define MAX_WARNINGS 256
#define MAX_WARNING_LEN 4096

/* ------------------------------------------------------------- helpers */

static int64_t row_bytes(loom_type t, int64_t n) { return (int64_t)loom_type_row_bytes(t, n); }

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}
static int64_t lcm64(int64_t a, int64_t b) { return a / gcd64(a, b) * b; }

static uint32_t block_of(loom_type t) {
    const loom_type_traits *tr = loom_type_info((uint32_t)t);
    return tr ? tr->block_size : 1;
}

/* Query heads per indivisible group when attn_output has type t: the
 * fewest heads whose inputs fill whole blocks. */
static int head_group_of(loom_type t, int head_dim) {
    int64_t b = block_of(t);
    return (int)(b / gcd64(b, head_dim));
}

static void human(char *buf, size_t n, int64_t bytes) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 5) v /= 1024, u++;
    if (u == 0)
        snprintf(buf, n, "%" PRId64 " B", bytes);
    else
        snprintf(buf, n, "%.1f %s", v, units[u]);
}

/* The seven matrices of a layer, in a fixed order. */
enum { M_Q, M_K, M_V, M_O, M_GATE, M_UP, M_DOWN, M_COUNT };
static const char *const mat_name[M_COUNT] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                              "ffn_gate", "ffn_up", "ffn_down"};

static loom_type mat_type(const loom_plan_layer *L, int i) {
    switch (i) {
    case M_Q: return L->q;
    case M_K: return L->k;
    case M_V: return L->v;
    case M_O: return L->o;
    case M_GATE: return L->gate;
    case M_UP: return L->up;
    default: return L->down;
    }
}

/* Inputs (ne[0]) and output rows (ne[1]) of matrix i. */
static void mat_shape(const loom_model_config *c, int i, int64_t *in, int64_t *out) {
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    switch (i) {
    case M_Q: *in = c->dim, *out = q; break;
    case M_K:
    case M_V: *in = c->dim, *out = kv; break;
    case M_O: *in = q, *out = c->dim; break;
    case M_GATE:
    case M_UP: *in = c->dim, *out = c->ffn; break;
    default: *in = c->ffn, *out = c->dim; break;
    }
}

/* ---------------------------------------------------------------- model */

static loom_status check_type(loom_type t, int64_t in, const char *what) {
    const loom_type_traits *tr = loom_type_info((uint32_t)t);
    if (!tr) return loom_error(LOOM_ERR_INVALID, "model: %s has unknown type id %d", what, (int)t);
    if (in % tr->block_size)
        return loom_error(LOOM_ERR_INVALID, "model: %s is %s (blocks of %u), which does not divide its %lld inputs",
                          what, tr->name, tr->block_size, (long long)in);
    return NULL;
}

static loom_status check_model(const loom_plan_model *m) {
    const loom_model_config *c = &m->cfg;
    if (c->n_layers < 1 || c->n_layers > MAX_LAYERS || c->dim < 1 || c->dim > (1 << 20) || c->n_heads < 1 ||
        c->n_heads > 4096 || c->n_kv_heads < 1 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads ||
        c->head_dim < 1 || c->head_dim > 4096 || c->ffn < 1 || c->ffn > (1 << 22) || c->vocab < 1 ||
        c->vocab > (1 << 24) || c->rope_dim < 0 || c->rope_dim > c->head_dim)
        return loom_error(LOOM_ERR_INVALID,
                          "model shape out of range: %d layers, width %d, %d query / %d KV heads of %d, FFN %d, "
                          "vocab %d, rope %d (layers 1..%d, heads a multiple of KV heads, rope <= head size)",
                          c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn, c->vocab, c->rope_dim,
                          MAX_LAYERS);
    if (!m->layers) return loom_error(LOOM_ERR_INVALID, "model: no per-layer tensor types");
    LOOM_TRY(check_type(m->embed, c->dim, "token_embd.weight"));
    LOOM_TRY(check_type(m->head, c->dim, c->tied_embeddings ? "token_embd.weight" : "output.weight"));
    if (c->tied_embeddings && m->head != m->embed)
        return loom_error(LOOM_ERR_INVALID, "model: tied embeddings but the lm head type %s differs from %s",
                          loom_type_name(m->head), loom_type_name(m->embed));
    char what[64];
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < M_COUNT; i++) {
            int64_t in, out;
            mat_shape(c, i, &in, &out);
            snprintf(what, sizeof what, "blk.%d.%s.weight", l, mat_name[i]);
            LOOM_TRY(check_type(mat_type(&m->layers[l], i), in, what));
        }
    return NULL;
}

static loom_status find_matrix(const loom_gguf *g, const char *name, int64_t in, int64_t rows, loom_type *type) {
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, name);
    if (!t) return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s is missing", loom_gguf_path(g), name);
    if (t->ne[0] != in || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld], expected [%lld, %lld]",
                          loom_gguf_path(g), name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                          (long long)in, (long long)rows);
    *type = t->type;
    return NULL;
}

static loom_status read_types(const loom_gguf *g, loom_plan_model *m) {
    const loom_model_config *c = &m->cfg;
    LOOM_TRY(find_matrix(g, "token_embd.weight", c->dim, c->vocab, &m->embed));
    m->head = m->embed;
    if (!c->tied_embeddings) LOOM_TRY(find_matrix(g, "output.weight", c->dim, c->vocab, &m->head));
    char name[96];
    for (int l = 0; l < c->n_layers; l++) {
        loom_type t[M_COUNT];
        for (int i = 0; i < M_COUNT; i++) {
            int64_t in, out;
            mat_shape(c, i, &in, &out);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, mat_name[i]);
            LOOM_TRY(find_matrix(g, name, in, out, &t[i]));
        }
        m->layers[l] = (loom_plan_layer){t[M_Q], t[M_K], t[M_V], t[M_O], t[M_GATE], t[M_UP], t[M_DOWN]};
    }
    return NULL;
}

loom_status loom_plan_model_read(const loom_gguf *g, const loom_model_config *cfg, loom_plan_model *out) {
    memset(out, 0, sizeof *out);
    if (cfg->n_layers < 1 || cfg->n_layers > MAX_LAYERS)
        return loom_error(LOOM_ERR_INVALID, "%s: %d layers (expected 1..%d)", loom_gguf_path(g), cfg->n_layers,
                          MAX_LAYERS);
    loom_plan_model m = {.cfg = *cfg, .hash = loom_gguf_header_hash(g)};
    m.layers = calloc((size_t)cfg->n_layers, sizeof *m.layers);
    if (!m.layers) return loom_error(LOOM_ERR_NOMEM, "out of memory reading the tensor index of %s", loom_gguf_path(g));
    loom_status st = read_types(g, &m);
    if (!st) st = loom_error_wrap(check_model(&m), "%s", loom_gguf_path(g));
    if (st) {
        free(m.layers);
        return st;
    }
    *out = m;
    return NULL;
}

void loom_plan_model_free(loom_plan_model *m) {
    if (!m) return;
    free(m->layers);
    m->layers = NULL;
}

/* ---------------------------------------------------------- byte counts */

/* Bytes loom_weights_create binds for nq query heads, nkv KV heads and
 * nffn MLP columns of layer l (norms and biases as F32). */
static int64_t layer_bytes(const loom_plan_model *m, int l, int64_t nq, int64_t nkv, int64_t nffn) {
    const loom_model_config *c = &m->cfg;
    const loom_plan_layer *L = &m->layers[l];
    int64_t hd = c->head_dim, dim = c->dim;
    int64_t b = 2 * dim * 4; /* attn_norm, ffn_norm */
    b += nq * hd * row_bytes(L->q, dim) + nkv * hd * (row_bytes(L->k, dim) + row_bytes(L->v, dim));
    if (c->qkv_bias) b += (nq + 2 * nkv) * hd * 4;
    b += dim * row_bytes(L->o, nq * hd);
    b += nffn * (row_bytes(L->gate, dim) + row_bytes(L->up, dim)) + dim * row_bytes(L->down, nffn);
    return b;
}

static int64_t embed_row_bytes(const loom_plan_model *m) { return row_bytes(m->embed, m->cfg.dim); }
static int64_t head_bytes(const loom_plan_model *m) {
    return (int64_t)m->cfg.dim * 4 + (int64_t)m->cfg.vocab * row_bytes(m->head, m->cfg.dim);
}

static int64_t shard_weight_bytes(const loom_plan_model *m, const loom_shard *s) {
    const loom_model_config *c = &m->cfg;
    int64_t nv = s->vocab_end - s->vocab_begin, b = 0;
    if (s->embed) b += nv * row_bytes(m->embed, c->dim);
    if (s->head) b += (int64_t)c->dim * 4 + nv * row_bytes(m->head, c->dim);
    if (c->has_rope_factors && s->layer_end > s->layer_begin) b += (int64_t)(c->rope_dim / 2) * 4;
    for (int l = s->layer_begin; l < s->layer_end; l++)
        b += layer_bytes(m, l, s->q_end - s->q_begin, s->kv_end - s->kv_begin, s->ffn_end - s->ffn_begin);
    return b;
}

static int64_t shard_kv_bytes(const loom_plan_model *m, const loom_plan_request *r, const loom_shard *s) {
    loom_kv_config kc = {
        .n_layers = s->layer_end - s->layer_begin,
        .n_kv_heads = s->kv_end - s->kv_begin,
        .head_dim = m->cfg.head_dim,
        .type = r->kv_type,
        .block_tokens = r->block_tokens,
        .n_blocks = loom_kv_blocks_for(r->max_seqs, r->ctx_size, r->block_tokens),
        .max_seqs = r->max_seqs,
        .max_ctx = r->ctx_size,
    };
    return (int64_t)loom_kv_bytes(&kc);
}

static int64_t shard_workspace_bytes(const loom_plan_model *m, const loom_plan_request *r, const loom_shard *s) {
    const loom_model_config *c = &m->cfg;
    int64_t R = r->batch_rows, hd = c->head_dim;
    int64_t nq = s->q_end - s->q_begin, nkv = s->kv_end - s->kv_begin, nffn = s->ffn_end - s->ffn_begin;
    int64_t widest = c->dim;
    if (nq * hd > widest) widest = nq * hd;
    if (nffn > widest) widest = nffn;
    int64_t b = 4 * R * (3 * (int64_t)c->dim + 2 * nq * hd + 2 * nkv * hd + 2 * nffn + c->rope_dim);
    b += 4 * R * widest + 8 * R * c->dim + 4 * (int64_t)LOOM_PLAN_THREADS * r->ctx_size;
    if (s->head) b += 4 * R * (s->vocab_end - s->vocab_begin);
    return b;
}

static int64_t rank_total(const loom_rank_plan *rp) { return rp->weight_bytes + rp->kv_bytes + rp->workspace_bytes; }

/* -------------------------------------------------------------- request */

loom_plan_request loom_plan_request_defaults(int tp, int pp) {
    loom_engine_options o = loom_engine_defaults();
    loom_plan_request r = {0};
    r.tp = tp;
    r.pp = pp;
    r.ctx_size = o.ctx_size;
    r.max_seqs = o.max_seqs;
    r.block_tokens = o.block_tokens;
    r.kv_type = o.kv_type;
    r.batch_rows = o.batch_rows;
    return r;
}

/* Checks the numbers of a request that do not depend on the split. */
static loom_status check_request_numbers(const loom_plan_model *m, const loom_plan_request *r) {
    if (r->ctx_size < 1 || r->ctx_size > (1 << 24))
        return loom_error(LOOM_ERR_INVALID, "context size %d is out of range (1..%d)", r->ctx_size, 1 << 24);
    if (r->max_seqs < 1 || r->max_seqs > (1 << 16))
        return loom_error(LOOM_ERR_INVALID, "sequences %d is out of range (1..%d)", r->max_seqs, 1 << 16);
    if (r->block_tokens < 1 || r->block_tokens > (1 << 16))
        return loom_error(LOOM_ERR_INVALID, "KV block size %d is out of range (1..%d)", r->block_tokens, 1 << 16);
    if (r->batch_rows < 1 || r->batch_rows > (1 << 16))
        return loom_error(LOOM_ERR_INVALID, "batch rows %d is out of range (1..%d)", r->batch_rows, 1 << 16);
    if (r->kv_type != LOOM_TYPE_F16 && r->kv_type != LOOM_TYPE_F32)
        return loom_error(LOOM_ERR_INVALID, "KV cache type %s is not supported (f16, f32)", loom_type_name(r->kv_type));
    if (r->max_memory < 0)
        return loom_error(LOOM_ERR_INVALID, "memory limit %" PRId64 " is negative (0 means no limit)", r->max_memory);
    int64_t blocks = (int64_t)r->max_seqs * ((r->ctx_size + r->block_tokens - 1) / r->block_tokens);
    if (blocks > INT_MAX)
        return loom_error(LOOM_ERR_INVALID, "%d sequences of %d positions need %" PRId64 " KV blocks of %d, over %d",
                          r->max_seqs, r->ctx_size, blocks, r->block_tokens, INT_MAX);
    /* the whole model's cache must count in int64 */
    double kv = 2.0 * m->cfg.n_layers * (double)blocks * r->block_tokens * m->cfg.n_kv_heads * m->cfg.head_dim * 4;
    if (kv > 4e18)
        return loom_error(LOOM_ERR_INVALID, "a KV cache of %d sequences × %d positions is too large to count",
                          r->max_seqs, r->ctx_size);
    return NULL;
}

/* Largest tp the model's block granularities and widths allow (any pp). */
static int model_max_tp(const loom_plan_model *m) {
    const loom_model_config *c = &m->cfg;
    int64_t best = c->vocab;
    for (int l = 0; l < c->n_layers; l++) {
        int64_t gq = c->n_heads / head_group_of(m->layers[l].o, c->head_dim);
        int64_t gf = c->ffn / block_of(m->layers[l].down);
        if (gq < best) best = gq;
        if (gf < best) best = gf;
    }
    return (int)best;
}

/* Explains why tp cannot work: the first layer that limits it. */
static loom_status tp_error(const loom_plan_model *m, int tp, int pp) {
    const loom_model_config *c = &m->cfg;
    int max_tp = model_max_tp(m);
    char tail[160];
    snprintf(tail, sizeof tail, "the largest tp that works is %d (e.g. --tp %d --pp %d, world %lld)", max_tp, max_tp,
             pp, (long long)max_tp * pp);
    if (tp > c->n_heads)
        return loom_error(LOOM_ERR_PLAN, "tp %d exceeds the model's %d query heads (each rank needs at least one); %s",
                          tp, c->n_heads, tail);
    for (int l = 0; l < c->n_layers; l++) {
        const loom_plan_layer *L = &m->layers[l];
        int g = head_group_of(L->o, c->head_dim);
        if (c->n_heads / g < tp)
            return loom_error(LOOM_ERR_PLAN,
                              "tp %d: blk.%d.attn_output.weight is %s (blocks of %u inputs), so query heads of %d "
                              "split only in groups of %d, and %d heads make %d groups; %s",
                              tp, l, loom_type_name(L->o), block_of(L->o), c->head_dim, g, c->n_heads, c->n_heads / g,
                              tail);
        int64_t f = block_of(L->down);
        if (c->ffn / f < tp)
            return loom_error(LOOM_ERR_PLAN,
                              "tp %d: blk.%d.ffn_down.weight is %s, so the %d MLP columns split only in groups of "
                              "%lld (%lld groups); %s",
                              tp, l, loom_type_name(L->down), c->ffn, (long long)f, (long long)(c->ffn / f), tail);
    }
    return loom_error(LOOM_ERR_PLAN, "tp %d exceeds the vocabulary of %d rows; %s", tp, c->vocab, tail);
}

/* Appends the (tp, pp) pairs with tp × pp = world that the model allows. */
static void list_pairs(const loom_plan_model *m, int64_t world, char *buf, size_t n) {
    int max_tp = model_max_tp(m);
    size_t len = 0;
    int found = 0;
    buf[0] = 0;
    for (int64_t tp = 1; tp <= world && len + 40 < n; tp++) {
        if (world % tp) continue;
        int64_t pp = world / tp;
        if (tp > max_tp || pp > m->cfg.n_layers) continue;
        len += (size_t)snprintf(buf + len, n - len, "%s--tp %lld --pp %lld", found ? ", " : "", (long long)tp,
                                (long long)pp);
        found++;
    }
    if (!found)
        snprintf(buf, n, "none: this model allows tp up to %d and pp up to %d, so %lld ranks cannot be used", max_tp,
                 m->cfg.n_layers, (long long)world);
}

static loom_status check_grid(const loom_plan_model *m, const loom_plan_request *r, int *world_out) {
    const loom_model_config *c = &m->cfg;
    if (r->tp < 1 || r->pp < 1)
        return loom_error(LOOM_ERR_INVALID, "tp %d and pp %d must both be at least 1", r->tp, r->pp);
    int64_t world = (int64_t)r->tp * r->pp;
    char pairs[1024];
    if (r->world && r->world != world) {
        list_pairs(m, r->world < 0 ? 0 : r->world, pairs, sizeof pairs);
        return loom_error(LOOM_ERR_PLAN, "world of %d ranks != tp %d × pp %d = %lld; for %d ranks use: %s", r->world,
                          r->tp, r->pp, (long long)world, r->world, pairs);
    }
    if (world > LOOM_PLAN_MAX_WORLD)
        return loom_error(LOOM_ERR_PLAN, "tp %d × pp %d = %lld ranks, more than loom plans for (%d)", r->tp, r->pp,
                          (long long)world, LOOM_PLAN_MAX_WORLD);
    if (r->pp > c->n_layers)
        return loom_error(LOOM_ERR_PLAN,
                          "pp %d exceeds the model's %d layers (each stage needs at least one); the largest pp is %d",
                          r->pp, c->n_layers, c->n_layers);
    if (r->tp > model_max_tp(m)) return tp_error(m, r->tp, r->pp);
    *world_out = (int)world;
    return NULL;
}

/* ------------------------------------------------------ stage partition */

/* R (pp rows of L+1): R[s][i] = layers [0, i) split into stages 0..s, each
 * non-empty and costing at most C. Returns R[pp-1][L]. */
static bool feasible(const int64_t *P, int L, int pp, int64_t e, int64_t h, int64_t C, uint8_t *R) {
    size_t W = (size_t)L + 1;
    for (int i = 0; i <= L; i++) R[i] = i >= 1 && P[i] + e + (pp == 1 ? h : 0) <= C;
    for (int s = 1; s < pp; s++) {
        const uint8_t *prev = R + (size_t)(s - 1) * W;
        uint8_t *cur = R + (size_t)s * W;
        int64_t extra = s == pp - 1 ? h : 0;
        int lo = 0, window = 0; /* true prev[j] for j in [lo, i) */
        cur[0] = 0;
        for (int i = 1; i <= L; i++) {
            window += prev[i - 1];
            while (lo < i && P[i] - P[lo] + extra > C) window -= prev[lo++];
            cur[i] = window > 0;
        }
    }
    return R[(size_t)(pp - 1) * W + (size_t)L];
}

/* Splits the layers into pp contiguous non-empty stages minimising the
 * largest stage cost, then the sum of squared costs. starts: (pp + 1). */
static loom_status partition(const loom_plan_model *m, int pp, int *starts, int64_t *costs) {
    int L = m->cfg.n_layers;
    int64_t e = embed_row_bytes(m), h = head_bytes(m);
    size_t W = (size_t)L + 1;
    int64_t *P = malloc(W * sizeof *P);
    uint8_t *R = malloc((size_t)pp * W);
    if (!P || !R) {
        free(P);
        free(R);
        return loom_error(LOOM_ERR_NOMEM, "out of memory partitioning %d layers into %d stages", L, pp);
    }
    P[0] = 0;
    for (int l = 0; l < L; l++) P[l + 1] = P[l] + layer_bytes(m, l, m->cfg.n_heads, m->cfg.n_kv_heads, m->cfg.ffn);
    int64_t lo = 0, hi = P[L] + e + h;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (feasible(P, L, pp, e, h, mid, R))
            hi = mid;
        else
            lo = mid + 1;
    }
    const int64_t C = lo;
    feasible(P, L, pp, e, h, C, R);
#define COST(s, j, i) (P[i] - P[j] + ((s) == 0 ? e : 0) + ((s) == pp - 1 ? h : 0))

    /* Even-ness among the optimal partitions: min Σ cost² over R's states,
     * when the search is small (always, for real models). */
    int64_t work = 0;
    for (int i = 1, j = 0; i <= L; i++) {
        while (j < i && P[i] - P[j] > C) j++;
        work += i - j;
    }
    double *dp = NULL;
    int *arg = NULL;
    if ((int64_t)pp * (int64_t)W <= (1 << 20) && work * pp <= 50000000) {
        dp = malloc((size_t)pp * W * sizeof *dp);
        arg = malloc((size_t)pp * W * sizeof *arg);
    }
    starts[0] = 0;
    starts[pp] = L;
    if (dp && arg) {
        for (int i = 0; i <= L; i++) {
            double c = (double)COST(0, 0, i);
            dp[i] = R[i] ? c * c : -1;
            arg[i] = 0;
        }
        for (int s = 1; s < pp; s++) {
            const uint8_t *rp = R + (size_t)(s - 1) * W;
            for (int i = 0; i <= L; i++) {
                size_t at = (size_t)s * W + (size_t)i;
                dp[at] = -1;
                arg[at] = -1;
                if (!R[at]) continue;
                for (int j = i - 1; j >= s && COST(s, j, i) <= C; j--) {
                    if (!rp[j]) continue;
                    double c = (double)COST(s, j, i), v = dp[(size_t)(s - 1) * W + (size_t)j] + c * c;
                    if (dp[at] < 0 || v < dp[at]) dp[at] = v, arg[at] = j;
                }
            }
        }
        for (int s = pp - 1, i = L; s >= 1; s--) i = starts[s] = arg[(size_t)s * W + (size_t)i];
    } else {
        for (int s = pp - 1, i = L; s >= 1; s--) {
            int j = i - 1;
            while (!(R[(size_t)(s - 1) * W + (size_t)j] && COST(s, j, i) <= C)) j--;
            i = starts[s] = j;
        }
    }
    for (int s = 0; s < pp; s++) costs[s] = COST(s, starts[s], starts[s + 1]);
#undef COST
    free(dp);
    free(arg);
    free(P);
    free(R);
    return NULL;
}

/* ------------------------------------------------------- tensor splits */

/* Even contiguous split of n items over `parts`, the extra items first:
 * begin of part t. */
static int64_t even_begin(int64_t n, int64_t parts, int64_t t) {
    int64_t base = n / parts, extra = n % parts;
    return t * base + (t < extra ? t : extra);
}

/* Splits G groups of g query heads over tp ranks (sizes base or base + 1
 * groups) so that the ranks hold the fewest KV heads in total; ties keep the
 * larger ranks first. bound: (tp + 1) head boundaries. */
static loom_status split_heads(const loom_model_config *c, int g, int tp, int *bound) {
    int G = c->n_heads / g, base = G / tp, extra = G % tp, rep = c->n_heads / c->n_kv_heads;
    size_t E = (size_t)extra + 1;
    int64_t *cost = malloc((size_t)(tp + 1) * E * sizeof *cost);
    if (!cost) return loom_error(LOOM_ERR_NOMEM, "out of memory splitting %d heads over %d ranks", c->n_heads, tp);
#define AT(t, x) cost[(size_t)(t)*E + (size_t)(x)]
#define HEAD(t, x) (((t)*base + (x)) * g)
#define KV_HELD(h0, h1) ((h1 - 1) / rep - (h0) / rep + 1)
    for (size_t i = 0; i < (size_t)(tp + 1) * E; i++) cost[i] = -1;
    AT(0, 0) = 0;
    for (int t = 1; t <= tp; t++)
        for (int x = 0; x <= extra && x <= t; x++) {
            if (t - x > tp - extra) continue;
            int h1 = HEAD(t, x);
            int64_t best = -1;
            if (AT(t - 1, x) >= 0) best = AT(t - 1, x) + KV_HELD(HEAD(t - 1, x), h1);
            if (x > 0 && AT(t - 1, x - 1) >= 0) {
                int64_t v = AT(t - 1, x - 1) + KV_HELD(HEAD(t - 1, x - 1), h1);
                if (best < 0 || v <= best) best = v;
            }
            AT(t, x) = best;
        }
    /* walk back: on a tie the later rank takes the smaller size */
    bound[tp] = c->n_heads;
    for (int t = tp, x = extra; t > 0; t--) {
        int h1 = HEAD(t, x);
        bool small = AT(t - 1, x) >= 0 && AT(t - 1, x) + KV_HELD(HEAD(t - 1, x), h1) == AT(t, x);
        if (!small) x--;
        bound[t - 1] = HEAD(t - 1, x);
    }
#undef AT
#undef HEAD
#undef KV_HELD
    free(cost);
    return NULL;
}

/* Granularities of a stage: query heads and MLP columns per group. */
static void stage_groups(const loom_plan_model *m, int l0, int l1, int *hg, int64_t *fg) {
    int64_t h = 1, f = 1;
    for (int l = l0; l < l1; l++) {
        h = lcm64(h, head_group_of(m->layers[l].o, m->cfg.head_dim));
        f = lcm64(f, block_of(m->layers[l].down));
    }
    *hg = (int)h;
    *fg = f;
}

/* ------------------------------------------------------- plan objects */

void loom_plan_free(loom_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->n_warnings; i++) free(p->warnings[i]);
    free(p->warnings);
    free(p->stages);
    free(p->ranks);
    free(p->grid);
    free(p);
}

static loom_status plan_alloc(int world, int pp, loom_plan **out) {
    loom_plan *p = calloc(1, sizeof *p);
    if (p) {
        p->stages = calloc((size_t)pp, sizeof *p->stages);
        p->ranks = calloc((size_t)world, sizeof *p->ranks);
        p->grid = calloc((size_t)world, sizeof *p->grid);
    }
    if (!p || !p->stages || !p->ranks || !p->grid) {
        loom_plan_free(p);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for a plan of %d ranks", world);
    }
    *out = p;
    return NULL;
}

static loom_status warn(loom_plan *p, const char *fmt, ...) LOOM_PRINTF(2, 3);
static loom_status warn(loom_plan *p, const char *fmt, ...) {
    if (p->n_warnings >= MAX_WARNINGS) return NULL;
    char buf[MAX_WARNING_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **w = realloc(p->warnings, (size_t)(p->n_warnings + 1) * sizeof *w);
    if (!w) return loom_error(LOOM_ERR_NOMEM, "out of memory for a plan warning");
    p->warnings = w;
    if (!(w[p->n_warnings] = strdup(buf))) return loom_error(LOOM_ERR_NOMEM, "out of memory for a plan warning");
    p->n_warnings++;
    return NULL;
}

const loom_rank_plan *loom_plan_rank(const loom_plan *p, int world_rank) {
    if (!p || world_rank < 0 || world_rank >= p->world) return NULL;
    return &p->ranks[world_rank];
}

int loom_plan_world_rank(const loom_plan *p, int stage, int tp_rank) {
    if (!p || stage < 0 || stage >= p->pp || tp_rank < 0 || tp_rank >= p->tp) return -1;
    return p->grid[stage * p->tp + tp_rank];
}

/* --------------------------------------------------------- placement */

static const char *host_of(const char *const *hosts, int r) { return hosts && hosts[r] ? hosts[r] : ""; }

typedef struct {
    int host_order; /* index of the host of its lowest rank, by first appearance */
    int first;      /* lowest world rank */
    int *ranks;     /* (tp) ascending */
} tp_group;

static int cmp_group(const void *a, const void *b) {
    const tp_group *x = a, *y = b;
    if (x->host_order != y->host_order) return x->host_order < y->host_order ? -1 : 1;
    return (x->first > y->first) - (x->first < y->first);
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Fills p->grid: the default (stage r / tp, TP rank r % tp) unless a TP
 * group would span hosts; then each host's ranks form whole TP groups in
 * rank order, the leftovers (ascending) the remaining groups, and groups
 * become stages ordered by host (first appearance) and lowest rank, so
 * world rank 0 stays stage 0, TP rank 0. Warns about groups that still
 * span hosts. */
static loom_status place_ranks(loom_plan *p, const char *const *hosts) {
    int world = p->world, tp = p->tp, pp = p->pp;
    for (int r = 0; r < world; r++) p->grid[r] = r;
    if (!hosts || tp == 1) return NULL;
    bool split = false;
    for (int r = 0; r < world && !split; r++) split = strcmp(host_of(hosts, r), host_of(hosts, r - r % tp)) != 0;
    if (!split) return NULL;

    int *hidx = malloc((size_t)world * sizeof *hidx), *all = malloc((size_t)world * sizeof *all);
    int *rest = malloc((size_t)world * sizeof *rest);
    tp_group *groups = calloc((size_t)pp, sizeof *groups);
    loom_status st = NULL;
    if (!hidx || !all || !rest || !groups) {
        st = loom_error(LOOM_ERR_NOMEM, "out of memory placing %d ranks", world);
        goto done;
    }
    int n_hosts = 0;
    for (int r = 0; r < world; r++) {
        hidx[r] = -1;
        for (int q = 0; q < r && hidx[r] < 0; q++)
            if (!strcmp(host_of(hosts, q), host_of(hosts, r))) hidx[r] = hidx[q];
        if (hidx[r] < 0) hidx[r] = n_hosts++;
    }
    int n_all = 0, n_rest = 0;
    for (int h = 0; h < n_hosts; h++) {
        int n = 0;
        for (int r = 0; r < world; r++)
            if (hidx[r] == h) n++;
        int whole = n / tp * tp, k = 0;
        for (int r = 0; r < world; r++)
            if (hidx[r] == h) {
                if (k++ < whole)
                    all[n_all++] = r;
                else
                    rest[n_rest++] = r;
            }
    }
    qsort(rest, (size_t)n_rest, sizeof *rest, cmp_int);
    memcpy(all + n_all, rest, (size_t)n_rest * sizeof *rest);
    for (int k = 0; k < pp; k++) {
        groups[k].ranks = all + (size_t)k * tp;
        groups[k].first = groups[k].ranks[0];
        groups[k].host_order = hidx[groups[k].first];
    }
    qsort(groups, (size_t)pp, sizeof *groups, cmp_group);
    for (int s = 0; s < pp; s++) memcpy(p->grid + (size_t)s * tp, groups[s].ranks, (size_t)tp * sizeof(int));
    for (int s = 0; s < pp && !st; s++) {
        const int *g = p->grid + (size_t)s * tp;
        bool spans = false;
        for (int t = 1; t < tp; t++) spans |= hidx[g[t]] != hidx[g[0]];
        if (!spans) continue;
        char list[512], names[512];
        size_t a = 0, b = 0;
        names[0] = list[0] = 0;
        for (int t = 0; t < tp && a + 16 < sizeof list; t++)
            a += (size_t)snprintf(list + a, sizeof list - a, "%s%d", t ? ", " : "", g[t]);
        for (int t = 0; t < tp && b + 80 < sizeof names; t++) {
            bool seen = false;
            for (int u = 0; u < t; u++) seen |= hidx[g[u]] == hidx[g[t]];
            if (!seen) b += (size_t)snprintf(names + b, sizeof names - b, "%s%.64s", b ? ", " : "", hosts[g[t]]);
        }
        st = warn(p,
                  "the TP group of stage %d (world ranks %s) spans hosts %s: its all-reduces cross the network; "
                  "give every host a multiple of %d ranks",
                  s, list, names, tp);
    }
done:
    free(hidx);
    free(all);
    free(rest);
    free(groups);
    return st;
}

/* ------------------------------------------------------------ planning */

/* Replication flags and byte counts of every rank, from its shard. */
static void rank_figures(const loom_plan_model *m, const loom_plan *p, loom_rank_plan *rp) {
    rp->weight_bytes = shard_weight_bytes(m, &rp->shard);
    rp->kv_bytes = shard_kv_bytes(m, &p->req, &rp->shard);
    rp->workspace_bytes = shard_workspace_bytes(m, &p->req, &rp->shard);
}

static void kv_flags(loom_plan *p) {
    for (int s = 0; s < p->pp; s++)
        for (int t = 0; t < p->tp; t++) {
            loom_rank_plan *rp = &p->ranks[p->grid[s * p->tp + t]];
            const loom_rank_plan *prev = t > 0 ? &p->ranks[p->grid[s * p->tp + t - 1]] : NULL;
            const loom_rank_plan *next = t + 1 < p->tp ? &p->ranks[p->grid[s * p->tp + t + 1]] : NULL;
            /* ranges are monotone in TP order: only neighbours can share */
            int lo = rp->shard.kv_begin, hi = rp->shard.kv_end - 1;
            rp->kv_shared_first = (prev && prev->shard.kv_end > lo) || (next && next->shard.kv_begin <= lo);
            rp->kv_shared_last = (prev && prev->shard.kv_end > hi) || (next && next->shard.kv_begin <= hi);
        }
}

/* Largest value v in [lo, hi] with fits(v), or lo - 1. */
static int64_t largest_fit(const loom_plan_model *m, const loom_plan *p, int64_t lo, int64_t hi, bool ctx) {
    int64_t best = lo - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        loom_plan_request r = p->req;
        if (ctx)
            r.ctx_size = (int)mid;
        else
            r.max_seqs = (int)mid;
        bool ok = true;
        for (int i = 0; i < p->world && ok; i++) {
            const loom_shard *s = &p->ranks[i].shard;
            int64_t need = shard_weight_bytes(m, s) + shard_kv_bytes(m, &r, s) + shard_workspace_bytes(m, &r, s);
            ok = need <= r.max_memory;
        }
        if (ok)
            best = mid, lo = mid + 1;
        else
            hi = mid - 1;
    }
    return best;
}

static loom_status plan_build(const loom_plan_model *m, const loom_plan_request *req, const char *const *hosts,
                              bool suggest, loom_plan **out);

/* The memory check, with what would work when it fails. */
static loom_status check_memory(const loom_plan_model *m, const loom_plan *p, bool suggest) {
    int64_t M = p->req.max_memory;
    if (M <= 0) return NULL;
    int worst = 0;
    for (int i = 1; i < p->world; i++)
        if (rank_total(&p->ranks[i]) > rank_total(&p->ranks[worst])) worst = i;
    const loom_rank_plan *w = &p->ranks[worst];
    if (rank_total(w) <= M) return NULL;
    char need[32], lim[32], wb[32], kb[32], sb[32], more[512] = "";
    human(need, sizeof need, rank_total(w));
    human(lim, sizeof lim, M);
    human(wb, sizeof wb, w->weight_bytes);
    human(kb, sizeof kb, w->kv_bytes);
    human(sb, sizeof sb, w->workspace_bytes);
    int64_t ctx = largest_fit(m, p, 1, p->req.ctx_size - 1, true);
    int64_t seqs = largest_fit(m, p, 1, p->req.max_seqs - 1, false);
    size_t n = 0;
    if (ctx >= 1)
        n += (size_t)snprintf(more + n, sizeof more - n, "; the largest --ctx-size that fits is %lld", (long long)ctx);
    if (seqs >= 1)
        n += (size_t)snprintf(more + n, sizeof more - n, "; at --ctx-size %d, the most --sequences that fit is %lld",
                              p->req.ctx_size, (long long)seqs);
    if (ctx < 1 && seqs < 1 && suggest) {
        /* even the smallest cache does not fit: more ranks */
        int max_tp = model_max_tp(m);
        bool found = false;
        for (int64_t W = (int64_t)p->world + 1; W <= 16 * (int64_t)p->world && W <= 4096 && !found; W++)
            for (int64_t pp = m->cfg.n_layers < W ? m->cfg.n_layers : W; pp >= 1 && !found; pp--) {
                if (W % pp || W / pp > max_tp) continue;
                loom_plan_request r = p->req;
                r.tp = (int)(W / pp);
                r.pp = (int)pp;
                r.world = 0;
                loom_plan *q = NULL;
                loom_status st = plan_build(m, &r, NULL, false, &q);
                if (!st) {
                    found = true;
                    snprintf(
                        more + n, sizeof more - n,
                        "; no cache fits beside the weights, but more ranks would: e.g. --tp %d --pp %d (world %lld)",
                        r.tp, r.pp, (long long)W);
                }
                loom_status_free(st);
                loom_plan_free(q);
            }
        if (!found)
            snprintf(more + n, sizeof more - n, "; no cache fits beside the weights, and no world up to %d ranks fits",
                     16 * p->world);
    }
    return loom_error(LOOM_ERR_PLAN,
                      "--max-memory %s per rank is too small: rank %d (stage %d, TP rank %d) needs %s (weights %s + "
                      "KV cache %s + workspace %s); the smallest per-rank memory this plan needs is %s%s",
                      lim, worst, w->stage, w->tp_rank, need, wb, kb, sb, need, more);
}

static loom_status fill_plan(const loom_plan_model *m, loom_plan *p, const char *const *hosts) {
    const loom_model_config *c = &m->cfg;
    int tp = p->tp, pp = p->pp;
    int *starts = malloc((size_t)(pp + 1) * sizeof *starts);
    int64_t *costs = malloc((size_t)pp * sizeof *costs);
    int *bound = malloc((size_t)(tp + 1) * sizeof *bound);
    loom_status st = NULL;
    if (!starts || !costs || !bound) st = loom_error(LOOM_ERR_NOMEM, "out of memory planning %d ranks", p->world);
    if (!st) st = partition(m, pp, starts, costs);
    if (!st) st = place_ranks(p, hosts);
    for (int s = 0; s < pp && !st; s++) {
        loom_stage_plan *sp = &p->stages[s];
        sp->layer_begin = starts[s];
        sp->layer_end = starts[s + 1];
        sp->cost = costs[s];
        stage_groups(m, sp->layer_begin, sp->layer_end, &sp->head_group, &sp->ffn_group);
        if (c->n_heads / sp->head_group < tp || c->ffn / sp->ffn_group < tp) {
            st = loom_error(LOOM_ERR_PLAN,
                            "tp %d: stage %d (layers %d-%d) mixes types whose blocks allow only %d groups of %d query "
                            "heads and %lld groups of %lld MLP columns; use a smaller tp",
                            tp, s, sp->layer_begin, sp->layer_end - 1, c->n_heads / sp->head_group, sp->head_group,
                            (long long)(c->ffn / sp->ffn_group), (long long)sp->ffn_group);
            break;
        }
        st = split_heads(c, sp->head_group, tp, bound);
        int64_t fgroups = c->ffn / sp->ffn_group;
        for (int t = 0; t < tp && !st; t++) {
            int r = p->grid[s * tp + t];
            loom_rank_plan *rp = &p->ranks[r];
            rp->world_rank = r;
            rp->stage = s;
            rp->tp_rank = t;
            snprintf(rp->host, sizeof rp->host, "%s", host_of(hosts, r));
            loom_shard *sh = &rp->shard;
            sh->layer_begin = sp->layer_begin;
            sh->layer_end = sp->layer_end;
            sh->q_begin = bound[t];
            sh->q_end = bound[t + 1];
            sh->kv_begin = loom_kv_of_q(c, sh->q_begin);
            sh->kv_end = loom_kv_of_q(c, sh->q_end - 1) + 1;
            sh->ffn_begin = even_begin(fgroups, tp, t) * sp->ffn_group;
            sh->ffn_end = even_begin(fgroups, tp, t + 1) * sp->ffn_group;
            sh->vocab_begin = even_begin(c->vocab, tp, t);
            sh->vocab_end = even_begin(c->vocab, tp, t + 1);
            sh->embed = s == 0;
            sh->head = s == pp - 1;
            rank_figures(m, p, rp);
        }
    }
    if (!st) kv_flags(p);
    free(starts);
    free(costs);
    free(bound);
    return st;
}

static loom_status plan_build(const loom_plan_model *m, const loom_plan_request *req, const char *const *hosts,
                              bool suggest, loom_plan **out) {
    *out = NULL;
    LOOM_TRY(check_model(m));
    LOOM_TRY(check_request_numbers(m, req));
    int world;
    LOOM_TRY(check_grid(m, req, &world));
    if (hosts)
        for (int r = 0; r < world; r++)
            if (hosts[r] && strlen(hosts[r]) >= LOOM_PLAN_HOST_MAX)
                return loom_error(LOOM_ERR_INVALID, "the host name of world rank %d is longer than %d bytes", r,
                                  LOOM_PLAN_HOST_MAX - 1);
    loom_plan *p;
    LOOM_TRY(plan_alloc(world, req->pp, &p));
    p->world = world;
    p->tp = req->tp;
    p->pp = req->pp;
    p->model_hash = m->hash;
    p->cfg = m->cfg;
    p->req = *req;
    p->req.world = world;
    p->kv_blocks = loom_kv_blocks_for(req->max_seqs, req->ctx_size, req->block_tokens);
    loom_status st = fill_plan(m, p, hosts);
    if (!st) st = check_memory(m, p, suggest);
    if (!st && req->ctx_size > m->cfg.ctx_train)
        st = warn(p, "context %d exceeds the %d positions the model was trained for", req->ctx_size, m->cfg.ctx_train);
    if (st) {
        loom_plan_free(p);
        return st;
    }
    *out = p;
    return NULL;
}

loom_status loom_plan_make(const loom_plan_model *m, const loom_plan_request *req, const char *const *hosts,
                           loom_plan **out) {
    return plan_build(m, req, hosts, true, out);
}

/* ---------------------------------------------------------- encoding */

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
        rank_ptrs[r] = o;
    }
    Loom__ShardPlan msg = LOOM__SHARD_PLAN__INIT;
    msg.protocol = LOOM_PLAN_PROTOCOL;
    msg.world = (uint32_t)p->world;
    msg.tp = (uint32_t)p->tp;
    msg.pp = (uint32_t)p->pp;
    msg.model_hash = p->model_hash;
    msg.model = &shape;
    msg.ctx_size = (uint32_t)p->req.ctx_size;
    msg.sequences = (uint32_t)p->req.max_seqs;
    msg.kv_type = (uint32_t)p->req.kv_type;
    msg.block_tokens = (uint32_t)p->req.block_tokens;
    msg.batch_rows = (uint32_t)p->req.batch_rows;
    msg.max_memory = (uint64_t)p->req.max_memory;
    msg.n_stages = (size_t)p->pp;
    msg.stages = stage_ptrs;
    msg.n_ranks = (size_t)p->world;
    msg.ranks = rank_ptrs;
    msg.n_warnings = (size_t)p->n_warnings;
    msg.warnings = p->warnings;
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
    int64_t q_at = 0, f_at = 0, v_at = 0;
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
        const struct {
            const char *what;
            int64_t b, e, n, *at, group;
        } rg[3] = {{"query heads", sh->q_begin, sh->q_end, c->n_heads, &q_at, sp->head_group},
                   {"MLP columns", sh->ffn_begin, sh->ffn_end, c->ffn, &f_at, sp->ffn_group},
                   {"vocabulary rows", sh->vocab_begin, sh->vocab_end, c->vocab, &v_at, 1}};
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
        stage_groups(m, sp->layer_begin, sp->layer_end, &hg, &fg);
        if (hg != sp->head_group || fg != sp->ffn_group)
            return BAD("stage %d claims groups of %d query heads and %lld MLP columns, but its layers' blocks give %d "
                       "and %lld",
                       s, sp->head_group, (long long)sp->ffn_group, hg, (long long)fg);
        int64_t cost = 0;
        for (int l = sp->layer_begin; l < sp->layer_end; l++)
            cost += layer_bytes(m, l, c->n_heads, c->n_kv_heads, c->ffn);
        if (s == 0) cost += embed_row_bytes(m);
        if (s == p->pp - 1) cost += head_bytes(m);
        if (cost != sp->cost)
            return BAD("stage %d claims %" PRId64 " bytes per token but its layers read %" PRId64, s, sp->cost, cost);
    }
    if (at != c->n_layers)
        return BAD("the last stage ends at layer %d: layers [%d, %d) are missing", at, at, c->n_layers);
    for (int s = 0; s < p->pp; s++) LOOM_TRY(validate_stage(m, p, s));
    kv_flags(p);
    for (int r = 0; r < p->world; r++) {
        loom_rank_plan *rp = &p->ranks[r], want = *rp;
        rank_figures(m, p, &want);
        if (want.weight_bytes != rp->weight_bytes || want.kv_bytes != rp->kv_bytes ||
            want.workspace_bytes != rp->workspace_bytes)
            return BAD("rank %d claims %" PRId64 " weight, %" PRId64 " KV and %" PRId64 " workspace bytes; its shard "
                       "needs %" PRId64 ", %" PRId64 " and %" PRId64,
                       r, rp->weight_bytes, rp->kv_bytes, rp->workspace_bytes, want.weight_bytes, want.kv_bytes,
                       want.workspace_bytes);
        if (p->req.max_memory && rank_total(rp) > p->req.max_memory)
            return BAD("rank %d needs %" PRId64 " bytes, over the plan's memory limit of %" PRId64, r, rank_total(rp),
                       p->req.max_memory);
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
    if (msg->n_warnings > MAX_WARNINGS) return BAD("%zu warnings (at most %d)", msg->n_warnings, MAX_WARNINGS);
    loom_plan_request req = {0};
    req.tp = (int)msg->tp;
    req.pp = (int)msg->pp;
    req.world = (int)msg->world;
    if (msg->ctx_size > INT_MAX || msg->sequences > INT_MAX || msg->block_tokens > INT_MAX ||
        msg->batch_rows > INT_MAX || msg->kv_type > INT_MAX || msg->max_memory > INT64_MAX)
        return BAD("context %u, sequences %u, block %u, batch %u or memory %" PRIu64 " out of range", msg->ctx_size,
                   msg->sequences, msg->block_tokens, msg->batch_rows, msg->max_memory);
    req.ctx_size = (int)msg->ctx_size;
    req.max_seqs = (int)msg->sequences;
    req.block_tokens = (int)msg->block_tokens;
    req.batch_rows = (int)msg->batch_rows;
    req.kv_type = (loom_type)msg->kv_type;
    req.max_memory = (int64_t)msg->max_memory;
    LOOM_TRY(loom_error_wrap(check_request_numbers(m, &req), "shard plan"));

    loom_plan *p;
    LOOM_TRY(plan_alloc((int)msg->world, (int)msg->pp, &p));
    p->world = (int)msg->world;
    p->tp = (int)msg->tp;
    p->pp = (int)msg->pp;
    p->model_hash = msg->model_hash;
    p->cfg = *c;
    p->req = req;
    p->kv_blocks = loom_kv_blocks_for(req.max_seqs, req.ctx_size, req.block_tokens);
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
            o->workspace_bytes > INT64_MAX) {
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
        rp->weight_bytes = (int64_t)o->weight_bytes;
        rp->kv_bytes = (int64_t)o->kv_bytes;
        rp->workspace_bytes = (int64_t)o->workspace_bytes;
    }
    free(seen);
    for (size_t i = 0; i < msg->n_warnings && !st; i++) {
        const char *w = msg->warnings[i] ? msg->warnings[i] : "";
        if (strlen(w) >= MAX_WARNING_LEN) {
            st = BAD("warning %zu is longer than %d bytes", i, MAX_WARNING_LEN - 1);
            break;
        }
        st = warn(p, "%s", w);
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
    LOOM_TRY(check_model(m));
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

/* ------------------------------------------------------------ printing */

static void range_str(char *b, size_t n, int64_t lo, int64_t hi) {
    if (hi - lo == 1)
        snprintf(b, n, "%lld", (long long)lo);
    else
        snprintf(b, n, "%lld-%lld", (long long)lo, (long long)hi - 1);
}

static void kv_str(char *b, size_t n, const loom_rank_plan *rp) {
    const loom_shard *s = &rp->shard;
    if (s->kv_end - s->kv_begin == 1)
        snprintf(b, n, "%d%s", s->kv_begin, rp->kv_shared_first || rp->kv_shared_last ? "*" : "");
    else
        snprintf(b, n, "%d%s-%d%s", s->kv_begin, rp->kv_shared_first ? "*" : "", s->kv_end - 1,
                 rp->kv_shared_last ? "*" : "");
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void print_json(const loom_plan *p, FILE *f) {
    const loom_model_config *c = &p->cfg;
    fprintf(f, "{\"protocol\": %u, \"world\": %d, \"tp\": %d, \"pp\": %d, \"model_hash\": \"%016" PRIx64 "\",\n",
            LOOM_PLAN_PROTOCOL, p->world, p->tp, p->pp, p->model_hash);
    fprintf(f,
            " \"model\": {\"arch\": \"%s\", \"n_layers\": %d, \"dim\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, "
            "\"head_dim\": %d, \"ffn\": %d, \"vocab\": %d, \"tied_embeddings\": %s},\n",
            c->arch_name, c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn, c->vocab,
            c->tied_embeddings ? "true" : "false");
    fprintf(f,
            " \"ctx_size\": %d, \"sequences\": %d, \"kv_type\": \"%s\", \"block_tokens\": %d, \"kv_blocks\": %d, "
            "\"batch_rows\": %d, \"max_memory\": %" PRId64 ",\n \"stages\": [",
            p->req.ctx_size, p->req.max_seqs, p->req.kv_type == LOOM_TYPE_F32 ? "f32" : "f16", p->req.block_tokens,
            p->kv_blocks, p->req.batch_rows, p->req.max_memory);
    for (int s = 0; s < p->pp; s++) {
        const loom_stage_plan *sp = &p->stages[s];
        fprintf(f,
                "%s\n  {\"stage\": %d, \"layers\": [%d, %d], \"bytes_per_token\": %" PRId64
                ", \"head_group\": %d, \"ffn_group\": %" PRId64 "}",
                s ? "," : "", s, sp->layer_begin, sp->layer_end, sp->cost, sp->head_group, sp->ffn_group);
    }
    fprintf(f, "],\n \"ranks\": [");
    int64_t wt = 0, kt = 0, st = 0, mx = 0;
    for (int r = 0; r < p->world; r++) {
        const loom_rank_plan *rp = &p->ranks[r];
        const loom_shard *s = &rp->shard;
        fprintf(f, "%s\n  {\"rank\": %d, \"stage\": %d, \"tp_rank\": %d, \"host\": ", r ? "," : "", r, rp->stage,
                rp->tp_rank);
        json_str(f, rp->host);
        fprintf(f, ", \"layers\": [%d, %d], \"q_heads\": [%d, %d], \"kv_heads\": [%d, %d], \"kv_replicated\": [",
                s->layer_begin, s->layer_end, s->q_begin, s->q_end, s->kv_begin, s->kv_end);
        if (rp->kv_shared_first) fprintf(f, "%d", s->kv_begin);
        if (rp->kv_shared_last && (!rp->kv_shared_first || s->kv_end - 1 != s->kv_begin))
            fprintf(f, "%s%d", rp->kv_shared_first ? ", " : "", s->kv_end - 1);
        fprintf(f,
                "], \"ffn\": [%lld, %lld], \"vocab\": [%lld, %lld], \"embed\": %s, \"head\": %s, \"weight_bytes\": "
                "%" PRId64 ", \"kv_bytes\": %" PRId64 ", \"workspace_bytes\": %" PRId64 ", \"total_bytes\": %" PRId64
                "}",
                (long long)s->ffn_begin, (long long)s->ffn_end, (long long)s->vocab_begin, (long long)s->vocab_end,
                s->embed ? "true" : "false", s->head ? "true" : "false", rp->weight_bytes, rp->kv_bytes,
                rp->workspace_bytes, rank_total(rp));
        wt += rp->weight_bytes, kt += rp->kv_bytes, st += rp->workspace_bytes;
        if (rank_total(rp) > mx) mx = rank_total(rp);
    }
    fprintf(f,
            "],\n \"totals\": {\"weight_bytes\": %" PRId64 ", \"kv_bytes\": %" PRId64 ", \"workspace_bytes\": %" PRId64
            ", \"largest_rank_bytes\": %" PRId64 "},\n \"warnings\": [",
            wt, kt, st, mx);
    for (int i = 0; i < p->n_warnings; i++) {
        if (i) fputs(", ", f);
        json_str(f, p->warnings[i]);
    }
    fprintf(f, "]}\n");
}

static void print_text(const loom_plan *p, FILE *f) {
    const loom_model_config *c = &p->cfg;
    char a[48], b[48], d[48], e[48], g[48], h[48];
    fprintf(f, "model   %s, %d layers, width %d, %d query / %d KV heads of %d, FFN %d, vocab %d%s\n", c->arch_name,
            c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn, c->vocab,
            c->tied_embeddings ? " (tied embeddings)" : "");
    fprintf(f, "grid    world %d = pp %d × tp %d\n", p->world, p->pp, p->tp);
    fprintf(f, "cache   %d positions × %d sequences, KV %s in blocks of %d tokens (%d blocks per rank)\n",
            p->req.ctx_size, p->req.max_seqs, p->req.kv_type == LOOM_TYPE_F32 ? "f32" : "f16", p->req.block_tokens,
            p->kv_blocks);
    if (p->req.max_memory) {
        human(a, sizeof a, p->req.max_memory);
        fprintf(f, "memory  at most %s per rank\n", a);
    }
    fprintf(f, "\nstage  layers         read per token  heads/group  MLP columns/group\n");
    for (int s = 0; s < p->pp; s++) {
        const loom_stage_plan *sp = &p->stages[s];
        char lay[80];
        range_str(a, sizeof a, sp->layer_begin, sp->layer_end);
        snprintf(lay, sizeof lay, "%s (%d)", a, sp->layer_end - sp->layer_begin);
        human(d, sizeof d, sp->cost);
        fprintf(f, "%5d  %-13s  %14s  %11d  %17" PRId64 "\n", s, lay, d, sp->head_group, sp->ffn_group);
    }
    bool any_host = false;
    for (int r = 0; r < p->world; r++) any_host |= p->ranks[r].host[0] != 0;
    fprintf(f, "\n%4s  %5s  %4s  %s%-9s  %-11s  %-9s  %-13s  %-13s  %10s  %10s  %10s  %10s\n", "rank", "stage", "tp",
            any_host ? "host              " : "", "layers", "query heads", "KV heads", "MLP columns", "vocabulary",
            "weights", "KV cache", "workspace", "total");
    int64_t wt = 0, kt = 0, st = 0, mx = 0;
    int mx_rank = 0;
    bool any_shared = false;
    for (int r = 0; r < p->world; r++) {
        const loom_rank_plan *rp = &p->ranks[r];
        const loom_shard *s = &rp->shard;
        char lay[48], q[48], kv[48], ff[48], vv[48];
        range_str(lay, sizeof lay, s->layer_begin, s->layer_end);
        range_str(q, sizeof q, s->q_begin, s->q_end);
        kv_str(kv, sizeof kv, rp);
        range_str(ff, sizeof ff, s->ffn_begin, s->ffn_end);
        range_str(vv, sizeof vv, s->vocab_begin, s->vocab_end);
        human(a, sizeof a, rp->weight_bytes);
        human(b, sizeof b, rp->kv_bytes);
        human(d, sizeof d, rp->workspace_bytes);
        human(e, sizeof e, rank_total(rp));
        fprintf(f, "%4d  %5d  %4d  ", r, rp->stage, rp->tp_rank);
        if (any_host) fprintf(f, "%-16.16s  ", rp->host);
        fprintf(f, "%-9s  %-11s  %-9s  %-13s  %-13s  %10s  %10s  %10s  %10s\n", lay, q, kv, ff, vv, a, b, d, e);
        wt += rp->weight_bytes, kt += rp->kv_bytes, st += rp->workspace_bytes;
        if (rank_total(rp) > mx) mx = rank_total(rp), mx_rank = r;
        any_shared |= rp->kv_shared_first || rp->kv_shared_last;
    }
    human(a, sizeof a, wt);
    human(b, sizeof b, kt);
    human(d, sizeof d, st);
    human(g, sizeof g, wt + kt + st);
    human(h, sizeof h, mx);
    fprintf(f, "\ntotal   weights %s, KV cache %s, workspace %s: %s over %d ranks; largest rank %d needs %s\n", a, b, d,
            g, p->world, mx_rank, h);
    if (any_shared) fprintf(f, "        * a KV head held by two or more ranks of its stage (replicated)\n");
    for (int i = 0; i < p->n_warnings; i++) fprintf(f, "warning: %s\n", p->warnings[i]);
}

void loom_plan_print(const loom_plan *p, FILE *f, bool json) {
    if (json)
        print_json(p, f);
    else
        print_text(p, f);
}
