/*
 * launch/serve/tools.c — Hermes-style tool calls out of streamed text
 * (contract in tools.h).
 */
#define _GNU_SOURCE /* memmem */
#include "launch/serve/tools.h"

#include <stdio.h>
#include <string.h>

/* A call block's tags in each syntax (tools.h). */
/* (Mistral's calls have no closing tag: the next call's opening one ends a call.) */
static const char *open_tag(const srv_tools *t) {
    return t->syntax == LOOM_TOOLS_DEEPSEEK  ? "<｜tool▁call▁begin｜>"
         : t->syntax == LOOM_TOOLS_KIMI      ? "<|tool_call_begin|>"
         : t->syntax == LOOM_TOOLS_MISTRAL   ? "[TOOL_CALLS]"
                                             : "<tool_call>";
}
static const char *close_tag(const srv_tools *t) {
    return t->syntax == LOOM_TOOLS_DEEPSEEK  ? "<｜tool▁call▁end｜>"
         : t->syntax == LOOM_TOOLS_KIMI      ? "<|tool_call_end|>"
         : t->syntax == LOOM_TOOLS_MISTRAL   ? "[TOOL_CALLS]"
                                             : "</tool_call>";
}

bool srv_tools_init(srv_tools *t, loom_tool_syntax syntax, uint64_t seed, json_t *tools) {
    memset(t, 0, sizeof *t);
    t->syntax = syntax;
    t->tools = tools;
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

/* s[*at..n) past whitespace starts with tag: moves *at past it. */
static bool take_tag(const char *s, size_t n, size_t *at, const char *tag) {
    size_t i = *at, m = strlen(tag);
    while (i < n && is_ws(s[i])) i++;
    if (n - i < m || memcmp(s + i, tag, m)) return false;
    *at = i + m;
    return true;
}

/* GLM-4.5's body: the name, then <arg_key>K</arg_key><arg_value>V</arg_value>
 * pairs (whitespace around them), V JSON where it parses (the template
 * writes non-strings with tojson) and a string otherwise, as llama.cpp's
 * GLM 4.5 parser reads it; NULL when the body is not that. */
static json_t *glm_call_of(srv_tools *t, const char *s, size_t n) {
    size_t at = 0, name0, name1;
    while (at < n && is_ws(s[at])) at++;
    name0 = at;
    while (at < n && !is_ws(s[at]) && s[at] != '<') at++;
    name1 = at;
    for (size_t i = name0; i < name1; i++) /* a function's name: letters, digits, _ - . : */
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_' || s[i] == '-' || s[i] == '.' || s[i] == ':'))
            return NULL;
    json_t *args = json_object(), *call = NULL;
    bool ok = args && name1 > name0;
    while (ok && take_tag(s, n, &at, "<arg_key>")) {
        const char *k = s + at, *ke = memmem(k, n - at, "</arg_key>", 10);
        ok = ke != NULL;
        if (!ok) break;
        at = (size_t)(ke - s) + 10;
        ok = take_tag(s, n, &at, "<arg_value>");
        const char *v = s + at, *ve = ok ? memmem(v, n - at, "</arg_value>", 12) : NULL;
        ok = ve != NULL;
        if (!ok) break;
        at = (size_t)(ve - s) + 12;
        char *key = strndup(k, (size_t)(ke - k));
        json_t *val = json_loadb(v, (size_t)(ve - v), JSON_DECODE_ANY, NULL);
        if (!val) val = json_stringn(v, (size_t)(ve - v));
        ok = key && val && !json_object_set_new(args, key, val);
        if (!ok) json_decref(val);
        free(key);
    }
    while (ok && at < n && is_ws(s[at])) at++;
    if (ok && at == n) {
        char *text = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (text) call = srv_tool_call_new(&t->id_state, s + name0, name1 - name0, text, strlen(text));
        free(text);
    }
    json_decref(args);
    return call;
}

/* The type the request's tool `name` gives its parameter `key` ("string",
 * "integer", ...; NULL: not given). */
static const char *param_type(const srv_tools *t, const char *name, size_t name_len, const char *key) {
    size_t i;
    json_t *tool;
    json_array_foreach(t->tools, i, tool) {
        json_t *f = json_object_get(tool, "function");
        const char *fname = json_string_value(json_object_get(f, "name"));
        if (!fname || strlen(fname) != name_len || memcmp(fname, name, name_len)) continue;
        json_t *prop = json_object_get(json_object_get(json_object_get(f, "parameters"), "properties"), key);
        json_t *type = json_object_get(prop, "type");
        if (json_is_array(type)) type = json_array_get(type, 0); /* ["integer", "null"]: the first */
        return json_string_value(type);
    }
    return NULL;
}

/* A parameter's value text as its schema's type says (as vLLM's
 * qwen3_coder parser reads it): a string stays text; a number, boolean,
 * object or array is the JSON it parses to where it does; "null" is null;
 * a parameter without a type is text. */
static json_t *typed_value(const char *type, const char *v, size_t n) {
    if (n == 4 && !memcmp(v, "null", 4)) return json_null();
    if (!type || !strcmp(type, "string")) return json_stringn(v, n);
    json_t *j;
    if (!strcmp(type, "boolean"))
        j = n == 4 && !strncasecmp(v, "true", 4) ? json_true() : n == 5 && !strncasecmp(v, "false", 5) ? json_false() : NULL;
    else
        j = json_loadb(v, n, JSON_DECODE_ANY, NULL);
    /* of the declared type (another type name: any JSON) */
    const bool fits = j && (!strcmp(type, "integer")  ? json_is_integer(j)
                            : !strcmp(type, "number") ? json_is_number(j)
                            : !strcmp(type, "object") ? json_is_object(j)
                            : !strcmp(type, "array")  ? json_is_array(j)
                                                      : true);
    if (fits) return j;
    json_decref(j);
    return json_stringn(v, n);
}

/* Qwen3-Coder's body: <function=NAME> then <parameter=KEY>VALUE</parameter>
 * pairs, </function> (whitespace around the tags; one line break at each
 * end of a value is the template's, not the value's); NULL when the body
 * is not that. */
static json_t *xml_call_of(srv_tools *t, const char *s, size_t n) {
    size_t at = 0;
    if (!take_tag(s, n, &at, "<function=")) return NULL;
    const char *name = s + at, *ne = memchr(name, '>', n - at);
    if (!ne || ne == name) return NULL;
    const size_t name_len = (size_t)(ne - name);
    at = (size_t)(ne - s) + 1;
    json_t *args = json_object(), *call = NULL;
    bool ok = args != NULL;
    while (ok && take_tag(s, n, &at, "<parameter=")) {
        const char *k = s + at, *ke = memchr(k, '>', n - at);
        const char *v = ke ? ke + 1 : NULL, *ve = v ? memmem(v, (size_t)(s + n - v), "</parameter>", 12) : NULL;
        ok = ve != NULL && ke > k;
        if (!ok) break;
        at = (size_t)(ve - s) + 12;
        size_t vn = (size_t)(ve - v);
        if (vn && v[0] == '\n') v++, vn--;
        if (vn && v[vn - 1] == '\n') vn--;
        char *key = strndup(k, (size_t)(ke - k));
        json_t *val = key ? typed_value(param_type(t, name, name_len, key), v, vn) : NULL;
        ok = key && val && !json_object_set_new(args, key, val);
        if (!ok) json_decref(val);
        free(key);
    }
    ok = ok && take_tag(s, n, &at, "</function>");
    while (ok && at < n && is_ws(s[at])) at++;
    if (ok && at == n) {
        char *text = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (text) call = srv_tool_call_new(&t->id_state, name, name_len, text, strlen(text));
        free(text);
    }
    json_decref(args);
    return call;
}

/* A call from the name s[n0, n1) and JSON-object arguments s[a0, a1), or NULL. */
static json_t *named_call(srv_tools *t, const char *s, size_t n0, size_t n1, size_t a0, size_t a1) {
    while (n0 < n1 && is_ws(s[n0])) n0++;
    while (n1 > n0 && is_ws(s[n1 - 1])) n1--;
    json_t *o = n1 > n0 ? json_loadb(s + a0, a1 - a0, 0, NULL) : NULL, *call = NULL;
    char *text = json_is_object(o) ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text) call = srv_tool_call_new(&t->id_state, s + n0, n1 - n0, text, strlen(text));
    free(text);
    json_decref(o);
    return call;
}

