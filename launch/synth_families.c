/*
 * launch/synth_families.c — `loom synth` for the families beyond llama and
 * qwen2, and for mixtures of experts (llama's too): qwen3, qwen3moe, gemma2,
 * gemma3, phi3, gpt2, bert, nomic-bert, nomic-bert-moe, with
 * llama.cpp's tensor names and shapes (src/models/<arch>.cpp) and the
 * metadata its loaders read; gpt-oss; glm4moe and deepseek2 (DeepSeek-V3-
 * style routing: the router's logits of std ~1, the selection bias
 * exp_probs_b 0.03·N; deepseek2's latent attention with the converter's
 * split attn_k_b / attn_v_b, attn_k_b in Q8_0 where a mix's blocks do not
 * divide its rows).
 *
 * Beside what cmd_synth.c says of scales: norm weights are 1 + 0.2·N and
 * LayerNorm biases 0.1·N (so a norm applied with the wrong weight shows);
 * QK-norm weights likewise; output and MLP biases 0.05·N; learned
 * positions 0.5·N and the token-type rows 0.3·N (always F32, as llama.cpp's
 * converter writes them); gemma's token embedding 1/sqrt(dim)·N (it is
 * multiplied by sqrt(dim)); LongRoPE factors 2 + 0.3·N (long) and
 * 1.2 + 0.1·N (short). Fused tensors (attn_qkv, phi3's ffn_up) have the
 * scale of their parts. gpt-oss: attention sinks 1 + N (about as large as
 * a head's scores, so they take a visible share of every softmax), the
 * router's bias 0.5·N, the experts' biases 0.05·N.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "launch/synth.h"

typedef struct {
    bool qk_norm, post_norms, post_ln, layer_norm, fused_qkv, fused_up, plain_ffn, qkv_bias, out_bias, ffn_bias;
    bool learned_pos, types, encoder, rope, tied_always;
    bool scaled_embd; /* the model multiplies its input embedding by sqrt(dim) (gemma) */
    bool oss;         /* gpt-oss: sinks, router and expert biases, its MLP norm named post_attention_norm */
    bool glm;         /* glm4moe: leading dense layers, ungated shared experts, exp_probs_b, that norm name too */
    bool ds;          /* deepseek2: glm's mixture (exp_probs_b only with sigmoids), multi-head latent attention */
    bool nomic_moe;   /* nomic-bert-moe: the mixture (ungated experts, no biases) on odd layers only, the even ones
                       * bert's MLP with biases (moe_every_n_layers 2) */
} family;

static family family_of(const char *arch) {
    family f = {0};
    f.rope = true;
    if (!strcmp(arch, "qwen2moe")) {
        f.qkv_bias = true;
    } else if (!strcmp(arch, "qwen3") || !strcmp(arch, "qwen3moe")) {
        f.qk_norm = true;
    } else if (!strcmp(arch, "gemma2") || !strcmp(arch, "gemma3")) {
        f.post_norms = f.scaled_embd = true;
        f.qk_norm = !strcmp(arch, "gemma3");
        f.tied_always = !strcmp(arch, "gemma2"); /* llama.cpp's gemma2 has no output.weight */
    } else if (!strcmp(arch, "phi3")) {
        f.fused_qkv = f.fused_up = true;
    } else if (!strcmp(arch, "gpt2")) {
        f.layer_norm = f.fused_qkv = f.plain_ffn = f.qkv_bias = f.out_bias = f.ffn_bias = f.learned_pos = true;
        f.rope = false;
    } else if (!strcmp(arch, "bert")) {
        f.layer_norm = f.post_ln = f.plain_ffn = f.qkv_bias = f.out_bias = f.ffn_bias = f.learned_pos = true;
        f.types = f.encoder = true;
        f.rope = false;
    } else if (!strcmp(arch, "nomic-bert")) {
        f.layer_norm = f.post_ln = f.fused_qkv = f.types = f.encoder = true;
    } else if (!strcmp(arch, "nomic-bert-moe")) {
        f.layer_norm = f.post_ln = f.fused_qkv = f.types = f.encoder = true;
        f.plain_ffn = f.qkv_bias = f.out_bias = f.ffn_bias = f.nomic_moe = true;
    } else if (!strcmp(arch, "gpt-oss")) {
        f.qkv_bias = f.out_bias = f.oss = true;
    } else if (!strcmp(arch, "glm4moe")) {
        f.qkv_bias = f.glm = true;
    } else if (!strcmp(arch, "deepseek2")) {
        f.ds = true;
    }
    return f;
}

