#include "runtime/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/kernels.h"

/* ---------------------------------------------------------------- config */

static loom_status get_count(const loom_gguf *g, const char *arch, const char *suffix, bool required,
                             int64_t def, int64_t max, int *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v = def;
    if (!loom_gguf_get_int(g, key, &v)) {
        if (loom_gguf_get(g, key))
            return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is not an integer", loom_gguf_path(g), key);
        if (required)
            return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is missing", loom_gguf_path(g), key);
    }
    if (v < 1 || v > max)
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata %s = %lld is out of range (1..%lld)", loom_gguf_path(g),
                          key, (long long)v, (long long)max);
    *out = (int)v;
    return NULL;
}

static loom_status get_real(const loom_gguf *g, const char *arch, const char *suffix, double def, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    double v = def;
    if (!loom_gguf_get_float(g, key, &v) && loom_gguf_get(g, key))
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is not a float", loom_gguf_path(g), key);
    if (!(v > 0) || v > 1e12)
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata %s = %g is out of range", loom_gguf_path(g), key, v);
    *out = (float)v;
    return NULL;
}

loom_status loom_model_config_read(const loom_gguf *g, loom_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    const char *path = loom_gguf_path(g);
    loom_str a;
    if (!loom_gguf_get_str(g, "general.architecture", &a))
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata key general.architecture is missing", path);
    if (a.len >= sizeof cfg->arch_name) a.len = sizeof cfg->arch_name - 1;
    memcpy(cfg->arch_name, a.ptr, a.len);
    cfg->arch_name[a.len] = 0;
    if (!strcmp(cfg->arch_name, "llama")) {
        cfg->arch = LOOM_ARCH_LLAMA;
    } else if (!strcmp(cfg->arch_name, "qwen2")) {
        cfg->arch = LOOM_ARCH_QWEN2;
        cfg->rope_neox = true;
    } else {
        return loom_error(LOOM_ERR_UNSUPPORTED,
                          "%s: architecture '%s' is not supported (supported: llama, qwen2)", path, cfg->arch_name);
    }
    const char *arch = cfg->arch_name;
    const int64_t big = 1 << 20;
    LOOM_TRY(get_count(g, arch, "block_count", true, 0, 4096, &cfg->n_layers));
    LOOM_TRY(get_count(g, arch, "embedding_length", true, 0, big, &cfg->dim));
    LOOM_TRY(get_count(g, arch, "feed_forward_length", true, 0, big, &cfg->ffn));
    LOOM_TRY(get_count(g, arch, "attention.head_count", true, 0, 4096, &cfg->n_heads));
    LOOM_TRY(get_count(g, arch, "attention.head_count_kv", false, cfg->n_heads, 4096, &cfg->n_kv_heads));
    LOOM_TRY(get_count(g, arch, "context_length", false, 2048, 1 << 24, &cfg->ctx_train));
    int64_t hd_default = cfg->dim / cfg->n_heads;
    if (hd_default < 1) hd_default = 1;
    LOOM_TRY(get_count(g, arch, "attention.key_length", false, hd_default, 4096, &cfg->head_dim));
    LOOM_TRY(get_count(g, arch, "rope.dimension_count", false, cfg->head_dim, 4096, &cfg->rope_dim));
    LOOM_TRY(get_real(g, arch, "rope.freq_base", 10000.0, &cfg->rope_base));
    LOOM_TRY(get_real(g, arch, "attention.layer_norm_rms_epsilon", 1e-5, &cfg->norm_eps));

    char key[128];
    snprintf(key, sizeof key, "%s.attention.value_length", arch);
    int64_t v;
    if (loom_gguf_get_int(g, key, &v) && v != cfg->head_dim)
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: %s = %lld differs from the key length %d", path, key,
                          (long long)v, cfg->head_dim);

    cfg->rope_freq_scale = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    loom_str st;
    if (loom_gguf_get_str(g, key, &st) && !(st.len == 4 && !memcmp(st.ptr, "none", 4))) {
        if (st.len == 6 && !memcmp(st.ptr, "linear", 6)) {
            float f;
            LOOM_TRY(get_real(g, arch, "rope.scaling.factor", 1.0, &f));
            cfg->rope_freq_scale = 1.0f / f;
        } else {
            return loom_error(LOOM_ERR_UNSUPPORTED, "%s: rope scaling '%.*s' is not supported (none, linear)", path,
                              (int)st.len, st.ptr);
        }
    }

    if (cfg->n_heads % cfg->n_kv_heads)
        return loom_error(LOOM_ERR_FORMAT, "%s: %d query heads are not a multiple of %d KV heads", path,
                          cfg->n_heads, cfg->n_kv_heads);
    if (cfg->rope_dim > cfg->head_dim || cfg->rope_dim % 2 || cfg->head_dim % 2)
        return loom_error(LOOM_ERR_FORMAT, "%s: rope dimension %d must be even and at most the head size %d", path,
                          cfg->rope_dim, cfg->head_dim);

    const loom_gguf_tensor *emb = loom_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return loom_error(LOOM_ERR_FORMAT, "%s: tensor token_embd.weight is missing", path);
    if (emb->n_dims != 2 || emb->ne[0] != cfg->dim || emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        return loom_error(LOOM_ERR_FORMAT, "%s: token_embd.weight has shape [%lld, %lld], expected [%d, vocab]",
                          path, (long long)emb->ne[0], (long long)emb->ne[1], cfg->dim);
    cfg->vocab = (int)emb->ne[1];
    cfg->tied_embeddings = loom_gguf_find_tensor(g, "output.weight") == NULL;
    cfg->has_rope_factors = loom_gguf_find_tensor(g, "rope_freqs.weight") != NULL;
    cfg->qkv_bias = loom_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    return NULL;
}

