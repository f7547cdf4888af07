/*
 * launch/cmd_template.c — `loom template`: the exact prompt a chat template
 * makes of a conversation, as tokenizer.apply_chat_template(...,
 * tokenize=False) gives it in Python.
 *
 * The rendering goes to stdout with nothing added; an error goes to stderr
 * with a non-zero exit. LOOM_TEMPLATE_NOW ("YYYY-MM-DDTHH:MM:SS") fixes
 * what strftime_now() returns, for reproducible renders.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/launch_util.h"
#include "runtime/gguf.h"
#include "runtime/text/chat.h"
#include "runtime/text/tokenizer.h"

static loom_status read_opt(const char *path, loom_strbuf *b) { return path ? loom_read_file(path, b) : NULL; }

static char *token_text(const loom_tokenizer *tok, int32_t id) {
    size_t n;
    const char *p = loom_token_text(tok, id, &n);
    return strndup(p, n);
}

int cmd_template(int argc, char **argv) {
    const char *tmpl_path = NULL, *model = NULL, *messages = NULL, *tools = NULL, *documents = NULL, *kwargs = NULL,
               *bos = NULL, *eos = NULL;
    bool gen = false;
    const loom_arg args[] = {
        {"--template", LOOM_ARG_STR, &tmpl_path, "FILE", "the Jinja chat template"},
        {"--model", LOOM_ARG_STR, &model, "PATH", "the bos/eos tokens (and, without --template, the template) of this GGUF"},
        {"--messages", LOOM_ARG_STR, &messages, "FILE", "JSON array of messages ({\"role\", \"content\", ...})"},
        {"--tools", LOOM_ARG_STR, &tools, "FILE", "JSON array of tool definitions (default: tools = None)"},
        {"--documents", LOOM_ARG_STR, &documents, "FILE", "JSON array of documents (default: documents = None)"},
        {"--kwargs", LOOM_ARG_STR, &kwargs, "FILE", "JSON object of extra template variables (e.g. enable_thinking)"},
        {"--add-generation-prompt", LOOM_ARG_FLAG, &gen, NULL, "end with the header of the assistant's turn"},
        {"--bos-token", LOOM_ARG_STR, &bos, "TEXT", "bos_token (absent: undefined; with --model: the model's)"},
        {"--eos-token", LOOM_ARG_STR, &eos, "TEXT", "eos_token (absent: undefined; with --model: the model's)"},
    };
    const char *synopsis =
        "template (--template FILE | --model PATH | both) --messages FILE [--tools FILE] [--documents FILE]\n"
        "            [--kwargs FILE] [--add-generation-prompt] [--bos-token X] [--eos-token Y]";
    const char *about =
        "Prints the prompt a chat template makes of a conversation, exactly as Hugging Face's\n"
        "apply_chat_template(..., tokenize=False) renders it with jinja2. Nothing is added to the\n"
        "output. LOOM_TEMPLATE_NOW=YYYY-MM-DDTHH:MM:SS fixes the date strftime_now() reports.";
    switch (loom_args_parse(synopsis, about, args, (int)(sizeof args / sizeof args[0]), argc, argv)) {
    case LOOM_ARGS_HELP: return 0;
    case LOOM_ARGS_ERROR: return 2;
    case LOOM_ARGS_OK: break;
    }
    if (!tmpl_path && !model) return loom_usage_error("template: give --template FILE, --model PATH or both");
    if (!messages) return loom_usage_error("template: --messages FILE is required");

    loom_strbuf src = {0}, msgs = {0}, tl = {0}, docs = {0}, kw = {0}, out = {0};
    loom_gguf *g = NULL;
    loom_tokenizer *tok = NULL;
    loom_chat_template *c = NULL;
    loom_status st = read_opt(messages, &msgs);
    if (!st) st = read_opt(tools, &tl);
    if (!st) st = read_opt(documents, &docs);
    if (!st) st = read_opt(kwargs, &kw);
    if (!st) st = read_opt(tmpl_path, &src);
    char *model_bos = NULL, *model_eos = NULL;
    if (!st && model) {
        st = loom_gguf_open(model, &g);
        if (!st) st = loom_tokenizer_create(g, &tok);
        loom_str s;
        if (!st && !tmpl_path) {
            if (loom_gguf_get_str(g, "tokenizer.chat_template", &s)) st = loom_strbuf_append(&src, s.ptr, s.len);
            else st = loom_error(LOOM_ERR_UNSUPPORTED, "%s: the model has no chat template (tokenizer.chat_template)", model);
        }
        /* the model's bos/eos texts unless given */
        if (!st && !bos && loom_tokenizer_bos(tok) >= 0) bos = model_bos = token_text(tok, loom_tokenizer_bos(tok));
        if (!st && !eos && loom_tokenizer_eos(tok) >= 0) eos = model_eos = token_text(tok, loom_tokenizer_eos(tok));
    }
    if (!st) st = loom_chat_template_create(src.data ? src.data : "", src.len, bos, eos, &c);
    if (st && tmpl_path) st = loom_error_wrap(st, "%s", tmpl_path);
    if (!st) {
        loom_jinja_limits lim = loom_jinja_limits_default();
        lim.now = getenv("LOOM_TEMPLATE_NOW");
        loom_chat_request req = {
            .messages_json = msgs.data, .messages_len = msgs.len,
            .tools_json = tools ? tl.data : NULL, .tools_len = tl.len,
            .documents_json = documents ? docs.data : NULL, .documents_len = docs.len,
            .kwargs_json = kwargs ? kw.data : NULL, .kwargs_len = kw.len,
            .add_generation_prompt = gen,
        };
        st = loom_chat_apply(c, &req, &lim, &out);
    }
    int rc = 0;
    if (st) {
        rc = loom_fail("template", st);
    } else if ((out.len && fwrite(out.data, 1, out.len, stdout) != out.len) || fflush(stdout) != 0) {
        fprintf(stderr, "loom template: cannot write to stdout\n");
        rc = 1;
    }
    free(model_bos);
    free(model_eos);
    loom_chat_template_free(c);
    loom_tokenizer_free(tok);
    loom_gguf_free(g);
    loom_strbuf_free(&src);
    loom_strbuf_free(&msgs);
    loom_strbuf_free(&tl);
    loom_strbuf_free(&docs);
    loom_strbuf_free(&kw);
    loom_strbuf_free(&out);
    return rc;
}
