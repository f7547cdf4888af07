/*
 * libFuzzer target: what `loom serve` reads from outside — request bodies
 * (launch/serve/openai.h), and the model's streamed text that the reply
 * parsers split (tool calls in every syntax, harmony, reasoning blocks,
 * stop strings): a prompt can make a model write anything.
 *
 * A request body must parse or fail with a 4xx whose error renders as
 * JSON. A parser fed text must release valid UTF-8 and give the same
 * content, reasoning and calls whether the text comes in one piece or in
 * pieces cut anywhere between characters (as tokens cut it).
 *
 * Input: byte 0 picks the target (mod 10): 0 chat (a Responses API body
 * where byte 1 bit 0 is set: translated, then parsed as chat) and 1
 * completions requests (a Messages API body where bit 0 is set, a
 * llama-server /completion body where bit 1 is); 2-6 tool calls (Hermes, Llama 3, GLM, DeepSeek, Kimi — Mistral
 * instead of Kimi and Qwen3-Coder's XML instead of GLM where byte 1 bit 5 is set; byte 1 bit 7: tool_choice forces
 * calls, bit 6: a named function); 7 harmony
 * (byte 1 bit 0: calls parsed, bit 1: raw reasoning); 8 reasoning (bit 0:
 * the prompt opened the block; bits 1-7 mod 3: <think>, [THINK] or
 * <|START_THINKING|> tags); 9 stop strings (the text before the first
 * two 0x01 bytes, if non-empty). Byte 1 also seeds where the pieces are
 * cut; the rest is the body or the text. Only valid UTF-8 reaches the
 * parsers (the server's text and a request's stop strings are). Seeds:
 * tests/fuzz/serve/.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/serve/anthropic.h"
#include "launch/serve/harmony.h"
#include "launch/serve/native.h"
#include "launch/serve/openai.h"
#include "launch/serve/reasoning.h"
#include "launch/serve/responses.h"
#include "launch/serve/stop.h"
#include "launch/serve/tools.h"
#include "runtime/text/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OK(x)                                                                                                          \
    do {                                                                                                               \
        loom_status st_ = (x);                                                                                         \
        if (st_) abort(); /* the only error is out of memory */                                                        \
    } while (0)

/* A refusal: a 4xx whose error renders as OpenAI's envelope (and as
 * Anthropic's). */
static void refused(const srv_error *e) {
    if (e->status < 400 || e->status > 499 || !e->message[0] || !e->type) abort();
    char *s = srv_error_json(e);
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    if (!j || !json_is_object(json_object_get(j, "error"))) abort();
    json_decref(j);
    free(s);
    s = srv_anthropic_error_json(e);
    j = s ? json_loads(s, 0, NULL) : NULL;
    if (!j || !json_is_object(json_object_get(j, "error"))) abort();
    json_decref(j);
    free(s);
}

static void request(srv_kind kind, const char *body, size_t n) {
    srv_params p;
    srv_error e;
    memset(&e, 0, sizeof e);
    if (srv_parse_request(kind, body, n, 42, &p, &e)) {
        srv_params_free(&p);
        return;
    }
    refused(&e);
}

/* A Responses API body: translated into a chat body that parses or is
 * refused, or refused itself. */
static void responses_request(const char *body, size_t n) {
    char *chat = NULL;
    json_t *req = NULL;
    srv_error e;
    memset(&e, 0, sizeof e);
    if (!srv_responses_request(body, n, &chat, &req, &e)) {
        refused(&e);
        return;
    }
    if (!chat || !json_is_object(req)) abort();
    request(SRV_CHAT, chat, strlen(chat));
    free(chat);
    json_decref(req);
}

/* A Messages API body, likewise. */
static void anthropic_request(const char *body, size_t n) {
    char *chat = NULL;
    srv_error e;
    memset(&e, 0, sizeof e);
    if (!srv_anthropic_request(body, n, n % 2, &chat, &e)) {
        refused(&e);
        return;
    }
    if (!chat) abort();
    request(SRV_CHAT, chat, strlen(chat));
    free(chat);
}

