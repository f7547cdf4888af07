/* runtime/model.c — binding a shard's weights (contract in model.h; the
 * configuration is read in model_config.c). */
#include "runtime/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/kernels.h"
#include "runtime/quant.h"
#include "runtime/threadpool.h"

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

/* Tensor `name` of shape [ne0, ne1, ne2] (ne1 0: a vector of ne0). */
static loom_status find3(const loom_gguf *g, const char *name, int64_t ne0, int64_t ne1, int64_t ne2,
                         const loom_gguf_tensor **out) {
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, name);
    if (!t) return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s is missing", loom_gguf_path(g), name);
    bool ok = t->ne[0] == ne0 && (ne1 > 0 ? t->ne[1] == ne1 : t->ne[1] == 1) && t->ne[2] == ne2 && t->ne[3] == 1;
    if (!ok) {
        if (ne2 > 1)
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]",
                              loom_gguf_path(g), name, (long long)t->ne[0], (long long)t->ne[1],
                              (long long)t->ne[2], (long long)ne0, (long long)ne1, (long long)ne2);
        if (ne1 > 0)
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld], expected [%lld, %lld]",
                              loom_gguf_path(g), name, (long long)t->ne[0], (long long)t->ne[1],
                              (long long)t->ne[2], (long long)ne0, (long long)ne1);
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], expected [%lld]",
                          loom_gguf_path(g), name, (long long)t->ne[0], (long long)t->ne[1], (long long)ne0);
    }
    *out = t;
    return NULL;
}

static loom_status find(const loom_gguf *g, const char *name, int64_t ne0, int64_t ne1,
                        const loom_gguf_tensor **out) {
    return find3(g, name, ne0, ne1, 1, out);
}

static loom_status check_matmul(const loom_gguf *g, const loom_gguf_tensor *t) {
    if (!loom_type_can_matmul(t->type) && t->type != LOOM_TYPE_IQ4_XS) /* IQ4_XS: held as IQ4_NL (hold_iq4_xs) */
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which loom cannot compute with",
                          loom_gguf_path(g), t->name, loom_type_name(t->type));
    return NULL;
}

/* Rows [r0, r1) of the matrix of `cols` inputs of t's type at `base` (t's
 * data, or one expert's matrix in it): a view. */
static void view_rows(loom_weights *w, const loom_gguf_tensor *t, const uint8_t *base, int64_t cols, int64_t r0,
                      int64_t r1, loom_mat *m) {
    size_t stride = loom_type_row_bytes(t->type, cols);
    m->type = t->type;
    m->rows = r1 - r0;
    m->cols = cols;
    m->stride = stride;
    m->data = base + (size_t)r0 * stride;
    w->bytes_mapped += (size_t)(r1 - r0) * stride;
}

/* Records where m came from (loom_mat_source). */
static loom_status add_source(loom_weights *w, const char *name, bool cols, int64_t lo, int64_t hi, loom_mat *m) {
    if (strlen(name) >= sizeof w->sources->name) return NULL; /* no adapter tensor's name is this long */
    if (w->n_sources == w->cap_sources) {
        int cap = w->cap_sources ? 2 * w->cap_sources : 64;
        loom_mat_source *s = realloc(w->sources, (size_t)cap * sizeof *s);
        if (!s) return loom_error(LOOM_ERR_NOMEM, "out of memory binding weights");
        w->sources = s;
        w->cap_sources = cap;
    }
    loom_mat_source *s = &w->sources[w->n_sources++];
    s->m = m;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->cols = cols, s->lo = lo, s->hi = hi;
    return NULL;
}

