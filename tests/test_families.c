/*
 * tests/test_families.c — the model families beyond llama (qwen3, qwen3moe
 * and llama's mixtures of experts, gemma2, gemma3, phi3, gpt2, bert,
 * nomic-bert) apart from their numbers against
 * llama.cpp (tests/test_reference.c, tests/mpi_equivalence.c):
 *   - the configuration each family's metadata gives (with llama.cpp's
 *     defaults), on `loom synth` files;
 *   - the planner's weight bytes equal what loom_weights_create binds, for
 *     every family over several (tp, pp) grids with uneven splits;
 *   - a TP split computes what one rank computes: in one process, the
 *     partial outputs of every shard of a stage summed by hand;
 *   - the new row operations (LayerNorm, GELU) on every ISA level against a
 *     double-precision reference; pooling;
 *   - what is refused: positions past gpt2's learned table, a causal bert,
 *     a malformed mixture of experts.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel/engine.h"
#include "parallel/plan.h"
#include "reference.h"
#include "runtime/device_forward.h"
#include "runtime/forward.h"
#include "runtime/gguf_write.h"
#include "runtime/kernels.h"
#include "runtime/model.h"
#include "runtime/ops.h"
#include "runtime/pooling.h"

#define OK(expr)                                                                   \
    do {                                                                           \
        loom_status st_ = (expr);                                                  \
        cr_assert(!st_, "%s: %s", #expr, st_ ? loom_status_message(st_) : "");     \
    } while (0)

/* ------------------------------------------------------------ models */

typedef struct {
    const char *name, *args;
} synth_model;

/* One of each family, small, with splits that are uneven at tp 2..4. */
static const synth_model models[] = {
    {"qwen3", "--arch qwen3 --layers 3 --dim 256 --heads 4 --kv-heads 2 --head-dim 128 --ffn 768 --vocab 400 "
              "--type Q4_K_M"},
    {"qwen3moe", "--arch qwen3moe --layers 2 --dim 256 --heads 4 --kv-heads 2 --head-dim 128 --ffn 512 --experts 8 "
                 "--experts-used 3 --vocab 400 --type Q4_K_M"},
    {"llama", "--arch llama --layers 2 --dim 192 --heads 6 --kv-heads 2 --ffn 416 --experts 5 --experts-used 2 "
              "--vocab 300 --type Q8_0"},
    /* a shared expert 3.5 x an expert's width: split over TP in proportion, floored to 256 columns */
    {"qwen2moe", "--arch qwen2moe --layers 2 --dim 256 --heads 8 --kv-heads 4 --ffn 256 --experts 6 --experts-used 2 "
                 "--shared-ffn 896 --vocab 300 --type Q8_0"},
    {"gemma2", "--arch gemma2 --layers 3 --dim 192 --heads 6 --kv-heads 2 --head-dim 32 --ffn 416 --vocab 300 "
               "--type Q8_0 --window 8 --attn-softcap 3"},
    {"gemma3", "--arch gemma3 --layers 7 --dim 128 --heads 4 --kv-heads 1 --head-dim 64 --ffn 320 --vocab 300 "
               "--type F16 --window 12 --rope-scale 8"},
    {"phi3", "--arch phi3 --layers 2 --dim 256 --heads 8 --kv-heads 4 --ffn 544 --vocab 300 --type Q4_0 --rope-dim 24 "
             "--ctx 4096 --longrope-ctx 512"},
    {"gpt2", "--arch gpt2 --layers 2 --dim 192 --heads 6 --kv-heads 6 --ffn 448 --vocab 300 --ctx 256 --type Q5_1"},
    {"bert", "--arch bert --layers 2 --dim 192 --heads 6 --kv-heads 6 --ffn 384 --vocab 300 --ctx 256 --type Q8_0 "
             "--pooling cls"},
    {"nomic-bert", "--arch nomic-bert --layers 2 --dim 128 --heads 4 --kv-heads 4 --ffn 256 --vocab 300 --type F32"},
    /* a mixture of ungated experts on layers 1 and 3, bert's MLP on 0 and 2 */
    {"nomic-bert-moe", "--arch nomic-bert-moe --layers 4 --dim 128 --heads 4 --kv-heads 4 --ffn 320 --experts 6 "
                       "--experts-used 2 --vocab 300 --type Q8_0"},
    {"gpt-oss", "--arch gpt-oss --layers 3 --dim 160 --heads 6 --kv-heads 2 --head-dim 32 --ffn 224 --experts 6 "
                "--experts-used 2 --vocab 300 --type MXFP4_MOE --window 7 --yarn 32 --yarn-orig 4096 --rope-theta 150000"},
    /* a leading dense layer 3 x an expert's width and shared experts, split in proportion; a nextn block */
    {"glm4moe", "--arch glm4moe --layers 3 --dim 256 --heads 8 --kv-heads 2 --head-dim 32 --rope-dim 16 --ffn 256 "
                "--experts 8 --experts-used 2 --shared-ffn 512 --dense-lead 1 --dense-ffn 768 --expert-groups 4 "
                "--groups-used 2 --expert-scale 2.5 --nextn 1 --vocab 300 --type Q8_0"},
    /* multi-head latent attention: 6 heads (uneven at tp 4), q_lora, the KV head on every rank */
    {"deepseek2", "--arch deepseek2 --layers 3 --dim 256 --heads 6 --head-dim 96 --rope-dim 32 --kv-lora 256 "
                  "--q-lora 256 --v-head-dim 64 --ffn 256 --experts 8 --experts-used 2 --shared-ffn 256 --dense-lead 1 "
                  "--dense-ffn 512 --yarn 4 --yarn-orig 512 --vocab 300 --type Q8_0"},
    /* the same from an older conversion's attn_kv_b: attn_k_b (F16) and attn_v_b derived at load */
    {"deepseek2-legacy", "--arch deepseek2 --layers 2 --dim 256 --heads 6 --head-dim 96 --rope-dim 32 --kv-lora 256 "
                         "--q-lora 256 --v-head-dim 64 --ffn 256 --experts 8 --experts-used 2 --shared-ffn 256 "
                         "--dense-lead 1 --dense-ffn 512 --legacy-kv-b --vocab 300 --type Q8_0"},
    /* IQ4_XS, held as IQ4_NL; a tied head (its copy IQ4_NL, the embedding the file's rows) */
    {"llama-iq4_xs", "--arch llama --layers 2 --dim 512 --heads 8 --kv-heads 4 --ffn 1536 --vocab 300 --type IQ4_XS --tied"},
    /* llama without RoPE on every fourth layer (layers 3 and 7) */
    {"smollm3", "--arch smollm3 --layers 8 --dim 128 --heads 4 --kv-heads 1 --head-dim 32 --ffn 256 --vocab 300 --type Q8_0 "
                "--tied"},
    /* llama with Granite 3's four scales */
    {"granite", "--arch granite --layers 2 --dim 128 --heads 4 --kv-heads 2 --head-dim 32 --ffn 256 --vocab 300 --type Q8_0"},
    /* llama with Ministral 3's YaRN keys and temperature tuning */
    {"mistral3", "--arch mistral3 --layers 2 --dim 128 --heads 4 --kv-heads 2 --head-dim 32 --ffn 256 --vocab 300 --type Q8_0 "
                 "--yarn 16 --yarn-orig 128"},
};
#define N_MODELS (sizeof models / sizeof models[0])

static loom_gguf *open_synth(const synth_model *m, char *path, size_t cap) {
    snprintf(path, cap, "/tmp/loom-test-families-%s-%d.gguf", m->name, (int)getpid());
    cr_assert_eq(loom_test_synth(m->args, path), 0, "loom synth %s failed", m->args);
    loom_gguf *g;
    OK(loom_gguf_open(path, &g));
    return g;
}

/* A synth model written and read: its file, configuration and plan model
 * (synth_unload removes the file). */
typedef struct {
    char path[256];
    loom_gguf *g;
    loom_model_config c;
    loom_plan_model m;
} synth_loaded;

