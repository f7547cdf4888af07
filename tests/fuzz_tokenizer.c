#define _GNU_SOURCE /* memmem */
/*
 * libFuzzer target: tokenizers, the streaming UTF-8 decoder and the JSON
 * escaper on arbitrary bytes. Uses five real vocabularies from the cache
 * (launch/fetch-model.sh --vocab): byte-level BPE with the smollm split
 * sequence (the default model), GPT-2, SentencePiece (llama-spm),
 * WordPiece (bert-bge) and SentencePiece unigram (XLM-R's, nomic-bert-moe;
 * the last two normalise, so they have no round trip).
 * Checks: tokenizing never fails or yields an id out of range; for valid
 * UTF-8 without special-token parsing, decode(encode(s)) == s (except a
 * literal U+2581 "▁" under SentencePiece, which stands for a space there
 * by definition, control bytes other than tab and newlines, and any byte
 * the vocabulary has no single-byte token for — SmolLM2's lacks 0x1D, 0xF1,
 * 0xF2 and others, and drops them exactly as llama.cpp does); the streamed
 * detokenization, cut at arbitrary points, is valid UTF-8; the JSON escape
 * holds no raw control characters.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/gguf.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/utf8.h"

#define N_TOK 5
static loom_tokenizer *toks[N_TOK];
static loom_gguf *files[N_TOK];
static bool byte_ok[N_TOK][256]; /* the byte alone has a token: every text of such bytes round-trips */

/* Whether tokenizer t can spell byte b on its own: byte-level BPE through
 * GPT-2's byte-to-character map (cp: printable Latin-1 bytes stand for
 * themselves, the others for U+0100 + their rank), SentencePiece through
 * its <0xXX> byte-fallback tokens. */
static bool spells_byte(const loom_tokenizer *t, int b, int cp) {
    char s[8];
    if (!strcmp(loom_tokenizer_model(t), "llama")) {
        snprintf(s, sizeof s, "<0x%02X>", b);
        return loom_token_lookup(t, s, 6) != LOOM_TOKEN_NULL;
    }
    size_t n = 0;
    if (cp < 0x80) s[n++] = (char)cp;
    else s[n++] = (char)(0xC0 | (cp >> 6)), s[n++] = (char)(0x80 | (cp & 0x3F));
    return loom_token_lookup(t, s, n) != LOOM_TOKEN_NULL || loom_token_lookup(t, (char[]){(char)b}, 1) != LOOM_TOKEN_NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *paths[N_TOK] = {LOOM_CACHE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                                LOOM_CACHE_DIR "/vocab/ggml-vocab-gpt-2.gguf",
                                LOOM_CACHE_DIR "/vocab/ggml-vocab-llama-spm.gguf",
                                LOOM_CACHE_DIR "/vocab/ggml-vocab-bert-bge.gguf",
                                LOOM_CACHE_DIR "/vocab/ggml-vocab-nomic-bert-moe.gguf"};
    for (int i = 0; i < N_TOK; i++) {
        loom_status st = loom_gguf_open(paths[i], &files[i]);
        if (!st) st = loom_tokenizer_create(files[i], &toks[i]);
        if (st) {
            fprintf(stderr, "fuzz_tokenizer: %s (run launch/fetch-model.sh --vocab)\n", loom_status_message(st));
            exit(1);
        }
        for (int b = 0, next = 256; b < 256; b++) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            byte_ok[i][b] = spells_byte(toks[i], b, printable ? b : next++);
        }
    }
    return 0;
}

static void check_stream(const loom_tokenizer *t, const loom_tokens *ids, size_t cut) {
    loom_utf8_stream s;
    loom_utf8_stream_init(&s);
    loom_strbuf out = {0};
    for (size_t i = 0; i < ids->n; i++) {
        size_t len;
        const char *p = loom_token_piece(t, ids->ids[i], i % 2 == 0, &len);
        size_t a = len ? cut % len : 0; /* push each piece in two parts */
        if (loom_utf8_stream_push(&s, p, a, &out) || loom_utf8_stream_push(&s, p + a, len - a, &out)) abort();
    }
    if (loom_utf8_stream_flush(&s, &out)) abort();
    if (out.len && !loom_utf8_valid(out.data, out.len)) abort();
    loom_strbuf js = {0};
    if (loom_json_escape(out.data ? out.data : "", out.len, &js)) abort();
    for (size_t i = 0; i < js.len; i++)
        if ((unsigned char)js.data[i] < 0x20) abort();
    loom_strbuf_free(&js);
    loom_strbuf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    bool valid = loom_utf8_valid(text, size);
    for (size_t i = 0; i < size && valid; i++)
        if (data[i] < 0x20 && data[i] != '\t' && data[i] != '\n' && data[i] != '\r') valid = false;
    for (int i = 0; i < N_TOK; i++) {
        const loom_tokenizer *t = toks[i];
        loom_tokens ids = {0};
        bool special = size > 0 && (data[0] & 1);
        if (loom_tokenize(t, text, size, special, special, &ids)) abort();
        for (size_t k = 0; k < ids.n; k++)
            if (ids.ids[k] < 0 || ids.ids[k] >= loom_tokenizer_n_vocab(t)) abort();
        check_stream(t, &ids, size);
        loom_tokens_free(&ids);
        bool spm_space = !strcmp(loom_tokenizer_model(t), "llama") && memmem(text, size, "\xe2\x96\x81", 3);
        bool spelled = true;
        for (size_t k = 0; k < size && spelled; k++) spelled = byte_ok[i][data[k]];
        /* WordPiece lowercases, strips accents, drops spaces; unigram's charsmap is NFKC and merges spaces */
        bool normalises = !strcmp(loom_tokenizer_model(t), "bert") || !strcmp(loom_tokenizer_model(t), "t5");
        if (valid && spelled && !spm_space && !normalises) {
            loom_tokens plain = {0};
            loom_strbuf back = {0};
            if (loom_tokenize(t, text, size, false, false, &plain)) abort();
            if (loom_detokenize(t, plain.ids, plain.n, false, &back)) abort();
            if (back.len != size || (size && memcmp(back.data, text, size) != 0)) {
                fprintf(stderr, "round trip differs with tokenizer %d (%s)\n", i, loom_tokenizer_pre(t));
                abort();
            }
            loom_strbuf_free(&back);
            loom_tokens_free(&plain);
        }
    }
    return 0;
}
