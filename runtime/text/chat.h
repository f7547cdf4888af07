/*
 * runtime/text/chat.h — chat templates: messages (and tools, documents,
 * extra variables) → the prompt text the model was trained on.
 *
 * A GGUF carries its template as Jinja source (`tokenizer.chat_template`).
 * loom renders it with its Jinja interpreter (runtime/text/jinja.h), set up
 * as Hugging Face's tokenizer.apply_chat_template(..., tokenize=False) sets
 * up jinja2, so the prompt is byte for byte what transformers gives: the
 * template sees `messages` (as given; a reasoning field is also offered as
 * "thinking" and "reasoning_content", as transformers 5 does), `tools` and
 * `documents` (None when not given), `add_generation_prompt`, `bos_token`
 * and `eos_token` (the tokenizer's texts; undefined when the model has
 * none) and any extra variables (they override the others, as keyword
 * arguments of apply_chat_template do).
 *
 * Messages are JSON in the OpenAI shape: {"role": ..., "content": "text" or
 * [{"type": "text", "text": ...}, ...]}, assistant "tool_calls" with
 * "function": {"name", "arguments"}, "tool" messages with "tool_call_id".
 * loom_chat_format takes plain role + content pairs for the simple case.
 *
 * Errors: a template that does not parse fails at create with its line and
 * column; one that raises (raise_exception, an undefined variable used, a
 * type error) fails at apply with LOOM_ERR_INVALID and the template's
 * message. The output buffer keeps what it held before a failed call.
 */
#ifndef LOOM_CHAT_H
#define LOOM_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/gguf.h"
#include "runtime/status.h"
#include "runtime/text/jinja.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/utf8.h"

typedef struct loom_chat_template loom_chat_template;

/* Parses the template tmpl[0..len). bos_token / eos_token are the texts of
 * the model's BOS and EOS tokens; NULL leaves the variable undefined. On
 * error *out is NULL. */
loom_status loom_chat_template_create(const char *tmpl, size_t len, const char *bos_token, const char *eos_token,
                                      loom_chat_template **out) LOOM_MUST_USE;

/* The template of a GGUF (`tokenizer.chat_template`), with bos/eos texts
 * from the tokenizer built from the same file (tok may be NULL: undefined). */
loom_status loom_chat_template_from_gguf(const loom_gguf *g, const loom_tokenizer *tok,
                                         loom_chat_template **out) LOOM_MUST_USE;

/* The template tmpl[0..len) with bos/eos texts from tok (e.g. a template
 * file used instead of the model's). */
loom_status loom_chat_template_from_text(const char *tmpl, size_t len, const loom_tokenizer *tok,
                                         loom_chat_template **out) LOOM_MUST_USE;

void loom_chat_template_free(loom_chat_template *c);

/* One render's input. JSON texts are borrowed; NULL means "not given". */
typedef struct {
    const char *messages_json; /* a JSON array of message objects (required) */
    size_t messages_len;
    const char *tools_json;    /* a JSON array of tool definitions; NULL: tools = None */
    size_t tools_len;
    const char *documents_json; /* a JSON array of documents; NULL: documents = None */
    size_t documents_len;
    const char *kwargs_json;   /* a JSON object of extra variables; NULL: none */
    size_t kwargs_len;
    bool add_generation_prompt;
    /* Content as OpenAI clients send it: a message's list of text parts
     * reaches the template as their texts joined by newlines, unless the
     * template renders only lists (loom_chat_template_typed_only), as vLLM
     * and llama.cpp's servers do. false: every content as given, as
     * transformers passes it (a template that concatenates strings then
     * fails on a list). */
    bool openai_content;
} loom_chat_request;

/* Whether the template renders a message's content only when it is a list
 * of parts (a user message with string content shows nothing of it, one
 * with a text part does). Probed once at create. */
bool loom_chat_template_typed_only(const loom_chat_template *c);

/* How the template teaches a model to write tool calls, so a server can
 * parse them back out of its text (from the source, as llama.cpp detects
 * it): HERMES, Hermes 2 Pro's <tool_call>{"name": ..., "arguments":
 * {...}}</tool_call> (Qwen2.5, Qwen3, Hermes, SmolLM3: the source names the
 * tag); LLAMA3, Llama 3.1-3.3's reply that is a JSON object {"name": ...,
 * "parameters": {...}} (the source has the ipython role and "parameters");
 * GLM, GLM-4.5's <tool_call>NAME <arg_key>K</arg_key><arg_value>V
 * </arg_value>...</tool_call> (GLM-4.5/4.6: the source names <arg_key>);
 * DEEPSEEK, <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>
 * (DeepSeek-V3.1, R1: the source names tool▁call▁begin); KIMI,
 * <|tool_call_begin|>functions.NAME:I<|tool_call_argument_begin|>{...}
 * <|tool_call_end|> (Kimi K2); MISTRAL, [TOOL_CALLS]NAME[ARGS]{...} per call
 * (Mistral Small 3.2, Devstral, Ministral 3) or [TOOL_CALLS][{"name": ...,
 * "arguments": {...}}, ...] (Mistral Nemo; the source names [TOOL_CALLS]). */
typedef enum {
    LOOM_TOOLS_NONE,
    LOOM_TOOLS_HERMES,
    LOOM_TOOLS_LLAMA3,
    LOOM_TOOLS_GLM,
    LOOM_TOOLS_DEEPSEEK,
    LOOM_TOOLS_KIMI,
    LOOM_TOOLS_MISTRAL,
    LOOM_TOOLS_XML, /* Qwen3-Coder's, Qwen3.5's: <tool_call><function=NAME><parameter=K>V</parameter>... */
} loom_tool_syntax;
loom_tool_syntax loom_chat_template_tool_syntax(const loom_chat_template *c);

/* The tags around a thinking model's reasoning. */
typedef struct {
    const char *open, *close;
} loom_think_tags;
/* Which reasoning block the template knows (its source names both tags):
 * <think>...</think> (Qwen3, QwQ, DeepSeek-R1, GLM-4.5), [THINK]...[/THINK]
 * (Magistral, Ministral 3 Reasoning) or <|START_THINKING|>...<|END_THINKING|>
 * (Command R7B, Command A); NULL: none. */
const loom_think_tags *loom_chat_template_think_tags(const loom_chat_template *c);

/* Appends the rendered prompt to *out. lim NULL: loom_jinja_limits_default(). */
loom_status loom_chat_apply(const loom_chat_template *c, const loom_chat_request *req, const loom_jinja_limits *lim,
                            loom_strbuf *out) LOOM_MUST_USE;

/* A message for loom_chat_format: role and text content (NUL-terminated UTF-8). */
typedef struct {
    const char *role;
    const char *content;
} loom_chat_msg;

/* loom_chat_apply with msgs[0..n) as the messages and nothing else. */
loom_status loom_chat_format(const loom_chat_template *c, const loom_chat_msg *msgs, size_t n,
                             bool add_generation_prompt, loom_strbuf *out) LOOM_MUST_USE;

/* True when prompt[0..len) starts with the BOS text the template was given
 * (the template wrote BOS itself): tokenize it without adding another. */
bool loom_chat_prompt_has_bos(const loom_chat_template *c, const char *prompt, size_t len);

/* The BOS / EOS texts the template sees (NULL: undefined). */
const char *loom_chat_template_bos(const loom_chat_template *c);
const char *loom_chat_template_eos(const loom_chat_template *c);

#endif
