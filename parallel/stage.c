#include "parallel/stage.h"
#include "parallel/stage_device.h"
#include "runtime/clock.h"

#include <stdlib.h>
#include <time.h>

struct loom_stage {
    const loom_weights *w;
    loom_forward *f;
    loom_comm *tp;
    double comm_s;
    loom_dstage *dev; /* on a device: everything is there (stage_device.c) */
};


loom_status loom_stage_create(const loom_weights *w, loom_kv_cache *kv, loom_pool *pool, loom_comm *tp,
                              int max_rows, loom_stage **out) {
    *out = NULL;
    loom_stage *s = calloc(1, sizeof *s);
    if (!s) return loom_error(LOOM_ERR_NOMEM, "out of memory creating a stage");
    loom_status st = loom_forward_create(w, kv, pool, max_rows, &s->f);
    if (st) {
        free(s);
        return st;
    }
    s->w = w;
    s->tp = tp;
    *out = s;
    return NULL;
}

loom_status loom_stage_create_device(const loom_weights *w, loom_kv_cache *kv, loom_device_kind kind, int ordinal,
                                     int n_threads, loom_comm *tp, int max_rows, loom_stage **out) {
    *out = NULL;
    loom_stage *s = calloc(1, sizeof *s);
    if (!s) return loom_error(LOOM_ERR_NOMEM, "out of memory creating a stage");
    loom_status st = loom_dstage_create(w, kv, kind, ordinal, n_threads, tp, max_rows, &s->dev);
    if (st) {
        free(s);
        return st;
    }
    s->w = w;
    *out = s;
    return NULL;
}

void loom_stage_free(loom_stage *s) {
    if (!s) return;
    loom_dstage_free(s->dev);
    loom_forward_free(s->f);
    free(s);
}

const char *loom_stage_describe(const loom_stage *s) { return s->dev ? loom_dstage_describe(s->dev) : "cpu"; }

bool loom_stage_takes_lora(const loom_stage *s) { return !s->dev; }

loom_status loom_stage_set_lora(loom_stage *s, int slot, const float *scale, int n) {
    if (s->dev) return loom_error(LOOM_ERR_UNSUPPORTED, "LoRA adapters run on the CPU only (--device cpu)");
    return loom_forward_set_lora(s->f, slot, scale, n);
}

double loom_stage_comm_seconds(const loom_stage *s) { return s->dev ? loom_dstage_comm_seconds(s->dev) : s->comm_s; }

static loom_status reduce(loom_stage *s, float *buf, size_t count) {
    if (!s->tp || s->tp->size == 1) return NULL;
    double t0 = loom_now_s();
    loom_status st = loom_comm_all_reduce(s->tp, buf, count, LOOM_DT_F32, LOOM_RED_SUM);
    s->comm_s += loom_now_s() - t0;
    return st;
}

loom_status loom_stage_forward(loom_stage *s, const loom_batch *b, float **hidden, float *logits, int *n_logits) {
    if (s->dev) return loom_dstage_forward(s->dev, b, hidden, logits, n_logits);
    const loom_weights *w = s->w;
    size_t nd = (size_t)b->n * w->cfg.dim;
    *n_logits = 0;
    LOOM_TRY(loom_forward_prepare(s->f, b));
    LOOM_TRY(loom_forward_embed(s->f, b));
    if (!b->embd && w->n_vocab < w->cfg.vocab) LOOM_TRY(reduce(s, loom_forward_hidden(s->f), nd));
    loom_forward_embed_finish(s->f, b);
    float *partial = loom_forward_scratch(s->f);
    for (int l = w->shard.layer_begin; l < w->shard.layer_end; l++) {
        LOOM_TRY(loom_forward_attention(s->f, l, b, partial));
        LOOM_TRY(reduce(s, partial, nd));
        loom_forward_residual(s->f, l, LOOM_BLOCK_ATTN, b->n, partial);
        loom_forward_mlp(s->f, l, b->n, partial);
        LOOM_TRY(reduce(s, partial, nd));
        loom_forward_residual(s->f, l, LOOM_BLOCK_MLP, b->n, partial);
    }
    if (w->shard.head) *n_logits = loom_forward_logits(s->f, b, logits);
    *hidden = loom_forward_hidden(s->f);
    return NULL;
}
