/*
 * runtime/model.h — a model's configuration and one rank's weights.
 *
 * loom_model_config is read from GGUF metadata only (no tensor data), so the
 * coordinator can plan any model on any machine. loom_shard names the part
 * of the model one rank holds: a range of layers, a range of query heads
 * (and the KV heads they need), a range of MLP columns and of vocabulary
 * rows. The whole model on one rank is the special case of full ranges.
 *
 * loom_weights binds a shard to the tensors of an open GGUF file. Slices
 * along a weight's output rows are views into the mapping (nothing copied);
 * slices along its input dimension (attention output, MLP down) are strided
 * and are copied into compact buffers, so a rank touches only the pages of
 * its own slices. The GGUF file must outlive the weights.
 */
#ifndef LOOM_MODEL_H
#define LOOM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/gguf.h"
#include "runtime/status.h"
#include "runtime/threadpool.h"
#include "runtime/types.h"

typedef enum {
    LOOM_ARCH_LLAMA,
    LOOM_ARCH_QWEN2,
    LOOM_ARCH_QWEN2MOE,
    LOOM_ARCH_QWEN3,
    LOOM_ARCH_QWEN3MOE,
    LOOM_ARCH_GEMMA2,
    LOOM_ARCH_GEMMA3,
    LOOM_ARCH_PHI3,
    LOOM_ARCH_GPT2,
    LOOM_ARCH_BERT,
    LOOM_ARCH_NOMIC_BERT,
    LOOM_ARCH_GPT_OSS,
    LOOM_ARCH_GLM4MOE,
    LOOM_ARCH_DEEPSEEK2,
} loom_arch;

typedef enum { LOOM_NORM_RMS, LOOM_NORM_LAYER } loom_norm_kind; /* LayerNorm: mean and variance, weight and bias */
/* GELU: the tanh approximation, as ggml_gelu; SWIGLU_OAI: gpt-oss's gate, min(g, 7)·sigmoid(1.702·min(g, 7))
 * times (clamp(up, ±7) + 1), as ggml_swiglu_oai */
typedef enum { LOOM_ACT_SILU, LOOM_ACT_GELU, LOOM_ACT_SWIGLU_OAI } loom_act;
typedef enum { LOOM_POS_ROPE, LOOM_POS_LEARNED } loom_pos_kind; /* learned: position_embd.weight rows are added */
/* llama.cpp's pooling type ids (<arch>.pooling_type) */
typedef enum { LOOM_POOL_NONE = 0, LOOM_POOL_MEAN = 1, LOOM_POOL_CLS = 2, LOOM_POOL_LAST = 3, LOOM_POOL_RANK = 4 } loom_pooling;

#define LOOM_MAX_LAYERS 4096
#define LOOM_MAX_EXPERTS 1024

/* What a model is. The first block is every family's; the second says how a
 * family differs from llama, and all-zero (what a hand-filled config of a
 * llama shape has) means llama: RMSNorm before each block, SiLU-gated MLP,
 * separate Q/K/V, RoPE, causal attention, an lm head, default scales. */
