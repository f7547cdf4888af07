/*
 * libFuzzer target: JSON schemas (runtime/text/json_schema.h), which come
 * from requests (response_format json_schema: untrusted), and the automaton
 * they compile to. Any schema must compile or fail with an error; any
 * bytes fed to a compiled one must be taken or refused, in one piece or
 * byte by byte alike, never crash, hang or read out of bounds.
 *
 * Input: schema text, optionally followed by a NUL byte and document bytes
 * (without: the schema's own text is fed as the document). The seeds in
 * tests/fuzz/json_schema/ are schemas as Pydantic and OpenAI write them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/json_schema.h"

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
    loom_json_schema *s = NULL;
    loom_status st = loom_json_schema_compile(src, n, &s);
    if (st) {
        loom_status_free(st);
        if (s) abort();
        return 0;
    }
    loom_json_state *whole = malloc(sizeof *whole), *bytes = malloc(sizeof *bytes);
    if (!whole || !bytes) abort();
    loom_json_init(whole, s);
    loom_json_init(bytes, s);
    const bool a = loom_json_feed(whole, doc, doc_n);
    bool b = true;
    for (size_t i = 0; i < doc_n && b; i++) b = loom_json_feed(bytes, doc + i, 1);
    if (a != b || (a && loom_json_complete(whole) != loom_json_complete(bytes))) abort();
    free(whole);
    free(bytes);
    loom_json_schema_free(s);
    return 0;
}