static void synth_load(const synth_model *sm, synth_loaded *s) {
    s->g = open_synth(sm, s->path, sizeof s->path);
    OK(loom_model_config_read(s->g, &s->c));
    OK(loom_plan_model_read(s->g, &s->c, &s->m));
}

static void synth_unload(synth_loaded *s) {
    loom_plan_model_free(&s->m);
    loom_gguf_free(s->g);
    unlink(s->path);
}

/* ------------------------------------------------------------ config */

Test(families, config_of_each_family) {
    char path[256];
    loom_model_config c;
    for (size_t i = 0; i < N_MODELS; i++) {
        loom_gguf *g = open_synth(&models[i], path, sizeof path);
        OK(loom_model_config_read(g, &c));
        cr_assert(!strncmp(models[i].name, c.arch_name, strlen(c.arch_name)), "%s: %s", models[i].name, c.arch_name);
        switch (c.arch) {
        case LOOM_ARCH_QWEN3:
            cr_assert(c.qk_norm && c.rope_neox && !c.qkv_bias && c.head_dim == 128 && !c.n_experts);
            break;
        case LOOM_ARCH_QWEN3MOE: /* ffn: expert_feed_forward_length, not feed_forward_length (512 x 3) */
            cr_assert(c.qk_norm && c.rope_neox && c.n_experts == 8 && c.n_experts_used == 3 && c.expert_norm &&
                      c.ffn == 512, "qwen3moe: %d experts, %d used, width %d", c.n_experts, c.n_experts_used, c.ffn);
            break;
        case LOOM_ARCH_QWEN2MOE: /* not renormalised; a shared expert */
            cr_assert(c.rope_neox && c.qkv_bias && c.n_experts == 6 && c.n_experts_used == 2 && !c.expert_norm &&
                      c.ffn == 256 && c.ffn_shared == 896, "qwen2moe: %d experts of %d, shared %d, norm %d",
                      c.n_experts, c.ffn, c.ffn_shared, c.expert_norm);
            break;
        case LOOM_ARCH_LLAMA: /* Mixtral's shape */
            if (!strcmp(models[i].name, "smollm3")) {
                cr_assert(c.no_rope_every == 4 && !c.rope_neox && !c.n_experts && c.rope_dim == 32, "smollm3");
                for (int l = 0; l < 8; l++) cr_assert_eq(loom_layer_rotates(&c, l), l != 3 && l != 7, "layer %d", l);
                break;
            }
            cr_assert(c.no_rope_every == 0 && loom_layer_rotates(&c, 3), "%s rotates every layer", models[i].name);
            if (!strcmp(models[i].name, "mistral3")) { /* yarn_log_multiplier 1: YaRN's magnitude divided out */
                cr_assert(c.rope_yarn && c.ctx_orig == 128 && c.yarn_beta_fast == 16.0f && c.yarn_beta_slow == 2.0f &&
                              fabsf(c.rope_attn_factor - 1.0f) < 1e-6f && c.attn_temp_scale == 0.4f && !loom_plain_llama(&c),
                          "mistral3: betas %g %g, magnitude %g, temperature %g", c.yarn_beta_fast, c.yarn_beta_slow,
                          c.rope_attn_factor, c.attn_temp_scale);
                break;
            }
            if (!strcmp(models[i].name, "granite")) {
                cr_assert(c.embd_scale == 12.0f && c.residual_scale == 0.22f && c.attn_scale == 1.0f / 32 &&
                              c.logit_scale == 8.0f && !loom_plain_llama(&c),
                          "granite: embedding %g, residual %g, scores %g, logits %g", c.embd_scale, c.residual_scale,
                          c.attn_scale, c.logit_scale);
                break;
            }
            cr_assert(loom_plain_llama(&c), "%s: llama's own computation", models[i].name);
            if (!strcmp(models[i].name, "llama-iq4_xs")) break;
            cr_assert(!c.qk_norm && !c.rope_neox && c.n_experts == 5 && c.n_experts_used == 2 && c.expert_norm &&
                      c.ffn == 416, "llama with experts: %d experts, %d used, width %d", c.n_experts,
                      c.n_experts_used, c.ffn);
            break;
        case LOOM_ARCH_GEMMA2:
            cr_assert(c.post_norms && !c.qk_norm && c.act == LOOM_ACT_GELU && c.tied_embeddings);
            cr_assert(c.attn_softcap == 3.0f && c.final_softcap == 30.0f, "gemma2 soft-caps %g %g", c.attn_softcap,
                      c.final_softcap);
            cr_assert(fabsf(c.embd_scale - sqrtf(192)) < 1e-5f && fabsf(c.attn_scale - 1 / sqrtf(32)) < 1e-7f);
            cr_assert(c.swa_window == 8 && loom_layer_is_swa(&c, 0) && !loom_layer_is_swa(&c, 1) &&
                      loom_layer_is_swa(&c, 2), "gemma2 slides on even layers");
            cr_assert(c.rope_base_swa == c.rope_base && c.rope_scale_swa == c.rope_freq_scale);
            break;
        case LOOM_ARCH_GEMMA3:
            cr_assert(c.post_norms && c.qk_norm && c.attn_softcap == 0 && c.final_softcap == 0);
            for (int l = 0; l < 7; l++) cr_assert_eq(loom_layer_is_swa(&c, l), l != 5, "gemma3 layer %d", l);
            cr_assert(c.rope_base_swa == 10000.0f && c.rope_scale_swa == 1.0f && c.rope_freq_scale == 0.125f,
                      "gemma3: local layers rotate with base 10000 unscaled, global ones scaled");
            break;
        case LOOM_ARCH_PHI3:
            cr_assert(c.fused_qkv && c.fused_gate_up && c.rope_dim == 24 && c.has_rope_long_short && c.ctx_orig == 512);
            cr_assert(fabsf(c.rope_attn_factor - sqrtf(1 + logf(8) / logf(512))) < 1e-6f);
            break;
        case LOOM_ARCH_GPT2:
            cr_assert(c.norm == LOOM_NORM_LAYER && c.pos == LOOM_POS_LEARNED && c.rope_dim == 0 && c.fused_qkv &&
                      c.qkv_bias && c.attn_out_bias && c.ffn_bias && c.ffn_plain && c.act == LOOM_ACT_GELU);
            break;
        case LOOM_ARCH_BERT:
            cr_assert(c.encoder && c.bidirectional && c.post_ln && c.embd_norm && c.type_embd &&
                      c.pos == LOOM_POS_LEARNED && c.pooling == LOOM_POOL_CLS && !c.fused_qkv && c.qkv_bias);
            break;
        case LOOM_ARCH_NOMIC_BERT:
            if (!strcmp(c.arch_name, "nomic-bert-moe")) { /* biases, GELU; experts not renormalised, on odd layers */
                cr_assert(c.encoder && c.fused_qkv && c.qkv_bias && c.attn_out_bias && c.pos == LOOM_POS_ROPE &&
                              c.ffn_plain && c.ffn_bias && c.act == LOOM_ACT_GELU && c.n_experts == 6 &&
                              c.n_experts_used == 2 && !c.expert_norm && c.moe_every == 2 && c.ffn == 320 &&
                              c.ffn_dense == 320 && !c.n_dense_lead,
                          "nomic-bert-moe: %d experts of %d, every %d", c.n_experts, c.ffn, c.moe_every);
                for (int l = 0; l < 4; l++) cr_assert_eq(loom_layer_dense(&c, l), l % 2 == 0, "nomic-bert-moe layer %d", l);
                break;
            }
            cr_assert(c.encoder && c.fused_qkv && c.pos == LOOM_POS_ROPE && !c.ffn_plain && c.act == LOOM_ACT_SILU &&
                      c.pooling == LOOM_POOL_MEAN && !c.n_experts);
            break;
        case LOOM_ARCH_GPT_OSS: /* experts weighted by their own softmax, biases, sinks, YaRN, even layers slide */
            cr_assert(c.rope_neox && c.qkv_bias && c.attn_out_bias && c.attn_sinks && c.act == LOOM_ACT_SWIGLU_OAI &&
                      c.n_experts == 6 && c.n_experts_used == 2 && !c.expert_norm && c.expert_weight_softmax &&
                      c.router_bias && c.expert_bias && c.ffn == 224 && c.head_dim == 32);
            cr_assert(c.swa_window == 7 && loom_layer_is_swa(&c, 0) && !loom_layer_is_swa(&c, 1) &&
                      loom_layer_is_swa(&c, 2) && c.rope_base_swa == c.rope_base);
            cr_assert(c.rope_yarn && c.rope_freq_scale == 1.0f / 32 && c.ctx_orig == 4096 && c.yarn_beta_fast == 32 &&
                      c.yarn_beta_slow == 1 && fabsf(c.rope_attn_factor - (1 + 0.1f * logf(32))) < 1e-6f,
                      "gpt-oss YaRN: scale %g, orig %d, magnitude %g", c.rope_freq_scale, c.ctx_orig, c.rope_attn_factor);
            break;
        case LOOM_ARCH_GLM4MOE: /* 4 blocks, the last a nextn one; sigmoid routing with a selection bias, groups */
            cr_assert(c.n_layers == 3 && c.rope_neox && c.qkv_bias && !c.qk_norm && !c.attn_out_bias && c.rope_dim == 16 &&
                      c.n_experts == 8 && c.n_experts_used == 2 && c.ffn == 256 && c.expert_norm && c.expert_sigmoid &&
                      c.expert_probs_bias && c.expert_weights_scale == 2.5f && c.n_expert_groups == 4 &&
                      c.n_group_used == 2 && c.ffn_shared == 512 && !c.shared_gated && c.n_dense_lead == 1 &&
                      c.ffn_dense == 768 && loom_layer_dense(&c, 0) && !loom_layer_dense(&c, 1),
                      "glm4moe: %d layers, %d experts of %d, shared %d, dense %d x %d", c.n_layers, c.n_experts, c.ffn,
                      c.ffn_shared, c.n_dense_lead, c.ffn_dense);
            break;
        case LOOM_ARCH_DEEPSEEK2: /* one KV head of the latent and the rotated part; YaRN's magnitude in the scale */
            if (c.mla_kv_b) { /* the older conversion read as the same latent attention */
                cr_assert(c.mla && c.n_kv_heads == 1 && c.head_dim == 256 + 32 && c.mla_k_dim == 96 && c.mla_v_dim == 64,
                          "deepseek2 (attn_kv_b): %d KV heads of %d, %d/%d", c.n_kv_heads, c.head_dim, c.mla_k_dim,
                          c.mla_v_dim);
                break;
            }
            cr_assert(c.mla && c.n_kv_heads == 1 && c.head_dim == 256 + 32 && c.kv_lora == 256 && c.q_lora == 256 &&
                      c.mla_k_dim == 96 && c.mla_v_dim == 64 && c.rope_dim == 32 && !c.rope_neox && c.expert_sigmoid &&
                      c.expert_probs_bias && c.n_dense_lead == 1 && c.ffn_shared == 256 && loom_o_head_dim(&c) == 64,
                      "deepseek2: head %d, latent %d, q_lora %d, %d/%d", c.head_dim, c.kv_lora, c.q_lora, c.mla_k_dim,
                      c.mla_v_dim);
            {
                const float ms = 1 + 0.1f * logf(4); /* mscale_all_dim 1: the magnitude squared in the scale */
                cr_assert(c.rope_yarn && c.rope_attn_factor == 1.0f && fabsf(c.attn_scale - ms * ms / sqrtf(96)) < 1e-6f,
                          "deepseek2 YaRN: rotation magnitude %g, score scale %g", c.rope_attn_factor, c.attn_scale);
            }
            break;
        default: cr_assert_fail("unexpected family %s", c.arch_name);
        }
        loom_gguf_free(g);
        unlink(path);
    }
}

