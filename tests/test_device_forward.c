/* tests/test_device_forward.c — the device forward pass
 * (runtime/device_forward.h) on the host device equals the CPU forward pass
 * (runtime/forward.h) bit for bit: hidden states after every piece and
 * logits, for prefill, decode and mixed batches of several sequences, with
 * partial outputs and with the residual add fused (accumulate), on 1 and 3
 * threads, with the matrices of a group fused into one launch for one-row
 * steps (q | k | v, gate | up) and apart (LOOM_DEVICE_FUSE=0), on the
 * default model (llama, Q4_1, tied) and on synthetic ones
 * (qwen2 with Q/K/V biases and Q5_K_M; llama Q8_0 with GQA 4 and an F32 KV
 * cache; F16 weights; head dimension 128). What runs on a GPU is the same
 * orchestration (the same device calls in the same order) over the CUDA
 * table, so this pins down everything in the GPU path except the kernels.
 * Also: device errors name what is missing (a weight type the device lacks). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reference.h"
#include "runtime/device_forward.h"
#include "runtime/forward.h"
#include "runtime/gguf.h"
#include "runtime/model.h"
#include "runtime/threadpool.h"

typedef struct {
    loom_gguf *g;
    loom_model_config cfg;
    loom_weights *w;
    char path[256];
    int tmp;
} model_fx;

static void open_model(model_fx *m, const char *synth_args) {
    memset(m, 0, sizeof *m);
    if (synth_args) {
        snprintf(m->path, sizeof m->path, "/tmp/loom_test_dfwd_%d.gguf", (int)getpid());
        cr_assert_eq(loom_test_synth(synth_args, m->path), 0, "loom synth %s failed", synth_args);
        m->tmp = 1;
    } else {
        snprintf(m->path, sizeof m->path, "%s", LOOM_DEFAULT_MODEL);
    }
    loom_status st = loom_gguf_open(m->path, &m->g);
    cr_assert(!st, "%s (the default model comes from launch/fetch-model.sh)", loom_status_message(st));
    cr_assert(!loom_model_config_read(m->g, &m->cfg));
    loom_shard sh = loom_shard_full(&m->cfg);
    st = loom_weights_create(m->g, &m->cfg, &sh, &m->w);
    cr_assert(!st, "%s", loom_status_message(st));
}

static void close_model(model_fx *m) {
    loom_weights_free(m->w);
    loom_gguf_free(m->g);
    if (m->tmp) unlink(m->path);
}

static void same(const float *a, const float *b, size_t n, const char *what, int step) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)))
            cr_assert_fail("%s, step %d: element %zu differs: CPU %.9g, device %.9g", what, step, i, a[i], b[i]);
}

/* Runs the same steps on the CPU forward and the device forward and
 * compares; `fused`: the groups the device pass must have fused (-1: some). */
