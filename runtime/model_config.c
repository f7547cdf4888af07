/*
 * runtime/model_config.c — a model's configuration from GGUF metadata
 * (contract in model.h): the keys every family shares, then what each
 * family does differently, with llama.cpp's defaults (src/models/<arch>.cpp
 * of the llama.cpp that llama-cpp-python 0.3.36 vendors):
 *
 *   qwen3      qwen2 without Q/K/V biases, with QK-norm.
 *   qwen3moe   qwen3 whose MLPs are mixtures of experts (expert_count,
 *              expert_used_count, each expert expert_feed_forward_length
 *              wide), weights renormalised over the chosen experts.
 *   llama      with <arch>.expert_count (Mixtral): the same mixture.
 *   smollm3    llama without RoPE on layers l with (l + 1) % 4 == 0 (its
 *              NoPE layers; llama.cpp's fixed n_no_rope_layer_step).
 *   granite    llama with embedding_scale (the input embedding times it),
 *              attention.scale (the scores'), residual_scale (each block's
 *              output times it before the residual add) and logit_scale
 *              (the logits times its reciprocal).
 *   ernie4_5   llama (llama.cpp's graph ignores its attn_output bias).
 *   mistral3   llama (Ministral 3) reading rope.scaling.yarn_beta_fast/slow
 *              and, with attention.temperature_scale (which needs YaRN's
 *              original context), the queries of a row at position p times
 *              1 + scale · ln(floor(p / original context) + 1).
 *   qwen2moe   qwen2 with such a mixture whose weights are not
 *              renormalised, and a shared expert (expert_shared_feed_
 *              forward_length wide, default feed_forward_length) gated by
 *              sigmoid(ffn_gate_inp_shexp · x).
 *   gemma2     embedding × sqrt(dim); norms after attention and MLP too;
 *              GELU-gated MLP; scores and logits soft-capped; sliding
 *              window (default 4096) on layers l % 2 == 0; query scale
 *              1/sqrt(head_dim), or 1/sqrt(dim/heads) for the 27B (46 layers).
 *   gemma3     gemma2 with QK-norm and no soft-capping (unless the file says
 *              so); the window, when the file has one, on 5 of every 6
 *              layers (l % 6 < 5), which rotate with base
 *              rope.freq_base_swa (default 10000) and no scaling; the 27B
 *              is 62 layers.
 *   phi3       fused QKV, fused gate+up; partial rotary from
 *              rope.dimension_count; LongRoPE (rope_factors_long/short,
 *              rope.scaling.attn_factor). Its sliding window is ignored, as
 *              llama.cpp does.
 *   gpt2       LayerNorm with bias, GELU MLP with biases, learned positions,
 *              fused QKV with bias, attention output bias, no RoPE.
 *   bert       encoder: token-type row 0 and positions added, LayerNorm of
 *              the embedding, norms after each residual add, biases, GELU
 *              MLP, bidirectional attention, no lm head; pooled as
 *              bert.pooling_type says.
 *   nomic-bert bert with fused QKV, RoPE instead of learned positions and a
 *              SiLU-gated MLP without biases.
 *   nomic-bert-moe (nomic-embed-text-v2-moe) nomic-bert with Q/K/V biases
 *              and bert's GELU MLP with biases, where every layer l with
 *              l % moe_every_n_layers == 1 (llama.cpp's rule) is instead a
 *              mixture of ungated GELU experts without biases, weighted by
 *              their softmax probabilities over all experts (not
 *              renormalised).
 *   gpt-oss    a mixture of experts (expert_feed_forward_length wide) whose
 *              router has a bias and weights the chosen experts by the
 *              softmax of their logits alone, experts with biases and
 *              gpt-oss's clamped SwiGLU; Q/K/V and output biases, attention
 *              sinks, a sliding window (attention.sliding_window) on layers
 *              l % 2 == 0 with the same rotation as the others (YaRN from
 *              the file's rope.scaling keys), neox rotation.
 *   glm4moe    a mixture of experts routed as DeepSeek-V3 (read_experts),
 *              shared experts, leading dense layers; Q/K/V biases, neox
 *              rotation (partial: rope.dimension_count), QK-norm where the
 *              file has it (GLM-4.5), the MLP's norm named
 *              post_attention_norm; nextn_predict_layers blocks after the
 *              model's (multi-token prediction) are not read.
 *   deepseek2  multi-head latent attention (read_mla), glm4moe's mixture
 *              (softmax gating unless the file says sigmoid), adjacent-pair
 *              rotation of the rope part.
 *
 * RoPE scaling (rope.scaling.type): none, linear (factor), yarn (factor,
 * original_context_length; ext_factor 1, beta_fast 32, beta_slow 1 and the
 * magnitude 1 + 0.1·ln(factor) times rope.scaling.attn_factor, as
 * llama.cpp's llama_context sets them: it reads none of the yarn_* keys),
 * and phi3's longrope.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/model.h"

static loom_status get_count(const loom_gguf *g, const char *arch, const char *suffix, bool required,
                             int64_t def, int64_t max, int *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v = def;
    if (!loom_gguf_get_int(g, key, &v)) {
        if (loom_gguf_get(g, key))
            return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is not an integer", loom_gguf_path(g), key);
        if (required)
            return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is missing", loom_gguf_path(g), key);
    }
    if (v < 1 || v > max)
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata %s = %lld is out of range (1..%lld)", loom_gguf_path(g),
                          key, (long long)v, (long long)max);
    *out = (int)v;
    return NULL;
}

/* A positive float (or, with zero_ok, zero) at <arch>.<suffix>, def when absent. */
static loom_status get_real_z(const loom_gguf *g, const char *arch, const char *suffix, double def, bool zero_ok,
                              float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    double v = def;
    if (!loom_gguf_get_float(g, key, &v) && loom_gguf_get(g, key))
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is not a float", loom_gguf_path(g), key);
    if (!(v > 0 || (zero_ok && v == 0)) || v > 1e12)
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata %s = %g is out of range", loom_gguf_path(g), key, v);
    *out = (float)v;
    return NULL;
}

