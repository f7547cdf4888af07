/*
 * tests/test_lora.c — LoRA adapters (runtime/lora.h):
 *   - an adapter on an F32 model scores as the model with the adapter
 *     merged into its weights (W + s·(alpha/r)·B·A, computed here in
 *     double and written as a new file), scalar kernels, within 5e-4 of
 *     the logits' spread; scale 0 scores as the plain model, exactly;
 *   - a tensor-parallel shard keeps B's rows of a matrix split by rows and
 *     A's columns of one split by columns;
 *   - files that are not adapters for the model are refused, naming why.
 * (llama.cpp's own LoRA against loom's: tests/test_reference.c's *_lora_*
 * fixtures.)
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel/engine.h"
#include "parallel/run.h"
#include "reference.h"
#include "runtime/gguf_write.h"
#include "runtime/kernels.h"
#include "runtime/lora.h"
#include "runtime/quant.h"

#define OK(expr)                                                             \
    do {                                                                     \
        loom_status s_ = (expr);                                             \
        cr_assert_null(s_, "%s failed: %s", #expr, loom_status_message(s_)); \
    } while (0)

static char model_path[256], adapter_path[256], other_path[256];

static void setup(void) {
    OK(loom_isa_set(LOOM_ISA_SCALAR));
    snprintf(model_path, sizeof model_path, "/tmp/loom-test-lora-model-%d.gguf", (int)getpid());
    snprintf(adapter_path, sizeof adapter_path, "/tmp/loom-test-lora-%d.gguf", (int)getpid());
    snprintf(other_path, sizeof other_path, "/tmp/loom-test-lora-other-%d.gguf", (int)getpid());
    cr_assert_eq(loom_test_synth("--layers 2 --dim 128 --heads 4 --kv-heads 2 --ffn 256 --vocab 512 --seed 3", model_path), 0);
    char args[512];
    snprintf(args, sizeof args, "--lora-of %s --lora-rank 8 --lora-alpha 4 --seed 5", model_path);
    cr_assert_eq(loom_test_synth(args, adapter_path), 0);
}

static void teardown(void) {
    unlink(model_path);
    unlink(adapter_path);
    unlink(other_path);
}

static loom_engine *engine_threads(loom_gguf *g, int threads) {
    loom_engine_options o = loom_engine_defaults();
    o.n_threads = threads;
    o.max_seqs = 1;
    o.ctx_size = 64;
    o.batch_rows = 64;
    loom_engine *e;
    OK(loom_engine_create(g, &o, NULL, NULL, NULL, &e));
    return e;
}

static loom_engine *engine(loom_gguf *g) { return engine_threads(g, 1); }

static bool never(void *u, int32_t t) {
    (void)u, (void)t;
    return false;
}

/* The model g with each adapted matrix W replaced by W + s·B·A (F32). */
static void write_merged(const loom_gguf *g, const loom_gguf *a, double s, const char *path) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    for (int64_t i = 0; i < loom_gguf_n_kv(g); i++) {
        const loom_gguf_kv *kv = loom_gguf_kv_at(g, i);
        if (strcmp(kv->key, "general.alignment")) OK(loom_gguf_writer_add_value(w, kv->key, &kv->value));
    }
    float **bufs = calloc((size_t)loom_gguf_n_tensors(g), sizeof *bufs);
    for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
        const loom_gguf_tensor *t = loom_gguf_tensor_at(g, i);
        char na[200], nb[200];
        snprintf(na, sizeof na, "%s.lora_a", t->name);
        snprintf(nb, sizeof nb, "%s.lora_b", t->name);
        const loom_gguf_tensor *ta = loom_gguf_find_tensor(a, na), *tb = loom_gguf_find_tensor(a, nb);
        if (!ta) {
            OK(loom_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data));
            continue;
        }
        cr_assert_eq(t->type, LOOM_TYPE_F32);
        const int64_t cols = t->ne[0], rows = t->ne[1], r = ta->ne[1];
        float *A = malloc(sizeof(float) * (size_t)(r * cols)), *B = malloc(sizeof(float) * (size_t)(rows * r));
        for (int64_t k = 0; k < r; k++)
            loom_dequant_row(ta->type, (const uint8_t *)ta->data + (size_t)k * loom_type_row_bytes(ta->type, cols),
                             A + k * cols, cols);
        for (int64_t o = 0; o < rows; o++)
            loom_dequant_row(tb->type, (const uint8_t *)tb->data + (size_t)o * loom_type_row_bytes(tb->type, r),
                             B + o * r, r);
        float *m = bufs[i] = malloc(sizeof(float) * (size_t)(rows * cols));
        const float *W = t->data;
        for (int64_t o = 0; o < rows; o++)
            for (int64_t c = 0; c < cols; c++) {
                double d = 0;
                for (int64_t k = 0; k < r; k++) d += (double)B[o * r + k] * A[k * cols + c];
                m[o * cols + c] = (float)(W[o * cols + c] + s * d);
            }
        free(A), free(B);
        OK(loom_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, m));
    }
    OK(loom_gguf_writer_write_path(w, path, 0));
    loom_gguf_writer_free(w);
    for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) free(bufs[i]);
    free(bufs);
}