typedef struct {
    loom_arch arch;
    char arch_name[16];  /* "llama", "qwen2", "gemma3", ... */
    uint64_t weight_types; /* bit t: the file has a tensor of type t (device_forward.h: loom_dforward_auto_ok) */
    int n_layers;
    int dim;             /* residual width */
    int n_heads;         /* query heads */
    int n_kv_heads;
    int head_dim;
    int ffn;             /* MLP hidden width (of each expert in a mixture of experts) */
    int vocab;
    int ctx_train;       /* context length the model was trained for */
    int rope_dim;        /* rotated dimensions per head (<= head_dim) */
    float rope_base;
    float rope_freq_scale; /* 1/linear scaling factor, 1 when absent */
    bool rope_neox;      /* split halves (qwen2) instead of adjacent pairs (llama) */
    bool has_rope_factors; /* rope_freqs.weight present (Llama 3.1+) */
    float norm_eps;
    bool tied_embeddings;  /* no output.weight: the lm head is token_embd */
    bool qkv_bias;

    /* ---- family differences (model_config.c sets them; 0 = as llama) ---- */
    loom_norm_kind norm;
    loom_act act;
    loom_pos_kind pos;
    bool ffn_plain;      /* act(up·x + b_up), no gate (gpt2, bert) */
    bool fused_qkv;      /* attn_qkv.weight holds the Q, K, V rows in that order */
    bool fused_gate_up;  /* ffn_up.weight holds the gate rows, then the up rows (phi3) */
    bool qk_norm;        /* RMSNorm of every query and key head (qwen3, gemma3) */
    bool post_norms;     /* attn_post_norm / ffn_post_norm on a block's output, before the add (gemma) */
    bool post_ln;        /* norms after the residual add and none before (bert) */
    bool attn_out_bias;  /* attn_output.bias */
    bool ffn_bias;       /* ffn_up.bias and ffn_down.bias (plain MLP) */
    bool type_embd;      /* token_types.weight: row 0 (sentence A) is added (bert) */
    bool embd_norm;      /* token_embd_norm after the embedding (bert) */
    bool bidirectional;  /* every row sees its whole sequence (encoders) */
    bool encoder;        /* no lm head: the output is the hidden state (bert; a decoder with a pooling type) */
    bool out_norm_hidden; /* ... after the output norm (a decoder's: causal attention, output_norm) */
    int n_cls_out;        /* LOOM_POOL_RANK (a reranker): a row's output is its classification head's n_cls_out
                             scores (cls: dense + tanh where the file has it, then cls.output; a qwen3's softmaxed) */
    loom_pooling pooling;
    float embd_scale;    /* embedding multiplier (gemma: sqrt(dim)); 0 = 1 */
    float attn_scale;    /* query scale; 0 = 1/sqrt(head_dim) */
    float residual_scale; /* attention's and the MLP's outputs times it before they join the residual (granite); 0 = 1 */
    float logit_scale;   /* the logits divided by it (granite); 0 = 1 */
    float attn_softcap;  /* c > 0: scores become c·tanh(s/c) (gemma2) */
    float final_softcap; /* likewise for the logits */
    int swa_window;      /* > 0: on sliding-window layers a row sees the keys of its last swa_window positions */
    uint64_t swa_layers[LOOM_MAX_LAYERS / 64]; /* bit l: layer l is a sliding-window layer */
    float rope_base_swa, rope_scale_swa;       /* RoPE on sliding-window layers (gemma3: 10000, 1) */
    int no_rope_every;   /* n > 0: layers l with (l + 1) % n == 0 rotate nothing (smollm3: 4, its NoPE layers) */
    float attn_temp_scale; /* > 0: a row at position p scales its queries by 1 + attn_temp_scale · ln(floor(p /
                            * ctx_orig) + 1) (Llama 4's temperature tuning; mistral3) */
    float rope_attn_factor; /* cos and sin multiplied by it (phi3 LongRoPE, YaRN's magnitude scaling); 0 = 1 */
    bool has_rope_long_short; /* rope_factors_long/short.weight (phi3 LongRoPE) */
    int ctx_orig;        /* LongRoPE: the long factors are used when the context exceeds this; YaRN: the context
                          * trained before the scaling */
    bool rope_yarn;      /* YaRN (rope.scaling.type yarn, factor 1/rope_freq_scale): pair i rotates by a mix of
                          * its scaled and its original frequency, ramped between the pairs that turn
                          * yarn_beta_fast and yarn_beta_slow times over ctx_orig (llama.cpp's ggml_rope_yarn) */
    float yarn_beta_fast, yarn_beta_slow;
    bool attn_sinks;     /* attn_sinks.weight: per query head a logit that joins every softmax's sum and
                          * brings no value (gpt-oss) */

    /* Mixture of experts (n_experts > 0: Mixtral as llama, qwen3moe): every
     * layer's MLP is n_experts SiLU-gated MLPs (ffn_plain: act(up x), no
     * gate) of width ffn and a router
     * (ffn_gate_inp, n_experts x dim); a row goes through the n_experts_used
     * experts of highest softmax probability, its output their sum weighted
     * by those probabilities (renormalised to sum 1 when expert_norm). TP
     * splits every expert's columns as a dense MLP's. */
    int n_experts, n_experts_used;
    bool expert_norm;
    bool expert_weight_softmax; /* the chosen experts' weights are the softmax of their logits alone (gpt-oss) */
    bool router_bias;    /* ffn_gate_inp.bias added to the router's logits (gpt-oss) */
    bool expert_bias;    /* ffn_{gate,up,down}_exps.bias: each expert's biases (gpt-oss) */
    int ffn_shared;      /* > 0: also a shared expert of this width, every row through it (its output times
                          * sigmoid(ffn_gate_inp_shexp · x) where shared_gated: qwen2moe); TP splits it in
                          * proportion (loom_shared_range) */
    bool shared_gated;
    /* DeepSeek-V3-style routing (glm4moe): a row's probabilities are the
     * sigmoids of its logits (not their softmax); with expert_probs_bias,
     * ffn_exp_probs_b.bias is added to them to choose the experts, not to
     * weigh them; with n_expert_groups > 1, only the experts of the
     * n_group_used groups whose two best (biased) probabilities sum highest
     * are candidates; the chosen weights end times expert_weights_scale
     * (0 = 1), after expert_norm's renormalisation. */
    bool expert_sigmoid;
    bool expert_probs_bias;
    float expert_weights_scale;
    int n_expert_groups, n_group_used;
    /* The first n_dense_lead layers of a mixture have a dense MLP ffn_dense
     * wide instead (ffn_gate / ffn_up / ffn_down, SiLU-gated, or ffn_plain's
     * up and down with ffn_bias's biases; no router); a shard holds
     * loom_shard_dense's columns of it. */
    int n_dense_lead, ffn_dense;
    /* > 0 (nomic-bert-moe): only the layers l with l % moe_every == 1 are
     * the mixture, the others dense (their MLP ffn_dense wide, as above). */
    int moe_every;
    /* Multi-head latent attention (deepseek2: DeepSeek-V2/V2.5/V3/R1, Kimi
     * K2), computed as llama.cpp does with the absorbed weights: one KV
     * "head" per token, the latent kv_lora wide (RMS-normed) followed by a
     * rope_dim key part shared by every head (head_dim = kv_lora + rope_dim,
     * n_kv_heads 1; the cache stores it as both key and value). A query head
     * is mla_k_dim = nope + rope_dim wide (from attn_q, or attn_q_a, its norm
     * and attn_q_b where q_lora > 0): its nope part times attn_k_b (kv_lora x
     * nope a head) joins the latent, its rope part the key's; the output's
     * latent part times attn_v_b (mla_v_dim x kv_lora a head) is the head's
     * value, mla_v_dim wide, into attn_output. attn_scale holds the scores'
     * scale (YaRN's magnitude squared over sqrt(mla_k_dim)). */
    bool mla;
    int q_lora, kv_lora, mla_k_dim, mla_v_dim;
    bool mla_kv_b;       /* an older conversion's attn_kv_b (each head's nope key rows, then its value rows, over
                          * the latent) instead of attn_k_b / attn_v_b: the weights derive them (bind_mla) */
} loom_model_config;

