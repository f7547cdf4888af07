/*
 * runtime/text/tokenizer_spm.c — SentencePiece BPE ("llama" tokenizer model).
 *
 * Spaces become "▁" (U+2581), optionally with one prefixed; the text starts
 * as one symbol per UTF-8 character; the adjacent pair whose concatenation is
 * the token with the highest score merges first (leftmost on ties), until no
 * pair is a token. A symbol that is not a token falls back to its bytes'
 * <0xXX> tokens (or the unknown token when the vocabulary has no byte token).
 * No UTF-8 repair: invalid bytes simply become byte tokens.
 */
#include "runtime/text/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

static loom_status try_bigram(const loom_tokenizer *t, const char *w, const tok_sym *s, int32_t l, int32_t r,
                              tok_vec *heap) {
    if (l < 0 || r < 0) return NULL;
    uint32_t size = s[l].n + s[r].n;
    int32_t id = tok_find(t, w + s[l].off, size);
    if (id < 0) return NULL;
    return tok_heap_push(heap, (tok_bigram){tok_key_score(t->score[id], l), l, s[l].n, s[r].n});
}

loom_status tok_spm_encode(const loom_tokenizer *t, const char *text, size_t len, bool prefix_space,
                           loom_tokens *out) {
    static const uint8_t char_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    loom_status st = NULL;
    tok_vec w = {.elem = 1}, syms = {.elem = sizeof(tok_sym)}, heap = {.elem = sizeof(tok_bigram)};

    /* the escaped text: optional "▁" prefix, every " " → "▁" */
    size_t spaces = prefix_space;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    if (len + 2 * spaces > UINT32_MAX) {
        st = loom_error(LOOM_ERR_INVALID, "tokenizer: text of %zu bytes is too long", len);
        goto done;
    }
    if ((st = tok_vec_reserve(&w, len + 2 * spaces + 3))) goto done;
    char *o = w.p;
    if (prefix_space) {
        memcpy(o, "\xE2\x96\x81", 3);
        w.n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(o + w.n, "\xE2\x96\x81", 3);
            w.n += 3;
        } else {
            o[w.n++] = text[i];
        }
    }

    if ((st = tok_vec_reserve(&syms, w.n))) goto done;
    tok_sym *s = syms.p;
    int32_t ns = 0;
    for (size_t off = 0; off < w.n;) {
        size_t cl = char_len[(uint8_t)o[off] >> 4];
        if (cl > w.n - off) cl = w.n - off;
        s[ns] = (tok_sym){ns - 1, off + cl == w.n ? -1 : ns + 1, (uint32_t)off, (uint32_t)cl};
        ns++;
        off += cl;
    }
    for (int32_t i = 1; i < ns; i++)
        if ((st = try_bigram(t, o, s, i - 1, i, &heap))) goto done;
    while (heap.n) {
        tok_bigram b = tok_heap_pop(&heap);
        tok_sym *l = &s[b.left];
        if (l->n == 0 || l->next < 0) continue;
        tok_sym *r = &s[l->next];
        if (r->n == 0 || l->n + r->n != b.ln + b.rn) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = b.left;
        if ((st = try_bigram(t, o, s, l->prev, b.left, &heap))) goto done;
        if ((st = try_bigram(t, o, s, b.left, l->next, &heap))) goto done;
    }
    for (int32_t i = 0; ns > 0 && i >= 0; i = s[i].next) {
        int32_t id = tok_find(t, o + s[i].off, s[i].n);
        if (id >= 0) {
            if ((st = tok_push(out, id))) goto done;
            continue;
        }
        for (uint32_t j = 0; j < s[i].n; j++) {
            int32_t bid = t->byte_token[(uint8_t)o[s[i].off + j]];
            if (bid < 0) bid = t->unk;
            if (bid >= 0 && (st = tok_push(out, bid))) goto done;
        }
    }
done:
    tok_vec_free(&w);
    tok_vec_free(&syms);
    tok_vec_free(&heap);
    return st;
}
