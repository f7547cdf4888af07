/*
 * libFuzzer target: the Jinja parser and renderer, which run chat templates
 * taken from model files (untrusted text) on messages taken from requests.
 * Any input must parse or fail with an error, and render or fail with an
 * error within the limits, never crash, hang or read out of bounds.
 *
 * Input: template bytes, optionally followed by a NUL byte and JSON that
 * replaces the messages. The seeds in tests/fuzz/jinja/ are small chat
 * templates and templates that use each feature (whitespace control,
 * loops, macros, call blocks, filters, tests, namespace, slicing, tojson).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char MESSAGES[] =
    "[{\"role\": \"system\", \"content\": \"You are helpful.\"},"
    " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Hi <b> \\u00e9\"}]},"
    " {\"role\": \"assistant\", \"content\": \"\", \"reasoning_content\": \"hmm\", \"tool_calls\": [{\"id\": \"c1\","
    " \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1.5, \"y\": [true, null]}}}]},"
    " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"42\"},"
    " {\"role\": \"user\", \"content\": \"  bye  \"}]";
static const char TOOLS[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"d\", \"parameters\":"
    " {\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"number\"}}, \"required\": [\"x\"]}}}]";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *src = (const char *)data;
    size_t n = size;
    const char *json = MESSAGES;
    size_t json_n = sizeof MESSAGES - 1;
    const char *nul = memchr(src, 0, size);
    if (nul) {
        n = (size_t)(nul - src);
        json = nul + 1;
        json_n = size - n - 1;
    }
    loom_jinja_template *t = NULL;
    loom_status st = loom_jinja_parse(src, n, "fuzz", &t);
    if (st) {
        loom_status_free(st);
        return 0;
    }
    loom_jinja_vars *v = NULL;
    if (loom_jinja_vars_create(&v)) abort();
    st = loom_jinja_vars_set_messages(v, json, json_n, json_n & 1); /* both ways of taking content lists */
    loom_status_free(st);
    if (loom_jinja_vars_set_json(v, "tools", TOOLS, sizeof TOOLS - 1) || loom_jinja_vars_set_bool(v, "add_generation_prompt", true) ||
        loom_jinja_vars_set_str(v, "bos_token", "<s>", 3) || loom_jinja_vars_set_none(v, "documents"))
        abort();
    /* small limits keep each run short */
    loom_jinja_limits lim = loom_jinja_limits_default();
    lim.max_depth = 16;
    lim.max_steps = 20000;
    lim.max_output = 1 << 16;
    lim.max_memory = 8 << 20;
    lim.now = "2025-03-07T09:05:03";
    loom_strbuf out = {0};
    st = loom_jinja_render(t, v, &lim, &out);
    if (!st && out.len > lim.max_output) abort();
    loom_status_free(st);
    loom_strbuf_free(&out);
    loom_jinja_vars_free(v);
    loom_jinja_free(t);
    return 0;
}
