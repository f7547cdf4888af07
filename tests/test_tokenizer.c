/*
 * tests/test_tokenizer.c — tokenizers from GGUF metadata, the streaming UTF-8
 * decoder and the JSON escaper.
 *
 * - llama.cpp's own tokenizer test vectors (ggml-vocab-<family>.gguf with
 *   .inp/.out, unpacked by `launch/fetch-model.sh --vocab`): every string of
 *   every family loom supports must give exactly the expected ids (no BOS,
 *   special tokens not parsed, as llama.cpp's test-tokenizer-0 runs them).
 * - the default model SmolLM2-135M-Instruct (pre-tokenizer "smollm"): ids
 *   checked by hand against llama.cpp 0.3.36 (llama-cpp-python,
 *   Llama(vocab_only=True).tokenize), including the digit split that a single
 *   combined regex gets wrong, emoji, CJK, spaces, newlines and special tokens.
 * - unsupported models and pre-tokenizers, malformed metadata: clear errors.
 * - decode(encode(s)) == s, streamed piece by piece without splitting a
 *   character; replacement of ill-formed UTF-8 as Python's
 *   bytes.decode("utf-8", "replace") does it; JSON escaping.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "runtime/gguf.h"
#include "runtime/gguf_write.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/utf8.h"

#define OK(expr)                                                                   \
    do {                                                                           \
        loom_status s_ = (expr);                                                   \
        cr_assert_null(s_, "%s failed: %s", #expr, loom_status_message(s_));       \
    } while (0)

#define VOCAB_DIR LOOM_CACHE_DIR "/vocab"
#define DEFAULT_MODEL LOOM_CACHE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define FETCH_HINT "run launch/fetch-model.sh --vocab (it unpacks llama.cpp's vocab tests into $LOOM_CACHE/vocab)"

static void need_file(const char *path) {
    struct stat sb;
    cr_assert(stat(path, &sb) == 0, "missing %s: %s", path, FETCH_HINT);
}

static char *slurp(const char *path, size_t *n) {
    need_file(path);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    cr_assert_not_null(buf);
    *n = fread(buf, 1, (size_t)len, f);
    buf[*n] = 0;
    fclose(f);
    return buf;
}

typedef struct {
    loom_gguf *g;
    loom_tokenizer *t;
} tok_file;

static tok_file open_tok(const char *path) {
    need_file(path);
    tok_file tf;
    OK(loom_gguf_open(path, &tf.g));
    OK(loom_tokenizer_create(tf.g, &tf.t));
    return tf;
}

static void close_tok(tok_file *tf) {
    loom_tokenizer_free(tf->t);
    loom_gguf_free(tf->g);
}

static void expect_ids_at(const loom_tokenizer *t, const char *text, size_t len, bool add, bool parse,
                          const int32_t *want, size_t n_want, int line) {
    loom_tokens v = {0};
    OK(loom_tokenize(t, text, len, add, parse, &v));
    bool same = v.n == n_want && (n_want == 0 || !memcmp(v.ids, want, n_want * sizeof *want));
    if (!same) {
        char got[4096] = "", exp[4096] = "";
        size_t g = 0, e = 0;
        for (size_t i = 0; i < v.n && g < sizeof got - 16; i++) g += (size_t)snprintf(got + g, sizeof got - g, " %d", v.ids[i]);
        for (size_t i = 0; i < n_want && e < sizeof exp - 16; i++) e += (size_t)snprintf(exp + e, sizeof exp - e, " %d", want[i]);
        cr_assert_fail("line %d: text \"%.*s\": expected [%s ] got [%s ]", line, (int)(len > 80 ? 80 : len), text, exp, got);
    }
    loom_tokens_free(&v);
}
#define EXPECT_IDS(t, text, add, parse, ...)                                                          \
    do {                                                                                              \
        static const int32_t want_[] = {__VA_ARGS__};                                                 \
        expect_ids_at(t, text, strlen(text), add, parse, want_, sizeof want_ / sizeof want_[0], __LINE__); \
    } while (0)

/* ---- llama.cpp's vocab test vectors ---- */

/* Runs the vocabulary at `path` against the strings of .inp and the ids
 * of .out at `vectors` (+ ".inp" / ".out"); returns the number of strings
 * checked. */
static int run_vocab(const char *name, const char *path, const char *vectors) {
    char p2[600];
    tok_file tf = open_tok(path);
    size_t ni, no;
    snprintf(p2, sizeof p2, "%s.inp", vectors);
    char *inp = slurp(p2, &ni);
    snprintf(p2, sizeof p2, "%s.out", vectors);
    char *out = slurp(p2, &no);

    const char *sep = "\n__ggml_vocab_test__\n";
    size_t sl = strlen(sep);
    char *ip = inp, *op = out;
    int n = 0;
    while (ip < inp + ni) {
        char *e = strstr(ip, sep);
        size_t len = e ? (size_t)(e - ip) : strlen(ip);
        cr_assert(op < out + no, "%s: fewer lines in .out than strings in .inp", name);
        char *eol = strchr(op, '\n');
        if (eol) *eol = 0;
        int32_t want[2048];
        size_t nw = 0;
        for (char *q = op; *q;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            cr_assert(nw < 2048);
            want[nw++] = (int32_t)v;
            q = end;
        }
        op = eol ? eol + 1 : op + strlen(op);
        expect_ids_at(tf.t, ip, len, false, false, want, nw, __LINE__);
        n++;
        if (!e) break;
        ip = e + sl;
    }
    free(inp);
    free(out);
    close_tok(&tf);
    return n;
}

/* ggml-vocab-<name>.gguf against its own .inp/.out */
static int run_vocab_family(const char *name) {
    char path[512];
    snprintf(path, sizeof path, VOCAB_DIR "/ggml-vocab-%s.gguf", name);
    return run_vocab(name, path, path);
}