/* A llama-server /completion body (native.h), likewise; and its n_indent
 * cut over the same bytes as text: an offset inside it, or none. */
static void native_request(const char *body, size_t n) {
    char *oai = NULL;
    srv_native nat;
    srv_error e;
    memset(&e, 0, sizeof e);
    if (!srv_native_request(NULL, 4096, body, n, false, &oai, &nat, &e)) {
        refused(&e);
    } else {
        if (!oai || !nat.settings) abort();
        request(SRV_COMPLETION, oai, strlen(oai));
        json_t *r = srv_native_fields(&nat, json_pack("{s:s, s:{s:i}, s:O}", "content", "x", "timings", "prompt_n", 1,
                                                      "generation_settings", nat.settings));
        if (!json_is_object(r)) abort();
        json_decref(r);
        free(oai);
        srv_native_free(&nat);
    }
    bool line_start = false;
    int indent = 0;
    const long cut = srv_native_indent_cut(body, n, 4, &line_start, &indent);
    if (cut < -1 || cut >= (long)n || (cut > 0 && body[cut - 1] != '\n' && body[cut - 1] != ' ' && body[cut - 1] != '\t'))
        abort();
}

/* The parsers' outputs of one run. */
typedef struct {
    loom_strbuf content, reasoning;
    char *calls; /* the calls as compact JSON, or NULL */
} result;

static void result_free(result *r) {
    loom_strbuf_free(&r->content);
    loom_strbuf_free(&r->reasoning);
    free(r->calls);
}