/* ------------------------------------------------------------ plan bytes */

/* Switches to the AVX2 level, which holds every type with an r8 layout in
 * it (runtime/cpu/dispatch.c), and returns the level to restore. */
static loom_isa use_avx2_r8(void) {
    char missing[128];
    cr_assert(loom_isa_supported(LOOM_ISA_AVX2, missing, sizeof missing),
              "this test needs the AVX2 level, which holds every type with an r8 layout in it (missing: %s)", missing);
    const loom_isa was = loom_isa_get();
    OK(loom_isa_set(LOOM_ISA_AVX2));
    cr_assert(loom_matmul_prefers_r8(LOOM_TYPE_Q4_0) && loom_matmul_prefers_r8(LOOM_TYPE_Q4_K),
              "the AVX2 level does not hold Q4_0 and Q4_K in the r8 layout (LOOM_R8 set?)");
    return was;
}

/* The plan counts the weights as a CPU rank holds them, every type with an
 * r8 layout in it (parallel/plan_model.c), as the AVX2 level does. */
Test(families, plan_weight_bytes_are_what_the_weights_bind) {
    static const int grids[][2] = {{1, 1}, {2, 1}, {3, 1}, {4, 1}, {2, 2}, {1, 2}};
    const loom_isa was = use_avx2_r8();
    for (size_t i = 0; i < N_MODELS; i++) {
        synth_loaded s;
        synth_load(&models[i], &s);
        int planned = 0;
        for (size_t k = 0; k < sizeof grids / sizeof grids[0]; k++) {
            loom_plan_request req = loom_plan_request_defaults(grids[k][0], grids[k][1]);
            req.engine.ctx_size = 256;
            loom_plan *p;
            loom_status st = loom_plan_make(&s.m, &req, NULL, &p);
            if (st) { /* a tp the blocks do not allow: said so */
                cr_assert_eq(loom_status_code(st), LOOM_ERR_PLAN, "%s: %s", models[i].name, loom_status_message(st));
                loom_status_free(st);
                continue;
            }
            planned++;
            for (int r = 0; r < p->world; r++) {
                loom_weights *w;
                OK(loom_weights_create(s.g, &s.c, &p->ranks[r].shard, &w));
                OK(loom_weights_repack(w, s.g, NULL)); /* the AVX2 level: every type with an r8 layout in it */
                cr_assert_eq((int64_t)(w->bytes_mapped + w->bytes_copied), p->ranks[r].weight_bytes,
                             "%s tp %d pp %d rank %d: binds %zu + %zu bytes, the plan says %lld", models[i].name,
                             grids[k][0], grids[k][1], r, w->bytes_mapped, w->bytes_copied,
                             (long long)p->ranks[r].weight_bytes);
                loom_weights_free(w);
            }
            loom_plan_free(p);
        }
        cr_assert_geq(planned, 4, "%s: only %d of the grids could be planned", models[i].name, planned);
        synth_unload(&s);
    }
    OK(loom_isa_set(was));
}

/* How TP splits a mixture: by whole experts where the columns' blocks do
 * not split evenly and the experts do (qwen2moe: 8 blocks, 6 experts: tp 3),
 * by columns otherwise (tp 2); LOOM_MOE_SPLIT forces either (or is refused);
 * the bytes the weights bind are the plan's either way. */