/* Rows [r0, r1) of a 2-D weight [cols, rows]: a view. */
static loom_status bind_rows(loom_weights *w, const loom_gguf *g, const char *name, int64_t cols, int64_t rows,
                             int64_t r0, int64_t r1, loom_mat *m) {
    const loom_gguf_tensor *t;
    LOOM_TRY(find(g, name, cols, rows, &t));
    LOOM_TRY(check_matmul(g, t));
    view_rows(w, t, t->data, cols, r0, r1, m);
    return add_source(w, name, false, r0, r1, m);
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

/* A weight matrix's own copy (a slice, an interleaved layout), freed with
 * free(). From 2 MiB on it is 2 MiB-aligned and asks for transparent huge
 * pages (where the kernel offers them on request, as Debian's default
 * "madvise" does): decode streams every byte once per token. Zen 4, one
 * thread, alternating in one run: TinyLlama Q4_0 decode 47.1 / 45.0 / 43.6
 * tokens/s with 4 KiB pages, 50.5 / 50.9 / 47.5 with 2 MiB ones; SmolLM2
 * and Llama-3.2-1B Q4_K_M within the noise (prefill alike). */
static void *alloc_copy(size_t bytes) {
    enum { HUGE_PAGE = 2 << 20 };
    if (bytes < HUGE_PAGE) return malloc(bytes ? bytes : 1);
    void *p;
    if (posix_memalign(&p, HUGE_PAGE, bytes)) return NULL;
    (void)madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

/* Columns [c0, c1) of the rows x cols matrix of t's type at `base`: a
 * view when whole, else a compact copy (the slice is strided through it),
 * after which the file's pages of the matrix are released. */
static loom_status slice_cols(loom_weights *w, const loom_gguf *g, const loom_gguf_tensor *t, const uint8_t *base,
                              int64_t cols, int64_t rows, int64_t c0, int64_t c1, loom_mat *m) {
    if (c0 == 0 && c1 == cols) {
        view_rows(w, t, base, cols, 0, rows, m);
        return NULL;
    }
    const loom_type_traits *tr = loom_type_info(t->type);
    if (c0 % tr->block_size || c1 % tr->block_size)
        return loom_error(LOOM_ERR_PLAN, "%s: columns [%lld, %lld) of %s do not fall on its %s block boundaries (%u)",
                          loom_gguf_path(g), (long long)c0, (long long)c1, t->name, tr->name, tr->block_size);
    size_t src_stride = loom_type_row_bytes(t->type, cols);
    size_t off = loom_type_row_bytes(t->type, c0);
    size_t stride = loom_type_row_bytes(t->type, c1 - c0);
    uint8_t *buf = alloc_copy((size_t)rows * stride);
    if (!buf)
        return loom_error(LOOM_ERR_NOMEM, "cannot allocate %zu bytes for a slice of %s", (size_t)rows * stride, t->name);
    LOOM_TRY(own(w, buf));
    for (int64_t r = 0; r < rows; r++) memcpy(buf + r * stride, base + r * src_stride + off, stride);
    if (loom_gguf_is_mapped(g)) release_pages(base, (size_t)rows * src_stride);
    m->type = t->type;
    m->rows = rows;
    m->cols = c1 - c0;
    m->stride = stride;
    m->data = buf;
    w->bytes_copied += (size_t)rows * stride;
    return NULL;
}

/* Columns [c0, c1) of a 2-D weight [cols, rows]. */
static loom_status bind_cols(loom_weights *w, const loom_gguf *g, const char *name, int64_t cols, int64_t rows,
                             int64_t c0, int64_t c1, loom_mat *m) {
    const loom_gguf_tensor *t;
    LOOM_TRY(find(g, name, cols, rows, &t));
    LOOM_TRY(check_matmul(g, t));
    LOOM_TRY(slice_cols(w, g, t, t->data, cols, rows, c0, c1, m));
    return add_source(w, name, true, c0, c1, m);
}

/* Elements [e0, e1) of tensor t (n elements in its first row) as F32: a
 * view for F32 data, else a copy. */
static loom_status bind_vec_of(loom_weights *w, const loom_gguf *g, const loom_gguf_tensor *t, int64_t n, int64_t e0,
                               int64_t e1, const float **out) {
    (void)n;
    if (t->type == LOOM_TYPE_F32) {
        *out = (const float *)t->data + e0;
        w->bytes_mapped += (size_t)(e1 - e0) * 4;
        return NULL;
    }
    if (t->type != LOOM_TYPE_F16 && t->type != LOOM_TYPE_BF16)
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: tensor %s has type %s, expected F32, F16 or BF16",
                          loom_gguf_path(g), t->name, loom_type_name(t->type));
    float *buf = malloc((size_t)(e1 - e0) * sizeof *buf);
    if (!buf) return loom_error(LOOM_ERR_NOMEM, "out of memory converting %s", t->name);
    LOOM_TRY(own(w, buf));
    loom_dequant_row(t->type, (const uint8_t *)t->data + (size_t)e0 * 2, buf, e1 - e0);
    *out = buf;
    w->bytes_copied += (size_t)(e1 - e0) * 4;
    return NULL;
}

/* Elements [e0, e1) of the 1-D tensor `name` of n elements. */
static loom_status bind_vec(loom_weights *w, const loom_gguf *g, const char *name, int64_t n, int64_t e0, int64_t e1,
                            const float **out) {
    const loom_gguf_tensor *t;
    LOOM_TRY(find(g, name, n, 0, &t));
    return bind_vec_of(w, g, t, n, e0, e1, out);
}

/* The 2-D tensor `name` [cols, rows] of any type as rows x cols floats
 * (NULL when absent and optional). */
static loom_status bind_floats(loom_weights *w, const loom_gguf *g, const char *name, int64_t cols, int64_t rows,
                               bool optional, const float **out) {
    *out = NULL;
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, name);
    if (!t && optional) return NULL;
    if (!t || t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s is missing or not [%lld, %lld]", loom_gguf_path(g), name,
                          (long long)cols, (long long)rows);
    float *buf = malloc((size_t)(rows * cols) * sizeof *buf);
    if (!buf) return loom_error(LOOM_ERR_NOMEM, "out of memory converting %s", name);
    LOOM_TRY(own(w, buf));
    const size_t stride = loom_type_row_bytes(t->type, cols);
    for (int64_t r = 0; r < rows; r++) loom_dequant_row(t->type, (const uint8_t *)t->data + (size_t)r * stride, buf + r * cols, cols);
    *out = buf;
    w->bytes_copied += (size_t)(rows * cols) * 4;
    return NULL;
}