#define VOCAB_FAMILY(id, name, count)                                                   \
    Test(vocab, id) {                                                                   \
        int n = run_vocab_family(name);                                                 \
        cr_assert_eq(n, count, "%s: %d test strings, expected %d", name, n, count);     \
    }

VOCAB_FAMILY(gpt2, "gpt-2", 46)
VOCAB_FAMILY(starcoder, "starcoder", 46)
VOCAB_FAMILY(deepseek_coder, "deepseek-coder", 46)
VOCAB_FAMILY(deepseek_llm, "deepseek-llm", 46)
VOCAB_FAMILY(falcon, "falcon", 46)
VOCAB_FAMILY(llama_bpe, "llama-bpe", 46)
VOCAB_FAMILY(qwen2, "qwen2", 46)
VOCAB_FAMILY(qwen35, "qwen35", 50)
VOCAB_FAMILY(mpt, "mpt", 46)
VOCAB_FAMILY(command_r, "command-r", 46)
VOCAB_FAMILY(refact, "refact", 46)
VOCAB_FAMILY(llama_spm, "llama-spm", 46)
VOCAB_FAMILY(phi3, "phi-3", 46)
VOCAB_FAMILY(gemma4, "gemma-4", 46)
VOCAB_FAMILY(bert_bge, "bert-bge", 46)

/* SentencePiece unigram (XLM-R's 250k pieces and NFKC charsmap): llama.cpp
 * ships no ids for it, so tests/fixtures/gen_ugm_vocab.py recorded
 * llama.cpp's for its 46 strings and 16 more that the charsmap normalizes. */
Test(vocab, ugm_xlm_roberta) {
    int n = run_vocab("nomic-bert-moe", VOCAB_DIR "/ggml-vocab-nomic-bert-moe.gguf",
                      LOOM_TEST_DATA "/fixtures/vocab-nomic-bert-moe");
    cr_assert_eq(n, 62, "%d test strings, expected 62", n);
}

/* The model's special tokens: <s> text </s> (its add_bos / add_eos keys),
 * <mask> parsed only when asked, decode drops the prefixed space. */
Test(vocab, ugm_special_tokens_and_decode) {
    tok_file tf = open_tok(VOCAB_DIR "/ggml-vocab-nomic-bert-moe.gguf");
    cr_assert_str_eq(loom_tokenizer_model(tf.t), "t5");
    cr_assert_eq(loom_tokenizer_bos(tf.t), 0);
    cr_assert_eq(loom_tokenizer_eos(tf.t), 2);
    EXPECT_IDS(tf.t, "Hello world", true, false, 0, 35378, 8999, 2);
    EXPECT_IDS(tf.t, "Hello <mask>", true, true, 0, 35378, 250001, 2);
    loom_strbuf s = {0};
    OK(loom_detokenize(tf.t, (const int32_t[]){35378, 8999}, 2, false, &s));
    cr_assert_str_eq(s.data, "Hello world");
    loom_strbuf_free(&s);
    close_tok(&tf);
}

/* Vocabularies without test strings still build, with llama.cpp's defaults. */
Test(vocab, defaults_without_keys) {
    tok_file tf = open_tok(VOCAB_DIR "/ggml-vocab-llama-bpe.gguf"); /* no add_bos key: llama3 pre adds BOS */
    cr_assert(loom_tokenizer_adds_bos(tf.t));
    EXPECT_IDS(tf.t, "Hello", true, false, 128000, 9906);
    EXPECT_IDS(tf.t, "", true, false, 128000);
    cr_assert(loom_tokenizer_is_eog(tf.t, 128001)); /* <|end_of_text|> */
    close_tok(&tf);

    tf = open_tok(VOCAB_DIR "/ggml-vocab-llama-spm.gguf");
    EXPECT_IDS(tf.t, "Hello", true, false, 1, 15043);
    EXPECT_IDS(tf.t, "<s>Hello", true, true, 1, 1, 15043); /* "▁" prefixed after a special token */
    EXPECT_IDS(tf.t, "", true, false, 1);
    cr_assert_str_eq(loom_tokenizer_model(tf.t), "llama");
    close_tok(&tf);

    tf = open_tok(VOCAB_DIR "/ggml-vocab-gpt-2.gguf"); /* BPE: no BOS by default */
    cr_assert_not(loom_tokenizer_adds_bos(tf.t));
    EXPECT_IDS(tf.t, "Hello", true, false, 15496);
    cr_assert_str_eq(loom_tokenizer_pre(tf.t), "gpt-2");
    close_tok(&tf);
}

/* ---- the default model (SmolLM2, pre "smollm"); ids from llama.cpp 0.3.36 ---- */

/* WordPiece with special tokens: [CLS] ... [SEP] around the text, accents
 * stripped, lowercased, punctuation alone; a word with no cut is [UNK]. */
Test(bert, special_tokens_and_unknown_words) {
    tok_file tf = open_tok(VOCAB_DIR "/ggml-vocab-bert-bge.gguf");
    loom_tokens v = {0};
    OK(loom_tokenize(tf.t, "Héllo, WORLD!", strlen("Héllo, WORLD!"), true, false, &v));
    cr_assert(v.n >= 6 && v.ids[0] == 101 && v.ids[v.n - 1] == 102, "[CLS] first, [SEP] last (%zu ids)", v.n);
    loom_tokens w = {0};
    OK(loom_tokenize(tf.t, "hello , world !", 15, false, false, &w));
    cr_assert_eq(w.n, v.n - 2, "normalised the same as its plain form");
    cr_assert(!memcmp(w.ids, v.ids + 1, w.n * sizeof *w.ids));
    loom_strbuf s = {0};
    OK(loom_detokenize(tf.t, w.ids, w.n, false, &s));
    cr_assert_str_eq(s.data, "hello , world !");
    loom_strbuf_free(&s);
    v.n = 0;
    OK(loom_tokenize(tf.t, "\xe2\x80\x8b", 3, false, false, &v)); /* U+200B (Cf) vanishes */
    cr_assert_eq(v.n, 0);
    cr_assert_eq(loom_tokenizer_bos(tf.t), 101);
    loom_tokens_free(&v);
    loom_tokens_free(&w);
    close_tok(&tf);
}