static loom_status get_real(const loom_gguf *g, const char *arch, const char *suffix, double def, float *out) {
    return get_real_z(g, arch, suffix, def, false, out);
}

static bool has_tensor(const loom_gguf *g, const char *name) { return loom_gguf_find_tensor(g, name) != NULL; }

static const struct {
    const char *name;
    loom_arch arch;
} arch_names[] = {
    {"llama", LOOM_ARCH_LLAMA}, {"qwen2", LOOM_ARCH_QWEN2}, {"qwen2moe", LOOM_ARCH_QWEN2MOE}, {"qwen3", LOOM_ARCH_QWEN3},
    {"qwen3moe", LOOM_ARCH_QWEN3MOE},
    {"gemma2", LOOM_ARCH_GEMMA2}, {"gemma3", LOOM_ARCH_GEMMA3}, {"phi3", LOOM_ARCH_PHI3},
    {"gpt2", LOOM_ARCH_GPT2}, {"bert", LOOM_ARCH_BERT}, {"nomic-bert", LOOM_ARCH_NOMIC_BERT},
    {"nomic-bert-moe", LOOM_ARCH_NOMIC_BERT}, /* with a mixture of experts on alternate layers (read_family) */
    {"gpt-oss", LOOM_ARCH_GPT_OSS}, {"glm4moe", LOOM_ARCH_GLM4MOE}, {"deepseek2", LOOM_ARCH_DEEPSEEK2},
    {"smollm3", LOOM_ARCH_LLAMA}, /* llama without RoPE on every fourth layer (read_family) */
    {"granite", LOOM_ARCH_LLAMA}, /* llama with four scales (read_family) */
    {"ernie4_5", LOOM_ARCH_LLAMA}, /* ERNIE 4.5 dense: llama's computation */
    {"mistral3", LOOM_ARCH_LLAMA}, /* llama with YaRN's keys and temperature tuning (read_family) */
};
#define SUPPORTED \
    "llama, smollm3, granite, ernie4_5, mistral3, qwen2, qwen2moe, qwen3, qwen3moe, gemma2, gemma3, phi3, gpt2, bert, nomic-bert, nomic-bert-moe, gpt-oss, glm4moe, " \
    "deepseek2"

/* Sliding-window layers: <arch>.attention.sliding_window_pattern as an array
 * of booleans (one per layer), or a period n (layer l slides iff
 * l % n < n - 1), else the family's period. */
static loom_status read_swa_layers(const loom_gguf *g, loom_model_config *c, int def_period) {
    char key[128];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", c->arch_name);
    memset(c->swa_layers, 0, sizeof c->swa_layers);
    const loom_gguf_value *arr = loom_gguf_get_arr(g, key, -1);
    if (arr) {
        if (arr->v.arr.n != (uint64_t)c->n_layers)
            return loom_error(LOOM_ERR_FORMAT, "%s: %s has %llu entries for %d layers", loom_gguf_path(g), key,
                              (unsigned long long)arr->v.arr.n, c->n_layers);
        for (int l = 0; l < c->n_layers; l++)
            if (loom_gguf_arr_int(arr, (uint64_t)l)) c->swa_layers[l / 64] |= 1ull << (l % 64);
        return NULL;
    }
    int period = def_period;
    int64_t v;
    if (loom_gguf_get_int(g, key, &v)) {
        if (v < 0 || v > LOOM_MAX_LAYERS)
            return loom_error(LOOM_ERR_FORMAT, "%s: %s = %lld is out of range", loom_gguf_path(g), key, (long long)v);
        period = (int)v;
    }
    for (int l = 0; l < c->n_layers; l++)
        if (period == 0 || l % period < period - 1) c->swa_layers[l / 64] |= 1ull << (l % 64);
    return NULL;
}

/* deepseek2's multi-head latent attention (model.h), as llama.cpp's
 * deepseek2.cpp reads it from a conversion with attn_k_b and attn_v_b
 * (key_length = kv_lora_rank + rope, value_length = kv_lora_rank, one KV
 * head); the scores' scale is mscale² / sqrt(key_length_mla) with mscale
 * = attn_factor · (1 + 0.1 · yarn_log_multiplier / 0.1 · ln factor) under
 * YaRN (the converter's 0.1 taken out, as llama.cpp does), whose rotation
 * then has no magnitude of its own (attn_factor only). */
