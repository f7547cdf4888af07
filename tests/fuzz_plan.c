/*
 * libFuzzer target: the ShardPlan decoder, which every rank runs on bytes
 * that arrive over the network. A hostile or corrupt message must be
 * rejected with an error, never crash or read out of bounds; an accepted
 * plan must re-encode to bytes that decode again.
 *
 * The seeds in tests/fuzz/plan/ are valid plans of a SmolLM2-shaped model;
 * `LOOM_FUZZ_WRITE_SEEDS=DIR fuzz_plan` rewrites them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/plan.h"

static loom_plan_model model;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void write_seeds(const char *dir) {
    static const int grids[][2] = {{1, 1}, {2, 1}, {3, 2}, {1, 4}, {4, 2}};
    for (size_t i = 0; i < sizeof grids / sizeof grids[0]; i++) {
        loom_plan_request req = loom_plan_request_defaults(grids[i][0], grids[i][1]);
        req.engine.ctx_size = 1024;
        loom_plan *p;
        uint8_t *buf;
        size_t len;
        if (loom_plan_make(&model, &req, NULL, &p) || loom_plan_encode(p, &buf, &len)) abort();
        char path[512];
        snprintf(path, sizeof path, "%s/tp%d_pp%d.pb", dir, grids[i][0], grids[i][1]);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, len, f) != len) abort();
        fclose(f);
        free(buf);
        loom_plan_free(p);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    loom_model_config *c = &model.cfg;
    snprintf(c->arch_name, sizeof c->arch_name, "llama");
    c->arch = LOOM_ARCH_LLAMA;
    c->n_layers = 30;
    c->dim = 576;
    c->n_heads = 9;
    c->n_kv_heads = 3;
    c->head_dim = 64;
    c->ffn = 1536;
    c->vocab = 49152;
    c->ctx_train = 8192;
    c->rope_dim = 64;
    c->rope_base = 100000;
    c->rope_freq_scale = 1;
    c->norm_eps = 1e-5f;
    c->tied_embeddings = true;
    model.hash = 0x5eed5eed5eed5eedull;
    model.embed = model.head = LOOM_TYPE_Q8_0;
    model.layers = calloc((size_t)c->n_layers, sizeof *model.layers);
    for (int l = 0; l < c->n_layers; l++) {
        loom_type q = LOOM_TYPE_Q4_1;
        model.layers[l] = (loom_plan_layer){q, q, q, q, q, q, q, LOOM_TYPE_F32, q, q, q, LOOM_TYPE_F32, LOOM_TYPE_F32};
    }
    const char *dir = getenv("LOOM_FUZZ_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    loom_plan *p = NULL;
    loom_status st = loom_plan_decode(data, size, &model, &p);
    if (st) {
        if (p) abort();
        loom_status_free(st);
        return 0;
    }
    uint8_t *buf;
    size_t len;
    if (loom_plan_encode(p, &buf, &len)) abort();
    loom_plan *q = NULL;
    st = loom_plan_decode(buf, len, &model, &q);
    if (st) {
        fprintf(stderr, "an accepted plan re-encodes to one that is rejected: %s\n", loom_status_message(st));
        abort();
    }
    loom_plan_free(q);
    free(buf);
    loom_plan_free(p);
    return 0;
}