static void run_fused(const char *synth_args, loom_type kv_type, int threads, int fused) {
    model_fx m;
    open_model(&m, synth_args);
    const loom_model_config *c = &m.cfg;
    const int R = 24, dim = c->dim, V = c->vocab;
    loom_kv_config kc = {.n_layers = c->n_layers, .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
                         .type = kv_type, .block_tokens = 16, .n_blocks = 3 * 8, .max_seqs = 3, .max_ctx = 128};
    loom_kv_cache *kv;
    cr_assert(!loom_kv_create(&kc, &kv));
    loom_pool *pool;
    cr_assert(!loom_pool_create(threads, &pool));
    loom_forward *cf;
    cr_assert(!loom_forward_create(m.w, kv, pool, R, &cf));
    loom_device *dev;
    cr_assert(!loom_device_create_host(threads, &dev));
    loom_dforward *df;
    cr_assert(!setenv("LOOM_DEVICE_FUSE", fused ? "1" : "0", 1));
    loom_status st = loom_dforward_create(dev, m.w, &kc, R, &df);
    cr_assert(!unsetenv("LOOM_DEVICE_FUSE"));
    cr_assert(!st, "%s", loom_status_message(st));
    const int nf = loom_dforward_fused_groups(df);
    if (fused < 0) cr_assert_gt(nf, 0, "no group of matrices was fused");
    else cr_assert_eq(nf, fused, "%d groups fused, expected %d", nf, fused);

    float *cl = malloc(sizeof(float) * (size_t)R * V), *dl = malloc(sizeof(float) * (size_t)R * V);
    float *dh = malloc(sizeof(float) * (size_t)R * dim);
    int32_t tok[24], pos[24], seq[24];
    int8_t lg[24];
    int len[3] = {0, 0, 0};
    /* steps: prefill 13 + 5 rows, decode of both, a mixed step with a third sequence, two decodes, then
     * decodes of one row (the fused launches) */
    const int plan[][3] = {{13, 5, 0}, {1, 1, 0}, {4, 1, 9}, {1, 1, 1}, {1, 1, 1}, {1, 0, 0}, {0, 0, 1}, {0, 1, 0}};
    for (int step = 0; step < (int)(sizeof plan / sizeof plan[0]); step++) {
        int n = 0;
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < plan[step][s]; i++) {
                tok[n] = (int32_t)((7 + 31 * n + 101 * step + 13 * s) % V), pos[n] = len[s] + i, seq[n] = s;
                lg[n] = (int8_t)(i == plan[step][s] - 1 || step == 2);
                n++;
            }
        for (int s = 0; s < 3; s++) {
            len[s] += plan[step][s];
            if (len[s]) cr_assert(!loom_kv_reserve(kv, s, len[s]));
        }
        loom_batch b = {.n = n, .token = tok, .pos = pos, .seq = seq, .logits = lg};
        const int acc = step % 2; /* fused residual adds on odd steps */
        /* CPU */
        cr_assert(!loom_forward_prepare(cf, &b));
        cr_assert(!loom_forward_embed(cf, &b));
        float *part = loom_forward_scratch(cf);
        /* device */
        st = loom_dforward_prepare(df, &b, kv);
        cr_assert(!st, "%s", loom_status_message(st));
        loom_dforward_embed(df);
        for (int l = 0; l < c->n_layers; l++) {
            cr_assert(!loom_forward_attention(cf, l, &b, part));
            loom_forward_add(cf, n, part);
            if (acc) loom_dforward_attention(df, l, loom_dforward_hidden(df), 1);
            else {
                loom_dforward_attention(df, l, loom_dforward_scratch(df), 0);
                loom_dforward_add(df, loom_dforward_scratch(df));
            }
            if (l == 0) { /* after the first attention block */
                cr_assert(!loom_dforward_fetch_hidden(df, dh));
                same(loom_forward_hidden(cf), dh, (size_t)n * dim, "hidden after layer 0 attention", step);
            }
            loom_forward_mlp(cf, l, n, part);
            loom_forward_add(cf, n, part);
            if (acc) loom_dforward_mlp(df, l, loom_dforward_hidden(df), 1);
            else {
                loom_dforward_mlp(df, l, loom_dforward_scratch(df), 0);
                loom_dforward_add(df, loom_dforward_scratch(df));
            }
        }
        const int nc = loom_forward_logits(cf, &b, cl), nd = loom_dforward_logits(df);
        cr_assert_eq(nc, nd);
        cr_assert(!loom_dforward_fetch_logits(df, dl));
        cr_assert(!loom_dforward_fetch_hidden(df, dh));
        same(loom_forward_hidden(cf), dh, (size_t)n * dim, "hidden after all layers", step);
        same(cl, dl, (size_t)nc * V, "logits", step);
    }
    free(cl);
    free(dl);
    free(dh);
    loom_dforward_free(df);
    loom_device_free(dev);
    loom_forward_free(cf);
    loom_pool_free(pool);
    loom_kv_free(kv);
    close_model(&m);
}

static void run(const char *synth_args, loom_type kv_type, int threads) {
    run_fused(synth_args, kv_type, threads, -1);
    run_fused(synth_args, kv_type, threads, 0);
}

Test(device_forward, default_model_equals_cpu, .timeout = 600) {
    /* Q4_1 throughout (the head Q8_0 stays apart): q | k | v and gate | up of each of 30 layers */
    run_fused(NULL, LOOM_TYPE_F16, 1, 60);
    run_fused(NULL, LOOM_TYPE_F16, 3, 0);
}

Test(device_forward, qwen2_biases_k_quants_equal_cpu, .timeout = 600) {
    run("--arch qwen2 --layers 3 --dim 256 --heads 4 --kv-heads 2 --ffn 768 --vocab 800 --type Q5_K_M --tied --seed 11",
        LOOM_TYPE_F16, 2);
}

Test(device_forward, gqa4_q8_0_f32_cache_equal_cpu, .timeout = 600) {
    run("--arch llama --layers 2 --dim 256 --heads 8 --kv-heads 2 --ffn 512 --vocab 600 --type Q8_0 --seed 5",
        LOOM_TYPE_F32, 2);
}

Test(device_forward, f16_weights_head_128_equal_cpu, .timeout = 600) {
    run("--arch llama --layers 2 --dim 256 --heads 2 --kv-heads 1 --head-dim 128 --ffn 512 --vocab 500 --type F16 "
        "--seed 3",
        LOOM_TYPE_F16, 2);
}

Test(device_forward, a_missing_weight_type_is_named) {
    model_fx m;
    open_model(&m, NULL);
    loom_device *dev;
    cr_assert(!loom_device_create_host(1, &dev));
    /* a device table without Q4_1 matmuls: a copy of the host's */
    loom_device_iface vt = *dev->vt;
    vt.matmul[LOOM_TYPE_Q4_1] = NULL;
    const loom_device_iface *orig = dev->vt;
    dev->vt = &vt;
    const loom_model_config *c = &m.cfg;
    loom_kv_config kc = {.n_layers = c->n_layers, .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
                         .type = LOOM_TYPE_F16, .block_tokens = 16, .n_blocks = 8, .max_seqs = 1, .max_ctx = 128};
    loom_dforward *df = NULL;
    loom_status st = loom_dforward_create(dev, m.w, &kc, 4, &df);
    cr_assert_eq(loom_status_code(st), LOOM_ERR_UNSUPPORTED);
    cr_assert(strstr(loom_status_message(st), "Q4_1"), "%s", loom_status_message(st));
    loom_status_free(st);
    dev->vt = orig;
    loom_device_free(dev);
    close_model(&m);
}