/* Inputs of attn_output per query head: the value's width (MLA's after attn_v_b). */
static inline int loom_o_head_dim(const loom_model_config *c) { return c->mla ? c->mla_v_dim : c->head_dim; }

/* Whether layer l's MLP is a mixture's dense one (leading, or between its mixture layers) rather than the mixture. */
static inline bool loom_layer_dense(const loom_model_config *c, int l) {
    return c->n_experts && (l < c->n_dense_lead || (c->moe_every > 0 && l % c->moe_every != 1));
}

static inline bool loom_layer_is_swa(const loom_model_config *c, int l) {
    return c->swa_window > 0 && l >= 0 && l < LOOM_MAX_LAYERS && ((c->swa_layers[l / 64] >> (l % 64)) & 1);
}

/* Whether c is llama's computation exactly (no family's scales or NoPE layers). */
static inline bool loom_plain_llama(const loom_model_config *c) {
    return c->arch == LOOM_ARCH_LLAMA && !c->no_rope_every && !c->residual_scale && !c->logit_scale && !c->embd_scale &&
           !c->attn_scale && !c->attn_temp_scale;
}

/* Whether layer l rotates its queries and keys (smollm3's every fourth does not). */
static inline bool loom_layer_rotates(const loom_model_config *c, int l) {
    return c->rope_dim > 0 && !(c->no_rope_every > 0 && (l + 1) % c->no_rope_every == 0);
}

/* The shared expert's columns a shard holding expert columns [f0, f1)
 * holds: [f0, f1) scaled to its width, floored to multiples of 256 (which
 * every type's block divides), the last shard's end its width. */
