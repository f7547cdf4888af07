/*
 * parallel/plan_model.c — what the planner knows of a model: the type of
 * every matrix (read from the tensor index, checked against the shapes the
 * configuration implies) and the bytes a shard of it holds and reads.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/plan_internal.h"
#include "runtime/kernels.h"
#include "runtime/kv_cache.h"

/* ------------------------------------------------------------- helpers */

static int64_t row_bytes(loom_type t, int64_t n) { return (int64_t)loom_type_row_bytes(t, n); }

/* The seven matrices of a layer, in a fixed order. Fused tensors (model.h)
 * give several of them their type: attn_qkv for Q, K and V, ffn_up for gate
 * and up; a plain MLP has no gate (its type is that of up, counted nowhere). */
enum { M_Q, M_K, M_V, M_O, M_GATE, M_UP, M_DOWN, M_COUNT };
static const char *const mat_name[M_COUNT] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                              "ffn_gate", "ffn_up", "ffn_down"};

/* Inputs (ne[0]) and output rows (ne[1]) of matrix i (MLA: model.h's
 * matrices in q, k, v's places, v attn_k_b one head's). */
static void mat_shape(const loom_model_config *c, int i, int64_t *in, int64_t *out) {
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    if (c->mla && i <= M_O) {
        const int64_t nh = c->n_heads;
        switch (i) {
        case M_Q: *in = c->q_lora ? c->q_lora : c->dim, *out = nh * c->mla_k_dim; break;
        case M_K: *in = c->dim, *out = c->head_dim; break;
        case M_V: *in = c->mla_k_dim - c->rope_dim, *out = c->kv_lora; break;
        default: *in = nh * c->mla_v_dim, *out = c->dim; break;
        }
        return;
    }
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

/* Whether matrix i is a tensor of its own in the file (not one fused into another, nor absent). */
static bool mat_stored(const loom_model_config *c, int i) {
    if (c->fused_qkv && (i == M_K || i == M_V)) return false;
    if (i == M_GATE && (c->ffn_plain || c->fused_gate_up)) return false;
    if (i == M_V && c->mla_kv_b) return false; /* attn_k_b derived from attn_kv_b: F16 (model.c) */
    return true;
}

/* The tensor holding matrix i: its name and shape [in, rows]. */
static void stored_shape(const loom_model_config *c, int i, const char **name, int64_t *in, int64_t *rows) {
    static const char *const exps[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    mat_shape(c, i, in, rows);
    *name = c->n_experts && i >= M_GATE ? exps[i - M_GATE] : mat_name[i];
    static const char *const mla[3] = {"attn_q_b", "attn_kv_a_mqa", "attn_k_b"};
    if (c->mla && i < M_O) *name = i == M_Q && !c->q_lora ? "attn_q" : mla[i];
    if (c->fused_qkv && i == M_Q) *name = "attn_qkv", *rows = loom_qkv_rows(c);
    if (c->fused_gate_up && i == M_UP) *rows = 2 * (int64_t)c->ffn;
}

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

/* ---------------------------------------------------------------- model */

static loom_status check_type(loom_type t, int64_t in, const char *what) {
    const loom_type_traits *tr = loom_type_info((uint32_t)t);
    if (!tr) return loom_error(LOOM_ERR_INVALID, "model: %s has unknown type id %d", what, (int)t);
    if (in % tr->block_size)
        return loom_error(LOOM_ERR_INVALID, "model: %s is %s (blocks of %u), which does not divide its %lld inputs",
                          what, tr->name, tr->block_size, (long long)in);
    return NULL;
}

loom_status loom_plan_check_model(const loom_plan_model *m) {
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
    if (c->pos == LOOM_POS_LEARNED) LOOM_TRY(check_type(m->pos_embd, c->dim, "position_embd.weight"));
    if (!c->encoder)
        LOOM_TRY(check_type(m->head, c->dim, c->tied_embeddings ? "token_embd.weight" : "output.weight"));
    if (c->tied_embeddings && m->head != m->embed)
        return loom_error(LOOM_ERR_INVALID, "model: tied embeddings but the lm head type %s differs from %s",
                          loom_type_name(m->head), loom_type_name(m->embed));
    if (c->n_experts < 0 || c->n_experts > LOOM_MAX_EXPERTS ||
        (c->n_experts && (c->n_experts_used < 1 || c->n_experts_used > c->n_experts)) || c->ffn_shared < 0 ||
        c->ffn_shared > (1 << 22) || (c->ffn_shared && !c->n_experts))
        return loom_error(LOOM_ERR_INVALID, "model: %d experts, %d used (1..%d experts, at most all of them used)",
                          c->n_experts, c->n_experts_used, LOOM_MAX_EXPERTS);
    if (c->n_dense_lead < 0 || c->n_dense_lead > c->n_layers || ((c->n_dense_lead || c->moe_every) && !c->n_experts) ||
        ((c->n_dense_lead || c->moe_every) && (c->ffn_dense < 1 || c->ffn_dense > (1 << 22))) || c->moe_every < 0 ||
        c->moe_every > c->n_layers)
        return loom_error(LOOM_ERR_INVALID, "model: %d leading dense layers of width %d, a mixture every %d (a "
                          "mixture's, 0..%d layers)", c->n_dense_lead, c->ffn_dense, c->moe_every, c->n_layers);
    char what[64];
    for (int l = 0; l < c->n_layers; l++) {
        const bool dense = loom_layer_dense(c, l); /* a mixture's leading dense layer: its MLP ffn_dense wide */
        for (int i = 0; i < (dense ? M_GATE : M_COUNT); i++) {
            int64_t in, out;
            const char *stem;
            stored_shape(c, i, &stem, &in, &out);
            snprintf(what, sizeof what, "blk.%d.%s.weight", l, stem);
            LOOM_TRY(check_type(mat_type(&m->layers[l], i), in, what));
        }
        if (c->mla) {
            snprintf(what, sizeof what, "blk.%d.attn_q_a.weight", l);
            LOOM_TRY(check_type(m->layers[l].q_a, c->dim, what));
            snprintf(what, sizeof what, "blk.%d.attn_v_b.weight", l);
            LOOM_TRY(check_type(m->layers[l].v_b, c->kv_lora, what));
        }
        if (c->n_experts && !dense) {
            snprintf(what, sizeof what, "blk.%d.ffn_gate_inp.weight", l);
            LOOM_TRY(check_type(m->layers[l].router, c->dim, what));
        }
        if (c->ffn_shared || dense) { /* the shared expert's, or the dense MLP in its place */
            const char *sfx = dense ? "" : "_shexp";
            snprintf(what, sizeof what, "blk.%d.ffn_gate%s.weight", l, sfx);
            if (!c->ffn_plain) LOOM_TRY(check_type(m->layers[l].sh_gate, c->dim, what));
            snprintf(what, sizeof what, "blk.%d.ffn_up%s.weight", l, sfx);
            LOOM_TRY(check_type(m->layers[l].sh_up, c->dim, what));
            snprintf(what, sizeof what, "blk.%d.ffn_down%s.weight", l, sfx);
            LOOM_TRY(check_type(m->layers[l].sh_down, dense ? c->ffn_dense : c->ffn_shared, what));
        }
    }
    return NULL;
}

/* Tensor `name` of shape [in, rows] (n > 1: [in, rows, n], n experts' matrices). */
static loom_status find_matrices(const loom_gguf *g, const char *name, int64_t in, int64_t rows, int64_t n,
                                 loom_type *type) {
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, name);
    if (!t) return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s is missing", loom_gguf_path(g), name);
    if (t->ne[0] != in || t->ne[1] != rows || t->ne[2] != n || t->ne[3] != 1) {
        if (n > 1)
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]",
                              loom_gguf_path(g), name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                              (long long)in, (long long)rows, (long long)n);
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld], expected [%lld, %lld]",
                          loom_gguf_path(g), name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                          (long long)in, (long long)rows);
    }
    *type = t->type;
    return NULL;
}

