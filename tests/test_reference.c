/*
 * Teacher-forced comparison with llama.cpp (fixtures from
 * tests/fixtures/gen_reference.py): the default model, and random-weight
 * K-quant models that `loom synth` rebuilds byte for byte (llama with the
 * Q4_K_M mix, qwen2 with Q5_K_M, biases, tied embeddings and split-half RoPE).
 *
 * Tolerances (stated once, used everywhere):
 *  - argmax equal at every position of prompt + 64 greedy tokens, except
 *    near ties: reference top-2 within EPS and loom's pick within EPS of the
 *    reference top, EPS = 0.3σ where σ is the standard deviation of the
 *    reference's last-position logits (≈ 1 logit for SmolLM2, ≈ 0.3 for the
 *    flat random llama model). Why 0.3σ: with 8-bit activations any change of
 *    summation order moves logits; loom's AVX2 kernels against its own
 *    AVX-512 ones change a top-2 gap by up to 0.29σ on the long case (and
 *    flip an argmax at a 0.19σ gap), so gaps of that order can flip between
 *    two correct implementations;
 *  - last prompt position: logits equal up to a common shift, max deviation
 *    over the reference top-40 <= MAX_DEV and RMS over the vocabulary
 *    <= RMS_DEV, both in units of the reference logits' standard deviation
 *    (σ ≈ 3 for SmolLM2, ≈ 16 for the random qwen2 model). Both sides
 *    quantize activations to 8 bits (llama.cpp rounds the scales to fp16,
 *    loom keeps fp32); that is what these absorb.
 *
 * The other families (tests/fixtures/gen_families.sh: qwen3, qwen3moe,
 * qwen2moe, gemma2, gemma3, phi3, gpt2 in two weight types each, and a
 * Mixtral-shaped llama) use the same tolerances, but for one thing: in a mixture of
 * experts a row whose router scores the last expert it takes and the next
 * one nearly alike may take the other one on one side — the two sides'
 * 8-bit activations round apart, as in any quantized model — and that row's
 * output then differs by a whole expert's share in that layer. Quantized
 * mixtures may so differ in argmax at up to 1 % of positions, rounded up
 * (measured: 0 to 2 of 941-1005; a wrong router or weighting differs nearly
 * everywhere); the F32 one (qwen3moe-f32: no quantized activations, the
 * router's input equal to rounding) must match as the dense ones do, and
 * does within 0.002σ at every position.
 * Encoders (bert, nomic-bert, two weight types each) are compared by their
 * pooled embedding: cosine similarity with llama.cpp's >= EMBED_COS for
 * every prompt (the long one is ~880-940 tokens, encoded in one batch).
 * Measured: 1 - cos <= 3e-7 for F16 weights, <= 7e-5 for Q8_0 (8-bit
 * activations on both sides, rounded differently); EMBED_COS leaves ~7x.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "parallel/engine.h"
#include "reference.h"
#include "runtime/pooling.h"
#include "runtime/text/tokenizer.h"

#define EPS_SIGMA 0.3f
#define MAX_DEV 0.25f /* σ */
#define RMS_DEV 0.08f /* σ */
#define EMBED_COS 0.9995

/* The model at path on 2 threads, context 1024, one sequence; *g is opened
 * for it (free both). */
static loom_engine *open_engine(const char *path, loom_type kv_type, int batch_rows, loom_gguf **g) {
    loom_status st = loom_gguf_open(path, g);
    cr_assert(!st, "%s", loom_status_message(st));
    loom_engine_options o = loom_engine_defaults();
    o.n_threads = 2;
    o.ctx_size = 1024;
    o.max_seqs = 1;
    o.kv_type = kv_type;
    o.batch_rows = batch_rows;
    loom_engine *e;
    st = loom_engine_create(*g, &o, NULL, NULL, NULL, &e);
    cr_assert(!st, "%s", loom_status_message(st));
    return e;
}

