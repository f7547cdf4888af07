/*
 * parallel/plan_internal.h — what the planner (plan.c, plan_model.c), the
 * ShardPlan wire format (plan_wire.c) and the printer (plan_print.c) share. Private to
 * parallel/plan*.c; parallel/plan.h is the contract everyone else uses.
 */
#ifndef LOOM_PLAN_INTERNAL_H
#define LOOM_PLAN_INTERNAL_H

#include "parallel/plan.h"

#define MAX_LAYERS 4096                /* layers of a model at most */
#define LOOM_PLAN_MAX_WARNINGS 256     /* warnings a plan keeps; later ones are dropped */
#define LOOM_PLAN_MAX_WARNING_LEN 4096 /* bytes of one warning, NUL included */

/* ---- small arithmetic shared by the planner files ---- */

static inline int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}
static inline int64_t lcm64(int64_t a, int64_t b) { return a / gcd64(a, b) * b; }

static inline uint32_t block_of(loom_type t) {
    const loom_type_traits *tr = loom_type_info((uint32_t)t);
    return tr ? tr->block_size : 1;
}

/* Query heads per indivisible group when attn_output has type t: the
 * fewest heads whose inputs fill whole blocks. */
static inline int head_group_of(loom_type t, int head_dim) {
    int64_t b = block_of(t);
    return (int)(b / gcd64(b, head_dim));
}

/* ---- plan_model.c ---- */

/* Bytes of the whole layer l, of one embedding row, of the output norm and lm head. */
/* The 2-D matrices of layer l that shard s holds: type, rows and input
 * width, in the order q, k, v, o, gate, up, down (gate: 0 rows in a plain
 * MLP; one expert's in a mixture), router, the shared expert's gate, up,
 * down (loom_shard_shared's columns). */
typedef struct {
    loom_type type;
    int64_t rows, k;
    int experts;       /* > 0: one expert's, of which the shard holds this many (a token reads n_experts_used of all) */
} loom_plan_mat;
#define LOOM_PLAN_LAYER_MATS 13 /* ... the router, the shared expert's gate, up, down, MLA's attn_q_a and attn_v_b
                                 * (0 rows where absent) */
void loom_plan_layer_mats(const loom_plan_model *m, int l, const loom_shard *s, loom_plan_mat out[LOOM_PLAN_LAYER_MATS]);
int64_t loom_plan_full_layer_bytes(const loom_plan_model *m, int l);
int64_t loom_plan_embed_row_bytes(const loom_plan_model *m);
int64_t loom_plan_head_bytes(const loom_plan_model *m);
/* NULL when the model's shape and types can be planned; LOOM_ERR_INVALID naming what is wrong otherwise. */
loom_status loom_plan_check_model(const loom_plan_model *m) LOOM_MUST_USE;
/* Bytes read per token by a stage of layers [l0, l1), with the embedding row if first and the lm head if last. */
int64_t loom_plan_stage_cost(const loom_plan_model *m, int l0, int l1, bool first, bool last);
/* A layer's and the lm head's cost for the stage balance: their bytes, each
 * tensor's weighted by b (NULL: bytes; loom_plan_balance) */
int64_t loom_plan_layer_time(const loom_plan_model *m, const loom_plan_balance *b, int l);
int64_t loom_plan_head_time(const loom_plan_model *m, const loom_plan_balance *b);
/* Sets rp's weight, KV and workspace bytes from rp->shard under req; nothing else changes. */
void loom_plan_rank_figures(const loom_plan_model *m, const loom_plan_request *req, loom_rank_plan *rp);
/* Weight + KV + workspace bytes of a rank. */
int64_t loom_plan_rank_total(const loom_rank_plan *rp);

/* ---- plan.c ---- */

/* NULL when the request's context, sequences, block, batch, KV type and memory are in range (tp/pp not checked). */
loom_status loom_plan_check_request(const loom_plan_model *m, const loom_plan_request *r) LOOM_MUST_USE;
/* A zeroed plan for m and req (world, tp, pp, hash, cfg, req, kv_blocks set); on error *out is untouched. */
loom_status loom_plan_alloc(const loom_plan_model *m, const loom_plan_request *req, loom_plan **out) LOOM_MUST_USE;
/* Appends a formatted warning (silently dropped past LOOM_PLAN_MAX_WARNINGS); on error p is unchanged. */
loom_status loom_plan_warn(loom_plan *p, const char *fmt, ...) LOOM_PRINTF(2, 3) LOOM_MUST_USE;
/* Query heads (*hg) and MLP columns (*fg) per indivisible group of layers [l0, l1). */
void loom_plan_stage_groups(const loom_plan_model *m, int l0, int l1, int *hg, int64_t *fg);
/* Sets every rank's kv_shared_first/last from the KV ranges of its TP neighbours (p->grid must be filled). */
void loom_plan_kv_flags(loom_plan *p);

#endif
