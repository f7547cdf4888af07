/*
 * launch/serve/anthropic.c — the Messages API over chat completions
 * (contract in anthropic.h).
 */
#include "launch/serve/anthropic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the request */

#define BAD(param, ...) srv_fail(e, 400, "invalid_request_error", param, NULL, __VA_ARGS__)

/* The text of a string or of a list of text blocks, joined by newlines;
 * NULL (and *e) for other blocks. */
static json_t *joined_text(json_t *v, const char *param, srv_error *e) {
    if (json_is_string(v)) return json_incref(v);
    if (!json_is_array(v)) {
        BAD(param, "'%s' must be a string or a list of text blocks", param);
        return NULL;
    }
    loom_strbuf b = {0};
    size_t i;
    json_t *blk;
    json_array_foreach(v, i, blk) {
        const char *type = json_string_value(json_object_get(blk, "type"));
        const char *text = json_string_value(json_object_get(blk, "text"));
        if (!type || strcmp(type, "text") != 0 || !text) {
            BAD(param, "%s[%zu]: a '%s' block is not supported here (text blocks only)", param, i, type ? type : "?");
            loom_strbuf_free(&b);
            return NULL;
        }
        if (i) loom_status_free(loom_strbuf_append(&b, "\n", 1));
        loom_status_free(loom_strbuf_append(&b, text, strlen(text)));
    }
    json_t *s = srv_json_text(b.data ? b.data : "", b.len);
    loom_strbuf_free(&b);
    return s;
}

/* The chat messages of one Messages turn. */
static bool turn(json_t *msgs, json_t *m, size_t i, srv_error *e) {
    const char *role = json_string_value(json_object_get(m, "role"));
    json_t *content = json_object_get(m, "content");
    if (!role || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0))
        return BAD("messages", "messages[%zu]: role must be user or assistant", i);
    if (json_is_string(content))
        return json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", role, "content", content)) == 0;
    if (!json_is_array(content)) return BAD("messages", "messages[%zu]: content must be a string or a list of blocks", i);
    const bool user = !strcmp(role, "user");
    loom_strbuf text = {0};
    json_t *calls = json_array();
    size_t k;
    json_t *b;
    bool ok = true, any_text = false;
    json_array_foreach(content, k, b) {
        const char *type = json_string_value(json_object_get(b, "type"));
        if (!type) type = "?";
        if (!strcmp(type, "text") && json_is_string(json_object_get(b, "text"))) {
            const char *t = json_string_value(json_object_get(b, "text"));
            if (any_text) loom_status_free(loom_strbuf_append(&text, "\n", 1));
            loom_status_free(loom_strbuf_append(&text, t, strlen(t)));
            any_text = true;
        } else if (!strcmp(type, "tool_result") && user) {
            json_t *id = json_object_get(b, "tool_use_id"), *c = json_object_get(b, "content");
            json_t *out = c ? joined_text(c, "messages", e) : json_string("");
            if (!json_is_string(id) || !out) {
                json_decref(out);
                ok = out ? BAD("messages", "messages[%zu]: a tool_result needs its tool_use_id", i) : false;
                break;
            }
            json_array_append_new(msgs, json_pack("{s:s, s:O, s:o}", "role", "tool", "tool_call_id", id, "content", out));
        } else if (!strcmp(type, "tool_use") && !user) {
            json_t *id = json_object_get(b, "id"), *input = json_object_get(b, "input");
            const char *name = json_string_value(json_object_get(b, "name"));
            char *args = json_is_object(input) ? json_dumps(input, JSON_COMPACT) : NULL;
            if (!json_is_string(id) || !name || !args) {
                free(args);
                ok = BAD("messages", "messages[%zu]: a tool_use needs id, name and an input object", i);
                break;
            }
            json_array_append_new(calls, json_pack("{s:O, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function",
                                                   "name", name, "arguments", args));
            free(args);
        } else if (!strcmp(type, "thinking") || !strcmp(type, "redacted_thinking")) {
            continue; /* earlier reasoning: templates drop it */
        } else {
            ok = BAD("messages", "messages[%zu]: a '%s' block is not supported", i, type);
            break;
        }
    }
    if (ok && (any_text || json_array_size(calls))) {
        json_t *msg = json_pack("{s:s, s:o}", "role", role, "content", srv_json_text(text.data ? text.data : "", text.len));
        if (json_array_size(calls)) json_object_set(msg, "tool_calls", calls);
        json_array_append_new(msgs, msg);
    }
    json_decref(calls);
    loom_strbuf_free(&text);
    return ok;
}