/* The adapter at `path` (rank r, alpha 4) at scale 0.75 against the model with it merged. */
static void merged_check(const char *path, int rank) {
    loom_gguf *g, *a, *merged;
    OK(loom_gguf_open(model_path, &g));
    OK(loom_gguf_open(path, &a));
    const float scale = 0.75f;
    write_merged(g, a, scale * 4.0 / rank, other_path);
    OK(loom_gguf_open(other_path, &merged));
    loom_engine *plain = engine(g), *adapted = engine(g), *zero = engine(g), *ref = engine(merged);
    OK(loom_engine_add_lora(adapted, path, scale));
    OK(loom_engine_add_lora(zero, path, 0.0f));
    cr_assert_eq(loom_engine_n_lora(adapted), 1);
    cr_assert_eq(loom_lora_tensors(loom_engine_lora(adapted, 0)), 2 * 7, "q k v o gate up down in 2 layers");
    cr_assert_eq(loom_lora_rank(loom_engine_lora(adapted, 0)), rank);
    cr_assert_float_eq(loom_lora_alpha(loom_engine_lora(adapted, 0)), 4.0, 1e-6);
    enum { N = 40, V = 512 };
    int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = (int32_t)(5 + i * 37 % 500);
    float *x = malloc(sizeof(float) * N * V), *y = malloc(sizeof(float) * N * V), *p = malloc(sizeof(float) * N * V),
          *z = malloc(sizeof(float) * N * V);
    OK(loom_engine_score(adapted, toks, N, x));
    OK(loom_engine_score(ref, toks, N, y));
    OK(loom_engine_score(plain, toks, N, p));
    OK(loom_engine_score(zero, toks, N, z));
    double var = 0, worst = 0, moved = 0;
    for (int i = 0; i < N * V; i++) var += (double)y[i] * y[i];
    const double sd = sqrt(var / (N * V));
    for (int i = 0; i < N * V; i++) {
        worst = fmax(worst, fabs((double)x[i] - y[i]));
        moved = fmax(moved, fabs((double)p[i] - y[i]));
    }
    printf("lora vs merged: max |diff| %.2e (logits' sd %.3f); the adapter moves logits by up to %.3f\n", worst, sd, moved);
    cr_assert_lt(worst, 5e-4 * sd, "the adapter does not score as the merged model: %g", worst);
    cr_assert_gt(moved, 0.1 * sd, "the adapter barely changes the model: %g", moved);
    cr_assert_arr_eq(z, p, sizeof(float) * N * V, "scale 0 differs from no adapter");
    /* decoding on two threads (each matmul thread computes a row's A·x itself) gives the merged model's tokens */
    loom_engine *two = engine_threads(g, 2), *two_ref = engine_threads(merged, 2);
    OK(loom_engine_add_lora(two, path, scale));
    loom_request r = {.prompt = toks, .n_prompt = 8, .max_tokens = 24, .ignore_eos = true};
    r.sampling = loom_sampling_defaults();
    r.sampling.temperature = 0;
    loom_callbacks cb = {.is_eog = never};
    loom_result ra, rb;
    OK(loom_engine_run(two, &r, 1, &cb, NULL, &ra, NULL));
    OK(loom_engine_run(two_ref, &r, 1, &cb, NULL, &rb, NULL));
    cr_assert_eq(ra.n_tokens, 24);
    cr_assert_arr_eq(ra.tokens, rb.tokens, sizeof(int32_t) * 24, "two threads' decode differs from the merged model's");
    loom_result_free(&ra), loom_result_free(&rb);
    loom_engine_free(two), loom_engine_free(two_ref);
    free(x), free(y), free(p), free(z);
    loom_engine_free(plain), loom_engine_free(adapted), loom_engine_free(zero), loom_engine_free(ref);
    loom_gguf_free(merged), loom_gguf_free(a), loom_gguf_free(g);
}