static void run_fixture(const char *fixture, const char *model, loom_type kv_type, int batch_rows) {
    loom_ref ref;
    loom_status st = loom_ref_load(fixture, &ref);
    cr_assert(!st, "%s", loom_status_message(st));
    char tmp[256] = "";
    if (ref.synth_args) {
        snprintf(tmp, sizeof tmp, "/tmp/loom-test-synth-%d.gguf", (int)getpid());
        cr_assert_eq(loom_test_synth(ref.synth_args, tmp), 0, "loom synth %s failed", ref.synth_args);
        uint64_t h = loom_test_fnv1a_file(tmp);
        cr_assert_eq(h, ref.fnv1a64, "loom synth %s wrote a different model (FNV-1a %016llx, fixture %016llx)",
                     ref.synth_args, (unsigned long long)h, (unsigned long long)ref.fnv1a64);
        model = tmp;
    }
    cr_assert(loom_test_file_exists(model), "missing %s: run launch/fetch-model.sh", model);
    loom_gguf *g;
    loom_engine *e = open_engine(model, kv_type, batch_rows, &g); /* long prompts are prefilled in chunks */
    char adapter[256] = "";
    if (ref.lora_args) { /* the adapter llama.cpp applied, rebuilt, at its scale */
        char args[1024];
        snprintf(adapter, sizeof adapter, "/tmp/loom-test-lora-%d.gguf", (int)getpid());
        snprintf(args, sizeof args, "--lora-of %s %s", model, ref.lora_args);
        cr_assert_eq(loom_test_synth(args, adapter), 0, "loom synth %s failed", args);
        cr_assert_eq(loom_test_fnv1a_file(adapter), ref.lora_fnv1a64, "loom synth %s wrote a different adapter", args);
        st = loom_engine_add_lora(e, adapter, (float)ref.lora_scale);
        cr_assert(!st, "%s", loom_status_message(st));
    }
    int V = loom_engine_model(e)->vocab;
    const bool experts = loom_engine_model(e)->n_experts > 0;
    for (int i = 0; i < ref.n; i++) {
        loom_ref_case *c = &ref.cases[i];
        int n = c->n_prompt + c->n_gen;
        cr_assert_eq(c->vocab, V);
        float *logits = malloc(sizeof(float) * (size_t)n * V);
        st = loom_engine_score(e, c->ids, n, logits);
        cr_assert(!st, "%s: %s", c->name, loom_status_message(st));
        loom_ref_report rep;
        loom_ref_compare(c, logits, 0.0f, &rep); /* for σ */
        loom_ref_compare(c, logits, EPS_SIGMA * rep.last_std, &rep);
        float mx = rep.last_max_dev / rep.last_std, rms = rep.last_rms_dev / rep.last_std;
        printf("  %-26s %-7s kv=%s positions %4d  mismatches %d  near-tie flips %2d  last: max dev %.3fσ rms %.3fσ"
               "  all positions' top-5: max dev %.3fσ\n",
               fixture + sizeof(LOOM_TEST_DATA "/fixtures/") - 1, c->name, kv_type == LOOM_TYPE_F16 ? "f16" : "f32",
               rep.positions, rep.mismatches, rep.near_tie_flips, mx, rms, rep.top5_max_dev / rep.last_std);
        cr_expect_leq(rep.mismatches, experts ? (rep.positions + 99) / 100 : 0,
                      "%s: argmax differs at %d positions outside near ties (first at %d)", c->name, rep.mismatches,
                      rep.first_mismatch);
        cr_expect_leq(mx, MAX_DEV, "%s: last-position logits deviate by %.3fσ", c->name, mx);
        cr_expect_leq(rms, RMS_DEV, "%s: last-position logits RMS deviation %.3fσ", c->name, rms);
        free(logits);
    }
    loom_engine_free(e);
    loom_gguf_free(g);
    if (tmp[0]) unlink(tmp);
    if (adapter[0]) unlink(adapter);
    loom_ref_free(&ref);
}