loom_shard loom_shard_full(const loom_model_config *cfg) {
    loom_shard s = {0};
    s.layer_end = cfg->n_layers;
    s.q_end = cfg->n_heads;
    s.kv_end = cfg->n_kv_heads;
    s.ffn_end = cfg->ffn;
    s.vocab_end = cfg->vocab;
    s.embed = s.head = true;
    return s;
}

/* --------------------------------------------------------------- weights */

static loom_status own(loom_weights *w, void *p) {
    if (w->n_owned == w->cap_owned) {
        int cap = w->cap_owned ? 2 * w->cap_owned : 64;
        void **o = realloc(w->owned, (size_t)cap * sizeof *o);
        if (!o) {
            free(p);
            return loom_error(LOOM_ERR_NOMEM, "out of memory binding weights");
        }
        w->owned = o;
        w->cap_owned = cap;
    }
    w->owned[w->n_owned++] = p;
    return NULL;
}

static loom_status find(const loom_gguf *g, const char *name, int64_t ne0, int64_t ne1,
                        const loom_gguf_tensor **out) {
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, name);
    if (!t) return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s is missing", loom_gguf_path(g), name);
    int64_t want_dims = ne1 > 0 ? 2 : 1;
    bool ok = t->ne[0] == ne0 && (ne1 > 0 ? t->ne[1] == ne1 : true) && t->ne[2] == 1 && t->ne[3] == 1 &&
              (ne1 > 0 || t->ne[1] == 1);
    if (!ok) {
        if (want_dims == 2)
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld], expected [%lld, %lld]",
                              loom_gguf_path(g), name, (long long)t->ne[0], (long long)t->ne[1],
                              (long long)t->ne[2], (long long)ne0, (long long)ne1);
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], expected [%lld]",
                          loom_gguf_path(g), name, (long long)t->ne[0], (long long)t->ne[1], (long long)ne0);
    }
    *out = t;
    return NULL;
}

/* Rows [r0, r1) of a 2-D weight [cols, rows]: a view. */
static loom_status bind_rows(loom_weights *w, const loom_gguf *g, const char *name, int64_t cols, int64_t rows,
                             int64_t r0, int64_t r1, loom_mat *m) {
    const loom_gguf_tensor *t;
    LOOM_TRY(find(g, name, cols, rows, &t));
    if (!loom_type_can_matmul(t->type))
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which loom cannot compute with",
                          loom_gguf_path(g), name, loom_type_name(t->type));
    size_t stride = loom_type_row_bytes(t->type, cols);
    m->type = t->type;
    m->rows = r1 - r0;
    m->cols = cols;
    m->stride = stride;
    m->data = (const uint8_t *)t->data + (size_t)r0 * stride;
    w->bytes_mapped += (size_t)(r1 - r0) * stride;
    return NULL;
}

/* Drops this process's mapping of the pages wholly inside [p, p + n): after a
 * strided slice was copied out, the rank keeps (and is charged for) only the
 * copy. Pages shared with a neighbouring tensor stay. The file is mapped
 * private and read-only, so this loses nothing. Only for mapped files: on a
 * caller's buffer (loom_gguf_open_memory) MADV_DONTNEED would zero memory. */
static void release_pages(const void *p, size_t n) {
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1);
    uintptr_t e = ((uintptr_t)p + n) & ~(uintptr_t)(pg - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);
}

/* Columns [c0, c1) of a 2-D weight [cols, rows]: a view when whole, else a
 * compact copy (the slice is strided through the tensor). */