Test(smollm, hand_checked_ids) {
    tok_file tf = open_tok(DEFAULT_MODEL);
    const loom_tokenizer *t = tf.t;
    cr_assert_str_eq(loom_tokenizer_pre(t), "smollm");
    cr_assert_eq(loom_tokenizer_n_vocab(t), 49152);
    /* digits are split one by one first (\p{N}), then GPT-2's rule runs on
     * each piece; a single combined regex would give " ?\p{N}+" = one piece */
    EXPECT_IDS(t, "12345", false, false, 33, 34, 35, 36, 37);
    EXPECT_IDS(t, "3.14159 and 2024-01-02", false, false, 35, 30, 33, 36, 33, 37, 41, 284, 216, 34, 32, 34, 36, 29,
               32, 33, 29, 32, 34);
    EXPECT_IDS(t, "Hello world", false, false, 19556, 905);
    EXPECT_IDS(t, " Hello world", false, false, 38699, 905);
    EXPECT_IDS(t, "Hello 😀 world 🦙", false, false, 19556, 40303, 218, 905, 15107, 116, 243);
    EXPECT_IDS(t, "你好，世界！日本語", false, false, 18645, 250, 48392, 138, 12831, 7906, 240, 178, 239, 230, 8083,
               219, 23274, 115, 40993, 179, 120, 248);
    EXPECT_IDS(t, "  leading and trailing  ", false, false, 216, 2899, 284, 35079, 256);
    EXPECT_IDS(t, "\n\nnewlines\n\n\n", false, false, 198, 198, 2241, 5110, 16506);
    EXPECT_IDS(t, "tab\tsep\r\nwindows", false, false, 15999, 197, 29070, 201, 198, 37066);
    EXPECT_IDS(t, "don't I'LL we've", false, false, 12420, 982, 339, 23, 16421, 392, 3543);
    /* special tokens: parsed only when asked */
    EXPECT_IDS(t, "<|im_start|>user\nHi<|im_end|>\n", false, true, 1, 4093, 198, 26843, 2, 198);
    EXPECT_IDS(t, "<|im_start|>user\nHi<|im_end|>\n", false, false, 44, 108, 306, 79, 3738, 108, 46, 4093, 198,
               26843, 44, 108, 306, 79, 486, 108, 46, 198);
    EXPECT_IDS(t, "<|im_start|><|im_start|>x", true, true, 1, 1, 104);
    /* add_bos_token is false in this file */
    cr_assert_not(loom_tokenizer_adds_bos(t));
    cr_assert_eq(loom_tokenizer_bos(t), 1);
    cr_assert_eq(loom_tokenizer_eos(t), 2);
    loom_tokens v = {0};
    OK(loom_tokenize(t, "", 0, true, true, &v));
    cr_assert_eq(v.n, 0);
    loom_tokens_free(&v);
    close_tok(&tf);
}

/* Ill-formed UTF-8: llama.cpp reads each bad byte as U+FFFD before BPE
 * (ids checked against llama.cpp); long runs of them must not overflow. */
Test(smollm, invalid_utf8_becomes_replacement_characters) {
    tok_file tf = open_tok(DEFAULT_MODEL);
    EXPECT_IDS(tf.t, "\xff\xfe" "ab\xe2\x82", false, false, 24211, 24211, 369, 24211, 24211);
    enum { N = 300 };
    char bad[2 * N], good[4 * N];
    memset(bad, 0xff, N);
    memset(bad + N, 'a', N);
    for (int i = 0; i < N; i++) memcpy(good + 3 * i, "\xEF\xBF\xBD", 3);
    memset(good + 3 * N, 'a', N);
    loom_tokens a = {0}, b = {0};
    OK(loom_tokenize(tf.t, bad, sizeof bad, false, false, &a));
    OK(loom_tokenize(tf.t, good, sizeof good, false, false, &b));
    cr_assert(a.n == b.n && !memcmp(a.ids, b.ids, a.n * sizeof *a.ids));
    loom_tokens_free(&a);
    loom_tokens_free(&b);
    close_tok(&tf);
}

Test(smollm, eog_and_pieces) {
    tok_file tf = open_tok(DEFAULT_MODEL);
    const loom_tokenizer *t = tf.t;
    /* llama.cpp's EOG set for this file: <|endoftext|>, <|im_end|>, and
     * <reponame> (taken as the FIM repo token) */
    for (int32_t id = 0; id < loom_tokenizer_n_vocab(t); id++) {
        bool want = id == 0 || id == 2 || id == 4;
        cr_assert_eq(loom_tokenizer_is_eog(t, id), want, "is_eog(%d)", id);
    }
    cr_assert_not(loom_tokenizer_is_eog(t, -1));
    cr_assert_not(loom_tokenizer_is_eog(t, 49152));
    size_t n;
    const char *p = loom_token_piece(t, 2, false, &n);
    cr_assert_eq(n, 0, "a control token renders as nothing unless asked");
    p = loom_token_piece(t, 2, true, &n);
    cr_assert(n == 10 && !memcmp(p, "<|im_end|>", 10));
    p = loom_token_piece(t, 38699, false, &n); /* "ĠHello" */
    cr_assert(n == 6 && !memcmp(p, " Hello", 6));
    p = loom_token_piece(t, 198, false, &n); /* "Ċ" */
    cr_assert(n == 1 && p[0] == '\n');
    p = loom_token_text(t, 38699, &n);
    cr_assert(n == 7 && !memcmp(p, "\xC4\xA0Hello", 7));
    p = loom_token_piece(t, 49152, true, &n);
    cr_assert_eq(n, 0);
    cr_assert_eq(loom_token_lookup(t, "<|im_start|>", 12), 1);
    cr_assert_eq(loom_token_lookup(t, "no such token", 13), LOOM_TOKEN_NULL);
    cr_assert(loom_tokenizer_is_control(t, 1));
    cr_assert_not(loom_tokenizer_is_control(t, 38699));
    close_tok(&tf);
}

