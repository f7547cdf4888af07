/*
 * launch/serve/responses.c — the Responses API over chat completions
 * (contract in responses.h).
 */
#include "launch/serve/responses.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the request */

static bool bad(srv_error *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool bad(srv_error *e, const char *param, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return srv_fail(e, 400, "invalid_request_error", param, NULL, "%s", msg);
}

/* A message's content as chat content: a string, or text parts. */
static json_t *chat_content(json_t *content, srv_error *e) {
    if (json_is_string(content)) return json_incref(content);
    if (!json_is_array(content)) {
        bad(e, "input", "a message's content must be a string or a list of parts");
        return NULL;
    }
    json_t *parts = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(content, i, p) {
        const char *type = json_string_value(json_object_get(p, "type"));
        json_t *text = json_object_get(p, "text");
        if (type && !strcmp(type, "refusal")) text = json_object_get(p, "refusal");
        if (!type || !(strcmp(type, "input_text") == 0 || strcmp(type, "output_text") == 0 ||
                       strcmp(type, "text") == 0 || strcmp(type, "refusal") == 0)) {
            bad(e, "input", "content part type '%s' is not supported (text parts only)", type ? type : "(none)");
            json_decref(parts);
            return NULL;
        }
        if (!json_is_string(text)) {
            bad(e, "input", "a '%s' part needs its text as a string", type);
            json_decref(parts);
            return NULL;
        }
        json_array_append_new(parts, json_pack("{s:s, s:O}", "type", "text", "text", text));
    }
    return parts;
}

/* Appends the chat messages of one input item. */
static bool input_item(json_t *msgs, json_t *it, size_t i, srv_error *e) {
    if (!json_is_object(it)) return bad(e, "input", "input[%zu] must be an object", i);
    const char *type = json_string_value(json_object_get(it, "type"));
    if (!type && json_object_get(it, "role")) type = "message";
    if (!type) return bad(e, "input", "input[%zu] has no type", i);
    if (!strcmp(type, "message")) {
        const char *role = json_string_value(json_object_get(it, "role"));
        if (!role || !(strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0 || strcmp(role, "system") == 0 ||
                       strcmp(role, "developer") == 0))
            return bad(e, "input", "input[%zu]: role must be user, assistant, system or developer", i);
        json_t *content = chat_content(json_object_get(it, "content"), e);
        if (!content) return false;
        if (!strcmp(role, "developer")) role = "system"; /* chat templates know system messages */
        return json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", role, "content", content)) == 0;
    }
    if (!strcmp(type, "function_call")) {
        const char *name = json_string_value(json_object_get(it, "name"));
        json_t *args = json_object_get(it, "arguments"), *id = json_object_get(it, "call_id");
        if (!json_is_string(id)) id = json_object_get(it, "id");
        if (!name || !json_is_string(args) || !json_is_string(id))
            return bad(e, "input", "input[%zu]: a function_call needs name, arguments and call_id strings", i);
        json_t *call = json_pack("{s:O, s:s, s:{s:s, s:O}}", "id", id, "type", "function", "function", "name", name,
                                 "arguments", args);
        /* calls in a row are one assistant message */
        json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
        json_t *calls = last ? json_object_get(last, "tool_calls") : NULL;
        if (calls) return json_array_append_new(calls, call) == 0;
        return json_array_append_new(msgs, json_pack("{s:s, s:s, s:[o]}", "role", "assistant", "content", "",
                                                     "tool_calls", call)) == 0;
    }
    if (!strcmp(type, "function_call_output")) {
        json_t *id = json_object_get(it, "call_id"), *out = json_object_get(it, "output");
        if (!json_is_string(id) || !json_is_string(out))
            return bad(e, "input", "input[%zu]: a function_call_output needs call_id and output strings", i);
        return json_array_append_new(msgs, json_pack("{s:s, s:O, s:O}", "role", "tool", "tool_call_id", id, "content",
                                                     out)) == 0;
    }
    if (!strcmp(type, "reasoning")) return true; /* earlier reasoning: templates drop it */
    return bad(e, "input", "input item type '%s' is not supported", type);
}

bool srv_responses_request(const char *body, size_t len, char **chat_body, json_t **req, srv_error *e) {
    *chat_body = NULL;
    *req = NULL;
    json_t *r = srv_parse_body(body, len, e);
    if (!r) return false;
    json_t *chat = json_object(), *msgs = json_array();
    json_object_set_new(chat, "messages", msgs);
    bool ok = true;
    static const char *const stored[] = {"previous_response_id", "conversation"};
    for (size_t i = 0; ok && i < 2; i++) {
        json_t *v = json_object_get(r, stored[i]);
        if (v && !json_is_null(v)) ok = bad(e, stored[i], "'%s' is not supported: this server stores no responses", stored[i]);
    }
    if (ok && json_is_true(json_object_get(r, "background")))
        ok = bad(e, "background", "background responses are not supported");
    json_t *ins = json_object_get(r, "instructions");
    if (ok && ins && !json_is_null(ins)) {
        if (!json_is_string(ins)) ok = bad(e, "instructions", "'instructions' must be a string");
        else json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "system", "content", ins));
    }
    json_t *input = json_object_get(r, "input");
    if (ok && json_is_string(input)) {
        json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "user", "content", input));
    } else if (ok && json_is_array(input)) {
        size_t i;
        json_t *it;
        json_array_foreach(input, i, it) if (ok) ok = input_item(msgs, it, i, e);
    } else if (ok) {
        ok = bad(e, "input", "'input' must be a string or a list of input items");
    }
    /* fields the chat request takes as they are (vLLM's extensions too) */
    static const char *const same[] = {"model", "stream", "temperature", "top_p", "parallel_tool_calls", "seed",
                                       "top_k", "min_p", "stop", "presence_penalty", "frequency_penalty",
                                       "repetition_penalty", "logit_bias", "ignore_eos", "chat_template_kwargs"};
    for (size_t i = 0; ok && i < sizeof same / sizeof same[0]; i++) {
        json_t *v = json_object_get(r, same[i]);
        if (v) json_object_set(chat, same[i], v);
    }
    json_t *mot = json_object_get(r, "max_output_tokens");
    if (ok && mot) json_object_set(chat, "max_tokens", mot);
    json_t *tools = json_object_get(r, "tools");
    if (ok && tools && !json_is_null(tools)) {
        json_t *ct = json_array();
        json_object_set_new(chat, "tools", ct);
        size_t i;
        json_t *t;
        if (!json_is_array(tools)) ok = bad(e, "tools", "'tools' must be a list");
        else json_array_foreach(tools, i, t) {
            if (!ok) break;
            const char *type = json_string_value(json_object_get(t, "type"));
            if (!type || strcmp(type, "function") != 0) {
                ok = bad(e, "tools", "tools[%zu]: only function tools are supported (not '%s')", i, type ? type : "?");
                break;
            }
            json_t *f = json_object();
            static const char *const keys[] = {"name", "description", "parameters", "strict"};
            for (size_t k = 0; k < 4; k++)
                if (json_object_get(t, keys[k])) json_object_set(f, keys[k], json_object_get(t, keys[k]));
            json_array_append_new(ct, json_pack("{s:s, s:o}", "type", "function", "function", f));
        }
    }
    json_t *tc = json_object_get(r, "tool_choice");
    if (ok && json_is_object(tc)) {
        const char *type = json_string_value(json_object_get(tc, "type"));
        const char *name = json_string_value(json_object_get(tc, "name"));
        if (!type || strcmp(type, "function") != 0 || !name)
            ok = bad(e, "tool_choice", "'tool_choice' must be auto, none, required or {\"type\": \"function\", \"name\": ...}");
        else json_object_set_new(chat, "tool_choice", json_pack("{s:s, s:{s:s}}", "type", "function", "function", "name", name));
    } else if (ok && tc) {
        json_object_set(chat, "tool_choice", tc);
    }
    json_t *fmt = json_object_get(json_object_get(r, "text"), "format");
    if (ok && fmt && !json_is_null(fmt)) {
        const char *type = json_string_value(json_object_get(fmt, "type"));
        if (type && !strcmp(type, "json_object")) {
            json_object_set_new(chat, "response_format", json_pack("{s:s}", "type", "json_object"));
        } else if (type && !strcmp(type, "json_schema")) {
            json_t *js = json_object();
            static const char *const keys[] = {"name", "schema", "strict"};
            for (size_t k = 0; k < 3; k++)
                if (json_object_get(fmt, keys[k])) json_object_set(js, keys[k], json_object_get(fmt, keys[k]));
            json_object_set_new(chat, "response_format", json_pack("{s:s, s:o}", "type", "json_schema", "json_schema", js));
        } else if (!type || strcmp(type, "text") != 0) {
            ok = bad(e, "text", "text.format type must be text, json_object or json_schema");
        }
    }
    json_t *effort = json_object_get(json_object_get(r, "reasoning"), "effort");
    if (ok && json_is_string(effort)) json_object_set(chat, "reasoning_effort", effort);
    if (ok) {
        *chat_body = json_dumps(chat, JSON_COMPACT);
        if (!*chat_body) ok = srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    json_decref(chat);
    if (ok) *req = r;
    else json_decref(r);
    return ok;
}