bool loom_synth_is_family(const char *arch) {
    static const char *const names[] = {"qwen2moe", "qwen3", "qwen3moe", "gemma2", "gemma3", "phi3",
                                        "gpt2",     "bert",  "nomic-bert", "nomic-bert-moe", "gpt-oss", "glm4moe",
                                        "deepseek2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(arch, names[i])) return true;
    return false;
}

loom_status loom_synth_family_metadata(loom_gguf_writer *w, const loom_synth_cfg *c, const loom_synth_type *tc) {
    family f = family_of(c->arch);
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, c->arch), key)
#define U32(suffix, v) LOOM_TRY(loom_gguf_writer_add_uint(w, KEY(suffix), LOOM_GGUF_U32, (uint64_t)(v)))
#define F32(suffix, v) LOOM_TRY(loom_gguf_writer_add_float(w, KEY(suffix), LOOM_GGUF_F32, (v)))
    LOOM_TRY(loom_gguf_writer_add_str(w, "general.architecture", c->arch));
    LOOM_TRY(loom_gguf_writer_add_str(w, "general.name", "loom-synth"));
    LOOM_TRY(loom_gguf_writer_add_uint(w, "general.file_type", LOOM_GGUF_U32, tc->ftype));
    LOOM_TRY(loom_gguf_writer_add_uint(w, "general.quantization_version", LOOM_GGUF_U32, 2));
    LOOM_TRY(loom_gguf_writer_add_uint(w, "general.seed", LOOM_GGUF_U64, c->seed));
    U32("block_count", c->layers + c->nextn);
    U32("context_length", c->ctx);
    U32("embedding_length", c->dim);
    /* a mixture's feed_forward_length: Mixtral's is the experts' width, Qwen's the dense (or shared) one */
    U32("feed_forward_length", f.glm || f.ds                                          ? c->dense_ffn
                               : c->shared_ffn                                           ? c->shared_ffn
                               : c->experts && strcmp(c->arch, "llama") && !f.oss && !f.nomic_moe ? c->ffn * c->experts_used
                                                                                                  : c->ffn);
    if (c->experts) {
        U32("expert_count", c->experts);
        U32("expert_used_count", c->experts_used);
        if (f.nomic_moe) U32("moe_every_n_layers", 2); /* as nomic-embed-text-v2-moe's (its experts: feed_forward_length) */
        else if (strcmp(c->arch, "llama")) U32("expert_feed_forward_length", c->ffn);
        if (c->shared_ffn && !f.glm && !f.ds) U32("expert_shared_feed_forward_length", c->shared_ffn);
    }
    if (f.glm || f.ds) { /* as convert_hf_to_gguf.py writes GLM-4.5's and DeepSeek-V3's (V2's: softmax gating) */
        U32("expert_shared_count", c->shared_ffn / c->ffn);
        U32("leading_dense_block_count", c->dense_lead);
        U32("expert_gating_func", c->softmax_gating ? 1 : 2); /* softmax, sigmoid */
        LOOM_TRY(loom_gguf_writer_add_bool(w, KEY("expert_weights_norm"), true));
        F32("expert_weights_scale", c->expert_scale);
        if (c->groups) {
            U32("expert_group_count", c->groups);
            U32("expert_group_used_count", c->groups_used);
        }
        if (c->nextn) U32("nextn_predict_layers", c->nextn);
    }
    U32("attention.head_count", c->heads);
    if (f.ds && c->legacy_kv_b) { /* the older conversion: the heads as multi-head attention */
        U32("attention.head_count_kv", c->heads);
        U32("attention.key_length", c->head_dim);
        U32("attention.value_length", c->v_head_dim);
        U32("attention.kv_lora_rank", c->kv_lora);
        if (c->q_lora) U32("attention.q_lora_rank", c->q_lora);
    } else if (f.ds) { /* MLA as one KV head of the latent and the rotated part (deepseek.py's set_gguf_parameters) */
        U32("attention.head_count_kv", 1);
        U32("attention.key_length", c->kv_lora + c->rope_dim);
        U32("attention.value_length", c->kv_lora);
        U32("attention.key_length_mla", c->head_dim);
        U32("attention.value_length_mla", c->v_head_dim);
        U32("attention.kv_lora_rank", c->kv_lora);
        if (c->q_lora) U32("attention.q_lora_rank", c->q_lora);
    } else {
        U32("attention.head_count_kv", c->kv_heads);
        U32("attention.key_length", c->head_dim);
        U32("attention.value_length", c->head_dim);
    }
    if (f.layer_norm) F32("attention.layer_norm_epsilon", c->norm_eps);
    else F32("attention.layer_norm_rms_epsilon", c->norm_eps);
    if (f.rope) {
        F32("rope.freq_base", c->rope_theta);
        U32("rope.dimension_count", c->rope_dim ? c->rope_dim : c->head_dim);
    }
    if (c->rope_scale > 0) {
        LOOM_TRY(loom_gguf_writer_add_str(w, KEY("rope.scaling.type"), "linear"));
        F32("rope.scaling.factor", c->rope_scale);
    }
    if (c->yarn > 0) {
        LOOM_TRY(loom_gguf_writer_add_str(w, KEY("rope.scaling.type"), "yarn"));
        F32("rope.scaling.factor", c->yarn);
        U32("rope.scaling.original_context_length", c->yarn_orig);
        if (f.ds) F32("rope.scaling.yarn_log_multiplier", 0.1 * c->yarn_mscale); /* the converter's 0.1 x mscale_all_dim */
    }
    if (c->window > 0) U32("attention.sliding_window", c->window);
    if (c->window_pattern > 0) U32("attention.sliding_window_pattern", c->window_pattern);
    if (c->attn_softcap >= 0) F32("attn_logit_softcapping", c->attn_softcap);
    if (c->final_softcap >= 0) F32("final_logit_softcapping", c->final_softcap);
    if (c->longrope_ctx > 0) { /* phi3 LongRoPE: the converter's attention factor for ctx / orig */
        LOOM_TRY(loom_gguf_writer_add_str(w, KEY("rope.scaling.type"), "longrope"));
        U32("rope.scaling.original_context_length", c->longrope_ctx);
        double scale = (double)c->ctx / (double)c->longrope_ctx;
        F32("rope.scaling.attn_factor", scale > 1 ? sqrt(1 + log(scale) / log((double)c->longrope_ctx)) : 1.0);
    }
    if (f.encoder) {
        LOOM_TRY(loom_gguf_writer_add_bool(w, KEY("attention.causal"), false));
        U32("pooling_type", c->pooling < 0 ? 1 : c->pooling); /* (mean unless given) */
        LOOM_TRY(loom_gguf_writer_add_uint(w, "tokenizer.ggml.token_type_count", LOOM_GGUF_U32, 2));
    } else if (c->pooling >= 0) { /* a decoder as an embedding model (or a reranker: its labels, as llama.cpp reads them) */
        U32("pooling_type", c->pooling);
        static const char *const labels[] = {"yes", "no"};
        if (c->pooling == 4) LOOM_TRY(loom_gguf_writer_add_arr_str(w, KEY("classifier.output_labels"), labels, 2));
    }
    U32("vocab_size", c->vocab);
