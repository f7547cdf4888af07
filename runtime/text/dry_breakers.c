/*
 * runtime/text/dry_breakers.c — DRY's sequence breakers as token sequences
 * (contract in dry_breakers.h).
 */
#define _GNU_SOURCE /* memmem */
#include "runtime/text/dry_breakers.h"

#include <stdlib.h>
#include <string.h>

const char *const loom_dry_default_breakers[LOOM_DRY_N_DEFAULT] = {"\n", ":", "\"", "*"};

#define MAX_CHARS 40
#define MAX_TAIL 20

typedef struct {
    int32_t head;
    uint32_t off, len; /* its tail in the builder's token list */
} entry;

typedef struct {
    entry *e;
    size_t n, cap;
    int32_t *tok;
    size_t n_tok, cap_tok;
} builder;

static bool grow(void **a, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return true;
    size_t c = *cap ? 2 * *cap : 256;
    while (c < need) c *= 2;
    void *n = realloc(*a, c * size);
    if (!n) return false;
    *a = n, *cap = c;
    return true;
}

/* Adds (head, tail) unless it is there already (entries of one head are added together). */
static bool add(builder *b, int32_t head, const int32_t *tail, size_t len) {
    for (size_t i = b->n; i-- > 0 && b->e[i].head == head;)
        if (b->e[i].len == len && (!len || !memcmp(b->tok + b->e[i].off, tail, len * sizeof *tail))) return true;
    if (!grow((void **)&b->e, &b->cap, b->n + 1, sizeof *b->e) ||
        !grow((void **)&b->tok, &b->cap_tok, b->n_tok + len, sizeof *b->tok))
        return false;
    if (len) memcpy(b->tok + b->n_tok, tail, len * sizeof *tail);
    b->e[b->n++] = (entry){head, (uint32_t)b->n_tok, (uint32_t)len};
    b->n_tok += len;
    return true;
}

static int cmp_entry(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->head != y->head) return x->head < y->head ? -1 : 1;
    return x->off < y->off ? -1 : (x->off > y->off);
}

loom_status loom_dry_table_build(const loom_tokenizer *tok, int32_t n_vocab, const char *const *breakers, int n,
                                 loom_dry_table *out) {
    memset(out, 0, sizeof *out);
    if (n > LOOM_DRY_MAX_BREAKERS)
        return loom_error(LOOM_ERR_INVALID, "%d DRY sequence breakers: at most %d are allowed", n, LOOM_DRY_MAX_BREAKERS);
    builder b = {0};
    loom_tokens tail = {0};
    loom_status st = NULL;
    const int32_t nt = loom_tokenizer_n_vocab(tok) < n_vocab ? loom_tokenizer_n_vocab(tok) : n_vocab;
    for (int32_t t = 0; t < nt && !st; t++) {
        size_t wlen = 0;
        const char *w = loom_token_piece(tok, t, true, &wlen);
        for (int k = 0; k < n && !st; k++) {
            const size_t slen = strnlen(breakers[k], MAX_CHARS);
            if (!slen || !w || !wlen) continue;
            const char *s = breakers[k];
            if (memmem(w, wlen, s, slen)) {
                if (!add(&b, t, NULL, 0)) st = loom_error(LOOM_ERR_NOMEM, "out of memory for DRY's breakers");
                continue;
            }
            /* the word ends with the breaker's first i bytes: the rest, tokenized, must follow */
            for (size_t pos = 0; pos < wlen && !st; pos++) {
                if (w[pos] != s[0]) continue;
                size_t i = 1;
                while (i < slen && pos + i < wlen && w[pos + i] == s[i]) i++;
                if (i == slen || pos + i < wlen) continue; /* (a whole match: contained, handled above) */
                tail.n = 0;
                st = loom_tokenize(tok, s + i, slen - i, false, false, &tail);
                if (!st && !add(&b, t, tail.ids, tail.n < MAX_TAIL ? tail.n : MAX_TAIL))
                    st = loom_error(LOOM_ERR_NOMEM, "out of memory for DRY's breakers");
            }
        }
    }
    loom_tokens_free(&tail);
    if (!st) {
        qsort(b.e, b.n, sizeof *b.e, cmp_entry);
        out->head = malloc((b.n ? b.n : 1) * sizeof *out->head);
        out->tail_off = malloc((b.n + 1) * sizeof *out->tail_off);
        out->tails = malloc((b.n_tok ? b.n_tok : 1) * sizeof *out->tails);
        if (!out->head || !out->tail_off || !out->tails) st = loom_error(LOOM_ERR_NOMEM, "out of memory for DRY's breakers");
    }
    if (!st) {
        uint32_t at = 0;
        for (size_t i = 0; i < b.n; i++) {
            out->head[i] = b.e[i].head;
            out->tail_off[i] = at;
            if (b.e[i].len) memcpy(out->tails + at, b.tok + b.e[i].off, b.e[i].len * sizeof *out->tails);
            at += b.e[i].len;
        }
        out->tail_off[b.n] = at;
        out->b = (loom_dry_breakers){(int32_t)b.n, out->head, out->tail_off, out->tails};
    } else {
        loom_dry_table_free(out);
    }
    free(b.e), free(b.tok);
    return st;
}

void loom_dry_table_free(loom_dry_table *t) {
    free(t->head), free(t->tail_off), free(t->tails);
    memset(t, 0, sizeof *t);
}
