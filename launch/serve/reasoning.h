/*
 * launch/serve/reasoning.h — a thinking model's reasoning split from its
 * answer in streamed text, for chat templates that teach a reasoning block
 * (loom_chat_template_think_tags: <think>...</think> for Qwen3, QwQ,
 * DeepSeek-R1 and their distillations; [THINK]...[/THINK] for Magistral
 * and Ministral 3 Reasoning; <|START_THINKING|>...<|END_THINKING|> for
 * Command R7B and A): the text inside the tags becomes the message's
 * `reasoning_content`, the rest its `content` (llama-server's default
 * "deepseek" reasoning format; vLLM's qwen3, deepseek_r1 and mistral
 * reasoning parsers).
 *
 * The reply is reasoning from its start when the prompt opened the block
 * (R1's templates end the generation prompt with "<think>\n"), or when it
 * begins, after whitespace, with the opening tag; otherwise it is all
 * content. Reasoning ends at the closing tag (held back while a tail of the
 * text may begin it); whitespace right after the tag is dropped. A reply
 * that ends inside the block is all reasoning.
 */
#ifndef LOOM_SERVE_REASONING_H
#define LOOM_SERVE_REASONING_H

#include <stdbool.h>

#include "runtime/text/chat.h"
#include "runtime/text/utf8.h"

typedef struct {
    loom_think_tags tags;
    size_t open_n, close_n;
    int mode;         /* 0 deciding (the reply may begin with the opening tag), 1 reasoning, 2 content */
    bool strip;       /* content: whitespace after </think> not yet past */
    loom_strbuf held; /* deciding: the reply so far; reasoning: a tail that may begin the closing tag */
} srv_reasoning;

/* tags: the template's (NULL: <think>...</think>); opened: the prompt ends
 * inside the block. */
void srv_reasoning_init(srv_reasoning *r, const loom_think_tags *tags, bool opened);
void srv_reasoning_free(srv_reasoning *r);

/* Adds text[0..len) (valid UTF-8) and appends what it releases to
 * *reasoning and *content. */
loom_status srv_reasoning_push(srv_reasoning *r, const char *text, size_t len, loom_strbuf *reasoning,
                               loom_strbuf *content) LOOM_MUST_USE;

/* End of the text: releases what was held. */
loom_status srv_reasoning_flush(srv_reasoning *r, loom_strbuf *reasoning, loom_strbuf *content) LOOM_MUST_USE;

/* Whether the text ends with the opening tag (NULL: <think>) and maybe
 * whitespace (a prompt that opens the block). */
bool srv_reasoning_opened(const loom_think_tags *tags, const char *text, size_t len);

#endif