static inline void loom_shared_range(const loom_model_config *c, int64_t f0, int64_t f1, int64_t *s0, int64_t *s1) {
    const int64_t S = c->ffn_shared, F = c->ffn;
    *s0 = f0 >= F ? S : f0 * S / F / 256 * 256;
    *s1 = f1 >= F ? S : f1 * S / F / 256 * 256;
}

/* Rows of the fused tensors: attn_qkv (Q, K, V heads), ffn_up when fused (gate, up). */
static inline int64_t loom_qkv_rows(const loom_model_config *c) {
    return ((int64_t)c->n_heads + 2 * (int64_t)c->n_kv_heads) * c->head_dim;
}

/* F32 elements of layer l's 1-D tensors (norms, biases) that a shard
 * holding nq query heads, nkv KV heads, nffn MLP columns and nexp experts binds (the
 * planner counts them as loom_weights_create binds them). */
int64_t loom_layer_vector_floats(const loom_model_config *c, int l, int64_t nq, int64_t nkv, int64_t nffn, int64_t nexp);
/* What the one-line model descriptions (loom plan, bench, predict) add after
 * "FFN <ffn>": a mixture's experts, shared experts and leading dense layers,
 * MLA's latent; "" for a dense model. Writes at most n bytes (NUL included). */
void loom_model_describe_extras(const loom_model_config *c, char *buf, size_t n);

/* F32 elements beside the embedding matrix the first stage binds (token
 * type row, embedding norm), and beside the lm head the last stage binds
 * (output norm and its bias). Position embeddings are a matrix: see
 * loom_weights.pos_embd. */
int64_t loom_embed_vector_floats(const loom_model_config *c);
int64_t loom_head_vector_floats(const loom_model_config *c);
/* F32 elements of the RoPE factor tensors a stage holding layers binds. */
int64_t loom_rope_vector_floats(const loom_model_config *c);

/* Reads and validates the configuration. Errors name the file and the key. */
loom_status loom_model_config_read(const loom_gguf *g, loom_model_config *cfg) LOOM_MUST_USE;

/* What one rank holds. Ranges are [begin, end). */
typedef struct {
    int layer_begin, layer_end;
    int q_begin, q_end;          /* query heads */
    int kv_begin, kv_end;        /* KV heads the query heads need */
    int64_t ffn_begin, ffn_end;  /* MLP columns */
    int64_t vocab_begin, vocab_end;
    bool embed;                  /* holds the token embedding (first stage) */
    bool head;                   /* holds the final norm and lm head (last stage) */
    /* A mixture of experts split by experts instead of columns (expert
     * parallelism inside the TP group): the shard holds experts
     * [expert_begin, expert_end) whole (ffn_begin..ffn_end is then every
     * column) and the shared expert's columns [shared_begin, shared_end).
     * false: every expert's columns ffn_begin..ffn_end, the shared
     * expert's loom_shared_range of them. loom_shard_experts/_shared. */
    bool split_experts;
    int expert_begin, expert_end;
    int64_t shared_begin, shared_end;
} loom_shard;

/* The whole model on one rank. */
loom_shard loom_shard_full(const loom_model_config *cfg);

/* The experts a shard holds (their columns ffn_begin..ffn_end), and its
 * columns of the shared expert. */
static inline void loom_shard_experts(const loom_model_config *c, const loom_shard *s, int *e0, int *e1) {
    *e0 = s->split_experts ? s->expert_begin : 0;
    *e1 = s->split_experts ? s->expert_end : c->n_experts;
}
static inline void loom_shard_shared(const loom_model_config *c, const loom_shard *s, int64_t *s0, int64_t *s1) {
    if (s->split_experts) *s0 = s->shared_begin, *s1 = s->shared_end;
    else if (c->ffn_shared) loom_shared_range(c, s->ffn_begin, s->ffn_end, s0, s1);
    else *s0 = *s1 = 0;
}
/* The columns of a mixture's dense layer's MLP (ffn_dense wide) a shard
 * holds: its share of the experts (split by experts) or of their columns,
 * scaled to the dense width and floored to multiples of 256, the last
 * shard's end the width — so the TP ranks hold every column once; where
 * the dense MLP is as wide as an expert, its columns split as the
 * experts' do. */