/* b's bytes to stderr, a byte outside printable ASCII as \xHH. */
static void show(const loom_strbuf *b) {
    for (size_t i = 0; i < b->len; i++) {
        const unsigned char c = (unsigned char)b->data[i];
        if (c >= 0x20 && c < 0x7f) fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
}

static bool same_text(const loom_strbuf *a, const loom_strbuf *b) {
    return a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
}

static bool same(const result *a, const result *b) {
    return same_text(&a->content, &b->content) && same_text(&a->reasoning, &b->reasoning) && !a->calls == !b->calls &&
           (!a->calls || !strcmp(a->calls, b->calls));
}

/* Runs parser `mode` over text[0..n), in pieces cut at characters by
 * `cuts` (0: one piece). */
static void run(int mode, uint8_t flags, char *const *stops, int n_stops, const char *text, size_t n, uint32_t cuts,
                result *r) {
    memset(r, 0, sizeof *r);
    srv_tools t;
    srv_harmony h;
    srv_reasoning rs;
    srv_stop sp;
    static const loom_tool_syntax syntax[] = {LOOM_TOOLS_HERMES, LOOM_TOOLS_LLAMA3, LOOM_TOOLS_GLM,
                                              LOOM_TOOLS_DEEPSEEK, LOOM_TOOLS_KIMI};
    if (mode <= 6) {
        const loom_tool_syntax ts = mode == 6 && (flags & 0x20)   ? LOOM_TOOLS_MISTRAL
                                    : mode == 4 && (flags & 0x20) ? LOOM_TOOLS_XML
                                                                  : syntax[mode - 2];
        if (!srv_tools_init(&t, ts, 7, NULL)) abort();
        if (flags & 0x80) srv_tools_force(&t, flags & 0x40 ? "get_weather" : NULL);
    } else if (mode == 7) {
        if (!srv_harmony_init(&h, flags & 1, flags & 2, 7)) abort();
    } else if (mode == 8) {
        static const loom_think_tags tags[3] = {
            {"<think>", "</think>"}, {"[THINK]", "[/THINK]"}, {"<|START_THINKING|>", "<|END_THINKING|>"}};
        srv_reasoning_init(&rs, &tags[(flags >> 1) % 3], flags & 1);
    } else {
        srv_stop_init(&sp, stops, n_stops);
    }
    uint32_t x = cuts * 2654435761u + 1;
    for (size_t i = 0; i < n;) {
        size_t k = n - i;
        if (cuts) { /* 1-8 bytes, then on to the end of the character */
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            k = 1 + x % 8;
            if (k > n - i) k = n - i;
            while (i + k < n && ((unsigned char)text[i + k] & 0xC0) == 0x80) k++;
        }
        if (mode <= 6) OK(srv_tools_push(&t, text + i, k, &r->content));
        else if (mode == 7) OK(srv_harmony_push(&h, text + i, k, &r->reasoning, &r->content));
        else if (mode == 8) OK(srv_reasoning_push(&rs, text + i, k, &r->reasoning, &r->content));
        else OK(srv_stop_push(&sp, text + i, k, &r->content));
        i += k;
    }
    json_t *calls = NULL;
    if (mode <= 6) {
        OK(srv_tools_flush(&t, &r->content));
        calls = t.calls;
    } else if (mode == 7) {
        OK(srv_harmony_flush(&h, &r->reasoning, &r->content));
        calls = h.calls;
    } else if (mode == 8) OK(srv_reasoning_flush(&rs, &r->reasoning, &r->content));
    else OK(srv_stop_flush(&sp, &r->content));
    if (calls && json_array_size(calls)) r->calls = json_dumps(calls, JSON_COMPACT | JSON_SORT_KEYS);
    if (mode <= 6) srv_tools_free(&t);
    else if (mode == 7) srv_harmony_free(&h);
    else if (mode == 8) srv_reasoning_free(&rs);
    else srv_stop_free(&sp);
    if (!loom_utf8_valid(r->content.data ? r->content.data : "", r->content.len) ||
        !loom_utf8_valid(r->reasoning.data ? r->reasoning.data : "", r->reasoning.len))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const int mode = data[0] % 10;
    const uint8_t flags = data[1];
    const char *text = (const char *)data + 2;
    size_t n = size - 2;
    if (mode == 0 && (flags & 1)) {
        responses_request(text, n);
        return 0;
    }
    if (mode == 1 && (flags & 1)) {
        anthropic_request(text, n);
        return 0;
    }
    if (mode == 1 && (flags & 2)) {
        native_request(text, n);
        return 0;
    }
    if (mode <= 1) {
        request(mode == 0 ? SRV_CHAT : SRV_COMPLETION, text, n);
        return 0;
    }
    char *stops[2] = {NULL, NULL};
    int n_stops = 0;
    if (mode == 9) /* up to two stop strings, each ended by 0x01 */
        for (int s = 0; s < 2; s++) {
            const char *e = memchr(text, 1, n);
            if (!e) break;
            if (e > text) {
                stops[n_stops] = strndup(text, (size_t)(e - text));
                if (!stops[n_stops++]) abort();
            }
            n -= (size_t)(e - text) + 1, text = e + 1;
        }
    bool valid = loom_utf8_valid(text, n); /* the model's text is whole characters, as the server passes it, */
    for (int i = 0; i < n_stops; i++) valid = valid && loom_utf8_valid(stops[i], strlen(stops[i])); /* stops JSON's */
    if (valid) {
        result whole, pieces;
        run(mode, flags, stops, n_stops, text, n, 0, &whole);
        run(mode, flags, stops, n_stops, text, n, (uint32_t)flags + 1, &pieces);
        if (!same(&whole, &pieces)) {
            fprintf(stderr, "mode %d flags 0x%02x: one piece and pieces differ\n", mode, flags);
            const result *r[2] = {&whole, &pieces};
            for (int i = 0; i < 2; i++) {
                fprintf(stderr, "%s:\n  content ", i ? "pieces" : "whole");
                show(&r[i]->content);
                fprintf(stderr, "\n  reasoning ");
                show(&r[i]->reasoning);
                fprintf(stderr, "\n  calls %s\n", r[i]->calls ? r[i]->calls : "none");
            }
            abort();
        }
        result_free(&whole);
        result_free(&pieces);
    }
    for (int s = 0; s < n_stops; s++) free(stops[s]);
    return 0;
}
