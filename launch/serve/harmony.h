/*
 * launch/serve/harmony.h — gpt-oss replies in OpenAI's "harmony" format
 * split into reasoning, content and tool calls, as streamed text arrives
 * (llama.cpp's GPT-OSS chat format; vLLM's openai_harmony parsing).
 *
 * After the template's generation prompt ("<|start|>assistant") a reply is
 * a run of messages, each a header, "<|message|>", a body and an end:
 *
 *     <|channel|>analysis<|message|>REASONING<|end|>
 *     <|start|>assistant<|channel|>final<|message|>ANSWER<|return|>
 *
 *     <|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location":"Paris"}<|call|>
 *     <|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{...}<|call|>
 *
 * The tags reach the text because the tokenizer renders <|start|>,
 * <|channel|>, <|message|>, <|constrain|> and <|end|> of o200k_harmony
 * always; <|return|> and <|call|> end the generation and render as
 * nothing, so a body ends at <|end|>, at <|start|> or at the text's end.
 *
 * A header is "<|channel|>NAME" with, before or after it, " to=RECIPIENT"
 * and " <|constrain|>TYPE" (after it also a bare " TYPE"), each at most
 * once, and at most SRV_HARMONY_HEAD_MAX bytes; after a <|start|> in the
 * reply, "assistant" comes first. The
 * analysis channel is reasoning; final, and commentary without a
 * recipient (a preamble), are content; a message to "functions.NAME" (on
 * commentary or analysis) is a call {"name": NAME, "arguments": the body}
 * when calls are parsed and the body is a JSON object (or its type is not
 * JSON; the arguments are the body as written, trimmed), and
 * content otherwise, as is a message to another recipient. Whatever is not
 * harmony — a reply that does not begin with a header, a header that does
 * not parse, text between <|end|> and the next <|start|> — is content as
 * written, tags included, up to the next <|start|>; a header cut short by
 * the text's end is dropped (it carries no text). Content and reasoning are
 * released as they come, but for a tail that may begin <|end|> or
 * <|start|>; a call once its message ends.
 *
 * raw_reasoning (--no-reasoning): analysis messages stay in the content as
 * written, from "<|channel|>" to "<|end|>" (llama.cpp's reasoning format
 * "none"); the rest is split as above.
 */
#ifndef LOOM_SERVE_HARMONY_H
#define LOOM_SERVE_HARMONY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/text/chat.h"
#include "runtime/text/utf8.h"

#define SRV_HARMONY_HEAD_MAX 256 /* bytes of a header at most: longer text is not one */

typedef enum { SRV_HARMONY_HEAD, SRV_HARMONY_BODY, SRV_HARMONY_RAW } srv_harmony_state;
typedef enum { SRV_HARMONY_REASONING, SRV_HARMONY_CONTENT, SRV_HARMONY_CALL } srv_harmony_kind;

typedef struct {
    srv_harmony_state state;
    bool need_role;       /* header: after a <|start|> in the reply, "assistant" comes first */
    srv_harmony_kind kind; /* body: where its text goes */
    bool json_args;       /* call: the body must be JSON */
    bool raw_reasoning;   /* analysis messages stay in the content as written */
    bool parse_calls;     /* messages to functions.NAME become calls */
    loom_strbuf held;     /* header: its text so far; body, raw: a tail that may begin a tag */
    char name[SRV_HARMONY_HEAD_MAX]; /* call: the function's name (name_len bytes) */
    size_t name_len;
    loom_strbuf body;     /* call: its text so far */
    json_t *calls;        /* [{"id", "type": "function", "function": {"name", "arguments"}}, ...] */
    uint64_t id_state;    /* the calls' ids */
} srv_harmony;

/* parse_calls: the request has tools (and tool_choice is not "none");
 * raw_reasoning: --no-reasoning; seed: makes the calls' ids. Returns false
 * when out of memory. */
bool srv_harmony_init(srv_harmony *h, bool parse_calls, bool raw_reasoning, uint64_t seed);
void srv_harmony_free(srv_harmony *h);

/* Adds text[0..len) (valid UTF-8); appends the reasoning and content it
 * releases to *reasoning and *content and the calls it closes to h->calls.
 * On error (out of memory) the split is lost. */
loom_status srv_harmony_push(srv_harmony *h, const char *text, size_t len, loom_strbuf *reasoning,
                             loom_strbuf *content) LOOM_MUST_USE;

/* End of the text: releases what was held; a call whose message was open
 * is closed. */
loom_status srv_harmony_flush(srv_harmony *h, loom_strbuf *reasoning, loom_strbuf *content) LOOM_MUST_USE;

/* Whether the template writes harmony: a one-message conversation renders
 * with "<|message|>" and ends with the generation prompt "<|start|>assistant"
 * (gpt-oss). Renders once; false when it raises. */
bool srv_harmony_template(const loom_chat_template *t);

#endif
