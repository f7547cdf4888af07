/*
 * launch/cmd_tokenize.c — `loom tokenize`: prints the token ids of a text.
 *
 * Reads only the tokenizer metadata of the GGUF (vocabulary-only files work).
 * Special tokens written in the text are parsed (as llama.cpp and Hugging
 * Face tokenizers do) unless --no-parse-special; BOS/EOS are added as the
 * model says unless --no-special, which also leaves special-token text as
 * plain text. Output: one line of space-separated ids, or {"tokens": [...]}
 * with --json.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/args.h"
#include "launch/commands.h"
#include "runtime/gguf.h"
#include "launch/launch_util.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/utf8.h"

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL;
    bool no_special = false, no_parse_special = false, json = false, pieces = false;
    const loom_arg args[] = {
        {"--model", LOOM_ARG_STR, &model, "PATH", "GGUF file with tokenizer metadata (tensors not needed)"},
        {"--text", LOOM_ARG_STR, &text, "TEXT", "the text to tokenize"},
        {"--file", LOOM_ARG_STR, &file, "PATH", "read the text from a file instead (bytes as they are)"},
        {"--no-special", LOOM_ARG_FLAG, &no_special, NULL,
         "add no BOS/EOS and treat special-token text (e.g. <|im_start|>) as plain text"},
        {"--no-parse-special", LOOM_ARG_FLAG, &no_parse_special, NULL,
         "treat special-token text as plain text (BOS/EOS still added as the model says)"},
        {"--json", LOOM_ARG_FLAG, &json, NULL, "print {\"tokens\": [...]} instead of a line of ids"},
        {"--pieces", LOOM_ARG_FLAG, &pieces, NULL,
         "with --json, also each token's text (\"pieces\"; part of a character shows as U+FFFD)"},
    };
    const char *synopsis =
        "tokenize --model PATH (--text TEXT | --file PATH) [--no-special] [--no-parse-special] [--json]";
    const char *about =
        "Prints the token ids of a text: one line of space-separated ids, or a JSON\n"
        "object with --json. Special tokens in the text are parsed and BOS/EOS added\n"
        "as the model's metadata says, unless --no-special (or --no-parse-special: text only).";
    switch (loom_args_parse(synopsis, about, args, (int)(sizeof args / sizeof args[0]), argc, argv)) {
    case LOOM_ARGS_HELP: return 0;
    case LOOM_ARGS_ERROR: return 2;
    case LOOM_ARGS_OK: break;
    }
    if (!model) return loom_usage_error("tokenize: --model PATH is required");
    if (!text == !file) return loom_usage_error("tokenize: give exactly one of --text TEXT or --file PATH");
    if (pieces && !json) return loom_usage_error("tokenize: --pieces needs --json");

    loom_strbuf input = {0};
    const char *s = text;
    size_t len = text ? strlen(text) : 0;
    if (file) {
        loom_status st = loom_read_file(file, &input);
        if (st) return loom_fail("tokenize", st);
        s = input.data;
        len = input.len;
    }

    loom_gguf *g = NULL;
    loom_tokenizer *tok = NULL;
    loom_tokens ids = {0};
    loom_strbuf out = {0};
    loom_status st = loom_gguf_open(model, &g);
    if (!st) st = loom_tokenizer_create(g, &tok);
    if (!st) st = loom_tokenize(tok, s, len, !no_special, !no_special && !no_parse_special, &ids);
    if (!st && json) {
        st = loom_strbuf_append(&out, "{\"tokens\": [", 12);
        for (size_t i = 0; !st && i < ids.n; i++) {
            char num[16];
            int n = snprintf(num, sizeof num, "%s%" PRId32, i ? ", " : "", ids.ids[i]);
            st = loom_strbuf_append(&out, num, (size_t)n);
        }
        if (!st) st = loom_strbuf_append(&out, "]", 1);
        if (!st && pieces) {
            st = loom_strbuf_append(&out, ", \"pieces\": [", 13);
            for (size_t i = 0; !st && i < ids.n; i++) {
                size_t pn;
                const char *p = loom_token_piece(tok, ids.ids[i], true, &pn);
                if (i) st = loom_strbuf_append(&out, ", ", 2);
                if (!st) st = loom_json_escape(p, pn, &out);
            }
            if (!st) st = loom_strbuf_append(&out, "]", 1);
        }
        if (!st) st = loom_strbuf_append(&out, "}\n", 2);
    } else if (!st) {
        for (size_t i = 0; !st && i < ids.n; i++) {
            char num[16];
            int n = snprintf(num, sizeof num, "%s%" PRId32, i ? " " : "", ids.ids[i]);
            st = loom_strbuf_append(&out, num, (size_t)n);
        }
        if (!st) st = loom_strbuf_append(&out, "\n", 1);
    }
    int rc = 0;
    if (st) {
        rc = loom_fail("tokenize", st);
    } else if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
        fprintf(stderr, "loom tokenize: cannot write to stdout\n");
        rc = 1;
    }
    loom_strbuf_free(&out);
    loom_tokens_free(&ids);
    loom_tokenizer_free(tok);
    loom_gguf_free(g);
    loom_strbuf_free(&input);
    return rc;
}
