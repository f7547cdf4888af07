#include "runtime/kv_cache.h"

#include "runtime/quant.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct loom_kv_cache {
    loom_kv_config cfg;
    size_t block_bytes;   /* one layer's K (or V) of one block, rounded up to 64 bytes */
    uint8_t *k, *v;       /* (n_blocks, n_layers, block_bytes), as mapped (pool_map); v NULL: v_is_k */
    size_t mem_bytes;     /* of each mapping */
    int32_t *free_list;   /* (n_blocks) stack of free block ids */
    int n_free;
    int max_blocks_per_seq;
    int32_t *tables;      /* (max_seqs, max_blocks_per_seq) */
    int *n_seq_blocks;    /* (max_seqs) */
};

size_t loom_kv_head_bytes(const loom_kv_config *c) {
    const size_t n = (size_t)c->block_tokens * (size_t)c->head_dim;
    return c->type == LOOM_TYPE_F32 ? 4 * n : c->type == LOOM_TYPE_Q8_0 ? n + n / 32 * 2 : 2 * n;
}

const char *loom_kv_type_refusal(loom_type type, int head_dim) {
    if (type != LOOM_TYPE_F16 && type != LOOM_TYPE_F32 && type != LOOM_TYPE_Q8_0)
        return "the KV cache holds f16, f32 or q8_0";
    if (type == LOOM_TYPE_Q8_0 && head_dim % 32)
        return "a q8_0 KV cache needs attention heads of a multiple of 32 (its scales cover 32 dimensions)";
    return "";
}

/* One layer's K (or V) of one block, rounded up to 64 bytes so every block is aligned. */
static size_t block_bytes(const loom_kv_config *c) {
    return ((size_t)c->n_kv_heads * loom_kv_head_bytes(c) + 63) & ~(size_t)63;
}

size_t loom_kv_block_bytes(const loom_kv_config *c) { return block_bytes(c); }

size_t loom_kv_bytes(const loom_kv_config *c) {
    return (c->v_is_k ? 1 : 2) * (size_t)c->n_layers * (size_t)c->n_blocks * block_bytes(c);
}

int loom_kv_blocks_for(int n_seqs, int max_ctx, int block_tokens) {
    return n_seqs * ((max_ctx + block_tokens - 1) / block_tokens);
}

/* A pool of zeroed pages, mapped on first touch (untouched ones cost
 * nothing), in transparent huge pages where the kernel gives them on
 * request (Debian's default "madvise"): attention walks a sequence's blocks
 * wherever the pool put them, and with 4 KiB pages nearly every block of a
 * long context is a TLB miss (SmolLM2 at depth 4096, one thread, Zen 4:
 * decode 60.5 / 69.6 -> 71.8 / 73.0 tokens/s). A block holds every layer
 * (kv_cache.h), so the pages a short sequence touches are a few 2 MiB ones
 * in all, not one per layer (that cost 0.15 s and 88 MiB on SmolLM2's
 * first prompt). NULL when out of memory. */