static loom_status check_shard(const loom_model_config *c, const loom_shard *s) {
    bool ok = 0 <= s->layer_begin && s->layer_begin <= s->layer_end && s->layer_end <= c->n_layers &&
              0 <= s->q_begin && s->q_begin < s->q_end && s->q_end <= c->n_heads &&
              0 <= s->ffn_begin && s->ffn_begin < s->ffn_end && s->ffn_end <= c->ffn &&
              0 <= s->vocab_begin && s->vocab_begin < s->vocab_end && s->vocab_end <= c->vocab;
    if (ok && s->split_experts)
        ok = c->n_experts && 0 <= s->expert_begin && s->expert_begin < s->expert_end && s->expert_end <= c->n_experts &&
             s->ffn_begin == 0 && s->ffn_end == c->ffn && 0 <= s->shared_begin && s->shared_begin <= s->shared_end &&
             s->shared_end <= c->ffn_shared;
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

/* A norm called `base` (weight, and bias for LayerNorm) over n elements. */
static loom_status bind_norm(loom_weights *w, const loom_gguf *g, const char *base, int64_t n, loom_norm *out) {
    char name[112];
    snprintf(name, sizeof name, "%s.weight", base);
    LOOM_TRY(bind_vec(w, g, name, n, 0, n, &out->w));
    if (w->cfg.norm == LOOM_NORM_LAYER) {
        snprintf(name, sizeof name, "%s.bias", base);
        LOOM_TRY(bind_vec(w, g, name, n, 0, n, &out->b));
    }
    return NULL;
}

/* The embedding side (first stage) and the head side (last stage). */
static loom_status bind_ends(loom_weights *w, const loom_gguf *g) {
    const loom_model_config *c = &w->cfg;
    const loom_shard *s = &w->shard;
    int64_t dim = c->dim;
    if (s->embed) {
        LOOM_TRY(bind_rows(w, g, "token_embd.weight", dim, c->vocab, s->vocab_begin, s->vocab_end, &w->embed));
        if (c->pos == LOOM_POS_LEARNED)
            LOOM_TRY(bind_rows(w, g, "position_embd.weight", dim, c->ctx_train, 0, c->ctx_train, &w->pos_embd));
        if (c->type_embd) {
            const loom_gguf_tensor *t = loom_gguf_find_tensor(g, "token_types.weight");
            if (!t || t->ne[0] != dim || t->ne[1] < 1 || t->ne[2] != 1 || t->ne[3] != 1)
                return loom_error(LOOM_ERR_FORMAT, "%s: tensor token_types.weight is missing or not [%lld, types]",
                                  loom_gguf_path(g), (long long)dim);
            LOOM_TRY(bind_vec_of(w, g, t, dim, 0, dim, &w->type_row)); /* row 0: sentence A */
        }
        if (c->embd_norm) LOOM_TRY(bind_norm(w, g, "token_embd_norm", dim, &w->embd_norm));
    }
    if (s->head && c->out_norm_hidden) LOOM_TRY(bind_norm(w, g, "output_norm", dim, &w->out_norm));
    if (s->head && c->pooling == LOOM_POOL_RANK) { /* a reranker's classification head */
        LOOM_TRY(bind_floats(w, g, "cls.weight", dim, dim, true, &w->cls_w));
        if (w->cls_w) LOOM_TRY(bind_floats(w, g, "cls.bias", dim, 1, true, &w->cls_b));
        LOOM_TRY(bind_floats(w, g, "cls.output.weight", dim, c->n_cls_out, false, &w->cls_out_w));
        LOOM_TRY(bind_floats(w, g, "cls.output.bias", c->n_cls_out, 1, true, &w->cls_out_b));
    }
    if (s->head && !c->encoder) {
        LOOM_TRY(bind_norm(w, g, "output_norm", dim, &w->out_norm));
        if (c->tied_embeddings && s->embed) w->lm_head = w->embed; /* the same rows, viewed once */
        else
            LOOM_TRY(bind_rows(w, g, c->tied_embeddings ? "token_embd.weight" : "output.weight", dim, c->vocab,
                               s->vocab_begin, s->vocab_end, &w->lm_head));
    }
    if (s->layer_end > s->layer_begin) {
        int64_t nr = c->rope_dim / 2;
        if (c->has_rope_factors) LOOM_TRY(bind_vec(w, g, "rope_freqs.weight", nr, 0, nr, &w->rope_factors));
        if (c->has_rope_long_short) {
            LOOM_TRY(bind_vec(w, g, "rope_factors_long.weight", nr, 0, nr, &w->rope_long));
            LOOM_TRY(bind_vec(w, g, "rope_factors_short.weight", nr, 0, nr, &w->rope_short));
        }
    }
    return NULL;
}

/* Columns [f0, f1) of layer l's SiLU-gated MLP of width F whose tensors
 * are ffn_{gate,up,down}<suffix>.weight, into w_gate / w_up / w_down
 * (nothing where f0 == f1). */
static loom_status bind_mlp(loom_weights *w, const loom_gguf *g, int l, const char *suffix, int64_t F, int64_t f0,
                            int64_t f1, loom_layer *L) {
    const int64_t dim = w->cfg.dim;
    char name[96];
    if (f1 <= f0) return NULL;
    if (!w->cfg.ffn_plain) {
        snprintf(name, sizeof name, "blk.%d.ffn_gate%s.weight", l, suffix);
        LOOM_TRY(bind_rows(w, g, name, dim, F, f0, f1, &L->w_gate));
    }
    snprintf(name, sizeof name, "blk.%d.ffn_up%s.weight", l, suffix);
    LOOM_TRY(bind_rows(w, g, name, dim, F, f0, f1, &L->w_up));
    snprintf(name, sizeof name, "blk.%d.ffn_down%s.weight", l, suffix);
    return bind_cols(w, g, name, F, dim, f0, f1, &L->w_down);
}

/* A mixture's router (whole on every rank) and, of every expert, the
 * shard's columns: gate and up rows as views, down's columns as views or
 * copies (ffn_{gate,up}_exps [dim, ffn, n_experts], ffn_down_exps [ffn,
 * dim, n_experts]: expert e's matrix is the e-th of the tensor's). */
static loom_status bind_experts(loom_weights *w, const loom_gguf *g, int l, loom_layer *L) {
    const loom_model_config *c = &w->cfg;
    const loom_shard *s = &w->shard;
    const int64_t dim = c->dim, ffn = c->ffn, n = c->n_experts;
    int e0, e1;
    loom_shard_experts(c, s, &e0, &e1);
    char name[96];
    snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", l);
    LOOM_TRY(bind_rows(w, g, name, dim, n, 0, n, &L->router));
    if (c->router_bias) {
        snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.bias", l);
        LOOM_TRY(bind_vec(w, g, name, n, 0, n, &L->router_b));
    }
    if (c->expert_probs_bias) {
        snprintf(name, sizeof name, "blk.%d.exp_probs_b.bias", l);
        LOOM_TRY(bind_vec(w, g, name, n, 0, n, &L->probs_b));
    }
    if (c->expert_bias) { /* ffn_{gate,up}_exps.bias [ffn, n_experts], ffn_down_exps.bias [dim, n_experts] */
        const float **b = calloc((size_t)(3 * n), sizeof *b);
        if (!b) return loom_error(LOOM_ERR_NOMEM, "out of memory binding the experts of layer %d", l);
        LOOM_TRY(own(w, (void *)b));
        L->xb_gate = b, L->xb_up = b + n, L->xb_down = b + 2 * n;
        static const char *const bstems[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
        for (int j = 0; j < 3; j++) {
            const loom_gguf_tensor *t;
            const int64_t len = j == 2 ? dim : ffn, b0 = j == 2 ? 0 : s->ffn_begin, b1 = j == 2 ? dim : s->ffn_end;
            snprintf(name, sizeof name, "blk.%d.%s.bias", l, bstems[j]);
            LOOM_TRY(find(g, name, len, n, &t));
            for (int64_t e = e0; e < e1; e++) LOOM_TRY(bind_vec_of(w, g, t, len * n, e * len + b0, e * len + b1, &b[j * n + e]));
        }
    }
    loom_mat *m = calloc((size_t)(3 * n), sizeof *m);
    if (!m) return loom_error(LOOM_ERR_NOMEM, "out of memory binding the experts of layer %d", l);
    LOOM_TRY(own(w, m));
    L->x_gate = m, L->x_up = m + n, L->x_down = m + 2 * n;
    static const char *const stems[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    for (int j = c->ffn_plain ? 1 : 0; j < 3; j++) { /* (ffn_plain: no gate) */
        const loom_gguf_tensor *t;
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, stems[j]);
        const bool down = j == 2;
        const int64_t cols = down ? ffn : dim, rows = down ? dim : ffn;
        LOOM_TRY(find3(g, name, cols, rows, n, &t));
        LOOM_TRY(check_matmul(g, t));
        const size_t bytes = (size_t)rows * loom_type_row_bytes(t->type, cols); /* one expert's matrix */
        for (int64_t e = e0; e < e1; e++) { /* the others' stay empty: another rank holds them */
            const uint8_t *base = (const uint8_t *)t->data + (size_t)e * bytes;
            if (down) LOOM_TRY(slice_cols(w, g, t, base, cols, rows, s->ffn_begin, s->ffn_end, &m[2 * n + e]));
            else view_rows(w, t, base, cols, s->ffn_begin, s->ffn_end, &m[j * n + e]);
        }
    }
    if (c->ffn_shared) { /* the shared expert's columns in proportion, and qwen2moe's gate of it (whole) */
        int64_t s0, s1;
        loom_shard_shared(c, s, &s0, &s1);
        if (c->shared_gated) {
            snprintf(name, sizeof name, "blk.%d.ffn_gate_inp_shexp.weight", l);
            LOOM_TRY(bind_vec(w, g, name, dim, 0, dim, &L->shared_gate));
        }
        LOOM_TRY(bind_mlp(w, g, l, "_shexp", c->ffn_shared, s0, s1, L));
    }
    return NULL;
}

/* attn_k_b and attn_v_b of the shard's heads from an older conversion's
 * attn_kv_b (t: [kv_lora, heads·(nope + v)], head h's nope key rows then
 * its v value rows): attn_v_b's rows are the value rows, copied as they
 * are; attn_k_b is the key rows transposed (kv_lora rows of nope), which
 * takes their values: F16 (the file's quantization to 11 bits). */
static loom_status derive_k_v_b(loom_weights *w, const loom_gguf *g, const loom_gguf_tensor *t, loom_layer *L) {
    const loom_model_config *c = &w->cfg;
    const int64_t R = c->kv_lora, V = c->mla_v_dim, nope = c->mla_k_dim - c->rope_dim, nq = w->n_q;
    LOOM_TRY(check_matmul(g, t));
    const size_t rb = loom_type_row_bytes(t->type, R), kb = loom_type_row_bytes(LOOM_TYPE_F16, nope);
    uint8_t *vb = alloc_copy((size_t)(nq * V) * rb), *kbuf = alloc_copy((size_t)(nq * R) * kb);
    float *rows = malloc((size_t)(nope * R) * sizeof *rows);
    if (!vb || !kbuf || !rows) {
        free(vb), free(kbuf), free(rows);
        return loom_error(LOOM_ERR_NOMEM, "out of memory deriving attn_k_b from %s", t->name);
    }
    loom_status st = own(w, vb); /* own() frees what it cannot keep */
    if (!st) st = own(w, kbuf);
    else free(kbuf);
    if (st) {
        free(rows);
        return st;
    }
    for (int64_t i = 0; i < nq; i++) {
        const uint8_t *head = (const uint8_t *)t->data + (size_t)((w->shard.q_begin + i) * (nope + V)) * rb;
        memcpy(vb + (size_t)(i * V) * rb, head + (size_t)nope * rb, (size_t)V * rb);
        for (int64_t j = 0; j < nope; j++) loom_dequant_row(t->type, head + (size_t)j * rb, rows + j * R, R);
        uint16_t *k = (uint16_t *)(kbuf + (size_t)(i * R) * kb);
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < nope; j++) k[r * nope + j] = loom_f32_to_f16(rows[j * R + r]);
    }
    free(rows);
    L->wv_b = (loom_mat){t->type, nq * V, R, rb, vb, false, NULL};
    L->wk_b = (loom_mat){LOOM_TYPE_F16, nq * R, nope, kb, kbuf, false, NULL};
    w->bytes_copied += (size_t)(nq * V) * rb + (size_t)(nq * R) * kb;
    return NULL;
}

/* Multi-head latent attention's weights (model.h): the shard's query heads'
 * rows of attn_q (or attn_q_b, after the whole attn_q_a and its norm),
 * attn_k_b, attn_v_b and attn_output's columns; attn_kv_a_mqa and its
 * norm whole. */
static loom_status bind_mla(loom_weights *w, const loom_gguf *g, int l, loom_layer *L) {
    const loom_model_config *c = &w->cfg;
    const int64_t dim = c->dim, nh = c->n_heads, K = c->mla_k_dim, V = c->mla_v_dim, R = c->kv_lora, Q = c->q_lora;
    const int64_t q0 = w->shard.q_begin, q1 = w->shard.q_end, nope = K - c->rope_dim;
    char name[96];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), name)
    if (Q) {
        LOOM_TRY(bind_rows(w, g, NAME("attn_q_a.weight"), dim, Q, 0, Q, &L->wq_a));
        LOOM_TRY(bind_vec(w, g, NAME("attn_q_a_norm.weight"), Q, 0, Q, &L->q_a_norm));
        LOOM_TRY(bind_rows(w, g, NAME("attn_q_b.weight"), Q, nh * K, q0 * K, q1 * K, &L->wq));
    } else
        LOOM_TRY(bind_rows(w, g, NAME("attn_q.weight"), dim, nh * K, q0 * K, q1 * K, &L->wq));
    LOOM_TRY(bind_rows(w, g, NAME("attn_kv_a_mqa.weight"), dim, c->head_dim, 0, c->head_dim, &L->wk));
    LOOM_TRY(bind_vec(w, g, NAME("attn_kv_a_norm.weight"), R, 0, R, &L->kv_a_norm));
    const loom_gguf_tensor *t; /* [nope, kv_lora, heads] and [kv_lora, v, heads]: a head's rows after the last's */
    if (c->mla_kv_b) {
        LOOM_TRY(find(g, NAME("attn_kv_b.weight"), R, nh * (nope + V), &t));
        LOOM_TRY(derive_k_v_b(w, g, t, L));
        LOOM_TRY(bind_cols(w, g, NAME("attn_output.weight"), nh * V, dim, q0 * V, q1 * V, &L->wo));
        return NULL;
    }
    LOOM_TRY(find3(g, NAME("attn_k_b.weight"), nope, R, nh, &t));
    LOOM_TRY(check_matmul(g, t));
    view_rows(w, t, t->data, nope, q0 * R, q1 * R, &L->wk_b);
    LOOM_TRY(find3(g, NAME("attn_v_b.weight"), R, V, nh, &t));
    LOOM_TRY(check_matmul(g, t));
    view_rows(w, t, t->data, R, q0 * V, q1 * V, &L->wv_b);
    LOOM_TRY(bind_cols(w, g, NAME("attn_output.weight"), nh * V, dim, q0 * V, q1 * V, &L->wo));
