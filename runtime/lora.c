/* runtime/lora.c — LoRA adapters on a rank's weights (contract in lora.h). */
#include "runtime/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/kernels.h"
#include "runtime/quant.h"

struct loom_lora {
    loom_gguf *g;
    char *task_name, *prompt_prefix; /* adapter.lora.task_name / prompt_prefix ("" when absent) */
    double alpha;
    int rank, n_tensors;
    size_t bytes;
    loom_lora_mat *mats; /* (n_mats) this rank's slices */
    int n_mats;
};

/* The block projections an adapter may change (lora.h). */
static const char *const lora_targets[] = {"attn_q",   "attn_k", "attn_v", "attn_qkv", "attn_output",
                                           "ffn_gate", "ffn_up", "ffn_down"};

static bool str_is(loom_str s, const char *c) { return s.len == strlen(c) && !memcmp(s.ptr, c, s.len); }

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Whether base (a tensor name without .lora_a/.lora_b) is "blk.N.<target>.weight". */
static bool is_target(const char *base) {
    int layer, used = 0;
    char proj[32];
    if (sscanf(base, "blk.%d.%31[a-z_].weight%n", &layer, proj, &used) != 2 || used != (int)strlen(base) || layer < 0)
        return false;
    for (size_t i = 0; i < sizeof lora_targets / sizeof lora_targets[0]; i++)
        if (!strcmp(proj, lora_targets[i])) return true;
    return false;
}

/* A string key's value for a message: quoted, or "absent". */
static const char *kv_text(const loom_gguf *g, const char *key, char *buf, size_t n) {
    loom_str v;
    if (!loom_gguf_get_str(g, key, &v)) return "absent";
    snprintf(buf, n, "\"%.*s\"", v.len > 40 ? 40 : (int)v.len, v.ptr);
    return buf;
}

static loom_status check_header(const loom_gguf *a, const loom_gguf *g) {
    const char *path = loom_gguf_path(a);
    char b1[48], b2[48];
    loom_str type, arch, march;
    if (!loom_gguf_get_str(a, "general.type", &type) || !str_is(type, "adapter"))
        return loom_error(LOOM_ERR_FORMAT, "%s is not a LoRA adapter (general.type is %s, expected \"adapter\")", path,
                          kv_text(a, "general.type", b1, sizeof b1));
    if (!loom_gguf_get_str(a, "adapter.type", &type) || !str_is(type, "lora"))
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: adapter.type is %s; loom reads LoRA adapters (\"lora\")", path,
                          kv_text(a, "adapter.type", b1, sizeof b1));
    if (loom_gguf_get(a, "adapter.alora.invocation_tokens"))
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s is an activated LoRA (adapter.alora.invocation_tokens: applied from "
                          "an invocation sequence on), which loom does not apply", path);
    if (!loom_gguf_get_str(a, "general.architecture", &arch) || !loom_gguf_get_str(g, "general.architecture", &march) ||
        arch.len != march.len || memcmp(arch.ptr, march.ptr, arch.len))
        return loom_error(LOOM_ERR_FORMAT, "%s is an adapter for architecture %s, the model's is %s", path,
                          kv_text(a, "general.architecture", b1, sizeof b1),
                          kv_text(g, "general.architecture", b2, sizeof b2));
    return NULL;
}

/* Checks the pair (a, b) for the base tensor `base` of the model g; *r its rank. */
static loom_status check_pair(const loom_gguf *ag, const loom_gguf *g, const char *base, const loom_gguf_tensor *a,
                              const loom_gguf_tensor *b, int *r) {
    const char *path = loom_gguf_path(ag);
    if (!is_target(base))
        return loom_error(LOOM_ERR_UNSUPPORTED,
                          "%s: tensor %s.lora_a adapts %s; loom applies adapters to the blocks' attention and MLP "
                          "projections (attn_q, attn_k, attn_v, attn_qkv, attn_output, ffn_gate, ffn_up, ffn_down)",
                          path, base, base);
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, base);
    if (!t)
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s.lora_a adapts %s, which the model %s does not have (an "
                          "adapter for another model?)", path, base, base, loom_gguf_path(g));
    if (!b) return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s.lora_a has no %s.lora_b", path, base, base);
    for (const loom_gguf_tensor *x = a; x; x = x == a ? b : NULL)
        if (x->n_dims != 2 || !loom_type_can_matmul(x->type))
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor %s has %u dimensions and type %s; expected a matrix of a "
                              "float or quantized type", path, x->name, x->n_dims, loom_type_name(x->type));
    const int64_t cols = t->ne[0], rows = t->ne[1], rank = a->ne[1];
    if (t->n_dims != 2 || a->ne[0] != cols || b->ne[1] != rows || b->ne[0] != rank)
        return loom_error(LOOM_ERR_FORMAT,
                          "%s: %s.lora_a is [%lld, %lld] and .lora_b [%lld, %lld], expected [%lld, r] and [r, %lld] "
                          "for the model's %s [%lld, %lld] (an adapter for another model?)",
                          path, base, (long long)a->ne[0], (long long)a->ne[1], (long long)b->ne[0],
                          (long long)b->ne[1], (long long)cols, (long long)rows, base, (long long)cols, (long long)rows);
    if (rank < 1 || rank > LOOM_LORA_MAX_RANK)
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: %s has rank %lld; loom takes 1 to %d", path, base,
                          (long long)rank, LOOM_LORA_MAX_RANK);
    *r = (int)rank;
    return NULL;
}