/* ---- decoding ---- */

static const char *const ROUND_TRIP[] = {
    "",
    "Hello world",
    " Hello world",
    "  two leading, two trailing  ",
    "\n\n\t mixed \r\n whitespace \t\n",
    "12345 67.890 1,000,000",
    "Hello 😀 world 🦙 😶‍🌫️ ✅",
    "你好，世界！日本語のテキスト 한국어",
    "Ünïcödé façade naïve Ærø",
    "привет мир γειά σου κόσμε",
    "مرحبا بالعالم हिन्दी ก่อน",
    "def f(x):\n    return x ** 2  # comment\n",
    "<|im_start|>user\nnot parsed<|im_end|>",
    "don't I'LL we've 'RE",
    "!!!???...,,,;;;:::---===```\"\"\"'''",
    "\x01\x02\x7f control bytes \x1b[0m",
    "1\xC2\xBD 2\xE2\x80\x89 3\xE3\x80\x80 nbsp\xC2\xA0!",
};

static void check_round_trips(const char *path) {
    tok_file tf = open_tok(path);
    for (size_t k = 0; k < sizeof ROUND_TRIP / sizeof ROUND_TRIP[0]; k++) {
        const char *s = ROUND_TRIP[k];
        size_t len = strlen(s);
        loom_tokens v = {0};
        OK(loom_tokenize(tf.t, s, len, true, false, &v));
        loom_strbuf out = {0};
        OK(loom_detokenize(tf.t, v.ids, v.n, false, &out));
        cr_assert(out.len == len && (len == 0 || !memcmp(out.data, s, len)), "%s: \"%s\" decodes to \"%s\"", path,
                  s, out.data ? out.data : "");

        /* streamed piece by piece: the same text, and only whole characters per push */
        loom_utf8_stream us;
        loom_utf8_stream_init(&us);
        loom_strbuf all = {0}, step = {0};
        bool first = true;
        for (size_t i = 0; i < v.n; i++) {
            size_t pn;
            const char *p = loom_token_piece(tf.t, v.ids[i], false, &pn);
            if (first && pn && !loom_tokenizer_is_control(tf.t, v.ids[i]) && !strcmp(loom_tokenizer_model(tf.t), "llama")) {
                if (p[0] == ' ') p++, pn--; /* the prefix space, as loom_detokenize drops it */
                first = false;
            }
            loom_strbuf_clear(&step);
            OK(loom_utf8_stream_push(&us, p, pn, &step));
            cr_assert(loom_utf8_valid(step.data ? step.data : "", step.len), "%s: a push split a character", path);
            OK(loom_strbuf_append(&all, step.data, step.len));
        }
        OK(loom_utf8_stream_flush(&us, &all));
        cr_assert(all.len == len && (len == 0 || !memcmp(all.data, s, len)), "%s: \"%s\" streams to \"%s\"", path, s,
                  all.data ? all.data : "");
        loom_strbuf_free(&all);
        loom_strbuf_free(&step);
        loom_strbuf_free(&out);
        loom_tokens_free(&v);
    }
    close_tok(&tf);
}

Test(decode, round_trip_smollm) { check_round_trips(DEFAULT_MODEL); }
Test(decode, round_trip_llama_spm) { check_round_trips(VOCAB_DIR "/ggml-vocab-llama-spm.gguf"); }
Test(decode, round_trip_qwen2) { check_round_trips(VOCAB_DIR "/ggml-vocab-qwen2.gguf"); }
Test(decode, round_trip_llama_bpe) { check_round_trips(VOCAB_DIR "/ggml-vocab-llama-bpe.gguf"); }
Test(decode, round_trip_deepseek_llm) { check_round_trips(VOCAB_DIR "/ggml-vocab-deepseek-llm.gguf"); }
Test(decode, round_trip_gemma4) { check_round_trips(VOCAB_DIR "/ggml-vocab-gemma-4.gguf"); }

Test(decode, special_tokens_render_when_asked) {
    tok_file tf = open_tok(DEFAULT_MODEL);
    const char *s = "<|im_start|>assistant\nHi!<|im_end|>";
    loom_tokens v = {0};
    OK(loom_tokenize(tf.t, s, strlen(s), false, true, &v));
    loom_strbuf a = {0}, b = {0};
    OK(loom_detokenize(tf.t, v.ids, v.n, true, &a));
    OK(loom_detokenize(tf.t, v.ids, v.n, false, &b));
    cr_assert_str_eq(a.data, s);
    cr_assert_str_eq(b.data, "assistant\nHi!");
    loom_strbuf_free(&a);
    loom_strbuf_free(&b);
    loom_tokens_free(&v);
    close_tok(&tf);
}

/* " 🦙" (20 F0 9F A6 99) arrives as three tokens (20 F0 9F | A6 | 99): the
 * space comes out at once, the emoji once it is whole. */
