/*
 * tests/bench_attention.c — speed of loom_attention_compute over the paged KV
 * cache: decode (one row at the end of a context) and prefill (rows 0..n-1
 * of one sequence), per ISA level and thread count. Not a test: built with
 * the tests (tests/CMakeLists.txt), run by hand:
 *
 *   build/tests/bench_attention [-i ISA] [-t THREADS] [--case decode|prefill] [--kv f16|f32|q8_0] [--hd 64]
 *                               [--nq 9] [--nkv 3] [--bt 16] [--layers 1] [--ms MS] [--json FILE]
 *                               [--v-is-k 1]
 *
 * Default shape: SmolLM2-135M (9 query heads, 3 KV heads, head size 64),
 * F16 KV, blocks of 16 tokens handed out in a scrambled order. Each figure is
 * the best single call over about --ms milliseconds of repeated calls (one
 * layer's attention; robust to a busy machine). With --layers L the cache
 * holds L layers and successive calls read successive layers, so a long
 * context comes from memory rather than from the L2/L3 caches, as in a real
 * decode step. --v-is-k 1: a cache without value blocks whose values are
 * its keys (multi-head latent attention's, kv_cache.h; DeepSeek-V2-Lite's
 * shape is --hd 576 --nq 16 --nkv 1). Prints a table; --json FILE
 * writes the same rows as JSON.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/attention.h"
#include "runtime/kernels.h"
#include "runtime/kv_cache.h"
#include "runtime/threadpool.h"
#include "runtime/clock.h"


static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) / (float)(1u << 24) * 2.0f - 1.0f;
}

typedef struct {
    int n_q, n_kv, hd, bt, layers, v_is_k;
    loom_type type;
    double budget_s;
} shape;

/* Best time of one compute call with n rows of sequence 0 at positions
 * pos0..pos0+n-1 (the cache holds positions 0..pos0+n-1). */
static double bench_case(const shape *s, loom_pool *pool, int ctx, int n) {
    int bt = s->bt, nblk = (ctx + bt - 1) / bt;
    loom_kv_config kc = {.n_layers = s->layers, .n_kv_heads = s->n_kv, .head_dim = s->hd, .type = s->type,
                         .block_tokens = bt, .n_blocks = nblk + nblk / 2 + 1, .max_seqs = 2, .max_ctx = ctx, .v_is_k = s->v_is_k};
    loom_kv_cache *kv;
    loom_status st = loom_kv_create(&kc, &kv);
    if (st) {
        fprintf(stderr, "%s\n", loom_status_message(st));
        exit(1);
    }
    /* scramble the free list a little: slot 1 takes every other block */
    if (loom_kv_reserve(kv, 1, (nblk / 2) * bt) || loom_kv_reserve(kv, 0, ctx)) exit(1);
    int qdim = s->n_q * s->hd, kvdim = s->n_kv * s->hd;
    int *q_to_kv = malloc(sizeof(int) * s->n_q);
    for (int h = 0; h < s->n_q; h++) q_to_kv[h] = h / (s->n_q / s->n_kv);
    /* fill the whole context, 256 rows at a time */
    int chunk = 256, cap = n > chunk ? n : chunk;
    int32_t *pos = malloc(sizeof(int32_t) * cap), *seq = calloc(cap, sizeof(int32_t));
    float *q = malloc(sizeof(float) * cap * qdim), *k = malloc(sizeof(float) * cap * kvdim),
          *v = malloc(sizeof(float) * cap * kvdim), *out = malloc(sizeof(float) * cap * qdim);
    for (int i = 0; i < cap * qdim; i++) q[i] = frand();
    for (int p0 = 0; p0 < ctx; p0 += chunk) {
        int m = ctx - p0 < chunk ? ctx - p0 : chunk;
        for (int i = 0; i < m; i++) pos[i] = p0 + i;
        for (int l = 0; l < s->layers; l++) {
            for (int i = 0; i < m * kvdim; i++) k[i] = frand(), v[i] = frand();
            loom_attention_args a = {kv, l, m, pos, seq, s->n_q, s->n_kv, s->hd, q_to_kv, q, k, v, out, .scale = 0};
            loom_attention_store(&a);
        }
    }
    for (int i = 0; i < n; i++) pos[i] = ctx - n + i;
    loom_attention_args a = {kv, 0, n, pos, seq, s->n_q, s->n_kv, s->hd, q_to_kv, q, k, v, out, .scale = 0};
    size_t sf = loom_attention_scratch_floats(&kc, s->n_q, s->n_kv, s->hd, cap);
    float *scratch = malloc(sizeof(float) * sf * (size_t)loom_pool_size(pool));
    loom_attention_compute(&a, pool, scratch); /* warm-up */
    double best = 1e30, t0 = loom_now_s();
    int layer = 0;
    do {
        a.layer = layer = (layer + 1) % s->layers; /* with --layers, each call reads another layer's cache */
        double t = loom_now_s();
        loom_attention_compute(&a, pool, scratch);
        t = loom_now_s() - t;
        if (t < best) best = t;
    } while (loom_now_s() - t0 < s->budget_s);
    free(scratch);
    free(q_to_kv);
    free(pos);
    free(seq);
    free(q);
    free(k);
    free(v);
    free(out);
    loom_kv_free(kv);
    return best;
}