static loom_status read_mla(const loom_gguf *g, loom_model_config *c) {
    const char *path = loom_gguf_path(g), *arch = c->arch_name;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.temperature_scale", arch);
    if (loom_gguf_get(g, key))
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: %s (attention temperature tuning) is not supported", path, key);
    c->mla = true;
    LOOM_TRY(get_count(g, arch, "attention.kv_lora_rank", true, 0, 1 << 16, &c->kv_lora));
    /* conversions before llama.cpp split attn_kv_b (early 2025: DeepSeek-V3, R1) describe the heads as
     * multi-head attention, key_length nope + rope, value_length v; loom derives attn_k_b / attn_v_b at load */
    c->mla_kv_b = has_tensor(g, "blk.0.attn_kv_b.weight") && !has_tensor(g, "blk.0.attn_k_b.weight");
    snprintf(key, sizeof key, "%s.attention.key_length_mla", arch);
    if (c->mla_kv_b && !loom_gguf_get(g, key)) {
        c->mla_k_dim = c->head_dim;
        LOOM_TRY(get_count(g, arch, "attention.value_length", true, 0, 4096, &c->mla_v_dim));
        c->n_kv_heads = 1;
        c->head_dim = c->kv_lora + c->rope_dim;
    } else {
        LOOM_TRY(get_count(g, arch, "attention.key_length_mla", true, 0, 4096, &c->mla_k_dim));
        LOOM_TRY(get_count(g, arch, "attention.value_length_mla", true, 0, 4096, &c->mla_v_dim));
    }
    snprintf(key, sizeof key, "%s.attention.q_lora_rank", arch);
    if (loom_gguf_get(g, key)) LOOM_TRY(get_count(g, arch, "attention.q_lora_rank", true, 0, 1 << 16, &c->q_lora));
    if ((c->q_lora > 0) != has_tensor(g, "blk.0.attn_q_a.weight"))
        return loom_error(LOOM_ERR_FORMAT, "%s: %s says %d but blk.0.attn_q_a.weight is %s", path, key, c->q_lora,
                          c->q_lora ? "missing" : "there");
    if (c->n_kv_heads != 1 || c->head_dim != c->kv_lora + c->rope_dim || c->mla_k_dim <= c->rope_dim)
        return loom_error(LOOM_ERR_FORMAT, "%s: multi-head latent attention needs 1 KV head (%d), key_length = "
                          "kv_lora_rank + rope dimensions (%d, %d + %d) and key_length_mla (%d) above the rope "
                          "dimensions", path, c->n_kv_heads, c->head_dim, c->kv_lora, c->rope_dim, c->mla_k_dim);
    float af, lm;
    LOOM_TRY(get_real(g, arch, "rope.scaling.attn_factor", 1.0, &af));
    LOOM_TRY(get_real_z(g, arch, "rope.scaling.yarn_log_multiplier", 0.0, true, &lm));
    float mscale = af;
    if (c->rope_yarn) {
        c->rope_attn_factor = af;
        mscale = af * (1.0f + lm * logf(1.0f / c->rope_freq_scale)); /* 0.1 x (the key / 0.1) */
    }
    c->attn_scale = mscale * mscale / sqrtf((float)c->mla_k_dim);
    return NULL;
}