#undef NAME
    return NULL;
}

static loom_status bind_layer(loom_weights *w, const loom_gguf *g, int l, loom_layer *L) {
    const loom_model_config *c = &w->cfg;
    const loom_shard *s = &w->shard;
    int64_t hd = c->head_dim, dim = c->dim, ffn = c->ffn;
    int64_t qrows = (int64_t)c->n_heads * hd, kvrows = (int64_t)c->n_kv_heads * hd;
    int64_t q0 = s->q_begin * hd, q1 = s->q_end * hd, k0 = s->kv_begin * hd, k1 = s->kv_end * hd;
    char name[96], base[96];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), name)
#define BASE(stem) (snprintf(base, sizeof base, "blk.%d.%s", l, stem), base)
    if (!c->post_ln) LOOM_TRY(bind_norm(w, g, BASE("attn_norm"), dim, &L->attn_norm));
    if (c->mla) {
        LOOM_TRY(bind_mla(w, g, l, L));
    } else if (c->fused_qkv) { /* Q, K, V are row ranges of one tensor: views, no copy */
        int64_t all = loom_qkv_rows(c);
        LOOM_TRY(bind_rows(w, g, NAME("attn_qkv.weight"), dim, all, q0, q1, &L->wq));
        LOOM_TRY(bind_rows(w, g, NAME("attn_qkv.weight"), dim, all, qrows + k0, qrows + k1, &L->wk));
        LOOM_TRY(bind_rows(w, g, NAME("attn_qkv.weight"), dim, all, qrows + kvrows + k0, qrows + kvrows + k1, &L->wv));
        if (c->qkv_bias) {
            LOOM_TRY(bind_vec(w, g, NAME("attn_qkv.bias"), all, q0, q1, &L->bq));
            LOOM_TRY(bind_vec(w, g, NAME("attn_qkv.bias"), all, qrows + k0, qrows + k1, &L->bk));
            LOOM_TRY(bind_vec(w, g, NAME("attn_qkv.bias"), all, qrows + kvrows + k0, qrows + kvrows + k1, &L->bv));
        }
    } else {
        LOOM_TRY(bind_rows(w, g, NAME("attn_q.weight"), dim, qrows, q0, q1, &L->wq));
        LOOM_TRY(bind_rows(w, g, NAME("attn_k.weight"), dim, kvrows, k0, k1, &L->wk));
        LOOM_TRY(bind_rows(w, g, NAME("attn_v.weight"), dim, kvrows, k0, k1, &L->wv));
        if (c->qkv_bias) {
            LOOM_TRY(bind_vec(w, g, NAME("attn_q.bias"), qrows, q0, q1, &L->bq));
            LOOM_TRY(bind_vec(w, g, NAME("attn_k.bias"), kvrows, k0, k1, &L->bk));
            LOOM_TRY(bind_vec(w, g, NAME("attn_v.bias"), kvrows, k0, k1, &L->bv));
        }
    }
    if (c->qk_norm) {
        LOOM_TRY(bind_vec(w, g, NAME("attn_q_norm.weight"), hd, 0, hd, &L->q_norm));
        LOOM_TRY(bind_vec(w, g, NAME("attn_k_norm.weight"), hd, 0, hd, &L->k_norm));
    }
    if (!c->mla) LOOM_TRY(bind_cols(w, g, NAME("attn_output.weight"), qrows, dim, q0, q1, &L->wo));
    if (c->attn_out_bias) LOOM_TRY(bind_vec(w, g, NAME("attn_output.bias"), dim, 0, dim, &L->bo));
    if (c->attn_sinks) LOOM_TRY(bind_vec(w, g, NAME("attn_sinks.weight"), c->n_heads, s->q_begin, s->q_end, &L->sinks));
    if (c->post_norms) LOOM_TRY(bind_norm(w, g, BASE("post_attention_norm"), dim, &L->attn_post));
    if (c->post_ln) LOOM_TRY(bind_norm(w, g, BASE("attn_output_norm"), dim, &L->attn_res));

    /* gpt-oss's and glm4moe's converters name the MLP's norm post_attention_norm */
    if (!c->post_ln)
        LOOM_TRY(bind_norm(w, g, BASE(c->arch == LOOM_ARCH_GPT_OSS || c->arch == LOOM_ARCH_GLM4MOE ? "post_attention_norm"
                                                                                                   : "ffn_norm"),
                           dim, &L->ffn_norm));
    /* the MLP's columns held here: a mixture's dense layer's are loom_shard_dense's */
    const bool dense = loom_layer_dense(c, l);
    int64_t F = ffn, f0 = s->ffn_begin, f1 = s->ffn_end;
    if (dense) {
        F = c->ffn_dense;
        loom_shard_dense(c, s, &f0, &f1);
        LOOM_TRY(bind_mlp(w, g, l, "", F, f0, f1, L));
    } else if (c->n_experts) {
        LOOM_TRY(bind_experts(w, g, l, L));
    } else if (c->fused_gate_up) {
        LOOM_TRY(bind_rows(w, g, NAME("ffn_up.weight"), dim, 2 * ffn, s->ffn_begin, s->ffn_end, &L->w_gate));
        LOOM_TRY(bind_rows(w, g, NAME("ffn_up.weight"), dim, 2 * ffn, ffn + s->ffn_begin, ffn + s->ffn_end, &L->w_up));
    } else {
        if (!c->ffn_plain)
            LOOM_TRY(bind_rows(w, g, NAME("ffn_gate.weight"), dim, ffn, s->ffn_begin, s->ffn_end, &L->w_gate));
        LOOM_TRY(bind_rows(w, g, NAME("ffn_up.weight"), dim, ffn, s->ffn_begin, s->ffn_end, &L->w_up));
    }
    if (!c->n_experts) LOOM_TRY(bind_cols(w, g, NAME("ffn_down.weight"), ffn, dim, s->ffn_begin, s->ffn_end, &L->w_down));
    /* its biases (a mixture's: only its dense layers', nomic-bert-moe's; as loom_layer_vector_floats counts them) */
    if (c->ffn_bias && (!c->n_experts || (dense && f1 > f0))) {
        LOOM_TRY(bind_vec(w, g, NAME("ffn_up.bias"), F, f0, f1, &L->b_up));
        LOOM_TRY(bind_vec(w, g, NAME("ffn_down.bias"), dim, 0, dim, &L->b_down));
    }
    if (c->post_norms) LOOM_TRY(bind_norm(w, g, BASE("post_ffw_norm"), dim, &L->ffn_post));
    if (c->post_ln) LOOM_TRY(bind_norm(w, g, BASE("layer_output_norm"), dim, &L->ffn_res));