Test(decode, emoji_split_across_tokens) {
    tok_file tf = open_tok(DEFAULT_MODEL);
    static const int32_t ids[] = {15107, 116, 243};
    static const size_t piece_len[] = {3, 1, 1}, out_len[] = {1, 0, 4};
    loom_utf8_stream us;
    loom_utf8_stream_init(&us);
    loom_strbuf out = {0};
    for (int i = 0; i < 3; i++) {
        size_t pn, before = out.len;
        const char *p = loom_token_piece(tf.t, ids[i], false, &pn);
        cr_assert_eq(pn, piece_len[i], "token %d: piece of %zu bytes", ids[i], pn);
        OK(loom_utf8_stream_push(&us, p, pn, &out));
        cr_assert_eq(out.len - before, out_len[i], "push %d gave %zu bytes", i, out.len - before);
        cr_assert_eq(loom_utf8_stream_pending(&us), i < 2);
    }
    cr_assert_str_eq(out.data, " \xF0\x9F\xA6\x99");
    loom_strbuf_free(&out);
    close_tok(&tf);
}

/* ---- ill-formed UTF-8: one U+FFFD per maximal subpart (expected strings
 * from Python 3.11: bytes.decode("utf-8", "replace")) ---- */

#define FFFD "\xEF\xBF\xBD"
#define R(in, want) {in, sizeof(in) - 1, want, sizeof(want) - 1}
static const struct {
    const char *in;
    size_t n;
    const char *want;
    size_t wn;
} REPLACE[] = {
    R("abc", "abc"),
    R("\x80", FFFD),
    R("a\xE2\x82", "a" FFFD),                        /* truncated at the end */
    R("\xE2\x82" "A", FFFD "A"),                     /* truncated in the middle */
    R("\xF0\x9F\xA6", FFFD),                         /* 3 of 4 bytes */
    R("\xC0\x80", FFFD FFFD),                        /* overlong */
    R("\xED\xA0\x80", FFFD FFFD FFFD),               /* surrogate */
    R("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD),      /* above U+10FFFF */
    R("\xFF\xFE", FFFD FFFD),
    R("\xE0\x80\xAF", FFFD FFFD FFFD),
    R("\xF0\x9F" "x\xF0\x9F\xA6\x99", FFFD "x\xF0\x9F\xA6\x99"),
    R("\xC3\xA9\x00z", "\xC3\xA9\x00z"),
};

Test(utf8, replacement_like_python) {
    for (size_t k = 0; k < sizeof REPLACE / sizeof REPLACE[0]; k++) {
        size_t wn = REPLACE[k].wn;
        /* whole, and split at every position: the same output */
        for (size_t cut = 0; cut <= REPLACE[k].n; cut++) {
            loom_utf8_stream us;
            loom_utf8_stream_init(&us);
            loom_strbuf out = {0};
            OK(loom_utf8_stream_push(&us, REPLACE[k].in, cut, &out));
            OK(loom_utf8_stream_push(&us, REPLACE[k].in + cut, REPLACE[k].n - cut, &out));
            OK(loom_utf8_stream_flush(&us, &out));
            cr_assert(out.len == wn && !memcmp(out.data, REPLACE[k].want, wn), "case %zu cut %zu: got %zu bytes", k,
                      cut, out.len);
            cr_assert(loom_utf8_valid(out.data, out.len));
            loom_strbuf_free(&out);
        }
        /* byte by byte */
        loom_utf8_stream us;
        loom_utf8_stream_init(&us);
        loom_strbuf out = {0};
        for (size_t i = 0; i < REPLACE[k].n; i++) OK(loom_utf8_stream_push(&us, REPLACE[k].in + i, 1, &out));
        OK(loom_utf8_stream_flush(&us, &out));
        cr_assert(out.len == wn && !memcmp(out.data, REPLACE[k].want, wn), "case %zu byte by byte", k);
        loom_strbuf_free(&out);
    }
}

Test(utf8, invalid_bytes_at_the_end_wait_then_flush) {
    loom_utf8_stream us;
    loom_utf8_stream_init(&us);
    loom_strbuf out = {0};
    OK(loom_utf8_stream_push(&us, "ok \xF0\x9F", 5, &out));
    cr_assert_eq(out.len, 3, "the incomplete emoji waits");
    cr_assert(loom_utf8_stream_pending(&us));
    OK(loom_utf8_stream_flush(&us, &out));
    cr_assert_str_eq(out.data, "ok " FFFD);
    cr_assert_not(loom_utf8_stream_pending(&us));
    OK(loom_utf8_stream_flush(&us, &out)); /* nothing more */
    cr_assert_eq(out.len, 6);
    loom_strbuf_free(&out);
}

/* Random byte strings: stream output is always valid UTF-8, independent of
 * how the input is cut, and equal to the input when the input is valid. */
Test(utf8, random_chunking) {
    uint64_t x = 88172645463325252ull;
    for (int iter = 0; iter < 2000; iter++) {
        uint8_t in[32];
        size_t n = 1 + iter % 32;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* mostly bytes that form or break multi-byte characters */
            static const uint8_t pool[] = {'a', ' ', 0x80, 0x9F, 0xA6, 0xBF, 0xC2, 0xC3, 0xE0, 0xE2, 0xED, 0xF0, 0xF4, 0xFF};
            in[i] = pool[x % sizeof pool];
        }
        loom_strbuf whole = {0}, cut = {0};
        loom_utf8_stream a, b;
        loom_utf8_stream_init(&a);
        loom_utf8_stream_init(&b);
        OK(loom_utf8_stream_push(&a, (const char *)in, n, &whole));
        OK(loom_utf8_stream_flush(&a, &whole));
        for (size_t i = 0; i < n;) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t k = 1 + x % 3;
            if (k > n - i) k = n - i;
            OK(loom_utf8_stream_push(&b, (const char *)in + i, k, &cut));
            i += k;
        }
        OK(loom_utf8_stream_flush(&b, &cut));
        cr_assert(whole.len == cut.len && !memcmp(whole.data, cut.data, whole.len), "iteration %d", iter);
        cr_assert(loom_utf8_valid(whole.data, whole.len));
        if (loom_utf8_valid((const char *)in, n)) cr_assert(whole.len == n && !memcmp(whole.data, in, n));
        loom_strbuf_free(&whole);
        loom_strbuf_free(&cut);
    }
}

