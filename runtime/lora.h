/*
 * runtime/lora.h — LoRA adapters on a rank's weights.
 *
 * An adapter is a GGUF file as llama.cpp's convert_lora_to_gguf.py writes
 * it: general.type "adapter", adapter.type "lora", adapter.lora.alpha, the
 * base model's general.architecture, and for each adapted matrix W
 * (rows x cols) two tensors "<W's name>.lora_a" [cols, r] (A: r rows of
 * cols) and "<W's name>.lora_b" [r, rows] (B); norms' tensors are ignored,
 * as llama.cpp ignores them. At scale s the matrix computes
 * W·x + s·(alpha/r)·B·(A·x) (s alone where alpha is 0), llama.cpp's
 * llama_adapter_lora_weight::get_scale.
 *
 * Activated LoRAs (adapter.alora.invocation_tokens: applied only from an
 * invocation sequence on) are refused.
 *
 * Adapted matrices are the attention's and the MLP's projections of the
 * blocks: attn_q, attn_k, attn_v, attn_qkv, attn_output, ffn_gate, ffn_up,
 * ffn_down; any other tensor (the embedding, the lm head, experts) is
 * refused by name. Every rank checks the whole adapter against the model
 * and keeps the slices its shard holds, as F16 (an F16 file's values
 * exactly; an F32, BF16 or Q8_0 one's rounded to F16's 11 bits, far below
 * the 8-bit activations' rounding; half the bytes a decode step reads of
 * them as F32): of a matrix split by rows
 * (tensor parallelism's q, k, v, gate, up; fused ones' parts) B's rows and
 * all of A; of one split by columns (attn_output, ffn_down) A's columns
 * and all of B — that rank's B·(A_part·x_part) is its share of the sum the
 * block's all-reduce completes.
 *
 * Each adapter is attached to the matrices as an entry of their `lora`
 * list (model.h's loom_mat); the forward pass (forward.c) adds the entries
 * whose per-sequence scale is nonzero.
 */
#ifndef LOOM_LORA_H
#define LOOM_LORA_H

#include "runtime/gguf.h"
#include "runtime/model.h"
#include "runtime/status.h"

#define LOOM_LORA_MAX 16         /* adapters at once */
#define LOOM_LORA_MAX_RANK 1024  /* r of one matrix at most */

/* One adapter's slice on one matrix. */
typedef struct loom_lora_mat {
    int adapter;       /* its index among the engine's adapters */
    int r;
    int64_t rows, cols; /* the matrix's held rows and columns */
    uint16_t *a;       /* (r, cols): A's held columns, F16 */
    uint16_t *bt;      /* (r, rows): B's held rows, transposed, F16 */
    float scale;       /* alpha / r, or 1 where alpha is 0 */
    const struct loom_lora_mat *next;
} loom_lora_mat;

typedef struct loom_lora loom_lora;

/* Reads the adapter at `path`, checks it against the model file g (its
 * architecture, each tensor's base matrix and shapes), and attaches to w's
 * matrices the slices w's shard holds, as adapter number `index`. Errors
 * name the file and the tensor; on error nothing stays attached. */
loom_status loom_lora_load(const char *path, const loom_gguf *g, loom_weights *w, int index,
                           loom_lora **out) LOOM_MUST_USE;
/* Frees the slices (the weights' lists must no longer be used). */
void loom_lora_free(loom_lora *l);

/* The adapter's alpha (0: none), its largest rank, the matrices it adapts
 * in the whole model, and the bytes this rank holds of it. */
double loom_lora_alpha(const loom_lora *l);
int loom_lora_rank(const loom_lora *l);
int loom_lora_tensors(const loom_lora *l);
size_t loom_lora_bytes(const loom_lora *l);
/* adapter.lora.task_name and .prompt_prefix ("" when absent; llama-server reports them). */
const char *loom_lora_task_name(const loom_lora *l);
const char *loom_lora_prompt_prefix(const loom_lora *l);

#endif