/* DeepSeek's bodies: V3.1's NAME<｜tool▁sep｜>{args}, and R1's / V3's
 * function<｜tool▁sep｜>NAME\n```json\n{args}\n``` (llama.cpp's DeepSeek
 * parsers read both). */
static json_t *deepseek_call_of(srv_tools *t, const char *s, size_t n) {
    static const char SEP[] = "<｜tool▁sep｜>";
    const char *sep = memmem(s, n, SEP, sizeof SEP - 1);
    if (!sep) return NULL;
    const size_t a = (size_t)(sep - s) + sizeof SEP - 1;
    size_t lead = 0;
    while (lead < n && is_ws(s[lead])) lead++;
    if ((size_t)(sep - s) - lead == 8 && !memcmp(s + lead, "function", 8)) { /* R1: the name on the line after */
        const char *nl = memchr(s + a, '\n', n - a), *f0 = nl ? memmem(nl, n - (size_t)(nl - s), "```", 3) : NULL;
        if (!f0) return NULL;
        const char *j = memchr(f0, '\n', n - (size_t)(f0 - s));
        const char *f1 = j ? memmem(j, n - (size_t)(j - s), "```", 3) : NULL;
        if (!f1) return NULL;
        for (const char *r = f1 + 3; r < s + n; r++)
            if (!is_ws(*r)) return NULL;
        return named_call(t, s, a, (size_t)(nl - s), (size_t)(j - s), (size_t)(f1 - s));
    }
    return named_call(t, s, 0, (size_t)(sep - s), a, n);
}

