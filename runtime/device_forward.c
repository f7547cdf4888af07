/* runtime/device_forward.c — the forward pieces on a device (contract in
 * device_forward.h). The order of operations is runtime/forward.c's. */
#include "runtime/device_forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/attn_plan.h"
#include "runtime/kernels.h"
#include "runtime/ops.h"

#define MAX_UPLOADS 64 /* distinct weight buffers are few per layer; the table grows */

typedef struct {
    loom_type type;
    int64_t rows, cols;
    size_t stride;
    uint8_t *data; /* device */
} dmat;

/* Matrices that read the same input rows and are stored one after another
 * in one device buffer: a single matmul over all their rows writes their
 * outputs side by side, which for one row is each output where it belongs
 * (q | k | v, gate | up). */
typedef struct {
    dmat m;    /* the rows of `parts` matrices, m.data NULL when none are fused */
    int parts; /* how many of the group's leading matrices m covers */
} dfused;

typedef struct {
    float *attn_norm, *ffn_norm; /* (dim) */
    float *bq, *bk, *bv;         /* or NULL */
    dmat wq, wk, wv, wo, w_gate, w_up, w_down;
    dfused qkv, gate_up;         /* one launch for decode of one row */
} dlayer;

typedef struct {
    const void *host;
    size_t bytes;
    void *dev;
} upload;

struct loom_dforward {
    loom_device *d;
    const loom_weights *w;
    loom_kv_config kc;
    int max_rows, qdim, kvdim;
    bool fuse;       /* LOOM_DEVICE_FUSE (default 1): fused groups of matrices for one-row steps */
    int n_fused;     /* layers' groups that fused two or more matrices */
    size_t bytes_weights, bytes_kv, bytes_work;
    /* weights */
    upload *ups;
    int n_ups, cap_ups;
    dlayer *layers;
    dmat embed, lm_head;
    float *out_norm;
    /* KV pool: (n_layers, n_blocks, block_bytes) each */
    uint8_t *kpool, *vpool;
    size_t block_bytes;
    int seg_blocks, max_segs;
    /* workspace (device) */
    float *x, *xn, *q, *k, *v, *att, *gate, *up, *scratch, *rows_tmp; /* (R, width) */
    uint8_t *act[3];   /* quantized activations, one per format */
    size_t act_bytes;
    float *logits;     /* (R, n_vocab) */
    float *part;       /* attention partials */
    int part_units;
    /* per step, device copies of the host staging below */
    float *d_cs;
    int32_t *d_tok, *d_slot, *d_lrows, *d_tables;
    loom_attn_dunit *d_units;
    /* host staging (pinned: every step upload is a true async copy; the
     * plan's slots, units and tables are copied here from its pageable
     * arrays, whose cudaMemcpyAsync would stage them through the driver) */
    float *h_cs;
    int32_t *h_tok, *h_lrows, *h_slot, *h_tables;
    loom_attn_dunit *h_units;
    loom_attn_plan *plan;
    /* the prepared step */
    int n, n_units, n_out, embd;
};

/* ------------------------------------------------------------ creation */

/* A device buffer for weights, recorded under the host range it copies
 * (NULL: a fused group's, never shared). */
static loom_status weight_buffer(loom_dforward *f, const void *host, size_t bytes, const char *what, void **dev) {
    if (f->n_ups == f->cap_ups) {
        int cap = f->cap_ups ? 2 * f->cap_ups : MAX_UPLOADS;
        upload *u = realloc(f->ups, sizeof *u * (size_t)cap);
        if (!u) return loom_error(LOOM_ERR_NOMEM, "out of memory uploading weights");
        f->ups = u, f->cap_ups = cap;
    }
    LOOM_TRY(loom_device_alloc(f->d, bytes, what, dev));
    f->ups[f->n_ups++] = (upload){host, bytes, *dev};
    f->bytes_weights += bytes;
    return NULL;
}

static loom_status put(loom_dforward *f, const void *host, size_t bytes, const char *what, void **dev) {
    for (int i = 0; i < f->n_ups; i++)
        if (f->ups[i].host == host && f->ups[i].bytes == bytes) {
            *dev = f->ups[i].dev;
            return NULL;
        }
    LOOM_TRY(weight_buffer(f, host, bytes, what, dev));
    return loom_device_upload(f->d, *dev, host, bytes);
}

