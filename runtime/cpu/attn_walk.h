/*
 * runtime/cpu/attn_walk.h — the walk over a unit's key range shared by the
 * SIMD attention kernels (attn_avx2.c, attn_avx512.c): the blocks of the
 * range with the unit's KV head in each, the tiles of a block, and the KV
 * prefetch.
 *
 * Decode streams the cache from memory, one head's 1-4 KiB of keys and of
 * values per block, the blocks wherever the pool put them: too short a run
 * for the hardware prefetcher. So every unit fetches this head's keys and
 * values (up to 4 KiB each) of the block a chunk ahead into L2 (into L1
 * they evicted the tile being computed; the first 512 bytes only, leaving
 * the rest to the hardware, reached a third of the bandwidth). Zen 4, one
 * thread, SmolLM2's heads (3 queries a unit) at 4,096 positions, 30 layers
 * (past L3), us a layer: F16 337 -> 265, Q8_0 298 -> 172; TinyLlama's (8
 * a unit, which fetched nothing) F16 673 -> 572, Q8_0 616 -> 480. With the
 * cache in L2/L3, F16 is up to 7 % slower (the prefetches' issue slots; a
 * line in two halves that, and costs Q8_0 a third of its gain from DRAM),
 * Q8_0 and prefill within 3 %. The pool is in huge pages too (kv_cache.c).
 */
#ifndef LOOM_CPU_ATTN_WALK_H
#define LOOM_CPU_ATTN_WALK_H

#include "runtime/cpu/cpu_kernels.h"

enum { LOOM_ATTN_PF_BYTES = 4096 };

/* Bytes of one KV head's keys (or values) in a block. */
static inline size_t loom_attn_head_bytes(const loom_attn_unit *u) {
    const size_t n = (size_t)u->head_dim * u->block_tokens;
    return u->q8 ? n + n / 32 * 2 : n * (u->f16 ? 2 : 4);
}

/* How many blocks ahead a unit prefetches: a chunk. */
static inline int loom_attn_pf_blocks(int block_tokens) {
    return (LOOM_ATTN_CHUNK * LOOM_ATTN_TILE + block_tokens - 1) / block_tokens;
}

/* The unit's KV head in the block holding position p0 (a multiple of the
 * block size): keys at *kb, values at *vb (NULL when the values are the
 * keys); and the prefetch of the block pf_blocks further on, if it lies
 * below p_pf. */
static inline void loom_attn_block(const loom_attn_unit *u, int p0, int pf_blocks, const uint8_t **kb,
                                   const uint8_t **vb) {
    const int bt = u->block_tokens;
    const size_t head = loom_attn_head_bytes(u), off = (size_t)u->kvh * head;
    *kb = u->k + (size_t)u->table[p0 / bt] * u->block_bytes + off;
    *vb = u->v ? u->v + (size_t)u->table[p0 / bt] * u->block_bytes + off : NULL; /* NULL: values are keys */
    if (pf_blocks && p0 + pf_blocks * bt < u->p_pf) {
        const size_t b = (size_t)u->table[p0 / bt + pf_blocks] * u->block_bytes + off;
        for (size_t o = 0; o < head && o < LOOM_ATTN_PF_BYTES; o += 64) {
            __builtin_prefetch(u->k + b + o, 0, 2);
            if (u->v) __builtin_prefetch(u->v + b + o, 0, 2);
        }
    }
}

/* The tile at slot t0 of the block at p0: how many of its (up to 16)
 * positions lie in the range; *room = the slots left in the block. */
static inline int loom_attn_tile_len(const loom_attn_unit *u, int p0, int t0, int *room) {
    const int left = u->p_end - p0 - t0;
    *room = u->block_tokens - t0;
    return *room < LOOM_ATTN_TILE ? (*room < left ? *room : left) : (LOOM_ATTN_TILE < left ? LOOM_ATTN_TILE : left);
}

#endif