/* ---- JSON strings (expected: Python's json.dumps(s, ensure_ascii=False)
 * of the replaced text) ---- */

static void expect_json(const char *in, size_t n, const char *want) {
    loom_strbuf out = {0};
    OK(loom_json_escape(in, n, &out));
    cr_assert_str_eq(out.data, want);
    loom_strbuf_free(&out);
}

Test(utf8, json_escape) {
    expect_json("", 0, "\"\"");
    expect_json("plain", 5, "\"plain\"");
    expect_json("q\"b\\s/", 6, "\"q\\\"b\\\\s/\"");
    expect_json("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    expect_json("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\"");
    expect_json("\x00z", 2, "\"\\u0000z\"");
    expect_json("é🦙", 6, "\"é🦙\"");
    expect_json("a\xF0\x9F", 3, "\"a" FFFD "\"");
    expect_json("\xFF\"", 2, "\"" FFFD "\\\"\"");
}

/* ---- synthetic vocabularies: errors, SPM byte fallback, merge order ---- */

typedef struct {
    loom_gguf_writer *w;
    void *mem;
    loom_gguf *g;
} synth;

static synth synth_begin(void) {
    synth s = {0};
    OK(loom_gguf_writer_create(&s.w));
    return s;
}

static loom_status synth_build(synth *s, loom_tokenizer **t) {
    size_t size;
    OK(loom_gguf_writer_write_memory(s->w, &s->mem, &size));
    OK(loom_gguf_open_memory(s->mem, size, "synth.gguf", &s->g));
    return loom_tokenizer_create(s->g, t);
}

static void synth_end(synth *s, loom_tokenizer *t) {
    loom_tokenizer_free(t);
    loom_gguf_free(s->g);
    free(s->mem);
    loom_gguf_writer_free(s->w);
}

static void expect_synth_error(synth *s, loom_code code, const char *what) {
    loom_tokenizer *t = NULL;
    loom_status st = synth_build(s, &t);
    cr_assert_not_null(st, "expected an error containing '%s'", what);
    cr_assert_null(t);
    cr_assert_eq(loom_status_code(st), code, "code %d for '%s'", loom_status_code(st), loom_status_message(st));
    cr_assert(strstr(loom_status_message(st), what), "message '%s' lacks '%s'", loom_status_message(st), what);
    cr_assert(strstr(loom_status_message(st), "synth.gguf"), "message '%s' does not name the file",
              loom_status_message(st));
    loom_status_free(st);
    synth_end(s, NULL);
}

static const char *const BPE_TOKENS[] = {"a", "b", "c", "ab", "bc", "abc", "Ġ", "Ġa", "<|end|>"};
static const int32_t BPE_TYPES[] = {1, 1, 1, 1, 1, 1, 1, 1, 3};
static const char *const BPE_MERGES[] = {"b c", "a b", "ab c", "Ġ a"};

static void add_bpe(synth *s, const char *pre, bool merges) {
    OK(loom_gguf_writer_add_str(s->w, "tokenizer.ggml.model", "gpt2"));
    if (pre) OK(loom_gguf_writer_add_str(s->w, "tokenizer.ggml.pre", pre));
    OK(loom_gguf_writer_add_arr_str(s->w, "tokenizer.ggml.tokens", BPE_TOKENS, 9));
    OK(loom_gguf_writer_add_arr(s->w, "tokenizer.ggml.token_type", LOOM_GGUF_I32, BPE_TYPES, 9));
    if (merges) OK(loom_gguf_writer_add_arr_str(s->w, "tokenizer.ggml.merges", BPE_MERGES, 4));
}

Test(synthetic, errors_name_the_problem) {
    synth s = synth_begin();
    add_bpe(&s, "no-such-pre", true);
    expect_synth_error(&s, LOOM_ERR_UNSUPPORTED, "unknown pre-tokenizer 'no-such-pre'");

    s = synth_begin();
    add_bpe(&s, "kimi-k2", true);
    expect_synth_error(&s, LOOM_ERR_UNSUPPORTED, "pre-tokenizer 'kimi-k2' (tokenizer.ggml.pre) is not supported");

    s = synth_begin();
    add_bpe(&s, "gpt-2", false);
    expect_synth_error(&s, LOOM_ERR_FORMAT, "tokenizer.ggml.merges is missing");

    s = synth_begin(); /* a unigram charsmap whose trie runs past its end */
    OK(loom_gguf_writer_add_str(s.w, "tokenizer.ggml.model", "t5"));
    OK(loom_gguf_writer_add_arr_str(s.w, "tokenizer.ggml.tokens", BPE_TOKENS, 9));
    OK(loom_gguf_writer_add_arr(s.w, "tokenizer.ggml.precompiled_charsmap", LOOM_GGUF_U8, (uint8_t[]){8, 0, 0, 0, 1, 2}, 6));
    expect_synth_error(&s, LOOM_ERR_FORMAT, "tokenizer.ggml.precompiled_charsmap: its trie of 8 bytes does not fit");

    s = synth_begin();
    OK(loom_gguf_writer_add_str(s.w, "tokenizer.ggml.model", "rwkv"));
    expect_synth_error(&s, LOOM_ERR_UNSUPPORTED, "unsupported tokenizer model 'rwkv'");

    s = synth_begin();
    OK(loom_gguf_writer_add_str(s.w, "general.architecture", "llama"));
    expect_synth_error(&s, LOOM_ERR_FORMAT, "tokenizer.ggml.model is missing");

    s = synth_begin();
    OK(loom_gguf_writer_add_str(s.w, "tokenizer.ggml.model", "llama"));
    expect_synth_error(&s, LOOM_ERR_FORMAT, "tokenizer.ggml.tokens is missing");

    s = synth_begin();
    OK(loom_gguf_writer_add_str(s.w, "tokenizer.ggml.model", "llama"));
    OK(loom_gguf_writer_add_arr_str(s.w, "tokenizer.ggml.tokens", BPE_TOKENS, 9));
    OK(loom_gguf_writer_add_arr(s.w, "tokenizer.ggml.scores", LOOM_GGUF_F32, (float[]){0, 0, 0}, 3));
    expect_synth_error(&s, LOOM_ERR_FORMAT, "tokenizer.ggml.scores has 3 entries for 9 tokens");

    s = synth_begin();
    OK(loom_gguf_writer_add_str(s.w, "tokenizer.ggml.model", "llama"));
    OK(loom_gguf_writer_add_uint(s.w, "tokenizer.ggml.tokens", LOOM_GGUF_U32, 7));
    expect_synth_error(&s, LOOM_ERR_FORMAT, "tokenizer.ggml.tokens is not an array of strings");
}