Test(families, mixtures_split_by_experts_or_columns) {
    const loom_isa was = use_avx2_r8();
    synth_loaded s;
    synth_load(&models[3], &s);
    cr_assert_str_eq(models[3].name, "qwen2moe");
    static const struct {
        const char *env;
        int tp;
        bool experts;
    } cases[] = {{NULL, 3, true}, {NULL, 2, false}, {"experts", 2, true}, {"columns", 3, false}, {"auto", 3, true}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (cases[i].env) setenv("LOOM_MOE_SPLIT", cases[i].env, 1);
        else unsetenv("LOOM_MOE_SPLIT");
        loom_plan_request req = loom_plan_request_defaults(cases[i].tp, 1);
        req.engine.ctx_size = 256;
        loom_plan *p;
        OK(loom_plan_make(&s.m, &req, NULL, &p));
        int64_t shared_at = 0;
        for (int r = 0; r < p->world; r++) {
            const loom_shard *sh = &p->ranks[r].shard;
            cr_assert_eq(sh->split_experts, cases[i].experts, "case %zu rank %d", i, r);
            if (sh->split_experts) {
                cr_assert(sh->expert_end - sh->expert_begin == 6 / cases[i].tp && sh->shared_begin == shared_at,
                          "case %zu rank %d: experts [%d, %d), shared [%lld, %lld)", i, r, sh->expert_begin,
                          sh->expert_end, (long long)sh->shared_begin, (long long)sh->shared_end);
                shared_at = sh->shared_end;
            }
            loom_weights *w;
            OK(loom_weights_create(s.g, &s.c, sh, &w));
            OK(loom_weights_repack(w, s.g, NULL)); /* the plan counts the r8 copies (use_avx2_r8) */
            cr_assert_eq((int64_t)(w->bytes_mapped + w->bytes_copied), p->ranks[r].weight_bytes, "case %zu rank %d", i, r);
            loom_weights_free(w);
        }
        if (cases[i].experts) cr_assert_eq(shared_at, 896, "the shared expert's columns tile");
        loom_plan_free(p);
    }
    setenv("LOOM_MOE_SPLIT", "rows", 1);
    loom_plan_request req = loom_plan_request_defaults(2, 1);
    loom_plan *p = NULL;
    loom_status st = loom_plan_make(&s.m, &req, NULL, &p);
    cr_assert(st && strstr(loom_status_message(st), "LOOM_MOE_SPLIT=rows"), "%s", st ? loom_status_message(st) : "planned");
    loom_status_free(st);
    unsetenv("LOOM_MOE_SPLIT");
    synth_unload(&s);
    OK(loom_isa_set(was));
}

/* ------------------------------------------------------------ TP by hand */

/* Runs `n` tokens of one sequence through layer range [0, layers) of `g`
 * split into `tp` shards of one stage by the planner, summing the
 * partials of every block by hand (what the all-reduce does), and returns
 * the last layer's hidden states (n, dim) — or, with tp 1, the whole model. */
static float *run_split_as(const loom_gguf *g, const loom_model_config *c, const loom_plan_model *m, int tp,
                           const int32_t *tokens, int n, bool repack, int threads) {
    loom_plan_request req = loom_plan_request_defaults(tp, 1);
    req.engine.ctx_size = 64;
    loom_plan *p;
    OK(loom_plan_make(m, &req, NULL, &p));
    loom_weights *w[4];
    loom_kv_cache *kv[4];
    loom_forward *f[4];
    loom_pool *pool;
    OK(loom_pool_create(threads, &pool));
    int32_t pos[64], seq[64];
    int8_t want[64];
    for (int i = 0; i < n; i++) pos[i] = i, seq[i] = 0, want[i] = 1;
    loom_batch b = {n, tokens, NULL, pos, seq, want};
    const int dim = c->dim;
    for (int t = 0; t < tp; t++) {
        OK(loom_weights_create(g, c, &p->ranks[t].shard, &w[t]));
        if (repack) {
            const size_t before = w[t]->bytes_mapped + w[t]->bytes_copied;
            OK(loom_weights_repack(w[t], g, NULL));
            loom_mat *ms[64];
            cr_assert_leq(loom_layer_max_mats(c), 64);
            for (int l = 0; l < c->n_layers; l++) {
                const int nm = loom_layer_mats(c, &w[t]->layers[l], ms);
                const int shared = c->n_experts && w[t]->layers[l].w_up.data ? 3 : 0;
                cr_assert_eq(nm, (c->n_experts ? 5 + 3 * c->n_experts + shared : 7), "layer %d lists %d matrices", l, nm);
                for (int i = 0; i < nm; i++)
                    cr_assert(ms[i]->r8 == loom_matmul_prefers_r8(ms[i]->type),
                              "tp %d rank %d layer %d matrix %d (%s): r8 %d", tp, t, l, i,
                              loom_type_name(ms[i]->type), ms[i]->r8);
            }
            const size_t after = w[t]->bytes_mapped + w[t]->bytes_copied; /* + the padding of partial groups */
            cr_assert(after >= before && after - before < (size_t)8 * 4096 * loom_layer_max_mats(c) * c->n_layers,
                      "bytes %zu before repacking, %zu after", before, after);
        }
        loom_kv_config kc = {.n_layers = c->n_layers, .n_kv_heads = w[t]->n_kv, .head_dim = c->head_dim,
                             .type = LOOM_TYPE_F32, .block_tokens = 16, .n_blocks = 4, .max_seqs = 1, .max_ctx = 64};
        OK(loom_kv_create(&kc, &kv[t]));
        OK(loom_kv_reserve(kv[t], 0, n));
        OK(loom_forward_create(w[t], kv[t], pool, 64, &f[t]));
        OK(loom_forward_prepare(f[t], &b));
        OK(loom_forward_embed(f[t], &b));
    }
    float *sum = malloc(sizeof(float) * (size_t)n * dim), *out = malloc(sizeof(float) * (size_t)n * dim);
#define ALL_REDUCE(buf_of)                                                                          \
    do {                                                                                            \
        memset(sum, 0, sizeof(float) * (size_t)n * dim);                                            \
        for (int t = 0; t < tp; t++)                                                                \
            for (int i = 0; i < n * dim; i++) sum[i] += (buf_of)[i];                                \
    } while (0)
    ALL_REDUCE(loom_forward_hidden(f[t]));
    for (int t = 0; t < tp; t++) {
        memcpy(loom_forward_hidden(f[t]), sum, sizeof(float) * (size_t)n * dim);
        loom_forward_embed_finish(f[t], &b);
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int blk = 0; blk < 2; blk++) {
            for (int t = 0; t < tp; t++) {
                if (blk == 0) OK(loom_forward_attention(f[t], l, &b, loom_forward_scratch(f[t])));
                else loom_forward_mlp(f[t], l, n, loom_forward_scratch(f[t]));
            }
            ALL_REDUCE(loom_forward_scratch(f[t]));
            for (int t = 0; t < tp; t++) {
                memcpy(loom_forward_scratch(f[t]), sum, sizeof(float) * (size_t)n * dim);
                loom_forward_residual(f[t], l, blk ? LOOM_BLOCK_MLP : LOOM_BLOCK_ATTN, n, loom_forward_scratch(f[t]));
            }
        }
#undef ALL_REDUCE
    memcpy(out, loom_forward_hidden(f[0]), sizeof(float) * (size_t)n * dim);
    for (int t = 1; t < tp; t++) /* every TP rank holds the same residual stream */
        cr_assert(!memcmp(out, loom_forward_hidden(f[t]), sizeof(float) * (size_t)n * dim), "TP rank %d differs", t);
    for (int t = 0; t < tp; t++) {
        loom_forward_free(f[t]);
        loom_kv_free(kv[t]);
        loom_weights_free(w[t]);
    }
    loom_pool_free(pool);
    loom_plan_free(p);
    free(sum);
    return out;
}

static float *run_split(const loom_gguf *g, const loom_model_config *c, const loom_plan_model *m, int tp,
                        const int32_t *tokens, int n) {
    return run_split_as(g, c, m, tp, tokens, n, false, 1);
}

/* Weights in the r8 layout (loom_weights_repack; runtime/kernels.h) give
 * the same hidden states, bit for bit, as the GGUF rows on the AVX2 level,
 * which holds Q4_0 and Q4_K that way: whole matrices, fused QKV and gate/up
 * views (phi3), a Q4_K_M mix (its Q6_K matrices stay rows), and the compact
 * column slices of a TP split (uneven at tp 3). */
