/*
 * runtime/kv_blocks.h — the coordinator's allocator of KV cache blocks,
 * with a prefix cache.
 *
 * Every rank's KV cache has the same number of blocks; this pool, on the
 * coordinator only, decides which block holds what, and the Steps carry
 * its decisions (block ids) to every rank (kv_cache.h, pool-managed). A
 * block has a reference count: the sequences whose tables hold it.
 *
 * Prefix cache (vLLM's scheme): a full block is identified by a hash of its
 * tokens chained with the hash of the block before it, so equal hashes mean
 * equal prefixes; a sequence whose prompt starts with blocks already
 * published takes them instead of computing them again (the block's tokens
 * are stored and compared too, so a hash collision can never share wrong
 * keys and values). A published block whose last reference goes stays
 * cached, on a least-recently-used list, until an allocation needs it.
 *
 * Nothing here fails but creation; allocation returns -1 when every block
 * is referenced.
 */
#ifndef LOOM_KV_BLOCKS_H
#define LOOM_KV_BLOCKS_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/status.h"

typedef struct loom_kv_blocks loom_kv_blocks;

/* n_blocks blocks of block_tokens positions; prefix_cache off makes
 * publish() a no-op (every block is freed with its last reference). */
loom_status loom_kv_blocks_create(int n_blocks, int block_tokens, bool prefix_cache, loom_kv_blocks **out) LOOM_MUST_USE;
void loom_kv_blocks_free(loom_kv_blocks *p);

int loom_kv_blocks_total(const loom_kv_blocks *p);
/* Blocks an allocation can get now: free ones plus cached ones no sequence holds. */
int loom_kv_blocks_available(const loom_kv_blocks *p);
bool loom_kv_blocks_caching(const loom_kv_blocks *p);

/* A block with one reference (a free one, else the least recently used
 * cached one, which leaves the cache); -1 when none. */
int32_t loom_kv_blocks_alloc(loom_kv_blocks *p);
/* Drops a reference; at zero the block is free, or cached if published. */
void loom_kv_blocks_unref(loom_kv_blocks *p, int32_t block);

/* The hash of a full block of `tokens` (block_tokens ids) after the block
 * whose hash is parent (0 for the first block). */
uint64_t loom_kv_blocks_hash(const loom_kv_blocks *p, uint64_t parent, const int32_t *tokens);
/* The published block with this hash and these tokens, with one more
 * reference; -1 when none. */
int32_t loom_kv_blocks_find(loom_kv_blocks *p, uint64_t hash, const int32_t *tokens);
/* Block `block` (referenced, full, its keys and values written by steps
 * already sent) holds `tokens` with hash `hash`: later sequences may find
 * it. No-op when another block holds that prefix already. */
void loom_kv_blocks_publish(loom_kv_blocks *p, int32_t block, uint64_t hash, const int32_t *tokens);

#endif
