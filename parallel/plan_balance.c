/*
 * parallel/plan_balance.c — the stage balance's decode time per weight byte
 * of each type, measured here (plan_balance.h).
 */
#include "parallel/plan_balance.h"

#include <stdlib.h>
#include <string.h>

#include "parallel/plan_internal.h"
#include "runtime/clock.h"
#include "runtime/kernels.h"

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
    for (int i = 1; i <= PASSES; i++)
        for (int j = i + 1; j <= PASSES; j++)
            if (dt[j] < dt[i]) {
                const double x = dt[i];
                dt[i] = dt[j], dt[j] = x;
            }
    return dt[1 + PASSES / 2] / (double)((size_t)rows * ws);
}

loom_status loom_plan_balance_measure(const loom_plan_model *m, const loom_plan_request *r,
                                      loom_plan_balance *out) {
    memset(out, 0, sizeof *out);
    const int pp = r->pp > 1 ? r->pp : 1, micro = (r->engine.max_seqs + pp - 1) / pp;
    const int tokens = micro < 1 ? 1 : micro > 16 ? 16 : micro;
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