Test(families, r8_layout_gives_the_gguf_rows_bits) {
    static const synth_model q4_models[] = {
        {"llama", "--arch llama --layers 2 --dim 256 --heads 8 --kv-heads 2 --ffn 704 --vocab 300 --type Q4_0"},
        {"phi3", "--arch phi3 --layers 2 --dim 256 --heads 8 --kv-heads 4 --ffn 544 --vocab 300 --type Q4_0 "
                 "--rope-dim 24"},
        {"llama", "--arch llama --layers 2 --dim 768 --heads 12 --kv-heads 3 --ffn 1536 --vocab 300 --type Q4_K_M"},
        /* a mixture of experts: each expert's slices repacked apart (the down copies at tp 3) */
        {"moe", "--arch llama --layers 2 --dim 256 --heads 8 --kv-heads 2 --ffn 384 --experts 4 --experts-used 2 "
                "--vocab 300 --type Q4_0"},
        /* the embedding read from its tied head's copy (Q6_K) */
        {"tied", "--arch llama --layers 2 --dim 768 --heads 12 --kv-heads 3 --ffn 1536 --vocab 300 --type Q4_K_M --tied"},
    };
    const loom_isa was = use_avx2_r8();
    int32_t tokens[24];
    for (int i = 0; i < 24; i++) tokens[i] = (int32_t)((i * 41 + 7) % 300);
    for (size_t i = 0; i < sizeof q4_models / sizeof q4_models[0]; i++) {
        synth_loaded s;
        synth_load(&q4_models[i], &s);
        for (int tp = 1; tp <= 3; tp += 2)
            for (int n = 1; n <= 24; n += 23) {
                float *rows = run_split_as(s.g, &s.c, &s.m, tp, tokens, n, false, 1);
                float *r8 = run_split_as(s.g, &s.c, &s.m, tp, tokens, n, true, 1);
                cr_assert(!memcmp(rows, r8, sizeof(float) * (size_t)n * s.c.dim),
                          "%s tp %d, %d tokens: the r8 layout changes the hidden states", q4_models[i].name, tp, n);
                free(rows);
                free(r8);
            }
        synth_unload(&s);
    }
    OK(loom_isa_set(was));
}

/* Which matrices get the layout: every lm head, tied or not, on every rank
 * that holds it — a last stage without the table computes what one rank
 * does (on AVX-512 the layout's bits are the AVX2 level's; a tied head in
 * rows on one side only was caught by mpi_equivalence on gemma2 Q5_K_M,
 * pp 2) — and the layers' matrices. A tied table on the head's rank is the
 * head's copy (held once: the plan counts it once); on a first stage
 * without the head it stays in the file's rows. */
Test(families, r8_layout_takes_the_lm_head_on_every_stage) {
    static const synth_model models[] = {
        {"tied", "--arch llama --layers 2 --dim 256 --heads 8 --kv-heads 2 --ffn 512 --vocab 300 --type Q4_0 --tied"},
        {"untied", "--arch llama --layers 2 --dim 256 --heads 8 --kv-heads 2 --ffn 512 --vocab 300 --type Q4_0"},
    };
    static const char *const what[] = {"last stage", "one rank", "first stage"};
    const loom_isa was = use_avx2_r8();
    char path[256];
    for (int i = 0; i < 2; i++) {
        loom_gguf *g = open_synth(&models[i], path, sizeof path);
        loom_model_config c;
        OK(loom_model_config_read(g, &c));
        cr_assert_eq(c.tied_embeddings, i == 0, "%s: tied_embeddings %d", models[i].name, c.tied_embeddings);
        for (int k = 0; k < 3; k++) {
            loom_shard sh = loom_shard_full(&c);
            if (k == 0) sh.layer_begin = 1, sh.embed = false; /* (a mixture's layers: r8_layout_gives_the_gguf_rows_bits) */
            if (k == 2) sh.layer_end = 1, sh.head = false;
            loom_weights *w;
            OK(loom_weights_create(g, &c, &sh, &w));
            OK(loom_weights_repack(w, g, NULL));
            if (sh.head)
                cr_assert(w->lm_head.data && w->lm_head.r8, "%s, %s: lm head in rows", models[i].name, what[k]);
            if (sh.embed)
                cr_assert(w->embed.r8 == (i == 0 && sh.head) &&
                              (w->embed.data == w->lm_head.data) == (i == 0 && sh.head),
                          "%s, %s: embedding %s, %s the head's bytes", models[i].name, what[k],
                          w->embed.r8 ? "interleaved" : "in rows",
                          w->embed.data == w->lm_head.data ? "sharing" : "not sharing");
            cr_assert(w->layers[0].wq.r8 && w->layers[0].w_down.r8, "%s: layer matrices in rows", models[i].name);
            loom_weights_free(w);
        }
        loom_gguf_free(g);
        unlink(path);
    }
    OK(loom_isa_set(was));
}

/* loom_weights_repack over a pool of 3 threads (each matrix's rows split as
 * the forward pass splits them: ranges of 16 rows, a partial group last)
 * writes the bytes one thread writes. */
