/*
 * runtime/attn_plan.h — the attention work of a batch for a device, planned
 * on the host: units of up to LOOM_ATTN_UNIT_NQ queries (attn_split.h) that
 * share one sequence and KV head, the block tables of the batch's
 * sequences, and each row's cache slot for the KV write. The plan depends
 * only on the batch (positions, slots) and the cache's tables, so it is
 * built once per step and serves every layer.
 *
 * Units are cut as the CPU cuts them (runtime/attention.c): rows grouped by
 * sequence in ascending positions, query heads grouped by KV head, a GQA
 * group and as many rows as fit into one unit. Owns its arrays (sized at
 * creation for max_rows rows); build allocates nothing.
 */
#ifndef LOOM_ATTN_PLAN_H
#define LOOM_ATTN_PLAN_H

#include <stdint.h>

#include "runtime/attn_split.h"
#include "runtime/kv_cache.h"
#include "runtime/status.h"

typedef struct loom_attn_plan loom_attn_plan;

/* q_to_kv (n_q): the KV head of each query head; q rows are n_q·head_dim
 * floats apart. */
loom_status loom_attn_plan_create(int max_rows, int n_q, int n_kv, int head_dim, const int *q_to_kv,
                                  const loom_kv_config *kc, loom_attn_plan **out) LOOM_MUST_USE;
void loom_attn_plan_free(loom_attn_plan *p);

/* Plans n rows (positions pos, KV slots seq) against kv's block tables.
 * Fails (the plan is then empty) on a row whose position has no block. */
loom_status loom_attn_plan_build(loom_attn_plan *p, const loom_kv_cache *kv, int n, const int32_t *pos,
                                 const int32_t *seq) LOOM_MUST_USE;

/* The built plan (valid until the next build). */
const loom_attn_dunit *loom_attn_plan_units(const loom_attn_plan *p, int *n_units);
const int32_t *loom_attn_plan_tables(const loom_attn_plan *p, int *n_entries);
/* (n) cache slot of each row: block · block_tokens + position mod block_tokens */
const int32_t *loom_attn_plan_slots(const loom_attn_plan *p);

/* Most units / table entries a batch of max_rows rows can need (what a
 * device allocates for the uploads). */
int loom_attn_plan_max_units(const loom_attn_plan *p);
int loom_attn_plan_max_tables(const loom_attn_plan *p);

#endif
