#include "reference.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int loom_test_file_exists(const char *path) { return access(path, R_OK) == 0; }

uint64_t loom_test_fnv1a_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint64_t h = 0xCBF29CE484222325ull;
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 0x100000001B3ull;
    fclose(f);
    return h;
}

int loom_test_synth(const char *args, const char *path) {
    char a[1024], cmd[2048];
    size_t n = 0; /* "{cache}" (as in --vocab-from {cache}/vocab/...) is the cache directory */
    for (const char *p = args; *p && n + sizeof LOOM_CACHE_DIR < sizeof a;)
        if (!strncmp(p, "{cache}", 7)) n += (size_t)snprintf(a + n, sizeof a - n, "%s", LOOM_CACHE_DIR), p += 7;
        else a[n++] = *p++;
    a[n] = 0;
    snprintf(cmd, sizeof cmd, "%s synth %s --out %s > /dev/null", LOOM_BIN, a, path);
    return system(cmd);
}

static int32_t *int_array(json_t *a, int *n) {
    *n = (int)json_array_size(a);
    int32_t *v = malloc(sizeof(int32_t) * (size_t)(*n ? *n : 1));
    for (int i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return v;
}

loom_status loom_ref_load(const char *path, loom_ref *out) {
    memset(out, 0, sizeof *out);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) return loom_error(LOOM_ERR_IO, "%s:%d: %s", path, err.line, err.text);
    json_t *sa = json_object_get(root, "synth_args");
    if (json_is_string(sa)) out->synth_args = strdup(json_string_value(sa));
    json_t *la = json_object_get(root, "lora_args");
    if (json_is_string(la)) out->lora_args = strdup(json_string_value(la));
    json_t *lf = json_object_get(root, "lora_fnv1a64");
    if (json_is_string(lf)) out->lora_fnv1a64 = strtoull(json_string_value(lf), NULL, 16);
    out->lora_scale = json_number_value(json_object_get(root, "lora_scale"));
    json_t *pool = json_object_get(root, "pooling");
    out->pooling = json_is_integer(pool) ? (int)json_integer_value(pool) : -1;
    json_t *fnv = json_object_get(root, "fnv1a64");
    if (json_is_string(fnv)) out->fnv1a64 = strtoull(json_string_value(fnv), NULL, 16);
    json_t *cases = json_object_get(root, "cases");
    out->n = (int)json_array_size(cases);
    out->cases = calloc((size_t)out->n, sizeof *out->cases);
    for (int i = 0; i < out->n; i++) {
        json_t *c = json_array_get(cases, (size_t)i);
        loom_ref_case *rc = &out->cases[i];
        rc->name = strdup(json_string_value(json_object_get(c, "name")));
        rc->chat = json_is_true(json_object_get(c, "chat"));
        int np, ng;
        int32_t *p = int_array(json_object_get(c, "prompt_ids"), &np);
        int32_t *g = int_array(json_object_get(c, "greedy_ids"), &ng);
        rc->n_prompt = np;
        rc->n_gen = ng;
        rc->ids = malloc(sizeof(int32_t) * (size_t)(np + ng));
        memcpy(rc->ids, p, sizeof(int32_t) * (size_t)np);
        memcpy(rc->ids + np, g, sizeof(int32_t) * (size_t)ng);
        free(p);
        free(g);
        json_t *emb = json_object_get(c, "embedding");
        if (json_is_array(emb)) { /* an encoder's fixture: the pooled embedding instead of logits */
            rc->dim = (int)json_array_size(emb);
            rc->embedding = malloc(sizeof(float) * (size_t)(rc->dim ? rc->dim : 1));
            for (int d = 0; d < rc->dim; d++) rc->embedding[d] = (float)json_number_value(json_array_get(emb, (size_t)d));
            continue;
        }
        json_t *top = json_object_get(c, "top5");
        int npos = (int)json_array_size(top);
        if (npos != np + ng) {
            json_decref(root);
            return loom_error(LOOM_ERR_FORMAT, "%s: case %s has %d top-5 rows for %d positions", path, rc->name, npos,
                              np + ng);
        }
        rc->top_id = malloc(sizeof *rc->top_id * (size_t)npos);
        rc->top_logit = malloc(sizeof *rc->top_logit * (size_t)npos);
        for (int q = 0; q < npos; q++)
            for (int k = 0; k < 5; k++) {
                json_t *pair = json_array_get(json_array_get(top, (size_t)q), (size_t)k);
                rc->top_id[q][k] = (int32_t)json_integer_value(json_array_get(pair, 0));
                rc->top_logit[q][k] = (float)json_number_value(json_array_get(pair, 1));
            }
        json_t *last = json_object_get(c, "last_prompt_logits");
        rc->vocab = (int)json_array_size(last);
        rc->last_logits = malloc(sizeof(float) * (size_t)rc->vocab);
        for (int v = 0; v < rc->vocab; v++) rc->last_logits[v] = (float)json_number_value(json_array_get(last, (size_t)v));
    }
    json_decref(root);
    return NULL;
}

