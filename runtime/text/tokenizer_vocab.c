/*
 * runtime/text/tokenizer_vocab.c — what the tokenizer files share: growable
 * scratch vectors, token lookup by text, and the priority queue of candidate
 * merges that BPE and SentencePiece both run.
 */
#include "runtime/text/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

loom_status tok_vec_reserve(tok_vec *v, size_t n) {
    if (n <= v->cap) return NULL;
    size_t cap = v->cap ? v->cap : 16;
    while (cap < n) {
        if (cap > SIZE_MAX / 2 / v->elem) return loom_error(LOOM_ERR_NOMEM, "tokenizer: buffer size overflow");
        cap *= 2;
    }
    void *p = realloc(v->p, cap * v->elem);
    if (!p) return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", cap * v->elem);
    v->p = p;
    v->cap = cap;
    return NULL;
}

loom_status tok_vec_push(tok_vec *v, const void *item) {
    LOOM_TRY(tok_vec_reserve(v, v->n + 1));
    memcpy((char *)v->p + v->n * v->elem, item, v->elem);
    v->n++;
    return NULL;
}

void tok_vec_free(tok_vec *v) {
    free(v->p);
    v->p = NULL;
    v->n = v->cap = 0;
}

uint64_t tok_hash(uint64_t h, const void *p, size_t n) { /* FNV-1a */
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

int32_t tok_find(const loom_tokenizer *t, const char *s, size_t n) {
    uint64_t i = tok_hash(TOK_HASH_SEED, s, n) & t->by_text.mask;
    for (;; i = (i + 1) & t->by_text.mask) {
        uint32_t slot = t->by_text.slot[i];
        if (!slot) return LOOM_TOKEN_NULL;
        int32_t id = (int32_t)(slot - 1);
        size_t len;
        const char *txt = tok_text(t, id, &len);
        if (len == n && !memcmp(txt, s, n)) return id;
    }
}

loom_status tok_push(loom_tokens *out, int32_t id) {
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 64;
        int32_t *p = realloc(out->ids, cap * sizeof *p);
        if (!p) return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory for %zu token ids", cap);
        out->ids = p;
        out->cap = cap;
    }
    out->ids[out->n++] = id;
    return NULL;
}

loom_status loom_tokens_push(loom_tokens *v, int32_t id) { return tok_push(v, id); }

void loom_tokens_free(loom_tokens *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

/* ---- candidate merges: a binary min-heap on key ---- */

loom_status tok_heap_push(tok_vec *h, tok_bigram v) {
    LOOM_TRY(tok_vec_reserve(h, h->n + 1));
    tok_bigram *a = h->p;
    size_t i = h->n++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (a[p].key <= v.key) break;
        a[i] = a[p];
        i = p;
    }
    a[i] = v;
    return NULL;
}

tok_bigram tok_heap_pop(tok_vec *h) {
    tok_bigram *a = h->p, top = a[0], v = a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && a[c + 1].key < a[c].key) c++;
        if (v.key <= a[c].key) break;
        a[i] = a[c];
        i = c;
    }
    if (n) a[i] = v;
    return top;
}
