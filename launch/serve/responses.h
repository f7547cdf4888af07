/*
 * launch/serve/responses.h — OpenAI's Responses API (POST /v1/responses) on
 * top of the chat completions machinery, as vLLM and llama-server serve it:
 * a request is translated into the chat request it asks for, and the
 * chat's reasoning, text and tool calls come back as the Responses API's
 * output items — whole, or streamed as its typed server-sent events.
 *
 * Request: `input` (a string, or items: messages with a role and text or
 * input_text / output_text parts, function_call and function_call_output
 * items; reasoning items are skipped), `instructions` (a system message
 * first), `max_output_tokens`, `temperature`, `top_p`, `tools` (function
 * tools, flat as the Responses API writes them), `tool_choice`,
 * `text.format` (text, json_object, json_schema), `reasoning.effort`,
 * `stream`; the chat layer checks the rest as for /v1/chat/completions.
 * Not supported, a 400 naming the field: `previous_response_id` and
 * `conversation` (responses are not stored), tools other than functions,
 * `background`, image and file parts. `store` is accepted and nothing is
 * stored.
 *
 * Output items, in order: a reasoning item (a thinking model's reasoning,
 * as `reasoning_text` content), a message (`output_text`), function_call
 * items (one per call, `arguments` a JSON text). Status "completed", or
 * "incomplete" with incomplete_details.reason "max_output_tokens" when the
 * reply was cut at the limit, or "failed". Events: response.created,
 * response.in_progress, response.output_item.added / done,
 * response.reasoning_text.delta / done, response.content_part.added /
 * done, response.output_text.delta / done,
 * response.function_call_arguments.delta / done, then response.completed
 * (or response.incomplete, response.failed), each with its
 * sequence_number.
 */
#ifndef LOOM_SERVE_RESPONSES_H
#define LOOM_SERVE_RESPONSES_H

#include <jansson.h>
#include <stdbool.h>

#include "launch/serve/openai.h"
#include "runtime/text/utf8.h"

/* The chat completions request body (malloc'd, NUL-terminated) that the
 * Responses request body[0..len) asks for, and *req the parsed request
 * (for the response's echo fields; json_decref it). */
bool srv_responses_request(const char *body, size_t len, char **chat_body, json_t **req, srv_error *e);

/* One response being built: its output items and, for a stream, events. */
typedef struct {
    json_t *req;           /* the request (a reference) */
    char id[48];
    const char *model;
    long long created;
    json_t *items;         /* output items so far */
    int open;              /* 0: none, 1: a reasoning item, 2: a message is the last item and open */
    loom_strbuf text;      /* the open item's text so far */
    int seq;               /* the next event's sequence_number */
    int calls;             /* function calls added */
} srv_resp;

/* id e.g. "resp_..."; model and req borrowed for the response's life. */
void srv_resp_init(srv_resp *r, const char *id, const char *model, long long created, json_t *req);
void srv_resp_free(srv_resp *r);

/* Each appends its events to *out when out is not NULL (a stream). */
/* response.created and response.in_progress. */
void srv_resp_start(srv_resp *r, loom_strbuf *out);
/* Reasoning text, answer text (valid UTF-8), a chat tool call object
 * ({"id", "type", "function": {"name", "arguments"}}). */
void srv_resp_reasoning(srv_resp *r, const char *t, size_t n, loom_strbuf *out);
void srv_resp_text(srv_resp *r, const char *t, size_t n, loom_strbuf *out);
void srv_resp_call(srv_resp *r, const json_t *call, loom_strbuf *out);
/* Closes the open item and returns the response object (new reference):
 * finish is the chat's finish_reason ("stop", "tool_calls", "length",
 * "error"), error its message when it failed. Emits the final event. */
json_t *srv_resp_finish(srv_resp *r, const char *finish, const char *error, int input_tokens, int output_tokens,
                        loom_strbuf *out);

#endif