static loom_status put_mat(loom_dforward *f, const loom_mat *m, const char *what, dmat *out) {
    *out = (dmat){m->type, m->rows, m->cols, m->stride, NULL};
    if (!m->data) return NULL;
    if (m->r8) /* loom_weights_repack is for ranks that compute on the CPU */
        return loom_error(LOOM_ERR_INVALID, "%s: %s is in the CPU kernels' 8-row layout, which the %s device does not read",
                          f->d->what, what, f->d->vt->name);
    if (!f->d->vt->matmul[m->type])
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: the %s device has no matmul for %s weights (%s)", f->d->what,
                          f->d->vt->name, loom_type_name(m->type), what);
    void *p;
    LOOM_TRY(put(f, m->data, (size_t)m->rows * m->stride, what, &p));
    out->data = p;
    return NULL;
}

/* Uploads m[0..nm) of one group (same input rows): the leading run of
 * matrices of one type and row length into one buffer (fz, when two or
 * more), the rest apart; out[j] is each matrix's own view either way. */
static loom_status put_group(loom_dforward *f, const char *group, int nm, const loom_mat *const *m,
                             const char *const *what, dmat *out, dfused *fz) {
    int run = 0;
    if (f->fuse)
        while (run < nm && m[run]->data && !m[run]->r8 && m[run]->type == m[0]->type && m[run]->cols == m[0]->cols &&
               m[run]->stride == m[0]->stride && f->d->vt->matmul[m[run]->type])
            run++;
    *fz = (dfused){{m[0]->type, 0, m[0]->cols, m[0]->stride, NULL}, 0};
    if (run < 2) run = 0;
    size_t bytes = 0;
    for (int j = 0; j < run; j++) bytes += (size_t)m[j]->rows * m[j]->stride;
    if (run) {
        void *p;
        LOOM_TRY(weight_buffer(f, NULL, bytes, group, &p));
        uint8_t *at = p;
        for (int j = 0; j < run; j++) {
            const size_t b = (size_t)m[j]->rows * m[j]->stride;
            LOOM_TRY(loom_device_upload(f->d, at, m[j]->data, b));
            out[j] = (dmat){m[j]->type, m[j]->rows, m[j]->cols, m[j]->stride, at};
            fz->m.rows += m[j]->rows;
            at += b;
        }
        fz->m.data = p, fz->parts = run;
        f->n_fused++;
    }
    for (int j = run; j < nm; j++) LOOM_TRY(put_mat(f, m[j], what[j], &out[j]));
    return NULL;
}

static loom_status put_vec(loom_dforward *f, const float *v, size_t n, const char *what, float **out) {
    *out = NULL;
    if (!v) return NULL;
    void *p;
    LOOM_TRY(put(f, v, n * sizeof(float), what, &p));
    *out = p;
    return NULL;
}

static loom_status upload_weights(loom_dforward *f) {
    const loom_weights *w = f->w;
    const loom_model_config *c = &w->cfg;
    const int nl = w->shard.layer_end - w->shard.layer_begin;
    f->layers = calloc((size_t)(nl ? nl : 1), sizeof *f->layers);
    if (!f->layers) return loom_error(LOOM_ERR_NOMEM, "out of memory for the device layers");
    if (w->shard.embed) LOOM_TRY(put_mat(f, &w->embed, "token embedding", &f->embed));
    if (w->shard.head) {
        LOOM_TRY(put_mat(f, &w->lm_head, "lm head", &f->lm_head));
        LOOM_TRY(put_vec(f, w->out_norm.w, (size_t)c->dim, "output norm", &f->out_norm));
    }
    for (int l = 0; l < nl; l++) {
        const loom_layer *L = &w->layers[l];
        dlayer *D = &f->layers[l];
        LOOM_TRY(put_vec(f, L->attn_norm.w, (size_t)c->dim, "attention norm", &D->attn_norm));
        LOOM_TRY(put_vec(f, L->ffn_norm.w, (size_t)c->dim, "MLP norm", &D->ffn_norm));
        LOOM_TRY(put_vec(f, L->bq, (size_t)f->qdim, "query bias", &D->bq));
        LOOM_TRY(put_vec(f, L->bk, (size_t)f->kvdim, "key bias", &D->bk));
        LOOM_TRY(put_vec(f, L->bv, (size_t)f->kvdim, "value bias", &D->bv));
        dmat qkv[3], gu[2];
        LOOM_TRY(put_group(f, "attn_q/k/v", 3, (const loom_mat *const[]){&L->wq, &L->wk, &L->wv},
                           (const char *const[]){"attn_q", "attn_k", "attn_v"}, qkv, &D->qkv));
        D->wq = qkv[0], D->wk = qkv[1], D->wv = qkv[2];
        LOOM_TRY(put_mat(f, &L->wo, "attn_output", &D->wo));
        LOOM_TRY(put_group(f, "ffn_gate/up", 2, (const loom_mat *const[]){&L->w_gate, &L->w_up},
                           (const char *const[]){"ffn_gate", "ffn_up"}, gu, &D->gate_up));
        D->w_gate = gu[0], D->w_up = gu[1];
        LOOM_TRY(put_mat(f, &L->w_down, "ffn_down", &D->w_down));
    }
    return NULL;
}