#undef KEY
#undef U32
#undef F32
    return loom_synth_vocab(w, c->vocab, c->vocab_from);
}

/* A norm's weight (1 + 0.2·N) and, for LayerNorm, bias (0.1·N). */
static loom_status norm(loom_synth_plan *p, const family *f, const char *base, int64_t n) {
    char name[112];
    snprintf(name, sizeof name, "%s.weight", base);
    LOOM_TRY(loom_synth_tensor(p, name, LOOM_TYPE_F32, 1, n, 1, 0.2, false, 1.0));
    if (!f->layer_norm) return NULL;
    snprintf(name, sizeof name, "%s.bias", base);
    return loom_synth_tensor(p, name, LOOM_TYPE_F32, 1, n, 1, 0.1, false, 0.0);
}

loom_status loom_synth_family_tensors(loom_synth_plan *p, const loom_synth_cfg *c, const loom_synth_type *tc) {
    family f = family_of(c->arch);
    char name[96], base[96];
    const double s_dim = 1 / sqrt((double)c->dim), s_attn = 1 / sqrt((double)(c->heads * c->head_dim)),
                 s_ffn = 1 / sqrt((double)c->ffn);
    const int64_t q_out = c->heads * c->head_dim, kv_out = c->kv_heads * c->head_dim;
    const bool tied = c->tied || f.tied_always;
#define W(kind, l) loom_synth_weight_type(c, tc, kind, l)
#define T2(stem, kind, ne0, ne1, std)                                                                          \
    do {                                                                                                        \
        snprintf(name, sizeof name, "blk.%" PRId64 "." stem ".weight", l);                                      \
        LOOM_TRY(loom_synth_tensor(p, name, W(kind, l), 2, ne0, ne1, std, false, 0.0));                         \
    } while (0)
#define BIAS(stem, n)                                                                                           \
    do {                                                                                                        \
        snprintf(name, sizeof name, "blk.%" PRId64 "." stem ".bias", l);                                        \
        LOOM_TRY(loom_synth_tensor(p, name, LOOM_TYPE_F32, 1, n, 1, 0.05, false, 0.0));                         \
    } while (0)
#define NORM(stem) (snprintf(base, sizeof base, "blk.%" PRId64 "." stem, l), norm(p, &f, base, c->dim))

    /* gemma multiplies the embedding by sqrt(dim), so its rows are 1/sqrt(dim)
     * in scale (as a trained gemma's are): the input is then of unit scale
     * like the other families', and a tied lm head gives logits of unit
     * scale, which soft-capping bends without saturating them all */
    LOOM_TRY(loom_synth_tensor(p, "token_embd.weight", W(W_EMBD, 0), 2, c->dim, c->vocab, f.scaled_embd ? s_dim : 1.0,
                               false, 0.0));
    /* positions and token types stay F32 whatever the type, as llama.cpp's
     * converter and quantizer keep them (its CPU add of the type row takes
     * no F16) */
    if (f.learned_pos)
        LOOM_TRY(loom_synth_tensor(p, "position_embd.weight", LOOM_TYPE_F32, 2, c->dim, c->ctx, 0.5, false, 0.0));
    if (f.types) LOOM_TRY(loom_synth_tensor(p, "token_types.weight", LOOM_TYPE_F32, 2, c->dim, 2, 0.3, false, 0.0));
    if (f.encoder) LOOM_TRY(norm(p, &f, "token_embd_norm", c->dim));
    if (c->longrope_ctx > 0) {
        int64_t nr = (c->rope_dim ? c->rope_dim : c->head_dim) / 2;
        LOOM_TRY(loom_synth_tensor(p, "rope_factors_long.weight", LOOM_TYPE_F32, 1, nr, 1, 0.3, false, 2.0));
        LOOM_TRY(loom_synth_tensor(p, "rope_factors_short.weight", LOOM_TYPE_F32, 1, nr, 1, 0.1, false, 1.2));
    }
    for (int64_t l = 0; l < c->layers + c->nextn; l++) {
        const bool dense_lead = l < c->dense_lead; /* glm4moe's and deepseek2's leading dense layers */
        /* a mixture's layer (its MLP written above when a leading dense one); nomic-bert-moe's even layers are dense */
        const bool moe = c->experts && !(f.nomic_moe && l % 2 != 1);
        if (!f.post_ln) LOOM_TRY(NORM("attn_norm"));
        if (f.ds) { /* multi-head latent attention (deepseek2.cpp's tensors) */
            const int64_t nh = c->heads, K = c->head_dim, R = c->kv_lora, V = c->v_head_dim, nope = K - c->rope_dim;
            if (c->q_lora) {
                T2("attn_q_a", W_Q, c->dim, c->q_lora, s_dim);
                snprintf(base, sizeof base, "blk.%" PRId64 ".attn_q_a_norm", l);
                LOOM_TRY(norm(p, &f, base, c->q_lora));
                T2("attn_q_b", W_Q, c->q_lora, nh * K, 1 / sqrt((double)c->q_lora));
            } else
                T2("attn_q", W_Q, c->dim, nh * K, s_dim);
            T2("attn_kv_a_mqa", W_K, c->dim, R + c->rope_dim, s_dim);
            snprintf(base, sizeof base, "blk.%" PRId64 ".attn_kv_a_norm", l);
            LOOM_TRY(norm(p, &f, base, R));
            if (c->legacy_kv_b) { /* each head's nope key rows, then its value rows, over the latent */
                T2("attn_kv_b", W_K, R, nh * (nope + V), 1 / sqrt((double)R));
            } else {
                /* attn_k_b's rows are nope long: where the type's blocks do not divide them, Q8_0
                 * (llama-quant.cpp falls back to a 32-block type likewise) */
                loom_type kt = W(W_K, l);
                if (nope % loom_type_info((uint32_t)kt)->block_size) kt = LOOM_TYPE_Q8_0;
                snprintf(name, sizeof name, "blk.%" PRId64 ".attn_k_b.weight", l);
                LOOM_TRY(loom_synth_tensor3(p, name, kt, 3, nope, R, nh, 1 / sqrt((double)nope), false, 0.0));
                snprintf(name, sizeof name, "blk.%" PRId64 ".attn_v_b.weight", l);
                LOOM_TRY(loom_synth_tensor3(p, name, W(W_V, l), 3, R, V, nh, 1 / sqrt((double)R), false, 0.0));
            }
            T2("attn_output", W_O, nh * V, c->dim, 1 / sqrt((double)(nh * V)));
        } else if (f.fused_qkv) {
            T2("attn_qkv", W_Q, c->dim, q_out + 2 * kv_out, s_dim);
            if (f.qkv_bias) BIAS("attn_qkv", q_out + 2 * kv_out);
        } else {
            T2("attn_q", W_Q, c->dim, q_out, s_dim);
            T2("attn_k", W_K, c->dim, kv_out, s_dim);
            T2("attn_v", W_V, c->dim, kv_out, s_dim);
            if (f.qkv_bias) {
                BIAS("attn_q", q_out);
                BIAS("attn_k", kv_out);
                BIAS("attn_v", kv_out);
            }
        }
        if (f.qk_norm) {
            snprintf(name, sizeof name, "blk.%" PRId64 ".attn_q_norm.weight", l);
            LOOM_TRY(loom_synth_tensor(p, name, LOOM_TYPE_F32, 1, c->head_dim, 1, 0.2, false, 1.0));
            snprintf(name, sizeof name, "blk.%" PRId64 ".attn_k_norm.weight", l);
            LOOM_TRY(loom_synth_tensor(p, name, LOOM_TYPE_F32, 1, c->head_dim, 1, 0.2, false, 1.0));
        }
        if (!f.ds) T2("attn_output", W_O, q_out, c->dim, s_attn);
        if (f.out_bias) BIAS("attn_output", c->dim);
        if (f.oss) {
            snprintf(name, sizeof name, "blk.%" PRId64 ".attn_sinks.weight", l);
            LOOM_TRY(loom_synth_tensor(p, name, LOOM_TYPE_F32, 1, c->heads, 1, 1.0, false, 1.0));
        }
        if (f.post_norms) LOOM_TRY(NORM("post_attention_norm"));
        if (f.post_ln) LOOM_TRY(NORM("attn_output_norm"));
        if (f.oss || f.glm) LOOM_TRY(NORM("post_attention_norm"));
        else if (!f.post_ln) LOOM_TRY(NORM("ffn_norm"));
        if (dense_lead) {
            T2("ffn_gate", W_GATE, c->dim, c->dense_ffn, s_dim);
            T2("ffn_up", W_UP, c->dim, c->dense_ffn, s_dim);
            T2("ffn_down", W_DOWN, c->dense_ffn, c->dim, 1 / sqrt((double)c->dense_ffn));
        } else if (moe) {
            /* the router (F32, as llama.cpp's quantizer keeps it), its logits
             * of std ~3 (a trained router's are spread too: near ties between
             * the last expert taken and the next, where 8-bit activations'
             * rounding picks another expert, are rarer; glm4moe's std ~1, where
             * its sigmoids do not saturate into near ties), and the experts */
            snprintf(name, sizeof name, "blk.%" PRId64 ".ffn_gate_inp.weight", l);
            const bool sigmoid = f.glm || (f.ds && !c->softmax_gating);
            LOOM_TRY(loom_synth_tensor(p, name, LOOM_TYPE_F32, 2, c->dim, c->experts, (sigmoid ? 1 : 3) * s_dim, false, 0.0));
            if (f.oss) {
                snprintf(name, sizeof name, "blk.%" PRId64 ".ffn_gate_inp.bias", l);
                LOOM_TRY(loom_synth_tensor(p, name, LOOM_TYPE_F32, 1, c->experts, 1, 0.5, false, 0.0));
            }
            if (sigmoid) { /* the selection's bias, 0.03·N: it reorders the closer of sigmoids spread ~0.2 */
                snprintf(name, sizeof name, "blk.%" PRId64 ".exp_probs_b.bias", l);
                LOOM_TRY(loom_synth_tensor(p, name, LOOM_TYPE_F32, 1, c->experts, 1, 0.03, false, 0.0));
            }
            static const char *const stems[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
            static const loom_synth_kind kinds[3] = {W_GATE, W_UP, W_DOWN};
            for (int j = f.plain_ffn ? 1 : 0; j < 3; j++) { /* (plain: no gate) */
                /* MXFP4_MOE: the experts in MXFP4, the rest Q8_0 (llama.cpp's llama-quant.cpp) */
                const loom_type xt = tc->base == LOOM_TYPE_MXFP4 ? LOOM_TYPE_MXFP4 : W(kinds[j], l);
                snprintf(name, sizeof name, "blk.%" PRId64 ".%s.weight", l, stems[j]);
                LOOM_TRY(loom_synth_tensor3(p, name, xt, 3, j == 2 ? c->ffn : c->dim, j == 2 ? c->dim : c->ffn,
                                            c->experts, j == 2 ? s_ffn : s_dim, false, 0.0));
                if (f.oss) {
                    snprintf(name, sizeof name, "blk.%" PRId64 ".%s.bias", l, stems[j]);
                    LOOM_TRY(loom_synth_tensor(p, name, LOOM_TYPE_F32, 2, j == 2 ? c->dim : c->ffn, c->experts, 0.05,
                                               false, 0.0));
                }
            }
            if (c->shared_ffn) { /* the shared expert, and qwen2moe's gate of it (sigmoids of ~0.2-0.8) */
                const double s_sh = 1 / sqrt((double)c->shared_ffn);
                snprintf(name, sizeof name, "blk.%" PRId64 ".ffn_gate_inp_shexp.weight", l);
                if (!f.glm && !f.ds) LOOM_TRY(loom_synth_tensor(p, name, LOOM_TYPE_F32, 1, c->dim, 1, s_dim, false, 0.0));
                T2("ffn_gate_shexp", W_GATE, c->dim, c->shared_ffn, s_dim);
                T2("ffn_up_shexp", W_UP, c->dim, c->shared_ffn, s_dim);
                T2("ffn_down_shexp", W_DOWN, c->shared_ffn, c->dim, s_sh);
            }
        } else if (f.fused_up) {
            T2("ffn_up", W_UP, c->dim, 2 * c->ffn, s_dim);
        } else {
            if (!f.plain_ffn) T2("ffn_gate", W_GATE, c->dim, c->ffn, s_dim);
            T2("ffn_up", W_UP, c->dim, c->ffn, s_dim);
            if (f.ffn_bias) BIAS("ffn_up", c->ffn);
        }
        if (!moe) T2("ffn_down", W_DOWN, c->ffn, c->dim, s_ffn);
        if (f.ffn_bias && !moe) BIAS("ffn_down", c->dim);
        if (f.post_norms) LOOM_TRY(NORM("post_ffw_norm"));
        if (f.post_ln) LOOM_TRY(NORM("layer_output_norm"));
        if (l >= c->layers) { /* a multi-token-prediction block's own tensors (glm4moe.cpp's nextn.*) */
            T2("nextn.eh_proj", W_O, 2 * c->dim, c->dim, s_dim);
            LOOM_TRY(NORM("nextn.enorm"));
            LOOM_TRY(NORM("nextn.hnorm"));
            LOOM_TRY(NORM("nextn.shared_head_norm"));
        }
    }
    if (!f.encoder) {
        LOOM_TRY(norm(p, &f, "output_norm", c->dim));
        if (!tied)
            LOOM_TRY(loom_synth_tensor(p, "output.weight", W(W_OUTPUT, 0), 2, c->dim, c->vocab, s_dim, false, 0.0));
    }
    if (c->pooling == 4 && f.encoder) { /* a reranker's classification head (llama.cpp's cls, cls.output), F32 as */
        LOOM_TRY(loom_synth_tensor(p, "cls.weight", LOOM_TYPE_F32, 2, c->dim, c->dim, s_dim, false, 0.0)); /* converters */
        LOOM_TRY(loom_synth_tensor(p, "cls.bias", LOOM_TYPE_F32, 1, c->dim, 1, 0.1, false, 0.0));        /* keep it */
        LOOM_TRY(loom_synth_tensor(p, "cls.output.weight", LOOM_TYPE_F32, 2, c->dim, 1, s_dim, false, 0.0));
        LOOM_TRY(loom_synth_tensor(p, "cls.output.bias", LOOM_TYPE_F32, 1, 1, 1, 0.1, false, 0.0));
    } else if (c->pooling == 4) { /* a decoder's (Qwen3-Reranker's): two label rows ("yes", "no"), no dense layer */
        LOOM_TRY(loom_synth_tensor(p, "cls.output.weight", LOOM_TYPE_F32, 2, c->dim, 2, s_dim, false, 0.0));
    }
#undef W
#undef T2
#undef BIAS
#undef NORM
    return NULL;
}
