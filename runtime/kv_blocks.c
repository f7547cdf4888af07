/*
 * runtime/kv_blocks.c — KV block allocation and the prefix cache (contract
 * in kv_blocks.h).
 */
#include "runtime/kv_blocks.h"

#include <stdlib.h>
#include <string.h>

struct loom_kv_blocks {
    int n, block_tokens;
    bool caching;
    int32_t *ref;        /* (n) references */
    bool *cached;        /* (n) published: findable by hash */
    uint64_t *hash;      /* (n) of cached blocks */
    int32_t *tokens;     /* (n, block_tokens) of cached blocks */
    int32_t *free_stack; /* (n) unreferenced, unpublished blocks */
    int n_free;
    int32_t *lru_prev, *lru_next; /* (n) cached blocks without references, oldest at lru_head */
    int32_t lru_head, lru_tail;
    int n_lru;
    int32_t *bucket;     /* (n_buckets) first cached block of each hash bucket, -1: none */
    int32_t *chain;      /* (n) next cached block in the same bucket */
    uint32_t n_buckets;  /* a power of two */
};

loom_status loom_kv_blocks_create(int n_blocks, int block_tokens, bool prefix_cache, loom_kv_blocks **out) {
    *out = NULL;
    if (n_blocks < 1 || block_tokens < 1 || (int64_t)n_blocks * block_tokens > INT32_MAX)
        return loom_error(LOOM_ERR_INVALID, "a pool of %d blocks of %d tokens is out of range", n_blocks, block_tokens);
    loom_kv_blocks *p = calloc(1, sizeof *p);
    if (!p) return loom_error(LOOM_ERR_NOMEM, "out of memory for the KV block pool");
    p->n = n_blocks;
    p->block_tokens = block_tokens;
    p->caching = prefix_cache;
    p->n_buckets = 1;
    while (p->n_buckets < 2u * (uint32_t)n_blocks) p->n_buckets <<= 1;
    size_t n = (size_t)n_blocks;
    p->ref = calloc(n, sizeof *p->ref);
    p->cached = calloc(n, sizeof *p->cached);
    p->hash = calloc(n, sizeof *p->hash);
    p->tokens = prefix_cache ? malloc(n * (size_t)block_tokens * sizeof *p->tokens) : NULL;
    p->free_stack = malloc(n * sizeof *p->free_stack);
    p->lru_prev = malloc(n * sizeof *p->lru_prev);
    p->lru_next = malloc(n * sizeof *p->lru_next);
    p->bucket = malloc(p->n_buckets * sizeof *p->bucket);
    p->chain = malloc(n * sizeof *p->chain);
    if (!p->ref || !p->cached || !p->hash || (prefix_cache && !p->tokens) || !p->free_stack || !p->lru_prev ||
        !p->lru_next || !p->bucket || !p->chain) {
        loom_kv_blocks_free(p);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for a pool of %d KV blocks", n_blocks);
    }
    for (int i = 0; i < n_blocks; i++) p->free_stack[i] = n_blocks - 1 - i; /* lowest ids first */
    p->n_free = n_blocks;
    p->lru_head = p->lru_tail = -1;
    for (uint32_t i = 0; i < p->n_buckets; i++) p->bucket[i] = -1;
    *out = p;
    return NULL;
}

void loom_kv_blocks_free(loom_kv_blocks *p) {
    if (!p) return;
    free(p->ref);
    free(p->cached);
    free(p->hash);
    free(p->tokens);
    free(p->free_stack);
    free(p->lru_prev);
    free(p->lru_next);
    free(p->bucket);
    free(p->chain);
    free(p);
}

int loom_kv_blocks_total(const loom_kv_blocks *p) { return p->n; }
int loom_kv_blocks_available(const loom_kv_blocks *p) { return p->n_free + p->n_lru; }
bool loom_kv_blocks_caching(const loom_kv_blocks *p) { return p->caching; }

static void lru_remove(loom_kv_blocks *p, int32_t b) {
    int32_t pr = p->lru_prev[b], nx = p->lru_next[b];
    if (pr >= 0) p->lru_next[pr] = nx;
    else p->lru_head = nx;
    if (nx >= 0) p->lru_prev[nx] = pr;
    else p->lru_tail = pr;
    p->n_lru--;
}

static void lru_append(loom_kv_blocks *p, int32_t b) {
    p->lru_prev[b] = p->lru_tail;
    p->lru_next[b] = -1;
    if (p->lru_tail >= 0) p->lru_next[p->lru_tail] = b;
    else p->lru_head = b;
    p->lru_tail = b;
    p->n_lru++;
}

static uint32_t bucket_of(const loom_kv_blocks *p, uint64_t h) { return (uint32_t)(h ^ (h >> 32)) & (p->n_buckets - 1); }

static void unpublish(loom_kv_blocks *p, int32_t b) {
    int32_t *at = &p->bucket[bucket_of(p, p->hash[b])];
    while (*at != b) at = &p->chain[*at];
    *at = p->chain[b];
    p->cached[b] = false;
}

int32_t loom_kv_blocks_alloc(loom_kv_blocks *p) {
    int32_t b;
    if (p->n_free > 0) {
        b = p->free_stack[--p->n_free];
    } else if (p->lru_head >= 0) { /* evict the least recently used cached block */
        b = p->lru_head;
        lru_remove(p, b);
        unpublish(p, b);
    } else {
        return -1;
    }
    p->ref[b] = 1;
    return b;
}

void loom_kv_blocks_unref(loom_kv_blocks *p, int32_t b) {
    if (b < 0 || b >= p->n || p->ref[b] <= 0) return;
    if (--p->ref[b] > 0) return;
    if (p->cached[b]) lru_append(p, b);
    else p->free_stack[p->n_free++] = b;
}

uint64_t loom_kv_blocks_hash(const loom_kv_blocks *p, uint64_t parent, const int32_t *tokens) {
    uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < p->block_tokens; i++) {
        h ^= (uint64_t)(uint32_t)tokens[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    h *= 0xc4ceb9fe1a85ec53ull;
    return (h ^ (h >> 29)) | 1; /* never 0, the parent of a first block */
}

static int32_t lookup(const loom_kv_blocks *p, uint64_t hash, const int32_t *tokens) {
    size_t bt = (size_t)p->block_tokens;
    for (int32_t b = p->bucket[bucket_of(p, hash)]; b >= 0; b = p->chain[b])
        if (p->hash[b] == hash && !memcmp(p->tokens + (size_t)b * bt, tokens, bt * sizeof *tokens)) return b;
    return -1;
}

int32_t loom_kv_blocks_find(loom_kv_blocks *p, uint64_t hash, const int32_t *tokens) {
    if (!p->caching) return -1;
    int32_t b = lookup(p, hash, tokens);
    if (b < 0) return -1;
    if (p->ref[b] == 0) lru_remove(p, b);
    p->ref[b]++;
    return b;
}

void loom_kv_blocks_publish(loom_kv_blocks *p, int32_t b, uint64_t hash, const int32_t *tokens) {
    if (!p->caching || b < 0 || b >= p->n || p->ref[b] == 0 || p->cached[b] || lookup(p, hash, tokens) >= 0) return;
    p->cached[b] = true;
    p->hash[b] = hash;
    memcpy(p->tokens + (size_t)b * p->block_tokens, tokens, (size_t)p->block_tokens * sizeof *tokens);
    uint32_t k = bucket_of(p, hash);
    p->chain[b] = p->bucket[k];
    p->bucket[k] = b;
}