/* What each family changes; shape keys are read already. */
static loom_status read_family(const loom_gguf *g, loom_model_config *c) {
    const char *path = loom_gguf_path(g), *arch = c->arch_name;
    char key[128];
    switch (c->arch) {
    case LOOM_ARCH_LLAMA:
        if (!strcmp(arch, "smollm3")) c->no_rope_every = 4; /* fixed, as llama.cpp's n_no_rope_layer_step */
        if (!strcmp(arch, "mistral3")) {
            if (c->rope_yarn) { /* llama.cpp's llama_context: the magnitude over get_mscale(factor, yarn_log_multiplier) */
                float lm;
                LOOM_TRY(get_real(g, arch, "rope.scaling.yarn_beta_fast", 32.0, &c->yarn_beta_fast));
                LOOM_TRY(get_real(g, arch, "rope.scaling.yarn_beta_slow", 1.0, &c->yarn_beta_slow));
                LOOM_TRY(get_real_z(g, arch, "rope.scaling.yarn_log_multiplier", 0.0, true, &lm));
                const float f = 1.0f / c->rope_freq_scale;
                if (lm != 0 && f > 1.0f) c->rope_attn_factor /= 1.0f + 0.1f * lm * logf(f);
            }
            LOOM_TRY(get_real_z(g, arch, "attention.temperature_scale", 0.0, true, &c->attn_temp_scale));
            if (c->attn_temp_scale > 0 && (!c->rope_yarn || c->ctx_orig < 1))
                return loom_error(LOOM_ERR_FORMAT, "%s: %s.attention.temperature_scale needs YaRN's "
                                  "rope.scaling.original_context_length", path, arch);
        }
        if (!strcmp(arch, "granite")) { /* IBM Granite 3: the input embedding, the scores, each branch and the logits scaled */
            LOOM_TRY(get_real_z(g, arch, "embedding_scale", 0.0, true, &c->embd_scale));
            LOOM_TRY(get_real_z(g, arch, "attention.scale", 0.0, true, &c->attn_scale));
            LOOM_TRY(get_real_z(g, arch, "residual_scale", 0.0, true, &c->residual_scale));
            LOOM_TRY(get_real(g, arch, "logit_scale", 1.0, &c->logit_scale));
        }
        return NULL;
    case LOOM_ARCH_QWEN2:
    case LOOM_ARCH_QWEN2MOE:
        c->rope_neox = true;
        return NULL;
    case LOOM_ARCH_QWEN3:
    case LOOM_ARCH_QWEN3MOE:
        c->rope_neox = true;
        c->qk_norm = true;
        return NULL;
    case LOOM_ARCH_GEMMA2:
    case LOOM_ARCH_GEMMA3: {
        bool g2 = c->arch == LOOM_ARCH_GEMMA2;
        c->rope_neox = true;
        c->post_norms = true;
        c->act = LOOM_ACT_GELU;
        c->qk_norm = !g2;
        c->embd_scale = sqrtf((float)c->dim);
        int big = g2 ? 46 : 62; /* the 27B scales queries by the width per head */
        c->attn_scale = 1.0f / sqrtf(c->n_layers == big ? (float)(c->dim / c->n_heads) : (float)c->head_dim);
        if (g2) LOOM_TRY(get_real_z(g, arch, "attn_logit_softcapping", 50.0, true, &c->attn_softcap));
        LOOM_TRY(get_real_z(g, arch, "final_logit_softcapping", g2 ? 30.0 : 0.0, true, &c->final_softcap));
        snprintf(key, sizeof key, "%s.attention.sliding_window", arch);
        int64_t w = g2 ? 4096 : 0;
        if (!loom_gguf_get_int(g, key, &w) && loom_gguf_get(g, key))
            return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is not an integer", path, key);
        if (w < 0 || w > (1 << 30)) return loom_error(LOOM_ERR_FORMAT, "%s: %s = %lld is out of range", path, key, (long long)w);
        c->swa_window = (int)w;
        if (w > 0) LOOM_TRY(read_swa_layers(g, c, g2 ? 2 : 6));
        /* gemma2 rotates every layer alike; gemma3's local layers have their own base */
        c->rope_base_swa = g2 ? c->rope_base : 10000.0f;
        c->rope_scale_swa = g2 ? c->rope_freq_scale : 1.0f;
        if (!g2) LOOM_TRY(get_real(g, arch, "rope.freq_base_swa", 10000.0, &c->rope_base_swa));
        if (g2) LOOM_TRY(get_real(g, arch, "rope.freq_base_swa", c->rope_base, &c->rope_base_swa));
        return NULL;
    }
    case LOOM_ARCH_PHI3:
        c->rope_neox = true;
        c->fused_qkv = has_tensor(g, "blk.0.attn_qkv.weight");
        c->fused_gate_up = true;
        c->has_rope_long_short = has_tensor(g, "rope_factors_long.weight");
        LOOM_TRY(get_real(g, arch, "rope.scaling.attn_factor", 1.0, &c->rope_attn_factor));
        LOOM_TRY(get_count(g, arch, "rope.scaling.original_context_length", false, c->ctx_train, 1 << 24,
                           &c->ctx_orig));
        return NULL;
    case LOOM_ARCH_GPT2:
        c->norm = LOOM_NORM_LAYER;
        c->act = LOOM_ACT_GELU;
        c->pos = LOOM_POS_LEARNED;
        c->ffn_plain = true;
        c->fused_qkv = true;
        c->qkv_bias = true;
        c->attn_out_bias = true;
        c->ffn_bias = true;
        return NULL;
    case LOOM_ARCH_BERT:
    case LOOM_ARCH_NOMIC_BERT: {
        bool nomic = c->arch == LOOM_ARCH_NOMIC_BERT;
        c->norm = LOOM_NORM_LAYER;
        c->post_ln = true;
        c->embd_norm = true;
        c->encoder = true;
        c->bidirectional = true;
        c->type_embd = has_tensor(g, "token_types.weight");
        c->fused_qkv = has_tensor(g, "blk.0.attn_qkv.weight");
        c->qkv_bias = has_tensor(g, c->fused_qkv ? "blk.0.attn_qkv.bias" : "blk.0.attn_q.bias");
        c->attn_out_bias = has_tensor(g, "blk.0.attn_output.bias");
        if (nomic) c->rope_neox = true;
        if (!nomic || !strcmp(arch, "nomic-bert-moe")) { /* (nomic-bert: the SiLU-gated MLP) bert's MLP, GELU(up x + b):
                                                          * nomic-bert-moe's dense layers and its experts too */
            c->act = LOOM_ACT_GELU;
            if (!nomic) c->pos = LOOM_POS_LEARNED;
            c->ffn_plain = true;
            c->ffn_bias = has_tensor(g, "blk.0.ffn_up.bias");
        }
        snprintf(key, sizeof key, "%s.attention.causal", arch);
        bool causal = false;
        if (loom_gguf_get_bool(g, key, &causal) && causal)
            return loom_error(LOOM_ERR_UNSUPPORTED, "%s: %s is true; loom runs %s as an encoder only", path, key, arch);
        snprintf(key, sizeof key, "%s.pooling_type", arch);
        int64_t pt = 0;
        if (!loom_gguf_get_int(g, key, &pt) && loom_gguf_get(g, key))
            return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is not an integer", path, key);
        if (pt < 0 || pt > LOOM_POOL_RANK)
            return loom_error(LOOM_ERR_UNSUPPORTED, "%s: %s = %lld is not supported (0 none, 1 mean, 2 cls, 3 last, 4 rank)",
                              path, key, (long long)pt);
        c->pooling = (loom_pooling)pt;
        return NULL;
    }
    case LOOM_ARCH_GLM4MOE:
        c->rope_neox = true;
        c->qk_norm = has_tensor(g, "blk.0.attn_q_norm.weight"); /* GLM-4.5 (355B) has it, GLM-4.5-Air not */
        return NULL;
    case LOOM_ARCH_DEEPSEEK2:
        return read_mla(g, c);
    case LOOM_ARCH_GPT_OSS: {
        c->rope_neox = true;
        c->attn_out_bias = true;
        c->attn_sinks = true;
        c->act = LOOM_ACT_SWIGLU_OAI;
        snprintf(key, sizeof key, "%s.attention.sliding_window", arch);
        int64_t w;
        if (!loom_gguf_get_int(g, key, &w))
            return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is %s", path, key,
                              loom_gguf_get(g, key) ? "not an integer" : "missing");
        if (w < 1 || w > (1 << 30)) return loom_error(LOOM_ERR_FORMAT, "%s: %s = %lld is out of range", path, key, (long long)w);
        c->swa_window = (int)w;
        LOOM_TRY(read_swa_layers(g, c, 2));
        c->rope_scale_swa = c->rope_freq_scale;
        LOOM_TRY(get_real(g, arch, "rope.freq_base_swa", c->rope_base, &c->rope_base_swa));
        return NULL;
    }
    }
    return NULL;
}