/* Kimi K2's body: functions.NAME:INDEX<|tool_call_argument_begin|>{args}. */
static json_t *kimi_call_of(srv_tools *t, const char *s, size_t n) {
    static const char ARG[] = "<|tool_call_argument_begin|>";
    const char *arg = memmem(s, n, ARG, sizeof ARG - 1);
    if (!arg) return NULL;
    size_t n0 = 0, n1 = (size_t)(arg - s);
    while (n0 < n1 && is_ws(s[n0])) n0++;
    if (n1 - n0 > 10 && !memcmp(s + n0, "functions.", 10)) n0 += 10;
    for (size_t i = n1; i > n0; i--)
        if (s[i - 1] == ':') { /* the call's index */
            n1 = i - 1;
            break;
        }
    return named_call(t, s, n0, n1, (size_t)(arg - s) + sizeof ARG - 1, n);
}

/* Mistral's body: NAME[ARGS]{args} (a [CALL_ID]id before [ARGS] skipped),
 * or a JSON list of {"name", "arguments"} objects (then an array of calls). */
static json_t *mistral_call_of(srv_tools *t, const char *s, size_t n) {
    size_t at = 0;
    while (at < n && is_ws(s[at])) at++;
    if (at < n && s[at] == '[' && (n - at < 6 || memcmp(s + at, "[ARGS]", 6))) { /* Mistral Nemo's list */
        json_t *o = json_loadb(s + at, n - at, 0, NULL), *calls = json_array(), *v;
        size_t i;
        bool ok = calls && json_array_size(o) > 0;
        json_array_foreach(o, i, v) {
            json_t *c = ok ? call_from(t, v) : NULL;
            ok = c && !json_array_append_new(calls, c);
        }
        json_decref(o);
        if (!ok) json_decref(calls);
        return ok ? calls : NULL;
    }
    const char *args = memmem(s, n, "[ARGS]", 6), *id = memmem(s, n, "[CALL_ID]", 9);
    if (!args) return NULL;
    const size_t n1 = (size_t)((id && id < args ? id : args) - s);
    if (memchr(s + at, '[', n1 - at) || memchr(s + at, '{', n1 - at)) return NULL; /* a name, not markup */
    return named_call(t, s, at, n1, (size_t)(args - s) + 6, n);
}

/* The call a block's body names (Mistral's list: an array of calls), or NULL (not a call). */
static json_t *call_of(srv_tools *t, const char *body, size_t len) {
    if (t->syntax == LOOM_TOOLS_MISTRAL) return mistral_call_of(t, body, len);
    if (t->syntax == LOOM_TOOLS_GLM) return glm_call_of(t, body, len);
    if (t->syntax == LOOM_TOOLS_XML) return xml_call_of(t, body, len);
    if (t->syntax == LOOM_TOOLS_DEEPSEEK) return deepseek_call_of(t, body, len);
    if (t->syntax == LOOM_TOOLS_KIMI) return kimi_call_of(t, body, len);
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
        const int fail = json_is_array(call) ? json_array_extend(t->calls, call) : json_array_append(t->calls, call);
        json_decref(call);
        if (fail) st = loom_error(LOOM_ERR_NOMEM, "tool calls: out of memory");
    } else { /* not a call: the block stays content, as written */
        st = outside(t, open_tag(t), strlen(open_tag(t)), out);
        if (!st) st = outside(t, t->body.data, t->body.len, out);
        if (!st && closed) st = outside(t, close_tag(t), strlen(close_tag(t)), out);
    }
    loom_strbuf_clear(&t->body);
    t->inside = false;
    return st;
}

/* Length of the longest tail of s[0..n) that is a proper prefix of the open tag. */
static size_t open_tail(const srv_tools *t, const char *s, size_t n) {
    const char *open = open_tag(t);
    const size_t on = strlen(open);
    for (size_t l = on - 1 < n ? on - 1 : n; l > 0; l--)
        if (!memcmp(s + n - l, open, l)) return l;
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
    const char *open = open_tag(t), *close = close_tag(t);
    const size_t open_n = strlen(open), close_n = strlen(close);
    for (;;) {
        if (t->inside) {
            const char *at = t->body.len ? memmem(t->body.data, t->body.len, close, close_n) : NULL;
            if (!at) return NULL;
            const size_t k = (size_t)(at - t->body.data);
            const bool mistral = t->syntax == LOOM_TOOLS_MISTRAL; /* its "closing" tag opens the next call */
            LOOM_TRY(loom_strbuf_append(&t->held, mistral ? at : at + close_n,
                                        t->body.len - k - (mistral ? 0 : close_n))); /* held is empty inside */
            t->body.len = k;
            t->body.data[k] = 0;
            LOOM_TRY(end_block(t, !mistral, out));
            continue;
        }
        const char *at = t->held.len ? memmem(t->held.data, t->held.len, open, open_n) : NULL;
        if (at) {
            const size_t k = (size_t)(at - t->held.data);
            LOOM_TRY(outside(t, t->held.data, k, out)); /* its trailing whitespace waits for the block's end */
            LOOM_TRY(loom_strbuf_append(&t->body, at + open_n, t->held.len - k - open_n));
            loom_strbuf_clear(&t->held);
            t->inside = true;
            continue;
        }
        const size_t keep = t->held.len ? open_tail(t, t->held.data, t->held.len) : 0;
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