static loom_status bind_cols(loom_weights *w, const loom_gguf *g, const char *name, int64_t cols, int64_t rows,
                             int64_t c0, int64_t c1, loom_mat *m) {
    if (c0 == 0 && c1 == cols) return bind_rows(w, g, name, cols, rows, 0, rows, m);
    const loom_gguf_tensor *t;
    LOOM_TRY(find(g, name, cols, rows, &t));
    const loom_type_traits *tr = loom_type_info(t->type);
    if (!loom_type_can_matmul(t->type))
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which loom cannot compute with",
                          loom_gguf_path(g), name, loom_type_name(t->type));
    if (c0 % tr->block_size || c1 % tr->block_size)
        return loom_error(LOOM_ERR_PLAN, "%s: columns [%lld, %lld) of %s do not fall on its %s block boundaries (%u)",
                          loom_gguf_path(g), (long long)c0, (long long)c1, name, tr->name, tr->block_size);
    size_t src_stride = loom_type_row_bytes(t->type, cols);
    size_t off = loom_type_row_bytes(t->type, c0);
    size_t stride = loom_type_row_bytes(t->type, c1 - c0);
    uint8_t *buf = malloc((size_t)rows * stride);
    if (!buf) return loom_error(LOOM_ERR_NOMEM, "cannot allocate %zu bytes for a slice of %s", (size_t)rows * stride, name);
    LOOM_TRY(own(w, buf));
    for (int64_t r = 0; r < rows; r++) memcpy(buf + r * stride, (const uint8_t *)t->data + r * src_stride + off, stride);
    if (loom_gguf_is_mapped(g)) release_pages(t->data, (size_t)rows * src_stride);
    m->type = t->type;
    m->rows = rows;
    m->cols = c1 - c0;
    m->stride = stride;
    m->data = buf;
    w->bytes_copied += (size_t)rows * stride;
    return NULL;
}

/* Elements [e0, e1) of a 1-D tensor as F32: a view for F32 data, else a copy. */
static loom_status bind_vec(loom_weights *w, const loom_gguf *g, const char *name, int64_t n, int64_t e0, int64_t e1,
                            const float **out) {
    const loom_gguf_tensor *t;
    LOOM_TRY(find(g, name, n, 0, &t));
    if (t->type == LOOM_TYPE_F32) {
        *out = (const float *)t->data + e0;
        w->bytes_mapped += (size_t)(e1 - e0) * 4;
        return NULL;
    }
    if (t->type != LOOM_TYPE_F16 && t->type != LOOM_TYPE_BF16)
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: tensor %s has type %s, expected F32, F16 or BF16",
                          loom_gguf_path(g), name, loom_type_name(t->type));
    float *buf = malloc((size_t)(e1 - e0) * sizeof *buf);
    if (!buf) return loom_error(LOOM_ERR_NOMEM, "out of memory converting %s", name);
    LOOM_TRY(own(w, buf));
    loom_dequant_row(t->type, (const uint8_t *)t->data + (size_t)e0 * 2, buf, e1 - e0);
    *out = buf;
    w->bytes_copied += (size_t)(e1 - e0) * 4;
    return NULL;
}

static loom_status check_shard(const loom_model_config *c, const loom_shard *s) {
    bool ok = 0 <= s->layer_begin && s->layer_begin <= s->layer_end && s->layer_end <= c->n_layers &&
              0 <= s->q_begin && s->q_begin < s->q_end && s->q_end <= c->n_heads &&
              0 <= s->ffn_begin && s->ffn_begin < s->ffn_end && s->ffn_end <= c->ffn &&
              0 <= s->vocab_begin && s->vocab_begin < s->vocab_end && s->vocab_end <= c->vocab;
    if (!ok)
        return loom_error(LOOM_ERR_PLAN,
                          "shard out of range: layers [%d, %d) of %d, query heads [%d, %d) of %d, "
                          "MLP columns [%lld, %lld) of %d, vocabulary [%lld, %lld) of %d",
                          s->layer_begin, s->layer_end, c->n_layers, s->q_begin, s->q_end, c->n_heads,
                          (long long)s->ffn_begin, (long long)s->ffn_end, c->ffn, (long long)s->vocab_begin,
                          (long long)s->vocab_end, c->vocab);
    int kb = loom_kv_of_q(c, s->q_begin), ke = loom_kv_of_q(c, s->q_end - 1) + 1;
    if (s->kv_begin != kb || s->kv_end != ke)
        return loom_error(LOOM_ERR_PLAN, "shard holds KV heads [%d, %d) but its query heads [%d, %d) need [%d, %d)",
                          s->kv_begin, s->kv_end, s->q_begin, s->q_end, kb, ke);
    return NULL;
}