/* A mixture of experts (model.h), as llama.cpp's llama and qwen3moe read
 * it: <arch>.expert_count and expert_used_count; qwen3moe's experts are
 * expert_feed_forward_length wide (else feed_forward_length divided by the
 * experts used, llama.cpp's fallback). Both renormalise the chosen
 * experts' weights and, as llama.cpp, ignore expert_weights_scale.
 * glm4moe and deepseek2 read as llama.cpp's glm4-moe.cpp and deepseek2.cpp:
 * expert_gating_func (default sigmoid; deepseek2's softmax), expert_weights_norm (default false), expert_weights_scale,
 * expert_shared_count shared experts of the experts' width (ungated),
 * leading_dense_block_count dense layers feed_forward_length wide, and
 * blk.N.exp_probs_b.bias; every family's expert_group_count and
 * expert_group_used_count (llama.cpp's build_moe_ffn applies the groups
 * to any). */
static loom_status read_v3_experts(const loom_gguf *g, loom_model_config *c, int dense);

static loom_status read_experts(const loom_gguf *g, loom_model_config *c) {
    const char *path = loom_gguf_path(g), *arch = c->arch_name;
    const bool nomic_moe = !strcmp(arch, "nomic-bert-moe");
    const bool moe_family = c->arch == LOOM_ARCH_QWEN3MOE || c->arch == LOOM_ARCH_QWEN2MOE || c->arch == LOOM_ARCH_GPT_OSS ||
                            c->arch == LOOM_ARCH_GLM4MOE || c->arch == LOOM_ARCH_DEEPSEEK2 || nomic_moe;
    char key[128];
    snprintf(key, sizeof key, "%s.expert_count", arch);
    if (!moe_family && !loom_gguf_get(g, key)) {
        if (has_tensor(g, "blk.0.ffn_gate_inp.weight"))
            return loom_error(LOOM_ERR_FORMAT, "%s: blk.0.ffn_gate_inp.weight (a router) but no %s", path, key);
        return NULL;
    }
    if (c->arch != LOOM_ARCH_LLAMA && !moe_family)
        return loom_error(LOOM_ERR_UNSUPPORTED,
                          "%s: %s: loom runs mixtures of experts in llama, qwen2moe, qwen3moe, gpt-oss, glm4moe, deepseek2 "
                          "and nomic-bert-moe models only", path,
                          key);
    LOOM_TRY(get_count(g, arch, "expert_count", true, 0, LOOM_MAX_EXPERTS, &c->n_experts));
    LOOM_TRY(get_count(g, arch, "expert_used_count", true, 0, c->n_experts, &c->n_experts_used));
    const int dense = c->ffn;
    if (nomic_moe) { /* experts as wide as the dense layers' MLP (feed_forward_length) */
        LOOM_TRY(get_count(g, arch, "moe_every_n_layers", true, 0, c->n_layers, &c->moe_every));
        if (c->moe_every < 2 || c->n_layers < 2)
            return loom_error(LOOM_ERR_UNSUPPORTED, "%s: %s.moe_every_n_layers = %d over %d layers leaves no mixture "
                              "layer (l %% n == 1)", path, arch, c->moe_every, c->n_layers);
        c->ffn_dense = dense;
    } else if (moe_family) {
        int def = c->ffn / c->n_experts_used;
        if (def < 1) def = 1;
        LOOM_TRY(get_count(g, arch, "expert_feed_forward_length", false, def, 1 << 20, &c->ffn));
    }
    c->expert_norm = c->arch != LOOM_ARCH_QWEN2MOE && c->arch != LOOM_ARCH_GPT_OSS && !nomic_moe;
    if (c->arch == LOOM_ARCH_GPT_OSS) c->expert_weight_softmax = c->router_bias = c->expert_bias = true;
    if (c->arch == LOOM_ARCH_QWEN2MOE) {
        LOOM_TRY(get_count(g, arch, "expert_shared_feed_forward_length", false, dense, 1 << 22, &c->ffn_shared));
        c->shared_gated = true;
    }
    if (c->arch == LOOM_ARCH_GLM4MOE || c->arch == LOOM_ARCH_DEEPSEEK2) LOOM_TRY(read_v3_experts(g, c, dense));
    int64_t v;
    snprintf(key, sizeof key, "%s.expert_group_count", arch);
    if (loom_gguf_get_int(g, key, &v) && v > 1) { /* 0 and 1: no groups */
        c->n_expert_groups = (int)(v < c->n_experts ? v : c->n_experts);
        LOOM_TRY(get_count(g, arch, "expert_group_used_count", true, 0, c->n_expert_groups, &c->n_group_used));
        if (v >= c->n_experts || c->n_experts % v || c->n_group_used >= c->n_expert_groups ||
            c->n_group_used * (c->n_experts / c->n_expert_groups) < c->n_experts_used)
            return loom_error(LOOM_ERR_FORMAT, "%s: %d experts in %lld groups, %d groups used, %d experts used: the groups must "
                              "divide the experts and the used groups hold at least the experts used", path, c->n_experts,
                              (long long)v, c->n_group_used, c->n_experts_used);
    }
    if (has_tensor(g, "blk.0.ffn_gate.0.weight"))
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: experts stored one tensor each (blk.N.ffn_gate.E.weight, an old "
                          "conversion); convert the model again with llama.cpp's convert_hf_to_gguf.py, which "
                          "stores them as blk.N.ffn_gate_exps.weight", path);
    return NULL;
}