Test(lora, scores_as_the_merged_model, .init = setup, .fini = teardown, .timeout = 120) { merged_check(adapter_path, 8); }

/* an odd rank: the kernels' last row of A alone */
Test(lora, scores_as_the_merged_model_odd_rank, .init = setup, .fini = teardown, .timeout = 120) {
    char odd[256], args[512];
    snprintf(odd, sizeof odd, "/tmp/loom-test-lora-odd-%d.gguf", (int)getpid());
    snprintf(args, sizeof args, "--lora-of %s --lora-rank 5 --lora-alpha 4 --seed 6", model_path);
    cr_assert_eq(loom_test_synth(args, odd), 0);
    merged_check(odd, 5);
    unlink(odd);
}

Test(lora, a_shard_keeps_its_slices, .init = setup, .fini = teardown) {
    loom_gguf *g;
    OK(loom_gguf_open(model_path, &g));
    loom_model_config cfg;
    OK(loom_model_config_read(g, &cfg));
    loom_shard sh = loom_shard_full(&cfg);
    sh.layer_begin = 1; /* layer 1, query heads 1..2 (of 4) and KV head 0, MLP columns 128..255 */
    sh.q_begin = 1, sh.q_end = 3, sh.kv_begin = 0, sh.kv_end = 2;
    sh.ffn_begin = 128, sh.ffn_end = 256;
    sh.embed = false;
    loom_weights *w;
    OK(loom_weights_create(g, &cfg, &sh, &w));
    loom_lora *l;
    OK(loom_lora_load(adapter_path, g, w, 3, &l));
    const loom_layer *L = &w->layers[0];
    const int hd = 32;
    const struct {
        const loom_mat *m;
        int64_t rows, cols;
    } want[] = {{&L->wq, 2 * hd, 128}, {&L->wk, 2 * hd, 128}, {&L->wo, 128, 2 * hd},
                {&L->w_gate, 128, 128}, {&L->w_up, 128, 128}, {&L->w_down, 128, 128}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const loom_lora_mat *e = want[i].m->lora;
        cr_assert_not_null(e, "matrix %zu has no adapter", i);
        cr_assert_null(e->next);
        cr_assert_eq(e->adapter, 3);
        cr_assert_eq(e->r, 8);
        cr_assert_eq(e->rows, want[i].rows, "matrix %zu: %lld rows", i, (long long)e->rows);
        cr_assert_eq(e->cols, want[i].cols, "matrix %zu: %lld columns", i, (long long)e->cols);
        cr_assert_float_eq(e->scale, 0.5f, 1e-7);
    }
    /* wq's slice: B's rows from query head 1 on */
    loom_gguf *a;
    OK(loom_gguf_open(adapter_path, &a));
    const loom_gguf_tensor *tb = loom_gguf_find_tensor(a, "blk.1.attn_q.weight.lora_b");
    float row[8];
    loom_dequant_row(tb->type, (const uint8_t *)tb->data + (size_t)(hd + 5) * loom_type_row_bytes(tb->type, 8), row, 8);
    for (int k = 0; k < 8; k++) cr_assert_float_eq(loom_f16_to_f32(L->wq.lora->bt[(size_t)k * 2 * hd + 5]), row[k], 0);
    /* wo's: A's columns from head 1 on */
    const loom_gguf_tensor *ta = loom_gguf_find_tensor(a, "blk.1.attn_output.weight.lora_a");
    float arow[128];
    loom_dequant_row(ta->type, (const uint8_t *)ta->data + 2 * loom_type_row_bytes(ta->type, 128), arow, 128);
    for (int c = 0; c < 2 * hd; c++) cr_assert_float_eq(loom_f16_to_f32(L->wo.lora->a[(size_t)2 * 2 * hd + c]), arow[hd + c], 0);
    loom_gguf_free(a);
    loom_lora_free(l);
    loom_weights_free(w);
    loom_gguf_free(g);
}

/* Writes an adapter of the given architecture and type with a pair for each name (shapes [cols, r], [r, rows]). */
static void write_adapter(const char *path, const char *arch, const char *type, const char *const *names,
                          const int64_t (*shapes)[2], int n, bool with_b) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    OK(loom_gguf_writer_add_str(w, "general.architecture", arch));
    if (type) OK(loom_gguf_writer_add_str(w, "general.type", type));
    OK(loom_gguf_writer_add_str(w, "adapter.type", "lora"));
    for (int i = 0; i < n; i++) {
        char name[200];
        int64_t ne_a[2] = {shapes[i][0], 8}, ne_b[2] = {8, shapes[i][1]};
        snprintf(name, sizeof name, "%s.lora_a", names[i]);
        OK(loom_gguf_writer_add_tensor(w, name, LOOM_TYPE_F32, 2, ne_a, NULL));
        snprintf(name, sizeof name, "%s.lora_b", names[i]);
        if (with_b) OK(loom_gguf_writer_add_tensor(w, name, LOOM_TYPE_F32, 2, ne_b, NULL));
    }
    OK(loom_gguf_writer_write_path(w, path, 0));
    loom_gguf_writer_free(w);
}