static loom_status find_matrix(const loom_gguf *g, const char *name, int64_t in, int64_t rows, loom_type *type) {
    return find_matrices(g, name, in, rows, 1, type);
}

static loom_status read_types(const loom_gguf *g, loom_plan_model *m) {
    const loom_model_config *c = &m->cfg;
    LOOM_TRY(find_matrix(g, "token_embd.weight", c->dim, c->vocab, &m->embed));
    m->head = m->embed;
    if (!c->tied_embeddings && !c->encoder) LOOM_TRY(find_matrix(g, "output.weight", c->dim, c->vocab, &m->head));
    char name[96];
    if (c->pos == LOOM_POS_LEARNED)
        LOOM_TRY(find_matrix(g, "position_embd.weight", c->dim, c->ctx_train, &m->pos_embd));
    for (int l = 0; l < c->n_layers; l++) {
        loom_type t[M_COUNT];
        const bool dense = loom_layer_dense(c, l);
        for (int i = 0; i < M_COUNT; i++) {
            if (!mat_stored(c, i) || (dense && i >= M_GATE)) continue;
            const char *stem;
            int64_t in, rows;
            stored_shape(c, i, &stem, &in, &rows);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, stem);
            LOOM_TRY(find_matrices(g, name, in, rows, (c->n_experts && i >= M_GATE) ? c->n_experts : (c->mla && i == M_V) ? c->n_heads : 1,
                                   &t[i]));
        }
        if (c->fused_qkv) t[M_K] = t[M_V] = t[M_Q];
        if (c->mla_kv_b) t[M_V] = LOOM_TYPE_F16;
        if (c->ffn_plain || c->fused_gate_up) t[M_GATE] = t[M_UP];
        loom_plan_layer *L = &m->layers[l];
        *L = (loom_plan_layer){t[M_Q], t[M_K], t[M_V], t[M_O], t[M_GATE], t[M_UP], t[M_DOWN], LOOM_TYPE_F32,
                               t[M_GATE], t[M_UP], t[M_DOWN], LOOM_TYPE_F32, LOOM_TYPE_F32};
        if (c->mla) {
            if (c->q_lora) {
                snprintf(name, sizeof name, "blk.%d.attn_q_a.weight", l);
                LOOM_TRY(find_matrix(g, name, c->dim, c->q_lora, &L->q_a));
            }
            if (c->mla_kv_b) { /* attn_v_b's rows are attn_kv_b's value rows */
                snprintf(name, sizeof name, "blk.%d.attn_kv_b.weight", l);
                LOOM_TRY(find_matrix(g, name, c->kv_lora,
                                     (int64_t)c->n_heads * (c->mla_k_dim - c->rope_dim + c->mla_v_dim), &L->v_b));
            } else {
                snprintf(name, sizeof name, "blk.%d.attn_v_b.weight", l);
                LOOM_TRY(find_matrices(g, name, c->kv_lora, c->mla_v_dim, c->n_heads, &L->v_b));
            }
        }
        if (c->n_experts && !dense) {
            snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", l);
            LOOM_TRY(find_matrix(g, name, c->dim, c->n_experts, &L->router));
        }
        if (c->ffn_shared || dense) { /* the shared expert's, or the dense MLP in its place */
            const char *sfx = dense ? "" : "_shexp";
            const int64_t S = dense ? c->ffn_dense : c->ffn_shared;
            snprintf(name, sizeof name, "blk.%d.ffn_gate%s.weight", l, sfx);
            if (!c->ffn_plain) LOOM_TRY(find_matrix(g, name, c->dim, S, &L->sh_gate));
            snprintf(name, sizeof name, "blk.%d.ffn_up%s.weight", l, sfx);
            LOOM_TRY(find_matrix(g, name, c->dim, S, &L->sh_up));
            if (c->ffn_plain) L->sh_gate = L->sh_up; /* (no gate: its rows count 0) */
            snprintf(name, sizeof name, "blk.%d.ffn_down%s.weight", l, sfx);
            LOOM_TRY(find_matrix(g, name, S, c->dim, &L->sh_down));
            if (dense) L->gate = L->sh_gate, L->up = L->sh_up, L->down = L->sh_down; /* their block sizes count too */
        }
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
    if (!st) st = loom_error_wrap(loom_plan_check_model(&m), "%s", loom_gguf_path(g));
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

/* bytes, or weighted by a loom_plan_balance: bytes x per_byte / 16 */
static int64_t wt(const loom_plan_balance *b, loom_type t, int64_t bytes) {
    const int f = b && (unsigned)t < LOOM_TYPE_COUNT && b->per_byte[t] ? b->per_byte[t] : 16;
    return bytes * f / 16;
}

void loom_plan_layer_mats(const loom_plan_model *m, int l, const loom_shard *s, loom_plan_mat out[LOOM_PLAN_LAYER_MATS]) {
    const loom_model_config *c = &m->cfg;
    const int64_t nq = s->q_end - s->q_begin, nkv = s->kv_end - s->kv_begin, nffn = s->ffn_end - s->ffn_begin;
    int64_t s0, s1;
    int e0, e1;
    loom_shard_shared(c, s, &s0, &s1);
    loom_shard_experts(c, s, &e0, &e1);
    const loom_plan_layer *L = &m->layers[l];
    const int64_t hd = c->head_dim, dim = c->dim;
    out[0] = (loom_plan_mat){L->q, nq * hd, dim, 0};
    out[1] = (loom_plan_mat){L->k, nkv * hd, dim, 0};
    out[2] = (loom_plan_mat){L->v, nkv * hd, dim, 0};
    out[3] = (loom_plan_mat){L->o, dim, nq * hd, 0};
    out[11] = out[12] = (loom_plan_mat){L->q_a, 0, 0, 0};
    if (c->mla) { /* model.h: the heads' rows of q, k_b, v_b and o's columns; q_a and kv_a whole */
        const int64_t R = c->kv_lora, K = c->mla_k_dim, V = c->mla_v_dim;
        out[0] = (loom_plan_mat){L->q, nq * K, c->q_lora ? c->q_lora : dim, 0};
        out[1] = (loom_plan_mat){L->k, hd, dim, 0};
        out[2] = (loom_plan_mat){L->v, nq * R, K - c->rope_dim, 0};
        out[3] = (loom_plan_mat){L->o, dim, nq * V, 0};
        out[11] = (loom_plan_mat){L->q_a, c->q_lora, dim, 0};
        out[12] = (loom_plan_mat){L->v_b, nq * V, R, 0};
    }
    if (loom_layer_dense(c, l)) { /* a mixture's leading dense layer: its MLP in the shared expert's place */
        int64_t d0, d1;
        loom_shard_dense(c, s, &d0, &d1);
        for (int i = 4; i < 8; i++) out[i] = (loom_plan_mat){L->router, 0, 0, 0};
        out[8] = (loom_plan_mat){L->sh_gate, c->ffn_plain ? 0 : d1 - d0, dim, 0};
        out[9] = (loom_plan_mat){L->sh_up, d1 - d0, dim, 0};
        out[10] = (loom_plan_mat){L->sh_down, d1 > d0 ? dim : 0, d1 - d0, 0};
        return;
    }
    const int x = e1 - e0; /* experts held (0: a dense MLP) */
    out[4] = (loom_plan_mat){L->gate, c->ffn_plain || (c->n_experts && !x) ? 0 : nffn, dim, x};
    out[5] = (loom_plan_mat){L->up, c->n_experts && !x ? 0 : nffn, dim, x};
    out[6] = (loom_plan_mat){L->down, c->n_experts && !x ? 0 : dim, nffn, x};
    out[7] = (loom_plan_mat){L->router, c->n_experts, dim, 0};
    out[8] = (loom_plan_mat){L->sh_gate, s1 - s0, dim, 0};
    out[9] = (loom_plan_mat){L->sh_up, s1 - s0, dim, 0};
    out[10] = (loom_plan_mat){L->sh_down, s1 > s0 ? dim : 0, s1 - s0, 0};
}

/* Bytes a rank computing on the CPU holds of a matrix it multiplies after
 * loom_weights_repack: the r8 copy (runtime/kernels.h: rows rounded up to
 * whole groups of 8; Q3_K, Q4_K and Q5_K 114, 148 and 180 bytes per
 * super-block and row against the file's 110, 144 and 176, the other types
 * the file's bytes) for every type that has the layout, whichever layout the
 * rank's CPU prefers — so every rank computes the same figure (plan_wire
 * checks it), an upper bound by at most 3.7 % where the rows stay (Intel's
 * AVX-512 K-quants, a GPU). */
static int64_t held_bytes(loom_type t, int64_t rows, int64_t k) {
    if (rows <= 0) return 0;
    if (t == LOOM_TYPE_IQ4_XS) t = LOOM_TYPE_IQ4_NL; /* held as IQ4_NL (model.c), then as any IQ4_NL */
    return loom_type_has_r8(t) ? (int64_t)loom_r8_bytes(t, rows, k) : rows * row_bytes(t, k);
}

/* Bytes of the file's tensors for nq query heads, nkv KV heads and nffn MLP
 * columns of layer l (norms and biases as F32) that a token reads (of a
 * mixture, the router and the experts it uses), each matrix's weighted by
 * b when given (norms and biases as the main type); held: the matrices as
 * a CPU rank holds them (held_bytes, every expert) instead. */
static int64_t layer_cost(const loom_plan_model *m, const loom_plan_balance *bal, bool held, int l,
                          const loom_shard *s) {
    const loom_model_config *c = &m->cfg;
    loom_plan_mat mats[LOOM_PLAN_LAYER_MATS];
    loom_plan_layer_mats(m, l, s, mats);
    int e0, e1;
    loom_shard_experts(c, s, &e0, &e1);
    int64_t f0 = s->ffn_begin, f1 = s->ffn_end; /* the MLP columns held (of a dense layer of a mixture, its own) */
    if (loom_layer_dense(c, l)) loom_shard_dense(c, s, &f0, &f1);
    int64_t b = 4 * loom_layer_vector_floats(c, l, s->q_end - s->q_begin, s->kv_end - s->kv_begin, f1 - f0, e1 - e0);
    for (int i = 0; i < LOOM_PLAN_LAYER_MATS; i++) {
        const loom_plan_mat *x = &mats[i];
        if (!x->rows) continue;
        if (held) b += (x->experts ? x->experts : 1) * held_bytes(x->type, x->rows, x->k);
        else if (!x->experts) b += wt(bal, x->type, x->rows * row_bytes(x->type, x->k));
        else /* a token reads n_experts_used experts, the share of them held here on average */
            b += wt(bal, x->type, x->rows * row_bytes(x->type, x->k)) * c->n_experts_used * x->experts / c->n_experts;
    }
    return b;
}

/* Bytes of a whole layer (every head and column). */
int64_t loom_plan_full_layer_bytes(const loom_plan_model *m, int l) {
    const loom_shard all = loom_shard_full(&m->cfg);
    return layer_cost(m, NULL, false, l, &all);
}
int64_t loom_plan_layer_time(const loom_plan_model *m, const loom_plan_balance *b, int l) {
    const loom_shard all = loom_shard_full(&m->cfg);
    return layer_cost(m, b, false, l, &all);
}

/* Per token the first stage reads an embedding row (and a position row, the
 * token-type row and the embedding norm); the last the output norm and the
 * whole lm head (nothing for an encoder). */
int64_t loom_plan_embed_row_bytes(const loom_plan_model *m) {
    const loom_model_config *c = &m->cfg;
    return row_bytes(m->embed, c->dim) + (c->pos == LOOM_POS_LEARNED ? row_bytes(m->pos_embd, c->dim) : 0) +
           4 * loom_embed_vector_floats(c);
}
int64_t loom_plan_head_bytes(const loom_plan_model *m) { return loom_plan_head_time(m, NULL); }

int64_t loom_plan_head_time(const loom_plan_model *m, const loom_plan_balance *b) {
    const loom_model_config *c = &m->cfg;
    if (b && b->head_time > 0 && !c->encoder) return b->head_time;
    return 4 * loom_head_vector_floats(c) + (c->encoder ? 0 : wt(b, m->head, (int64_t)c->vocab * row_bytes(m->head, c->dim)));
}

int64_t loom_plan_stage_cost(const loom_plan_model *m, int l0, int l1, bool first, bool last) {
    int64_t cost = 0;
    for (int l = l0; l < l1; l++) cost += loom_plan_full_layer_bytes(m, l);
    if (first) cost += loom_plan_embed_row_bytes(m);
    if (last) cost += loom_plan_head_bytes(m);
    return cost;
}

/* What loom_weights_create binds, after loom_weights_repack (held_bytes;
 * a head tied to the embedding table is held once, in the head's layout,
 * where the rank holds both) */
static int64_t shard_weight_bytes(const loom_plan_model *m, const loom_shard *s) {
    const loom_model_config *c = &m->cfg;
    const bool head = s->head && !c->encoder;
    int64_t nv = s->vocab_end - s->vocab_begin, b = 0;
    if (s->embed) {
        /* a tied head's copy serves the embedding too, but for IQ4_XS (its copy is IQ4_NL) */
        if (!(head && c->tied_embeddings) || m->embed == LOOM_TYPE_IQ4_XS) b += nv * row_bytes(m->embed, c->dim);
        b += 4 * loom_embed_vector_floats(c);
        if (c->pos == LOOM_POS_LEARNED) b += (int64_t)c->ctx_train * row_bytes(m->pos_embd, c->dim);
    }
    if (head) b += 4 * loom_head_vector_floats(c) + held_bytes(m->head, nv, c->dim);
    if (s->layer_end > s->layer_begin) b += 4 * loom_rope_vector_floats(c);
    for (int l = s->layer_begin; l < s->layer_end; l++)
        b += layer_cost(m, NULL, true, l, s);
    return b;
}

static int64_t shard_kv_bytes(const loom_plan_model *m, const loom_plan_request *r, const loom_shard *s) {
    loom_kv_config kc = {
        .n_layers = s->layer_end - s->layer_begin,
        .n_kv_heads = s->kv_end - s->kv_begin,
        .head_dim = m->cfg.head_dim,
        .type = r->engine.kv_type,
        .block_tokens = r->engine.block_tokens,
        .n_blocks = loom_engine_kv_blocks(&r->engine),
        .max_seqs = r->engine.max_seqs,
        .max_ctx = r->engine.ctx_size,
        .v_is_k = m->cfg.mla, /* as the engine's */
    };
    return (int64_t)loom_kv_bytes(&kc);
}

static int64_t shard_workspace_bytes(const loom_plan_model *m, const loom_plan_request *r, const loom_shard *s) {
    const loom_model_config *c = &m->cfg;
    int64_t R = r->engine.batch_rows, hd = c->head_dim;
    int64_t nq = s->q_end - s->q_begin, nkv = s->kv_end - s->kv_begin, nffn = s->ffn_end - s->ffn_begin;
    int64_t widest = c->dim;
    if (nq * hd > widest) widest = nq * hd;
    if (c->ffn_shared) { /* the MLP's buffers hold the widest of an expert's, the shared expert's and */
        int64_t s0, s1;   /* a leading dense layer's columns */
        loom_shard_shared(c, s, &s0, &s1);
        if (s1 - s0 > nffn) nffn = s1 - s0;
    }
    if (c->ffn_dense && (c->moe_every || s->layer_begin < c->n_dense_lead)) {
        int64_t d0, d1;
        loom_shard_dense(c, s, &d0, &d1);
        if (d1 - d0 > nffn) nffn = d1 - d0;
    }
    if (nffn > widest) widest = nffn;
    int64_t b = 4 * R * (3 * (int64_t)c->dim + 2 * nq * hd + 2 * nkv * hd + 2 * nffn + c->rope_dim);
    if (c->mla) /* attn_q_a's output, the heads' rows quantized for attn_k_b and attn_v_b (4 bytes an element at most) */
        b += 4 * R * (c->q_lora + nq * (c->mla_k_dim - c->rope_dim + c->kv_lora));
    if (c->n_experts) b += 4 * R * (c->n_experts + 2 * (int64_t)c->dim + 4 * (int64_t)c->n_experts_used);
    b += 4 * R * widest + 8 * R * c->dim + 4 * (int64_t)LOOM_PLAN_THREADS * r->engine.ctx_size;
    if (s->head) b += 4 * R * (s->vocab_end - s->vocab_begin);
    return b;
}

void loom_plan_rank_figures(const loom_plan_model *m, const loom_plan_request *req, loom_rank_plan *rp) {
    rp->weight_bytes = shard_weight_bytes(m, &rp->shard);
    rp->kv_bytes = shard_kv_bytes(m, req, &rp->shard);
    rp->workspace_bytes = shard_workspace_bytes(m, req, &rp->shard);
}

int64_t loom_plan_rank_total(const loom_rank_plan *rp) {
    return rp->weight_bytes + rp->kv_bytes + rp->workspace_bytes;
}