/* A unigram charsmap of garbage (a header that fits, then random trie
 * entries and replacement bytes without a NUL): tokenizing reads only
 * inside it (ASan) and gives ids of the vocabulary. */
Test(synthetic, ugm_garbage_charsmap_stays_inside) {
    uint8_t map[4 + 256 + 40];
    uint32_t blob = 256, r = 12345;
    memcpy(map, &blob, 4);
    for (size_t i = 4; i < sizeof map; i++) r = r * 1103515245u + 12345u, map[i] = (uint8_t)(r >> 16) | 1;
    synth s = synth_begin();
    OK(loom_gguf_writer_add_str(s.w, "tokenizer.ggml.model", "t5"));
    OK(loom_gguf_writer_add_arr_str(s.w, "tokenizer.ggml.tokens", BPE_TOKENS, 9));
    OK(loom_gguf_writer_add_arr(s.w, "tokenizer.ggml.precompiled_charsmap", LOOM_GGUF_U8, map, sizeof map));
    loom_tokenizer *t = NULL;
    OK(synth_build(&s, &t));
    const char *texts[] = {"abc ab  c", "\xff\xfe abc\xc3", "\xe2\x96\x81\x61\tb\nc", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        loom_tokens v = {0};
        OK(loom_tokenize(t, texts[i], strlen(texts[i]), true, true, &v));
        for (size_t k = 0; k < v.n; k++) cr_assert(v.ids[k] >= 0 && v.ids[k] < 9, "id %d out of the vocabulary", v.ids[k]);
        loom_tokens_free(&v);
    }
    synth_end(&s, t);
}

/* Merges apply lowest rank first: "abc" merges b+c (rank 0) before a+b
 * (rank 1), leaving "a" "bc" — the rule "ab c" (rank 2) never gets its pair. */
Test(synthetic, bpe_rank_order) {
    synth s = synth_begin();
    add_bpe(&s, "gpt-2", true);
    OK(loom_gguf_writer_add_uint(s.w, "tokenizer.ggml.eos_token_id", LOOM_GGUF_U32, 8));
    loom_tokenizer *t;
    OK(synth_build(&s, &t));
    EXPECT_IDS(t, "abc", false, false, 0, 4);
    EXPECT_IDS(t, "ab", false, false, 3);
    EXPECT_IDS(t, " a", false, false, 7);
    EXPECT_IDS(t, "cab<|end|>", false, true, 2, 3, 8);
    expect_ids_at(t, "x", 1, false, false, NULL, 0, __LINE__); /* no token for the byte: dropped, as in llama.cpp */
    cr_assert(loom_tokenizer_is_eog(t, 8));
    cr_assert_eq(loom_tokenizer_bos(t), LOOM_TOKEN_NULL, "default BOS 11 is out of range");
    cr_assert_not(loom_tokenizer_adds_bos(t));
    loom_tokens v = {0};
    loom_status st = loom_tokenize(t, NULL, 3, false, false, &v);
    cr_assert_eq(loom_status_code(st), LOOM_ERR_INVALID);
    loom_status_free(st);
    synth_end(&s, t);
}

/* GLM-4.5's vocabulary: <|user|> ends a turn (the converter's EOT) and
 * <|observation|>, written after tool calls, ends the generation too. */
Test(synthetic, glm_observation_ends_a_generation) {
    static const char *const toks[] = {"a", "b", "<|endoftext|>", "<|user|>", "<|observation|>", "<tool_call>"};
    static const int32_t types[] = {1, 1, 3, 3, 3, 3};
    synth s = synth_begin();
    OK(loom_gguf_writer_add_str(s.w, "tokenizer.ggml.model", "gpt2"));
    OK(loom_gguf_writer_add_str(s.w, "tokenizer.ggml.pre", "glm4"));
    OK(loom_gguf_writer_add_arr_str(s.w, "tokenizer.ggml.tokens", toks, 6));
    OK(loom_gguf_writer_add_arr(s.w, "tokenizer.ggml.token_type", LOOM_GGUF_I32, types, 6));
    OK(loom_gguf_writer_add_arr_str(s.w, "tokenizer.ggml.merges", (const char *const[]){"a b"}, 1));
    OK(loom_gguf_writer_add_uint(s.w, "tokenizer.ggml.eos_token_id", LOOM_GGUF_U32, 2));
    OK(loom_gguf_writer_add_uint(s.w, "tokenizer.ggml.eot_token_id", LOOM_GGUF_U32, 3));
    loom_tokenizer *t;
    OK(synth_build(&s, &t));
    for (int id = 0; id < 6; id++)
        cr_assert_eq(loom_tokenizer_is_eog(t, id), id >= 2 && id <= 4, "is_eog(%d)", id);
    synth_end(&s, t);
}

