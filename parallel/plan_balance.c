/*
 * parallel/plan_balance.c — the stage balance's decode time per weight byte
 * of each type, measured here (plan_balance.h).
 */
#include "parallel/plan_balance.h"

#include <stdlib.h>
#include <string.h>

#include "parallel/plan_internal.h"
#include "runtime/clock.h"
#include "runtime/forward.h"
#include "runtime/kernels.h"
#include "runtime/kv_cache.h"
#include "runtime/threadpool.h"

#define BUF_BYTES ((size_t)128 << 20)
#define PASSES 5

/* bytes of each type in the model's matrices, and an input width for each */
static void tally(const loom_plan_model *m, double bytes[LOOM_TYPE_COUNT], int64_t width[LOOM_TYPE_COUNT]) {
    const loom_model_config *c = &m->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        loom_plan_mat mats[LOOM_PLAN_LAYER_MATS];
        const loom_shard all = loom_shard_full(c);
        loom_plan_layer_mats(m, l, &all, mats);
        for (int i = 0; i < LOOM_PLAN_LAYER_MATS; i++) {
            const loom_plan_mat *x = &mats[i];
            if (!x->rows || (unsigned)x->type >= LOOM_TYPE_COUNT) continue;
            bytes[x->type] += (double)x->rows * (double)loom_type_row_bytes(x->type, x->k) *
                              (x->experts ? c->n_experts_used : 1);
            if (!width[x->type]) width[x->type] = x->k;
        }
    }
    if (!c->encoder && (unsigned)m->head < LOOM_TYPE_COUNT) {
        bytes[m->head] += (double)c->vocab * (double)loom_type_row_bytes(m->head, c->dim);
        if (!width[m->head]) width[m->head] = c->dim;
    }
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n) (n odd; v sorted in place). */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* The rows of the pipeline's decode micro-batch: ceil(sequences / pp), 1..16. */
static int micro_rows(const loom_plan_request *r) {
    const int pp = r->pp > 1 ? r->pp : 1, micro = (r->engine.max_seqs + pp - 1) / pp;
    return micro < 1 ? 1 : micro > 16 ? 16 : micro;
}

/* seconds per byte of one decode matmul of type t over buf */
static double seconds_per_byte(loom_type t, int64_t k, int tokens, uint8_t *buf, uint8_t *xq, float *y) {
    const bool r8 = loom_matmul_prefers_r8(t); /* the layout the weights will be in (loom_weights_repack) */
    const size_t ws = r8 ? loom_r8_row_bytes(t, k) : loom_type_row_bytes(t, k), xs = loom_act_row_bytes(t, k);
    const int64_t rows = (int64_t)(BUF_BYTES / ws) / 8 * 8;
    /* 0x11 bytes: small normal F16/BF16/F32 scales and weights (no
     * subnormal arithmetic, which would time something else) */
    memset(buf, 0x11, (size_t)rows * ws);
    double dt[PASSES + 1];
    for (int rep = 0; rep <= PASSES; rep++) { /* rep 0: warm-up */
        const double t0 = loom_now_s();
        for (int64_t r = 0; r < rows; r += 4096) {
            const int64_t r1 = r + 4096 < rows ? r + 4096 : rows;
            (r8 ? loom_matmul_r8 : loom_matmul)(t, buf, ws, k, r, r1, xq, xs, tokens, y, 4096);
        }
        dt[rep] = loom_now_s() - t0;
    }
    /* the median pass (a DRAM-bound pass that met little traffic is as
     * much an outlier as one that met a lot) */
    return median(dt + 1, PASSES) / (double)((size_t)rows * ws);
}