static loom_status bind_all(loom_weights *w, const loom_gguf *g) {
    const loom_model_config *c = &w->cfg;
    const loom_shard *s = &w->shard;
    int64_t hd = c->head_dim, dim = c->dim;
    int64_t qrows = (int64_t)c->n_heads * hd, kvrows = (int64_t)c->n_kv_heads * hd;
    int64_t q0 = s->q_begin * hd, q1 = s->q_end * hd, k0 = s->kv_begin * hd, k1 = s->kv_end * hd;
    char name[96];

    if (s->embed)
        LOOM_TRY(bind_rows(w, g, "token_embd.weight", dim, c->vocab, s->vocab_begin, s->vocab_end, &w->embed));
    if (s->head) {
        LOOM_TRY(bind_vec(w, g, "output_norm.weight", dim, 0, dim, &w->out_norm));
        const char *head = c->tied_embeddings ? "token_embd.weight" : "output.weight";
        LOOM_TRY(bind_rows(w, g, head, dim, c->vocab, s->vocab_begin, s->vocab_end, &w->lm_head));
    }
    if (c->has_rope_factors && s->layer_end > s->layer_begin)
        LOOM_TRY(bind_vec(w, g, "rope_freqs.weight", c->rope_dim / 2, 0, c->rope_dim / 2, &w->rope_factors));

    for (int l = s->layer_begin; l < s->layer_end; l++) {
        loom_layer *L = &w->layers[l - s->layer_begin];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), name)
        LOOM_TRY(bind_vec(w, g, NAME("attn_norm.weight"), dim, 0, dim, &L->attn_norm));
        LOOM_TRY(bind_rows(w, g, NAME("attn_q.weight"), dim, qrows, q0, q1, &L->wq));
        LOOM_TRY(bind_rows(w, g, NAME("attn_k.weight"), dim, kvrows, k0, k1, &L->wk));
        LOOM_TRY(bind_rows(w, g, NAME("attn_v.weight"), dim, kvrows, k0, k1, &L->wv));
        if (c->qkv_bias) {
            LOOM_TRY(bind_vec(w, g, NAME("attn_q.bias"), qrows, q0, q1, &L->bq));
            LOOM_TRY(bind_vec(w, g, NAME("attn_k.bias"), kvrows, k0, k1, &L->bk));
            LOOM_TRY(bind_vec(w, g, NAME("attn_v.bias"), kvrows, k0, k1, &L->bv));
        }
        LOOM_TRY(bind_cols(w, g, NAME("attn_output.weight"), qrows, dim, q0, q1, &L->wo));
        LOOM_TRY(bind_vec(w, g, NAME("ffn_norm.weight"), dim, 0, dim, &L->ffn_norm));
        LOOM_TRY(bind_rows(w, g, NAME("ffn_gate.weight"), dim, c->ffn, s->ffn_begin, s->ffn_end, &L->w_gate));
        LOOM_TRY(bind_rows(w, g, NAME("ffn_up.weight"), dim, c->ffn, s->ffn_begin, s->ffn_end, &L->w_up));
        LOOM_TRY(bind_cols(w, g, NAME("ffn_down.weight"), c->ffn, dim, s->ffn_begin, s->ffn_end, &L->w_down));
#undef NAME
    }
    return NULL;
}

loom_status loom_weights_create(const loom_gguf *g, const loom_model_config *cfg, const loom_shard *shard,
                                loom_weights **out) {
    *out = NULL;
    LOOM_TRY(check_shard(cfg, shard));
    loom_weights *w = calloc(1, sizeof *w);
    if (!w) return loom_error(LOOM_ERR_NOMEM, "out of memory binding weights");
    w->cfg = *cfg;
    w->shard = *shard;
    w->n_q = shard->q_end - shard->q_begin;
    w->n_kv = shard->kv_end - shard->kv_begin;
    w->n_ffn = shard->ffn_end - shard->ffn_begin;
    w->n_vocab = shard->vocab_end - shard->vocab_begin;
    int nl = shard->layer_end - shard->layer_begin;
    w->layers = calloc(nl > 0 ? (size_t)nl : 1, sizeof *w->layers);
    w->q_to_kv = calloc((size_t)w->n_q, sizeof *w->q_to_kv);
    loom_status st = NULL;
    if (!w->layers || !w->q_to_kv) st = loom_error(LOOM_ERR_NOMEM, "out of memory binding weights");
    for (int i = 0; !st && i < w->n_q; i++) w->q_to_kv[i] = loom_kv_of_q(cfg, shard->q_begin + i) - shard->kv_begin;
    if (!st) st = bind_all(w, g);
    if (st) {
        loom_weights_free(w);
        return st;
    }
    *out = w;
    return NULL;
}

void loom_weights_free(loom_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
    free(w->layers);
    free(w->q_to_kv);
    free(w);
}