bool srv_anthropic_request(const char *body, size_t len, bool counting, char **chat_body, srv_error *e) {
    *chat_body = NULL;
    json_t *r = srv_parse_body(body, len, e);
    if (!r) return false;
    json_t *chat = json_object(), *msgs = json_array();
    json_object_set_new(chat, "messages", msgs);
    bool ok = true;
    json_t *sys = json_object_get(r, "system");
    if (sys && !json_is_null(sys)) {
        json_t *t = joined_text(sys, "system", e);
        if (!t) ok = false;
        else json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "system", "content", t));
    }
    json_t *ms = json_object_get(r, "messages");
    if (ok && !json_is_array(ms)) ok = BAD("messages", "'messages' must be a list");
    size_t i;
    json_t *m;
    if (ok) json_array_foreach(ms, i, m) if (ok) ok = turn(msgs, m, i, e);
    json_t *mt = json_object_get(r, "max_tokens");
    if (ok && !counting && !json_is_integer(mt)) ok = BAD("max_tokens", "'max_tokens' is required (an integer)");
    if (ok && !counting) json_object_set(chat, "max_tokens", mt);
    static const char *const same[] = {"model", "stream", "temperature", "top_p", "top_k"};
    for (size_t k = 0; ok && k < sizeof same / sizeof same[0]; k++)
        if (json_object_get(r, same[k])) json_object_set(chat, same[k], json_object_get(r, same[k]));
    json_t *stop = json_object_get(r, "stop_sequences");
    if (ok && stop && !json_is_null(stop)) json_object_set(chat, "stop", stop);
    json_t *tools = json_object_get(r, "tools");
    if (ok && tools && !json_is_null(tools)) {
        json_t *ct = json_array();
        json_object_set_new(chat, "tools", ct);
        json_t *t;
        if (!json_is_array(tools)) ok = BAD("tools", "'tools' must be a list");
        else json_array_foreach(tools, i, t) {
            const char *name = json_string_value(json_object_get(t, "name"));
            const char *type = json_string_value(json_object_get(t, "type"));
            if (!name || (type && strcmp(type, "custom") != 0)) {
                ok = BAD("tools", "tools[%zu]: only client tools with a name and an input_schema are supported", i);
                break;
            }
            json_t *f = json_pack("{s:s}", "name", name);
            if (json_object_get(t, "description")) json_object_set(f, "description", json_object_get(t, "description"));
            if (json_object_get(t, "input_schema")) json_object_set(f, "parameters", json_object_get(t, "input_schema"));
            json_array_append_new(ct, json_pack("{s:s, s:o}", "type", "function", "function", f));
        }
    }
    json_t *tc = json_object_get(r, "tool_choice");
    if (ok && tc && !json_is_null(tc)) {
        const char *type = json_string_value(json_object_get(tc, "type"));
        const char *name = json_string_value(json_object_get(tc, "name"));
        if (type && !strcmp(type, "auto")) json_object_set_new(chat, "tool_choice", json_string("auto"));
        else if (type && !strcmp(type, "any")) json_object_set_new(chat, "tool_choice", json_string("required"));
        else if (type && !strcmp(type, "none")) json_object_set_new(chat, "tool_choice", json_string("none"));
        else if (type && !strcmp(type, "tool") && name)
            json_object_set_new(chat, "tool_choice", json_pack("{s:s, s:{s:s}}", "type", "function", "function", "name", name));
        else ok = BAD("tool_choice", "'tool_choice' type must be auto, any, none, or tool with a name");
    }
    const char *thinking = json_string_value(json_object_get(json_object_get(r, "thinking"), "type"));
    if (ok && thinking) /* enabled, adaptive, between_tools: the template's thinking on */
        json_object_set_new(chat, "chat_template_kwargs", json_pack("{s:b}", "enable_thinking", strcmp(thinking, "disabled") != 0));
    json_t *oc = json_object_get(r, "output_config"), *fmt = json_object_get(oc, "format");
    if (ok && json_is_string(json_object_get(oc, "effort"))) json_object_set(chat, "reasoning_effort", json_object_get(oc, "effort"));
    if (ok && fmt && !json_is_null(fmt)) {
        const char *type = json_string_value(json_object_get(fmt, "type"));
        json_t *schema = json_object_get(fmt, "schema");
        if (!type || strcmp(type, "json_schema") != 0 || !json_is_object(schema))
            ok = BAD("output_config", "output_config.format must be {\"type\": \"json_schema\", \"schema\": {...}}");
        else
            json_object_set_new(chat, "response_format", json_pack("{s:s, s:{s:s, s:O}}", "type", "json_schema",
                                                                   "json_schema", "name", "output", "schema", schema));
    }
    if (ok) {
        *chat_body = json_dumps(chat, JSON_COMPACT);
        if (!*chat_body) ok = srv_fail(e, 500, "api_error", NULL, NULL, "out of memory");
    }
    json_decref(chat);
    json_decref(r);
    return ok;
}

