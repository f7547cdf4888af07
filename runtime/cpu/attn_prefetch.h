/*
 * runtime/cpu/attn_prefetch.h — KV-cache prefetch shared by the SIMD
 * attention kernels (attn_avx2.c, attn_avx512.c).
 *
 * Decode (few queries per unit) streams the cache from memory: touch the
 * first lines of this head's keys and values in a block a chunk ahead, and
 * the hardware prefetcher follows. (Fetching whole blocks was faster from
 * DRAM but 30% slower when the cache sits in L3: too many fills in flight.)
 */
#ifndef LOOM_CPU_ATTN_PREFETCH_H
#define LOOM_CPU_ATTN_PREFETCH_H

#include "runtime/attention.h"

enum { LOOM_ATTN_PF_NQ = 4, LOOM_ATTN_PF_BYTES = 512 };

/* How many blocks ahead a unit of nq queries prefetches (0: it does not). */
static inline int loom_attn_pf_blocks(int nq, int block_tokens) {
    return nq <= LOOM_ATTN_PF_NQ ? (LOOM_ATTN_CHUNK * LOOM_ATTN_TILE + block_tokens - 1) / block_tokens : 0;
}

static inline void loom_attn_prefetch_block(const loom_attn_unit *u, int32_t blk, size_t head_bytes) {
    const char *k = (const char *)loom_kv_k_block(u->kv, u->layer, blk) + (size_t)u->kvh * head_bytes;
    const char *v = (const char *)loom_kv_v_block(u->kv, u->layer, blk) + (size_t)u->kvh * head_bytes;
    for (size_t o = 0; o < head_bytes && o < LOOM_ATTN_PF_BYTES; o += 64)
        __builtin_prefetch(k + o, 0, 3), __builtin_prefetch(v + o, 0, 3);
}

#endif