/* ------------------------------------------------------------ the response */

void srv_resp_init(srv_resp *r, const char *id, const char *model, long long created, json_t *req) {
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    r->model = model;
    r->created = created;
    r->req = req;
    r->items = json_array();
}

void srv_resp_free(srv_resp *r) {
    json_decref(r->items);
    loom_strbuf_free(&r->text);
}

/* An event of the stream (o, stolen, given its type and sequence_number);
 * nothing without out. */
static void event(srv_resp *r, loom_strbuf *out, const char *type, json_t *o) {
    if (out && o) {
        json_object_set_new(o, "type", json_string(type));
        json_object_set_new(o, "sequence_number", json_integer(r->seq++));
    }
    srv_sse_event(out, type, o);
}

/* The request's value of key, or dflt (stolen) when absent or null. */
static json_t *echo(const srv_resp *r, const char *key, json_t *dflt) {
    json_t *v = json_object_get(r->req, key);
    if (!v || json_is_null(v)) return dflt;
    json_decref(dflt);
    return json_incref(v);
}

static json_t *response_obj(const srv_resp *r, const char *status, json_t *usage, json_t *incomplete, json_t *error) {
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:O, s:o, s:o, s:o}", "id", r->id, "object", "response",
                          "created_at", (json_int_t)r->created, "status", status, "model", r->model, "output", r->items,
                          "usage", usage ? usage : json_null(), "incomplete_details",
                          incomplete ? incomplete : json_null(), "error", error ? error : json_null());
    if (!o) return NULL;
    json_object_set_new(o, "instructions", echo(r, "instructions", json_null()));
    json_object_set_new(o, "max_output_tokens", echo(r, "max_output_tokens", json_null()));
    json_object_set_new(o, "temperature", echo(r, "temperature", json_real(1.0)));
    json_object_set_new(o, "top_p", echo(r, "top_p", json_real(1.0)));
    json_object_set_new(o, "tools", echo(r, "tools", json_array()));
    json_object_set_new(o, "tool_choice", echo(r, "tool_choice", json_string("auto")));
    json_object_set_new(o, "parallel_tool_calls", echo(r, "parallel_tool_calls", json_true()));
    json_object_set_new(o, "text", echo(r, "text", json_pack("{s:{s:s}}", "format", "type", "text")));
    json_object_set_new(o, "reasoning", echo(r, "reasoning", json_pack("{s:n, s:n}", "effort", "summary")));
    json_object_set_new(o, "metadata", echo(r, "metadata", json_object()));
    json_object_set_new(o, "previous_response_id", json_null());
    json_object_set_new(o, "store", json_false());
    json_object_set_new(o, "truncation", json_string("disabled"));
    json_object_set_new(o, "user", echo(r, "user", json_null()));
    return o;
}