#undef NAME
#undef BASE
    return NULL;
}

/* m's data becomes buf (bytes, owned from now on): it replaces the compact
 * copy m held (bind_cols), or m's view of the file, whose pages are then
 * dropped unless keep_view (another binding still reads them). The
 * caller sets m's layout fields. */
static loom_status replace_data(loom_weights *w, const loom_gguf *g, loom_mat *m, uint8_t *buf, size_t bytes,
                                bool keep_view) {
    const size_t old = (size_t)m->rows * m->stride;
    int i = 0;
    while (i < w->n_owned && w->owned[i] != m->data) i++;
    if (i < w->n_owned) {
        free(w->owned[i]);
        w->owned[i] = buf;
        w->bytes_copied -= old;
    } else {
        LOOM_TRY(own(w, buf));
        if (!keep_view) {
            if (loom_gguf_is_mapped(g)) release_pages(m->data, old);
            w->bytes_mapped -= old;
        }
    }
    w->bytes_copied += bytes;
    m->data = buf;
    return NULL;
}

/* An IQ4_XS matrix as the kernels compute it: an IQ4_NL copy
 * (loom_iq4_xs_to_nl), replacing a compact copy it was or the view (which
 * stays where keep_view: a tied embedding reads it). */
static loom_status hold_iq4_xs(loom_weights *w, const loom_gguf *g, loom_mat *m, bool keep_view) {
    if (!m->data || m->type != LOOM_TYPE_IQ4_XS) return NULL;
    const size_t nl = loom_type_row_bytes(LOOM_TYPE_IQ4_NL, m->cols);
    uint8_t *buf = alloc_copy((size_t)m->rows * nl);
    if (!buf) return loom_error(LOOM_ERR_NOMEM, "out of memory holding a %lld x %lld IQ4_XS matrix as IQ4_NL",
                                (long long)m->rows, (long long)m->cols);
    for (int64_t r = 0; r < m->rows; r++)
        for (int64_t b = 0; b < m->cols / 256; b++)
            loom_iq4_xs_to_nl((const uint8_t *)m->data + (size_t)r * m->stride + (size_t)b * 136,
                              buf + (size_t)r * nl + (size_t)b * 144);
    LOOM_TRY(replace_data(w, g, m, buf, (size_t)m->rows * nl, keep_view));
    m->type = LOOM_TYPE_IQ4_NL;
    m->stride = nl;
    return NULL;
}

