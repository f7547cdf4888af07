/*
 * parallel/plan.h — the shard plan: which rank holds which part of the model.
 *
 * The coordinator (world rank 0) makes the plan once, from the model's
 * metadata and tensor index only (never tensor data), encodes it as a
 * protobuf ShardPlan (proto/loom.proto), broadcasts it; every rank decodes
 * and validates it against its own copy of the model before reading a
 * weight. Making a plan never touches tensor data, so a 70B model can be
 * planned from a sparse header-only file on a laptop.
 *
 * The rank grid is world = pp × tp. By default world rank r is stage r / tp,
 * TP rank r % tp (a TP group is contiguous ranks, which mpirun's by-slot
 * mapping puts on one host). Given the ranks' host names, the planner
 * permutes ranks so each TP group lies on one host when the hosts allow it
 * (stages ordered by host, world rank 0 always stage 0, TP rank 0), and
 * otherwise records a warning naming the TP groups that span hosts.
 *
 * Pipeline stages are contiguous layer ranges, balanced by bytes read per
 * token: a layer costs the bytes of its tensors (norms and biases at 4 bytes
 * an element, as loaded); the first stage also reads one embedding row, the
 * last the output norm and the whole lm head (a tied table counts on both).
 * With request.balance each tensor's bytes are weighted by its type's
 * measured decode time per byte (loom_plan_balance); a stage's `cost` stays
 * its bytes.
 * The maximum stage cost is minimal (exact: binary search on the cost with
 * an exact feasibility test); among the partitions reaching it, the one
 * with the smallest sum of squared stage costs is taken (the most even).
 *
 * Within a stage, tensor parallelism splits, contiguously and as evenly as
 * possible (sizes differ by at most one indivisible group):
 *   - query heads, in groups whose boundaries fall on the quantization
 *     blocks of attn_output's input dimension in every layer of the stage
 *     (Q4_K with 64-wide heads: groups of 4); among the even splits the one
 *     holding the fewest KV heads in total (GQA groups kept whole when that
 *     costs no balance);
 *   - KV heads: exactly those the rank's query heads need; a KV head needed
 *     by two ranks is held by both (replicated, shown in the plan);
 *   - MLP columns (ffn_gate/ffn_up rows, ffn_down inputs), in groups on
 *     ffn_down's block boundaries;
 *   - vocabulary rows of the embedding and lm head (rows are free).
 *
 * Per rank the plan states the weight bytes (exactly what
 * loom_weights_create maps or copies for the shard), the KV cache bytes
 * (loom_kv_bytes for --ctx-size × --sequences in blocks of block_tokens)
 * and a workspace estimate (see LOOM_PLAN_WORKSPACE below).
 *
 * Errors: an impossible request (world != tp × pp, tp larger than the
 * indivisible head or column groups, pp larger than the layers, a memory
 * limit too small) fails with LOOM_ERR_PLAN and a message saying what would
 * work. A message that is truncated, corrupt, hostile or made for another
 * model fails to decode with LOOM_ERR_FORMAT (LOOM_ERR_PLAN when well formed
 * but inconsistent) and a message naming the field; nothing is read out of
 * bounds. On error *out is NULL and nothing else is changed.
 *
 * Ownership: a loom_plan owns all its memory and borrows nothing; a
 * loom_plan_model owns its layer array (loom_plan_model_free).
 */
#ifndef LOOM_PLAN_H
#define LOOM_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "parallel/options.h"
#include "runtime/gguf.h"
#include "runtime/model.h"
#include "runtime/status.h"
#include "runtime/types.h"

/* Version of the ShardPlan wire format; decode rejects any other. */
#define LOOM_PLAN_PROTOCOL 2u

#define LOOM_PLAN_HOST_MAX 256 /* bytes of a host name, NUL included */
#define LOOM_PLAN_MAX_WORLD 65536

/* Workspace estimate per rank, bytes (R = batch_rows, held widths):
 *   4·R·(3·dim + 2·q·head_dim + 2·kv·head_dim + 2·ffn_cols + rope_dim)  activations
 * + 4·R·widest input                         quantized activations (upper bound)
 * + 8·R·dim                                  pipeline send/receive buffers
 * + 4·R·vocab_rows                           logits (last stage only)
 * + 4·LOOM_PLAN_THREADS·ctx_size             attention scores per thread      */
#define LOOM_PLAN_THREADS 64

/* ---- what the planner reads of a model ---- */

/* Types of one layer's 2-D weights (blk.N.attn_q.weight ...). */
typedef struct {
    loom_type q, k, v, o, gate, up, down; /* a mixture of experts: the experts' (ffn_*_exps) */
    loom_type router;                     /* ffn_gate_inp of a mixture of experts */
    loom_type sh_gate, sh_up, sh_down;    /* its shared expert's (ffn_*_shexp); a mixture's leading dense layer
                                           * (loom_layer_dense): its MLP's (ffn_*), gate / up / down too */
    loom_type q_a, v_b;                   /* MLA (cfg.mla): attn_q_a (F32 without) and attn_v_b; q is attn_q or
                                           * attn_q_b, k attn_kv_a_mqa, v attn_k_b */
} loom_plan_layer;

/* The planner's view of a model: its configuration, header hash and the
 * type of every matrix. Read from a GGUF tensor index, or filled in by hand
 * (tests, synthetic shapes). */