static size_t act_need(const loom_mat *m, int rows) {
    return m->data ? (size_t)rows * loom_act_row_bytes(m->type, m->cols) : 0;
}

/* the largest activation buffer any matmul of these weights needs */
static size_t act_bytes_of(const loom_weights *w, int rows) {
    size_t ab = act_need(&w->lm_head, rows);
    for (int l = 0; l < w->shard.layer_end - w->shard.layer_begin; l++) {
        const loom_layer *L = &w->layers[l];
        const loom_mat *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
            if (act_need(ms[i], rows) > ab) ab = act_need(ms[i], rows);
    }
    return ab;
}

/* workspace layout: sizes in bytes of each buffer, for create and plans */
typedef struct {
    size_t x, q, kv, ffn, act, logits, cs, rows_i32, units, tables, part;
    size_t qbuf, gbuf; /* q and gate: also q | k | v and gate | up of one row (fused groups) */
    int part_units, max_units, max_tables;
} work_sizes;

static work_sizes work_of(const loom_weights *w, const loom_kv_config *kc, int R, int max_units, int max_tables) {
    const loom_model_config *c = &w->cfg;
    work_sizes s;
    const size_t hd = (size_t)c->head_dim;
    s.x = (size_t)R * c->dim * sizeof(float);
    s.q = (size_t)R * w->n_q * hd * sizeof(float);
    s.kv = (size_t)R * w->n_kv * hd * sizeof(float);
    s.ffn = (size_t)R * (size_t)w->n_ffn * sizeof(float);
    const size_t qkv1 = (size_t)(w->n_q + 2 * w->n_kv) * hd * sizeof(float), gu1 = 2 * (size_t)w->n_ffn * sizeof(float);
    s.qbuf = s.q > qkv1 ? s.q : qkv1;
    s.gbuf = s.ffn > gu1 ? s.ffn : gu1;
    s.act = act_bytes_of(w, R);
    s.logits = w->shard.head ? (size_t)R * (size_t)w->n_vocab * sizeof(float) : 0;
    s.cs = (size_t)R * c->rope_dim * sizeof(float);
    s.rows_i32 = (size_t)R * sizeof(int32_t);
    s.max_units = max_units, s.max_tables = max_tables;
    s.units = (size_t)max_units * sizeof(loom_attn_dunit);
    s.tables = (size_t)max_tables * sizeof(int32_t);
    /* segments run apart only for few units (decode): a few per row */
    s.part_units = R * (w->n_kv + 1) < max_units ? R * (w->n_kv + 1) : max_units;
    if (s.part_units > 1024) s.part_units = 1024;
    const int max_segs = loom_attn_n_segs(kc->max_ctx, kc->block_tokens, loom_attn_seg_blocks(kc->block_tokens, kc->max_ctx));
    s.part = max_segs > 1 ? (size_t)s.part_units * max_segs * LOOM_ATTN_PART_FLOATS(hd) * sizeof(float) : 0;
    if (!s.part) s.part_units = 0;
    return s;
}

static size_t work_total(const work_sizes *s) {
    return 4 * s->x /* x, xn, scratch, rows_tmp */ + s->qbuf + s->q + 2 * s->kv + s->gbuf + s->ffn + 3 * s->act + s->logits +
           s->cs + 3 * s->rows_i32 + s->units + s->tables + s->part;
}