void srv_resp_start(srv_resp *r, loom_strbuf *out) {
    event(r, out, "response.created", json_pack("{s:o}", "response", response_obj(r, "in_progress", NULL, NULL, NULL)));
    event(r, out, "response.in_progress", json_pack("{s:o}", "response", response_obj(r, "in_progress", NULL, NULL, NULL)));
}

/* The open item's id and place. */
static json_t *open_item(const srv_resp *r, size_t *index, const char **id) {
    *index = json_array_size(r->items) - 1;
    json_t *it = json_array_get(r->items, *index);
    *id = json_string_value(json_object_get(it, "id"));
    return it;
}

static void close_item(srv_resp *r, loom_strbuf *out) {
    if (!r->open) return;
    size_t k;
    const char *id;
    json_t *it = open_item(r, &k, &id);
    json_t *text = srv_json_text(r->text.data ? r->text.data : "", r->text.len);
    if (r->open == 1) {
        event(r, out, "response.reasoning_text.done",
              json_pack("{s:s, s:I, s:i, s:O}", "item_id", id, "output_index", (json_int_t)k, "content_index", 0, "text", text));
        json_object_set_new(it, "content", json_pack("[{s:s, s:O}]", "type", "reasoning_text", "text", text));
    } else {
        json_t *part = json_pack("{s:s, s:O, s:[], s:[]}", "type", "output_text", "text", text, "annotations", "logprobs");
        event(r, out, "response.output_text.done",
              json_pack("{s:s, s:I, s:i, s:O, s:[]}", "item_id", id, "output_index", (json_int_t)k, "content_index", 0,
                        "text", text, "logprobs"));
        event(r, out, "response.content_part.done",
              json_pack("{s:s, s:I, s:i, s:O}", "item_id", id, "output_index", (json_int_t)k, "content_index", 0, "part", part));
        json_object_set_new(it, "content", json_pack("[o]", part));
    }
    json_decref(text);
    json_object_set_new(it, "status", json_string("completed"));
    event(r, out, "response.output_item.done", json_pack("{s:I, s:O}", "output_index", (json_int_t)k, "item", it));
    r->open = 0;
    loom_strbuf_clear(&r->text);
}