loom_status loom_plan_balance_measure(const loom_plan_model *m, const loom_plan_request *r,
                                      loom_plan_balance *out) {
    memset(out, 0, sizeof *out);
    const int tokens = micro_rows(r);
    double bytes[LOOM_TYPE_COUNT] = {0}, spb[LOOM_TYPE_COUNT] = {0};
    int64_t width[LOOM_TYPE_COUNT] = {0}, kmax = 0;
    tally(m, bytes, width);
    int main_type = -1;
    for (int t = 0; t < LOOM_TYPE_COUNT; t++) {
        if (!(bytes[t] > 0) || !loom_type_can_matmul((loom_type)t)) continue;
        if (main_type < 0 || bytes[t] > bytes[main_type]) main_type = t;
        if (width[t] > kmax) kmax = width[t];
    }
    if (main_type < 0) return NULL; /* nothing to weigh: bytes it is */
    uint8_t *buf = malloc(BUF_BYTES);
    float *x = malloc((size_t)kmax * sizeof *x), *y = malloc((size_t)tokens * 4096 * sizeof *y);
    uint8_t *xq = malloc((size_t)tokens * loom_act_row_bytes(LOOM_TYPE_F32, kmax));
    loom_status st = NULL;
    if (!buf || !x || !y || !xq) st = loom_error(LOOM_ERR_NOMEM, "out of memory measuring the stage balance");
    for (int t = 0; t < LOOM_TYPE_COUNT && !st; t++) {
        if (!(bytes[t] > 0) || !loom_type_can_matmul((loom_type)t)) continue;
        const int64_t k = width[t];
        for (int64_t i = 0; i < k; i++) x[i] = (float)((i * 37) % 17 - 8) / 8.0f;
        const size_t xs = loom_act_row_bytes((loom_type)t, k);
        for (int n = 0; n < tokens; n++) loom_act_quantize((loom_type)t, x, xq + (size_t)n * xs, k);
        spb[t] = seconds_per_byte((loom_type)t, k, tokens, buf, xq, y);
    }
    if (!st) {
        int n = snprintf(out->what, sizeof out->what, "stages by decode time per byte (%d-row matmuls here):", tokens);
        for (int t = 0; t < LOOM_TYPE_COUNT; t++) {
            if (!(spb[t] > 0)) continue;
            const double f = 16.0 * spb[t] / spb[main_type];
            out->per_byte[t] = (uint8_t)(f < 1 ? 1 : f > 255 ? 255 : f + 0.5);
            if (n < (int)sizeof out->what)
                n += snprintf(out->what + n, sizeof out->what - (size_t)n, " %s %.2f", loom_type_name((loom_type)t),
                              out->per_byte[t] / 16.0);
        }
    }
    free(buf);
    free(x);
    free(y);
    free(xq);
    if (st) memset(out, 0, sizeof *out);
    return st;
}

loom_status loom_plan_balance_by_bytes(bool *by_bytes) {
    const char *e = getenv("LOOM_BALANCE");
    *by_bytes = e && !strcmp(e, "bytes");
    if (e && *e && strcmp(e, "bytes") && strcmp(e, "time"))
        return loom_error(LOOM_ERR_INVALID, "LOOM_BALANCE=%s: expected bytes or time", e);
    return NULL;
}

/* ---------------------------------------------------------- the lm head */

#define PROBE_CTX 64          /* positions of context each probe sequence decodes after */
#define PROBE_STEPS 9         /* timed decode steps (the median), after one warm-up */
#define PROBE_MAX_BYTES ((size_t)1 << 30)

/* One decode step of the probe: the rows through the layer, then the
 * head; the seconds of each into *layer_s, *head_s (not the step's
 * preparation, which a stage does once for all its layers). */
static loom_status probe_step(loom_forward *f, int layer, const loom_batch *b, float *logits, double *layer_s,
                              double *head_s) {
    LOOM_TRY(loom_forward_prepare(f, b));
    LOOM_TRY(loom_forward_embed(f, b));
    loom_forward_embed_finish(f, b);
    const double t0 = loom_now_s();
    float *partial = loom_forward_scratch(f);
    LOOM_TRY(loom_forward_attention(f, layer, b, partial));
    loom_forward_residual(f, layer, LOOM_BLOCK_ATTN, b->n, partial);
    loom_forward_mlp(f, layer, b->n, partial);
    loom_forward_residual(f, layer, LOOM_BLOCK_MLP, b->n, partial);
    const double t1 = loom_now_s();
    (void)loom_forward_logits(f, b, logits);
    *layer_s = t1 - t0, *head_s = loom_now_s() - t1;
    return NULL;
}