Test(families, parallel_repack_equals_serial) {
    static const synth_model model = {
        "tied", "--arch llama --layers 2 --dim 768 --heads 12 --kv-heads 3 --ffn 1536 --vocab 300 --type Q4_K_M --tied"};
    const loom_isa was = use_avx2_r8();
    char path[256];
    loom_gguf *g = open_synth(&model, path, sizeof path);
    loom_model_config c;
    OK(loom_model_config_read(g, &c));
    loom_pool *pool;
    OK(loom_pool_create(3, &pool));
    const loom_shard sh = loom_shard_full(&c);
    loom_weights *w[2];
    for (int i = 0; i < 2; i++) {
        OK(loom_weights_create(g, &c, &sh, &w[i]));
        OK(loom_weights_repack(w[i], g, i ? pool : NULL));
    }
    const loom_mat *ms[2][15];
    int n = 0;
    for (int i = 0; i < 2; i++) {
        n = 0;
        for (int l = 0; l < c.n_layers; l++) {
            const loom_layer *L = &w[i]->layers[l];
            const loom_mat *lm[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (int j = 0; j < 7; j++) ms[i][n++] = lm[j];
        }
        ms[i][n++] = &w[i]->lm_head;
    }
    for (int j = 0; j < n; j++) {
        const loom_mat *a = ms[0][j], *b = ms[1][j];
        cr_assert(a->r8 && b->r8 && a->rows == b->rows && a->stride == b->stride, "matrix %d: r8 %d %d", j, a->r8, b->r8);
        cr_assert(!memcmp(a->data, b->data, loom_r8_bytes(a->type, a->rows, a->cols)),
                  "matrix %d (%lld x %lld %s): the pool's repack differs from one thread's", j, (long long)a->rows,
                  (long long)a->cols, loom_type_name(a->type));
    }
    for (int i = 0; i < 2; i++) loom_weights_free(w[i]);
    loom_pool_free(pool);
    loom_gguf_free(g);
    unlink(path);
    OK(loom_isa_set(was));
}

/* The hidden states of a TP split equal one rank's up to float rounding of
 * the split sums (F32/F16 models: no 8-bit activations to amplify it). */
Test(families, tp_split_sums_to_one_rank) {
    static const synth_model split_models[] = {
        {"qwen3", "--arch qwen3 --layers 2 --dim 96 --heads 6 --kv-heads 2 --head-dim 16 --ffn 200 --vocab 300 --type F32"},
        {"gemma2", "--arch gemma2 --layers 3 --dim 96 --heads 6 --kv-heads 3 --head-dim 24 --ffn 200 --vocab 300 "
                   "--type F32 --window 5 --attn-softcap 2"},
        {"gemma3", "--arch gemma3 --layers 3 --dim 96 --heads 6 --kv-heads 2 --head-dim 32 --ffn 200 --vocab 300 "
                   "--type F16 --window 4 --window-pattern 2 --rope-scale 4"},
        {"phi3", "--arch phi3 --layers 2 --dim 96 --heads 6 --kv-heads 3 --ffn 200 --vocab 300 --type F32 --rope-dim 12 "
                 "--ctx 4096 --longrope-ctx 32"},
        {"qwen3moe", "--arch qwen3moe --layers 2 --dim 96 --heads 6 --kv-heads 2 --head-dim 16 --ffn 200 --experts 6 "
                     "--experts-used 2 --vocab 300 --type F32"},
        {"mixtral", "--arch llama --layers 2 --dim 96 --heads 6 --kv-heads 2 --ffn 136 --experts 4 --experts-used 3 "
                    "--vocab 300 --type F16"},
        {"qwen2moe", "--arch qwen2moe --layers 2 --dim 96 --heads 6 --kv-heads 2 --ffn 200 --experts 6 --experts-used 2 "
                     "--shared-ffn 1000 --vocab 300 --type F32"},
        {"gpt2", "--arch gpt2 --layers 2 --dim 96 --heads 6 --kv-heads 6 --ffn 200 --vocab 300 --ctx 64 --type F32"},
        {"bert", "--arch bert --layers 2 --dim 96 --heads 6 --kv-heads 6 --ffn 200 --vocab 300 --ctx 64 --type F32"},
        {"nomic-bert", "--arch nomic-bert --layers 2 --dim 96 --heads 6 --kv-heads 6 --ffn 200 --vocab 300 --type F32"},
        {"nomic-bert-moe", "--arch nomic-bert-moe --layers 4 --dim 96 --heads 6 --kv-heads 6 --ffn 200 --experts 6 "
                           "--experts-used 2 --vocab 300 --type F32"},
        {"gpt-oss", "--arch gpt-oss --layers 3 --dim 96 --heads 6 --kv-heads 2 --head-dim 16 --ffn 200 --experts 6 "
                    "--experts-used 2 --vocab 300 --type F32 --window 9 --yarn 8 --yarn-orig 32"},
        {"glm4moe", "--arch glm4moe --layers 3 --dim 96 --heads 6 --kv-heads 2 --head-dim 16 --rope-dim 8 --ffn 200 "
                    "--experts 6 --experts-used 2 --shared-ffn 200 --dense-lead 1 --dense-ffn 520 --expert-groups 3 "
                    "--groups-used 2 --vocab 300 --type F32"},
        {"deepseek2", "--arch deepseek2 --layers 3 --dim 96 --heads 6 --head-dim 48 --rope-dim 16 --kv-lora 64 "
                      "--q-lora 80 --v-head-dim 24 --ffn 200 --experts 6 --experts-used 2 --shared-ffn 200 --dense-lead 1 "
                      "--dense-ffn 520 --vocab 300 --type F32"},
    };
    int32_t tokens[40];
    for (int i = 0; i < 40; i++) tokens[i] = (int32_t)((i * 37 + 11) % 300);
    for (size_t i = 0; i < sizeof split_models / sizeof split_models[0]; i++) {
        synth_loaded s;
        synth_load(&split_models[i], &s);
        float *one = run_split(s.g, &s.c, &s.m, 1, tokens, 40);
        for (int tp = 2; tp <= 4; tp++) {
            float *split = run_split(s.g, &s.c, &s.m, tp, tokens, 40);
            double worst = 0, scale = 0;
            for (int k = 0; k < 40 * s.c.dim; k++) {
                double d = fabs((double)split[k] - one[k]);
                worst = d > worst ? d : worst;
                scale = fabs(one[k]) > scale ? fabs(one[k]) : scale;
            }
            cr_assert(worst <= 2e-5 * (scale > 1 ? scale : 1), "%s tp %d: hidden states differ by %g (largest %g)",
                      split_models[i].name, tp, worst, scale);
            free(split);
        }
        free(one);
        synth_unload(&s);
    }
}

/* A rank's threads split its matmul rows, the rows' preparation, the
 * heads' rotation and KV store and the attention, and never change a bit
 * of the result: 2 and 3 threads give one thread's hidden states, with QK
 * norms and biases (qwen3, qwen2-style biases) and K-quant activations,
 * whether the prefill's activation rows are streamed out or not
 * (LOOM_STREAM_ACT; 24 rows, past the 17 from which it applies) and whether
 * the threads take each other's rows in pieces or not (LOOM_MM_STEAL). */
Test(families, thread_count_changes_no_bit) {
    static const synth_model models[] = {
        {"qwen3", "--arch qwen3 --layers 2 --dim 256 --heads 4 --kv-heads 2 --head-dim 64 --ffn 512 --vocab 300 "
                  "--type Q4_K_M"},
        {"qwen2", "--arch qwen2 --layers 2 --dim 192 --heads 6 --kv-heads 3 --ffn 416 --vocab 300 --type Q8_0"},
    };
    int32_t tokens[24];
    for (int i = 0; i < 24; i++) tokens[i] = (int32_t)((i * 53 + 7) % 300);
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        synth_loaded s;
        synth_load(&models[i], &s);
        for (int n = 24; n >= 1; n -= 23) { /* a prompt's rows, and one row (decode's kernels) */
            const int total = n * s.c.dim;
            float *one = run_split_as(s.g, &s.c, &s.m, 1, tokens, n, true, 1);
            for (int th = 2; th <= 3; th++)
                for (int v = 0; v < 4; v++) { /* the prefill's activation rows streamed out or not; rows stolen or not */
                    const int stream = v & 1;
                    const char *steal = v < 2 ? "1" : "0"; /* pieces of one unit: every piece a thread takes is stealable */
                    setenv("LOOM_STREAM_ACT", stream ? "1" : "0", 1);
                    setenv("LOOM_MM_STEAL", steal, 1);
                    float *many = run_split_as(s.g, &s.c, &s.m, 1, tokens, n, true, th);
                    unsetenv("LOOM_STREAM_ACT");
                    unsetenv("LOOM_MM_STEAL");
                    int k = 0;
                    while (k < total && loom_f32_to_bits(many[k]) == loom_f32_to_bits(one[k])) k++;
                    cr_assert_eq(k, total,
                                 "%s, %d rows, %d threads%s, LOOM_MM_STEAL=%s: hidden state %d (row %d) is %g, "
                                 "one thread's %g",
                                 models[i].name, n, th, stream ? ", rows streamed" : "", steal, k, k / s.c.dim,
                                 k < total ? many[k] : 0, k < total ? one[k] : 0);
                    free(many);
                }
            free(one);
        }
        synth_unload(&s);
    }
}

/* ------------------------------------------------------------ rows */