/* glm4moe's and deepseek2's mixture (read_experts' comment); dense: feed_forward_length. */
static loom_status read_v3_experts(const loom_gguf *g, loom_model_config *c, int dense) {
    const char *path = loom_gguf_path(g), *arch = c->arch_name;
    char key[128];
    int64_t v = 0;
    snprintf(key, sizeof key, "%s.expert_gating_func", arch);
    if (loom_gguf_get_int(g, key, &v) && v != 0 && v != 2 && v != 1)
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: %s = %lld: loom computes softmax (1) and sigmoid (2) gating", path, key,
                          (long long)v);
    c->expert_sigmoid = v == 2 || (v == 0 && c->arch == LOOM_ARCH_GLM4MOE); /* deepseek2's default: softmax (V2) */
    bool norm = false;
    snprintf(key, sizeof key, "%s.expert_weights_norm", arch);
    if (!loom_gguf_get_bool(g, key, &norm) && loom_gguf_get(g, key))
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is not a boolean", path, key);
    c->expert_norm = norm;
    LOOM_TRY(get_real_z(g, arch, "expert_weights_scale", 0.0, true, &c->expert_weights_scale));
    int64_t shared = 0;
    snprintf(key, sizeof key, "%s.expert_shared_count", arch);
    if ((!loom_gguf_get_int(g, key, &shared) && loom_gguf_get(g, key)) || shared < 0 || shared > 64)
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata %s is not an integer of 0..64", path, key);
    c->ffn_shared = (int)shared * c->ffn;
    snprintf(key, sizeof key, "%s.leading_dense_block_count", arch);
    if (loom_gguf_get_int(g, key, &v)) {
        if (v < 0 || v > c->n_layers)
            return loom_error(LOOM_ERR_FORMAT, "%s: %s = %lld is out of range (0..%d layers)", path, key, (long long)v,
                              c->n_layers);
        c->n_dense_lead = (int)v;
    } else if (loom_gguf_get(g, key))
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is not an integer", path, key);
    if (c->n_dense_lead) c->ffn_dense = dense;
    snprintf(key, sizeof key, "blk.%d.exp_probs_b.bias", c->n_dense_lead < c->n_layers ? c->n_dense_lead : 0);
    c->expert_probs_bias = has_tensor(g, key);
    return NULL;
}