/* An encoder's fixture: pooled embeddings against llama.cpp's, by cosine. */
static void run_embed_fixture(const char *fixture, loom_type kv_type) {
    loom_ref ref;
    loom_status st = loom_ref_load(fixture, &ref);
    cr_assert(!st, "%s", loom_status_message(st));
    cr_assert(ref.synth_args && ref.pooling >= 1 && ref.pooling <= 3, "%s: a synth encoder fixture with pooling", fixture);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "/tmp/loom-test-synth-%d.gguf", (int)getpid());
    cr_assert_eq(loom_test_synth(ref.synth_args, tmp), 0, "loom synth %s failed", ref.synth_args);
    cr_assert_eq(loom_test_fnv1a_file(tmp), ref.fnv1a64, "loom synth %s wrote a different model", ref.synth_args);
    loom_gguf *g;
    loom_engine *e = open_engine(tmp, kv_type, 1024, &g); /* a sequence is encoded in one batch */
    int dim = loom_engine_model(e)->dim;
    cr_assert_eq(loom_engine_model(e)->pooling, (loom_pooling)ref.pooling, "the model's pooling is the fixture's");
    float *hidden = malloc(sizeof(float) * 1024 * (size_t)dim), *mine = malloc(sizeof(float) * (size_t)dim);
    for (int i = 0; i < ref.n; i++) {
        loom_ref_case *c = &ref.cases[i];
        cr_assert_eq(c->dim, dim);
        st = loom_engine_score(e, c->ids, c->n_prompt, hidden);
        cr_assert(!st, "%s: %s", c->name, loom_status_message(st));
        loom_embedding_pool((loom_pooling)ref.pooling, hidden, c->n_prompt, dim, true, mine);
        double dot = 0, nn = 0;
        for (int d = 0; d < dim; d++) dot += (double)mine[d] * c->embedding[d], nn += (double)c->embedding[d] * c->embedding[d];
        double cosine = dot / sqrt(nn);
        printf("  %-26s %-7s kv=%s tokens %4d  cosine %.6f (1 - cos %.2e)\n",
               fixture + sizeof(LOOM_TEST_DATA "/fixtures/") - 1, c->name, kv_type == LOOM_TYPE_F16 ? "f16" : "f32",
               c->n_prompt, cosine, 1 - cosine);
        cr_expect_geq(cosine, EMBED_COS, "%s: cosine %.6f with llama.cpp's embedding", c->name, cosine);
    }
    free(hidden);
    free(mine);
    loom_engine_free(e);
    loom_gguf_free(g);
    unlink(tmp);
    loom_ref_free(&ref);
}

/* A reranker's fixture: the score of each query / document pair (the
 * classification head on the first row; a decoder's last) against
 * llama.cpp's rank pooling. */
static void run_rank_fixture(const char *fixture, loom_type kv_type) {
    loom_ref ref;
    loom_status st = loom_ref_load(fixture, &ref);
    cr_assert(!st, "%s", loom_status_message(st));
    cr_assert(ref.synth_args && ref.pooling == LOOM_POOL_RANK, "%s: a synth reranker fixture", fixture);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "/tmp/loom-test-synth-%d.gguf", (int)getpid());
    cr_assert_eq(loom_test_synth(ref.synth_args, tmp), 0, "loom synth %s failed", ref.synth_args);
    cr_assert_eq(loom_test_fnv1a_file(tmp), ref.fnv1a64, "loom synth %s wrote a different model", ref.synth_args);
    loom_gguf *g;
    loom_engine *e = open_engine(tmp, kv_type, 1024, &g);
    const loom_model_config *mc = loom_engine_model(e);
    cr_assert(mc->pooling == LOOM_POOL_RANK && mc->n_cls_out >= 1, "the model is a reranker");
    const int W = mc->n_cls_out;
    loom_tokenizer *tok;
    cr_assert_null(loom_tokenizer_create(g, &tok));
    float *rows = malloc(sizeof(float) * 1024 * (size_t)W);
    for (int i = 0; i < ref.n; i++) {
        loom_ref_case *c = &ref.cases[i];
        cr_assert_eq(c->dim, W);
        /* the pair as llama-server builds it (gen_reference.py's RERANK_PAIRS) */
        static const char *const pairs[][3] = {
            {"rank-a", "What is the capital of France?", "Paris is the capital and largest city of France."},
            {"rank-b", "What is the capital of France?", "The quick brown fox jumps over the lazy dog."},
            {"rank-c", "how do plants make food", "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen."},
        };
        const char *const *pair = NULL;
        for (size_t k = 0; k < 3; k++)
            if (!strcmp(pairs[k][0], c->name)) pair = pairs[k];
        cr_assert_not_null(pair, "%s: not one of the pairs", c->name);
        loom_tokens t = {0};
        cr_assert_null(loom_tokenize_rerank(tok, NULL, 0, pair[1], strlen(pair[1]), pair[2], strlen(pair[2]), &t));
        cr_assert(t.n == (size_t)c->n_prompt && !memcmp(t.ids, c->ids, t.n * sizeof *t.ids),
                  "%s: loom's pair is not llama-server's (%zu and %d tokens)", c->name, t.n, c->n_prompt);
        loom_tokens_free(&t);
        st = loom_engine_score(e, c->ids, c->n_prompt, rows);
        cr_assert(!st, "%s: %s", c->name, loom_status_message(st));
        const float *mine = rows + (size_t)(mc->bidirectional ? 0 : c->n_prompt - 1) * W; /* a decoder's: the last row */
        for (int k = 0; k < W; k++) {
            const float want = c->embedding[k];
            printf("  %-26s %-7s tokens %4d  output %d %.6f, llama.cpp %.6f\n",
                   fixture + sizeof(LOOM_TEST_DATA "/fixtures/") - 1, c->name, c->n_prompt, k, mine[k], want);
            cr_expect(fabsf(mine[k] - want) <= 2e-3f + 0.01f * fabsf(want), "%s: output %d %.6f, llama.cpp %.6f", c->name,
                      k, mine[k], want);
        }
    }
    free(rows);
    loom_tokenizer_free(tok);
    loom_engine_free(e);
    loom_gguf_free(g);
    unlink(tmp);
    loom_ref_free(&ref);
}