/* Opens a reasoning (kind 1) or message (kind 2) item unless one is open. */
static void open_kind(srv_resp *r, int kind, loom_strbuf *out) {
    if (r->open == kind) return;
    close_item(r, out);
    char id[96];
    const size_t k = json_array_size(r->items);
    snprintf(id, sizeof id, "%s_%s_%zu", kind == 1 ? "rs" : "msg", r->id, k);
    json_t *it = kind == 1 ? json_pack("{s:s, s:s, s:[], s:[], s:s}", "type", "reasoning", "id", id, "summary",
                                       "content", "status", "in_progress")
                           : json_pack("{s:s, s:s, s:s, s:s, s:[]}", "type", "message", "id", id, "status",
                                       "in_progress", "role", "assistant", "content");
    json_array_append_new(r->items, it);
    event(r, out, "response.output_item.added", json_pack("{s:I, s:O}", "output_index", (json_int_t)k, "item", it));
    if (kind == 2)
        event(r, out, "response.content_part.added",
              json_pack("{s:s, s:I, s:i, s:{s:s, s:s, s:[], s:[]}}", "item_id", id, "output_index", (json_int_t)k,
                        "content_index", 0, "part", "type", "output_text", "text", "", "annotations", "logprobs"));
    r->open = kind;
}