static double gelu_ref(double x) { return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

Test(families, layernorm_and_gelu_rows_on_every_level) {
    enum { N = 301 };
    float x[N], w[N], b[N], up[N], out[N];
    for (int i = 0; i < N; i++)
        x[i] = (float)(sin(i * 0.7) * 6 + 2), w[i] = (float)(1 + 0.3 * cos(i)), b[i] = (float)(0.1 * sin(3 * i)),
        up[i] = (float)cos(i * 1.3);
    x[7] = -12.0f, x[8] = 11.0f, x[9] = 0.0f, x[10] = -1e-4f, x[11] = 40.0f, x[12] = -40.0f;
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++) mean += x[i];
    mean /= N;
    for (int i = 0; i < N; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= N;
    for (int isa = 0; isa <= (int)loom_isa_detect(); isa++) {
        const loom_kernels *k = loom_kernels_of((loom_isa)isa);
        k->layernorm(out, x, w, b, N, 1e-5f);
        for (int i = 0; i < N; i++) {
            double r = (x[i] - mean) / sqrt(var + 1e-5) * w[i] + b[i];
            cr_assert(fabs(out[i] - r) <= 2e-6 * (1 + fabs(r)), "%s layernorm[%d] %g vs %g", k->name, i, out[i], r);
        }
        memcpy(out, x, sizeof x);
        k->gelu(out, NULL, N);
        for (int i = 0; i < N; i++) {
            double r = gelu_ref(x[i]);
            cr_assert(fabs(out[i] - r) <= 1e-6 * (1 + fabs(r)), "%s gelu(%g) %g vs %g", k->name, x[i], out[i], r);
        }
        memcpy(out, x, sizeof x);
        k->gelu(out, up, N);
        for (int i = 0; i < N; i++) {
            double r = gelu_ref(x[i]) * up[i];
            cr_assert(fabs(out[i] - r) <= 1e-6 * (1 + fabs(r)), "%s geglu[%d] %g vs %g", k->name, i, out[i], r);
        }
    }
    float cap[4] = {0, 1, -100, 1e30f};
    loom_softcap_row(cap, 4, 5.0f);
    cr_assert(cap[0] == 0 && fabsf(cap[1] - 5 * tanhf(0.2f)) < 1e-7f && cap[2] == -5.0f && cap[3] == 5.0f);
}

Test(families, pooling) {
    const float h[3 * 4] = {1, 2, 3, 4, 5, 6, 7, 8, -3, 1, 2, 0};
    float o[4];
    loom_embedding_pool(LOOM_POOL_MEAN, h, 3, 4, false, o);
    cr_assert(o[0] == 1 && o[1] == 3 && o[2] == 4 && o[3] == 4);
    loom_embedding_pool(LOOM_POOL_CLS, h, 3, 4, false, o);
    cr_assert(o[0] == 1 && o[3] == 4);
    loom_embedding_pool(LOOM_POOL_LAST, h, 3, 4, true, o);
    cr_assert(fabsf(o[0] + 3 / sqrtf(14)) < 1e-7f && o[3] == 0);
    loom_pooling p;
    cr_assert(loom_pooling_parse("cls", &p) && p == LOOM_POOL_CLS && !loom_pooling_parse("max", &p));
    cr_assert_str_eq(loom_pooling_name(LOOM_POOL_LAST), "last");
}

/* ------------------------------------------------------------ refusals */

Test(families, positions_past_the_learned_table_are_refused) {
    const synth_model m = {"gpt2", "--arch gpt2 --layers 1 --dim 64 --heads 2 --kv-heads 2 --ffn 128 --vocab 300 "
                                   "--ctx 16 --type F32"};
    char path[256];
    loom_gguf *g = open_synth(&m, path, sizeof path);
    loom_engine_options o = loom_engine_defaults();
    o.n_threads = 1, o.ctx_size = 32, o.max_seqs = 1, o.batch_rows = 32;
    loom_engine *e;
    OK(loom_engine_create(g, &o, NULL, NULL, NULL, &e));
    int32_t toks[20] = {0};
    float *logits = malloc(sizeof(float) * 20 * 300);
    OK(loom_engine_score(e, toks, 16, logits));
    loom_status st = loom_engine_score(e, toks, 20, logits);
    cr_assert(st && loom_status_code(st) == LOOM_ERR_CONTEXT && strstr(loom_status_message(st), "learned positions"),
              "%s", st ? loom_status_message(st) : "accepted");
    loom_status_free(st);
    free(logits);
    loom_engine_free(e);
    loom_gguf_free(g);
    unlink(path);
}

/* A one-layer F32 model of `arch` (width 32, vocabulary 8) with a mixture
 * of `experts` (0: no expert_count key) of which `used` are used; `router`:
 * write ffn_gate_inp; the expert tensors hold `ne2` matrices (0: a dense
 * MLP instead). */
static void write_moe(const char *path, const char *arch, int experts, int used, bool router, int ne2) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    char key[96];
#define U32(k, v)                                                                  \
    do {                                                                           \
        snprintf(key, sizeof key, "%s." k, arch);                                  \
        OK(loom_gguf_writer_add_uint(w, key, LOOM_GGUF_U32, v));                   \
    } while (0)
    OK(loom_gguf_writer_add_str(w, "general.architecture", arch));
    U32("block_count", 1);
    U32("embedding_length", 32);
    U32("feed_forward_length", 32);
    U32("attention.head_count", 1);
    if (experts) U32("expert_count", (uint64_t)experts);
    if (used) U32("expert_used_count", (uint64_t)used);
    if (!strcmp(arch, "qwen3moe")) U32("expert_feed_forward_length", 32);
#undef U32
    const int64_t v[1] = {32}, sq[2] = {32, 32}, emb[2] = {32, 8}, rt[2] = {32, experts ? experts : 4},
                  ex[3] = {32, 32, ne2};
    static const char *const vecs[] = {"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "blk.0.attn_q_norm.weight",
                                       "blk.0.attn_k_norm.weight", "output_norm.weight"};
    static const char *const mats[] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
                                       "blk.0.attn_output.weight"};
    for (int i = 0; i < 5; i++) OK(loom_gguf_writer_add_tensor(w, vecs[i], LOOM_TYPE_F32, 1, v, NULL));
    for (int i = 0; i < 4; i++) OK(loom_gguf_writer_add_tensor(w, mats[i], LOOM_TYPE_F32, 2, sq, NULL));
    OK(loom_gguf_writer_add_tensor(w, "token_embd.weight", LOOM_TYPE_F32, 2, emb, NULL));
    OK(loom_gguf_writer_add_tensor(w, "output.weight", LOOM_TYPE_F32, 2, emb, NULL));
    if (router) OK(loom_gguf_writer_add_tensor(w, "blk.0.ffn_gate_inp.weight", LOOM_TYPE_F32, 2, rt, NULL));
    static const char *const exps[] = {"blk.0.ffn_gate_exps.weight", "blk.0.ffn_up_exps.weight",
                                       "blk.0.ffn_down_exps.weight"};
    static const char *const dense[] = {"blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"};
    for (int i = 0; i < 3; i++) {
        if (ne2) OK(loom_gguf_writer_add_tensor(w, exps[i], LOOM_TYPE_F32, 3, ex, NULL));
        else OK(loom_gguf_writer_add_tensor(w, dense[i], LOOM_TYPE_F32, 2, sq, NULL));
    }
    OK(loom_gguf_writer_write_path(w, path, 0));
    loom_gguf_writer_free(w);
}

/* What a mixture of experts that is not whole, or not one loom runs, gets:
 * an error naming the key or tensor, at the configuration, the plan and
 * the weights; a whole one loads and runs a token. */
Test(families, malformed_mixtures_are_refused) {
    static const struct {
        const char *arch;
        int experts, used;
        bool router;
        int ne2;
        const char *says; /* at the configuration, or NULL: loads; then the plan and weights say plan_says */
        const char *plan_says;
    } cases[] = {
        {"qwen3moe", 4, 2, true, 4, NULL, NULL},
        {"llama", 4, 1, true, 4, NULL, NULL},
        {"qwen3moe", 0, 2, true, 4, "qwen3moe.expert_count is missing", NULL},
        {"qwen3moe", 4, 0, true, 4, "qwen3moe.expert_used_count is missing", NULL},
        {"qwen3moe", 4, 5, true, 4, "qwen3moe.expert_used_count = 5 is out of range (1..4)", NULL},
        {"llama", 0, 0, true, 0, "blk.0.ffn_gate_inp.weight (a router) but no llama.expert_count", NULL},
        {"gemma2", 4, 2, true, 4, "mixtures of experts in llama, qwen2moe, qwen3moe, gpt-oss, glm4moe, deepseek2", NULL},
        {"llama", 4, 2, false, 4, NULL, "tensor blk.0.ffn_gate_inp.weight is missing"},
        {"llama", 4, 2, true, 3, NULL, "ffn_gate_exps.weight has shape [32, 32, 3], expected [32, 32, 4]"},
        {"llama", 4, 2, true, 0, NULL, "tensor blk.0.ffn_gate_exps.weight is missing"},
    };
    char path[128];
    snprintf(path, sizeof path, "/tmp/loom-test-moe-%d.gguf", (int)getpid());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_moe(path, cases[i].arch, cases[i].experts, cases[i].used, cases[i].router, cases[i].ne2);
        loom_gguf *g;
        OK(loom_gguf_open(path, &g));
        loom_model_config c;
        loom_status st = loom_model_config_read(g, &c);
        if (cases[i].says) {
            cr_assert(st && strstr(loom_status_message(st), cases[i].says), "case %zu: %s", i,
                      st ? loom_status_message(st) : "accepted");
            loom_status_free(st);
            loom_gguf_free(g);
            continue;
        }
        cr_assert(!st, "case %zu: %s", i, loom_status_message(st));
        cr_assert(c.n_experts == cases[i].experts && c.n_experts_used == cases[i].used, "case %zu", i);
        loom_plan_model m;
        st = loom_plan_model_read(g, &c, &m);
        loom_shard sh = loom_shard_full(&c);
        loom_weights *w = NULL;
        loom_status wst = loom_weights_create(g, &c, &sh, &w);
        if (cases[i].plan_says) {
            cr_assert(st && strstr(loom_status_message(st), cases[i].plan_says), "case %zu plan: %s", i,
                      st ? loom_status_message(st) : "accepted");
            cr_assert(wst && strstr(loom_status_message(wst), cases[i].plan_says), "case %zu weights: %s", i,
                      wst ? loom_status_message(wst) : "accepted");
            loom_status_free(st);
            loom_status_free(wst);
        } else {
            cr_assert(!st && !wst, "case %zu: %s", i, loom_status_message(st ? st : wst));
            loom_kv_config kc = {.n_layers = 1, .n_kv_heads = 1, .head_dim = 32, .type = LOOM_TYPE_F32,
                                 .block_tokens = 16, .n_blocks = 1, .max_seqs = 1, .max_ctx = 16};
            loom_kv_cache *kv;
            loom_pool *pool;
            loom_forward *f;
            OK(loom_kv_create(&kc, &kv));
            OK(loom_kv_reserve(kv, 0, 2));
            OK(loom_pool_create(1, &pool));
            OK(loom_forward_create(w, kv, pool, 2, &f));
            int32_t tok[2] = {3, 5}, pos[2] = {0, 1}, seq[2] = {0, 0};
            int8_t want[2] = {1, 1};
            loom_batch b = {2, tok, NULL, pos, seq, want};
            OK(loom_forward_prepare(f, &b));
            OK(loom_forward_embed(f, &b));
            OK(loom_forward_attention(f, 0, &b, loom_forward_scratch(f)));
            loom_forward_mlp(f, 0, 2, loom_forward_scratch(f)); /* zero weights: zero output, no NaN */
            for (int k = 0; k < 64; k++) cr_assert_eq(loom_forward_scratch(f)[k], 0.0f, "case %zu", i);
            loom_forward_free(f);
            loom_pool_free(pool);
            loom_kv_free(kv);
            loom_weights_free(w);
            loom_plan_model_free(&m);
        }
        loom_gguf_free(g);
    }
    unlink(path);
}

