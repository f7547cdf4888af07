/*
 * runtime/text/tokenizer_ugm.c — SentencePiece unigram ("t5" tokenizer
 * model: T5, XLM-RoBERTa and what is built on it — bge-m3,
 * bge-reranker-v2-m3, multilingual-e5, nomic-embed-text-v2).
 *
 * As llama.cpp's UGM tokenizer computes it (tests/test_tokenizer.c checks
 * its ids):
 *   - normalization, one input prefix at a time (user-defined tokens'
 *     texts are cut out before, tokenizer.c: partition, as llama.cpp's
 *     fragments are, so its check for them here never matches and is left
 *     out): the longest prefix the precompiled charsmap
 *     (`tokenizer.ggml.precompiled_charsmap`: SentencePiece's NFKC table)
 *     holds becomes its replacement; else one UTF-8 character passes
 *     (an ill-formed byte becomes U+FFFD). Spaces become "▁", runs of
 *     them one (`remove_extra_whitespaces`) with a "▁" before every word
 *     then, and a "▁" is prefixed (`add_space_prefix`);
 *   - Viterbi over the normalized bytes: the tokenization whose tokens'
 *     scores (log-probabilities; user-defined tokens 0) sum highest, a
 *     character no token covers costing the lowest normal score minus 10
 *     as the unknown token, adjacent unknowns merged into one.
 *
 * The charsmap is SentencePiece's: a 32-bit size, a double array trie
 * over input bytes (XOR-compressed, Kanda 2018: BASE in bits 10-30, shifted
 * by 8 more when bit 9 is set; LCHECK, the byte that leads to the node, in
 * bits 0-7 with bit 31; LEAF in bit 8; a leaf's value, the offset of its
 * replacement, in bits 0-30), then NUL-terminated replacement strings. A
 * node index or offset outside the map ends the match (a corrupt map
 * normalizes less, never reads outside it).
 */
#include "runtime/text/tokenizer_internal.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

static uint32_t xcda_node(const loom_tokenizer *t, uint32_t i, bool *ok) {
    if (i >= t->ugm_xcda_n) {
        *ok = false;
        return 0;
    }
    uint32_t v;
    memcpy(&v, t->ugm_map + 4 + 4 * (size_t)i, 4);
    return v;
}
static uint32_t xcda_base(uint32_t v) { return (v >> 10) << ((v & (1u << 9)) >> 6); }

loom_status tok_ugm_init(loom_tokenizer *t, const loom_gguf *g) {
    const loom_gguf_value *cm = loom_gguf_get_arr(g, "tokenizer.ggml.precompiled_charsmap", -1);
    if (loom_gguf_get(g, "tokenizer.ggml.precompiled_charsmap")) {
        if (!cm || (cm->v.arr.elem != LOOM_GGUF_U8 && cm->v.arr.elem != LOOM_GGUF_I8))
            return loom_error(LOOM_ERR_FORMAT, "tokenizer.ggml.precompiled_charsmap is not an array of bytes");
        const size_t n = (size_t)cm->v.arr.n;
        uint32_t blob = 0;
        if (n >= 4) memcpy(&blob, cm->v.arr.raw, 4);
        if (n < 4 || (uint64_t)blob + 4 >= n || blob % 4)
            return loom_error(LOOM_ERR_FORMAT,
                              "tokenizer.ggml.precompiled_charsmap: its trie of %u bytes does not fit its %zu bytes",
                              blob, n);
        t->ugm_map = malloc(n);
        if (!t->ugm_map) return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory");
        memcpy(t->ugm_map, cm->v.arr.raw, n);
        t->ugm_xcda_n = blob / 4;
        t->ugm_repl = (const char *)t->ugm_map + 4 + blob;
        t->ugm_repl_n = n - 4 - blob;
    }

    /* the trie of the tokens Viterbi may take: normal, user-defined, unused */
    size_t bytes = 0;
    float min_score = FLT_MAX;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (t->attr[i] & (TOK_NORMAL | TOK_USER_DEFINED | TOK_UNUSED)) bytes += t->text_off[i + 1] - t->text_off[i];
        if ((t->attr[i] & TOK_NORMAL) && t->score[i] < min_score) min_score = t->score[i];
    }
    t->ugm_unk_score = (min_score == FLT_MAX ? 0.0 : (double)min_score) - 10.0;
    if (bytes >= UINT32_MAX) return loom_error(LOOM_ERR_FORMAT, "tokenizer: the vocabulary's texts are too long");
    t->ugm_trie = malloc((bytes ? bytes : 1) * sizeof *t->ugm_trie);
    if (!t->ugm_trie) return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory");
    memset(t->ugm_root, 0, sizeof t->ugm_root);
    uint32_t used = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (!(t->attr[i] & (TOK_NORMAL | TOK_USER_DEFINED | TOK_UNUSED))) continue;
        size_t len;
        const uint8_t *s = (const uint8_t *)tok_text(t, i, &len);
        uint32_t *link = &t->ugm_root[s[0]], node = 0;
        for (size_t j = 0; j < len; j++) {
            if (j > 0) link = &t->ugm_trie[node].child;
            while (*link && t->ugm_trie[*link - 1].byte != s[j]) link = &t->ugm_trie[*link - 1].sibling;
            if (!*link) {
                t->ugm_trie[used] = (struct tok_trie_node){0, 0, -1, s[j]};
                *link = ++used;
            }
            node = *link - 1;
        }
        t->ugm_trie[node].special = i; /* a repeated text: the last id, as llama.cpp's trie */
    }
    bool b;
    if (loom_gguf_get_bool(g, "tokenizer.ggml.remove_extra_whitespaces", &b)) t->ugm_merge_spaces = b;
    return NULL;
}