static loom_status bind_all(loom_weights *w, const loom_gguf *g) {
    LOOM_TRY(bind_ends(w, g));
    for (int l = w->shard.layer_begin; l < w->shard.layer_end; l++)
        LOOM_TRY(bind_layer(w, g, l, &w->layers[l - w->shard.layer_begin]));
    const int nl = w->shard.layer_end - w->shard.layer_begin;
    loom_mat **ms = malloc((size_t)loom_layer_max_mats(&w->cfg) * sizeof *ms);
    if (!ms) return loom_error(LOOM_ERR_NOMEM, "out of memory binding weights");
    loom_status st = NULL;
    for (int l = 0; l < nl && !st; l++) {
        const int n = loom_layer_mats(&w->cfg, &w->layers[l], ms);
        for (int i = 0; i < n && !st; i++) st = hold_iq4_xs(w, g, ms[i], false);
    }
    free(ms);
    /* a head tied to the embedding on this rank: a copy of its own, the embedding keeps the view */
    if (!st) st = hold_iq4_xs(w, g, &w->lm_head, w->lm_head.data == w->embed.data);
    return st;
}

int loom_layer_max_mats(const loom_model_config *c) { return 11 + 3 * c->n_experts; }

int loom_layer_mats(const loom_model_config *c, loom_layer *L, loom_mat **out) {
    loom_mat *const fixed[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down, &L->router,
                               &L->wq_a, &L->wk_b, &L->wv_b};
    int n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (fixed[i]->data) out[n++] = fixed[i];
    for (int e = 0; L->x_up && e < c->n_experts; e++) {
        if (!L->x_up[e].data) continue; /* held by another rank */
        if (L->x_gate[e].data) out[n++] = &L->x_gate[e]; /* (none: ffn_plain) */
        out[n++] = &L->x_up[e];
        out[n++] = &L->x_down[e];
    }
    return n;
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
    free(w->sources);
    free(w->layers);
    free(w->q_to_kv);
    free(w);
}