loom_status loom_model_config_read(const loom_gguf *g, loom_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    const char *path = loom_gguf_path(g);
    loom_str a;
    if (!loom_gguf_get_str(g, "general.architecture", &a))
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata key general.architecture is missing", path);
    if (a.len >= sizeof cfg->arch_name) a.len = sizeof cfg->arch_name - 1;
    memcpy(cfg->arch_name, a.ptr, a.len);
    cfg->arch_name[a.len] = 0;
    bool known = false;
    for (size_t i = 0; i < sizeof arch_names / sizeof arch_names[0] && !known; i++)
        if (!strcmp(cfg->arch_name, arch_names[i].name)) cfg->arch = arch_names[i].arch, known = true;
    if (!known)
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: " SUPPORTED ")",
                          path, cfg->arch_name);
    for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
        const unsigned t = (unsigned)loom_gguf_tensor_at(g, i)->type;
        if (t < 64) cfg->weight_types |= 1ull << t;
    }
    const char *arch = cfg->arch_name;
    const int64_t big = 1 << 20;
    bool layer_norm = cfg->arch == LOOM_ARCH_GPT2 || cfg->arch == LOOM_ARCH_BERT || cfg->arch == LOOM_ARCH_NOMIC_BERT;
    LOOM_TRY(get_count(g, arch, "block_count", true, 0, LOOM_MAX_LAYERS, &cfg->n_layers));
    char key[128];
    int64_t v;
    snprintf(key, sizeof key, "%s.nextn_predict_layers", arch); /* multi-token prediction layers after the model's: unused */
    if (loom_gguf_get_int(g, key, &v) && v != 0) {
        if (v < 0 || v >= cfg->n_layers)
            return loom_error(LOOM_ERR_FORMAT, "%s: %s = %lld of %d blocks leaves no layer", path, key, (long long)v,
                              cfg->n_layers);
        cfg->n_layers -= (int)v;
    }
    LOOM_TRY(get_count(g, arch, "embedding_length", true, 0, big, &cfg->dim));
    LOOM_TRY(get_count(g, arch, "feed_forward_length", true, 0, big, &cfg->ffn));
    LOOM_TRY(get_count(g, arch, "attention.head_count", true, 0, 4096, &cfg->n_heads));
    LOOM_TRY(get_count(g, arch, "attention.head_count_kv", false, cfg->n_heads, 4096, &cfg->n_kv_heads));
    LOOM_TRY(get_count(g, arch, "context_length", false, 2048, 1 << 24, &cfg->ctx_train));
    int64_t hd_default = cfg->dim / cfg->n_heads;
    if (hd_default < 1) hd_default = 1;
    LOOM_TRY(get_count(g, arch, "attention.key_length", false, hd_default, 4096, &cfg->head_dim));
    LOOM_TRY(get_count(g, arch, "rope.dimension_count", false, cfg->head_dim, 4096, &cfg->rope_dim));
    LOOM_TRY(get_real(g, arch, "rope.freq_base", 10000.0, &cfg->rope_base));
    if (layer_norm)
        LOOM_TRY(get_real(g, arch, "attention.layer_norm_epsilon", 1e-5, &cfg->norm_eps));
    else
        LOOM_TRY(get_real(g, arch, "attention.layer_norm_rms_epsilon", 1e-5, &cfg->norm_eps));

    snprintf(key, sizeof key, "%s.attention.value_length", arch);
    if (loom_gguf_get_int(g, key, &v) && v != cfg->head_dim && cfg->arch != LOOM_ARCH_DEEPSEEK2) /* MLA's: the latent */
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: %s = %lld differs from the key length %d", path, key,
                          (long long)v, cfg->head_dim);

    cfg->rope_freq_scale = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    loom_str st;
    if (loom_gguf_get_str(g, key, &st) && !(st.len == 4 && !memcmp(st.ptr, "none", 4))) {
        if (st.len == 6 && !memcmp(st.ptr, "linear", 6)) {
            float f;
            LOOM_TRY(get_real(g, arch, "rope.scaling.factor", 1.0, &f));
            cfg->rope_freq_scale = 1.0f / f;
        } else if (st.len == 4 && !memcmp(st.ptr, "yarn", 4)) {
            float f, af;
            LOOM_TRY(get_real(g, arch, "rope.scaling.factor", 1.0, &f));
            LOOM_TRY(get_real(g, arch, "rope.scaling.attn_factor", 1.0, &af));
            LOOM_TRY(get_count(g, arch, "rope.scaling.original_context_length", false, cfg->ctx_train, 1 << 24,
                               &cfg->ctx_orig));
            cfg->rope_freq_scale = 1.0f / f;
            cfg->rope_yarn = true;
            cfg->yarn_beta_fast = 32.0f;
            cfg->yarn_beta_slow = 1.0f;
            cfg->rope_attn_factor = af * (f > 1.0f ? 1.0f + 0.1f * logf(f) : 1.0f);
        } else if (!(st.len == 8 && !memcmp(st.ptr, "longrope", 8) && cfg->arch == LOOM_ARCH_PHI3)) {
            return loom_error(LOOM_ERR_UNSUPPORTED, "%s: rope scaling '%.*s' is not supported (none, linear, yarn%s)", path,
                              (int)st.len, st.ptr, cfg->arch == LOOM_ARCH_PHI3 ? ", longrope" : "");
        }
    }

    if (cfg->n_heads % cfg->n_kv_heads)
        return loom_error(LOOM_ERR_FORMAT, "%s: %d query heads are not a multiple of %d KV heads", path,
                          cfg->n_heads, cfg->n_kv_heads);
    if (cfg->rope_dim > cfg->head_dim || cfg->rope_dim % 2 || cfg->head_dim % 2)
        return loom_error(LOOM_ERR_FORMAT, "%s: rope dimension %d must be even and at most the head size %d", path,
                          cfg->rope_dim, cfg->head_dim);

    const loom_gguf_tensor *emb = loom_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return loom_error(LOOM_ERR_FORMAT, "%s: tensor token_embd.weight is missing", path);
    if (emb->n_dims != 2 || emb->ne[0] != cfg->dim || emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        return loom_error(LOOM_ERR_FORMAT, "%s: token_embd.weight has shape [%lld, %lld], expected [%d, vocab]",
                          path, (long long)emb->ne[0], (long long)emb->ne[1], cfg->dim);
    cfg->vocab = (int)emb->ne[1];
    cfg->tied_embeddings = !has_tensor(g, "output.weight");
    cfg->has_rope_factors = has_tensor(g, "rope_freqs.weight");
    cfg->qkv_bias = has_tensor(g, "blk.0.attn_q.bias");
    LOOM_TRY(read_family(g, cfg));
    LOOM_TRY(read_experts(g, cfg));
    if (!cfg->encoder) { /* a decoder converted as an embedding model (Qwen3-Embedding): its pooled hidden states */
        char key[128];
        int64_t pt = 0;
        snprintf(key, sizeof key, "%s.pooling_type", cfg->arch_name);
        if (!loom_gguf_get_int(g, key, &pt) && loom_gguf_get(g, key))
            return loom_error(LOOM_ERR_FORMAT, "%s: metadata key %s is not an integer", loom_gguf_path(g), key);
        if (pt < 0 || pt > LOOM_POOL_RANK)
            return loom_error(LOOM_ERR_UNSUPPORTED, "%s: %s = %lld is not supported (0 none, 1 mean, 2 cls, 3 last, 4 rank)",
                              loom_gguf_path(g), key, (long long)pt);
        if (pt > 0) cfg->encoder = true, cfg->pooling = (loom_pooling)pt, cfg->out_norm_hidden = true;
    }
    if (cfg->pooling == LOOM_POOL_RANK) { /* a reranker: its classification head */
        const loom_gguf_tensor *t = loom_gguf_find_tensor(g, "cls.output.weight");
        if (!t || t->ne[0] != cfg->dim || t->ne[1] < 1 || t->ne[1] > 64 || t->ne[2] != 1 || t->ne[3] != 1)
            return loom_error(LOOM_ERR_UNSUPPORTED, "%s: a reranker (pooling type rank) needs cls.output.weight [%d, 1..64]",
                              loom_gguf_path(g), cfg->dim);
        cfg->n_cls_out = (int)t->ne[1];
    }
    if (cfg->pos == LOOM_POS_LEARNED) cfg->rope_dim = 0; /* nothing rotates */
    if (cfg->encoder) cfg->tied_embeddings = false;
    return NULL;
}

