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
#include "runtime/types.h"

typedef enum { LOOM_ARCH_LLAMA, LOOM_ARCH_QWEN2 } loom_arch;

typedef struct {
    loom_arch arch;
    char arch_name[16];  /* "llama", "qwen2" */
    int n_layers;
    int dim;             /* residual width */
    int n_heads;         /* query heads */
    int n_kv_heads;
    int head_dim;
    int ffn;             /* MLP hidden width */
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
} loom_model_config;

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
} loom_shard;

/* The whole model on one rank. */
loom_shard loom_shard_full(const loom_model_config *cfg);

/* KV head needed by query head q. */
static inline int loom_kv_of_q(const loom_model_config *cfg, int q) {
    return q / (cfg->n_heads / cfg->n_kv_heads);
}

/* A matrix of `rows` output rows by `cols` inputs, in blocks of its type,
 * rows `stride` bytes apart. */
typedef struct {
    loom_type type;
    int64_t rows, cols;
    size_t stride;
    const void *data;
} loom_mat;

typedef struct {
    const float *attn_norm;  /* (dim) */
    loom_mat wq;             /* (n_q·head_dim, dim) */
    loom_mat wk;             /* (n_kv·head_dim, dim) */
    loom_mat wv;             /* (n_kv·head_dim, dim) */
    const float *bq, *bk, *bv; /* (n_q·head_dim), (n_kv·head_dim) ×2; qwen2 only, else NULL */
    loom_mat wo;             /* (dim, n_q·head_dim) */
    const float *ffn_norm;   /* (dim) */
    loom_mat w_gate;         /* (n_ffn, dim) */
    loom_mat w_up;           /* (n_ffn, dim) */
    loom_mat w_down;         /* (dim, n_ffn) */
} loom_layer;

typedef struct loom_weights {
    loom_model_config cfg;
    loom_shard shard;
    int n_q, n_kv;           /* query and KV heads held */
    int64_t n_ffn;           /* MLP columns held */
    int64_t n_vocab;         /* vocabulary rows held */
    int *q_to_kv;            /* (n_q) local KV index of each local query head */
    loom_mat embed;          /* (n_vocab, dim) rows vocab_begin.. of token_embd; valid if shard.embed */
    const float *out_norm;   /* (dim); valid if shard.head */
    loom_mat lm_head;        /* (n_vocab, dim); valid if shard.head */
    const float *rope_factors; /* (rope_dim/2) or NULL */
    loom_layer *layers;      /* (layer_end - layer_begin) */
    size_t bytes_mapped;     /* bytes of the file this rank reads (views) */
    size_t bytes_copied;     /* bytes of compact copies and F32 conversions */
    void **owned;            /* buffers to free */
    int n_owned, cap_owned;
} loom_weights;

/* Validates the shard against the config and binds the tensors. Errors name
 * the tensor and what shape or type was expected. On error *out is NULL. */
loom_status loom_weights_create(const loom_gguf *g, const loom_model_config *cfg, const loom_shard *shard,
                                loom_weights **out) LOOM_MUST_USE;
void loom_weights_free(loom_weights *w);

#endif