/* --------------------------------------------------------------- repacking */

typedef struct {
    const loom_mat *m;
    uint8_t *dst;
} repack_job;

/* rows [r0, r1) of the matmul split (forward.c) by the thread that will read them */
static void repack_worker(void *ctx, int ith, int nth) {
    const repack_job *j = ctx;
    int64_t r0, r1;
    loom_split_range(j->m->rows, LOOM_MATMUL_ROW_ALIGN, ith, nth, &r0, &r1);
    if (r0 < r1)
        loom_repack_r8(j->m->type, (const uint8_t *)j->m->data + (size_t)r0 * j->m->stride, j->m->stride, r1 - r0,
                       j->m->cols, j->dst + (size_t)r0 * loom_r8_row_bytes(j->m->type, j->m->cols));
}

static loom_status repack(loom_weights *w, const loom_gguf *g, loom_pool *pool, loom_mat *m) {
    if (!m->data || m->r8 || !loom_matmul_prefers_r8(m->type)) return NULL;
    const size_t bytes = loom_r8_bytes(m->type, m->rows, m->cols);
    uint8_t *buf = bytes ? alloc_copy(bytes) : NULL;
    if (!buf) return loom_error(LOOM_ERR_NOMEM, "cannot allocate %zu bytes for an interleaved copy of a %lld x %lld %s matrix",
                                bytes, (long long)m->rows, (long long)m->cols, loom_type_name(m->type));
    repack_job job = {m, buf};
    if (pool) loom_pool_run(pool, repack_worker, &job);
    else repack_worker(&job, 0, 1);
    LOOM_TRY(replace_data(w, g, m, buf, bytes, false));
    m->stride = loom_r8_row_bytes(m->type, m->cols);
    m->r8 = true;
    return NULL;
}

loom_status loom_weights_repack(loom_weights *w, const loom_gguf *g, loom_pool *pool) {
    const int nl = w->shard.layer_end - w->shard.layer_begin;
    loom_mat **ms = malloc((size_t)loom_layer_max_mats(&w->cfg) * sizeof *ms);
    if (!ms) return loom_error(LOOM_ERR_NOMEM, "out of memory repacking weights");
    for (int l = 0; l < nl; l++) {
        const int n = loom_layer_mats(&w->cfg, &w->layers[l], ms);
        for (int i = 0; i < n; i++) {
            loom_status st = repack(w, g, pool, ms[i]);
            if (st) {
                free(ms);
                return st;
            }
        }
    }
    free(ms);
    /* A head tied to the embedding table is repacked as any head (on every
     * rank that holds it, so a last stage computes what one rank does); where
     * the rank also holds the table, the embedding reads its rows from the
     * same copy (loom_r8_dequant_row: the rows' floats), and the file's bytes
     * are released once. */
    const bool shared = w->shard.embed && w->embed.data == w->lm_head.data;
    LOOM_TRY(repack(w, g, pool, &w->lm_head));
    if (shared) w->embed = w->lm_head;
    return NULL;
}
