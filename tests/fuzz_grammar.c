/*
 * libFuzzer target: GBNF grammars (runtime/text/grammar.h), which come
 * from requests (llama-server's grammar, vLLM's guided_grammar:
 * untrusted), and their matcher. Any text must compile or fail with an
 * error; any bytes fed to a compiled grammar must be taken or refused the
 * same in one piece and byte by byte, fits() must agree with feed(), and
 * nothing may crash, hang or read out of bounds.
 *
 * Input: grammar text (a regular expression where it begins "re:"),
 * optionally followed by a NUL byte and the bytes to feed (without: the
 * grammar's own text). Seeds: tests/fuzz/grammar/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *src = (const char *)data, *doc = src;
    size_t n = size, doc_n = size;
    const char *nul = memchr(src, 0, size);
    if (nul) {
        n = (size_t)(nul - src);
        doc = nul + 1;
        doc_n = size - n - 1;
    }
    loom_grammar *g = NULL;
    const bool re = n >= 3 && !memcmp(src, "re:", 3);
    loom_status st = re ? loom_grammar_compile_regex(src + 3, n - 3, &g) : loom_grammar_compile(src, n, &g);
    if (st) {
        loom_status_free(st);
        if (g) abort();
        return 0;
    }
    loom_grammar_matcher *whole, *bytes;
    if (loom_grammar_matcher_create(g, &whole) || loom_grammar_matcher_create(g, &bytes)) abort();
    const bool fits = loom_grammar_matcher_fits(whole, doc, doc_n);
    const bool a = loom_grammar_matcher_feed(whole, doc, doc_n);
    bool b = true;
    for (size_t i = 0; i < doc_n && b; i++) b = loom_grammar_matcher_feed(bytes, doc + i, 1);
    if (a != fits || a != b || (a && loom_grammar_matcher_complete(whole) != loom_grammar_matcher_complete(bytes)))
        abort();
    loom_grammar_matcher_free(whole);
    loom_grammar_matcher_free(bytes);
    loom_grammar_free(g);
    return 0;
}
