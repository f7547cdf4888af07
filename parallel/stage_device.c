/* parallel/stage_device.c — a stage on a device (contract in
 * stage_device.h). The layer loop is parallel/stage.c's. */
#include "parallel/stage_device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/comm_nccl.h"
#include "parallel/comm_staged.h"
#include "runtime/clock.h"
#include "runtime/device_forward.h"

#define MAX_GRAPHS 32

typedef struct {
    loom_dforward_shape key;
    void *graph;
} graph_entry;

struct loom_dstage {
    const loom_weights *w;
    loom_kv_cache *tables;
    loom_device *dev;
    loom_dforward *f;
    loom_comm *tp;        /* on device buffers; NULL with one TP rank */
    float *h_hidden;      /* (max_rows, dim) host copy for the next stage */
    double comm_s;
    bool graphs;
    graph_entry g[MAX_GRAPHS];
    int n_graphs;
    long replays, captures;
    char desc[160];
};

static loom_status make_tp(loom_dstage *s, loom_comm *tp) {
    if (!tp || tp->size == 1) return NULL;
    const char *mode = getenv("LOOM_COMM");
    const bool force_nccl = mode && !strcmp(mode, "nccl"), force_staged = mode && !strcmp(mode, "staged");
    const loom_nccl_api *api = NULL;
    loom_status own = NULL;
    int32_t have = 0;
    if (s->dev->kind == LOOM_DEVICE_CUDA && !force_staged) {
        own = loom_nccl_load(&api);
        have = own == NULL;
    }
    LOOM_TRY(loom_comm_all_reduce(tp, &have, 1, LOOM_DT_I32, LOOM_RED_MIN)); /* every rank can, or nobody uses NCCL */
    char what[48];
    snprintf(what, sizeof what, "TP group of layers %d-%d", s->w->shard.layer_begin, s->w->shard.layer_end - 1);
    if (force_nccl && !have) {
        if (own) return loom_error_wrap(own, "LOOM_COMM=nccl");
        return loom_error(LOOM_ERR_PEER, "LOOM_COMM=nccl, but another rank of the %s cannot load NCCL", what);
    }
    loom_status_free(own);
    if (have) return loom_comm_nccl_create(tp, s->dev, api, what, &s->tp);
    return loom_comm_staged_create(tp, s->dev, what, &s->tp);
}

void loom_dstage_free(loom_dstage *s) {
    if (!s) return;
    for (int i = 0; i < s->n_graphs; i++) s->dev->vt->graph_free(s->dev, s->g[i].graph);
    loom_comm_free(s->tp);
    loom_dforward_free(s->f);
    loom_device_free(s->dev);
    free(s->h_hidden);
    free(s);
}

loom_status loom_dstage_create(const loom_weights *w, loom_kv_cache *tables, loom_device_kind kind, int ordinal,
                               int n_threads, loom_comm *tp, int max_rows, loom_dstage **out) {
    *out = NULL;
    loom_dstage *s = calloc(1, sizeof *s);
    if (!s) return loom_error(LOOM_ERR_NOMEM, "out of memory creating a device stage");
    s->w = w, s->tables = tables;
    loom_status st = kind == LOOM_DEVICE_CUDA ? loom_device_create_cuda(ordinal, &s->dev)
                     : kind == LOOM_DEVICE_HOST ? loom_device_create_host(n_threads, &s->dev)
                                                : loom_error(LOOM_ERR_INVALID, "device stage on device kind %d", (int)kind);
    if (!st) st = loom_dforward_create(s->dev, w, loom_kv_config_of(tables), max_rows, &s->f);
    if (!st) {
        s->h_hidden = malloc(sizeof(float) * (size_t)max_rows * w->cfg.dim);
        if (!s->h_hidden) st = loom_error(LOOM_ERR_NOMEM, "out of memory for the hidden states of %d rows", max_rows);
    }
    /* every TP rank learns whether any failed before NCCL's collective init */
    if (tp && tp->size > 1) {
        int32_t bad = st != NULL;
        loom_status a = loom_comm_all_reduce(tp, &bad, 1, LOOM_DT_I32, LOOM_RED_MAX);
        if (!st && a) st = a;
        else loom_status_free(a);
        if (!st && bad) st = loom_error(LOOM_ERR_PEER, "another rank of the TP group could not set up its device");
    }
    if (!st) st = make_tp(s, tp);
    if (st) {
        loom_dstage_free(s);
        return st;
    }
    const char *g = getenv("LOOM_CUDA_GRAPHS");
    s->graphs = s->dev->vt->graph_begin && !(g && !strcmp(g, "0")) && (!s->tp || loom_comm_is_nccl(s->tp));
    snprintf(s->desc, sizeof s->desc, "%s %s%s%s, graphs %s", s->dev->vt->name, s->dev->what,
             s->tp ? ", TP over " : "", s->tp ? s->tp->vt->name : "", s->graphs ? "on" : "off");
    *out = s;
    return NULL;
}