void loom_ref_free(loom_ref *r) {
    for (int i = 0; i < r->n; i++) {
        loom_ref_case *c = &r->cases[i];
        free(c->name);
        free(c->ids);
        free(c->top_id);
        free(c->top_logit);
        free(c->last_logits);
        free(c->embedding);
    }
    free(r->cases);
    free(r->synth_args);
    free(r->lora_args);
    memset(r, 0, sizeof *r);
}

void loom_ref_compare(const loom_ref_case *c, const float *logits, float eps, loom_ref_report *rep) {
    memset(rep, 0, sizeof *rep);
    rep->first_mismatch = -1;
    int V = c->vocab, n = c->n_prompt + c->n_gen;
    rep->positions = n;
    for (int p = 0; p < n; p++) {
        const float *l = logits + (size_t)p * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (l[v] > l[best]) best = v;
        if (best == c->top_id[p][0]) continue;
        float gap = c->top_logit[p][0] - c->top_logit[p][1];
        /* loom's choice must at least be a reference top-5 candidate within eps of the top */
        float ref_of_best = -INFINITY;
        for (int k = 0; k < 5; k++)
            if (c->top_id[p][k] == best) ref_of_best = c->top_logit[p][k];
        if (gap < eps && c->top_logit[p][0] - ref_of_best < eps) {
            rep->near_tie_flips++;
        } else {
            rep->mismatches++;
            if (rep->first_mismatch < 0) rep->first_mismatch = p;
        }
        if (gap > rep->worst_gap) rep->worst_gap = gap;
    }
    /* value check at the last prompt position, up to a softmax-invariant shift */
    const float *l = logits + (size_t)(c->n_prompt - 1) * V;
    double mean = 0;
    for (int v = 0; v < V; v++) mean += (double)l[v] - c->last_logits[v];
    mean /= V;
    double ss = 0;
    for (int v = 0; v < V; v++) {
        double d = (double)l[v] - c->last_logits[v] - mean;
        ss += d * d;
    }
    rep->last_rms_dev = (float)sqrt(ss / V);
    double rm = 0, rv = 0;
    for (int v = 0; v < V; v++) rm += c->last_logits[v];
    rm /= V;
    for (int v = 0; v < V; v++) rv += (c->last_logits[v] - rm) * (c->last_logits[v] - rm);
    rep->last_std = (float)sqrt(rv / V);
    /* max over the reference's 40 largest logits */
    int *idx = malloc(sizeof(int) * 40);
    int nidx = 0;
    for (int v = 0; v < V; v++) {
        if (nidx < 40) {
            idx[nidx++] = v;
        } else {
            int lo = 0;
            for (int k = 1; k < 40; k++)
                if (c->last_logits[idx[k]] < c->last_logits[idx[lo]]) lo = k;
            if (c->last_logits[v] > c->last_logits[idx[lo]]) idx[lo] = v;
        }
    }
    for (int k = 0; k < nidx; k++) {
        float d = (float)fabs((double)l[idx[k]] - c->last_logits[idx[k]] - mean);
        if (d > rep->last_max_dev) rep->last_max_dev = d;
    }
    free(idx);
    /* every position, the reference's top-5 relative to its top-1 */
    for (int p = 0; p < n; p++) {
        const float *lp = logits + (size_t)p * V;
        for (int k = 1; k < 5; k++) {
            int a = c->top_id[p][0], b = c->top_id[p][k];
            if (a < 0 || a >= V || b < 0 || b >= V) continue;
            float d = (float)fabs(((double)lp[b] - lp[a]) - ((double)c->top_logit[p][k] - c->top_logit[p][0]));
            if (d > rep->top5_max_dev) rep->top5_max_dev = d;
        }
    }
}
