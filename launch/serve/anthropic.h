/*
 * launch/serve/anthropic.h — Anthropic's Messages API (POST /v1/messages)
 * on top of the chat completions machinery, as llama-server and vLLM serve
 * it for Anthropic's clients: the request becomes the chat request it asks
 * for, and the chat's reasoning, text and tool calls come back as content
 * blocks — whole, or streamed as the Messages API's events.
 *
 * Request: `model`, `max_tokens` (required), `messages` (user and assistant
 * turns; content a string or blocks: text, tool_use in assistant turns,
 * tool_result in user turns, thinking skipped), `system` (a string or text
 * blocks), `stop_sequences`, `temperature`, `top_p`, `top_k`, `tools`
 * (name, description, input_schema), `tool_choice` (auto, any, tool, none),
 * `thinking` (disabled, or on: the template's enable_thinking),
 * `output_config` (`format` json_schema: structured output; `effort`: the
 * template's reasoning_effort), `stream`. Image and document blocks are a
 * 400.
 *
 * Response: {"type": "message", "content": [thinking?, text?, tool_use*],
 * "stop_reason": end_turn | max_tokens | stop_sequence | tool_use,
 * "stop_sequence", "usage"}. Events: message_start, content_block_start /
 * content_block_delta (thinking_delta, text_delta, input_json_delta) /
 * content_block_stop per block, message_delta (stop_reason, usage),
 * message_stop. Errors: {"type": "error", "error": {"type", "message"}}.
 * POST /v1/messages/count_tokens takes the same body without max_tokens.
 */
#ifndef LOOM_SERVE_ANTHROPIC_H
#define LOOM_SERVE_ANTHROPIC_H

#include <jansson.h>
#include <stdbool.h>

#include "launch/serve/openai.h"
#include "runtime/text/utf8.h"

/* The chat completions request body (malloc'd) that the Messages request
 * body[0..len) asks for. counting: a count_tokens request (no max_tokens). */
bool srv_anthropic_request(const char *body, size_t len, bool counting, char **chat_body, srv_error *e);

/* An error in Anthropic's envelope: the object, and its JSON text (malloc'd). */
json_t *srv_anthropic_error_obj(const srv_error *e);
char *srv_anthropic_error_json(const srv_error *e);

/* One message being built. */
typedef struct {
    char id[48];
    const char *model;
    int input_tokens;
    json_t *blocks;   /* content blocks so far */
    int open;         /* 0: none, 1: a thinking block, 2: a text block is the last block and open */
    loom_strbuf text; /* the open block's text */
} srv_amsg;

void srv_amsg_init(srv_amsg *m, const char *id, const char *model, int input_tokens);
void srv_amsg_free(srv_amsg *m);
/* Events go to *out when out is not NULL (a stream). message_start: */
void srv_amsg_start(srv_amsg *m, loom_strbuf *out);
void srv_amsg_reasoning(srv_amsg *m, const char *t, size_t n, loom_strbuf *out);
void srv_amsg_text(srv_amsg *m, const char *t, size_t n, loom_strbuf *out);
/* A chat tool call ({"id", "function": {"name", "arguments"}}). */
void srv_amsg_call(srv_amsg *m, const json_t *call, loom_strbuf *out);
/* Closes the open block; finish is the chat's finish_reason, stop the stop
 * string that ended it (or NULL). Returns the message (new reference). */
json_t *srv_amsg_finish(srv_amsg *m, const char *finish, const char *stop, int output_tokens, loom_strbuf *out);

#endif