static void refused(loom_gguf *g, const char *path, const char *what) {
    loom_engine *e = engine(g);
    loom_status st = loom_engine_add_lora(e, path, 1.0f);
    cr_assert_not_null(st, "accepted: %s", what);
    cr_assert(strstr(loom_status_message(st), what), "'%s' does not say '%s'", loom_status_message(st), what);
    cr_assert_eq(loom_engine_n_lora(e), 0);
    loom_status_free(st);
    loom_engine_free(e);
}

Test(lora, refusals, .init = setup, .fini = teardown) {
    loom_gguf *g;
    OK(loom_gguf_open(model_path, &g));
    refused(g, model_path, "not a LoRA adapter");
    refused(g, "/nonexistent/adapter.gguf", "/nonexistent/adapter.gguf");
    const char *q[] = {"blk.0.attn_q.weight"};
    const int64_t qs[][2] = {{128, 128}}, bad[][2] = {{96, 128}}, emb[][2] = {{128, 512}};
    write_adapter(other_path, "qwen2", "adapter", q, qs, 1, true);
    refused(g, other_path, "architecture \"qwen2\", the model's is \"llama\"");
    write_adapter(other_path, "llama", NULL, q, qs, 1, true);
    refused(g, other_path, "general.type is absent");
    write_adapter(other_path, "llama", "adapter", q, bad, 1, true);
    refused(g, other_path, "an adapter for another model?");
    write_adapter(other_path, "llama", "adapter", q, qs, 1, false);
    refused(g, other_path, "has no blk.0.attn_q.weight.lora_b");
    const char *t[] = {"token_embd.weight"};
    write_adapter(other_path, "llama", "adapter", t, emb, 1, true);
    refused(g, other_path, "loom applies adapters to the blocks' attention and MLP projections");
    const char *m[] = {"blk.7.attn_q.weight"};
    write_adapter(other_path, "llama", "adapter", m, qs, 1, true);
    refused(g, other_path, "which the model");
    write_adapter(other_path, "llama", "adapter", q, qs, 0, true);
    refused(g, other_path, "no .lora_a/.lora_b pairs");
    loom_gguf_writer *w; /* an activated LoRA: applied from its invocation tokens on, which loom does not do */
    OK(loom_gguf_writer_create(&w));
    OK(loom_gguf_writer_add_str(w, "general.architecture", "llama"));
    OK(loom_gguf_writer_add_str(w, "general.type", "adapter"));
    OK(loom_gguf_writer_add_str(w, "adapter.type", "lora"));
    const uint32_t inv[2] = {5, 6};
    OK(loom_gguf_writer_add_arr(w, "adapter.alora.invocation_tokens", LOOM_GGUF_U32, inv, 2));
    OK(loom_gguf_writer_write_path(w, other_path, 0));
    loom_gguf_writer_free(w);
    refused(g, other_path, "an activated LoRA");
    /* values F16 cannot hold (the adapter is held in F16) */
    float *big = malloc(sizeof(float) * 128 * 8);
    for (int i = 0; i < 128 * 8; i++) big[i] = i == 77 ? 1e6f : 0.01f;
    OK(loom_gguf_writer_create(&w));
    OK(loom_gguf_writer_add_str(w, "general.architecture", "llama"));
    OK(loom_gguf_writer_add_str(w, "general.type", "adapter"));
    OK(loom_gguf_writer_add_str(w, "adapter.type", "lora"));
    const int64_t ne_a[2] = {128, 8}, ne_b[2] = {8, 128};
    OK(loom_gguf_writer_add_tensor(w, "blk.0.attn_q.weight.lora_a", LOOM_TYPE_F32, 2, ne_a, big));
    OK(loom_gguf_writer_add_tensor(w, "blk.0.attn_q.weight.lora_b", LOOM_TYPE_F32, 2, ne_b, big));
    OK(loom_gguf_writer_write_path(w, other_path, 0));
    loom_gguf_writer_free(w);
    free(big);
    refused(g, other_path, "beyond 65504");
    loom_gguf_free(g);
}
