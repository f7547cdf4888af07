/*
 * launch/serve/tools.c — Hermes-style tool calls out of streamed text
 * (contract in tools.h).
 */
#define _GNU_SOURCE /* memmem */
#include "launch/serve/tools.h"

#include <stdio.h>
#include <string.h>

static const char OPEN[] = "<tool_call>", CLOSE[] = "</tool_call>";
#define OPEN_N (sizeof OPEN - 1)
#define CLOSE_N (sizeof CLOSE - 1)

bool srv_tools_init(srv_tools *t, loom_tool_syntax syntax, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->syntax = syntax;
    t->id_state = seed;
    t->calls = json_array();
    return t->calls != NULL;
}

void srv_tools_free(srv_tools *t) {
    loom_strbuf_free(&t->held);
    loom_strbuf_free(&t->ws);
    loom_strbuf_free(&t->body);
    json_decref(t->calls);
    t->calls = NULL;
}

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/* Content outside the blocks: released up to its last non-whitespace
 * character (with the whitespace held before it); a trailing run of
 * whitespace waits in t->ws for what follows. Whitespace right after a
 * call is dropped. */
static loom_status outside(srv_tools *t, const char *s, size_t n, loom_strbuf *out) {
    size_t start = 0, end = n;
    if (t->after_call)
        while (start < n && is_ws(s[start])) start++;
    while (end > start && is_ws(s[end - 1])) end--;
    if (end > start) {
        if (!t->after_call) LOOM_TRY(loom_strbuf_append(out, t->ws.data, t->ws.len));
        loom_strbuf_clear(&t->ws);
        t->after_call = false;
        LOOM_TRY(loom_strbuf_append(out, s + start, end - start));
    }
    return t->after_call ? NULL : loom_strbuf_append(&t->ws, s + end, n - end);
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

json_t *srv_tool_call_new(uint64_t *id_state, const char *name, size_t name_len, const char *args, size_t args_len) {
    char id[32];
    const uint64_t a = splitmix64(id_state), b = splitmix64(id_state);
    snprintf(id, sizeof id, "call_%016llx%08llx", (unsigned long long)a, (unsigned long long)(b >> 32));
    return json_pack("{s:s, s:s, s:{s:s%, s:s%}}", "id", id, "type", "function", "function", "name", name, name_len,
                     "arguments", args, args_len);
}

/* The call object o names ({"name": string, "arguments" or "parameters":
 * an object or a string}), or NULL. */
static json_t *call_from(srv_tools *t, json_t *o) {
    json_t *name = json_object_get(o, "name"), *args = json_object_get(o, "arguments");
    if (!args) args = json_object_get(o, "parameters");
    char *text = NULL;
    if (json_is_object(o) && json_is_string(name) && json_string_length(name) > 0) {
        if (!args) text = strdup("{}");
        else if (json_is_object(args)) text = json_dumps(args, JSON_COMPACT);
        else if (json_is_string(args)) text = strndup(json_string_value(args), json_string_length(args));
    }
    json_t *call = text ? srv_tool_call_new(&t->id_state, json_string_value(name), json_string_length(name), text,
                                            strlen(text))
                        : NULL;
    free(text);
    return call;
}

/* The call a block's body names, or NULL (not a call). */
static json_t *call_of(srv_tools *t, const char *body, size_t len) {
    json_t *o = json_loadb(body, len, 0, NULL);
    json_t *call = call_from(t, o);
    json_decref(o);
    return call;
}

/* Llama 3: the held reply as calls — objects separated by ';' or
 * whitespace, every one a call — into t->calls; false (nothing added) when
 * it is not. */
static bool llama3_calls(srv_tools *t, const char *s, size_t n) {
    json_t *calls = json_array();
    size_t at = 0;
    bool ok = calls != NULL;
    while (ok) {
        while (at < n && (is_ws(s[at]) || s[at] == ';')) at++;
        if (at == n) break;
        json_error_t e;
        json_t *o = json_loadb(s + at, n - at, JSON_DISABLE_EOF_CHECK, &e);
        json_t *call = call_from(t, o);
        json_decref(o);
        ok = call && !json_array_append_new(calls, call);
        at += ok ? (size_t)e.position : 0;
    }
    ok = ok && json_array_size(calls) && !json_array_extend(t->calls, calls);
    json_decref(calls);
    return ok;
}

/* A block ends (closed: by its tag; else the text ended inside it). */
static loom_status end_block(srv_tools *t, bool closed, loom_strbuf *out) {
    json_t *call = call_of(t, t->body.data ? t->body.data : "", t->body.len);
    loom_status st = NULL;
    if (call) {
        loom_strbuf_clear(&t->ws); /* whitespace around calls is dropped */
        t->after_call = true;
        if (json_array_append_new(t->calls, call)) st = loom_error(LOOM_ERR_NOMEM, "tool calls: out of memory");
    } else { /* not a call: the block stays content, as written */
        st = outside(t, OPEN, OPEN_N, out);
        if (!st) st = outside(t, t->body.data, t->body.len, out);
        if (!st && closed) st = outside(t, CLOSE, CLOSE_N, out);
    }
    loom_strbuf_clear(&t->body);
    t->inside = false;
    return st;
}

/* Length of the longest tail of s[0..n) that is a proper prefix of OPEN. */
static size_t open_tail(const char *s, size_t n) {
    for (size_t l = OPEN_N - 1 < n ? OPEN_N - 1 : n; l > 0; l--)
        if (!memcmp(s + n - l, OPEN, l)) return l;
    return 0;
}

/* Llama 3: until the first non-blank character, whitespace waits; a '{'
 * holds the whole reply, anything else makes it content. */
static loom_status llama3_push(srv_tools *t, const char *text, size_t len, loom_strbuf *out) {
    if (t->inside) return loom_strbuf_append(&t->body, text, len);
    if (t->decided) return loom_strbuf_append(out, text, len);
    size_t i = 0;
    while (i < len && is_ws(text[i])) i++;
    LOOM_TRY(loom_strbuf_append(&t->ws, text, i));
    if (i == len) return NULL;
    t->decided = true;
    t->inside = text[i] == '{';
    loom_strbuf *to = t->inside ? &t->body : out;
    LOOM_TRY(loom_strbuf_append(to, t->ws.data, t->ws.len));
    loom_strbuf_clear(&t->ws);
    return loom_strbuf_append(to, text + i, len - i);
}

static loom_status llama3_flush(srv_tools *t, loom_strbuf *out) {
    loom_status st = NULL;
    if (t->inside && !llama3_calls(t, t->body.data, t->body.len)) st = loom_strbuf_append(out, t->body.data, t->body.len);
    if (!st && !t->decided) st = loom_strbuf_append(out, t->ws.data, t->ws.len);
    loom_strbuf_clear(&t->body);
    loom_strbuf_clear(&t->ws);
    t->inside = false, t->decided = true;
    return st;
}

void srv_tools_force(srv_tools *t, const char *name) {
    t->force_name = name;
    t->force_list = !name;
}

/* A forced reply at its end: the calls, or (cut short) content. */
static loom_status forced_flush(srv_tools *t, loom_strbuf *out) {
    json_t *o = json_loadb(t->body.data ? t->body.data : "", t->body.len, 0, NULL), *calls = json_array();
    bool ok = calls != NULL;
    if (t->force_name) {
        json_t *call = json_is_object(o) ? json_pack("{s:s, s:O}", "name", t->force_name, "arguments", o) : NULL;
        json_t *c = call_from(t, call);
        ok = ok && c && !json_array_append_new(calls, c);
        json_decref(call);
    } else {
        size_t i;
        json_t *v;
        ok = ok && json_array_size(o) > 0;
        json_array_foreach(o, i, v) {
            json_t *c = ok ? call_from(t, v) : NULL;
            ok = c && !json_array_append_new(calls, c);
        }
    }
    ok = ok && !json_array_extend(t->calls, calls);
    json_decref(calls);
    json_decref(o);
    loom_status st = ok ? NULL : loom_strbuf_append(out, t->body.data, t->body.len);
    loom_strbuf_clear(&t->body);
    return st;
}

loom_status srv_tools_push(srv_tools *t, const char *text, size_t len, loom_strbuf *out) {
    if (t->force_name || t->force_list) return loom_strbuf_append(&t->body, text, len);
    if (t->syntax == LOOM_TOOLS_LLAMA3) return llama3_push(t, text, len, out);
    LOOM_TRY(loom_strbuf_append(t->inside ? &t->body : &t->held, text, len));
    for (;;) {
        if (t->inside) {
            const char *at = t->body.len ? memmem(t->body.data, t->body.len, CLOSE, CLOSE_N) : NULL;
            if (!at) return NULL;
            const size_t k = (size_t)(at - t->body.data);
            LOOM_TRY(loom_strbuf_append(&t->held, at + CLOSE_N, t->body.len - k - CLOSE_N)); /* held is empty inside */
            t->body.len = k;
            t->body.data[k] = 0;
            LOOM_TRY(end_block(t, true, out));
            continue;
        }
        const char *at = t->held.len ? memmem(t->held.data, t->held.len, OPEN, OPEN_N) : NULL;
        if (at) {
            const size_t k = (size_t)(at - t->held.data);
            LOOM_TRY(outside(t, t->held.data, k, out)); /* its trailing whitespace waits for the block's end */
            LOOM_TRY(loom_strbuf_append(&t->body, at + OPEN_N, t->held.len - k - OPEN_N));
            loom_strbuf_clear(&t->held);
            t->inside = true;
            continue;
        }
        const size_t keep = t->held.len ? open_tail(t->held.data, t->held.len) : 0;
        LOOM_TRY(outside(t, t->held.data, t->held.len - keep, out));
        if (t->held.len) {
            memmove(t->held.data, t->held.data + t->held.len - keep, keep);
            t->held.len = keep;
            t->held.data[keep] = 0;
        }
        return NULL;
    }
}

loom_status srv_tools_flush(srv_tools *t, loom_strbuf *out) {
    if (t->force_name || t->force_list) return forced_flush(t, out);
    if (t->syntax == LOOM_TOOLS_LLAMA3) return llama3_flush(t, out);
    if (t->inside) LOOM_TRY(end_block(t, false, out));
    if (t->held.len) LOOM_TRY(outside(t, t->held.data, t->held.len, out));
    loom_strbuf_clear(&t->held);
    loom_status st = json_array_size(t->calls) ? NULL : loom_strbuf_append(out, t->ws.data, t->ws.len);
    loom_strbuf_clear(&t->ws);
    return st;
}