bool loom_dforward_supports(const loom_model_config *c) {
    /* no mixtures of experts, YaRN, layers without RoPE (smollm3), granite's scales or embedding models yet */
    return (loom_plain_llama(c) || c->arch == LOOM_ARCH_QWEN2) && !c->n_experts && !c->rope_yarn && !c->encoder;
}

bool loom_dforward_auto_ok(const loom_model_config *c) {
    return loom_dforward_supports(c) && !(c->weight_types & ~LOOM_CUDA_MATMUL_TYPES);
}

loom_device_kind loom_dforward_resolve(loom_device_kind k, const loom_model_config *c) {
    if (k == LOOM_DEVICE_AUTO && !loom_dforward_auto_ok(c)) return LOOM_DEVICE_CPU;
    return loom_device_resolve(k);
}

size_t loom_dforward_plan_bytes(const loom_weights *w, const loom_kv_config *kc, int max_rows) {
    const int units = max_rows * (w->n_kv + (w->n_q + LOOM_ATTN_UNIT_NQ - 1) / LOOM_ATTN_UNIT_NQ);
    const int seqs = max_rows < kc->max_seqs ? max_rows : kc->max_seqs;
    work_sizes s = work_of(w, kc, max_rows, units, seqs * ((kc->max_ctx + kc->block_tokens - 1) / kc->block_tokens));
    return work_total(&s) + loom_kv_bytes(kc);
}

static loom_status alloc_work(loom_dforward *f) {
    loom_device *d = f->d;
    const int R = f->max_rows;
    work_sizes s = work_of(f->w, &f->kc, R, loom_attn_plan_max_units(f->plan), loom_attn_plan_max_tables(f->plan));
    f->bytes_work = work_total(&s);
    f->act_bytes = s.act;
    f->part_units = s.part_units;
    void *p;
#define A(field, bytes, what)                                  \
    do {                                                       \
        LOOM_TRY(loom_device_alloc(d, (bytes), what, &p));     \
        f->field = p;                                          \
    } while (0)
    A(x, s.x, "residual stream");
    A(xn, s.x, "normed rows");
    A(scratch, s.x, "partial output");
    A(rows_tmp, s.x, "gathered rows");
    A(q, s.qbuf, "queries");
    A(att, s.q, "attention output");
    A(k, s.kv, "keys");
    A(v, s.kv, "values");
    A(gate, s.gbuf, "MLP gate");
    A(up, s.ffn, "MLP up");
    for (int j = 0; j < 3; j++) A(act[j], s.act, "quantized activations");
    if (s.logits) A(logits, s.logits, "logits");
    A(d_cs, s.cs, "rotary angles");
    A(d_tok, s.rows_i32, "token ids");
    A(d_slot, s.rows_i32, "KV slots");
    A(d_lrows, s.rows_i32, "logit rows");
    A(d_units, s.units, "attention units");
    A(d_tables, s.tables, "block tables");
    if (s.part) A(part, s.part, "attention partials");
#undef A
    LOOM_TRY(d->vt->host_alloc(d, s.cs, &p));
    f->h_cs = p;
    LOOM_TRY(d->vt->host_alloc(d, s.rows_i32, &p));
    f->h_tok = p;
    LOOM_TRY(d->vt->host_alloc(d, s.rows_i32, &p));
    f->h_lrows = p;
    LOOM_TRY(d->vt->host_alloc(d, s.rows_i32, &p));
    f->h_slot = p;
    LOOM_TRY(d->vt->host_alloc(d, s.units, &p));
    f->h_units = p;
    LOOM_TRY(d->vt->host_alloc(d, s.tables, &p));
    f->h_tables = p;
    return NULL;
}

