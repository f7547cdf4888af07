/*
 * runtime/text/chat.c — messages → prompt through the model's Jinja template.
 */
#define _GNU_SOURCE /* memmem */
#include "runtime/text/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct loom_chat_template {
    loom_jinja_template *t;
    char *bos, *eos;  /* NULL: undefined */
    bool typed_only;  /* renders a content list of text parts, not a string content */
    loom_tool_syntax tools; /* how the template writes an assistant's tool calls */
    const loom_think_tags *think; /* the reasoning block the template knows, or NULL */
};

static loom_status render(const loom_chat_template *c, const loom_chat_request *req, const loom_jinja_limits *lim,
                          bool join_text_parts, loom_strbuf *out);

/* Whether the template renders `content` given as a string / as a list of
 * one text part (a user message alone), as llama.cpp's template
 * capabilities probe it. */
static bool renders_needle(const loom_chat_template *c, bool typed) {
    static const char needle[] = "<loom needle 5e1c>";
    char msgs[128];
    snprintf(msgs, sizeof msgs, typed ? "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"%s\"}]}]"
                                      : "[{\"role\":\"user\",\"content\":\"%s\"}]",
             needle);
    loom_chat_request req = {.messages_json = msgs, .messages_len = strlen(msgs), .add_generation_prompt = true};
    loom_strbuf out = {0};
    loom_status st = render(c, &req, NULL, false, &out);
    bool found = !st && out.data && strstr(out.data, needle);
    loom_status_free(st);
    loom_strbuf_free(&out);
    return found;
}

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

loom_status loom_chat_template_create(const char *tmpl, size_t len, const char *bos_token, const char *eos_token,
                                      loom_chat_template **out) {
    *out = NULL;
    loom_chat_template *c = calloc(1, sizeof *c);
    if (!c) return loom_error(LOOM_ERR_NOMEM, "chat template: out of memory");
    if ((bos_token && !(c->bos = strdup(bos_token))) || (eos_token && !(c->eos = strdup(eos_token)))) {
        loom_chat_template_free(c);
        return loom_error(LOOM_ERR_NOMEM, "chat template: out of memory");
    }
    loom_status st = loom_jinja_parse(tmpl, len, "chat template", &c->t);
    if (st) {
        loom_chat_template_free(c);
        return st;
    }
    c->typed_only = !renders_needle(c, false) && renders_needle(c, true);
#define HAS(s) (memmem(tmpl, len, s, strlen(s)) != NULL)
    c->tools = HAS("[TOOL_CALLS]")                                                     ? LOOM_TOOLS_MISTRAL
               : HAS("tool▁call▁begin")                                                ? LOOM_TOOLS_DEEPSEEK
               : HAS("<|tool_call_begin|>")                                            ? LOOM_TOOLS_KIMI
               : HAS("<tool_call>") && HAS("<arg_key>")                                ? LOOM_TOOLS_GLM
               : HAS("<tool_call>") && HAS("<function=") && HAS("<parameter=")        ? LOOM_TOOLS_XML
               : HAS("<tool_call>")                                                    ? LOOM_TOOLS_HERMES
               : HAS("<|start_header_id|>") && HAS("ipython") && HAS("\"parameters\"") ? LOOM_TOOLS_LLAMA3
                                                                                    : LOOM_TOOLS_NONE;
    static const loom_think_tags THINK[] = {
        {"<think>", "</think>"}, {"[THINK]", "[/THINK]"}, {"<|START_THINKING|>", "<|END_THINKING|>"}};
    for (size_t i = 0; i < sizeof THINK / sizeof THINK[0] && !c->think; i++)
        if (HAS(THINK[i].open) && HAS(THINK[i].close)) c->think = &THINK[i];
#undef HAS
    *out = c;
    return NULL;
}

loom_status loom_chat_template_from_gguf(const loom_gguf *g, const loom_tokenizer *tok, loom_chat_template **out) {
    *out = NULL;
    loom_str s;
    if (!loom_gguf_get_str(g, "tokenizer.chat_template", &s))
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: the model has no chat template (tokenizer.chat_template %s)",
                          loom_gguf_path(g) ? loom_gguf_path(g) : "gguf",
                          loom_gguf_get(g, "tokenizer.chat_template") ? "is not a string" : "is absent");
    loom_status st = loom_chat_template_from_text(s.ptr, s.len, tok, out);
    if (st) st = loom_error_wrap(st, "%s", loom_gguf_path(g) ? loom_gguf_path(g) : "gguf");
    return st;
}