static inline void loom_shard_dense(const loom_model_config *c, const loom_shard *s, int64_t *d0, int64_t *d1) {
    const int64_t D = c->ffn_dense, n = s->split_experts ? c->n_experts : c->ffn;
    const int64_t a = s->split_experts ? s->expert_begin : s->ffn_begin, b = s->split_experts ? s->expert_end : s->ffn_end;
    if (D == n && !s->split_experts) { /* as wide as an expert (nomic-bert-moe): the same columns */
        *d0 = a, *d1 = b;
        return;
    }
    *d0 = a >= n ? D : a * D / n / 256 * 256;
    *d1 = b >= n ? D : b * D / n / 256 * 256;
}

/* KV head needed by query head q. */
static inline int loom_kv_of_q(const loom_model_config *cfg, int q) {
    return q / (cfg->n_heads / cfg->n_kv_heads);
}

/* A matrix of `rows` output rows by `cols` inputs, in blocks of its type,
 * rows `stride` bytes apart; with r8, in the r8 layout of runtime/kernels.h
 * instead (groups of 8 interleaved rows, 8 * stride bytes each, stride =
 * loom_r8_row_bytes), which only loom_matmul_r8 reads. */
typedef struct {
    loom_type type;
    int64_t rows, cols;
    size_t stride;
    const void *data;
    bool r8;
    const struct loom_lora_mat *lora; /* LoRA adapters' slices on this matrix (runtime/lora.h), or NULL */
} loom_mat;

/* Where a matrix bound from the file came from: rows [lo, hi) of tensor
 * `name` (a view), or its columns [lo, hi) (cols). LoRA adapters
 * (runtime/lora.h) find their tensors' matrices here. */
typedef struct {
    loom_mat *m;
    char name[64];
    bool cols;
    int64_t lo, hi;
} loom_mat_source;

/* A norm's weight and (LayerNorm) bias; w NULL when the model has none there. */
typedef struct {
    const float *w, *b; /* (n), (n) or NULL */
} loom_norm;

typedef struct {
    loom_norm attn_norm;     /* (dim) before attention; none with post_ln */
    loom_mat wq;             /* (n_q·head_dim, dim) (a view into attn_qkv when fused) */
    loom_mat wk;             /* (n_kv·head_dim, dim) */
    loom_mat wv;             /* (n_kv·head_dim, dim) */
    const float *bq, *bk, *bv; /* (n_q·head_dim), (n_kv·head_dim) ×2, or NULL */
    const float *q_norm, *k_norm; /* (head_dim) QK-norm weights, or NULL */
    loom_mat wo;             /* (dim, n_q·head_dim) */
    const float *bo;         /* (dim) attn_output.bias, or NULL; only the rank holding query head 0 adds it */
    loom_norm attn_post;     /* (dim) gemma: on the attention output, before the residual add */
    loom_norm attn_res;      /* (dim) bert: on the residual stream after the add */
    loom_norm ffn_norm;      /* (dim) before the MLP; none with post_ln */
    loom_mat w_gate;         /* (n_ffn, dim); data NULL for a plain MLP */
    loom_mat w_up;           /* (n_ffn, dim) */
    const float *b_up;       /* (n_ffn) or NULL */
    loom_mat w_down;         /* (dim, n_ffn) */
    const float *b_down;     /* (dim) or NULL; only the rank holding MLP column 0 adds it */
    loom_mat router;         /* (n_experts, dim) ffn_gate_inp, every TP rank whole; data NULL without experts and in
                              * a leading dense layer (x_gate etc. NULL there too) */
    loom_mat *x_gate, *x_up, *x_down; /* (n_experts) each: an expert's w_gate, w_up, w_down (views and copies as theirs) */
    const float *shared_gate;         /* (dim) ffn_gate_inp_shexp (shared_gated), or NULL. In a mixture's layer w_gate /
                                       * w_up / w_down are the shared expert's (its columns loom_shard_shared), in a
                                       * leading dense layer the dense MLP's (loom_shard_dense); data NULL where the
                                       * shard holds none */
    const float *router_b;            /* (n_experts) or NULL */
    const float *probs_b;             /* (n_experts) ffn_exp_probs_b.bias (expert_probs_bias), or NULL */
    const float **xb_gate, **xb_up;   /* (n_experts) each: expert e's gate / up biases of the shard's columns, or NULL */
    const float **xb_down;            /* (n_experts) each: expert e's down bias (dim), or NULL; added by the rank
                                       * holding its column 0 */
    const float *sinks;               /* (n_q) attention sinks of the shard's query heads, or NULL */
    /* MLA (cfg.mla): wq is attn_q or attn_q_b (n_q·mla_k_dim rows), wk attn_kv_a_mqa (kv_lora + rope_dim rows, whole
     * on every TP rank), wv absent, wo (dim, n_q·mla_v_dim) */
    loom_mat wq_a;           /* (q_lora, dim) attn_q_a, whole on every TP rank; data NULL without */
    const float *q_a_norm;   /* (q_lora) */
    const float *kv_a_norm;  /* (kv_lora) */
    loom_mat wk_b;           /* (n_q·kv_lora, nope) attn_k_b, head h's kv_lora rows after h's */
    loom_mat wv_b;           /* (n_q·mla_v_dim, kv_lora) attn_v_b, likewise */
    loom_norm ffn_post;      /* (dim) gemma */
    loom_norm ffn_res;       /* (dim) bert */
} loom_layer;