void tok_ugm_free(loom_tokenizer *t) {
    free(t->ugm_map);
    free(t->ugm_trie);
}

/* The normalized form of the prefix at s[0..n): *out points at it (its
 * *out_n bytes), the return value is how many input bytes it stands for. */
static size_t normalize_prefix(const loom_tokenizer *t, const uint8_t *s, size_t n, const char **out, size_t *out_n) {
    size_t match = 0, match_off = 0;
    if (t->ugm_xcda_n) {
        bool ok = true;
        uint32_t node = xcda_base(xcda_node(t, 0, &ok));
        for (size_t j = 0; j < n && ok && s[j]; j++) {
            node ^= s[j];
            const uint32_t v = xcda_node(t, node, &ok);
            if (!ok || (v & ((1u << 31) | 0xFF)) != s[j]) break;
            const bool leaf = (v >> 8) & 1;
            node ^= xcda_base(v);
            if (leaf) {
                const uint32_t value = xcda_node(t, node, &ok) & ((1u << 31) - 1);
                if (!ok) break;
                match = j + 1, match_off = value;
            }
        }
    }
    if (match && match_off < t->ugm_repl_n) {
        const char *r = t->ugm_repl + match_off;
        const char *end = memchr(r, 0, t->ugm_repl_n - match_off);
        if (end) {
            *out = r, *out_n = (size_t)(end - r);
            return match;
        }
    }
    uint32_t cp;
    int k = loom_utf8_decode(s, n, &cp);
    if (k > 0) {
        *out = (const char *)s, *out_n = (size_t)k;
        return (size_t)k;
    }
    *out = "\xEF\xBF\xBD", *out_n = 3; /* one byte as U+FFFD */
    return 1;
}

static loom_status normalize(const loom_tokenizer *t, const char *text, size_t len, tok_vec *w) {
    static const char SPACE[] = "\xE2\x96\x81";
    const bool merge = t->ugm_merge_spaces;
    bool prepended = false, in_word = false;
    for (size_t i = 0; i < len;) {
        const char *r;
        size_t rn;
        i += normalize_prefix(t, (const uint8_t *)text + i, len - i, &r, &rn);
        LOOM_TRY(tok_vec_reserve(w, w->n + 3 * rn + 3));
        char *o = w->p;
        for (size_t j = 0; j < rn; j++) {
            if (r[j] != ' ') {
                if (!in_word) {
                    in_word = true;
                    if ((t->add_space_prefix && !prepended) || merge) {
                        memcpy(o + w->n, SPACE, 3), w->n += 3;
                        prepended = true;
                    }
                }
                o[w->n++] = r[j];
            } else {
                in_word = false;
                if (!merge) memcpy(o + w->n, SPACE, 3), w->n += 3;
            }
        }
    }
    return NULL;
}

typedef struct {
    int32_t id;
    uint32_t from; /* where the token starts */
    double score;  /* of the best tokenization of the bytes before here */
} ugm_best;

loom_status tok_ugm_encode(const loom_tokenizer *t, const char *text, size_t len, loom_tokens *out) {
    static const uint8_t char_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    loom_status st = NULL;
    tok_vec w = {.elem = 1}, best = {.elem = sizeof(ugm_best)}, ids = {.elem = sizeof(int32_t)};
    if ((st = normalize(t, text, len, &w))) goto done;
    const size_t n = w.n;
    if (n == 0) goto done;
    if (n >= UINT32_MAX) {
        st = loom_error(LOOM_ERR_INVALID, "tokenizer: text of %zu bytes is too long", len);
        goto done;
    }
    if ((st = tok_vec_reserve(&best, n + 1))) goto done;
    ugm_best *b = best.p;
    const uint8_t *s = w.p;
    for (size_t i = 0; i <= n; i++) b[i] = (ugm_best){t->unk, 0, i ? -DBL_MAX : 0.0};
    for (size_t i = 0; i < n;) {
        const size_t cl = char_len[s[i] >> 4] < n - i ? char_len[s[i] >> 4] : n - i;
        bool whole_char = false;
        const double base = b[i].score;
        uint32_t link = t->ugm_root[s[i]];
        for (size_t j = i; link;) {
            const struct tok_trie_node *nd = &t->ugm_trie[link - 1];
            if (nd->special >= 0) {
                const size_t end = j + 1;
                if (end - i == cl) whole_char = true;
                const double score = base + ((t->attr[nd->special] & TOK_USER_DEFINED) ? 0.0 : (double)t->score[nd->special]);
                if (score > b[end].score) b[end] = (ugm_best){nd->special, (uint32_t)i, score};
            }
            if (++j >= n) break;
            link = nd->child;
            while (link && t->ugm_trie[link - 1].byte != s[j]) link = t->ugm_trie[link - 1].sibling;
        }
        if (!whole_char && base + t->ugm_unk_score > b[i + cl].score)
            b[i + cl] = (ugm_best){t->unk, (uint32_t)i, base + t->ugm_unk_score};
        i += cl;
    }
    /* back from the end; runs of unknowns as one */
    bool prev_unk = false;
    for (size_t at = n;;) {
        const bool unk = b[at].id == t->unk;
        if (!(prev_unk && unk) && b[at].id >= 0 && (st = tok_vec_push(&ids, &b[at].id))) goto done;
        if (b[at].from == 0) break;
        prev_unk = unk;
        at = b[at].from;
    }
    const int32_t *v = ids.p;
    for (size_t k = ids.n; k-- > 0;)
        if ((st = tok_push(out, v[k]))) goto done;
done:
    tok_vec_free(&w);
    tok_vec_free(&best);
    tok_vec_free(&ids);
    return st;
}