loom_status loom_chat_template_from_text(const char *tmpl, size_t len, const loom_tokenizer *tok,
                                         loom_chat_template **out) {
    char *bos = NULL, *eos = NULL;
    size_t n;
    const char *p;
    if (tok && loom_tokenizer_bos(tok) >= 0) {
        p = loom_token_text(tok, loom_tokenizer_bos(tok), &n);
        bos = dup_n(p, n);
    }
    if (tok && loom_tokenizer_eos(tok) >= 0) {
        p = loom_token_text(tok, loom_tokenizer_eos(tok), &n);
        eos = dup_n(p, n);
    }
    loom_status st = loom_chat_template_create(tmpl, len, bos, eos, out);
    free(bos);
    free(eos);
    return st;
}

void loom_chat_template_free(loom_chat_template *c) {
    if (!c) return;
    loom_jinja_free(c->t);
    free(c->bos);
    free(c->eos);
    free(c);
}

const char *loom_chat_template_bos(const loom_chat_template *c) { return c->bos; }
const char *loom_chat_template_eos(const loom_chat_template *c) { return c->eos; }

bool loom_chat_prompt_has_bos(const loom_chat_template *c, const char *prompt, size_t len) {
    size_t n = c->bos ? strlen(c->bos) : 0;
    return n > 0 && len >= n && !memcmp(prompt, c->bos, n);
}

bool loom_chat_template_typed_only(const loom_chat_template *c) { return c->typed_only; }
loom_tool_syntax loom_chat_template_tool_syntax(const loom_chat_template *c) { return c->tools; }
const loom_think_tags *loom_chat_template_think_tags(const loom_chat_template *c) { return c->think; }

loom_status loom_chat_apply(const loom_chat_template *c, const loom_chat_request *req, const loom_jinja_limits *lim,
                            loom_strbuf *out) {
    return render(c, req, lim, req->openai_content && !c->typed_only, out);
}

static loom_status render(const loom_chat_template *c, const loom_chat_request *req, const loom_jinja_limits *lim,
                          bool join_text_parts, loom_strbuf *out) {
    if (!req->messages_json) return loom_error(LOOM_ERR_INVALID, "chat: no messages");
    loom_jinja_vars *v;
    LOOM_TRY(loom_jinja_vars_create(&v));
    loom_status st = loom_jinja_vars_set_messages(v, req->messages_json, req->messages_len, join_text_parts);
    if (!st)
        st = req->tools_json ? loom_jinja_vars_set_json(v, "tools", req->tools_json, req->tools_len)
                             : loom_jinja_vars_set_none(v, "tools");
    if (!st)
        st = req->documents_json ? loom_jinja_vars_set_json(v, "documents", req->documents_json, req->documents_len)
                                 : loom_jinja_vars_set_none(v, "documents");
    if (!st) st = loom_jinja_vars_set_bool(v, "add_generation_prompt", req->add_generation_prompt);
    if (!st && c->bos) st = loom_jinja_vars_set_str(v, "bos_token", c->bos, strlen(c->bos));
    if (!st && c->eos) st = loom_jinja_vars_set_str(v, "eos_token", c->eos, strlen(c->eos));
    if (!st && req->kwargs_json) st = loom_jinja_vars_set_object(v, req->kwargs_json, req->kwargs_len);
    if (!st) st = loom_jinja_render(c->t, v, lim, out);
    loom_jinja_vars_free(v);
    return st;
}

loom_status loom_chat_format(const loom_chat_template *c, const loom_chat_msg *msgs, size_t n,
                             bool add_generation_prompt, loom_strbuf *out) {
    loom_strbuf json = {0};
    loom_status st = loom_strbuf_append(&json, "[", 1);
    for (size_t i = 0; i < n && !st; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            st = loom_error(LOOM_ERR_INVALID, "chat: message %zu has no %s", i, msgs[i].role ? "content" : "role");
            break;
        }
        const char *open = i ? ",{\"role\":" : "{\"role\":";
        st = loom_strbuf_append(&json, open, strlen(open));
        if (!st) st = loom_json_escape(msgs[i].role, strlen(msgs[i].role), &json);
        if (!st) st = loom_strbuf_append(&json, ",\"content\":", 11);
        if (!st) st = loom_json_escape(msgs[i].content, strlen(msgs[i].content), &json);
        if (!st) st = loom_strbuf_append(&json, "}", 1);
    }
    if (!st) st = loom_strbuf_append(&json, "]", 1);
    if (!st) {
        loom_chat_request req = {.messages_json = json.data, .messages_len = json.len,
                                 .add_generation_prompt = add_generation_prompt};
        st = loom_chat_apply(c, &req, NULL, out);
    }
    loom_strbuf_free(&json);
    return st;
}
