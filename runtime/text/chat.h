/*
 * runtime/text/chat.h — chat templates: a list of {role, content} messages → the
 * prompt text the model was trained on.
 *
 * A GGUF carries its template as Jinja source (`tokenizer.chat_template`).
 * loom does not run Jinja. It recognises the template among the ones it
 * knows and formats the messages with code that gives, byte for byte, what
 * Hugging Face's apply_chat_template (jinja2 with trim_blocks and
 * lstrip_blocks) renders from that template:
 *
 *   chatml           <|im_start|>role\ncontent<|im_end|>\n …, optionally with a
 *                    default system message when the first message is not a
 *                    system one (SmolLM2, Qwen2: the message text is taken
 *                    from the template)
 *   llama3           Meta-Llama-3-Instruct: bos, <|start_header_id|>role
 *                    <|end_header_id|>\n\n + trimmed content + <|eot_id|>
 *   llama2           Llama-2-chat: [INST] with <<SYS>> in the first turn
 *   mistral-v1/v3/v3-tekken/v7 and the older Mistral/Mixtral [INST] template
 *   phi3             Phi-3-mini's <|user|> … <|end|> template
 *
 * Recognition is structural, never a guess: the template is lexed as Jinja
 * (whitespace control, trim_blocks and lstrip_blocks applied, comments
 * dropped, quoting and x['a'] / x.a spelling normalised) and must equal one
 * of the known templates token for token, where only designated string
 * literals (the default system message) may differ. Anything else — an
 * absent template, another family, a variant of a known family with extra
 * features such as tools or dates — is LOOM_ERR_UNSUPPORTED naming what was
 * found (its first characters and its structural fingerprint).
 *
 * Templates that raise exceptions (roles out of order, unsupported roles)
 * give LOOM_ERR_INVALID with the template's own message.
 */
#ifndef LOOM_CHAT_H
#define LOOM_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/gguf.h"
#include "runtime/status.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/utf8.h"

typedef struct {
    const char *role;    /* "system", "user", "assistant", ... (NUL-terminated UTF-8) */
    const char *content;
} loom_chat_msg;

typedef struct loom_chat_template loom_chat_template;

/* Recognises the Jinja template tmpl[0..len). bos_token / eos_token are the
 * texts the template's bos_token and eos_token variables stand for (the BOS
 * and EOS tokens' vocabulary texts, e.g. "<s>"); NULL means "". On error
 * *out is NULL. */
loom_status loom_chat_template_create(const char *tmpl, size_t len, const char *bos_token, const char *eos_token,
                                      loom_chat_template **out) LOOM_MUST_USE;

/* The template of a GGUF (`tokenizer.chat_template`), with bos/eos texts
 * from the tokenizer built from the same file. */
loom_status loom_chat_template_from_gguf(const loom_gguf *g, const loom_tokenizer *tok,
                                         loom_chat_template **out) LOOM_MUST_USE;

void loom_chat_template_free(loom_chat_template *c);

/* The recognised template: "chatml", "llama3", "llama2", "mistral-v1", ... */
const char *loom_chat_template_name(const loom_chat_template *c);

/* True when the rendered prompt starts with the BOS text (Llama-3, Llama-2,
 * Mistral): tokenize it with add_special = false (and parse_special = true)
 * so BOS is not added twice. */
bool loom_chat_template_adds_bos(const loom_chat_template *c);

/* Appends the prompt for msgs[0..n) to *out; add_generation_prompt appends
 * the assistant header where the template has one (Mistral's templates have
 * none: the reply follows [/INST]). On error *out keeps what it held before
 * the call. */
loom_status loom_chat_format(const loom_chat_template *c, const loom_chat_msg *msgs, size_t n,
                             bool add_generation_prompt, loom_strbuf *out) LOOM_MUST_USE;

/* The structural fingerprint of a Jinja template (a hash of its normalised
 * token stream): two templates with equal fingerprints render alike. Named
 * in the error for an unrecognised template, to help add it. */
loom_status loom_chat_template_fingerprint(const char *tmpl, size_t len, uint64_t *out) LOOM_MUST_USE;

#endif