/* The slice of pair (a, b) for the matrix bound from source s (rows or
 * columns [lo, hi) of the base [cols, rows]), into e. */
static loom_status make_slice(const loom_mat_source *s, const loom_gguf_tensor *a, const loom_gguf_tensor *b, int r,
                              float scale, int index, loom_lora_mat *e) {
    const int64_t cols = a->ne[0], rows = b->ne[1];
    const int64_t c0 = s->cols ? s->lo : 0, c1 = s->cols ? s->hi : cols;
    const int64_t r0 = s->cols ? 0 : s->lo, r1 = s->cols ? rows : s->hi;
    *e = (loom_lora_mat){.adapter = index, .r = r, .rows = r1 - r0, .cols = c1 - c0, .scale = scale};
    e->a = malloc((size_t)(c1 - c0) * (size_t)r * sizeof *e->a);
    e->bt = malloc((size_t)(r1 - r0) * (size_t)r * sizeof *e->bt);
    float *row = malloc((size_t)(cols > r ? cols : r) * sizeof(float));
    if (!e->a || !e->bt || !row) {
        free(row);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for the adapter's %s", s->name);
    }
    const size_t sa = loom_type_row_bytes(a->type, cols), sb = loom_type_row_bytes(b->type, r);
    bool finite = true; /* and within F16's range (65504), which they are held in */
    for (int k = 0; k < r; k++) { /* A's row k, its held columns */
        loom_dequant_row(a->type, (const uint8_t *)a->data + (size_t)k * sa, row, cols);
        for (int64_t c = c0; c < c1; c++) {
            finite &= fabsf(row[c]) <= 65504.0f;
            e->a[(size_t)k * (c1 - c0) + (c - c0)] = loom_f32_to_f16(row[c]);
        }
    }
    for (int64_t i = r0; i < r1; i++) { /* B's row i: one column of bt */
        loom_dequant_row(b->type, (const uint8_t *)b->data + (size_t)i * sb, row, r);
        for (int k = 0; k < r; k++) {
            finite &= fabsf(row[k]) <= 65504.0f;
            e->bt[(size_t)k * (r1 - r0) + (i - r0)] = loom_f32_to_f16(row[k]);
        }
    }
    free(row);
    if (!finite)
        return loom_error(LOOM_ERR_FORMAT, "the adapter's %s holds values that are not finite or beyond 65504 (F16's "
                          "range, which loom holds adapters in)", s->name);
    return NULL;
}

void loom_lora_free(loom_lora *l) {
    if (!l) return;
    for (int i = 0; i < l->n_mats; i++) free(l->mats[i].a), free(l->mats[i].bt);
    free(l->mats);
    free(l->task_name), free(l->prompt_prefix);
    loom_gguf_free(l->g);
    free(l);
}

