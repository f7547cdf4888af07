/*
 * launch/synth.h — the parts of `loom synth` (launch/cmd_synth.c) that fill
 * tensors and write the vocabulary (launch/synth_gen.c): deterministic in
 * (seed, tensor name, type, shape), integer-only randomness, one float
 * multiply per value (and one add with a mean), so the bytes are the same
 * on every machine.
 */
#ifndef LOOM_SYNTH_H
#define LOOM_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/gguf_write.h"

typedef struct {
    uint64_t s[4];
} loom_synth_rng; /* xoshiro256** */

/* One tensor's generator: set name, std, ones, mean and seed, then pass it
 * to loom_gguf_writer_add_tensor_fill with loom_synth_fill. */
typedef struct {
    const char *name; /* owned by the caller */
    double std;       /* 0 with ones: all elements 1.0 */
    bool ones;
    double mean;      /* float types: elements are mean + std·N(0,1)-ish (0: as before means existed) */
    uint64_t seed;
    loom_synth_rng rng;
    double k;         /* per-element multiplier (float types) */
    uint16_t d, d2;   /* f16 scale(s) (quantized types) */
} loom_synth_gen;

uint64_t loom_synth_splitmix64(uint64_t *s);
uint64_t loom_synth_fnv1a(const char *s);

/* loom_gguf_fill_fn over a loom_synth_gen (user). */
loom_status loom_synth_fill(void *user, const loom_gguf_tensor *t, uint64_t offset, void *dst, size_t n);

/* tokenizer.* keys of an n-token SentencePiece-style vocabulary (n >= 260);
 * or, with `from` (a GGUF's path), that file's tokenizer.* keys as they are
 * but tokenizer.ggml.token_type_count (n: its token count,
 * loom_synth_vocab_count). */
loom_status loom_synth_vocab(loom_gguf_writer *w, int64_t n, const char *from);
/* The tokens of the GGUF at `path` (its tokenizer.ggml.tokens). */
loom_status loom_synth_vocab_count(const char *path, int64_t *n);

/* ---- the model (launch/cmd_synth.c; families beyond llama and qwen2 in synth_families.c) ---- */

typedef struct {
    const char *arch; /* "llama", "qwen2", "qwen3", "qwen3moe", "gemma2", "gemma3", "phi3", "gpt2", "bert", "nomic-bert",
                       * "gpt-oss" */
    int64_t layers, dim, heads, kv_heads, head_dim, ffn, vocab, ctx;
    const char *vocab_from; /* a GGUF whose tokenizer the model takes (vocab: its size); NULL: the generated one */
    double rope_theta, norm_eps;
    bool tied, header_only;
    uint64_t seed;
    /* the other families */
    int64_t rope_dim;           /* rotated dimensions; 0: head_dim */
    int64_t window;             /* gemma: sliding window; 0: gemma2's default key, gemma3 none */
    int64_t window_pattern;     /* gemma: sliding_window_pattern; 0: no key (the family's default) */
    double attn_softcap;        /* gemma2; < 0: no key (default) */
    double final_softcap;       /* gemma2/3; < 0: no key (default) */
    double rope_scale;          /* linear RoPE scaling factor; 0: none */
    int64_t longrope_ctx;       /* phi3: LongRoPE with this original context; 0: none */
    int64_t pooling;            /* pooling_type (-1: bert's mean, none written for a decoder) */
    int64_t experts, experts_used; /* llama, qwen2moe, qwen3moe: a mixture of experts, each --ffn wide; 0: dense */
    int64_t shared_ffn;         /* qwen2moe: the shared expert's width */
    double yarn;                /* YaRN RoPE scaling factor; 0: none */
    int64_t yarn_orig;          /* YaRN: the original context length */
    /* glm4moe: leading dense layers and their width, the chosen experts'
     * weight scale, expert groups, multi-token-prediction blocks after the
     * model's (their tensors written as llama.cpp's converter does, never read) */
    int64_t dense_lead, dense_ffn, groups, groups_used, nextn;
    double expert_scale;
    /* deepseek2: multi-head latent attention (head_dim: a query head's key
     * length, rope_dim of it rotated), kv_lora / q_lora ranks (q_lora 0:
     * attn_q), the value's width; softmax gating instead of the sigmoid's
     * (DeepSeek-V2); YaRN's mscale_all_dim */
    int64_t kv_lora, q_lora, v_head_dim;
    bool softmax_gating;
    bool legacy_kv_b; /* deepseek2: an older conversion's attn_kv_b (and its metadata) instead of attn_k_b / attn_v_b */
    double yarn_mscale;
} loom_synth_cfg;

typedef struct {
    const char *name; /* "Q4_K_M" */
    loom_type base;   /* the plain type, or the mix's base */
    bool mix;
    uint32_t ftype;   /* llama_ftype for general.file_type */
} loom_synth_type;

typedef struct {
    loom_gguf_writer *w;
    loom_synth_gen *gens; /* (cap) */
    char **names;
    int64_t n, cap;
    uint64_t params;
    const loom_synth_cfg *cfg;
} loom_synth_plan;

typedef enum { W_EMBD, W_OUTPUT, W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN } loom_synth_kind;

/* The type of a 2-D weight under the chosen type or mix. */
loom_type loom_synth_weight_type(const loom_synth_cfg *c, const loom_synth_type *tc, loom_synth_kind kind,
                                 int64_t layer);

/* Adds a tensor whose elements loom_synth_fill makes (std, ones, mean as in loom_synth_gen). */
loom_status loom_synth_tensor(loom_synth_plan *p, const char *name, loom_type type, uint32_t n_dims, int64_t ne0,
                              int64_t ne1, double std, bool ones, double mean) LOOM_MUST_USE;
/* The same with a third dimension (n_dims 3: ne2 experts' matrices). */
loom_status loom_synth_tensor3(loom_synth_plan *p, const char *name, loom_type type, uint32_t n_dims, int64_t ne0,
                               int64_t ne1, int64_t ne2, double std, bool ones, double mean) LOOM_MUST_USE;

/* Whether arch is one synth_families.c writes; its metadata and tensors. */
bool loom_synth_is_family(const char *arch);
loom_status loom_synth_family_metadata(loom_gguf_writer *w, const loom_synth_cfg *c, const loom_synth_type *tc)
    LOOM_MUST_USE;
loom_status loom_synth_family_tensors(loom_synth_plan *p, const loom_synth_cfg *c, const loom_synth_type *tc)
    LOOM_MUST_USE;
/* Tensors per layer at most (for the plan's capacity). */
#define LOOM_SYNTH_TENSORS_PER_LAYER 28

#endif