static void *pool_map(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    (void)madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

loom_status loom_kv_create(const loom_kv_config *cfg, loom_kv_cache **out) {
    *out = NULL;
    const char *why = loom_kv_type_refusal(cfg->type, cfg->head_dim);
    if (*why) return loom_error(LOOM_ERR_UNSUPPORTED, "KV cache type %s, heads of %d: %s", loom_type_name(cfg->type),
                                cfg->head_dim, why);
    if (cfg->n_layers < 0 || cfg->n_kv_heads < 1 || cfg->head_dim < 1 || cfg->block_tokens < 1 ||
        cfg->n_blocks < 1 || cfg->max_seqs < 1 || cfg->max_ctx < 1)
        return loom_error(LOOM_ERR_INVALID,
                          "KV cache geometry is invalid (layers %d, kv heads %d, head size %d, block %d, blocks %d, "
                          "sequences %d, context %d)",
                          cfg->n_layers, cfg->n_kv_heads, cfg->head_dim, cfg->block_tokens, cfg->n_blocks,
                          cfg->max_seqs, cfg->max_ctx);
    loom_kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return loom_error(LOOM_ERR_NOMEM, "out of memory creating the KV cache");
    kv->cfg = *cfg;
    kv->block_bytes = block_bytes(cfg);
    kv->max_blocks_per_seq = (cfg->max_ctx + cfg->block_tokens - 1) / cfg->block_tokens;
    size_t pool = (size_t)(cfg->n_layers ? cfg->n_layers : 1) * cfg->n_blocks * kv->block_bytes;
    if (!cfg->tables_only) {
        kv->mem_bytes = pool;
        kv->k = pool_map(pool);
        if (!cfg->v_is_k) kv->v = pool_map(pool);
    }
    kv->free_list = malloc((size_t)cfg->n_blocks * sizeof *kv->free_list);
    kv->tables = malloc((size_t)cfg->max_seqs * kv->max_blocks_per_seq * sizeof *kv->tables);
    kv->n_seq_blocks = calloc((size_t)cfg->max_seqs, sizeof *kv->n_seq_blocks);
    if ((!cfg->tables_only && (!kv->k || (!cfg->v_is_k && !kv->v))) || !kv->free_list || !kv->tables ||
        !kv->n_seq_blocks) {
        loom_kv_free(kv);
        return loom_error(LOOM_ERR_NOMEM, "cannot allocate the KV cache (%zu bytes)", (cfg->v_is_k ? 1 : 2) * pool);
    }
    /* lowest block ids are handed out first */
    for (int i = 0; i < cfg->n_blocks; i++) kv->free_list[i] = cfg->n_blocks - 1 - i;
    kv->n_free = cfg->n_blocks;
    *out = kv;
    return NULL;
}

void loom_kv_free(loom_kv_cache *kv) {
    if (!kv) return;
    if (kv->k) munmap(kv->k, kv->mem_bytes);
    if (kv->v) munmap(kv->v, kv->mem_bytes);
    free(kv->free_list);
    free(kv->tables);
    free(kv->n_seq_blocks);
    free(kv);
}

const loom_kv_config *loom_kv_config_of(const loom_kv_cache *kv) { return &kv->cfg; }

int loom_kv_blocks_missing(const loom_kv_cache *kv, int seq, int n_tokens) {
    int need = (n_tokens + kv->cfg.block_tokens - 1) / kv->cfg.block_tokens;
    int have = kv->n_seq_blocks[seq];
    return need > have ? need - have : 0;
}

loom_status loom_kv_reserve(loom_kv_cache *kv, int seq, int n_tokens) {
    if (seq < 0 || seq >= kv->cfg.max_seqs)
        return loom_error(LOOM_ERR_INVALID, "KV slot %d is out of range (0..%d)", seq, kv->cfg.max_seqs - 1);
    if (n_tokens > kv->cfg.max_ctx)
        return loom_error(LOOM_ERR_CONTEXT, "sequence needs %d positions but the context size is %d", n_tokens,
                          kv->cfg.max_ctx);
    int missing = loom_kv_blocks_missing(kv, seq, n_tokens);
    if (missing > kv->n_free)
        return loom_error(LOOM_ERR_KV_FULL, "KV cache full: slot %d needs %d more blocks of %d tokens, %d free", seq,
                          missing, kv->cfg.block_tokens, kv->n_free);
    int32_t *table = kv->tables + (size_t)seq * kv->max_blocks_per_seq;
    for (int i = 0; i < missing; i++) table[kv->n_seq_blocks[seq]++] = kv->free_list[--kv->n_free];
    return NULL;
}

void loom_kv_release(loom_kv_cache *kv, int seq) {
    if (seq < 0 || seq >= kv->cfg.max_seqs) return;
    int32_t *table = kv->tables + (size_t)seq * kv->max_blocks_per_seq;
    /* push back in reverse so a re-reserve gets the same ids */
    for (int i = kv->n_seq_blocks[seq] - 1; i >= 0; i--) kv->free_list[kv->n_free++] = table[i];
    kv->n_seq_blocks[seq] = 0;
}

loom_status loom_kv_assign(loom_kv_cache *kv, int seq, const int32_t *blocks, int n) {
    if (seq < 0 || seq >= kv->cfg.max_seqs)
        return loom_error(LOOM_ERR_INVALID, "KV slot %d is out of range (0..%d)", seq, kv->cfg.max_seqs - 1);
    if (n < 0 || kv->n_seq_blocks[seq] + n > kv->max_blocks_per_seq)
        return loom_error(LOOM_ERR_CONTEXT, "KV slot %d would hold %d blocks of %d tokens; the context allows %d", seq,
                          kv->n_seq_blocks[seq] + n, kv->cfg.block_tokens, kv->max_blocks_per_seq);
    for (int i = 0; i < n; i++)
        if (blocks[i] < 0 || blocks[i] >= kv->cfg.n_blocks)
            return loom_error(LOOM_ERR_INVALID, "KV block %d is out of range (0..%d)", blocks[i], kv->cfg.n_blocks - 1);
    int32_t *table = kv->tables + (size_t)seq * kv->max_blocks_per_seq;
    memcpy(table + kv->n_seq_blocks[seq], blocks, (size_t)n * sizeof *blocks);
    kv->n_seq_blocks[seq] += n;
    return NULL;
}

void loom_kv_clear(loom_kv_cache *kv, int seq) {
    if (seq >= 0 && seq < kv->cfg.max_seqs) kv->n_seq_blocks[seq] = 0;
}

int loom_kv_free_blocks(const loom_kv_cache *kv) { return kv->n_free; }
int loom_kv_capacity(const loom_kv_cache *kv, int seq) { return kv->n_seq_blocks[seq] * kv->cfg.block_tokens; }
const int32_t *loom_kv_table(const loom_kv_cache *kv, int seq) {
    return kv->tables + (size_t)seq * kv->max_blocks_per_seq;
}
/* block-major: a block's layers are together */
static size_t block_at(const loom_kv_cache *kv, int layer, int32_t block) {
    return ((size_t)block * (size_t)(kv->cfg.n_layers ? kv->cfg.n_layers : 1) + (size_t)layer) * kv->block_bytes;
}
void *loom_kv_k_block(const loom_kv_cache *kv, int layer, int32_t block) {
    if (!kv->k) return NULL; /* tables only */
    return kv->k + block_at(kv, layer, block);
}
void *loom_kv_v_block(const loom_kv_cache *kv, int layer, int32_t block) {
    if (!kv->v) return NULL; /* tables only, or the values are the keys */
    return kv->v + block_at(kv, layer, block);
}

/* Element i of head h in block b; Q8_0's scale is scale s after the head's codes. */
static float elem_at(const loom_kv_config *c, const void *b, int h, size_t i, size_t s) {
    const uint8_t *head = (const uint8_t *)b + (size_t)h * loom_kv_head_bytes(c);
    if (c->type == LOOM_TYPE_F32) return ((const float *)head)[i];
    if (c->type == LOOM_TYPE_F16) return loom_f16_to_f32(((const uint16_t *)head)[i]);
    return (float)(int8_t)head[i] * loom_f16_to_f32(loom_rd_u16(head + (size_t)c->head_dim * c->block_tokens + 2 * s));
}

float loom_kv_key_at(const loom_kv_cache *kv, const void *kb, int h, int t, int d) {
    const loom_kv_config *c = &kv->cfg;
    return elem_at(c, kb, h, loom_kv_k_offset(c, 0, t, d), (size_t)(d / 32) * c->block_tokens + t);
}

float loom_kv_value_at(const loom_kv_cache *kv, const void *kb, const void *vb, int h, int t, int d) {
    const loom_kv_config *c = &kv->cfg;
    if (!vb) return loom_kv_key_at(kv, kb, h, t, d);
    return elem_at(c, vb, h, loom_kv_v_offset(c, 0, t, d), (size_t)t * (c->head_dim / 32) + d / 32);
}