void loom_model_describe_extras(const loom_model_config *c, char *buf, size_t n) {
    size_t at = 0;
    buf[0] = 0;
#define ADD(...) (at < n ? (void)(at += (size_t)snprintf(buf + at, n - at, __VA_ARGS__)) : (void)0)
    if (c->n_experts) ADD(" x %d experts (%d used)", c->n_experts, c->n_experts_used);
    if (c->ffn_shared) ADD(" + shared %d", c->ffn_shared);
    if (c->n_dense_lead) ADD(", layers 0-%d dense FFN %d", c->n_dense_lead - 1, c->ffn_dense);
    if (c->moe_every) ADD(" on layers %d, %d, ... (dense FFN %d between)", 1, 1 + c->moe_every, c->ffn_dense);
    if (c->mla) ADD(", latent attention (%d wide)", c->kv_lora);
#undef ADD
}

/* ---------------------------------------------------------- byte counts */

static int64_t norm_floats(const loom_model_config *c, int64_t n) { return c->norm == LOOM_NORM_LAYER ? 2 * n : n; }

int64_t loom_layer_vector_floats(const loom_model_config *c, int l, int64_t nq, int64_t nkv, int64_t nffn, int64_t nexp) {
    int64_t hd = c->head_dim, dim = c->dim, f = 2 * norm_floats(c, dim); /* two norms per layer */
    if (c->post_norms) f += 2 * norm_floats(c, dim);
    if (c->qkv_bias) f += (nq + 2 * nkv) * hd;
    if (c->qk_norm) f += 2 * hd;
    if (c->attn_out_bias) f += dim;
    /* (of a mixture, the dense layers' where the rank holds columns of them: nffn, loom_shard_dense's) */
    if (c->ffn_bias && (!c->n_experts || (loom_layer_dense(c, l) && nffn > 0))) f += nffn + dim;
    if (c->attn_sinks) f += nq;
    if (c->mla) f += c->kv_lora + c->q_lora; /* attn_kv_a_norm, attn_q_a_norm */
    if (loom_layer_dense(c, l)) return f; /* a leading dense layer: none of the mixture's */
    if (c->shared_gated) f += dim; /* the shared expert's gate */
    if (c->router_bias) f += c->n_experts;
    if (c->expert_probs_bias) f += c->n_experts;
    if (c->expert_bias) f += nexp * (2 * nffn + dim); /* each held expert's gate and up columns, its down */
    return f;
}

int64_t loom_embed_vector_floats(const loom_model_config *c) {
    return (c->type_embd ? c->dim : 0) + (c->embd_norm ? norm_floats(c, c->dim) : 0);
}

int64_t loom_head_vector_floats(const loom_model_config *c) { return c->encoder ? 0 : norm_floats(c, c->dim); }

int64_t loom_rope_vector_floats(const loom_model_config *c) {
    return (c->has_rope_factors ? c->rope_dim / 2 : 0) + (c->has_rope_long_short ? c->rope_dim : 0);
}