loom_status loom_lora_load(const char *path, const loom_gguf *g, loom_weights *w, int index, loom_lora **out) {
    *out = NULL;
    loom_lora *l = calloc(1, sizeof *l);
    if (!l) return loom_error(LOOM_ERR_NOMEM, "out of memory loading an adapter");
    loom_status st = loom_gguf_open(path, &l->g);
    if (!st) st = check_header(l->g, g);
    if (st) {
        loom_lora_free(l);
        return st;
    }
    const loom_gguf *ag = l->g;
    loom_str tn = {0}, pp = {0};
    (void)loom_gguf_get_str(ag, "adapter.lora.task_name", &tn);
    (void)loom_gguf_get_str(ag, "adapter.lora.prompt_prefix", &pp);
    l->task_name = strndup(tn.ptr ? tn.ptr : "", (size_t)tn.len);
    l->prompt_prefix = strndup(pp.ptr ? pp.ptr : "", (size_t)pp.len);
    if (!l->task_name || !l->prompt_prefix) st = loom_error(LOOM_ERR_NOMEM, "out of memory loading %s", path);
    double alpha = 0;
    if (!st && loom_gguf_get(ag, "adapter.lora.alpha") && !loom_gguf_get_float(ag, "adapter.lora.alpha", &alpha))
        st = loom_error(LOOM_ERR_FORMAT, "%s: adapter.lora.alpha is not a number", path);
    l->alpha = alpha;
    /* every tensor is half of a pair (or a norm's, ignored); each pair's slices for the matrices bound from its
     * base tensor here (a matrix comes from one tensor: at most one slice each), linked once nothing failed */
    const int64_t nt = loom_gguf_n_tensors(ag);
    const int cap = w->n_sources > 0 ? w->n_sources : 1;
    l->mats = calloc((size_t)cap, sizeof *l->mats);
    loom_mat **on = calloc((size_t)cap, sizeof *on);
    if (!st && (!l->mats || !on)) st = loom_error(LOOM_ERR_NOMEM, "out of memory loading %s", path);
    for (int64_t i = 0; i < nt && !st; i++) {
        const loom_gguf_tensor *t = loom_gguf_tensor_at(ag, i);
        char base[160];
        if (ends_with(t->name, ".lora_b")) {
            snprintf(base, sizeof base, "%.*s.lora_a", (int)(strlen(t->name) - 7), t->name);
            if (!loom_gguf_find_tensor(ag, base))
                st = loom_error(LOOM_ERR_FORMAT, "%s: tensor %s has no %s", path, t->name, base);
            continue;
        }
        if (ends_with(t->name, "_norm.weight")) continue; /* as llama.cpp: norms' adapters are not applied */
        if (!ends_with(t->name, ".lora_a")) {
            st = loom_error(LOOM_ERR_FORMAT, "%s: tensor %s is neither a .lora_a nor a .lora_b", path, t->name);
            break;
        }
        const size_t n = strlen(t->name) - 7;
        if (n >= sizeof base - 8) {
            st = loom_error(LOOM_ERR_FORMAT, "%s: tensor name %s is too long", path, t->name);
            break;
        }
        snprintf(base, sizeof base, "%.*s.lora_b", (int)n, t->name);
        const loom_gguf_tensor *b = loom_gguf_find_tensor(ag, base);
        base[n] = '\0';
        int r = 0;
        st = check_pair(ag, g, base, t, b, &r);
        if (st) break;
        l->n_tensors++;
        l->rank = r > l->rank ? r : l->rank;
        const float scale = alpha != 0 ? (float)(alpha / r) : 1.0f;
        for (int k = 0; k < w->n_sources && !st; k++) {
            if (strcmp(w->sources[k].name, base)) continue;
            loom_lora_mat *e = &l->mats[l->n_mats];
            on[l->n_mats++] = w->sources[k].m;
            st = make_slice(&w->sources[k], t, b, r, scale, index, e);
            l->bytes += (size_t)(e->rows + e->cols) * (size_t)r * sizeof(uint16_t);
        }
    }
    if (!st && l->n_tensors == 0) st = loom_error(LOOM_ERR_FORMAT, "%s: the adapter has no .lora_a/.lora_b pairs", path);
    if (!st)
        for (int i = 0; i < l->n_mats; i++) {
            l->mats[i].next = on[i]->lora;
            on[i]->lora = &l->mats[i];
        }
    free(on);
    if (st) {
        loom_lora_free(l);
        return st;
    }
    loom_gguf_free(l->g); /* everything kept was copied */
    l->g = NULL;
    *out = l;
    return NULL;
}

double loom_lora_alpha(const loom_lora *l) { return l->alpha; }
const char *loom_lora_task_name(const loom_lora *l) { return l->task_name; }
const char *loom_lora_prompt_prefix(const loom_lora *l) { return l->prompt_prefix; }
int loom_lora_rank(const loom_lora *l) { return l->rank; }
int loom_lora_tensors(const loom_lora *l) { return l->n_tensors; }
size_t loom_lora_bytes(const loom_lora *l) { return l->bytes; }