loom_status loom_dforward_create(loom_device *d, const loom_weights *w, const loom_kv_config *kc, int max_rows,
                                 loom_dforward **out) {
    *out = NULL;
    const loom_model_config *c = &w->cfg;
    const int nl = w->shard.layer_end - w->shard.layer_begin;
    if (max_rows < 1) return loom_error(LOOM_ERR_INVALID, "batch size %d must be positive", max_rows);
    if (!loom_dforward_supports(c))
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: the device forward pass runs dense llama and qwen2 models without "
                          "YaRN, not %s%s; run it with --device cpu", d->what, c->arch_name,
                          c->n_experts ? " with experts" : c->rope_yarn ? " with YaRN" : "");
    if (kc->n_layers != nl || kc->n_kv_heads != w->n_kv || kc->head_dim != c->head_dim)
        return loom_error(LOOM_ERR_INVALID, "KV cache (%d layers, %d KV heads, head %d) does not match the weights "
                          "(%d layers, %d KV heads, head %d)", kc->n_layers, kc->n_kv_heads, kc->head_dim, nl,
                          w->n_kv, c->head_dim);
    if (kc->type != LOOM_TYPE_F16 && kc->type != LOOM_TYPE_F32)
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: a %s KV cache is the CPU's only (f16 or f32 here; or --device cpu)",
                          d->what, loom_type_name(kc->type));
    if (kc->v_is_k) /* latent attention's; the models above never ask for it */
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: a KV cache without value blocks (v_is_k) is the CPU's only", d->what);
    if (c->head_dim > d->vt->attn_max_head_dim || (d->kind == LOOM_DEVICE_CUDA && c->head_dim % 4))
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: attention heads of %d are not supported (at most %d%s)", d->what,
                          c->head_dim, d->vt->attn_max_head_dim, d->kind == LOOM_DEVICE_CUDA ? ", a multiple of 4" : "");
    if (c->rope_dim > c->head_dim || c->rope_dim % 2)
        return loom_error(LOOM_ERR_UNSUPPORTED, "rotary dimension %d (head %d)", c->rope_dim, c->head_dim);
    loom_dforward *f = calloc(1, sizeof *f);
    if (!f) return loom_error(LOOM_ERR_NOMEM, "out of memory creating the device forward pass");
    f->d = d, f->w = w, f->kc = *kc, f->max_rows = max_rows;
    const char *fz = getenv("LOOM_DEVICE_FUSE");
    f->fuse = !(fz && !strcmp(fz, "0"));
    f->qdim = w->n_q * c->head_dim, f->kvdim = w->n_kv * c->head_dim;
    f->block_bytes = loom_kv_block_bytes(kc);
    f->seg_blocks = loom_attn_seg_blocks(kc->block_tokens, kc->max_ctx);
    f->max_segs = loom_attn_n_segs(kc->max_ctx, kc->block_tokens, f->seg_blocks);
    loom_status st = loom_attn_plan_create(max_rows, w->n_q, w->n_kv, c->head_dim, w->q_to_kv, kc, &f->plan);
    if (!st) st = upload_weights(f);
    if (!st) {
        const size_t pool = (size_t)(nl ? nl : 1) * (size_t)kc->n_blocks * f->block_bytes;
        void *p = NULL;
        st = loom_device_alloc(d, pool, "KV cache keys", &p);
        f->kpool = p;
        if (!st) st = loom_device_alloc(d, pool, "KV cache values", &p);
        if (!st) f->vpool = p, f->bytes_kv = 2 * pool;
    }
    if (!st) st = alloc_work(f);
    if (!st) st = loom_device_sync(d);
    if (st) {
        loom_dforward_free(f);
        return st;
    }
    *out = f;
    return NULL;
}

void loom_dforward_free(loom_dforward *f) {
    if (!f) return;
    loom_device *d = f->d;
    (void)d->vt->sync(d, NULL);
    for (int i = 0; i < f->n_ups; i++) d->vt->free(d, f->ups[i].dev);
    free(f->ups);
    free(f->layers);
    void *bufs[] = {f->kpool, f->vpool, f->x, f->xn, f->q, f->k, f->v, f->att, f->gate, f->up, f->scratch,
                    f->rows_tmp, f->act[0], f->act[1], f->act[2], f->logits, f->part, f->d_cs, f->d_tok,
                    f->d_slot, f->d_lrows, f->d_tables, f->d_units};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) d->vt->free(d, bufs[i]);
    if (f->h_cs) d->vt->host_free(d, f->h_cs);
    if (f->h_tok) d->vt->host_free(d, f->h_tok);
    if (f->h_lrows) d->vt->host_free(d, f->h_lrows);
    if (f->h_slot) d->vt->host_free(d, f->h_slot);
    if (f->h_units) d->vt->host_free(d, f->h_units);
    if (f->h_tables) d->vt->host_free(d, f->h_tables);
    loom_attn_plan_free(f->plan);
    free(f);
}

void loom_dforward_bytes(const loom_dforward *f, size_t *weights, size_t *kv, size_t *workspace) {
    *weights = f->bytes_weights, *kv = f->bytes_kv, *workspace = f->bytes_work;
}