typedef struct {
    loom_model_config cfg;
    uint64_t hash;           /* loom_gguf_header_hash of the file */
    loom_type embed;         /* token_embd.weight */
    loom_type head;          /* output.weight; == embed when cfg.tied_embeddings (unused for encoders) */
    loom_type pos_embd;      /* position_embd.weight when cfg.pos is learned (gpt2, bert) */
    loom_plan_layer *layers; /* (cfg.n_layers) */
} loom_plan_model;

/* Reads the types (checking each matrix is present with the shape cfg
 * implies) from the tensor index; touches no tensor data. On error *out is
 * zeroed and owns nothing. */
loom_status loom_plan_model_read(const loom_gguf *g, const loom_model_config *cfg, loom_plan_model *out) LOOM_MUST_USE;
void loom_plan_model_free(loom_plan_model *m);

/* ---- the request and the plan ---- */

/* Stage balance by decode time rather than bytes: the time a decode step's
 * matmuls take per weight byte of each type, in sixteenths of the model's
 * main type (the one most of its bytes have): 16 = as slow per byte, 11 =
 * 0.69 times; 0 = not measured, counted as 16. A layer (or the lm head)
 * then costs its bytes times its types' figures, so a stage holding a type
 * the kernels read faster (an 8-bit lm head beside 4-bit layers) takes
 * more bytes. loom_plan_balance_measure (plan_balance.h) fills it from
 * this machine's kernels. */
typedef struct {
    uint8_t per_byte[LOOM_TYPE_COUNT];
    int64_t head_time; /* > 0: the lm head's cost, timed against a layer's (loom_plan_balance_probe_head) */
    char what[160];    /* how it was measured, for the plan's printout */
} loom_plan_balance;

typedef struct {
    int tp, pp;
    int world;          /* ranks launched (mpirun -np); 0 = tp × pp */
    loom_engine_options engine; /* context, sequences, KV type and block, batch rows; n_threads is
                                   each rank's own (0 in a plan) */
    int64_t max_memory; /* bytes per rank; 0 = no limit */
    const loom_plan_balance *balance; /* NULL: stages balanced by bytes read per token (not kept in the plan) */
} loom_plan_request;

/* tp, pp and the engine's defaults (loom_engine_defaults) for the rest. */
loom_plan_request loom_plan_request_defaults(int tp, int pp);

typedef struct {
    int world_rank, stage, tp_rank;
    char host[LOOM_PLAN_HOST_MAX]; /* "" when unknown */
    loom_shard shard;              /* what loom_weights_create binds */
    bool kv_shared_first;          /* KV head kv_begin is also held by another rank of the stage */
    bool kv_shared_last;           /* KV head kv_end - 1 likewise */
    int64_t weight_bytes;          /* mapped + copied by loom_weights_create */
    int64_t kv_bytes;              /* loom_kv_bytes of this rank's cache */
    int64_t workspace_bytes;       /* estimate, see LOOM_PLAN_WORKSPACE above */
} loom_rank_plan;

typedef struct {
    int layer_begin, layer_end;
    int64_t cost;      /* bytes read per token by the whole stage */
    int head_group;    /* query heads per indivisible group */
    int64_t ffn_group; /* MLP columns per indivisible group */
} loom_stage_plan;

typedef struct loom_plan {
    int world, tp, pp;
    uint64_t model_hash;
    loom_model_config cfg;   /* the model planned for */
    loom_plan_request req;   /* tp, pp, context, sequences, KV type, batch, memory */
    int kv_blocks;           /* per rank: loom_engine_kv_blocks(&req.engine) */
    loom_stage_plan *stages; /* (pp) */
    loom_rank_plan *ranks;   /* (world) indexed by world rank */
    int *grid;               /* (pp, tp) world rank of (stage, tp rank) */
    char **warnings;         /* (n_warnings) */
    int n_warnings;
    char balance[160];       /* how the stages were balanced when not by bytes alone; "" = by bytes */
} loom_plan;

/* Plans `m` for the request. hosts: world host names indexed by world
 * rank, or NULL (one host). Fails with LOOM_ERR_PLAN and a message saying
 * what would work when the request is impossible. */
loom_status loom_plan_make(const loom_plan_model *m, const loom_plan_request *req, const char *const *hosts,
                           loom_plan **out) LOOM_MUST_USE;

/* Protobuf ShardPlan bytes in a malloc'd buffer (*buf, *len); the caller
 * frees it. On error *buf is NULL. */
loom_status loom_plan_encode(const loom_plan *p, uint8_t **buf, size_t *len) LOOM_MUST_USE;

/* Parses and validates a ShardPlan against this rank's model: protocol
 * version, header hash, dimensions, every range and byte count (see the
 * contract above). */
loom_status loom_plan_decode(const uint8_t *buf, size_t len, const loom_plan_model *m, loom_plan **out) LOOM_MUST_USE;

/* The entry of a world rank; NULL when out of range. */
const loom_rank_plan *loom_plan_rank(const loom_plan *p, int world_rank);
/* World rank of (stage, tp rank); -1 when out of range. */
int loom_plan_world_rank(const loom_plan *p, int stage, int tp_rank);

/* One row per rank (human units) with stage summary, totals and warnings,
 * or the same as one JSON object. */
void loom_plan_print(const loom_plan *p, FILE *f, bool json);
void loom_plan_free(loom_plan *p);

/* "512 B", "1.5 KiB", "75.2 MiB" ... (binary units, one decimal): how loom
 * prints a byte count everywhere. */
void loom_format_bytes(char *buf, size_t n, int64_t bytes);

#endif