/* SPM: the highest-scoring pair merges first; what no token covers falls back
 * to <0xXX> byte tokens; decoding gives the bytes back. */
Test(synthetic, spm_scores_and_byte_fallback) {
    const char *tokens[3 + 256 + 5];
    float scores[3 + 256 + 5];
    int32_t types[3 + 256 + 5];
    char bytes[256][8];
    tokens[0] = "<unk>", tokens[1] = "<s>", tokens[2] = "</s>";
    types[0] = 2, types[1] = 3, types[2] = 3;
    for (int i = 0; i < 256; i++) {
        snprintf(bytes[i], sizeof bytes[i], "<0x%02X>", i);
        tokens[3 + i] = bytes[i];
        types[3 + i] = 6;
    }
    const char *words[5] = {"▁", "a", "b", "▁a", "ab"};
    const float wscore[5] = {-1, -2, -3, -5, -4}; /* "ab" (-4) beats "▁a" (-5) */
    for (int i = 0; i < 5; i++) {
        tokens[259 + i] = words[i];
        types[259 + i] = 1;
    }
    for (int i = 0; i < 264; i++) scores[i] = i >= 259 ? wscore[i - 259] : 0;
    synth s = synth_begin();
    OK(loom_gguf_writer_add_str(s.w, "tokenizer.ggml.model", "llama"));
    OK(loom_gguf_writer_add_arr_str(s.w, "tokenizer.ggml.tokens", tokens, 264));
    OK(loom_gguf_writer_add_arr(s.w, "tokenizer.ggml.scores", LOOM_GGUF_F32, scores, 264));
    OK(loom_gguf_writer_add_arr(s.w, "tokenizer.ggml.token_type", LOOM_GGUF_I32, types, 264));
    loom_tokenizer *t;
    OK(synth_build(&s, &t));
    cr_assert(loom_tokenizer_adds_bos(t));
    /* "▁ab": ab merges first, then nothing joins "▁" + "ab" */
    EXPECT_IDS(t, "ab", true, false, 1, 259, 263);
    /* "é" has no token: its two bytes */
    EXPECT_IDS(t, "é", false, false, 259, 3 + 0xC3, 3 + 0xA9);
    loom_tokens v = {0};
    OK(loom_tokenize(t, "ab é", 5, true, false, &v));
    loom_strbuf out = {0};
    OK(loom_detokenize(t, v.ids, v.n, false, &out));
    cr_assert_str_eq(out.data, "ab é");
    loom_strbuf_free(&out);
    loom_tokens_free(&v);
    synth_end(&s, t);
}

/* ---- loom tokenize ---- */

/* Runs `loom <args>` through the shell; returns the exit status and the
 * combined stdout+stderr in out (malloc'd). */
static int run_loom(const char *args, char **out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", LOOM_BIN, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    loom_strbuf b = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) OK(loom_strbuf_append(&b, buf, n));
    OK(loom_strbuf_append(&b, "", 0));
    int st = pclose(p);
    *out = b.data;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void expect_cli(const char *args, int code, const char *want_substr) {
    char *out;
    int rc = run_loom(args, &out);
    cr_assert_eq(rc, code, "loom %s: exit %d (expected %d), output: %s", args, rc, code, out);
    cr_assert(strstr(out, want_substr), "loom %s: output '%s' lacks '%s'", args, out, want_substr);
    free(out);
}

Test(cli, tokenize_prints_ids) {
    need_file(DEFAULT_MODEL);
    expect_cli("tokenize --model " DEFAULT_MODEL " --text '<|im_start|>user\nHello 12345<|im_end|>'", 0,
               "1 4093 198 19556 216 33 34 35 36 37 2\n");
    expect_cli("tokenize --model " DEFAULT_MODEL " --text '<|im_start|>' --no-special", 0, "44 108 306 79 3738 108 46\n");
    expect_cli("tokenize --model " DEFAULT_MODEL " --text '12' --json", 0, "{\"tokens\": [33, 34]}\n");
    /* a vocabulary-only file; SPM adds BOS as its metadata says */
    expect_cli("tokenize --model " VOCAB_DIR "/ggml-vocab-llama-spm.gguf --text 'Hello world' --json", 0,
               "{\"tokens\": [1, 15043, 3186]}\n");
    expect_cli("tokenize --model " VOCAB_DIR "/ggml-vocab-llama-spm.gguf --text 'Hello world' --no-special", 0,
               "15043 3186\n");
    expect_cli("tokenize --model " DEFAULT_MODEL " --file " LOOM_TEST_DATA "/test_tokenizer.c --json", 0, "{\"tokens\": [");
    expect_cli("tokenize --help", 0, "--no-special");
}

Test(cli, tokenize_bad_input) {
    expect_cli("tokenize --model " DEFAULT_MODEL, 2, "give exactly one of --text TEXT or --file PATH");
    expect_cli("tokenize --model " DEFAULT_MODEL " --text a --file /dev/null", 2, "give exactly one of");
    expect_cli("tokenize --text a", 2, "--model PATH is required");
    expect_cli("tokenize --model " DEFAULT_MODEL " --text a --bogus", 2, "unknown option '--bogus'");
    expect_cli("tokenize --model /nonexistent.gguf --text a", 1, "/nonexistent.gguf");
    expect_cli("tokenize --model " LOOM_TEST_DATA "/CMakeLists.txt --text a", 1, "expected 'GGUF'");
    expect_cli("tokenize --model " DEFAULT_MODEL " --file /nonexistent.txt", 1, "cannot open /nonexistent.txt");
}