int loom_dforward_fused_groups(const loom_dforward *f) { return f->n_fused; }
float *loom_dforward_hidden(loom_dforward *f) { return f->x; }
float *loom_dforward_scratch(loom_dforward *f) { return f->scratch; }
loom_device *loom_dforward_device(loom_dforward *f) { return f->d; }

loom_dforward_shape loom_dforward_shape_of(const loom_dforward *f) {
    return (loom_dforward_shape){f->n, f->n_units, f->n_out, f->embd};
}

/* ------------------------------------------------------------ step */

loom_status loom_dforward_prepare(loom_dforward *f, const loom_batch *b, const loom_kv_cache *tables) {
    const loom_weights *w = f->w;
    const loom_model_config *c = &w->cfg;
    loom_device *d = f->d;
    f->n = 0, f->n_units = 0, f->n_out = 0;
    if (b->n < 1 || b->n > f->max_rows)
        return loom_error(LOOM_ERR_INVALID, "batch of %d rows (the workspace holds 1..%d)", b->n, f->max_rows);
    if (!b->embd) {
        if (!w->shard.embed) return loom_error(LOOM_ERR_INVALID, "this rank holds no token embedding");
        for (int i = 0; i < b->n; i++) {
            if (b->token[i] < 0 || b->token[i] >= c->vocab)
                return loom_error(LOOM_ERR_INVALID, "batch row %d: token id %d is outside the vocabulary (0..%d)", i,
                                  b->token[i], c->vocab - 1);
            f->h_tok[i] = b->token[i];
        }
    }
    LOOM_TRY(loom_attn_plan_build(f->plan, tables, b->n, b->pos, b->seq));
    for (int i = 0; i < b->n; i++)
        loom_rope_angles(f->h_cs + (size_t)i * c->rope_dim, b->pos[i], c->rope_dim, c->rope_base, c->rope_freq_scale,
                         w->rope_factors);
    int n_out = 0;
    if (w->shard.head)
        for (int i = 0; i < b->n; i++)
            if (b->logits[i]) f->h_lrows[n_out++] = i;
    int n_units, n_tables;
    const loom_attn_dunit *units = loom_attn_plan_units(f->plan, &n_units);
    const int32_t *tab = loom_attn_plan_tables(f->plan, &n_tables);
    LOOM_TRY(loom_device_upload(d, f->d_cs, f->h_cs, (size_t)b->n * c->rope_dim * sizeof(float)));
    if (!b->embd) LOOM_TRY(loom_device_upload(d, f->d_tok, f->h_tok, (size_t)b->n * sizeof(int32_t)));
    else LOOM_TRY(loom_device_upload(d, f->x, b->embd, (size_t)b->n * c->dim * sizeof(float)));
    const size_t slot_bytes = (size_t)b->n * sizeof(int32_t), unit_bytes = (size_t)n_units * sizeof *units,
                 tab_bytes = (size_t)n_tables * sizeof *tab;
    if (slot_bytes) memcpy(f->h_slot, loom_attn_plan_slots(f->plan), slot_bytes);
    if (unit_bytes) memcpy(f->h_units, units, unit_bytes);
    if (tab_bytes) memcpy(f->h_tables, tab, tab_bytes);
    LOOM_TRY(loom_device_upload(d, f->d_slot, f->h_slot, slot_bytes));
    LOOM_TRY(loom_device_upload(d, f->d_units, f->h_units, unit_bytes));
    LOOM_TRY(loom_device_upload(d, f->d_tables, f->h_tables, tab_bytes));
    LOOM_TRY(loom_device_upload(d, f->d_lrows, f->h_lrows, (size_t)n_out * sizeof(int32_t)));
    f->n = b->n, f->n_units = n_units, f->n_out = n_out, f->embd = b->embd != NULL;
    return NULL;
}

void loom_dforward_embed(loom_dforward *f) {
    if (f->embd) return;
    const loom_weights *w = f->w;
    f->d->vt->embed(f->d, f->embed.type, f->embed.data, f->embed.stride, w->shard.vocab_begin, w->n_vocab, f->d_tok,
                    f->n, w->cfg.dim, f->x);
}