/* ------------------------------------------------------------ devices */

/* The device forward pass (runtime/device_forward.h) runs dense llama and
 * qwen2 only: `auto` keeps every other family (and llama's mixtures of
 * experts) on the CPU, and asking for a device
 * (the host device here; CUDA goes through the same check) is refused with
 * the family named, never run as if it were llama. */
Test(families, device_pass_refuses_the_other_families) {
    char path[256];
    for (size_t i = 0; i < N_MODELS; i++) {
        if (!strcmp(models[i].name, "llama-iq4_xs")) continue; /* a dense llama: not another family */
        loom_gguf *g = open_synth(&models[i], path, sizeof path);
        loom_model_config c;
        OK(loom_model_config_read(g, &c));
        cr_assert(!loom_dforward_supports(&c), "%s", c.arch_name);
        cr_assert_eq(loom_dforward_resolve(LOOM_DEVICE_AUTO, &c), LOOM_DEVICE_CPU, "%s", c.arch_name);
        cr_assert_eq(loom_dforward_resolve(LOOM_DEVICE_HOST, &c), LOOM_DEVICE_HOST, "%s", c.arch_name);
        loom_engine_options o = loom_engine_defaults();
        o.n_threads = 1;
        o.ctx_size = 64;
        o.max_seqs = 1;
        o.batch_rows = 16;
        o.device = LOOM_DEVICE_HOST;
        loom_engine *e = NULL;
        loom_status st = loom_engine_create(g, &o, NULL, NULL, NULL, &e);
        cr_assert_eq(loom_status_code(st), LOOM_ERR_UNSUPPORTED, "%s on the host device: %s", c.arch_name,
                     loom_status_message(st));
        cr_assert(strstr(loom_status_message(st), c.arch_name), "%s", loom_status_message(st));
        loom_status_free(st);
        o.device = LOOM_DEVICE_AUTO;
        OK(loom_engine_create(g, &o, NULL, NULL, NULL, &e));
        loom_engine_free(e);
        loom_gguf_free(g);
        unlink(path);
    }
    loom_model_config llama = {.arch = LOOM_ARCH_LLAMA}, qwen2 = {.arch = LOOM_ARCH_QWEN2};
    cr_assert(loom_dforward_supports(&llama) && loom_dforward_supports(&qwen2));
    /* auto keeps a dense llama off the GPU where its file has a weight type CUDA does not multiply */
    llama.weight_types = 1ull << LOOM_TYPE_F32 | 1ull << LOOM_TYPE_Q4_K | 1ull << LOOM_TYPE_Q6_K;
    cr_assert(loom_dforward_auto_ok(&llama));
    for (size_t i = 0; i < N_MODELS; i++) {
        if (strcmp(models[i].name, "llama-iq4_xs")) continue;
        loom_gguf *g = open_synth(&models[i], path, sizeof path);
        loom_model_config c;
        OK(loom_model_config_read(g, &c));
        cr_assert(loom_dforward_supports(&c) && (c.weight_types >> LOOM_TYPE_IQ4_XS & 1) && !loom_dforward_auto_ok(&c),
                  "llama IQ4_XS: types %#llx", (unsigned long long)c.weight_types);
        cr_assert_eq(loom_dforward_resolve(LOOM_DEVICE_AUTO, &c), LOOM_DEVICE_CPU);
        cr_assert_eq(loom_dforward_resolve(LOOM_DEVICE_HOST, &c), LOOM_DEVICE_HOST);
        loom_gguf_free(g);
        unlink(path);
    }
    for (int t = 0; t < LOOM_TYPE_COUNT; t++) {
        llama.weight_types = 1ull << LOOM_TYPE_F32 | 1ull << t;
        const bool cpu_only = t == LOOM_TYPE_MXFP4 || t == LOOM_TYPE_Q2_K || t == LOOM_TYPE_Q3_K ||
                              t == LOOM_TYPE_IQ4_NL || t == LOOM_TYPE_IQ4_XS;
        if (loom_type_can_matmul((loom_type)t) || t == LOOM_TYPE_IQ4_XS)
            cr_assert_eq(loom_dforward_auto_ok(&llama), !cpu_only, "%s", loom_type_name((uint32_t)t));
    }
    /* a dense llama with YaRN: the device pass does not rotate so yet */
    static const synth_model yarn = {"llama", "--arch llama --layers 1 --dim 64 --heads 2 --kv-heads 1 --ffn 64 "
                                              "--vocab 300 --type F32 --yarn 4 --yarn-orig 64"};
    loom_gguf *g = open_synth(&yarn, path, sizeof path);
    loom_model_config c;
    OK(loom_model_config_read(g, &c));
    cr_assert(c.rope_yarn && !loom_dforward_supports(&c) && loom_dforward_resolve(LOOM_DEVICE_AUTO, &c) == LOOM_DEVICE_CPU);
    loom_gguf_free(g);
    unlink(path);
}

/* An encoder's texts go whole into one step (parallel/engine.c: score,
 * score_texts), so its plan holds a step's KV blocks (a batch of rows or
 * one text, and a partial block a slot), not every slot's whole context;
 * a decoder's plan holds them all. */
Test(families, encoder_plans_one_text_of_kv) {
    for (size_t i = 0; i < N_MODELS; i++) {
        if (strcmp(models[i].name, "bert") && strcmp(models[i].name, "qwen3")) continue;
        synth_loaded s;
        synth_load(&models[i], &s);
        loom_plan_request req = loom_plan_request_defaults(1, 1);
        req.engine.ctx_size = 256, req.engine.max_seqs = 8;
        loom_plan *p;
        OK(loom_plan_make(&s.m, &req, NULL, &p));
        const int per_seq = 256 / req.engine.block_tokens, rows = req.engine.batch_rows > 256 ? req.engine.batch_rows : 256;
        const int enc = (rows + req.engine.block_tokens - 1) / req.engine.block_tokens + 8 + 1; /* + a partial block a slot */
        cr_assert_eq(p->kv_blocks, s.c.encoder ? enc : 8 * per_seq, "%s: %d KV blocks", models[i].name, p->kv_blocks);
        cr_assert_eq(p->req.engine.kv_blocks, s.c.encoder ? enc : 0, "%s: the engines' blocks", models[i].name);
        loom_plan_free(p);
        synth_unload(&s);
    }
}
