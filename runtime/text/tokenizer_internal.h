/*
 * runtime/text/tokenizer_internal.h — private to runtime/text/tokenizer*.c: the
 * tokenizer's tables and the per-call scratch space the encoders share.
 */
#ifndef LOOM_TOKENIZER_INTERNAL_H
#define LOOM_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <string.h>

#include "runtime/text/tokenizer.h"

/* Token attributes (llama.cpp's llama_token_attr bits). */
enum {
    TOK_UNKNOWN = 1 << 0,
    TOK_UNUSED = 1 << 1,
    TOK_NORMAL = 1 << 2,
    TOK_CONTROL = 1 << 3,
    TOK_USER_DEFINED = 1 << 4,
    TOK_BYTE = 1 << 5,
    TOK_LSTRIP = 1 << 7,
    TOK_RSTRIP = 1 << 8,
};

enum { TOK_MODEL_BPE = 1, TOK_MODEL_SPM = 2, TOK_MODEL_WPM = 3, TOK_MODEL_UGM = 4 };

/* Open-addressing hash set of indices (slot = index + 1; 0 = empty). */
typedef struct {
    uint32_t *slot; /* (mask + 1) */
    uint64_t mask;
} tok_index;

/* A pre-tokenizer: the regexes applied in sequence and its flags. */
enum {
    PT_IGNORE_MERGES = 1 << 0, /* a piece that is a whole token is taken as is */
    PT_ADD_BOS = 1 << 1,       /* add_bos_token defaults to true */
    PT_RAW_BYTES = 1 << 2,     /* raw UTF-8 with " " → "▁" and <0xXX> byte fallback,
                                  not GPT-2's byte alphabet (gemma4, sarvam-moe) */
    PT_NO_BOS = 1 << 3,        /* the BOS id defaults to none (chatglm) */
    PT_GEMMA4 = 1 << 4,        /* add_bos forced on; a run of newlines that is a token is kept whole */
};

typedef struct {
    const char *name;         /* a `tokenizer.ggml.pre` value */
    const char *const *regex; /* NULL-terminated; NULL: known but not supported by loom */
    unsigned flags;           /* PT_* */
} tok_pretok;

struct loom_tokenizer {
    int model;                /* TOK_MODEL_* */
    char model_name[32];
    char pre_name[64];
    const tok_pretok *pre;    /* BPE only */

    int32_t n_vocab;
    char *text;               /* every token's text, back to back */
    size_t *text_off;         /* (n_vocab + 1): token i is text[off[i] .. off[i+1]) */
    float *score;             /* (n_vocab) */
    uint16_t *attr;           /* (n_vocab) TOK_* bits */
    tok_index by_text;        /* text → id (the last id wins for a repeated text) */

    /* BPE merges "a b" → rank (the first occurrence of a pair wins). */
    uint32_t n_merges;
    char *merge_text;         /* a then b, per merge, back to back */
    size_t *merge_off;        /* (n_merges + 1) */
    uint32_t *merge_split;    /* (n_merges) length of a */
    tok_index merge_ix;

    char *piece;              /* output bytes per token (rendered as special) */
    size_t *piece_off;        /* (n_vocab + 1) */

    /* Special tokens (control, user-defined, unknown), longest text first,
     * and a byte trie over their texts to find which occur in a text. */
    int32_t *special;         /* (n_special) ids */
    int32_t n_special;
    uint32_t trie_root[256];  /* first byte → node + 1 */
    struct tok_trie_node *trie;
    uint32_t n_trie;

    int32_t bos, eos, eot, eom, unk;
    int32_t fim[6];           /* loom_fim_kind → id, or LOOM_TOKEN_NULL */
    int32_t byte_token[256];  /* <0xXX> (or the single byte) → id, or -1 */
    bool add_bos, add_eos, add_sep, add_space_prefix; /* add_sep: SEP after the text with add_special (BERT's) */
    uint8_t *eog;             /* (n_vocab) 1 = end of generation */

    void *regex[8];           /* pcre2_code_8 *, compiled pre->regex */
    int n_regex;

    /* WordPiece (tokenizer_wpm.c) */
    int32_t sep;              /* appended after the text when adding special tokens */
    bool wpm_lowercase, wpm_strip_accents;
    int max_token_len;        /* bytes of the longest token text */
    void *wpm_re;             /* pcre2_code_8 *: the character classes */