json_t *srv_anthropic_error_obj(const srv_error *e) {
    const char *type = e->status == 401 ? "authentication_error" : e->status == 404 ? "not_found_error"
                       : e->status == 413 ? "request_too_large" : e->status == 429 ? "rate_limit_error"
                       : e->status >= 500 ? "api_error" : "invalid_request_error";
    return json_pack("{s:s, s:{s:s, s:o}}", "type", "error", "error", "type", type, "message",
                     srv_json_text(e->message, strlen(e->message))); /* may quote the body's bytes */
}

char *srv_anthropic_error_json(const srv_error *e) {
    json_t *o = srv_anthropic_error_obj(e);
    char *s = o ? srv_dump(o) : NULL;
    json_decref(o);
    return s;
}

/* ------------------------------------------------------------ the response */

void srv_amsg_init(srv_amsg *m, const char *id, const char *model, int input_tokens) {
    memset(m, 0, sizeof *m);
    snprintf(m->id, sizeof m->id, "%s", id);
    m->model = model;
    m->input_tokens = input_tokens;
    m->blocks = json_array();
}

void srv_amsg_free(srv_amsg *m) {
    json_decref(m->blocks);
    loom_strbuf_free(&m->text);
}

/* An event of the stream (o, stolen, given its type); nothing without out. */
static void event(loom_strbuf *out, const char *type, json_t *o) {
    if (out && o) json_object_set_new(o, "type", json_string(type));
    srv_sse_event(out, type, o);
}

void srv_amsg_start(srv_amsg *m, loom_strbuf *out) {
    event(out, "message_start",
          json_pack("{s:{s:s, s:s, s:s, s:s, s:[], s:n, s:n, s:{s:i, s:i}}}", "message", "id", m->id, "type", "message",
                    "role", "assistant", "model", m->model, "content", "stop_reason", "stop_sequence", "usage",
                    "input_tokens", m->input_tokens, "output_tokens", 0));
}

static void close_block(srv_amsg *m, loom_strbuf *out) {
    if (!m->open) return;
    const size_t k = json_array_size(m->blocks) - 1;
    json_t *b = json_array_get(m->blocks, k);
    json_object_set_new(b, m->open == 1 ? "thinking" : "text", srv_json_text(m->text.data ? m->text.data : "", m->text.len));
    event(out, "content_block_stop", json_pack("{s:I}", "index", (json_int_t)k));
    m->open = 0;
    loom_strbuf_clear(&m->text);
}