/* activation formats: 0 float rows (read as they are), 1 "q8 32-block", 2 Q8_K */
static int act_kind(loom_type t) {
    switch (t) {
    case LOOM_TYPE_F32:
    case LOOM_TYPE_F16:
    case LOOM_TYPE_BF16: return 0;
    case LOOM_TYPE_Q4_K:
    case LOOM_TYPE_Q5_K:
    case LOOM_TYPE_Q6_K: return 2;
    default: return 1;
    }
}

/* The prepared input rows `rows` (n, k) of up to three matrices, in the
 * format each reads: the rows themselves for float weights (their
 * "activation row" is a plain copy), else quantized once per format into
 * act[]. `fused` is the format the caller's norm/SwiGLU already wrote into
 * act[0] (-1: none). xq[j] is NULL when the device reads floats at this n. */
static void quantize_for(loom_dforward *f, const float *rows, int n, int fused, int nm, const dmat *const *m,
                         const uint8_t **xq) {
    const bool q = n <= f->d->vt->quant_rows;
    int slot_kind[3] = {fused, -1, -1}, used = fused >= 0 ? 1 : 0;
    for (int j = 0; j < nm; j++) {
        const int kind = act_kind(m[j]->type);
        xq[j] = NULL;
        if (!q) continue;
        if (kind == 0) {
            xq[j] = (const uint8_t *)rows;
            continue;
        }
        int s = 0;
        while (s < used && slot_kind[s] != kind) s++;
        if (s == used) {
            f->d->vt->quantize(f->d, m[j]->type, rows, n, (int)m[j]->cols, f->act[s]);
            slot_kind[used++] = kind;
        }
        xq[j] = f->act[s];
    }
}

/* the format a fused norm/SwiGLU should write for these matrices, and its weight type */
static int fused_kind(const loom_dforward *f, int n, const dmat *m, loom_type *wt) {
    if (n > f->d->vt->quant_rows || act_kind(m->type) == 0) return -1;
    *wt = m->type;
    return act_kind(m->type);
}

static void mm(loom_dforward *f, const dmat *m, const float *x, const uint8_t *xq, int n, float *y, int64_t ldy,
               int accumulate) {
    if (!m->data) return;
    f->d->vt->matmul[m->type](f->d, m->data, m->stride, m->cols, m->rows, x, xq, loom_act_row_bytes(m->type, m->cols),
                              n, y, ldy, accumulate);
}

/* norm of x into xn, fused with the first format the matrices need */
static void norm_for(loom_dforward *f, const float *x, const float *norm, float *dst, int n, int nm,
                     const dmat *const *m, const uint8_t **xq) {
    const loom_model_config *c = &f->w->cfg;
    loom_type wt = LOOM_TYPE_F32;
    int fk = -1;
    for (int j = 0; j < nm && fk < 0; j++) fk = fused_kind(f, n, m[j], &wt);
    f->d->vt->rmsnorm(f->d, x, norm, c->norm_eps, n, c->dim, dst, wt, fk >= 0 ? f->act[0] : NULL);
    quantize_for(f, dst, n, fk, nm, m, xq);
}

