/*
 * runtime/kv_cache.h — the paged key/value cache of one rank.
 *
 * Memory is a pool of fixed-size blocks, each holding `block_tokens`
 * consecutive positions of one sequence for every layer and KV head this
 * rank holds. Each sequence slot has a block table (position / block_tokens
 * → block id); free blocks sit on a free list. Allocation is deterministic:
 * ranks that see the same reserve/release calls hold the same tables.
 *
 * Layout of one block of one layer, in `type` (F16, F32 or Q8_0), 64-byte
 * aligned:
 *   keys   : (n_kv_heads, head_dim, block_tokens)   transposed: for each head
 *            and dimension, the block's positions are contiguous, so one
 *            vector load gives one dimension of 16 keys and a block's scores
 *            are head_dim broadcast-FMAs, no horizontal sums;
 *   values : (n_kv_heads, block_tokens, head_dim)   one position's value
 *            vector is contiguous (the weighted sum adds whole rows).
 * Q8_0 (llama.cpp's -ctk/-ctv q8_0: about half of F16's bytes): each head's
 * elements are int8, every 32 consecutive dimensions of one position sharing
 * one F16 scale (absmax / 127, round to nearest), so a value is q · scale;
 * a head's int8 elements as above, then its scales — keys (head_dim / 32,
 * block_tokens), values (block_tokens, head_dim / 32). head_dim must be a
 * multiple of 32. Heads are loom_kv_head_bytes apart.
 * With v_is_k there are no value blocks: a position's value is its key, read
 * from the transposed key block.
 * Position p of a sequence is slot p % block_tokens of block
 * table[p / block_tokens]; loom_kv_k_offset / loom_kv_v_offset give the
 * element offsets. Fresh memory reads as zeros; slots never written keep
 * whatever was there before (attention reads keys of slots it then masks).
 *
 * Two ways to manage the blocks — one per cache, never both:
 *   - self-managed: loom_kv_reserve / loom_kv_release take and return blocks
 *     from the cache's own free list (tests, one process);
 *   - pool-managed: an allocator elsewhere (the coordinator's block pool,
 *     kv_blocks.h, which can share blocks between sequences) decides, and
 *     every rank applies its decisions with loom_kv_assign / loom_kv_clear,
 *     which only edit the slot's table.
 *
 * Running out of blocks is a reported condition (LOOM_ERR_KV_FULL, nothing
 * changed), never a crash; a sequence longer than max_ctx is LOOM_ERR_CONTEXT.
 */
#ifndef LOOM_KV_CACHE_H
#define LOOM_KV_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "runtime/types.h"

typedef struct {
    int n_layers;      /* layers held by this rank */
    int n_kv_heads;    /* KV heads held by this rank */
    int head_dim;
    loom_type type;    /* LOOM_TYPE_F16, LOOM_TYPE_F32 or LOOM_TYPE_Q8_0 */
    int block_tokens;  /* positions per block */
    int n_blocks;      /* blocks in the pool */
    int max_seqs;      /* sequence slots */
    int max_ctx;       /* positions per sequence at most */
    bool tables_only;  /* no block memory here (the blocks live on a device, device_forward.h):
                          tables and free list only; k_block / v_block return NULL */
    bool v_is_k;       /* a position's value is its key (multi-head latent attention: both are the latent):
                          no value blocks (half the memory); v_block returns NULL, and attention reads
                          the values from the key blocks (runtime/attention.h) */
} loom_kv_config;

typedef struct loom_kv_cache loom_kv_cache;

/* Bytes the pool of `cfg` needs (keys and values, or keys only when
 * v_is_k; all layers; each block of a layer rounded up to 64 bytes). */
size_t loom_kv_bytes(const loom_kv_config *cfg);

/* Bytes of one layer's keys (or values) of one block, rounded up to 64:
 * block b of layer l starts at (b·n_layers + l)·this from the pool (a
 * block's layers together: a short sequence touches few pages). */
size_t loom_kv_block_bytes(const loom_kv_config *cfg);

/* Bytes of one KV head's keys (or values) in a block (the scales too). */
size_t loom_kv_head_bytes(const loom_kv_config *cfg);

/* Whether `type` can hold a cache of heads of head_dim ("" when it can,
 * else why not), for loom_kv_create and the plan. */
const char *loom_kv_type_refusal(loom_type type, int head_dim);

/* Blocks needed to give n_seqs sequences max_ctx positions each. */
int loom_kv_blocks_for(int n_seqs, int max_ctx, int block_tokens);

loom_status loom_kv_create(const loom_kv_config *cfg, loom_kv_cache **out) LOOM_MUST_USE;
void loom_kv_free(loom_kv_cache *kv);
const loom_kv_config *loom_kv_config_of(const loom_kv_cache *kv);

/* Ensures slot `seq` has blocks for positions [0, n_tokens). On error the
 * cache is unchanged. */
loom_status loom_kv_reserve(loom_kv_cache *kv, int seq, int n_tokens) LOOM_MUST_USE;
/* Whether reserve(seq, n_tokens) would succeed, without changing anything. */
int loom_kv_blocks_missing(const loom_kv_cache *kv, int seq, int n_tokens);
/* Returns all blocks of slot `seq` to the free list. */
void loom_kv_release(loom_kv_cache *kv, int seq);
int loom_kv_free_blocks(const loom_kv_cache *kv);

/* Pool-managed: appends blocks[0..n) to slot `seq`'s table. Fails (nothing
 * changed) for an id out of range or a table longer than the context. */
loom_status loom_kv_assign(loom_kv_cache *kv, int seq, const int32_t *blocks, int n) LOOM_MUST_USE;
/* Pool-managed: empties slot `seq`'s table (the blocks are the pool's). */
void loom_kv_clear(loom_kv_cache *kv, int seq);
/* Positions slot `seq` has blocks for. */
int loom_kv_capacity(const loom_kv_cache *kv, int seq);

/* Block table of slot `seq`: (capacity / block_tokens) block ids. */
const int32_t *loom_kv_table(const loom_kv_cache *kv, int seq);
/* Start of block `block` of layer `layer` (64-byte aligned; a layer's
 * blocks are n_layers·loom_kv_block_bytes apart): keys
 * (n_kv_heads, head_dim, block_tokens), values (n_kv_heads, block_tokens,
 * head_dim). */
void *loom_kv_k_block(const loom_kv_cache *kv, int layer, int32_t block);
void *loom_kv_v_block(const loom_kv_cache *kv, int layer, int32_t block);

/* Element offsets inside a block of head h, slot t, dimension d (F16 and
 * F32; Q8_0 heads are loom_kv_head_bytes apart, see loom_kv_key_at). */
static inline size_t loom_kv_k_offset(const loom_kv_config *c, int h, int t, int d) {
    return ((size_t)h * c->head_dim + (size_t)d) * c->block_tokens + (size_t)t;
}
static inline size_t loom_kv_v_offset(const loom_kv_config *c, int h, int t, int d) {
    return ((size_t)h * c->block_tokens + (size_t)t) * c->head_dim + (size_t)d;
}

/* Key and value element (h, t, d) of a block as a float, in any type (a
 * v_is_k cache's value is its key): for tests and tools, not hot loops. */
float loom_kv_key_at(const loom_kv_cache *kv, const void *kb, int h, int t, int d);
float loom_kv_value_at(const loom_kv_cache *kv, const void *kb, const void *vb, int h, int t, int d);

#endif