static void add_text(srv_amsg *m, int kind, const char *t, size_t n, loom_strbuf *out) {
    if (!n) return;
    if (m->open != kind) {
        close_block(m, out);
        json_t *b = kind == 1 ? json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking", "", "signature", "")
                              : json_pack("{s:s, s:s}", "type", "text", "text", "");
        json_array_append_new(m->blocks, b);
        event(out, "content_block_start",
              json_pack("{s:I, s:O}", "index", (json_int_t)json_array_size(m->blocks) - 1, "content_block", b));
        m->open = kind;
    }
    loom_status_free(loom_strbuf_append(&m->text, t, n));
    event(out, "content_block_delta",
          json_pack("{s:I, s:{s:s, s:o}}", "index", (json_int_t)json_array_size(m->blocks) - 1, "delta", "type",
                    kind == 1 ? "thinking_delta" : "text_delta", kind == 1 ? "thinking" : "text", srv_json_text(t, n)));
}

void srv_amsg_reasoning(srv_amsg *m, const char *t, size_t n, loom_strbuf *out) { add_text(m, 1, t, n, out); }
void srv_amsg_text(srv_amsg *m, const char *t, size_t n, loom_strbuf *out) { add_text(m, 2, t, n, out); }

void srv_amsg_call(srv_amsg *m, const json_t *call, loom_strbuf *out) {
    close_block(m, out);
    const json_t *f = json_object_get(call, "function");
    const char *name = json_string_value(json_object_get(f, "name"));
    const char *args = json_string_value(json_object_get(f, "arguments"));
    json_t *input = args ? json_loads(args, 0, NULL) : NULL;
    if (!json_is_object(input)) { /* the parsers give objects; anything else goes as an empty input */
        json_decref(input);
        input = json_object();
    }
    char id[96];
    const size_t k = json_array_size(m->blocks);
    snprintf(id, sizeof id, "toolu_%s_%zu", m->id, k);
    json_t *b = json_pack("{s:s, s:s, s:s, s:{}}", "type", "tool_use", "id", id, "name", name ? name : "", "input");
    event(out, "content_block_start", json_pack("{s:I, s:O}", "index", (json_int_t)k, "content_block", b));
    char *partial = json_dumps(input, JSON_COMPACT);
    event(out, "content_block_delta",
          json_pack("{s:I, s:{s:s, s:s}}", "index", (json_int_t)k, "delta", "type", "input_json_delta", "partial_json",
                    partial ? partial : "{}"));
    free(partial);
    event(out, "content_block_stop", json_pack("{s:I}", "index", (json_int_t)k));
    json_object_set_new(b, "input", input);
    json_array_append_new(m->blocks, b);
}

json_t *srv_amsg_finish(srv_amsg *m, const char *finish, const char *stop, int output_tokens, loom_strbuf *out) {
    close_block(m, out);
    const char *reason = stop                           ? "stop_sequence"
                         : !strcmp(finish, "length")    ? "max_tokens"
                         : !strcmp(finish, "tool_calls") ? "tool_use"
                                                          : "end_turn";
    event(out, "message_delta",
          json_pack("{s:{s:s, s:o}, s:{s:i}}", "delta", "stop_reason", reason, "stop_sequence",
                    stop ? json_string(stop) : json_null(), "usage", "output_tokens", output_tokens));
    event(out, "message_stop", json_object());
    return json_pack("{s:s, s:s, s:s, s:s, s:O, s:s, s:o, s:{s:i, s:i}}", "id", m->id, "type", "message", "role",
                     "assistant", "model", m->model, "content", m->blocks, "stop_reason", reason, "stop_sequence",
                     stop ? json_string(stop) : json_null(), "usage", "input_tokens", m->input_tokens, "output_tokens",
                     output_tokens);
}