void loom_dforward_attention(loom_dforward *f, int layer, float *out, int accumulate) {
    const loom_weights *w = f->w;
    const loom_model_config *c = &w->cfg;
    loom_device *d = f->d;
    const int ll = layer - w->shard.layer_begin, n = f->n, hd = c->head_dim;
    const dlayer *L = &f->layers[ll];
    const dmat *m[3] = {&L->wq, &L->wk, &L->wv};
    const uint8_t *xq[3];
    norm_for(f, f->x, L->attn_norm, f->xn, n, 3, m, xq);
    float *q = f->q, *k = f->k, *v = f->v;
    int first = 0; /* the first matrix still to multiply */
    if (n == 1 && L->qkv.parts) { /* one row: q | k | v side by side in the q buffer, the fused ones in one launch */
        k = q + L->wq.rows, v = k + L->wk.rows;
        mm(f, &L->qkv.m, f->xn, xq[0], 1, q, L->qkv.m.rows, 0);
        first = L->qkv.parts;
    }
    float *const y[3] = {q, k, v};
    for (int j = first; j < 3; j++) mm(f, m[j], f->xn, xq[j], n, y[j], m[j]->rows, 0);
    const size_t layer_off = (size_t)ll * (size_t)f->kc.n_blocks * f->block_bytes;
    const loom_dev_rope_args ra = {.n = n, .n_q = w->n_q, .n_kv = w->n_kv, .head_dim = hd, .rope_dim = c->rope_dim,
                                   .neox = c->rope_neox, .q = q, .k = k, .v = v, .bq = L->bq, .bk = L->bk,
                                   .bv = L->bv, .cs = f->d_cs, .slot = f->d_slot, .kc = f->kpool + layer_off,
                                   .vc = f->vpool + layer_off, .block_bytes = f->block_bytes,
                                   .block_tokens = f->kc.block_tokens, .f16 = f->kc.type == LOOM_TYPE_F16};
    d->vt->rope_store(d, &ra);
    const loom_dev_attn_args aa = {.kc = f->kpool + layer_off, .vc = f->vpool + layer_off,
                                   .block_bytes = f->block_bytes, .block_tokens = f->kc.block_tokens, .head_dim = hd,
                                   .f16 = f->kc.type == LOOM_TYPE_F16, .q = q, .out = f->att,
                                   .units = f->d_units, .n_units = f->n_units, .tables = f->d_tables,
                                   .seg_blocks = f->seg_blocks, .max_segs = f->max_segs,
                                   .qscale = (float)(1.4426950408889634 / sqrt((double)hd)), .part = f->part,
                                   .part_units = f->part_units};
    d->vt->attention(d, &aa);
    const dmat *mo[1] = {&L->wo};
    const uint8_t *xo[1];
    quantize_for(f, f->att, n, -1, 1, mo, xo);
    mm(f, &L->wo, f->att, xo[0], n, out, c->dim, accumulate);
}

void loom_dforward_mlp(loom_dforward *f, int layer, float *out, int accumulate) {
    const loom_weights *w = f->w;
    const loom_model_config *c = &w->cfg;
    loom_device *d = f->d;
    const int ll = layer - w->shard.layer_begin, n = f->n;
    const dlayer *L = &f->layers[ll];
    const dmat *m[2] = {&L->w_gate, &L->w_up};
    const uint8_t *xq[2];
    norm_for(f, f->x, L->ffn_norm, f->xn, n, 2, m, xq);
    float *up = f->up;
    if (n == 1 && L->gate_up.parts) { /* one row: gate | up side by side in the gate buffer, one launch */
        up = f->gate + L->w_gate.rows;
        mm(f, &L->gate_up.m, f->xn, xq[0], 1, f->gate, L->gate_up.m.rows, 0);
    } else {
        mm(f, &L->w_gate, f->xn, xq[0], n, f->gate, L->w_gate.rows, 0);
        mm(f, &L->w_up, f->xn, xq[1], n, up, L->w_up.rows, 0);
    }
    loom_type wt = LOOM_TYPE_F32;
    const int fk = fused_kind(f, n, &L->w_down, &wt);
    d->vt->swiglu(d, f->gate, up, n, (int)w->n_ffn, wt, fk >= 0 ? f->act[0] : NULL);
    const dmat *md[1] = {&L->w_down};
    const uint8_t *xd[1];
    quantize_for(f, f->gate, n, fk, 1, md, xd);
    mm(f, &L->w_down, f->gate, xd[0], n, out, c->dim, accumulate);
}

void loom_dforward_add(loom_dforward *f, const float *partial) {
    f->d->vt->add(f->d, f->x, partial, (size_t)f->n * f->w->cfg.dim);
}

int loom_dforward_logits(loom_dforward *f) {
    if (!f->n_out) return 0;
    const loom_weights *w = f->w;
    const int dim = w->cfg.dim;
    f->d->vt->gather(f->d, f->x, f->d_lrows, f->n_out, dim, f->rows_tmp);
    const dmat *m[1] = {&f->lm_head};
    const uint8_t *xq[1];
    norm_for(f, f->rows_tmp, f->out_norm, f->rows_tmp, f->n_out, 1, m, xq);
    mm(f, &f->lm_head, f->rows_tmp, xq[0], f->n_out, f->logits, w->n_vocab, 0);
    return f->n_out;
}

loom_status loom_dforward_fetch_logits(loom_dforward *f, float *logits) {
    return loom_device_download(f->d, logits, f->logits, (size_t)f->n_out * (size_t)f->w->n_vocab * sizeof(float));
}

loom_status loom_dforward_fetch_hidden(loom_dforward *f, float *hidden) {
    return loom_device_download(f->d, hidden, f->x, (size_t)f->n * f->w->cfg.dim * sizeof(float));
}