loom_status loom_plan_balance_probe_head(const loom_gguf *g, const loom_plan_model *m, const loom_plan_request *r,
                                         loom_plan_balance *bal) {
    const loom_model_config *c = &m->cfg;
    const int rows = micro_rows(r), L = c->n_layers - 1;
    if (c->encoder || L < 0) return NULL;
    loom_shard s = loom_shard_full(c);
    s.layer_begin = L; /* the last stage's last layer and the head, as the model holds them */
    const int64_t probe_bytes = loom_plan_full_layer_bytes(m, L) + loom_plan_head_bytes(m);
    if (probe_bytes > (int64_t)PROBE_MAX_BYTES) return NULL; /* (the byte figures alone) */
    loom_weights *w = NULL;
    loom_kv_cache *kv = NULL;
    loom_pool *pool = NULL;
    loom_forward *f = NULL;
    const int n_max = rows > PROBE_CTX ? rows : PROBE_CTX;
    float *hidden = malloc((size_t)n_max * (size_t)c->dim * sizeof *hidden);
    float *logits = malloc((size_t)rows * (size_t)c->vocab * sizeof *logits);
    int32_t *pos = malloc((size_t)n_max * sizeof *pos), *seq = malloc((size_t)n_max * sizeof *seq);
    int8_t *want = malloc((size_t)n_max);
    loom_status st = hidden && logits && pos && seq && want ? NULL : loom_error(LOOM_ERR_NOMEM, "out of memory");
    if (!st) st = loom_weights_create(g, c, &s, &w);
    if (!st) st = loom_weights_repack(w, g, NULL);
    if (!st) {
        loom_kv_config kc = {.n_layers = 1, .n_kv_heads = w->n_kv, .head_dim = c->head_dim, .type = r->engine.kv_type,
                             .block_tokens = 16, .max_seqs = rows, .max_ctx = PROBE_CTX + PROBE_STEPS + 1,
                             .v_is_k = c->mla};
        kc.n_blocks = loom_kv_blocks_for(rows, kc.max_ctx, kc.block_tokens);
        st = loom_kv_create(&kc, &kv);
    }
    if (!st) st = loom_pool_create(1, &pool); /* one thread, as the byte figures */
    if (!st) st = loom_forward_create(w, kv, pool, n_max, &f);
    for (int i = 0; !st && i < n_max * c->dim; i++) hidden[i] = (float)((i * 37) % 17 - 8) / 8.0f;
    /* each sequence's context through the layer, then decode steps of one row a sequence */
    for (int q = 0; q < rows && !st; q++) {
        for (int i = 0; i < PROBE_CTX; i++) pos[i] = i, seq[i] = q, want[i] = 0;
        st = loom_kv_reserve(kv, q, PROBE_CTX + PROBE_STEPS + 1);
        const loom_batch b = {PROBE_CTX, NULL, hidden, pos, seq, want};
        double ls, hs;
        if (!st) st = probe_step(f, L, &b, logits, &ls, &hs);
    }
    double lt[PROBE_STEPS], ht[PROBE_STEPS];
    for (int k = -1; k < PROBE_STEPS && !st; k++) { /* k -1: warm-up */
        for (int q = 0; q < rows; q++) pos[q] = PROBE_CTX + k + 1, seq[q] = q, want[q] = 1;
        const loom_batch b = {rows, NULL, hidden, pos, seq, want};
        double ls, hs;
        st = probe_step(f, L, &b, logits, &ls, &hs);
        if (!st && k >= 0) lt[k] = ls, ht[k] = hs;
    }
    if (!st) {
        const double ratio = median(ht, PROBE_STEPS) / median(lt, PROBE_STEPS);
        bal->head_time = (int64_t)(ratio * (double)loom_plan_layer_time(m, bal, L)) + 1;
        const size_t n = strlen(bal->what);
        if (n < sizeof bal->what)
            snprintf(bal->what + n, sizeof bal->what - n, "; lm head %.1f x layer %d (timed)", ratio, L);
    }
    loom_forward_free(f);
    loom_pool_free(pool);
    loom_kv_free(kv);
    loom_weights_free(w);
    free(hidden), free(logits), free(pos), free(seq), free(want);
    return st ? loom_error_wrap(st, "timing the lm head against a layer for the stage balance") : NULL;
}