int main(int argc, char **argv) {
    shape s = {.n_q = 9, .n_kv = 3, .hd = 64, .bt = 16, .layers = 1, .type = LOOM_TYPE_F16, .budget_s = 0.3};
    int isa_lo = 0, isa_hi = (int)loom_isa_detect(), th_lo = 1, th_hi = 2;
    const char *json = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) break;
        if (!strcmp(a, "-i")) {
            for (int l = 0; l < LOOM_ISA_COUNT; l++)
                if (!strcmp(v, loom_isa_name((loom_isa)l))) isa_lo = isa_hi = l;
        } else if (!strcmp(a, "-t")) th_lo = th_hi = atoi(v);
        else if (!strcmp(a, "--kv")) s.type = !strcmp(v, "f32") ? LOOM_TYPE_F32 : !strcmp(v, "q8_0") ? LOOM_TYPE_Q8_0 : LOOM_TYPE_F16;
        else if (!strcmp(a, "--hd")) s.hd = atoi(v);
        else if (!strcmp(a, "--nq")) s.n_q = atoi(v);
        else if (!strcmp(a, "--nkv")) s.n_kv = atoi(v);
        else if (!strcmp(a, "--bt")) s.bt = atoi(v);
        else if (!strcmp(a, "--layers")) s.layers = atoi(v);
        else if (!strcmp(a, "--ms")) s.budget_s = atof(v) / 1000.0;
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--case")) only = v;
        else if (!strcmp(a, "--v-is-k")) s.v_is_k = atoi(v);
        else continue;
        i++;
    }
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (jf) fprintf(jf, "[\n");
    int first = 1;
    printf("# %d query heads, %d KV heads, head size %d, %s KV%s, blocks of %d, %d layer(s); best call, one layer\n",
           s.n_q, s.n_kv, s.hd, loom_type_name(s.type), s.v_is_k ? " (values are the keys)" : "",
           s.bt, s.layers);
    printf("%-7s %-7s %3s %6s %6s %11s %13s\n", "isa", "case", "thr", "ctx", "rows", "time_us", "rows_per_s");
    static const int dec_ctx[] = {64, 256, 1024, 4096};
    static const int pre_rows[] = {128, 512};
    for (int isa = isa_lo; isa <= isa_hi; isa++) {
        if (loom_isa_set((loom_isa)isa)) continue;
        for (int th = th_lo; th <= th_hi; th++) {
            loom_pool *pool;
            if (loom_pool_create(th, &pool)) return 1;
            for (int c = 0; c < 6; c++) {
                int prefill = c >= 4, ctx = prefill ? pre_rows[c - 4] : dec_ctx[c], n = prefill ? ctx : 1;
                if (only && strcmp(only, prefill ? "prefill" : "decode")) continue;
                double t = bench_case(&s, pool, ctx, n);
                printf("%-7s %-7s %3d %6d %6d %11.1f %13.0f\n", loom_isa_name((loom_isa)isa),
                       prefill ? "prefill" : "decode", th, ctx, n, t * 1e6, n / t);
                if (jf)
                    fprintf(jf, "%s  {\"isa\": \"%s\", \"case\": \"%s\", \"threads\": %d, \"ctx\": %d, \"rows\": %d, \"us\": %.2f}",
                            first ? "" : ",\n", loom_isa_name((loom_isa)isa), prefill ? "prefill" : "decode", th, ctx,
                            n, t * 1e6), first = 0;
                fflush(stdout);
            }
            loom_pool_free(pool);
        }
    }
    if (jf) fprintf(jf, "\n]\n"), fclose(jf);
    return 0;
}