#define FX(name) LOOM_TEST_DATA "/fixtures/" name

Test(reference, smollm2_kv_f16, .timeout = 900) { run_fixture(FX("smollm2-q4_1.json"), LOOM_DEFAULT_MODEL, LOOM_TYPE_F16, 128); }
Test(reference, smollm2_kv_f32, .timeout = 900) { run_fixture(FX("smollm2-q4_1.json"), LOOM_DEFAULT_MODEL, LOOM_TYPE_F32, 256); }
Test(reference, synth_llama_q4_k_m, .timeout = 600) { run_fixture(FX("synth-llama-q4_k_m.json"), NULL, LOOM_TYPE_F16, 100); }
Test(reference, synth_qwen2_q5_k_m, .timeout = 600) { run_fixture(FX("synth-qwen2-q5_k_m.json"), NULL, LOOM_TYPE_F32, 512); }

/* The other families: two weight types each, F16 and F32 KV caches */
Test(reference, synth_qwen3_q4_k_m, .timeout = 600) { run_fixture(FX("synth-qwen3-q4_k_m.json"), NULL, LOOM_TYPE_F16, 128); }
Test(reference, synth_qwen3_q8_0, .timeout = 600) { run_fixture(FX("synth-qwen3-q8_0.json"), NULL, LOOM_TYPE_F32, 100); }
Test(reference, synth_qwen3moe_f32, .timeout = 600) { run_fixture(FX("synth-qwen3moe-f32.json"), NULL, LOOM_TYPE_F32, 100); }
Test(reference, synth_qwen3moe_q4_k_m, .timeout = 600) { run_fixture(FX("synth-qwen3moe-q4_k_m.json"), NULL, LOOM_TYPE_F16, 128); }
Test(reference, synth_qwen3moe_q8_0, .timeout = 600) { run_fixture(FX("synth-qwen3moe-q8_0.json"), NULL, LOOM_TYPE_F32, 77); }
Test(reference, synth_qwen2moe_q8_0, .timeout = 600) { run_fixture(FX("synth-qwen2moe-q8_0.json"), NULL, LOOM_TYPE_F16, 100); }
Test(reference, synth_qwen2moe_q4_k_m, .timeout = 600) { run_fixture(FX("synth-qwen2moe-q4_k_m.json"), NULL, LOOM_TYPE_F32, 128); }
Test(reference, synth_mixtral_q5_k_m, .timeout = 600) { run_fixture(FX("synth-mixtral-q5_k_m.json"), NULL, LOOM_TYPE_F16, 100); }
Test(reference, synth_gpt_oss_f32, .timeout = 600) { run_fixture(FX("synth-gpt-oss-f32.json"), NULL, LOOM_TYPE_F32, 100); }
Test(reference, synth_gpt_oss_mxfp4, .timeout = 600) { run_fixture(FX("synth-gpt-oss-mxfp4.json"), NULL, LOOM_TYPE_F16, 128); }
Test(reference, synth_glm4moe_f32, .timeout = 600) { run_fixture(FX("synth-glm4moe-f32.json"), NULL, LOOM_TYPE_F32, 100); }
Test(reference, synth_glm4moe_q4_k_m, .timeout = 600) { run_fixture(FX("synth-glm4moe-q4_k_m.json"), NULL, LOOM_TYPE_F16, 128); }
Test(reference, synth_deepseek2_f32, .timeout = 600) { run_fixture(FX("synth-deepseek2-f32.json"), NULL, LOOM_TYPE_F32, 100); }
Test(reference, synth_deepseek2_q4_k_m, .timeout = 600) { run_fixture(FX("synth-deepseek2-q4_k_m.json"), NULL, LOOM_TYPE_F16, 128); }
Test(reference, synth_deepseek2_lite_f16, .timeout = 600) { run_fixture(FX("synth-deepseek2-lite-f16.json"), NULL, LOOM_TYPE_F16, 77); }
Test(reference, synth_deepseek2_legacy_q8_0, .timeout = 600) { run_fixture(FX("synth-deepseek2-legacy-q8_0.json"), NULL, LOOM_TYPE_F32, 100); }
Test(reference, synth_llama_iq4_nl, .timeout = 600) { run_fixture(FX("synth-llama-iq4_nl.json"), NULL, LOOM_TYPE_F16, 128); }
Test(reference, synth_llama_iq4_xs, .timeout = 600) { run_fixture(FX("synth-llama-iq4_xs.json"), NULL, LOOM_TYPE_F32, 100); }
Test(reference, synth_llama_q3_k_m, .timeout = 600) { run_fixture(FX("synth-llama-q3_k_m.json"), NULL, LOOM_TYPE_F16, 100); }
Test(reference, synth_llama_q2_k, .timeout = 600) { run_fixture(FX("synth-llama-q2_k.json"), NULL, LOOM_TYPE_F32, 128); }
Test(reference, synth_smollm3_q4_k_m, .timeout = 600) { run_fixture(FX("synth-smollm3-q4_k_m.json"), NULL, LOOM_TYPE_F16, 128); }
Test(reference, synth_smollm3_f16, .timeout = 600) { run_fixture(FX("synth-smollm3-f16.json"), NULL, LOOM_TYPE_F32, 100); }
Test(reference, synth_granite_q4_k_m, .timeout = 600) { run_fixture(FX("synth-granite-q4_k_m.json"), NULL, LOOM_TYPE_F16, 128); }
Test(reference, synth_granite_f32, .timeout = 600) { run_fixture(FX("synth-granite-f32.json"), NULL, LOOM_TYPE_F32, 77); }
Test(reference, synth_ernie4_5_q6_k, .timeout = 600) { run_fixture(FX("synth-ernie4_5-q6_k.json"), NULL, LOOM_TYPE_F16, 100); }
Test(reference, synth_mistral3_q8_0, .timeout = 600) { run_fixture(FX("synth-mistral3-q8_0.json"), NULL, LOOM_TYPE_F32, 128); }
Test(reference, synth_qwen2_yarn_q8_0, .timeout = 600) { run_fixture(FX("synth-qwen2-yarn-q8_0.json"), NULL, LOOM_TYPE_F16, 100); }
Test(reference, synth_gemma2_q5_k_m, .timeout = 600) { run_fixture(FX("synth-gemma2-q5_k_m.json"), NULL, LOOM_TYPE_F16, 77); }
Test(reference, synth_gemma2_bf16, .timeout = 600) { run_fixture(FX("synth-gemma2-bf16.json"), NULL, LOOM_TYPE_F32, 256); }
Test(reference, synth_gemma3_q4_k_m, .timeout = 600) { run_fixture(FX("synth-gemma3-q4_k_m.json"), NULL, LOOM_TYPE_F16, 64); }
Test(reference, synth_gemma3_q8_0, .timeout = 600) { run_fixture(FX("synth-gemma3-q8_0.json"), NULL, LOOM_TYPE_F16, 128); }
Test(reference, synth_phi3_q4_0, .timeout = 600) { run_fixture(FX("synth-phi3-q4_0.json"), NULL, LOOM_TYPE_F16, 128); }
Test(reference, synth_phi3_q6_k, .timeout = 600) { run_fixture(FX("synth-phi3-q6_k.json"), NULL, LOOM_TYPE_F32, 200); }
Test(reference, synth_gpt2_q5_1, .timeout = 600) { run_fixture(FX("synth-gpt2-q5_1.json"), NULL, LOOM_TYPE_F16, 128); }
Test(reference, synth_gpt2_f16, .timeout = 600) { run_fixture(FX("synth-gpt2-f16.json"), NULL, LOOM_TYPE_F32, 96); }
Test(reference, synth_llama_lora_q4_k_m, .timeout = 600) { run_fixture(FX("synth-llama-lora-q4_k_m.json"), NULL, LOOM_TYPE_F16, 100); }
Test(reference, synth_phi3_lora_q8_0, .timeout = 600) { run_fixture(FX("synth-phi3-lora-q8_0.json"), NULL, LOOM_TYPE_F32, 128); }
Test(reference, synth_qwen2_lora_f16, .timeout = 600) { run_fixture(FX("synth-qwen2-lora-f16.json"), NULL, LOOM_TYPE_F16, 77); }
Test(reference, synth_bert_f16, .timeout = 600) { run_embed_fixture(FX("synth-bert-f16.json"), LOOM_TYPE_F32); }
Test(reference, synth_bert_q8_0, .timeout = 600) { run_embed_fixture(FX("synth-bert-q8_0.json"), LOOM_TYPE_F16); }
/* XLM-RoBERTa's unigram tokenizer on a bert (bge-m3's, multilingual-e5's) */
Test(reference, synth_bert_xlmr_q8_0, .timeout = 600) { run_embed_fixture(FX("synth-bert-xlmr-q8_0.json"), LOOM_TYPE_F32); }
Test(reference, synth_nomic_bert_q8_0, .timeout = 600) { run_embed_fixture(FX("synth-nomic-bert-q8_0.json"), LOOM_TYPE_F32); }
Test(reference, synth_nomic_bert_f16, .timeout = 600) { run_embed_fixture(FX("synth-nomic-bert-f16.json"), LOOM_TYPE_F16); }
Test(reference, synth_nomic_bert_moe_q8_0, .timeout = 600) { run_embed_fixture(FX("synth-nomic-bert-moe-q8_0.json"), LOOM_TYPE_F32); }
Test(reference, synth_nomic_bert_moe_f16, .timeout = 600) { run_embed_fixture(FX("synth-nomic-bert-moe-f16.json"), LOOM_TYPE_F16); }
/* decoders converted as embedding models (Qwen3-Embedding): causal, pooled after the output norm */
Test(reference, synth_qwen3_embed_q8_0, .timeout = 600) { run_embed_fixture(FX("synth-qwen3-embed-q8_0.json"), LOOM_TYPE_F16); }
Test(reference, synth_qwen3_embed_f16, .timeout = 600) { run_embed_fixture(FX("synth-qwen3-embed-f16.json"), LOOM_TYPE_F32); }
/* a reranker (bert with a classification head, rank pooling) */
Test(reference, synth_bert_rank_f16, .timeout = 600) { run_rank_fixture(FX("synth-bert-rank-f16.json"), LOOM_TYPE_F16); }
/* ... with XLM-R's tokenizer (bge-reranker-v2-m3's): <s> query </s> document </s> */
Test(reference, synth_bert_xlmr_rank_f16, .timeout = 600) { run_rank_fixture(FX("synth-bert-xlmr-rank-f16.json"), LOOM_TYPE_F32); }
/* a decoder reranker (Qwen3-Reranker's way: the last row, two labels' rows softmaxed) */
Test(reference, synth_qwen3_rank_f16, .timeout = 600) { run_rank_fixture(FX("synth-qwen3-rank-f16.json"), LOOM_TYPE_F16); }