static void add_text(srv_resp *r, int kind, const char *t, size_t n, loom_strbuf *out) {
    if (!n) return;
    open_kind(r, kind, out);
    loom_status_free(loom_strbuf_append(&r->text, t, n));
    size_t k;
    const char *id;
    open_item(r, &k, &id);
    json_t *o = json_pack("{s:s, s:I, s:i, s:o}", "item_id", id, "output_index", (json_int_t)k, "content_index", 0,
                          "delta", srv_json_text(t, n));
    if (kind == 2 && o) json_object_set_new(o, "logprobs", json_array());
    event(r, out, kind == 1 ? "response.reasoning_text.delta" : "response.output_text.delta", o);
}

void srv_resp_reasoning(srv_resp *r, const char *t, size_t n, loom_strbuf *out) { add_text(r, 1, t, n, out); }
void srv_resp_text(srv_resp *r, const char *t, size_t n, loom_strbuf *out) { add_text(r, 2, t, n, out); }

void srv_resp_call(srv_resp *r, const json_t *call, loom_strbuf *out) {
    close_item(r, out);
    const json_t *f = json_object_get(call, "function");
    const char *name = json_string_value(json_object_get(f, "name"));
    const char *args = json_string_value(json_object_get(f, "arguments"));
    const char *call_id = json_string_value(json_object_get(call, "id"));
    char id[96], cid[96];
    const size_t k = json_array_size(r->items);
    snprintf(id, sizeof id, "fc_%s_%zu", r->id, k);
    if (!call_id) snprintf(cid, sizeof cid, "call_%s_%d", r->id, r->calls), call_id = cid;
    r->calls++;
    json_t *it = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "function_call", "id", id, "call_id", call_id,
                           "name", name ? name : "", "arguments", "", "status", "in_progress");
    json_array_append_new(r->items, it);
    event(r, out, "response.output_item.added", json_pack("{s:I, s:O}", "output_index", (json_int_t)k, "item", it));
    json_object_set_new(it, "arguments", json_string(args ? args : ""));
    json_object_set_new(it, "status", json_string("completed"));
    event(r, out, "response.function_call_arguments.delta",
          json_pack("{s:s, s:I, s:s}", "item_id", id, "output_index", (json_int_t)k, "delta", args ? args : ""));
    event(r, out, "response.function_call_arguments.done",
          json_pack("{s:s, s:I, s:s, s:s}", "item_id", id, "output_index", (json_int_t)k, "name", name ? name : "",
                    "arguments", args ? args : ""));
    event(r, out, "response.output_item.done", json_pack("{s:I, s:O}", "output_index", (json_int_t)k, "item", it));
}

json_t *srv_resp_finish(srv_resp *r, const char *finish, const char *error, int input_tokens, int output_tokens,
                        loom_strbuf *out) {
    if (!error && json_array_size(r->items) == 0) open_kind(r, 2, out); /* an empty reply is an empty message */
    close_item(r, out);
    const bool failed = error != NULL || !strcmp(finish, "error"), cut = !failed && !strcmp(finish, "length");
    json_t *usage = json_pack("{s:i, s:{s:i}, s:i, s:{s:i}, s:i}", "input_tokens", input_tokens, "input_tokens_details",
                              "cached_tokens", 0, "output_tokens", output_tokens, "output_tokens_details",
                              "reasoning_tokens", 0, "total_tokens", input_tokens + output_tokens);
    json_t *o = response_obj(r, failed ? "failed" : cut ? "incomplete" : "completed", usage,
                             cut ? json_pack("{s:s}", "reason", "max_output_tokens") : NULL,
                             failed ? json_pack("{s:s, s:s}", "code", "server_error", "message",
                                                error ? error : "the request was cancelled")
                                    : NULL);
    event(r, out, failed ? "response.failed" : cut ? "response.incomplete" : "response.completed",
          json_pack("{s:O}", "response", o));
    return o;
}