    /* Unigram (tokenizer_ugm.c) */
    uint8_t *ugm_map;         /* the precompiled charsmap (NULL: none): size, trie, replacements */
    size_t ugm_xcda_n;        /* its trie's 32-bit entries */
    const char *ugm_repl;     /* its replacement strings (into ugm_map) */
    size_t ugm_repl_n;
    struct tok_trie_node *ugm_trie; /* normal, user-defined and unused tokens' texts; special = id */
    uint32_t ugm_root[256];
    double ugm_unk_score;     /* a character no token covers: the lowest normal score - 10 */
    bool ugm_merge_spaces;    /* remove_extra_whitespaces */
};

struct tok_trie_node {
    uint32_t child;   /* first child + 1 */
    uint32_t sibling; /* next sibling + 1 */
    int32_t special;  /* index into special[] of the first token with this exact text, or -1 */
    uint8_t byte;
};

/* Growable scratch arrays for one loom_tokenize call. */
typedef struct {
    void *p;
    size_t n, cap, elem;
} tok_vec;

loom_status tok_vec_reserve(tok_vec *v, size_t n) LOOM_MUST_USE;
loom_status tok_vec_push(tok_vec *v, const void *item) LOOM_MUST_USE;
void tok_vec_free(tok_vec *v);

/* A symbol of a word being merged: bytes [off, off + n) of the word,
 * linked to its neighbours; n = 0 once merged into its left neighbour. */
typedef struct {
    int32_t prev, next;
    uint32_t off, n;
} tok_sym;

/* A candidate merge of symbol `left` with its right neighbour; ln and rn
 * are both symbols' lengths when it was queued (to tell stale entries).
 * The queue pops the smallest key: BPE's merge rank, or SentencePiece's
 * score (highest first), then the leftmost pair. */
typedef struct {
    uint64_t key;
    int32_t left;
    uint32_t ln, rn;
} tok_bigram;

static inline uint64_t tok_key_rank(uint32_t rank, int32_t left) {
    return ((uint64_t)rank << 32) | (uint32_t)left;
}
static inline uint64_t tok_key_score(float score, int32_t left) {
    uint32_t u;
    if (score == 0) score = 0; /* -0 sorts with +0 */
    memcpy(&u, &score, sizeof u);
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u; /* ascending with the float */
    return ((uint64_t)~u << 32) | (uint32_t)left;  /* higher scores first */
}
/* h holds tok_bigram. */
loom_status tok_heap_push(tok_vec *h, tok_bigram v) LOOM_MUST_USE;
tok_bigram tok_heap_pop(tok_vec *h); /* h->n > 0 */

/* Token text access and lookup. */
static inline const char *tok_text(const loom_tokenizer *t, int32_t id, size_t *len) {
    *len = t->text_off[id + 1] - t->text_off[id];
    return t->text + t->text_off[id];
}
int32_t tok_find(const loom_tokenizer *t, const char *s, size_t n);

loom_status tok_push(loom_tokens *out, int32_t id) LOOM_MUST_USE;

/* BPE (tokenizer_bpe.c). */
const tok_pretok *tok_pretok_find(const char *name);
loom_status tok_bpe_init(loom_tokenizer *t, const loom_gguf *g) LOOM_MUST_USE; /* merges + regexes */
void tok_bpe_free(loom_tokenizer *t);
loom_status tok_bpe_encode(const loom_tokenizer *t, const char *text, size_t len, loom_tokens *out) LOOM_MUST_USE;
/* GPT-2 byte alphabet: byte → code point, and back (-1 when not in it). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);

/* SPM (tokenizer_spm.c). */
loom_status tok_spm_encode(const loom_tokenizer *t, const char *text, size_t len, bool prefix_space,
                           loom_tokens *out) LOOM_MUST_USE;

/* WordPiece (tokenizer_wpm.c). */
loom_status tok_wpm_init(loom_tokenizer *t) LOOM_MUST_USE;
void tok_wpm_free(loom_tokenizer *t);
loom_status tok_wpm_encode(const loom_tokenizer *t, const char *text, size_t len, loom_tokens *out) LOOM_MUST_USE;
/* NFD's first code point (unicode_nfd.c): ranges {first, last, base}, ascending. */
extern const uint32_t tok_nfd_ranges[][3];
extern const size_t tok_nfd_n_ranges;

/* Unigram (tokenizer_ugm.c). */
loom_status tok_ugm_init(loom_tokenizer *t, const loom_gguf *g) LOOM_MUST_USE;
void tok_ugm_free(loom_tokenizer *t);
loom_status tok_ugm_encode(const loom_tokenizer *t, const char *text, size_t len, loom_tokens *out) LOOM_MUST_USE;

/* Hash helpers. */
uint64_t tok_hash(uint64_t h, const void *p, size_t n);
#define TOK_HASH_SEED 0xcbf29ce484222325ull

#endif