static loom_status reduce(loom_dstage *s, float *buf, size_t count) {
    if (!s->tp) return NULL;
    const double t0 = loom_now_s();
    loom_status st = loom_comm_all_reduce(s->tp, buf, count, LOOM_DT_F32, LOOM_RED_SUM);
    s->comm_s += loom_now_s() - t0;
    return st;
}

/* the device work of a prepared step (what a graph captures) */
static loom_status pieces(loom_dstage *s, int *n_logits) {
    const loom_weights *w = s->w;
    loom_dforward *f = s->f;
    const loom_dforward_shape sh = loom_dforward_shape_of(f);
    const size_t nd = (size_t)sh.n * w->cfg.dim;
    float *x = loom_dforward_hidden(f), *part = loom_dforward_scratch(f);
    loom_dforward_embed(f);
    if (!sh.embd && w->n_vocab < w->cfg.vocab) LOOM_TRY(reduce(s, x, nd));
    for (int l = w->shard.layer_begin; l < w->shard.layer_end; l++) {
        if (s->tp) {
            loom_dforward_attention(f, l, part, 0);
            LOOM_TRY(reduce(s, part, nd));
            loom_dforward_add(f, part);
            loom_dforward_mlp(f, l, part, 0);
            LOOM_TRY(reduce(s, part, nd));
            loom_dforward_add(f, part);
        } else { /* nothing to all-reduce: the residual add is fused */
            loom_dforward_attention(f, l, x, 1);
            loom_dforward_mlp(f, l, x, 1);
        }
    }
    *n_logits = w->shard.head ? loom_dforward_logits(f) : 0;
    return NULL;
}

static bool same_shape(loom_dforward_shape a, loom_dforward_shape b) {
    return a.n == b.n && a.n_units == b.n_units && a.n_out == b.n_out && a.embd == b.embd;
}

static loom_status run_graph(loom_dstage *s, int *n_logits) {
    loom_device *d = s->dev;
    const loom_dforward_shape sh = loom_dforward_shape_of(s->f);
    for (int i = 0; i < s->n_graphs; i++)
        if (same_shape(s->g[i].key, sh)) {
            *n_logits = s->w->shard.head ? sh.n_out : 0;
            s->replays++;
            return d->vt->graph_launch(d, s->g[i].graph);
        }
    if (s->n_graphs == MAX_GRAPHS) return pieces(s, n_logits); /* shapes beyond the cache run without */
    LOOM_TRY(d->vt->graph_begin(d));
    loom_status st = pieces(s, n_logits);
    void *g = NULL;
    loom_status end = d->vt->graph_end(d, &g);
    if (st || end) {
        if (g) d->vt->graph_free(d, g);
        if (st) {
            loom_status_free(end);
            return st;
        }
        return end;
    }
    s->g[s->n_graphs++] = (graph_entry){sh, g};
    s->captures++;
    return d->vt->graph_launch(d, g);
}

loom_status loom_dstage_forward(loom_dstage *s, const loom_batch *b, float **hidden, float *logits, int *n_logits) {
    *n_logits = 0;
    LOOM_TRY(loom_dforward_prepare(s->f, b, s->tables));
    if (s->graphs && b->n <= LOOM_GRAPH_MAX_ROWS) LOOM_TRY(run_graph(s, n_logits));
    else LOOM_TRY(pieces(s, n_logits));
    if (*n_logits) LOOM_TRY(loom_dforward_fetch_logits(s->f, logits));
    if (!s->w->shard.head) LOOM_TRY(loom_dforward_fetch_hidden(s->f, s->h_hidden));
    LOOM_TRY(loom_device_sync(s->dev));
    *hidden = s->h_hidden;
    return NULL;
}

double loom_dstage_comm_seconds(const loom_dstage *s) { return s->comm_s; }
const char *loom_dstage_describe(const loom_dstage *s) { return s->desc; }

void loom_dstage_graph_counts(const loom_dstage *s, long *replays, long *captures) {
    *replays = s->replays, *captures = s->captures;
}
