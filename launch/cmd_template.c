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

int cmd_template(int argc, char **argv) {
    const char *tmpl_path = NULL, *model = NULL, *messages = NULL, *tools = NULL, *documents = NULL, *kwargs = NULL,
               *bos = NULL, *eos = NULL;
    bool gen = false;
    const loom_arg args[] = {
        {"--template", LOOM_ARG_STR, &tmpl_path, "FILE", "the Jinja chat template"},
        {"--model", LOOM_ARG_STR, &model, "PATH", "take the template and bos/eos tokens from this GGUF instead"},
        {"--messages", LOOM_ARG_STR, &messages, "FILE", "JSON array of messages ({\"role\", \"content\", ...})"},
        {"--tools", LOOM_ARG_STR, &tools, "FILE", "JSON array of tool definitions (default: tools = None)"},
        {"--documents", LOOM_ARG_STR, &documents, "FILE", "JSON array of documents (default: documents = None)"},
        {"--kwargs", LOOM_ARG_STR, &kwargs, "FILE", "JSON object of extra template variables (e.g. enable_thinking)"},
        {"--add-generation-prompt", LOOM_ARG_FLAG, &gen, NULL, "end with the header of the assistant's turn"},
        {"--bos-token", LOOM_ARG_STR, &bos, "TEXT", "bos_token (absent: undefined; with --model: the model's)"},
        {"--eos-token", LOOM_ARG_STR, &eos, "TEXT", "eos_token (absent: undefined; with --model: the model's)"},
    };
    const char *synopsis =
        "template (--template FILE | --model PATH) --messages FILE [--tools FILE] [--documents FILE]\n"
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
    if (!tmpl_path == !model) return loom_usage_error("template: give exactly one of --template FILE and --model PATH");
    if (!messages) return loom_usage_error("template: --messages FILE is required");

    loom_strbuf src = {0}, msgs = {0}, tl = {0}, docs = {0}, kw = {0}, out = {0};
    loom_gguf *g = NULL;
    loom_tokenizer *tok = NULL;
    loom_chat_template *c = NULL;
    loom_status st = read_opt(messages, &msgs);
    if (!st) st = read_opt(tools, &tl);
    if (!st) st = read_opt(documents, &docs);
    if (!st) st = read_opt(kwargs, &kw);
    if (!st && tmpl_path) {
        st = loom_read_file(tmpl_path, &src);
        if (!st) st = loom_chat_template_create(src.data, src.len, bos, eos, &c);
    } else if (!st) {
        st = loom_gguf_open(model, &g);
        if (!st) st = loom_tokenizer_create(g, &tok);
        if (!st && !bos && !eos) {
            st = loom_chat_template_from_gguf(g, tok, &c);
        } else if (!st) { /* the model's template with the tokens given here */
            loom_chat_template *m = NULL;
            st = loom_chat_template_from_gguf(g, tok, &m);
            loom_str s;
            if (!st && loom_gguf_get_str(g, "tokenizer.chat_template", &s))
                st = loom_chat_template_create(s.ptr, s.len, bos ? bos : loom_chat_template_bos(m),
                                               eos ? eos : loom_chat_template_eos(m), &c);
            loom_chat_template_free(m);
        }
    }
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