typedef struct loom_weights {
    loom_model_config cfg;
    loom_shard shard;
    int n_q, n_kv;           /* query and KV heads held */
    int64_t n_ffn;           /* MLP columns held */
    int64_t n_vocab;         /* vocabulary rows held */
    int *q_to_kv;            /* (n_q) local KV index of each local query head */
    loom_mat embed;          /* (n_vocab, dim) rows vocab_begin.. of token_embd; valid if shard.embed */
    loom_mat pos_embd;       /* (ctx_train, dim) learned positions; valid if shard.embed and cfg.pos is learned */
    const float *type_row;   /* (dim) row 0 of token_types.weight, or NULL */
    const float *cls_w, *cls_b;         /* reranker (head stage): (dim, dim) and (dim), or NULL */
    const float *cls_out_w, *cls_out_b; /* (n_cls_out, dim) and (n_cls_out) (bias or NULL) */
    loom_norm embd_norm;     /* (dim) token_embd_norm, or none */
    loom_norm out_norm;      /* (dim); valid if shard.head (w NULL for encoders without one) */
    loom_mat lm_head;        /* (n_vocab, dim); valid if shard.head and the model has an lm head */
    const float *rope_factors; /* (rope_dim/2) or NULL */
    const float *rope_long, *rope_short; /* (rope_dim/2) LongRoPE factors, or NULL */
    loom_layer *layers;      /* (layer_end - layer_begin) */
    size_t bytes_mapped;     /* bytes of the file this rank reads (views) */
    size_t bytes_copied;     /* bytes of compact copies and F32 conversions */
    void **owned;            /* buffers to free */
    int n_owned, cap_owned;
    loom_mat_source *sources; /* every matrix bound by rows or columns of a 2-D tensor */
    int n_sources, cap_sources;
} loom_weights;

/* The matrices layer L multiplies, in a fixed order (q, k, v, o, gate, up,
 * down, the router, MLA's attn_q_a, attn_k_b, attn_v_b, then every expert's gate, up, down), those absent
 * (a plain MLP's gate, a mixture's dense MLP) left out: at most
 * loom_layer_max_mats(c) of them. Returns how many it wrote to out. */
int loom_layer_max_mats(const loom_model_config *c);
int loom_layer_mats(const loom_model_config *c, loom_layer *L, loom_mat **out);

/* Validates the shard against the config and binds the tensors. Errors name
 * the tensor and what shape or type was expected. On error *out is NULL. */
loom_status loom_weights_create(const loom_gguf *g, const loom_model_config *cfg, const loom_shard *shard,
                                loom_weights **out) LOOM_MUST_USE;
void loom_weights_free(loom_weights *w);

/* Puts every matrix the CPU kernels multiply (the layers' and the lm head;
 * an embedding table only as the head it is tied to, which the embedding
 * then reads from the copy: loom_r8_dequant_row) into the layout
 * the active kernel level prefers for its type (loom_matmul_prefers_r8):
 * a copy per matrix, after which the file's pages of it are dropped (g
 * mapped) or the compact copy it replaces is freed. For a rank that
 * computes on the CPU, before its first step; the bytes move from
 * bytes_mapped to bytes_copied. pool (or NULL: this thread) copies each
 * matrix split as the forward pass splits its rows, so every thread first
 * touches the pages it will read. */
loom_status loom_weights_repack(loom_weights *w, const loom_gguf *g, loom_pool *pool) LOOM_MUST_USE;

#endif
