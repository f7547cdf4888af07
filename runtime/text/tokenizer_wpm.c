/*
 * runtime/text/tokenizer_wpm.c — WordPiece ("bert" tokenizer model), as
 * llama.cpp's llm_tokenizer_wpm (its ggml-vocab-bert-bge test vectors pass):
 *
 *   1. Normalise and split (BertNormalizer + BertPreTokenizer): per code
 *      point, with accent stripping first the first code point of its NFD
 *      (unicode_nfd.c); whitespace ends a word; NUL, U+FFFD and controls
 *      (\p{C} but unassigned) vanish; marks (\p{M}) vanish when stripping
 *      accents; lowercased when asked (simple case mapping); punctuation
 *      (\p{P}), ASCII symbols and CJK ideographs are words of their own.
 *   2. Each word, prefixed with "▁" (the GGUF converter stores word-initial
 *      pieces as "▁piece" and continuations bare), is cut greedily into the
 *      longest vocabulary pieces from the left; a word with any unmatched
 *      position becomes the unknown token.
 *
 * tokenizer.ggml.normalizer.lowercase (default true) and
 * .strip_accents (default: lowercase) choose the normalisation.
 */
#include <ctype.h>
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <wctype.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "runtime/text/tokenizer_internal.h"

/* Code point classes: what step 1 does with a character. */
enum { C_OTHER, C_SPACE, C_DROP_CTRL, C_MARK, C_SPLIT_P, C_SYMBOL };

/* \p{P}, \p{S}, \p{M}, \p{C} without unassigned code points (llama.cpp's flags). */
#define WPM_CLASS_RE "(\\p{P})|(\\p{S})|(\\p{M})|([\\p{Cc}\\p{Cf}\\p{Co}\\p{Cs}])"

loom_status tok_wpm_init(loom_tokenizer *t) {
    int err;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)WPM_CLASS_RE, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED,
                                   &err, &at, NULL);
    if (!re) return loom_error(LOOM_ERR_UNSUPPORTED, "tokenizer: PCRE2 lacks Unicode properties (error %d)", err);
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    t->wpm_re = re;
    t->max_token_len = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t n = t->text_off[i + 1] - t->text_off[i];
        if (n > (size_t)t->max_token_len) t->max_token_len = (int)n;
    }
    return NULL;
}

void tok_wpm_free(loom_tokenizer *t) {
    if (t->wpm_re) pcre2_code_free(t->wpm_re);
    t->wpm_re = NULL;
}

static bool is_space(uint32_t c) {
    return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static int classify(const loom_tokenizer *t, uint32_t c, pcre2_match_data *md) {
    if (is_space(c)) return C_SPACE;
    if (c < 0x80) return iscntrl((int)c) ? C_DROP_CTRL : ispunct((int)c) ? C_SPLIT_P : C_OTHER;
    char u[4];
    int n = loom_utf8_encode(c, u);
    int rc = pcre2_match(t->wpm_re, (PCRE2_SPTR)u, (size_t)n, 0, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc <= 1) return C_OTHER;
    return rc == 2 ? C_SPLIT_P : rc == 3 ? C_SYMBOL : rc == 4 ? C_MARK : C_DROP_CTRL;
}

static uint32_t nfd_first(uint32_t c) {
    size_t lo = 0, hi = tok_nfd_n_ranges;
    while (lo < hi) { /* the last range starting at or before c */
        size_t mid = (lo + hi) / 2;
        if (tok_nfd_ranges[mid][0] <= c) lo = mid + 1;
        else hi = mid;
    }
    return lo > 0 && c <= tok_nfd_ranges[lo - 1][1] ? tok_nfd_ranges[lo - 1][2] : c;
}

static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static void utf8_init(void) { utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }

static uint32_t lower(uint32_t c) {
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    pthread_once(&utf8_once, utf8_init);
    return utf8_locale ? (uint32_t)towlower_l((wint_t)c, utf8_locale) : c;
}

/* Cuts one word (bytes w[0..n), "▁" included) into pieces; UNK when it cannot. */
static loom_status cut_word(const loom_tokenizer *t, const char *w, size_t n, loom_tokens *out) {
    size_t start = out->n;
    for (size_t i = 0; i < n;) {
        size_t j = i + (size_t)t->max_token_len < n ? i + (size_t)t->max_token_len : n;
        int32_t id = LOOM_TOKEN_NULL;
        for (; j > i && (id = tok_find(t, w + i, j - i)) < 0; j--) {
        }
        if (id < 0) { /* this word has no cut: drop its pieces */
            out->n = start;
            break;
        }
        LOOM_TRY(tok_push(out, id));
        i = j;
    }
    if (out->n == start && t->unk >= 0) LOOM_TRY(tok_push(out, t->unk));
    return NULL;
}

loom_status tok_wpm_encode(const loom_tokenizer *t, const char *text, size_t len, loom_tokens *out) {
    pcre2_match_data *md = pcre2_match_data_create(8, NULL);
    if (!md) return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory");
    tok_vec word = {.elem = 1};
    loom_status st = tok_vec_reserve(&word, 64);
    static const char phantom[3] = {'\xE2', '\x96', '\x81'}; /* ▁ */
#define FLUSH()                                                                              \
    do {                                                                                     \
        if (!st && word.n > 3) st = cut_word(t, word.p, word.n, out);                        \
        word.n = 0;                                                                          \
        for (int k_ = 0; !st && k_ < 3; k_++) st = tok_vec_push(&word, &phantom[k_]);       \
    } while (0)
    word.n = 0;
    for (int k = 0; !st && k < 3; k++) st = tok_vec_push(&word, &phantom[k]);
    for (size_t i = 0; i < len && !st;) {
        uint32_t c;
        int k = loom_utf8_decode((const uint8_t *)text + i, len - i, &c);
        if (k <= 0) c = 0xFFFD, k = 1; /* an invalid byte: U+FFFD, which vanishes */
        i += (size_t)k;
        if (t->wpm_strip_accents) c = nfd_first(c);
        int cls = classify(t, c, md);
        if (cls == C_SPACE) {
            FLUSH();
            continue;
        }
        if (c == 0 || c == 0xFFFD || cls == C_DROP_CTRL || (t->wpm_strip_accents && cls == C_MARK)) continue;
        if (t->wpm_lowercase) c = lower(c);
        char u[4];
        int n = loom_utf8_encode(c, u);
        bool alone = cls == C_SPLIT_P || (cls == C_SYMBOL && c < 0x7F) || is_cjk(c);
        if (alone) FLUSH();
        for (int b = 0; !st && b < n; b++) st = tok_vec_push(&word, &u[b]);
        if (alone) FLUSH();
    }
    FLUSH();
#undef FLUSH
    tok_vec_free(&word);
    pcre2_match_data_free(md);
    return st;
}
